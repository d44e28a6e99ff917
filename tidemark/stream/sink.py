"""The speed layer's ClickHouse writer: exactly-once rollups without insert dedup.

ClickHouse 18.16 has no insert deduplication on non-replicated tables, so a
micro-batch replayed after a crash would count twice. The design:

* Every row the stream writes carries ``version`` = the micro-batch version
  (``stream epoch * 1e9 + batch id``, the epoch random per checkpoint), which
  is part of the sort key.
* ``stream_batches`` is the committed-batch registry: its row for a batch is
  written *last*, after the rollups and late-hour counts.
* Before every attempt to write a batch (retries included): if the registry
  has it, the batch is skipped (a replay of a fully committed batch, or a
  retry after an acknowledgement was lost). Otherwise, if an earlier attempt may
  have written part of it (first batch after a restart, or a retry after a
  failed insert), rows with that version are deleted first and the delete
  is awaited. Then the batch is written and registered.

So a batch lands once whatever the crash point: before the registry row, a
replay deletes and rewrites; after it, a replay is skipped.

Every value is made to fit its column here, where the rows are built (``fit_rows``,
``BatchMetrics.row``): a value clickhouse-driver cannot encode fails the same way on every retry
and every replay, so one such value would stop the stream for every tenant. DateTime columns
(UInt32 seconds, 1970..2106) get epoch seconds, never naive datetimes (which the driver would
read as UTC whatever zone they came from); a rollup or late-hour row outside that range is left
out with an error log (the contract rejects such events, so this is a guard, not a path: the event
itself is in the lake); freshness (UInt32 ms) is capped at its maximum. An encoding error that
still gets through is not retried: it cannot heal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from clickhouse_driver.errors import TypeMismatchError

from tidemark.config import ClickHouseSettings
from tidemark.errors import TidemarkError
from tidemark.io.clickhouse import client, insert_rows
from tidemark.stream import identity
from tidemark.stream.identity import stream_version
from tidemark.tables import ROLLUP_INPUT_COLUMNS

log = logging.getLogger(__name__)

LATE_COLUMNS = ("tenant_id", "event_hour", "version", "late_events", "last_ingest_time")
VERSIONED_TABLES = ("minute_rollups", "hour_rollups", "day_rollups", "late_event_hours")
UINT32_MAX = 2**32 - 1  # ClickHouse UInt32; DateTime is UInt32 seconds since the epoch
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class UnencodableValue(TidemarkError, RuntimeError):
    """clickhouse-driver refused a value (out of its column's range or of the wrong type): a bug
    in the row building, not an outage; retrying would send the same value again."""


def epoch_seconds(value: int | datetime) -> int:
    """A DateTime value as epoch seconds: an int as is, an aware datetime converted. A naive datetime
    is refused: its zone is unknown (collect() makes them in the driver's local zone)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass epoch seconds or an aware datetime")
        return (value - EPOCH) // timedelta(seconds=1)
    return int(value)


def fits_datetime(value: int | datetime) -> bool:
    return 0 <= epoch_seconds(value) <= UINT32_MAX


def stored_datetime(value: datetime | None) -> datetime:
    """``value`` clamped into what a DateTime column stores (a metric, never a key)."""
    seconds = min(max(epoch_seconds(value or EPOCH), 0), UINT32_MAX)
    return datetime.fromtimestamp(seconds, timezone.utc)


def fit_rows(table: str, rows: Sequence[tuple], datetime_positions: Sequence[int]) -> list[tuple]:
    """The rows whose DateTime values (at ``datetime_positions``) fit the column; the others are
    logged as errors and left out."""
    kept = [r for r in rows if all(fits_datetime(r[i]) for i in datetime_positions)]
    if len(kept) != len(rows):
        bad = [r for r in rows if not all(fits_datetime(r[i]) for i in datetime_positions)]
        log.error(
            "rows outside ClickHouse's DateTime range left out (the contract should have rejected their "
            "events; they are in the lake)",
            extra={"table": table, "rows": len(bad), "first": repr(bad[0][:4])[:300]},
        )
    return kept


@dataclass
class BatchMetrics:
    """What a micro-batch reports. Freshness is computed at the moment the batch
    is published: publish time minus event time, over the batch's on-time events."""

    stream_id: str
    batch_id: int
    version: int
    valid_rows: int = 0
    late_rows: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    rollup_rows: int = 0
    processing_ms: int = 0
    newest_event_time: datetime | None = None
    # on-time events per event-time step: {step start in epoch ms (multiple of FRESHNESS_STEP_MS): events}
    event_time_steps: dict[int, int] = field(default_factory=dict)
    committed_at: datetime | None = None

    def freshness_histogram(self) -> tuple[list[int], list[int]]:
        """(freshness ms, events) pairs, measured against ``committed_at``: when the batch becomes
        queryable. Each step's events count at the step's midpoint (error <= half a step). A lag
        beyond what freshness_ms (UInt32) holds, ~49.7 days (a replayed backlog), counts as that."""
        if self.committed_at is None:
            return [], []
        now_ms = int(self.committed_at.timestamp() * 1000)
        half = FRESHNESS_STEP_MS // 2
        hist: dict[int, int] = {}
        for start_ms, n in self.event_time_steps.items():
            lag = min(max(0, now_ms - (start_ms + half)), UINT32_MAX)
            lag -= lag % FRESHNESS_STEP_MS
            hist[lag] = hist.get(lag, 0) + n
        keys = sorted(hist)
        return keys, [hist[k] for k in keys]

    def freshness_quantile_s(self, q: float) -> float:
        lags, counts = self.freshness_histogram()
        return weighted_quantile(lags, counts, q) / 1000.0

    def row(self) -> tuple:
        reasons = sorted(self.rejected)
        lags, counts = self.freshness_histogram()
        return (
            self.stream_id,
            self.batch_id,
            self.version,
            self.committed_at,
            self.valid_rows,
            self.late_rows,
            sum(self.rejected.values()),
            reasons,
            [self.rejected[r] for r in reasons],
            self.rollup_rows,
            self.processing_ms,
            stored_datetime(self.newest_event_time),
            self.freshness_quantile_s(0.5),
            self.freshness_quantile_s(0.95),
            (lags[-1] / 1000.0) if lags else 0.0,
            lags,
            counts,
        )


def weighted_quantile(values: Sequence[int], weights: Sequence[int], q: float) -> float:
    """The q-quantile of sorted ``values`` repeated ``weights`` times (ClickHouse's
    quantileExactWeighted rule: the first value whose cumulative weight reaches q * total)."""
    total = sum(weights)
    if not total:
        return 0.0
    threshold, seen = q * total, 0
    for value, weight in zip(values, weights, strict=True):
        seen += weight
        if seen >= threshold:
            return float(value)
    return float(values[-1])


FRESHNESS_STEP_MS = 100
BATCH_COLUMNS = (
    "stream_id",
    "batch_id",
    "version",
    "committed_at",
    "valid_rows",
    "late_rows",
    "rejected_rows",
    "rejected_reasons",
    "rejected_counts",
    "rollup_rows",
    "processing_ms",
    "newest_event_time",
    "freshness_p50_s",
    "freshness_p95_s",
    "freshness_max_s",
    "freshness_ms",
    "freshness_events",
)


class RollupSink:
    def __init__(self, cfg: ClickHouseSettings, stream_id: str, *, retry_for_s: float = 600.0):
        self.cfg = cfg
        self.db = cfg.database
        self.stream_id = stream_id
        self.retry_for_s = retry_for_s
        self._ch = None
        self._clean_slate = False  # True once we know no partial write of ours can exist

    # -- connection with retry --------------------------------------------------------
    def _client(self):
        if self._ch is None:
            self._ch = client(self.cfg)
        return self._ch

    def _retrying(self, what: str, fn):
        """Run fn(client) until it succeeds or retry_for_s passes. ClickHouse outages block the stream
        (Kafka buffers meanwhile) instead of losing a batch."""
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.5
        while True:
            try:
                return fn(self._client())
            except (TypeMismatchError, TypeError, ValueError, OverflowError) as exc:
                # Raised by the driver while encoding rows, before anything is sent: the same rows
                # fail the same way on every attempt and every replay.
                self._ch = None
                self._clean_slate = False
                raise UnencodableValue(
                    f"ClickHouse at {self.cfg.address}: {what}: a value does not fit its column ({exc}); "
                    f"not retried (it cannot succeed). This is a bug in the stream's row building: "
                    f"report it with this message"
                ) from exc
            except Exception as exc:  # network errors and server errors alike
                self._ch = None
                self._clean_slate = False  # a failed write may have left part of a batch
                if time.monotonic() + delay > deadline:
                    raise RuntimeError(
                        f"ClickHouse at {self.cfg.address}: {what} kept failing for "
                        f"{self.retry_for_s:.0f}s; last error: {exc}"
                    ) from exc
                log.warning(
                    "clickhouse write failed; retrying",
                    extra={"what": what, "retry_in_s": delay, "error": str(exc)[:300]},
                )
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    # -- exactly-once protocol ----------------------------------------------------------------
    def _committed(self, ch, batch_id: int) -> bool:
        ((n,),) = ch.execute(
            f"SELECT count() FROM {self.db}.stream_batches WHERE stream_id = %(s)s AND batch_id = %(b)s",
            {"s": self.stream_id, "b": batch_id},
        )
        return n > 0

    def is_committed(self, batch_id: int) -> bool:
        return self._retrying("registry lookup", lambda ch: self._committed(ch, batch_id))

    def _remove_partial(self, ch, version: int) -> int:
        """Delete any rows an interrupted attempt wrote with this version; wait until they are gone."""
        found = 0
        for table in VERSIONED_TABLES:
            (count,) = ch.execute(f"SELECT count() FROM {self.db}.{table} WHERE version = %(v)s", {"v": version})[0]
            if count:
                found += count
                ch.execute(f"ALTER TABLE {self.db}.{table} DELETE WHERE version = %(v)s", {"v": version})
        deadline = time.monotonic() + 120
        while found:
            left = sum(
                ch.execute(f"SELECT count() FROM {self.db}.{t} WHERE version = %(v)s", {"v": version})[0][0]
                for t in VERSIONED_TABLES
            )
            if not left:
                log.warning("removed rows of an interrupted batch", extra={"version": version, "rows": found})
                break
            if time.monotonic() > deadline:  # mutations are asynchronous on 18.16
                raise RuntimeError(f"rows of version {version} were not deleted within 120 s")
            time.sleep(0.2)
        return found

    def write_batch(self, metrics: BatchMetrics, rollups: Sequence[tuple], late_hours: Sequence[tuple]) -> bool:
        """Write one micro-batch exactly once. Returns False if it was already committed (a replay)."""
        version = metrics.version
        # Built once, outside the retry loop; DateTime values as epoch seconds or aware datetimes.
        minute_at = ROLLUP_INPUT_COLUMNS.index("minute")
        rows = fit_rows("rollup_input", [("stream", version, *r) for r in rollups], [minute_at])
        late_rows = fit_rows("late_event_hours", [(t, h, version, n, last) for (t, h, n, last) in late_hours], [1, 4])

        def write(ch) -> bool:
            # Checked on every attempt, not once before the loop: an attempt whose registry insert
            # landed but whose acknowledgement was lost must end here, not delete and rewrite the
            # rows (a crash between the two would lose the batch) nor register it twice.
            if self._committed(ch, metrics.batch_id):
                return False
            if not self._clean_slate:
                self._remove_partial(ch, version)
            insert_rows(ch, f"{self.db}.rollup_input", ROLLUP_INPUT_COLUMNS, rows)
            insert_rows(ch, f"{self.db}.late_event_hours", LATE_COLUMNS, late_rows)
            metrics.committed_at = datetime.now(timezone.utc)
            self._register(ch, metrics)
            self._clean_slate = True
            return True

        written = self._retrying(f"write batch {metrics.batch_id}", write)
        if not written:
            log.info("batch already committed; skipping", extra={"batch_id": metrics.batch_id})
        return written

    def _register(self, ch, metrics: BatchMetrics) -> None:
        """The commit: the registry row, written last."""
        insert_rows(ch, f"{self.db}.stream_batches", BATCH_COLUMNS, [metrics.row()])


def register_loader(ch, db: str, name: str, epoch: int, last_batch: int) -> None:
    """Make streaming-layer rows written outside a stream count (tests, benches, a backfill tool):
    registers ``name`` as the current (promoted) identity of its own topic with batches [0, last_batch]
    committed, i.e. versions epoch * 1e9 .. epoch * 1e9 + last_batch."""
    now = datetime.now(timezone.utc)
    insert_rows(ch, f"{db}.stream_identities", identity.COLUMNS, [(name, epoch, f"loader:{name}", "", now, now)])
    identity.record_promotion(ch, db, f"loader:{name}", name, epoch, by="loader", reason="register_loader")
    empty: tuple[Any, ...] = (0, 0, 0, [], [], 0, 0, now, 0.0, 0.0, 0.0, [], [])
    insert_rows(
        ch, f"{db}.stream_batches", BATCH_COLUMNS, [(name, last_batch, stream_version(epoch, last_batch), now, *empty)]
    )
