"""Structured, quiet-by-default logging for every Tidemark process.

JSON lines on stderr (``TIDEMARK_LOG_FORMAT=json``, the default) or plain
text (``text``). Level from ``TIDEMARK_LOG_LEVEL`` (default WARNING), so a
command prints only its result unless asked for more.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: logging sits below the settings
    from tidemark.config import Settings

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(cfg: Settings) -> None:
    """Logging for an entry point (CLI, job, bench): ``cfg.log_level`` for tidemark, WARNING for the rest."""
    level = cfg.log_level.upper()
    handler = logging.StreamHandler(sys.stderr)
    if cfg.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("tidemark").setLevel(level)
    # Client libraries are chatty at INFO; keep them at WARNING unless debugging.
    for noisy in ("kafka", "py4j", "clickhouse_driver"):
        logging.getLogger(noisy).setLevel(logging.WARNING if level != "DEBUG" else logging.INFO)
