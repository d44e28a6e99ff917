"""Which Delta commit added data to which event hour: the index behind the dirty-hour rule.

An hour is *dirty* when a commit after the table version its published run read has added data
files to the hour's partition. That one rule covers late events, on-time events that arrived
after the publish, and events that landed while the recompute ran.

The answer is in the Delta log itself: every commit file ``_delta_log/<version>.json`` lists its
``add`` actions with their partition values and a ``dataChange`` flag (false for compaction, so
OPTIMIZE never dirties an hour). Neither delta-spark nor delta-rs exposes "partitions added per
commit" without reading data (change data feed) or replaying whole snapshots, so this reads the
commit files directly (their format is the Delta protocol's, "Delta Log Entries") and keeps an
incremental index in ClickHouse (``lake_commits``): each commit is read once, and the question
"did any commit after V touch hour H?" is one indexed query.

If the commit files the index needs were already cleaned up (log retention, 30 days by default),
the index falls back to the oldest snapshot it can read and records every hour in it at that
version: every published hour older than that looks dirty, which costs recomputes, never data.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone

from tidemark.config import ObjectStoreSettings, Settings
from tidemark.io.clickhouse import client, insert_rows
from tidemark.object_store import delta_table, filesystem

log = logging.getLogger(__name__)

COLUMNS = ("table_uri", "version", "event_hour", "files", "records", "commit_time")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)  # event_hour of a watermark-only row
_LAST_HOUR = datetime(2106, 2, 7, 6, tzinfo=timezone.utc)  # the last hour start a DateTime (UInt32 s) holds
_COMMIT = re.compile(r"^(\d{20})\.json$")
CHUNK_VERSIONS = 2000  # commits per INSERT (one block: lands whole or not at all)


@dataclass(frozen=True)
class HourAdds:
    version: int
    event_hour: datetime
    files: int
    records: int
    commit_time: datetime


def _hour_of(partition: dict) -> datetime | None:
    """The partition's event hour; None when there is none, or when it lies outside what ClickHouse's
    DateTime stores (events from before the contract bounded event_time): such an hour can be neither
    indexed nor published, and must not make every indexing run fail."""
    try:
        day = date.fromisoformat(partition["event_date"])
        hour = datetime(day.year, day.month, day.day, int(partition["event_hour"]), tzinfo=timezone.utc)
    except (KeyError, TypeError, ValueError):
        return None
    return hour if EPOCH <= hour <= _LAST_HOUR else None


def parse_commit(version: int, text: str) -> list[HourAdds]:
    """The data files a commit added, per event hour (data changes only)."""
    hours: dict[datetime, list[int]] = {}
    commit_ms = None
    for line in text.splitlines():
        if not line.strip():
            continue
        action = json.loads(line)
        if "commitInfo" in action:
            commit_ms = action["commitInfo"].get("timestamp")
        add = action.get("add")
        if not add or add.get("dataChange") is False:
            continue
        hour = _hour_of(add.get("partitionValues") or {})
        if hour is None:
            continue
        records = 0
        if add.get("stats"):
            try:
                records = int(json.loads(add["stats"]).get("numRecords") or 0)
            except (ValueError, TypeError):
                records = 0
        counts = hours.setdefault(hour, [0, 0])
        counts[0] += 1
        counts[1] += records
    when = datetime.fromtimestamp(commit_ms / 1000, timezone.utc) if commit_ms else EPOCH
    return [HourAdds(version, h, f, r, when) for h, (f, r) in sorted(hours.items())]


def commit_versions(table_path: str, store: ObjectStoreSettings | None = None) -> list[int]:
    """Versions that still have a commit file, ascending (``store``: how to reach an s3a:// table)."""
    from pyarrow import fs

    files, root = filesystem(store, table_path)
    try:
        infos = files.get_file_info(fs.FileSelector(f"{root}/_delta_log", allow_not_found=True))
    except FileNotFoundError:
        return []
    versions = []
    for info in infos:
        m = _COMMIT.match(info.base_name)
        if m:
            versions.append(int(m.group(1)))
    return sorted(versions)


def _read_commit(table_path: str, version: int, store: ObjectStoreSettings | None) -> str:
    files, root = filesystem(store, table_path)
    with files.open_input_stream(f"{root}/_delta_log/{version:020d}.json") as stream:
        return stream.read().decode()


def _snapshot_hours(table_path: str, version: int, store: ObjectStoreSettings | None) -> list[HourAdds]:
    """Every event hour in the table at ``version`` (the fallback when commit files are gone)."""
    table = delta_table(store, table_path, version=version)
    import pyarrow as pa

    actions = pa.table(table.get_add_actions(flatten=True)).to_pydict()  # arro3 -> pyarrow (Arrow C stream)
    hours: dict[datetime, list[int]] = {}
    for day, hr, n in zip(
        actions.get("partition.event_date", []),
        actions.get("partition.event_hour", []),
        actions.get("num_records", [None] * len(actions.get("path", []))),
        strict=True,
    ):
        hour = _hour_of({"event_date": str(day), "event_hour": hr})
        if hour is not None:
            counts = hours.setdefault(hour, [0, 0])
            counts[0] += 1
            counts[1] += int(n or 0)
    now = datetime.now(timezone.utc)
    return [HourAdds(version, h, f, r, now) for h, (f, r) in sorted(hours.items())]


def indexed_version(cfg: Settings, table: str) -> int | None:
    """The newest commit of the lake table ``table`` (e.g. 'events_raw') already indexed."""
    ((n, top),) = client(cfg.clickhouse).execute(
        f"SELECT count(), max(version) FROM {cfg.clickhouse.database}.lake_commits WHERE table_uri = %(t)s",
        {"t": cfg.lake.table(table)},
    )
    return int(top) if n else None


def index(cfg: Settings, table: str = "events_raw") -> int:
    """Bring the ``lake_commits`` index up to the table's latest commit. Returns commits read.
    Idempotent and safe to run concurrently: a commit indexed twice only repeats rows, and every
    question asked of the index is "is there any row", never a sum."""
    path = cfg.lake.table(table)
    done = indexed_version(cfg, table)
    versions = [v for v in commit_versions(path, cfg.object_store) if done is None or v > done]
    if not versions:
        return 0
    ch = client(cfg.clickhouse)
    target = f"{cfg.clickhouse.database}.lake_commits"
    read = 0
    expected_first = 0 if done is None else done + 1
    if versions[0] > expected_first:
        # Commits [expected_first, versions[0]) are gone from the log: index the oldest readable
        # snapshot instead (conservative: see the module docstring).
        log.warning(
            "delta commit files missing; indexing a whole snapshot instead",
            extra={"table": table, "missing_from": expected_first, "first_available": versions[0]},
        )
        rows = _snapshot_hours(path, versions[0], cfg.object_store)
        insert_rows(
            ch,
            target,
            COLUMNS,
            [(path, r.version, r.event_hour, r.files, r.records, r.commit_time) for r in rows]
            or [(path, versions[0], EPOCH, 0, 0, EPOCH)],
        )
        versions = versions[1:]
        read = 1
    started = time.monotonic()
    for i in range(0, len(versions), CHUNK_VERSIONS):
        chunk = versions[i : i + CHUNK_VERSIONS]
        batch: list[tuple] = []
        for v in chunk:
            batch.extend(
                (path, a.version, a.event_hour, a.files, a.records, a.commit_time)
                for a in parse_commit(v, _read_commit(path, v, cfg.object_store))
            )
        batch.append((path, chunk[-1], EPOCH, 0, 0, EPOCH))  # the watermark, even if no hour was touched
        insert_rows(ch, target, COLUMNS, batch)
        read += len(chunk)
        if len(versions) > CHUNK_VERSIONS:
            log.info(
                "indexing delta log",
                extra={
                    "table": table,
                    "commits": read,
                    "of": len(versions),
                    "per_s": round(read / max(time.monotonic() - started, 1e-6)),
                },
            )
    return read


def hours_with_data(cfg: Settings, start: datetime, end: datetime, table: str = "events_raw") -> dict[datetime, int]:
    """Event hours in [start, end) that the lake has data for -> the newest version adding to them."""
    rows = client(cfg.clickhouse).execute(
        f"SELECT toUInt32(event_hour), max(version) FROM {cfg.clickhouse.database}.lake_commits "
        f"WHERE table_uri = %(t)s AND event_hour >= toDateTime(%(s)s) AND event_hour < toDateTime(%(e)s) "
        f"AND files > 0 GROUP BY event_hour ORDER BY event_hour",
        {"t": cfg.lake.table(table), "s": int(start.timestamp()), "e": int(end.timestamp())},
    )
    return {datetime.fromtimestamp(h, timezone.utc): int(v) for h, v in rows}
