"""Who a stream is, and which streams count.

``StreamIdentity`` lives beside the checkpoint (it survives restarts); its epoch makes every
row version the stream writes unique (``stream_version``). The registry of identities
(ClickHouse ``stream_identities``) decides which streams serving counts.

A stream identity is a checkpoint: its ``stream_id`` and its version ``epoch`` (its rows carry
versions in [epoch * 1e9, (epoch + 1) * 1e9)). Per Kafka topic, the newest identity is the
*current* one. Serving counts a streaming row only if it belongs to a current identity and to a
micro-batch that identity has committed (a version at or below its last registry row), so:

* a partial batch (rows written, registry row not yet) is never counted;
* a stream restarted from a fresh checkpoint, which replays the topic under a new epoch,
  replaces the old identity instead of doubling it;
* of two streams running at once on one topic, only the newer counts.

Rows of superseded identities are invisible at once and deleted by ``retire`` (``tidemark
stream-retire``) once they have been superseded for a grace period.
"""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tidemark.config import Settings
from tidemark.io.clickhouse import client, insert_rows

log = logging.getLogger(__name__)

EPOCH_FACTOR = 1_000_000_000  # version = epoch * EPOCH_FACTOR + batch id


@dataclass(frozen=True)
class StreamIdentity:
    """Who this stream is, stored beside its checkpoint so it survives restarts.

    ``epoch`` is drawn at random when the checkpoint is created: ClickHouse
    versions (epoch * 1e9 + batch id) then stay unique across checkpoints, even
    for streams started in the same second or a checkpoint reset to batch 0,
    and one stream's rows are the version range [epoch * 1e9, (epoch + 1) * 1e9).
    ``created_at`` orders identities of one topic: the newest is the one serving
    counts (see ``current``).
    """

    stream_id: str
    epoch: int
    created_at: datetime

    @classmethod
    def load_or_create(cls, checkpoint: str) -> StreamIdentity:
        path = Path(checkpoint) / "tidemark_stream.json"
        if path.exists():
            doc = json.loads(path.read_text())
            created = doc.get("created_at") or datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat()
            return cls(doc["stream_id"], int(doc["epoch"]), datetime.fromisoformat(created))
        path.parent.mkdir(parents=True, exist_ok=True)
        ident = cls(uuid.uuid4().hex, secrets.randbelow(9_000_000_000) + 1, datetime.now(timezone.utc))
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"stream_id": ident.stream_id, "epoch": ident.epoch, "created_at": ident.created_at.isoformat()})
        )
        tmp.replace(path)
        return ident


def stream_version(epoch: int, batch_id: int) -> int:
    """Unique across checkpoints (see StreamIdentity): epoch 1234567, batch 42 -> 1234567000000042."""
    if not 0 <= batch_id < EPOCH_FACTOR:
        raise ValueError(f"batch id {batch_id} out of range")
    return epoch * EPOCH_FACTOR + batch_id


def version_range(epoch: int) -> tuple[int, int]:
    """The versions one identity's rows carry: [epoch * 1e9, (epoch + 1) * 1e9 - 1]."""
    return epoch * EPOCH_FACTOR, (epoch + 1) * EPOCH_FACTOR - 1


COLUMNS = ("stream_id", "epoch", "topic", "checkpoint", "created_at", "registered_at")
RETIRE_GRACE = timedelta(minutes=10)
STREAM_TABLES = ("minute_rollups", "hour_rollups", "day_rollups")

# Current identities: the newest per topic (SQL shared by serving and the batch layer).
# (Aliases differ from column names: 18.16 resolves an alias inside the aggregates otherwise.)
# Ties (two checkpoints created in the same second) go to the larger stream_id, the same way everywhere.
CURRENT_SQL = (
    "SELECT argMax(stream_id, (created_at, stream_id)) AS current_id, "
    "argMax(epoch, (created_at, stream_id)) AS current_epoch, "
    "topic, max(created_at) AS current_since FROM {db}.stream_identities GROUP BY topic"
)


@dataclass(frozen=True)
class Identity:
    stream_id: str
    epoch: int
    topic: str
    created_at: datetime


