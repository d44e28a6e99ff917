-- Rollups written by both layers. See schemas/README.md for the design.
--
-- Writers INSERT into the Null-engine table `rollup_input` only. Its two
-- materialized views turn each INSERT into rows of `minute_rollups` (all
-- dimensions, 1-minute grain) and `hour_rollups` (one dimension at a time,
-- 1-hour grain: a 7-day dashboard reads 168 rows per value, not every minute
-- of every combination). Because the Null table stores nothing, each INSERT
-- writes each target once.
--
-- `layer` + `version` identify the writer: the stream writes with
-- layer='stream' and version = its micro-batch version, the batch layer with
-- layer='batch' and version = the publish version of the hour. They lead the
-- sort key after the time column, so a replayed micro-batch can be found and
-- removed, and a published hour can supersede the streaming rows of that hour.
--
-- Distinct users are uniqCombined states (exact for small sets, HLL beyond,
-- error well under 1 % at the default precision), merged across minutes,
-- hours and days with uniqCombinedMerge. Per-minute exact counts cannot be
-- summed; states can.

CREATE TABLE IF NOT EXISTS {db}.rollup_input
(
    layer      Enum8('stream' = 1, 'batch' = 2),
    version    UInt64,
    tenant_id  String,
    minute     DateTime('UTC'),
    country    String,
    device     String,
    page       String,
    events     UInt64,
    user_ids   Array(String)
)
ENGINE = Null;

CREATE TABLE IF NOT EXISTS {db}.minute_rollups
(
    tenant_id  String,
    minute     DateTime('UTC'),
    layer      Enum8('stream' = 1, 'batch' = 2),
    version    UInt64,
    country    String,
    device     String,
    page       String,
    events     UInt64,
    users      AggregateFunction(uniqCombined, String)
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMMDD(minute)
ORDER BY (tenant_id, minute, layer, version, country, device, page);

CREATE TABLE IF NOT EXISTS {db}.hour_rollups
(
    tenant_id  String,
    dimension  String,
    hour       DateTime('UTC'),
    layer      Enum8('stream' = 1, 'batch' = 2),
    version    UInt64,
    value      String,
    events     UInt64,
    users      AggregateFunction(uniqCombined, String)
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMMDD(hour)
ORDER BY (tenant_id, dimension, hour, layer, version, value);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.minute_rollups_mv TO {db}.minute_rollups AS
SELECT
    tenant_id, minute, layer, version, country, device, page, events,
    arrayReduce('uniqCombinedState', user_ids) AS users
FROM {db}.rollup_input;

-- dimension 'all' (value '') carries the per-hour totals and distinct users.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.hour_rollups_mv TO {db}.hour_rollups AS
SELECT
    tenant_id,
    dim.1 AS dimension,
    toStartOfHour(minute) AS hour,
    layer,
    version,
    dim.2 AS value,
    sum(events) AS events,
    uniqCombinedMergeState(arrayReduce('uniqCombinedState', user_ids)) AS users
FROM {db}.rollup_input
ARRAY JOIN [('all', ''), ('country', country), ('device', device), ('page', page)] AS dim
GROUP BY tenant_id, dimension, hour, layer, version, value;
