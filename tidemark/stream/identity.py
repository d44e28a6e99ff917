"""Who a stream is, and which stream serves a topic.

``StreamIdentity`` lives beside the checkpoint (it survives restarts); its epoch makes every
row version the stream writes unique (``stream_version``). The registry of identities
(ClickHouse ``stream_identities``) records every stream that ever started; the registry of
promotions (``stream_promotions``) decides which one serves each topic.

A stream identity is a checkpoint: its ``stream_id`` and its version ``epoch`` (its rows carry
versions in [epoch * 1e9, (epoch + 1) * 1e9)). Per Kafka topic, the *current* identity is the
one named by the topic's latest promotion. Serving, the batch layer's completeness sensor and
``retire`` all read that one fact. Serving counts a streaming row only if it belongs to a current
identity and to a micro-batch that identity has committed (a version at or below its last
registry row), so:

* a partial batch (rows written, registry row not yet) is never counted;
* a second checkpoint on a topic (a debugging run, a replacement replaying the topic) never
  counts, never doubles a total and never takes over: it is a *candidate* until ``promote``
  (``tidemark stream-promote``, logged as a ``stream_promotions`` row) names it;
* the first stream on a topic that has no current identity is promoted on its own, so a fresh
  install needs no extra step (``tidemark.stream.admission``).

Which stream may start, and as what, is decided in ``tidemark.stream.admission``.

Rows of superseded identities (not current, and passed over by a promotion of another stream at
least ``RETIRE_GRACE`` ago) are deleted by ``retire`` (``tidemark stream-retire``, the late DAG,
tiering). Within the grace period a promotion can be undone by promoting the old stream back.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import secrets
import socket
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tidemark import object_store
from tidemark.config import ObjectStoreSettings, Settings
from tidemark.errors import TidemarkError
from tidemark.io.clickhouse import client, insert_rows

log = logging.getLogger(__name__)

EPOCH_FACTOR = 1_000_000_000  # version = epoch * EPOCH_FACTOR + batch id
IDENTITY_FILE = "tidemark_stream.json"


@dataclass(frozen=True)
class StreamIdentity:
    """Who this stream is, stored beside its checkpoint so it survives restarts.

    ``epoch`` is drawn at random when the checkpoint is created: ClickHouse
    versions (epoch * 1e9 + batch id) then stay unique across checkpoints, even
    for streams started in the same second or a checkpoint reset to batch 0,
    and one stream's rows are the version range [epoch * 1e9, (epoch + 1) * 1e9).
    ``created_at`` is when the checkpoint was created (informative: which stream
    serves is decided by promotions, see ``current``).
    """

    stream_id: str
    epoch: int
    created_at: datetime

    @classmethod
    def load(cls, checkpoint: str, store: ObjectStoreSettings | None = None) -> StreamIdentity | None:
        """The identity stored in ``checkpoint``, or None (never creates one). ``store``: how to reach an
        s3a:// checkpoint."""
        path = f"{checkpoint.rstrip('/')}/{IDENTITY_FILE}"
        text = object_store.read_text(store, path)
        if text is None:
            return None
        doc = json.loads(text)
        created = doc.get("created_at")
        if not created:  # files written before created_at was recorded (always local then)
            created = datetime.fromtimestamp(Path(path).stat().st_mtime, timezone.utc).isoformat()
        return cls(doc["stream_id"], int(doc["epoch"]), datetime.fromisoformat(created))

    @classmethod
    def load_or_create(cls, checkpoint: str, store: ObjectStoreSettings | None = None) -> StreamIdentity:
        found = cls.load(checkpoint, store)
        if found is not None:
            return found
        ident = cls(uuid.uuid4().hex, secrets.randbelow(9_000_000_000) + 1, datetime.now(timezone.utc))
        doc = {"stream_id": ident.stream_id, "epoch": ident.epoch, "created_at": ident.created_at.isoformat()}
        object_store.write_text(store, f"{checkpoint.rstrip('/')}/{IDENTITY_FILE}", json.dumps(doc))
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
PROMOTION_COLUMNS = ("topic", "stream_id", "epoch", "sequence", "promoted_at", "promoted_by", "reason")
RETIRE_GRACE = timedelta(minutes=10)
STREAM_TABLES = ("minute_rollups", "hour_rollups", "day_rollups")

# Current identities: per topic, the stream its latest promotion names (SQL shared by serving and
# the batch layer). ``sequence`` (microseconds at promotion) orders a topic's promotions.
# (Aliases differ from column names: 18.16 resolves an alias inside the aggregates otherwise.)
CURRENT_SQL = (
    "SELECT argMax(stream_id, sequence) AS current_id, argMax(epoch, sequence) AS current_epoch, "
    "topic, argMax(promoted_at, sequence) AS current_since FROM {db}.stream_promotions GROUP BY topic"
)


