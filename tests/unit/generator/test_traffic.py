"""The traffic model: deterministic, realistic enough, and every fault exactly as advertised."""

from __future__ import annotations

import itertools
import json
import uuid
from collections import Counter, defaultdict
from datetime import timezone

import pytest
from support.traffic import validate

from tidemark import contract
from tidemark.generator.catalog import uuid4_from_bits
from tidemark.generator.options import (
    MALFORMED_KINDS,
    MAX_DUPLICATE_DELAY_MS,
    MAX_ON_TIME_JITTER_MS,
    MIN_DUPLICATE_DELAY_MS,
    TrafficOptions,
)
from tidemark.generator.partitioner import kafka_partition
from tidemark.generator.traffic import TrafficGenerator, generate

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
UTC = timezone.utc


@pytest.fixture(scope="module")
def faulty():
    """10k records with every fault at a few percent (shared: generation is the slow part)."""
    opts = TrafficOptions(
        start_ms=START_MS,
        count=10_000,
        rate=200.0,
        late_fraction=0.05,
        duplicate_fraction=0.05,
        malformed_fraction=0.05,
    )
    records, manifest = generate(opts)
    return opts, records, manifest


def test_same_options_give_identical_records_and_manifest():
    opts = TrafficOptions(start_ms=START_MS, count=3000, malformed_fraction=0.05, duplicate_fraction=0.05)
    a, ma = generate(opts)
    b, mb = generate(opts)
    assert a == b
    assert ma.to_dict(messages_sent=len(a)) == mb.to_dict(messages_sent=len(b))


def test_different_seed_gives_different_traffic():
    a, _ = generate(TrafficOptions(start_ms=START_MS, count=500, seed=1))
    b, _ = generate(TrafficOptions(start_ms=START_MS, count=500, seed=2))
    assert [r.value for r in a] != [r.value for r in b]


def test_event_ids_differ_between_start_times():
    a, _ = generate(TrafficOptions(start_ms=START_MS, count=200))
    b, _ = generate(TrafficOptions(start_ms=START_MS + 3_600_000, count=200))
    ids = lambda recs: {json.loads(r.value)["event_id"] for r in recs if r.kind == "on_time"}  # noqa: E731
    assert not ids(a) & ids(b)


def test_malformed_kinds_cover_every_contract_reason():
    # every payload code; the record-level ones depend on when the stream reads the record
    assert set(MALFORMED_KINDS) == set(contract.PAYLOAD_REASONS)
    assert set(contract.PAYLOAD_REASONS) | set(contract.RECORD_REASONS) == set(contract.REASONS)
    assert len(MALFORMED_KINDS) == len(set(MALFORMED_KINDS))


def test_every_malformed_kind_is_rejected_with_exactly_its_reason():
    opts = TrafficOptions(start_ms=START_MS, count=len(MALFORMED_KINDS) * 25, malformed_fraction=1.0)
    records, manifest = generate(opts)
    seen = Counter()
    for rec in records:
        assert rec.kind in MALFORMED_KINDS
        with pytest.raises(contract.InvalidEvent) as info:
            validate(rec, opts)
        assert info.value.reason == rec.kind, (rec.kind, info.value, rec.value[:200])
        seen[rec.kind] += 1
    assert seen == Counter({kind: 25 for kind in MALFORMED_KINDS})
    assert manifest.malformed == dict(seen)
    assert manifest.valid_events == 0


def test_valid_records_pass_and_match_the_manifest(faulty):
    opts, records, manifest = faulty
    reasons = Counter()
    valid_ids = set()
    for rec in records:
        try:
            event = validate(rec, opts)
        except contract.InvalidEvent as exc:
            assert exc.reason == rec.kind
            reasons[exc.reason] += 1
            continue
        assert rec.kind in ("on_time", "late", "duplicate")
        event_ms = int(event.event_time.timestamp() * 1000)
        assert event_ms <= rec.timestamp_ms  # never ahead of its send time
        if rec.kind == "on_time":
            assert rec.timestamp_ms - event_ms <= MAX_ON_TIME_JITTER_MS
        valid_ids.add(event.event_id)
    assert dict(reasons) == manifest.malformed
    assert len(valid_ids) == manifest.valid_events
    assert manifest.records == len(records) == opts.count


def test_late_events_lateness_and_per_hour_counts():
    opts = TrafficOptions(
        start_ms=START_MS, count=8000, late_fraction=0.2, min_lateness_ms=20 * 60_000, max_lateness_ms=40 * 60_000
    )
    records, manifest = generate(opts)
    per_hour = Counter()
    per_tenant_hour = Counter()
    for rec in records:
        if rec.kind != "late":
            continue
        event = validate(rec, opts)
        lateness = rec.timestamp_ms - int(event.event_time.timestamp() * 1000)
        assert opts.min_lateness_ms <= lateness <= opts.max_lateness_ms
        hour = event.event_time.strftime("%Y-%m-%dT%H")
        per_hour[hour] += 1
        per_tenant_hour[(event.tenant_id, hour)] += 1
    doc = manifest.to_dict(messages_sent=len(records))
    assert sum(per_hour.values()) == doc["late_events"] > 1000
    assert doc["late_events_per_hour"] == dict(per_hour)
    assert doc["late_events_per_tenant_hour"] == sorted([t, h, n] for (t, h), n in per_tenant_hour.items())
    assert "2025-12-31T23" in per_hour  # late events reach back before the start


