"""Reconcile what the pipeline published against the generator's manifest (the truth).

Used by `make demo`'s report (``tidemark reconcile``) and by the reconciliation tests. All stream-side
figures are restricted to one stream's version range, so other streams
writing to the same database never blur the comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from tidemark.config import Settings
from tidemark.hours import label
from tidemark.io.clickhouse import client
from tidemark.stream.identity import stream_offsets, version_range


def _minute(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M")


@dataclass(frozen=True)
class UsersCheck:
    """Distinct users per (tenant, hour): the manifest's against the stream's rows of that hour.

    Only like with like is compared: a tenant-hour whose rows hold exactly the events the manifest
    sent on time for it. Rows holding other traffic too (another run in the same hours, outside
    ``--since``) or missing events (the on-time line says so) count other users, so their error would
    measure the traffic mix, not the stream: such hours are listed as not comparable instead."""

    max_error: float = 0.0  # over the compared tenant-hours
    compared: int = 0
    not_comparable: list = field(default_factory=list)  # [tenant, hour, events sent on time, events in the rows]


TenantHours = dict[tuple[str, str], tuple[int, int]]  # (tenant, hour label) -> (events, distinct users)


def compare_users(expected: TenantHours, read: TenantHours) -> UsersCheck:
    """``expected``: (tenant, hour) -> (on-time events, on-time distinct users) from the manifest;
    ``read``: (tenant, hour) -> (events, distinct users) in the stream's rows. Pure, for tests."""
    errors: list[float] = []
    not_comparable: list[list] = []
    for key, (events, users) in sorted(expected.items()):
        if users <= 0:
            continue
        read_events, read_users = read.get(key, (0, 0))
        if read_events != events:
            not_comparable.append([*key, events, read_events])
            continue
        errors.append(abs(read_users - users) / users)
    return UsersCheck(max(errors, default=0.0), len(errors), not_comparable)


def expected_users(manifest: dict) -> TenantHours:
    """(tenant, hour) -> (on-time events, on-time distinct users), from a generator manifest."""
    events: dict[tuple[str, str], int] = {}
    for tenant, minute, *_dims, _all, on_time in manifest["minute_counts"]:
        key = (tenant, minute[:13])  # "YYYY-MM-DDTHH:MM" -> the hour's label
        events[key] = events.get(key, 0) + on_time
    return {(t, h): (events.get((t, h), 0), n) for t, h, _all, n in manifest["distinct_users_hour"]}


@dataclass
class StreamReport:
    on_time_expected: int
    on_time_published: int
    minute_keys_expected: int
    minute_keys_mismatched: list = field(default_factory=list)
    users_hour_max_error: float = 0.0  # over the tenant-hours compared (UsersCheck)
    users_hours_compared: int = 0
    users_hours_not_comparable: list = field(default_factory=list)
    late_expected: dict = field(default_factory=dict)
    late_published: dict = field(default_factory=dict)
    rejected_expected: dict = field(default_factory=dict)
    rejected_published: dict = field(default_factory=dict)
    duplicates_sent: int = 0
    duplicates_dropped: int = 0
    freshness_p50_s: float | None = None
    freshness_p95_s: float | None = None
    freshness_live_within_s: int = 0
    backfill: Backfill | None = None
    batches: int = 0

    @property
    def exact(self) -> bool:
        return (
            self.on_time_expected == self.on_time_published
            and not self.minute_keys_mismatched
            and self.late_expected == self.late_published
            and self.rejected_expected == self.rejected_published
        )

    def lines(self) -> list[str]:
        ok = lambda a, b: "OK" if a == b else "MISMATCH"  # noqa: E731
        return [
            f"on-time events      sent {self.on_time_expected:>9}  in ClickHouse {self.on_time_published:>9}  "
            f"{ok(self.on_time_expected, self.on_time_published)}",
            f"minute rollup keys  {self.minute_keys_expected:>9} expected, {len(self.minute_keys_mismatched)} differ",
            self.users_line(),
            f"late events         sent {sum(self.late_expected.values()):>9}  "
            f"counted {sum(self.late_published.values()):>9}  "
            f"{ok(self.late_expected, self.late_published)} (left to the batch layer)",
            f"duplicates          sent {self.duplicates_sent:>9}  dropped in stream {self.duplicates_dropped:>9}",
            "rejected by reason  "
            + ", ".join(
                f"{r}={self.rejected_published.get(r, 0)}/{n}" for r, n in sorted(self.rejected_expected.items())
            )
            + f"  {ok(self.rejected_expected, self.rejected_published)}",
            f"freshness           p50 {self.freshness_p50_s} s, p95 {self.freshness_p95_s} s "
            f"over {self.batches} batches (live events: queryable within {self.freshness_live_within_s} s)",
            *self.backfill_lines(),
        ]

    def backfill_lines(self) -> list[str]:
        b = self.backfill
        if b is None or not b.events:
            return []
        return [
            f"backfill            {b.events} on-time events queryable later than {self.freshness_live_within_s} s "
            f"after their event time (age p50 {b.age_p50_s} s, max {b.age_max_s} s): replayed with their original "
            f"timestamps, or held up by an outage; not in the freshness figures"
        ]

    def users_line(self) -> str:
        line = f"distinct users/hour max relative error {self.users_hour_max_error:.4f}"
        skipped = self.users_hours_not_comparable
        if not skipped:
            return f"{line} over {self.users_hours_compared} tenant-hours"
        t, h, sent, read = skipped[0]
        why = (
            f"{len(skipped)} tenant-hours not comparable, their rows holding other events than the manifest's "
            f"(e.g. {t} {h}: {read} in the rows, {sent} sent on time): other traffic in those hours "
            f"(--since its start leaves earlier traffic out) or missing events (see on-time events)"
        )
        if not self.users_hours_compared:
            return f"distinct users/hour not compared: {why}"
        return f"{line} over {self.users_hours_compared} tenant-hours; {why}"


