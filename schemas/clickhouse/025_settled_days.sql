-- Settled-day states: one row per (tenant, dimension, value, day) for a day whose 24 hours are all
-- published by the batch layer, so a 90-day question merges 90 distinct-user states per value
-- instead of 2,160 hourly ones (tidemark/batch/settled.py builds them; tidemark/serving reads them).
--
-- A republished hour must never be hidden behind a day built before it. So a build is tied to the
-- exact versions it was made from: `settled_days` holds, per build, the digest of the 24 published
-- versions (tidemark.lambda_merge.day_digest), and a reader takes a build only when the digest of
-- its own registry snapshot's versions for that day is the same; otherwise it reads the hour rows
-- (day_rollups, lambda-merged), as if no build existed. A republish makes the next build.
--
-- The rows of a build are written first, its `settled_days` row last: a build is visible only
-- complete, and rows of a build that died half-way are never read. Two builds of the same versions
-- (two runs at once) are told apart by `build`: a reader takes one.
-- Distinct users are uniqCombined(15) states, the precision of day_rollups, so both merge in one query.
CREATE TABLE IF NOT EXISTS {db}.settled_day_rollups
(
    tenant_id  String,
    dimension  String,
    day_start  DateTime('UTC'),
    build      UInt64,
    value      String,
    events     UInt64,
    users      AggregateFunction(uniqCombined(15), String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(day_start)
ORDER BY (tenant_id, dimension, day_start, build, value)
SETTINGS index_granularity = 256;

CREATE TABLE IF NOT EXISTS {db}.settled_days
(
    day_start  DateTime('UTC'),
    build      UInt64,
    digest     String,
    rows       UInt64,
    built_at   DateTime('UTC')
)
ENGINE = MergeTree
ORDER BY (day_start, build);
