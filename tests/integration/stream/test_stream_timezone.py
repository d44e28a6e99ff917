"""Issue 23, item 3: the stream writes every rollup into its UTC minute whatever the host's time zone.

collect() hands the driver naive datetimes in its local zone and clickhouse-driver reads a naive
value as UTC: with TZ=Asia/Kolkata, events of 14:33 UTC landed in minute 20:03. The stream runs
here as in production (spark-submit) with TZ=Asia/Kolkata in its environment, and its minute rollups,
late-event hours and newest event time are reconciled against the generator's manifest (UTC)."""

from datetime import datetime, timedelta, timezone

import pytest
from support.stream import StreamRun
from support.wait import wait_until

from tidemark.io.clickhouse import client
from tidemark.stream.identity import version_range


@pytest.mark.parametrize("zone", ["Asia/Kolkata"])  # UTC+05:30: shifts minutes and hours alike
def test_rollups_land_in_their_utc_minute_on_a_non_utc_host(stack, tmp_path, zone):
    run = StreamRun.create(tmp_path, "tz")
    # A recent past start (Kafka timestamps stay plausible), on a minute boundary, 10 min of traffic.
    start = (datetime.now(timezone.utc) - timedelta(hours=3)).replace(second=0, microsecond=0)
    manifest = run.generate(
        "--count",
        "1200",
        "--rate",
        "2",
        "--start-time",
        start.isoformat().replace("+00:00", "Z"),
        "--seed",
        "23",
        "--late-fraction",
        "0.05",
        "--duplicate-fraction",
        "0",
        "--malformed-fraction",
        "0",
    )
    assert manifest["late_events"] > 0
    run.run_available_now(extra_env={"TZ": zone})
    try:
        _check(run, manifest)
    finally:
        _forget_stream(run)  # the generator's tenants and recent minutes are shared with other tests


def _check(run: StreamRun, manifest: dict) -> None:
    report = run.report(manifest)
    assert report.on_time_published == manifest["on_time_events"]
    assert report.minute_keys_mismatched == [], report.minute_keys_mismatched[:5]
    assert report.late_published == report.late_expected  # late events' hours, in UTC too
    cfg = run.cfg
    (newest,) = client(cfg.clickhouse).execute(
        f"SELECT max(toUInt32(newest_event_time)) FROM {cfg.clickhouse.database}.stream_batches "
        f"WHERE stream_id = %(s)s",
        {"s": run.identity.stream_id},
    )[0]
    last_minute = max(datetime.fromisoformat(r[1]).replace(tzinfo=timezone.utc) for r in manifest["minute_counts"])
    assert 0 <= newest - int(last_minute.timestamp()) < 60  # the newest event, in its UTC minute


def _forget_stream(run: StreamRun) -> None:
    """Delete this stream's rows (its versions) and wait for the mutations."""
    cfg = run.cfg
    ch = client(cfg.clickhouse)
    lo, hi = version_range(run.identity.epoch)
    tables = ("minute_rollups", "hour_rollups", "day_rollups", "late_event_hours")
    for t in tables:
        ch.execute(
            f"ALTER TABLE {cfg.clickhouse.database}.{t} DELETE WHERE version BETWEEN %(lo)s AND %(hi)s",
            {"lo": lo, "hi": hi},
        )
    wait_until(
        lambda: (
            not any(
                ch.execute(
                    f"SELECT count() FROM {cfg.clickhouse.database}.{t} WHERE version BETWEEN %(lo)s AND %(hi)s",
                    {"lo": lo, "hi": hi},
                )[0][0]
                for t in tables
            )
        ),
        120,
        interval_s=0.5,
        what="this stream's rows deleted",
    )
