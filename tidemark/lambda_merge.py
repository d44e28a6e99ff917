"""The one query path that reads rollups with the lambda merge applied: the serving API's queries,
the batch report and the warm tier all read through it, so it sits below all three.

For every hour in the range, the registry (`published_hours`) is read once
and gives the hour's current batch version, if any: the published version
with the highest (Delta version read, sequence), the rule of
tidemark/batch/registry.py (``tidemark.tables.CURRENT_ORDER``). The stream identities give the streaming
versions that count. Then the rollups are read with that snapshot inlined
as parameters:

* a published hour contributes only its batch rows of exactly that version;
* an unpublished hour contributes its streaming rows, and only those of a
  current stream identity up to its last committed micro-batch: never a
  partial batch, an abandoned checkpoint's replay or a second stream on the
  same topic (tidemark/stream/identity.py).

Reading the registry once, before the data, is what makes a publish atomic to
readers: a concurrent publish is either in this snapshot (new version, whose
rows were complete before its registry row was written) or not (old rows,
still present). ClickHouse 18.16 cannot pin two subqueries to one snapshot,
so this is resolved here rather than in a view.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from tidemark.stream.identity import counted_version_ranges
from tidemark.tables import CURRENT_ORDER


def _epoch(moment: datetime) -> int:
    return int(moment.astimezone(timezone.utc).timestamp())


@dataclass(frozen=True)
class Snapshot:
    """Published batch version per hour (epoch seconds -> version), and the streaming version
    ranges that count ([(lowest, highest)])."""

    versions: dict[int, int]
    stream_ranges: tuple[tuple[int, int], ...] = ()

    def within(self, start: int, end: int) -> Snapshot:
        """The same snapshot narrowed to the hours of [start, end): a query inlines only the
        versions it can read (one snapshot, taken once per refresh, serves every query)."""
        first = start // 3600 * 3600
        return Snapshot({h: v for h, v in self.versions.items() if first <= h < end}, self.stream_ranges)

    def params(self) -> dict:
        # Tuples, not lists: clickhouse-driver renders a list as an Array, which IN rejects.
        # stream_ranges is an Array of tuples on purpose (arrayExists); (1, 0) matches nothing.
        return {
            "pub": tuple(sorted(self.versions.items())) or ((0, 0),),
            "pub_hours": tuple(sorted(self.versions)) or (0,),
            "stream_ranges": list(self.stream_ranges) or [(1, 0)],
        }


def snapshot(ch, db: str, start: datetime, end: datetime) -> Snapshot:
    rows = ch.execute(
        f"SELECT toUInt32(hour), argMax(version, {CURRENT_ORDER}) FROM {db}.published_hours "
        f"WHERE status = 'published' AND hour >= toDateTime(%(s)s) AND hour < toDateTime(%(e)s) GROUP BY hour",
        {"s": _epoch(start) // 3600 * 3600, "e": _epoch(end)},
    )
    return Snapshot(dict(rows), tuple(counted_version_ranges(ch, db)))


def minute_horizon(ch, db: str) -> int:
    """Epoch seconds before which the hot tier dropped minute rows (0: none dropped). The hot step
    records it before each drop (tidemark/tiering/hot.py, 022_minute_horizon.sql)."""
    (through,) = ch.execute(f"SELECT toUInt32(max(dropped_through)) FROM {db}.minute_horizon")[0]
    return int(through or 0)


def merged_filter(time_expr: str) -> str:
    """WHERE fragment choosing batch rows of the published version, else committed streaming rows
    of a current stream. ``time_expr`` is the row's hour as epoch seconds."""
    return (
        f"((layer = 'batch' AND ({time_expr}, version) IN %(pub)s) "
        f"OR (layer = 'stream' AND {time_expr} NOT IN %(pub_hours)s "
        f"AND arrayExists(r -> version >= r.1 AND version <= r.2, %(stream_ranges)s)))"
    )


def hour_totals(ch, db: str, tenant: str, start: datetime, end: datetime, dimension: str = "all") -> list[tuple]:
    """(hour, value, events, distinct users) for one tenant, lambda-merged."""
    snap = snapshot(ch, db, start, end)
    return ch.execute(
        f"SELECT hour, value, sum(events), uniqCombinedMerge(users) FROM {db}.hour_rollups "
        f"WHERE tenant_id = %(t)s AND dimension = %(d)s AND hour >= toDateTime(%(s)s) AND hour < toDateTime(%(e)s) "
        f"AND {merged_filter('toUInt32(hour)')} GROUP BY hour, value ORDER BY hour, value",
        {"t": tenant, "d": dimension, "s": _epoch(start), "e": _epoch(end), **snap.params()},
    )


def minute_counts(ch, db: str, start: datetime, end: datetime, tenants: list[str] | None = None) -> list[tuple]:
    """(tenant, minute, country, device, page, events) over all tenants (or some), lambda-merged."""
    snap = snapshot(ch, db, start, end)
    tenant_filter = "AND tenant_id IN %(ts)s" if tenants else ""
    return ch.execute(
        f"SELECT tenant_id, minute, country, device, page, sum(events) FROM {db}.minute_rollups "
        f"WHERE minute >= toDateTime(%(s)s) AND minute < toDateTime(%(e)s) {tenant_filter} "
        f"AND {merged_filter('toUInt32(toStartOfHour(minute))')} "
        f"GROUP BY tenant_id, minute, country, device, page",
        {"s": _epoch(start), "e": _epoch(end), "ts": tuple(tenants or ()), **snap.params()},
    )
