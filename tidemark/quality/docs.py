"""The Data Docs site as a whole: rebuild, retention, serving (``tidemark quality docs``).

``build_docs()`` rebuilds the whole site from the stored suites and results and makes it render
offline (``tidemark.quality.offline``); ``serve(port)`` serves it on 127.0.0.1. ``validate()``
updates the site after every run by itself (the recompute's ``record()``, after its publish), so
this is for a fresh site, after a retention change, or to look at it.

The site index lists every stored result and rebuilding it costs about 1 s per 300 results, so
``build_docs`` prunes results older than the retention first (``prune``).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
from datetime import datetime, timedelta, timezone
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tidemark.quality import gx
from tidemark.quality.offline import localise

log = logging.getLogger(__name__)


def site_dir(home: Path) -> Path:
    """The Data Docs site (``gx.docs_dir(home)``)."""
    return gx.docs_dir(home)


_RUN_TIME_DIR = re.compile(r"^\d{8}T\d{6}\.\d{6}Z$")


def prune(home: Path, keep_days: int, now: datetime | None = None) -> int:
    """Delete validation results (GE store and site pages) whose run is older than keep_days.

    The site index lists every stored result and rebuilding it costs about 1 s per 300 results,
    so hourly runs need a retention. Call under ``gx.gx_lock()``. Returns the runs removed.
    """
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=keep_days)
    removed = 0
    store = gx.gx_root(home) / "uncommitted" / "validations"
    for root in (store, site_dir(home) / "validations"):
        if not root.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(root, topdown=True):
            for name in list(dirnames):
                if not _RUN_TIME_DIR.match(name):
                    continue
                dirnames.remove(name)  # never descend into a run
                run_time = datetime.strptime(name, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=timezone.utc)
                if run_time < cutoff:
                    shutil.rmtree(Path(dirpath) / name)
                    removed += root == store
        for dirpath, _, _ in sorted(os.walk(root), key=lambda item: -len(item[0])):
            if Path(dirpath) != root and not any(Path(dirpath).iterdir()):
                Path(dirpath).rmdir()
    return removed


def build_docs(home: Path, keep_days: int) -> Path:
    """Rebuild the whole site from the stored suites and validation results, then localise it.

    Results older than ``keep_days`` (the lake's retention, ``Settings.retention_days``) are pruned first.
    """
    gx.quiet()
    site = site_dir(home)
    with gx.gx_lock(home):
        ctx = gx.context(home)
        pruned = prune(home, keep_days)
        if pruned:
            log.info("pruned %d validation results older than %d days", pruned, keep_days)
        ctx.build_data_docs(site_names=[gx.SITE_NAME])
        localise(site)
    return site / "index.html"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("data docs: " + format, *args)


def serve(home: Path, keep_days: int, port: int = 8765, host: str = "127.0.0.1", rebuild: bool = True) -> None:
    """Serve the site over HTTP until interrupted (rebuilds it first unless rebuild=False)."""
    index = site_dir(home) / "index.html"
    if rebuild or not index.exists():
        index = build_docs(home, keep_days)
    handler = functools.partial(_QuietHandler, directory=str(index.parent))
    with ThreadingHTTPServer((host, port), handler) as server:
        print(f"Data Docs: http://{host}:{server.server_address[1]}/index.html (Ctrl-C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
