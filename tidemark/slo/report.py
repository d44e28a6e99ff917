"""`tidemark slo report`: each SLO's target, measured value and error budget left over a window,
and a PNG chart of freshness p95 and the API's query p99 per hour with the target lines."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from tidemark.slo.figures import Hourly, backfilled, evaluate, hourly
from tidemark.slo.maths import BURN_LONG_S, FRESHNESS, QUERY_7D, QUERY_90D, Figure


def _value(fig: Figure) -> str:
    if fig.value is None:
        return "not measured"
    if fig.objective.unit == "s":
        return f"{fig.value:.2f} s"
    return f"{fig.value * 100:.3f} %"


def _target(fig: Figure) -> str:
    o = fig.objective
    if o.unit == "s":
        return f"p{round(o.objective * 100)} < {o.threshold:g} s"
    return f">= {o.objective * 100:g} %"


def lines(figures: list[Figure], burn: list[Figure], window: str) -> list[str]:
    out = [f"SLO report over the last {window}"]
    out.append(f"{'SLO':<26}{'target':<14}{'measured':<16}{'budget left':<14}{'burn 1h':<9}status")
    for fig, b in zip(figures, burn, strict=True):
        if not fig.measured:
            budget, status = "-", "NO DATA"
        else:
            budget = f"{fig.budget_left * 100:.1f} %"
            status = "MET" if fig.met else "MISSED"
        rate = f"{b.burn_rate:.2f}" if b.measured else "-"
        if b.measured and b.burn_rate > 1.0:
            status += " (burning)"
        out.append(f"{fig.objective.name:<26}{_target(fig):<14}{_value(fig):<16}{budget:<14}{rate:<9}{status}")
    return out


def chart(series: Hourly, path: Path, window: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    nan = float("nan")
    as_plot = lambda values: [nan if v is None else v for v in values]  # noqa: E731 - gaps where unmeasured
    top.plot(series.hours, as_plot(series.freshness_p95), marker="o", label="freshness p95")
    top.axhline(FRESHNESS.threshold or 0, color="red", linestyle="--", label=f"target {FRESHNESS.threshold:g} s")
    top.set_ylabel("seconds")
    top.set_title(f"Tidemark SLOs per hour, last {window}")
    top.legend(loc="upper left")
    for span, objective, color in (("7d", QUERY_7D, "tab:green"), ("90d", QUERY_90D, "tab:purple")):
        bottom.plot(series.hours, as_plot(series.query_p99[span]), marker="o", color=color, label=f"{span} query p99")
        bottom.axhline(
            objective.threshold or 0, color=color, linestyle="--", label=f"{span} target {objective.threshold:g} s"
        )
    bottom.set_ylabel("seconds")
    bottom.set_xlabel("hour (UTC)")
    if series.hours:  # the whole window, even where nothing was measured
        bottom.set_xlim(series.hours[0], series.hours[-1] + timedelta(hours=1))
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:00"))
    bottom.legend(loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return path


def report(
    ch, db: str, end: datetime, window_s: int, window: str, png: Path, live_within_s: int
) -> tuple[list[str], list[Figure]]:
    """``live_within_s``: the allowed lateness; an on-time event queryable later than that after its event
    time was replayed or backfilled, and is shown on its own line instead of in the freshness SLO."""
    figures = evaluate(ch, db, end, window_s, live_within_s)
    burn = evaluate(ch, db, end, min(window_s, BURN_LONG_S), live_within_s)
    chart(hourly(ch, db, end, window_s, live_within_s), png, window)
    shown = lines(figures, burn, window)
    replayed = backfilled(ch, db, end, window_s, live_within_s)
    if replayed.events:
        shown.append(
            f"freshness counts live events only (queryable within {live_within_s} s of their event time); "
            f"{replayed.events} backfilled or replayed events, age p50 {replayed.age_p50_s} s, "
            f"max {replayed.age_max_s} s, are left out"
        )
    return [*shown, f"chart: {png}"], figures
