"""Whether a stream may start from its checkpoint, and as what: checked before Spark starts.

**The checkpoint is one unit.** The identity file (``tidemark_stream.json``: stream id, epoch) and
Spark's checkpoint (``spark/``: offsets, state, batch ids) belong together: the registry
(``stream_batches``) and Delta's txn check (app id ``tidemark-stream-<stream_id>``) both recognise a
micro-batch by (stream id, batch id). If ``spark/`` is removed or rolled back while the identity
stays, Spark numbers its batches from 0 (or from the older state) again, and every batch up to the
old maximum is skipped as already written: its events are silently lost. So a stream refuses to
start when its Spark state ends before the batches its identity has committed, and when Spark state
exists without an identity file (a new identity would resume mid-topic). The message says what to
do: restore the missing part, or remove the whole directory; a new directory is a new stream.

**Who serves.** Per topic, one stream serves (``tidemark.stream.identity``, ``stream_promotions``):

* the first stream on a topic that has none is promoted on its own (a fresh install, the demo);
* the serving stream restarts as usual;
* any other checkpoint is refused unless started with ``--candidate``: it then runs (lake appends
  and ClickHouse rows like any stream), but its rows never count and Airflow's completeness sensor
  ignores it until ``tidemark stream-promote`` names it. The refusal protects the lake too: a
  candidate appends every event it reads a second time (the batch layer dedups by event id, but the
  hours it touches turn dirty and are recomputed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from tidemark import object_store
from tidemark.config import ObjectStoreSettings, Settings
from tidemark.errors import TidemarkError
from tidemark.io.clickhouse import client
from tidemark.stream import identity
from tidemark.stream.identity import IDENTITY_FILE, StreamIdentity
from tidemark.stream.options import StreamOptions

log = logging.getLogger(__name__)

SERVING, CANDIDATE = "serving", "candidate"


class StreamRefused(TidemarkError, RuntimeError):
    """A stream that must not start; the message says why and what to do."""


@dataclass(frozen=True)
class Admission:
    identity: StreamIdentity
    role: str  # SERVING | CANDIDATE


def spark_last_batch(checkpoint: str, store: ObjectStoreSettings | None = None) -> int | None:
    """The newest micro-batch Spark planned in ``checkpoint`` (its offsets log, one file per batch id;
    Spark purges old entries, never the newest), or None when there is no Spark state."""
    ids = [int(n) for n in object_store.list_names(store, f"{checkpoint.rstrip('/')}/spark/offsets") if n.isdigit()]
    return max(ids) if ids else None


def orphan_state_problem(checkpoint: str, has_identity: bool, spark_last: int | None) -> str | None:
    """Spark state without an identity file: a new identity would resume mid-topic."""
    if has_identity or spark_last is None:
        return None
    return (
        f"checkpoint {checkpoint} holds Spark state (micro-batches up to {spark_last}) but no {IDENTITY_FILE}: a "
        f"new identity would resume mid-topic under a new stream id, while the stream that wrote this state "
        f"stops counting. Restore {checkpoint}/{IDENTITY_FILE} from a backup, or remove the whole directory "
        f"{checkpoint} to start a new stream (it reads the topic from its starting offsets); start it with "
        f"--candidate and run `tidemark stream-promote {checkpoint}` once it has caught up"
    )


def stale_state_problem(checkpoint: str, stream_id: str, committed: int | None, spark_last: int | None) -> str | None:
    """The identity has committed micro-batches the Spark state does not know: they would be re-numbered
    and skipped. (Spark plans batch k in its offsets log before the batch writes anything, so a healthy
    checkpoint's newest planned batch is never below the newest committed one.)"""
    if committed is None or (spark_last is not None and spark_last >= committed):
        return None
    state = f"is missing ({checkpoint}/spark)" if spark_last is None else f"ends at micro-batch {spark_last}"
    restart = 0 if spark_last is None else spark_last + 1
    return (
        f"checkpoint {checkpoint} belongs to stream {stream_id}, which has committed micro-batches up to "
        f"{committed}, but its Spark state {state}. Started, Spark would number its batches from {restart} again, "
        f"and the registry (stream_batches) and Delta's txn check (app id tidemark-stream-{stream_id}) would skip "
        f"every one up to {committed} as already written: their events would be lost. Restore {checkpoint}/spark "
        f"from a backup, or remove the whole directory {checkpoint} to start a new stream (it reads the topic from "
        f"its starting offsets); start it with --candidate and run `tidemark stream-promote {checkpoint}` once it "
        f"has caught up"
    )


def last_committed_batch(cfg: Settings, stream_id: str) -> int | None:
    ((n, last),) = client(cfg.clickhouse).execute(
        f"SELECT count(), max(batch_id) FROM {cfg.clickhouse.database}.stream_batches WHERE stream_id = %(s)s",
        {"s": stream_id},
    )
    return int(last) if n else None


def admit(cfg: Settings, opts: StreamOptions) -> Admission:
    """Check the checkpoint, register its identity, and decide its role. Raises StreamRefused."""
    ckpt = opts.checkpoint
    spark_last = spark_last_batch(ckpt, cfg.object_store)
    problem = orphan_state_problem(ckpt, StreamIdentity.load(ckpt, cfg.object_store) is not None, spark_last)
    if problem:
        raise StreamRefused(problem)
    ident = StreamIdentity.load_or_create(ckpt, cfg.object_store)
    problem = stale_state_problem(ckpt, ident.stream_id, last_committed_batch(cfg, ident.stream_id), spark_last)
    if problem:
        raise StreamRefused(problem)

    serving = identity.current(cfg, opts.topic)
    if serving is not None and serving.stream_id != ident.stream_id and not opts.candidate:
        raise StreamRefused(_not_serving(cfg, opts, ident, serving))
    identity.register(
        cfg, ident.stream_id, ident.epoch, opts.topic, ckpt, ident.created_at, starting_offsets=opts.starting_offsets
    )
    if serving is None:
        # Nothing serves the topic yet (a fresh install): the first stream does, with no extra step.
        # Two first streams at once both record a promotion; the later one serves, for every reader alike.
        identity.record_promotion(
            client(cfg.clickhouse),
            cfg.clickhouse.database,
            opts.topic,
            ident.stream_id,
            ident.epoch,
            by="first stream on topic",
            reason=f"checkpoint {ckpt}",
        )
        serving = identity.current(cfg, opts.topic)
    if serving is not None and serving.stream_id == ident.stream_id:
        return Admission(ident, SERVING)
    log.warning(
        "stream started as a candidate: its rows do not count until it is promoted",
        extra={
            "stream_id": ident.stream_id,
            "topic": opts.topic,
            "serving_stream_id": serving.stream_id if serving else None,
            "promote_with": f"tidemark stream-promote {ckpt}",
        },
    )
    return Admission(ident, CANDIDATE)


def _not_serving(cfg: Settings, opts: StreamOptions, ident: StreamIdentity, serving: identity.Identity) -> str:
    ckpt = opts.checkpoint
    serving_ckpt = next((r.checkpoint for r in identity.registered(cfg, serving.stream_id, opts.topic)), "")
    passed_over = identity.passed_over(cfg).get((ident.stream_id, opts.topic))
    if passed_over is not None:
        who = f"this checkpoint ({ckpt}, stream {ident.stream_id}) was replaced at {passed_over.isoformat()}"
    elif serving_ckpt and Path(serving_ckpt) == Path(ckpt):
        who = f"this checkpoint directory ({ckpt}) was recreated since that stream registered from it"
    else:
        who = f"this checkpoint ({ckpt}, stream {ident.stream_id}) is another stream"
    return (
        f"topic {opts.topic!r} is served by stream {serving.stream_id} (checkpoint {serving_ckpt or 'unknown'}); "
        f"{who}. Started, its rows would never count, and every event it reads would be appended to the lake a "
        f"second time. To replace the serving stream, start this one with --candidate and, once it has caught up, "
        f"run `tidemark stream-promote {ckpt}`"
        + (f"; to run the serving stream, pass --checkpoint {serving_ckpt}" if serving_ckpt != ckpt else "")
    )