def register(cfg: Settings, stream_id: str, epoch: int, topic: str, checkpoint: str, created_at: datetime) -> None:
    """Record a stream identity (once; a restart of the same checkpoint re-registers nothing)."""
    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database
    ((n,),) = ch.execute(
        f"SELECT count() FROM {db}.stream_identities WHERE topic = %(t)s AND stream_id = %(s)s",
        {"t": topic, "s": stream_id},
    )
    if not n:
        insert_rows(
            ch,
            f"{db}.stream_identities",
            COLUMNS,
            [(stream_id, epoch, topic, checkpoint, created_at, datetime.now(timezone.utc))],
        )


def current(cfg: Settings, topic: str) -> Identity | None:
    db = cfg.clickhouse.database
    rows = client(cfg.clickhouse).execute(
        f"SELECT current_id, current_epoch, topic, current_since FROM ({CURRENT_SQL.format(db=db)}) "
        f"WHERE topic = %(t)s",
        {"t": topic},
    )
    return Identity(*rows[0]) if rows else None


def counted_version_ranges(ch, db: str) -> list[tuple[int, int]]:
    """[(lowest, highest)] streaming versions serving counts: per current identity, its first
    version up to its last committed micro-batch."""
    rows = ch.execute(
        f"SELECT stream_id, max(version) FROM {db}.stream_batches WHERE stream_id IN "
        f"(SELECT current_id FROM ({CURRENT_SQL.format(db=db)})) GROUP BY stream_id"
    )
    return sorted(((int(v) // EPOCH_FACTOR) * EPOCH_FACTOR, int(v)) for _s, v in rows)


def superseded(cfg: Settings, *, now: datetime | None = None) -> list[Identity]:
    """Identities replaced by a newer one on their topic at least RETIRE_GRACE ago."""
    now = now or datetime.now(timezone.utc)
    db = cfg.clickhouse.database
    ch = client(cfg.clickhouse)
    newest = {
        t: (s, created)
        for s, _e, t, created in ch.execute(
            f"SELECT current_id, current_epoch, topic, current_since FROM ({CURRENT_SQL.format(db=db)})"
        )
    }
    out = []
    for s, e, t, created in ch.execute(f"SELECT stream_id, epoch, topic, created_at FROM {db}.stream_identities"):
        current_id, replaced_at = newest[t]
        if s != current_id and now - replaced_at >= RETIRE_GRACE:
            out.append(Identity(s, int(e), t, created))
    return out


def retire(cfg: Settings, *, now: datetime | None = None) -> dict[str, int]:
    """Delete the streaming rows of superseded identities (they are already invisible to readers).
    Returns rows deleted per stream_id. Idempotent."""
    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database
    out = {}
    for ident in superseded(cfg, now=now):
        lo, hi = version_range(ident.epoch)
        p = {"lo": lo, "hi": hi}
        cond = "layer = 'stream' AND version >= %(lo)s AND version <= %(hi)s"
        found = 0
        for table in STREAM_TABLES:
            ((n,),) = ch.execute(f"SELECT count() FROM {db}.{table} WHERE {cond}", p)
            if n:
                ch.execute(f"ALTER TABLE {db}.{table} DELETE WHERE {cond}", p)
                found += n
        if found:
            out[ident.stream_id] = found
            log.warning(
                "retired the rows of a superseded stream",
                extra={"stream_id": ident.stream_id, "topic": ident.topic, "rows": found},
            )
    return out


def stream_offsets(cfg: Settings, stream_id: str, topic: str) -> dict[int, int]:
    """The Kafka offsets up to which the stream has committed micro-batches (Spark's progress,
    recorded after each batch's writes)."""
    rows = client(cfg.clickhouse).execute(
        f"SELECT end_offsets FROM {cfg.clickhouse.database}.stream_progress WHERE stream_id = %(s)s "
        f"ORDER BY batch_id DESC LIMIT 1",
        {"s": stream_id},
    )
    return {int(p): int(o) for p, o in json.loads(rows[0][0]).items()} if rows and rows[0][0] else {}