class PromotionRefused(TidemarkError, RuntimeError):
    """A promotion that would hide events or resurrect retired rows; the message says what to do."""


@dataclass(frozen=True)
class Identity:
    stream_id: str
    epoch: int
    topic: str
    created_at: datetime  # for a current identity (``current``): when it was promoted


@dataclass(frozen=True)
class Registered:
    """A stream identity as the registry knows it."""

    stream_id: str
    epoch: int
    topic: str
    checkpoint: str
    registered_at: datetime
    starting_offsets: str


def register(
    cfg: Settings,
    stream_id: str,
    epoch: int,
    topic: str,
    checkpoint: str,
    created_at: datetime,
    starting_offsets: str = "",
) -> None:
    """Record a stream identity (once; a restart of the same checkpoint re-registers nothing).
    Registering never makes a stream current: see ``promote`` and ``tidemark.stream.admission``."""
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
            (*COLUMNS, "starting_offsets"),
            [(stream_id, epoch, topic, checkpoint, created_at, datetime.now(timezone.utc), starting_offsets)],
        )


def registered(cfg: Settings, stream_id: str, topic: str | None = None) -> list[Registered]:
    """The registry's rows of one stream (one per topic it consumed)."""
    rows = client(cfg.clickhouse).execute(
        f"SELECT stream_id, any(epoch), topic, any(checkpoint), max(registered_at), any(starting_offsets) "
        f"FROM {cfg.clickhouse.database}.stream_identities WHERE stream_id = %(s)s "
        f"{'AND topic = %(t)s' if topic is not None else ''} GROUP BY stream_id, topic ORDER BY topic",
        {"s": stream_id, "t": topic},
    )
    return [Registered(s, int(e), t, c, r, o) for s, e, t, c, r, o in rows]


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


