-- The SLO figures recorded as the system runs (tidemark/slo). Freshness needs no table of its own:
-- stream_batches already holds each committed batch's per-event freshness histogram (004).

-- API latency: each API process flushes, every few seconds in the background, a histogram per
-- minute, route and range span: latency_ms[i] (rounded up to two significant digits) for
-- latency_requests[i] requests. Several rows of one minute (processes, flushes) simply add up:
--   SELECT quantilesExactWeighted(0.99)(l, n) FROM slo_api_latency
--   ARRAY JOIN latency_ms AS l, latency_requests AS n WHERE ...
CREATE TABLE IF NOT EXISTS {db}.slo_api_latency
(
    minute            DateTime('UTC'),
    route             String,
    span              String,
    process           String,
    requests          UInt64,
    errors            UInt64,
    latency_ms        Array(UInt32),
    latency_requests  Array(UInt64)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, route, span);

-- Availability: one row per health probe of the dashboard service (tidemark slo probe).
CREATE TABLE IF NOT EXISTS {db}.slo_probes
(
    probed_at   DateTime('UTC'),
    target      String,
    ok          UInt8,
    status      UInt16,
    latency_ms  UInt32
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(probed_at)
ORDER BY (target, probed_at);

-- Ingest accuracy: each reconciliation of produced (the generator manifest) against counted.
CREATE TABLE IF NOT EXISTS {db}.slo_ingest
(
    checked_at  DateTime('UTC'),
    stream_id   String,
    expected    UInt64,
    counted     UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(checked_at)
ORDER BY (checked_at, stream_id);

-- The SLO monitor's evaluations (one row per SLO per evaluation), read by /metrics and the dashboard.
CREATE TABLE IF NOT EXISTS {db}.slo_status
(
    evaluated_at  DateTime('UTC'),
    slo           String,
    window_s      UInt32,
    target        Float64,
    measured      UInt8,
    value         Float64,
    good          Float64,
    total         Float64,
    budget_left   Float64,
    burn_rate     Float64,
    burning       UInt8
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(evaluated_at)
ORDER BY (evaluated_at, slo);
