"""Injected anomalies and the traffic shape: each does what it says to the valid events, within its
window and tenant only, and the spec parser accepts what the CLI documents."""

from __future__ import annotations

from collections import Counter

import pytest

from tidemark.generator.injections import HOUR_MS, Injection, parse_injection, shape_share
from tidemark.generator.options import TrafficOptions
from tidemark.generator.rollups import RollupManifest
from tidemark.generator.traffic import TrafficGenerator

START = 1_795_000_000_000 // HOUR_MS * HOUR_MS


def counts(*injections: Injection, seasonality: float = 0.0) -> tuple[Counter, Counter]:
    """Valid events per (tenant, hour index), and of page '/' per (tenant, hour index)."""
    manifest = RollupManifest(grain_ms=HOUR_MS)
    options = TrafficOptions(
        start_ms=START,
        count=7200,
        rate=2.0,  # one hour
        tenants=2,
        malformed_fraction=0.0,
        duplicate_fraction=0.0,
        late_fraction=0.0,
        injections=injections,
        seasonality=seasonality,
    )
    for _ in TrafficGenerator(options, manifest).records():
        pass
    total, home = Counter(), Counter()
    for _layer, _v, tenant, hour, _c, _d, page, n, _users in manifest.rollup_rows("batch", 1):
        h = int(hour.timestamp() * 1000 - START) // HOUR_MS
        total[(tenant, h)] += n
        if page == "/":
            home[(tenant, h)] += n
    return total, home


def test_spike_drop_and_dead_page_act_in_their_window_and_tenant_only():
    base, base_home = counts()
    window = (START, START + HOUR_MS)
    spiked, _ = counts(Injection("spike", "acme", *window, 3.0))
    dropped, _ = counts(Injection("drop", "acme", *window, 0.2))
    _, dead_home = counts(Injection("dead_page", "acme", *window))
    assert 2.7 < spiked[("acme", 0)] / base[("acme", 0)] < 3.3
    assert dropped[("acme", 0)] < 0.5 * base[("acme", 0)]
    assert dead_home[("acme", 0)] == 0 and base_home[("acme", 0)] > 50
    assert spiked[("globex", 0)] == base[("globex", 0)] == dropped[("globex", 0)]


def test_no_injection_and_no_shape_leave_the_stream_unchanged():
    options = TrafficOptions(start_ms=START, count=500, tenants=2)
    plain = [r.value for r in TrafficGenerator(options).records()]
    same = [
        r.value for r in TrafficGenerator(TrafficOptions(start_ms=START, count=500, tenants=2, injections=())).records()
    ]
    assert plain == same


def test_shape_is_lowest_at_night_and_on_weekends():
    monday = 1_794_787_200_000  # 2026-11-16T00:00Z, a Monday
    assert shape_share(monday + 3 * HOUR_MS, 0.5) == pytest.approx(0.5)
    assert shape_share(monday + 15 * HOUR_MS, 0.5) == pytest.approx(1.0)
    assert shape_share(monday + 5 * 86_400_000 + 15 * HOUR_MS, 0.5) == pytest.approx(0.8)
    assert shape_share(monday, 0.0) == 1.0


def test_spec_parser_and_checks():
    inj = parse_injection("kind=dead_page,tenant=acme,start=2026-11-25T10:00Z,hours=2,page=/pricing")
    assert (inj.kind, inj.tenant, inj.page, inj.end_ms - inj.start_ms) == ("dead_page", "acme", "/pricing", 2 * HOUR_MS)
    assert inj.to_dict()["start"] == "2026-11-25T10:00:00Z"
    for bad in (
        "kind=spike,tenant=a,start=2026-11-25T10:00Z,hours=1,factor=0.5",
        "kind=x,tenant=a,start=2026-11-25,hours=1",
        "kind=spike",
    ):
        with pytest.raises(ValueError):
            parse_injection(bad)
