"""The SLO status as the monitor last wrote it (for /metrics and the dashboard), and the
reconciliation rows the ingest SLO reads."""

from __future__ import annotations

from datetime import datetime, timezone

from tidemark.slo.maths import OBJECTIVES

INGEST_COLUMNS = ("checked_at", "stream_id", "expected", "counted")
TITLES = {o.name: o.title for o in OBJECTIVES}
UNITS = {o.name: o.unit for o in OBJECTIVES}

HELP = {
    "tidemark_slo_target": "The good fraction the SLO promises (0.95 for a p95, 0.999 for 99.9 %).",
    "tidemark_slo_value": "The measured figure the SLO is stated in (seconds for freshness and queries, a ratio "
    "otherwise) over the status window.",
    "tidemark_slo_error_budget_remaining": "The share of the window's error budget left (1 untouched, <= 0 spent).",
    "tidemark_slo_burn_rate": "The bad fraction over the budget in the last hour (> 1: spent faster than allowed).",
    "tidemark_slo_burning": "1 while the SLO burns (last hour and last 5 minutes both above burn rate 1).",
    "tidemark_slo_evaluated_at": "Epoch seconds of the monitor's last evaluation.",
}


def record_reconciliation(ch, db: str, stream_id: str, expected: int, counted: int) -> None:
    from tidemark.io.clickhouse import insert_rows

    insert_rows(
        ch,
        f"{db}.slo_ingest",
        INGEST_COLUMNS,
        [(datetime.now(timezone.utc).replace(microsecond=0), stream_id, int(expected), int(counted))],
    )


def latest(ch, db: str) -> list[dict]:
    """The monitor's last evaluation: one dict per SLO (empty when it never ran)."""
    rows = ch.execute(
        f"SELECT evaluated_at, slo, window_s, target, measured, value, budget_left, burn_rate, burning "
        f"FROM {db}.slo_status WHERE evaluated_at = (SELECT max(evaluated_at) FROM {db}.slo_status) ORDER BY slo"
    )
    order = {o.name: i for i, o in enumerate(OBJECTIVES)}
    out = [
        {
            "slo": slo,
            "title": TITLES.get(slo, slo),
            "unit": UNITS.get(slo, ""),
            "evaluated_at": int(at.replace(tzinfo=timezone.utc).timestamp()),
            "window_s": int(window_s),
            "target": target,
            "measured": bool(measured),
            "value": value if measured else None,
            "budget_left": budget if measured else None,
            "burn_rate": rate,
            "burning": bool(burn),
        }
        for at, slo, window_s, target, measured, value, budget, rate, burn in rows
    ]
    return sorted(out, key=lambda s: order.get(s["slo"], 99))


def prometheus(status: list[dict]) -> str:
    """The status as Prometheus text: one series per SLO (label ``slo``), never a tenant."""
    if not status:
        return ""
    series: dict[str, list[str]] = {name: [] for name in HELP}
    for s in status:
        label = f'{{slo="{s["slo"]}"}}'
        series["tidemark_slo_target"].append(f"tidemark_slo_target{label} {s['target']:.15g}")
        if s["measured"]:
            series["tidemark_slo_value"].append(f"tidemark_slo_value{label} {s['value']:.15g}")
            series["tidemark_slo_error_budget_remaining"].append(
                f"tidemark_slo_error_budget_remaining{label} {s['budget_left']:.15g}"
            )
        series["tidemark_slo_burn_rate"].append(f"tidemark_slo_burn_rate{label} {s['burn_rate']:.15g}")
        series["tidemark_slo_burning"].append(f"tidemark_slo_burning{label} {int(s['burning'])}")
    series["tidemark_slo_evaluated_at"].append(f"tidemark_slo_evaluated_at {status[0]['evaluated_at']}")
    lines = []
    for name, values in series.items():
        if values:
            lines += [f"# HELP {name} {HELP[name]}", f"# TYPE {name} gauge", *values]
    return "\n".join(lines) + "\n"