@dataclass(frozen=True)
class LakeReport:
    """The stream's Delta lake against a manifest: every valid event landed once (late ones
    included), no Kafka record landed twice, every rejected record is in the dead-letter table."""

    valid_expected: int
    valid_in_lake: int  # distinct (tenant_id, event_id) in events_raw
    raw_rows: int
    raw_records: int  # distinct (kafka_partition, kafka_offset) in events_raw
    rejected_expected: int
    rejected_in_lake: int

    @property
    def lost(self) -> int:
        return max(0, self.valid_expected - self.valid_in_lake) + max(0, self.rejected_expected - self.rejected_in_lake)

    @property
    def doubled(self) -> int:
        """Rows beyond one per event: a record landed twice, or a duplicate the dedup let through."""
        return (self.raw_rows - min(self.raw_records, self.valid_in_lake)) + max(
            0, self.rejected_in_lake - self.rejected_expected
        )

    @property
    def exact(self) -> bool:
        return (
            self.valid_in_lake == self.valid_expected
            and self.raw_rows == self.raw_records == self.valid_in_lake
            and self.rejected_in_lake == self.rejected_expected
        )


def expected_rejections(manifest: dict) -> dict[str, int]:
    """Records the contract must dead-letter, by reason: the malformed kinds plus poison payloads."""
    return {k: v for k, v in manifest.get("rejected_by_reason", manifest["malformed"]).items() if v}


def lake_report(cfg: Settings, manifest: dict) -> LakeReport:
    """Count the stream's lake tables (``cfg.lake``) with delta-rs, an engine other than the
    stream's own, against ``manifest``."""
    import deltalake

    raw = deltalake.DeltaTable(cfg.lake.events_raw).to_pyarrow_table(
        columns=["tenant_id", "event_id", "kafka_partition", "kafka_offset"]
    )
    events = raw.group_by(["tenant_id", "event_id"]).aggregate([]).num_rows
    records = raw.group_by(["kafka_partition", "kafka_offset"]).aggregate([]).num_rows
    try:
        dead = deltalake.DeltaTable(cfg.lake.events_rejected).to_pyarrow_table(columns=["reason"]).num_rows
    except deltalake.exceptions.TableNotFoundError:
        dead = 0  # no batch has rejected anything yet
    return LakeReport(
        valid_expected=int(manifest["valid_events"]),
        valid_in_lake=events,
        raw_rows=raw.num_rows,
        raw_records=records,
        rejected_expected=sum(expected_rejections(manifest).values()),
        rejected_in_lake=dead,
    )


def drill_totals(stream: StreamReport, lake: LakeReport) -> dict:
    """Produced vs counted, in ClickHouse's minute rollups and in the lake: what a failure drill
    reports. ``exact`` only if both match the manifest; ``lost``/``doubled`` say by how much not."""
    on_time_lost = max(0, stream.on_time_expected - stream.on_time_published)
    on_time_doubled = max(0, stream.on_time_published - stream.on_time_expected)
    return {
        "exact": stream.exact and lake.exact,
        "clickhouse": {
            "on_time_produced": stream.on_time_expected,
            "on_time_counted": stream.on_time_published,
            "minute_keys_differing": len(stream.minute_keys_mismatched),
            "late_produced": sum(stream.late_expected.values()),
            "late_counted": sum(stream.late_published.values()),
            "rejected_produced": sum(stream.rejected_expected.values()),
            "rejected_counted": sum(stream.rejected_published.values()),
            "duplicates_sent": stream.duplicates_sent,
            "duplicates_dropped": stream.duplicates_dropped,
            "lost": on_time_lost,
            "doubled": on_time_doubled,
            "exact": stream.exact,
        },
        "lake": {
            "valid_produced": lake.valid_expected,
            "valid_in_lake": lake.valid_in_lake,
            "rows": lake.raw_rows,
            "rejected_produced": lake.rejected_expected,
            "rejected_in_lake": lake.rejected_in_lake,
            "lost": lake.lost,
            "doubled": lake.doubled,
            "exact": lake.exact,
        },
    }