def test_lateness_options_are_checked():
    with pytest.raises(ValueError):
        TrafficOptions(start_ms=START_MS, count=1, min_lateness_ms=3_600_000, max_lateness_ms=60_000).check()
    with pytest.raises(ValueError):
        TrafficOptions(start_ms=START_MS, count=1, max_lateness_ms=40 * 86_400_000).check()
    with pytest.raises(ValueError):
        TrafficOptions(start_ms=START_MS, count=1, late_fraction=1.5).check()


def test_duplicates_are_byte_identical_resends_of_on_time_events(faulty):
    opts, records, manifest = faulty
    first: dict[bytes, tuple[int, object]] = {}
    other_partition = 0
    dups = 0
    for i, rec in enumerate(records):
        if rec.kind == "duplicate":
            dups += 1
            assert rec.value in first, "a duplicate re-sends an earlier payload"
            j, original = first[rec.value]
            assert original.kind == "on_time"
            assert rec.key == original.key
            delay = rec.timestamp_ms - original.timestamp_ms
            assert MIN_DUPLICATE_DELAY_MS <= delay <= MAX_DUPLICATE_DELAY_MS + 1000
            assert rec.partition in (original.partition, (original.partition + 1) % opts.partitions)
            other_partition += rec.partition != original.partition
        elif rec.kind in ("on_time", "late"):
            assert rec.value not in first
            first[rec.value] = (i, rec)
    assert dups == manifest.duplicates_sent > 100
    assert 0.3 < other_partition / dups < 0.7


def test_keyed_by_user_and_placed_like_the_default_partitioner():
    from kafka.partitioner.default import DefaultPartitioner

    class Cluster:  # the two methods DefaultPartitioner uses
        def topics(self):
            return {"t"}

        def partitions_for_topic(self, topic):
            return {0, 1, 2, 3}

        available_partitions_for_topic = partitions_for_topic

    records, _ = generate(TrafficOptions(start_ms=START_MS, count=10_000))
    partitioner, cluster = DefaultPartitioner(), Cluster()
    spread = Counter()
    for i, rec in enumerate(records):
        if rec.kind in ("on_time", "late"):
            assert rec.key == json.loads(rec.value)["user_id"].encode()
        if rec.kind != "duplicate":
            assert rec.partition == kafka_partition(rec.key, 4)
            if i % 10 == 0:  # pure-Python murmur2 is slow: sample
                assert rec.partition == partitioner.partition("t", rec.key, rec.key, None, None, cluster)
        spread[rec.partition] += 1
    mean = len(records) / 4
    assert len(spread) == 4
    assert max(spread.values()) <= 1.5 * mean


def test_realistic_shape(faulty):
    opts, records, manifest = faulty
    docs = [json.loads(r.value) for r in records if r.kind in ("on_time", "late")]
    tenants = Counter(d["tenant_id"] for d in docs)
    assert len(tenants) == opts.tenants
    assert max(tenants.values()) > 4 * min(tenants.values())  # very different sizes
    devices = Counter(d["device"] for d in docs)
    share = {k: v / len(docs) for k, v in devices.items()}
    assert 0.43 < share["desktop"] < 0.55 and 0.35 < share["mobile"] < 0.48
    assert 0.05 < share["tablet"] < 0.11 and 0.005 < share["other"] < 0.04
    countries = Counter(d["country"] for d in docs)
    assert len(countries) > 25
    pages = Counter((d["tenant_id"], d["page"]) for d in docs)
    top_page, top_n = pages.most_common(1)[0]
    assert top_n > 20 * (len(docs) / len(pages))  # Zipf: a few pages dominate
    assert all(d["page"].startswith("/") for d in docs)
    formats = Counter(type(d["event_time"]).__name__ for d in docs)
    assert formats["str"] > 0.4 * len(docs) and formats["int"] > 0.4 * len(docs)
    iso = next(d["event_time"] for d in docs if isinstance(d["event_time"], str))
    assert iso.endswith("Z") and len(iso) == len("2026-01-01T00:00:00.000Z")
    assert {"absent", "null", "url"} <= {
        "absent" if "referrer" not in d else "null" if d["referrer"] is None else "url" for d in docs
    }


def test_sessions_rotate_over_time():
    opts = TrafficOptions(start_ms=START_MS, count=4000, rate=1.0, tenants=1)  # 66 minutes
    records, _ = generate(opts)
    sessions = defaultdict(list)
    for rec in records:
        if rec.kind == "on_time":
            doc = json.loads(rec.value)
            sessions[doc["user_id"]].append((rec.timestamp_ms, doc["session_id"]))
    rotated = [u for u, seen in sessions.items() if len({s for _, s in seen}) > 1]
    assert rotated
    for user in rotated:  # a session id is never reused once it rotated away
        order = [s for _, s in sorted(sessions[user])]
        changes = [s for prev, s in itertools.pairwise(order) if s != prev]
        assert len(changes) == len(set(changes))


def test_send_times_follow_the_simulated_clock():
    opts = TrafficOptions(start_ms=START_MS, count=1000, rate=250.0)
    records, _ = generate(opts)
    assert [r.timestamp_ms for r in records] == [START_MS + i * 4 for i in range(1000)]


def test_uuid_text_matches_uuid_module():
    for bits in (0, (1 << 128) - 1, 0x0123456789ABCDEF0123456789ABCDEF):
        assert uuid4_from_bits(bits) == str(uuid.UUID(int=bits, version=4))


def test_generator_is_lazy_and_single_pass():
    gen = TrafficGenerator(TrafficOptions(start_ms=START_MS, count=5))
    it = gen.records()
    assert gen.manifest.records == 0
    next(it)
    assert gen.manifest.records == 1
