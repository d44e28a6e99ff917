"""Service level objectives: the four SLOs measured from what the running system records in
ClickHouse (stream freshness histograms, API latency histograms, health probes, reconciliations),
their error budgets and burn rates, the monitor that alerts on them, and `tidemark slo report`."""
