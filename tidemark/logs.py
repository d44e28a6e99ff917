"""Structured, quiet-by-default logging for every Tidemark process.

JSON lines on stderr (``TIDEMARK_LOG_FORMAT=json``, the default) or plain
text (``text``); both carry a record's structured extras (``extra={...}``), so
no line is only its bare message. Level from ``TIDEMARK_LOG_LEVEL`` (default WARNING), so a
command prints only its result unless asked for more.
"""

from __future__ import annotations

import json
import logging
import sys
import time

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def extras(record: logging.LogRecord) -> dict[str, object]:
    """What the caller passed as ``extra={...}``: every attribute a plain LogRecord lacks."""
    return {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(extras(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``: the extras as compact JSON values, so the
    line reads like the JSON format's and nothing the caller recorded is lost."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's API
        pairs = " ".join(f"{k}={json.dumps(v, default=str, separators=(',', ':'))}" for k, v in extras(record).items())
        line = super().formatMessage(record)
        return f"{line} {pairs}" if pairs else line


def configure(level: str | None = None, fmt: str | None = None) -> None:
    from tidemark.config import settings

    cfg = settings()
    level = (level or cfg.log_level).upper()
    handler = logging.StreamHandler(sys.stderr)
    if (fmt or cfg.log_format) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("tidemark").setLevel(level)
    # Client libraries are chatty at INFO; keep them at WARNING unless debugging.
    for noisy in ("kafka", "py4j", "clickhouse_driver"):
        logging.getLogger(noisy).setLevel(logging.WARNING if level != "DEBUG" else logging.INFO)