def wait_until_consumed(
    cfg: Settings,
    stream_id: str,
    topic: str,
    timeout_s: float,
    interval_s: float = 0.5,
    *,
    on_poll: Callable[[int], None] | None = None,
) -> float:
    """Block until the stream has committed everything the topic holds *now* (every partition's
    end offset), instead of sleeping and hoping. Returns the seconds waited; raises TimeoutError.
    ``on_poll(records_behind)`` runs after each look that found the stream behind (a bench prints
    progress there, or raises to stop waiting on a stream that died)."""
    import time

    from tidemark.io.kafka_admin import end_offsets

    target = end_offsets(cfg.kafka.bootstrap_servers, topic)
    started = time.monotonic()
    while True:
        done = stream_offsets(cfg, stream_id, topic)
        behind = {p: off - done.get(p, 0) for p, off in target.items() if done.get(p, 0) < off}
        if not behind:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(
                f"stream {stream_id} is still {sum(behind.values())} records behind topic "
                f"{topic} after {timeout_s:.0f}s (per partition: {behind}); is it running? "
                f"see `tidemark status`"
            )
        if on_poll is not None:
            on_poll(sum(behind.values()))
        time.sleep(interval_s)


def measured_freshness_s(
    ch, db: str, where: str, params: dict, qs=(0.5, 0.95, 0.99), live_within_s: int | None = None
) -> list[float | None]:
    """Event-level freshness quantiles (s) over the committed batches matching ``where``, from the
    per-batch histograms (exact up to their 100 ms step): measured, not modelled.

    ``live_within_s``: count only live events, those queryable within that many seconds of their event
    time (the allowed lateness). An older on-time event was replayed with its original Kafka timestamp
    (a backfill) or waited out an outage longer than that; ``backfill`` reports those apart. A shorter
    outage still counts here in full, so a stream that falls behind burns the freshness budget."""
    qlist = ", ".join(str(q) for q in qs)
    live = "" if live_within_s is None else f" AND f <= {int(live_within_s) * 1000}"
    values, events = ch.execute(
        f"SELECT quantilesExactWeighted({qlist})(f, n), sum(n) FROM {db}.stream_batches "
        f"ARRAY JOIN freshness_ms AS f, freshness_events AS n WHERE ({where}){live}",
        params,
    )[0]
    return [round(v / 1000.0, 2) for v in values] if events else [None] * len(qs)


@dataclass(frozen=True)
class Backfill:
    """On-time events that became queryable more than ``live_within_s`` after their event time."""

    events: int
    age_p50_s: float | None
    age_max_s: float | None

    def as_dict(self) -> dict:
        return {
            "backfill_events": self.events,
            "backfill_age_p50_s": self.age_p50_s,
            "backfill_age_max_s": self.age_max_s,
        }


def backfill(ch, db: str, where: str, params: dict, live_within_s: int) -> Backfill:
    """The events ``measured_freshness_s(live_within_s=...)`` leaves out, shown apart: how many, how old."""
    p50, top, events = ch.execute(
        f"SELECT quantileExactWeighted(0.5)(f, n), max(f), sum(n) FROM {db}.stream_batches "
        f"ARRAY JOIN freshness_ms AS f, freshness_events AS n WHERE ({where}) AND f > {int(live_within_s) * 1000}",
        params,
    )[0]
    if not events:
        return Backfill(0, None, None)
    return Backfill(int(events), round(p50 / 1000.0, 1), round(top / 1000.0, 1))


