"""Sent vs streaming vs batch-corrected totals for whole hours, as dashboards read them (the
lambda merge): `tidemark batch-report`, `make demo`'s last reconciliation."""

from __future__ import annotations

from datetime import datetime

from tidemark.batch import registry
from tidemark.config import Settings
from tidemark.hours import HOUR, label
from tidemark.io.clickhouse import client
from tidemark.lambda_merge import minute_counts  # the merge every reader uses, serving's API included


def batch_report(cfg: Settings, manifest: dict, hours: list[datetime]) -> dict:
    """Sent vs streaming vs batch-corrected totals for whole hours (lambda-merged, as dashboards read)."""
    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database
    tenants = tuple(sorted({r[0] for r in manifest["minute_counts"]})) or ("",)
    published = registry.current(cfg, hours)
    lines, exact = [], True
    for hour in hours:
        prefix = label(hour)
        sent = sum(r[5] for r in manifest["minute_counts"] if r[1].startswith(prefix))
        late = manifest["late_events_per_hour"].get(prefix, 0)
        (stream,) = ch.execute(
            f"SELECT sum(events) FROM {db}.minute_rollups WHERE layer = 'stream' AND tenant_id IN %(t)s "
            f"AND minute >= %(s)s AND minute < %(e)s",
            {"t": tenants, "s": hour, "e": hour + HOUR},
        )[0]
        served = sum(r[5] for r in minute_counts(ch, db, hour, hour + HOUR, list(tenants)))
        status = ch.execute(
            f"SELECT status, reason FROM {db}.published_hours WHERE hour = %(h)s ORDER BY sequence DESC LIMIT 1",
            {"h": hour},
        )
        state = status[0][0] if status else "not recomputed"
        ok = hour in published and served == sent
        exact &= ok
        lines.append(
            f"{prefix}  sent {sent:>7}  streaming {stream or 0:>7}  batch-corrected {served:>7}  "
            f"late folded in {late:>5}  quality {state}  {'EXACT' if ok else 'NOT EXACT'}"
        )
    return {"lines": lines, "exact": exact}
