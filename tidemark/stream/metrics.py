"""Stream health: Spark progress into ClickHouse, and the summary `tidemark status` prints."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

from pyspark.sql.streaming import StreamingQueryListener

from tidemark.config import Settings

log = logging.getLogger(__name__)

PROGRESS_COLUMNS = (
    "stream_id",
    "batch_id",
    "reported_at",
    "input_rows",
    "input_rows_per_s",
    "processed_rows_per_s",
    "duplicates_dropped",
    "duration_ms",
    "watermark",
    "end_offsets",
    "consumer_lag",
)


def kafka_offsets(raw: str | dict | None, topic: str) -> dict[int, int]:
    """Spark's kafka source offset JSON (``{"topic": {"0": 12, "1": 40}}``) -> {partition: offset}."""
    if not raw:
        return {}
    doc = json.loads(raw) if isinstance(raw, str) else raw
    return {int(p): int(o) for p, o in (doc.get(topic) or {}).items()}


def consumer_lag(end: dict[int, int], latest: dict[int, int]) -> int:
    """Records behind the newest offsets the source saw when it planned the batch (-1 if unknown)."""
    if not latest:
        return -1
    return sum(max(0, off - end.get(p, 0)) for p, off in latest.items())


# Spark's own per-batch measurements worth keeping (durationMs phases; the state operator's work).
_STATE_FIELDS = (
    "numRowsTotal",
    "numRowsUpdated",
    "numRowsRemoved",
    "allUpdatesTimeMs",
    "allRemovalsTimeMs",
    "commitTimeMs",
)


def batch_profile(progress) -> dict:
    """What Spark measured for one micro-batch: ``durationMs`` per phase (``addBatch`` is the
    foreachBatch writer, ``queryPlanning``, ``latestOffset``, ``walCommit``, ``commitOffsets``...)
    and, per state operator, its rows and the time spent updating, evicting and committing state."""
    profile: dict = {f"{k}_ms": int(v) for k, v in (progress.durationMs or {}).items()}
    for op in progress.stateOperators or []:
        for name in _STATE_FIELDS:
            profile[f"state_{name}"] = int(getattr(op, name) or 0)
    return profile


def _duplicates_dropped(progress) -> int:
    for op in progress.stateOperators or []:
        metrics = op.customMetrics or {}
        if "numDroppedDuplicateRows" in metrics:
            return int(metrics["numDroppedDuplicateRows"])
    return 0


class ProgressListener(StreamingQueryListener):
    """Records Spark's per-batch progress (input rows and rates, duplicates dropped, consumer lag
    from the kafka source's own latest offsets).

    Best effort: metrics must never stop the stream, so failures are logged and skipped.
    """

    def __init__(self, cfg: Settings, stream_id: str, topic: str):
        self.cfg = cfg
        self.stream_id = stream_id
        self.topic = topic
        self._ch = None

    def onQueryStarted(self, event):  # noqa: N802 (Spark's API names)
        pass

    def onQueryIdle(self, event):  # noqa: N802
        pass

    def onQueryTerminated(self, event):  # noqa: N802
        pass

    def onQueryProgress(self, event):  # noqa: N802
        try:
            self._record(event.progress)
        except Exception as exc:  # noqa: BLE001 - never let metrics break the stream
            self._ch = None
            log.warning("could not record stream progress", extra={"error": str(exc)[:300]})

    def _record(self, p) -> None:
        from tidemark.io.clickhouse import client, insert_rows

        if p.numInputRows:
            log.info("batch progress", extra={"batch_id": p.batchId, "input_rows": p.numInputRows, **batch_profile(p)})

        source = p.sources[0] if p.sources else None
        end = kafka_offsets(source.endOffset, self.topic) if source else {}
        # latestOffset: what the broker had when the batch was planned; no extra consumer needed.
        lag = consumer_lag(end, kafka_offsets(source.latestOffset, self.topic)) if source else -1
        row = (
            self.stream_id,
            p.batchId,
            datetime.now(timezone.utc),
            p.numInputRows,
            float(p.inputRowsPerSecond or 0.0),
            float(p.processedRowsPerSecond or 0.0),
            _duplicates_dropped(p),
            int((p.durationMs or {}).get("triggerExecution", 0)),
            (p.eventTime or {}).get("watermark", ""),
            json.dumps(end, sort_keys=True),
            lag,
        )
        if self._ch is None:
            self._ch = client(self.cfg.clickhouse)
        insert_rows(self._ch, f"{self.cfg.clickhouse.database}.stream_progress", PROGRESS_COLUMNS, [row])


def health(cfg: Settings, window_s: int = 900) -> dict:
    """The stream's recent health from ClickHouse: last commit, freshness of live events over the
    window's batches (replayed or backfilled events shown apart), lag, rates."""
    from tidemark.io.clickhouse import client

    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database
    last = ch.execute(
        f"SELECT stream_id, max(batch_id), max(committed_at), 0, 0, "
        f"sum(valid_rows), sum(rejected_rows), "
        f"sum(late_rows) FROM {db}.stream_batches "
        f"WHERE committed_at >= (SELECT max(committed_at) FROM {db}.stream_batches) - {int(window_s)} "
        f"GROUP BY stream_id ORDER BY max(committed_at) DESC LIMIT 1"
    )
    if not last:
        return {"running": False, "detail": "no committed micro-batch yet"}
    stream_id, batch_id, committed_at, _, _, valid, rejected, late = last[0]
    from tidemark.stream.reconcile import backfill, measured_freshness_s

    # The window is anchored on the stream's last commit, in SQL (no client clock or time zone).
    recent = (
        f"stream_id = %(s)s AND committed_at >= (SELECT max(committed_at) FROM {db}.stream_batches "
        f"WHERE stream_id = %(s)s) - {int(window_s)}"
    )
    horizon = cfg.spark.allowed_lateness_s
    f50, f95 = measured_freshness_s(ch, db, recent, {"s": stream_id}, (0.5, 0.95), live_within_s=horizon)
    replayed = backfill(ch, db, recent, {"s": stream_id}, horizon)
    progress = ch.execute(
        f"SELECT argMax(consumer_lag, batch_id), avg(input_rows_per_s), avg(processed_rows_per_s) "
        f"FROM {db}.stream_progress WHERE stream_id = %(s)s AND reported_at >= now() - {int(window_s)}",
        {"s": stream_id},
    )
    lag, in_rate, proc_rate = progress[0] if progress else (None, None, None)
    return {
        "stream_id": stream_id,
        "last_batch_id": batch_id,
        "last_commit": committed_at.isoformat() if committed_at else None,
        "freshness_p50_s": f50,  # None: no live event in the window
        "freshness_p95_s": f95,
        "freshness_live_within_s": horizon,
        **replayed.as_dict(),
        "consumer_lag": lag,
        "input_rows_per_s": round(in_rate or 0.0, 1),
        "processed_rows_per_s": round(proc_rate or 0.0, 1),
        "window_s": window_s,
        "valid_rows": valid,
        "rejected_rows": rejected,
        "late_rows": late,
    }
