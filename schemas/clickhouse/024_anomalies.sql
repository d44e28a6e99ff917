-- Anomalies found on the rollups (tidemark/anomalies): one row per (tenant, grain, time, metric,
-- dimension, value) whose count left its seasonal baseline (same hour of week over the last weeks,
-- median and MAD). Written by `tidemark anomalies detect` (and the hourly DAG after each publish),
-- read by GET /api/v1/anomalies.
--
-- A detection run owns its range: it deletes the rows of its grain, range and tenants, then inserts
-- what it found, so running it twice gives the same rows. ReplacingMergeTree (keyed on the whole
-- identity, the newest detected_at wins) keeps two runs racing on one range from doubling a row;
-- readers use FINAL.
CREATE TABLE IF NOT EXISTS {db}.anomalies
(
    tenant_id    String,
    grain        Enum8('hour' = 1, 'minute' = 2),
    at           DateTime('UTC'),      -- the hour's (or minute's) start
    metric       Enum8('events' = 1, 'users' = 2),
    dimension    String,               -- 'all' (value '') or country, device, page
    value        String,
    kind         Enum8('spike' = 1, 'drop' = 2),
    observed     Float64,
    expected     Float64,              -- the baseline: median of the same hour of week
    score        Float64,              -- (observed - expected) / robust spread
    weeks        UInt8,                -- weeks of history the baseline had
    detected_at  DateTime('UTC'),
    run_id       String
)
ENGINE = ReplacingMergeTree(detected_at)
PARTITION BY toYYYYMM(at)
ORDER BY (tenant_id, grain, at, metric, dimension, value);
