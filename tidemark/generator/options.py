"""What traffic to generate: ``TrafficOptions`` and the bounds they are checked against (the
pipeline's allowed lateness, the malformed kinds, one per contract reason code)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tidemark.generator.injections import Injection

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

# The pipeline calls an event late when kafka_timestamp - event_time exceeds this.
PIPELINE_ALLOWED_LATENESS_MS = 10 * MINUTE_MS
MAX_ON_TIME_JITTER_MS = 5_000  # the default on-time lateness (ontime_max_lateness_ms)
DEFAULT_POISON_DEPTH = 5_000
POISON_KIND = "poison"
MIN_DUPLICATE_DELAY_MS = 1_000
MAX_DUPLICATE_DELAY_MS = 60_000
DEFAULT_RATE = 1000.0

# One kind per payload reason code (tidemark.contract.PAYLOAD_REASONS). The record-level codes
# (contract.RECORD_REASONS: a Kafka timestamp far from the reading stream's clock) are not
# generated: they depend on when the stream reads the record, and the generator simulates time.
MALFORMED_KINDS = (
    "not_json",
    "truncated_json",
    "missing_field",
    "wrong_type",
    "unknown_device",
    "bad_country",
    "unparsable_time",
    "future_time",
    "expired_time",
    "oversize_payload",
    "empty_tenant",
    "invalid_utf8",
    "not_an_object",
    "invalid_event_id",
    "bad_page",
    "unsupported_version",
    "invalid_tenant",
    "invalid_field",
    "out_of_range_time",
)


@dataclass(frozen=True)
class TrafficOptions:
    start_ms: int
    count: int
    rate: float = DEFAULT_RATE
    seed: int = 42
    tenants: int = 5
    late_fraction: float = 0.02
    min_lateness_ms: int = 15 * MINUTE_MS
    max_lateness_ms: int = 2 * HOUR_MS
    duplicate_fraction: float = 0.01
    malformed_fraction: float = 0.01
    # Edge cases (defaults: off / today's behaviour).
    ontime_max_lateness_ms: int = MAX_ON_TIME_JITTER_MS  # on-time lateness bound, <= the allowed 10 min
    ontime_lag_fraction: float = 1.0  # share of on-time events drawn up to ontime_max_lateness (rest: 0-5 s)
    hour_boundary_fraction: float = 0.0  # valid events put exactly on xx:59:59.999 / xx:00:00.000
    poison_fraction: float = 0.0  # deeply nested JSON records
    poison_depth: int = DEFAULT_POISON_DEPTH
    partitions: int = 4
    retention_days: int = 30
    max_future_skew_s: int = 300
    max_payload_bytes: int = 65536
    # Anomalies to inject and the daily/weekly traffic shape (tidemark/generator/injections.py).
    injections: tuple[Injection, ...] = ()
    seasonality: float = 0.0
    # The tenants' sites (users, pages, home country) from this seed instead of ``seed``: runs of
    # different seeds (e.g. one per simulated hour) then simulate the same sites.
    catalog_seed: int | None = None

    def check(self) -> None:
        """Raise ValueError for inconsistent options."""
        if self.count < 0:
            raise ValueError("count must be >= 0")
        if not 0.0 <= self.seasonality <= 0.9:
            raise ValueError(f"seasonality must be within [0, 0.9], got {self.seasonality}")
        for injection in self.injections:
            injection.check()
        if not self.rate > 0:
            raise ValueError("rate must be > 0")
        if not 1 <= self.tenants <= 10_000:
            raise ValueError("tenants must be in [1, 10000]")
        if self.partitions < 1:
            raise ValueError("partitions must be >= 1")
        for name in (
            "late_fraction",
            "duplicate_fraction",
            "malformed_fraction",
            "ontime_lag_fraction",
            "hour_boundary_fraction",
            "poison_fraction",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if not 0 <= self.ontime_max_lateness_ms <= PIPELINE_ALLOWED_LATENESS_MS:
            raise ValueError(
                f"on-time max lateness must be within [0, {PIPELINE_ALLOWED_LATENESS_MS}] ms "
                f"(the pipeline's allowed lateness), got {self.ontime_max_lateness_ms}"
            )
        if self.min_lateness_ms > self.max_lateness_ms:
            raise ValueError("min lateness must not exceed max lateness")
        if self.min_lateness_ms <= max(MAX_ON_TIME_JITTER_MS, self.ontime_max_lateness_ms):
            raise ValueError(
                "min lateness must exceed the on-time lateness "
                f"({max(MAX_ON_TIME_JITTER_MS, self.ontime_max_lateness_ms)} ms)"
            )
        if self.poison_fraction and not 1 <= self.poison_depth <= (self.max_payload_bytes - 1024) // 6:
            raise ValueError(
                f"poison depth must be within [1, {(self.max_payload_bytes - 1024) // 6}] so the "
                "payload stays under max_payload_bytes (an oversize payload is rejected first)"
            )
        if self.max_lateness_ms >= self.retention_days * DAY_MS:
            raise ValueError("max lateness must be shorter than the retention period")
        if self.min_lateness_ms <= PIPELINE_ALLOWED_LATENESS_MS:
            log.warning(
                "min lateness %d ms is within the pipeline's 10 minute allowed lateness: "
                "some events counted late here will be on time for the pipeline",
                self.min_lateness_ms,
            )

    def send_ms(self, index: int) -> int:
        return self.start_ms + int(index * 1000 / self.rate)
