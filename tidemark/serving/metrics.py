"""In-process counters of the serving API, exposed at /metrics (Prometheus text format).

No label ever carries a tenant, a filter value or a key: the endpoint is unauthenticated, and
per-tenant numbers would tell one tenant about another's traffic.
"""

from __future__ import annotations

import threading
from collections import defaultdict

HELP = {
    "tidemark_cache_requests_total": "Cache lookups by result: hit (fresh), stale (served while one request "
    "recomputes), wait (got another request's fresh result), miss (recomputed).",
    "tidemark_single_flight_waits_total": "Requests that waited for another request's recompute of the same key.",
    "tidemark_single_flight_wait_seconds_total": "Time spent in those waits.",
    "tidemark_recomputes_total": "Cache entries computed (each is one registry read plus one rollup query).",
    "tidemark_clickhouse_queries_total": "ClickHouse statements run, by kind (registry, rollup, meta; keys: the "
    "background key refresh, never on a request's path).",
    "tidemark_api_keys_loaded_through": "Epoch seconds at which the last successful key refresh started: keys "
    "created or revoked before it are in effect.",
    "tidemark_clickhouse_inflight": "ClickHouse queries running now.",
    "tidemark_clickhouse_inflight_max": "The most ClickHouse queries that ran at once since start.",
    "tidemark_rejected_total": "Requests refused, by reason (client_rate_limited and rate_limited 429, "
    "overloaded 503, timeout 504, ...).",
}


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple], float] = defaultdict(float)
        self._gauges: dict[str, float] = defaultdict(float)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        with self._lock:
            self._counters[(name, tuple(sorted(labels.items())))] += amount

    def set(self, name: str, value: float) -> None:
        with self._lock:
            self._gauges[name] = value

    def value(self, name: str, **labels: str) -> float:
        with self._lock:
            if not labels:
                return sum(v for (n, _), v in self._counters.items() if n == name) + self._gauges.get(name, 0.0)
            return self._counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def snapshot(self) -> dict:
        """Counters as {name: {label string: value}} plus gauges and the derived hit rate."""
        with self._lock:
            out: dict = {}
            for (name, labels), value in self._counters.items():
                out.setdefault(name, {})[",".join(f"{k}={v}" for k, v in labels) or ""] = value
            out.update({name: {"": value} for name, value in self._gauges.items()})
        lookups = out.get("tidemark_cache_requests_total", {})
        total = sum(lookups.values())
        served = total - lookups.get("result=miss", 0.0)
        out["tidemark_cache_hit_ratio"] = {"": (served / total) if total else 0.0}
        return out

    def render(self) -> str:
        lines = []
        for name, series in sorted(self.snapshot().items()):
            if name in HELP:
                lines.append(f"# HELP {name} {HELP[name]}")
            for labels, value in sorted(series.items()):
                label_text = (
                    "{" + ",".join(f'{k}="{v}"' for k, v in (pair.split("=", 1) for pair in labels.split(","))) + "}"
                    if labels
                    else ""
                )
                lines.append(f"{name}{label_text} {value:.15g}")  # :g would round an epoch to 6 digits
        return "\n".join(lines) + "\n"
