"""The small Great Expectations layer shared by the gates and the Data Docs.

GE state is one file data context under ``<home>/quality/gx`` (great_expectations.yml, suites,
validation definitions, checkpoints, results); the Data Docs site is ``<home>/quality/data_docs``.
Both are shared by every process on the host (hourly recomputes, backfills, ``tidemark quality
docs``), so GE work happens under ``gx_lock()``. ``context()`` creates and configures the context
on first use and keeps it for the process.

Nothing here imports Great Expectations until ``context()`` is called, so the paths and the lock
are cheap to use.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from tidemark.config import Settings

if TYPE_CHECKING:  # GE's import costs seconds: only the checker reads it here
    from great_expectations.data_context.store.store import DataDocsSiteConfigTypedDict

SITE_NAME = "tidemark"

_LOCK = threading.RLock()  # GE's context is not thread-safe
_CONTEXTS: dict[str, Any] = {}


def quality_home(cfg: Settings) -> Path:
    """The folder holding GE's state and the Data Docs site, ``<TIDEMARK_HOME>/quality``: the
    ``home`` every function of the quality package takes."""
    return cfg.home / "quality"


def gx_root(home: Path) -> Path:
    """The GE file data context (great_expectations.yml, suites, results)."""
    return home / "gx"


def docs_dir(home: Path) -> Path:
    """The Data Docs site."""
    return home / "data_docs"


def quiet() -> None:
    """No analytics, no progress bars, no chatter from GE."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module=r"great_expectations(\.|$)")
    warnings.filterwarnings("ignore", message=r".*force_reuse_spark_context.*")
    # GE imports pyspark.sql.connect, which repeats PySpark's pandas-3 warning (see FACTS.md).
    warnings.filterwarnings("ignore", message=r"PySpark does not yet fully support pandas", category=FutureWarning)


@contextlib.contextmanager
def gx_lock(home: Path) -> Iterator[None]:
    """Serialise GE work across threads and processes (the file context and the site are shared)."""
    import fcntl

    root = gx_root(home)
    root.mkdir(parents=True, exist_ok=True)
    with _LOCK, open(root.parent / ".gx.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def site_config(base_directory: Path) -> dict[str, Any]:
    """GE's configuration of the Data Docs site Tidemark writes.

    Parameters
    ----------
    base_directory : Path
        Where the site's pages go.

    Returns
    -------
    dict
        A ``SiteBuilder`` config for ``add_data_docs_site`` / ``update_data_docs_site``:
        a plain filesystem store, no "how to" buttons.
    """
    return {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(base_directory)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }


def context(home: Path):
    """The file data context under <home>/gx, created and configured on first use.

    Call under ``gx_lock(home)``.
    """
    root = gx_root(home)
    key = str(root)
    if key in _CONTEXTS:
        return _CONTEXTS[key]
    quiet()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    root.parent.mkdir(parents=True, exist_ok=True)
    ctx = gx.get_context(mode="file", project_root_dir=str(root.parent))
    assert Path(ctx.root_directory).resolve() == root.resolve(), ctx.root_directory

    changed = False
    stored: Any = ctx.variables.progress_bars  # a ProgressBarsConfig, or a dict when read from the yml
    bars = dict(stored) if isinstance(stored, Mapping) else vars(stored) if stored else {}
    if bars.get("globally", True) or bars.get("metric_calculations", True):
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        changed = True
    if getattr(ctx.variables, "analytics_enabled", None) is not False:
        ctx.variables.analytics_enabled = False
        changed = True
    if changed:
        ctx.variables.save()
    sites = ctx.list_data_docs_sites()
    if "local_site" in sites:  # GE's default, under uncommitted/: ours is configured explicitly
        ctx.delete_data_docs_site("local_site")
    # GE's DataDocsSiteConfigTypedDict is incomplete by its own note (no show_how_to_buttons): cast.
    wanted = cast("DataDocsSiteConfigTypedDict", site_config(docs_dir(home)))
    if SITE_NAME not in sites:
        ctx.add_data_docs_site(SITE_NAME, wanted)
    elif sites[SITE_NAME] != wanted:
        ctx.update_data_docs_site(SITE_NAME, wanted)
    _CONTEXTS[key] = ctx
    return ctx


def validation_page(site: Path, identifier: Any) -> Path | None:
    """The HTML page GE wrote for a ValidationResultIdentifier, if it is there."""
    try:
        parts = [str(p) for p in identifier.to_tuple()]
    except Exception:  # noqa: BLE001 - best effort, for the result's convenience only
        return None
    page = site.joinpath("validations", *parts[:-1], f"{parts[-1]}.html")
    return page if page.exists() else None
