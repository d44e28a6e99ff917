-- The serving grain for every hour-aligned question: what 24-hour to 90-day views read
-- (tidemark/serving/queries.py; ranges of up to 6 hours read minute_rollups).
--
-- Why not one row per (tenant, dimension, day, value)? The lambda merge is per HOUR: for each hour
-- a reader takes the batch rows of the hour's published version, else its streaming rows
-- (tidemark/serving/rollups.py). A row summed over a whole day would mix hours of both kinds, and
-- the batch layer republishes single hours at any time (late data). Event counts could be
-- corrected by difference, but distinct-user states cannot be subtracted, so a day-wide row can
-- never honour a republished hour. An MV sees one INSERT at a time and cannot know when a day is
-- settled either.
--
-- So `day_rollups` keeps the merge unit in its key: `hour`, `layer` and `version`, exactly as
-- `hour_rollups` does, and the reader applies the same `merged_filter('toUInt32(hour)')` to it.
-- A day bucket is then, per hour, the published batch version else the stream rows: correct by
-- construction under any republish. What makes it the long-range grain:
--   * distinct users are uniqCombined(15) states (<= 25 KB, std. error ~0.4 %) instead of the
--     default precision 17 (<= 98 KB, ~0.3 %). Merging states is the cost of a distinct-user
--     query (measured on 18.16: 2,160 hourly states, i.e. 90 days, merge in 0.73 s at 17 and
--     0.17 s at 15); a 90-day view merges 2,160 of them, a 7-day view (hour_rollups, precision 17)
--     168;
--   * it is partitioned by month (a 90-day scan opens 3-4 partitions, not 90 daily ones) and
--     sorted by day first, so a range reads whole contiguous runs;
--   * its index granularity is 256 rows, not 8192: ClickHouse deserializes every state of every
--     granule it reads, so with 8192-row granules a 7-day read of 168 rows deserialized ~16 k
--     states (measured on 18.16: 0.2-0.35 s for 168 rows of hour_rollups; this table: ~0.03 s).
--     That is also why the serving API reads this table, not hour_rollups, for hour buckets.
-- States of different precisions do not merge, so every layer is fed here (stream and batch),
-- like hour_rollups, and one query reads this table alone.
--
-- Fed exactly like hour_rollups: a materialized view off the Null table `rollup_input`. Rows of a
-- version are removed together with that version's minute/hour rows (tidemark/batch/publication.py
-- remove_version, tidemark/io/clickhouse_sink.py VERSIONED_TABLES).

CREATE TABLE IF NOT EXISTS {db}.day_rollups
(
    tenant_id  String,
    dimension  String,
    day        Date,
    hour       DateTime('UTC'),
    layer      Enum8('stream' = 1, 'batch' = 2),
    version    UInt64,
    value      String,
    events     UInt64,
    users      AggregateFunction(uniqCombined(15), String)
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (tenant_id, dimension, day, hour, layer, version, value)
SETTINGS index_granularity = 256;

-- No backfill: rows written before this migration cannot be carried over, because their
-- distinct-user states (precision 17) cannot be converted to precision 15 and the user ids
-- themselves are not kept in ClickHouse. Ranges longer than 14 days therefore start at the
-- migration (the embedded stack, tests and benches start from an empty database).

-- dimension 'all' (value '') carries the per-hour totals and distinct users, as in hour_rollups.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.day_rollups_mv TO {db}.day_rollups AS
SELECT
    tenant_id,
    dim.1 AS dimension,
    toDate(minute) AS day,
    toStartOfHour(minute) AS hour,
    layer,
    version,
    dim.2 AS value,
    sum(events) AS events,
    uniqCombinedMergeState(15)(arrayReduce('uniqCombinedState(15)', user_ids)) AS users
FROM {db}.rollup_input
ARRAY JOIN [('all', ''), ('country', country), ('device', device), ('page', page)] AS dim
GROUP BY tenant_id, dimension, day, hour, layer, version, value;