def record_promotion(ch, db: str, topic: str, stream_id: str, epoch: int, *, by: str, reason: str) -> None:
    """The promotion itself: one ``stream_promotions`` row; from now on every reader counts ``stream_id``."""
    now = datetime.now(timezone.utc)
    insert_rows(
        ch,
        f"{db}.stream_promotions",
        PROMOTION_COLUMNS,
        [(topic, stream_id, epoch, time.time_ns() // 1000, now, by, reason)],
    )
    log.warning(
        "stream promoted: it now serves its topic",
        extra={"topic": topic, "stream_id": stream_id, "promoted_by": by, "reason": reason},
    )


def _utc(moment: datetime) -> datetime:
    """ClickHouse DateTime('UTC') values as aware UTC datetimes, whatever the driver returns."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def operator() -> str:
    """Who runs this process (user@host), recorded with a promotion."""
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def passed_over(cfg: Settings) -> dict[tuple[str, str], datetime]:
    """(stream_id, topic) -> when a promotion of another stream passed it over, for every identity
    that is not current: the first promotion of another stream after its own last promotion (or,
    never promoted, after it registered). An identity registered after the latest promotion of its
    topic is a candidate still waiting: it has no entry."""
    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database
    promotions: dict[str, list[tuple[int, str, datetime]]] = defaultdict(list)
    for topic, stream_id, seq, at in ch.execute(
        f"SELECT topic, stream_id, sequence, promoted_at FROM {db}.stream_promotions ORDER BY topic, sequence"
    ):
        promotions[topic].append((int(seq), stream_id, _utc(at)))
    out = {}
    for stream_id, topic, registered_at in ch.execute(
        f"SELECT stream_id, topic, max(registered_at) FROM {db}.stream_identities GROUP BY stream_id, topic"
    ):
        history = promotions.get(topic)
        if not history or history[-1][1] == stream_id:
            continue
        own = [seq for seq, s, _at in history if s == stream_id]
        # registered_at has 1 s resolution: a promotion in the same second does not count as after
        # it (when in doubt, keep a stream's rows: unread rows cost space, deleted ones cost data).
        since = own[-1] if own else (int(_utc(registered_at).timestamp()) + 1) * 1_000_000
        after = [at for seq, s, at in history if seq >= since and s != stream_id]
        if after:
            out[(stream_id, topic)] = after[0]
    return out


def superseded(cfg: Settings, *, now: datetime | None = None) -> list[Identity]:
    """Identities passed over by a promotion of another stream on their topic at least RETIRE_GRACE ago."""
    now = now or datetime.now(timezone.utc)
    replaced = passed_over(cfg)
    ch = client(cfg.clickhouse)
    rows = ch.execute(
        f"SELECT stream_id, any(epoch), topic, min(created_at) FROM {cfg.clickhouse.database}.stream_identities "
        f"GROUP BY stream_id, topic"
    )
    return [
        Identity(s, int(e), t, created)
        for s, e, t, created in rows
        if (s, t) in replaced and now - replaced[(s, t)] >= RETIRE_GRACE
    ]


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


@dataclass(frozen=True)
class Promotion:
    topic: str
    stream_id: str
    previous: str | None  # the stream that served before (None: the topic had none)
    changed: bool  # False: it already served

    def message(self) -> str:
        if not self.changed:
            return f"stream {self.stream_id} already serves topic {self.topic!r}; nothing changed"
        if self.previous is None:
            return f"stream {self.stream_id} now serves topic {self.topic!r}"
        return (
            f"stream {self.stream_id} now serves topic {self.topic!r} instead of {self.previous}: "
            f"{self.previous}'s rows stopped counting and are deleted after {int(RETIRE_GRACE.total_seconds() // 60)} "
            f"min (until then `tidemark stream-promote {self.previous}` undoes this). Stop the old stream's "
            f"process and keep this one running (`tidemark stream --checkpoint <its checkpoint>`)"
        )


def resolve(target: str) -> str:
    """A stream named by its checkpoint directory or by its stream_id -> its stream_id."""
    ident = StreamIdentity.load(target) if Path(target).is_dir() else None
    return ident.stream_id if ident else target


def promote(
    cfg: Settings, target: str, *, topic: str | None = None, force: bool = False, reason: str = ""
) -> Promotion:
    """Make the stream ``target`` (checkpoint directory or stream_id) the one serving its topic.

    Refused (``PromotionRefused``), unless ``force``, when readers would lose events: the stream has
    committed fewer Kafka offsets than the serving one on some partition (it has not caught up), or it
    started at 'latest' (it lacks the events before its start), or it was passed over longer than
    RETIRE_GRACE ago (its rows may already be retired). Idempotent: promoting the serving stream
    records nothing."""
    stream_id = resolve(target)
    found = registered(cfg, stream_id, topic)
    if not found:
        raise PromotionRefused(
            f"no stream {stream_id!r} is registered{f' on topic {topic!r}' if topic else ''}: a stream registers "
            f"when it starts (`tidemark stream --candidate --checkpoint DIR`); name it by that directory or its "
            f"stream_id"
        )
    if len(found) > 1:
        raise PromotionRefused(
            f"stream {stream_id} consumed several topics ({', '.join(r.topic for r in found)}): pass --topic"
        )
    cand = found[0]
    serving = current(cfg, cand.topic)
    if serving is not None and serving.stream_id == stream_id:
        return Promotion(cand.topic, stream_id, stream_id, changed=False)
    if not force and serving is not None:
        problems = _promotion_problems(cfg, cand, serving)
        if problems:
            raise PromotionRefused(
                f"not promoting stream {stream_id} on topic {cand.topic!r} (serving: {serving.stream_id}): "
                + "; ".join(problems)
                + ". --force promotes anyway (events it lacks stop counting until the batch layer publishes "
                "their hours)"
            )
    record_promotion(
        client(cfg.clickhouse),
        cfg.clickhouse.database,
        cand.topic,
        stream_id,
        cand.epoch,
        by=operator(),
        reason=reason or ("forced" if force else "tidemark stream-promote"),
    )
    return Promotion(cand.topic, stream_id, serving.stream_id if serving else None, changed=True)


def _promotion_problems(cfg: Settings, cand: Registered, serving: Identity) -> list[str]:
    problems = []
    replaced = passed_over(cfg).get((cand.stream_id, cand.topic))
    if replaced is not None and datetime.now(timezone.utc) - replaced >= RETIRE_GRACE:
        problems.append(
            f"it was passed over at {replaced.isoformat()}, so its rows may already be retired: start a new "
            f"checkpoint instead"
        )
    if cand.starting_offsets == "latest":
        problems.append(
            "it started at 'latest', so it lacks the topic's events before its start: replace the serving "
            "stream with a checkpoint started at 'earliest'"
        )
    mine = stream_offsets(cfg, cand.stream_id, cand.topic)
    theirs = stream_offsets(cfg, serving.stream_id, cand.topic)
    behind = {p: off - mine.get(p, 0) for p, off in theirs.items() if mine.get(p, 0) < off}
    if behind:
        problems.append(
            f"it has committed {sum(behind.values())} records fewer than the serving stream (per partition: "
            f"{behind}): let it catch up (`tidemark status`), or stop the serving stream first so it can"
        )
    return problems


def stream_offsets(cfg: Settings, stream_id: str, topic: str) -> dict[int, int]:
    """The Kafka offsets up to which the stream has committed micro-batches (Spark's progress,
    recorded after each batch's writes)."""
    rows = client(cfg.clickhouse).execute(
        f"SELECT end_offsets FROM {cfg.clickhouse.database}.stream_progress WHERE stream_id = %(s)s "
        f"ORDER BY batch_id DESC LIMIT 1",
        {"s": stream_id},
    )
    return {int(p): int(o) for p, o in json.loads(rows[0][0]).items()} if rows and rows[0][0] else {}