def stream_report(
    cfg: Settings, manifest: dict, stream_id: str, epoch: int, since: datetime | None = None
) -> StreamReport:
    """Compare one stream's output with a manifest. ``since`` (wall clock) limits the
    batch-level figures to batches committed after the traffic started, for a
    long-lived stream that has processed earlier traffic too."""
    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database
    lo, hi = version_range(epoch)
    # on-time keys only: a late event's minute can lie hours back, among other traffic's rows
    minutes = sorted(r[1] for r in manifest["minute_counts"] if r[6] > 0) or ["1970-01-01T00:00"]
    rng = {
        "lo": lo,
        "hi": hi,
        "s": stream_id,
        "since": since or datetime(1970, 1, 1, tzinfo=timezone.utc),
        "first": datetime.fromisoformat(minutes[0]).replace(tzinfo=timezone.utc),
        "last": datetime.fromisoformat(minutes[-1]).replace(tzinfo=timezone.utc),
    }
    tenants = sorted({row[0] for row in manifest["minute_counts"]})

    published = {}
    for tenant, minute, country, device, page, events in ch.execute(
        f"SELECT tenant_id, minute, country, device, page, sum(events) FROM {db}.minute_rollups "
        f"WHERE layer = 'stream' AND version BETWEEN %(lo)s AND %(hi)s AND minute BETWEEN %(first)s AND %(last)s "
        f"AND tenant_id IN %(t)s GROUP BY tenant_id, minute, country, device, page",
        {**rng, "t": tuple(tenants) or ("",)},
    ):
        published[(tenant, _minute(minute), country, device, page)] = events
    expected = {tuple(r[:5]): r[6] for r in manifest["minute_counts"] if r[6] > 0}
    mismatched = [
        (k, expected.get(k, 0), published.get(k, 0))
        for k in sorted(set(expected) | set(published))
        if expected.get(k, 0) != published.get(k, 0)
    ]

    # The rows of the batches committed since `since` only, with their events, so compare_users can
    # tell the manifest's traffic from other traffic in the same hours.
    users = compare_users(
        expected_users(manifest),
        {
            (t, label(h)): (int(events), int(n))
            for t, h, events, n in ch.execute(
                f"SELECT tenant_id, hour, sum(events), uniqCombinedMerge(users) FROM {db}.hour_rollups "
                f"WHERE dimension = 'all' AND layer = 'stream' AND version BETWEEN %(lo)s AND %(hi)s "
                f"AND version IN (SELECT version FROM {db}.stream_batches "
                f"WHERE stream_id = %(s)s AND committed_at >= %(since)s) "
                f"AND tenant_id IN %(t)s GROUP BY tenant_id, hour",
                {**rng, "t": tuple(tenants) or ("",)},
            )
        },
    )

    late_published = {
        f"{t}|{label(h)}": n
        for t, h, n in ch.execute(
            f"SELECT tenant_id, event_hour, sum(late_events) FROM {db}.late_event_hours "
            f"WHERE version BETWEEN %(lo)s AND %(hi)s AND last_ingest_time >= %(since)s "
            f"GROUP BY tenant_id, event_hour",
            rng,
        )
    }
    late_expected = {f"{t}|{h}": n for t, h, n in manifest["late_events_per_tenant_hour"]}

    rejected = dict(
        ch.execute(
            f"SELECT reason, sum(n) FROM {db}.stream_batches "
            f"ARRAY JOIN rejected_reasons AS reason, rejected_counts AS n "
            f"WHERE stream_id = %(s)s AND committed_at >= %(since)s GROUP BY reason",
            rng,
        )
    )
    (batches,) = ch.execute(
        f"SELECT count() FROM {db}.stream_batches WHERE stream_id = %(s)s "
        f"AND valid_rows > 0 AND committed_at >= %(since)s",
        rng,
    )[0]
    batches_since = "stream_id = %(s)s AND committed_at >= %(since)s"
    horizon = cfg.spark.allowed_lateness_s
    f50, f95 = measured_freshness_s(ch, db, batches_since, rng, (0.5, 0.95), live_within_s=horizon)
    replayed = backfill(ch, db, batches_since, rng, horizon)
    (dups,) = ch.execute(
        f"SELECT sum(duplicates_dropped) FROM {db}.stream_progress "
        f"WHERE stream_id = %(s)s AND reported_at >= %(since)s",
        rng,
    )[0]

    return StreamReport(
        on_time_expected=manifest["on_time_events"],
        on_time_published=sum(published.values()),
        minute_keys_expected=len(expected),
        minute_keys_mismatched=mismatched,
        users_hour_max_error=users.max_error,
        users_hours_compared=users.compared,
        users_hours_not_comparable=users.not_comparable,
        late_expected=late_expected,
        late_published=late_published,
        # rejected_by_reason: the malformed kinds plus poison payloads, under the reason each gets
        rejected_expected=expected_rejections(manifest),
        rejected_published=rejected,
        duplicates_sent=manifest["duplicates_sent"],
        duplicates_dropped=int(dups or 0),
        freshness_p50_s=f50 if batches else None,  # measured_freshness_s rounds to 10 ms already
        freshness_p95_s=f95 if batches else None,
        freshness_live_within_s=horizon,
        backfill=replayed,
        batches=batches,
    )
