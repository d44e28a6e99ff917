-- The speed layer's own bookkeeping.

-- One row per committed micro-batch, written last by the batch: the
-- committed-batch registry that makes the stream's writes exactly-once, and
-- the batch's data metrics (rejections by reason, late rows, freshness).
CREATE TABLE IF NOT EXISTS {db}.stream_batches
(
    stream_id          String,
    batch_id           UInt64,
    version            UInt64,
    committed_at       DateTime('UTC'),
    valid_rows         UInt64,
    late_rows          UInt64,
    rejected_rows      UInt64,
    rejected_reasons   Array(String),
    rejected_counts    Array(UInt64),
    rollup_rows        UInt64,
    processing_ms      UInt64,
    newest_event_time  DateTime('UTC'),
    freshness_p50_s    Float64,
    freshness_p95_s    Float64,
    freshness_max_s    Float64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(committed_at)
ORDER BY (stream_id, batch_id);

-- Spark's own progress per micro-batch (from a StreamingQueryListener):
-- input rows and rates, duplicates dropped, and consumer lag.
CREATE TABLE IF NOT EXISTS {db}.stream_progress
(
    stream_id           String,
    batch_id            UInt64,
    reported_at         DateTime('UTC'),
    input_rows          UInt64,
    input_rows_per_s    Float64,
    processed_rows_per_s Float64,
    duplicates_dropped  UInt64,
    duration_ms         UInt64,
    watermark           String,
    end_offsets         String,
    consumer_lag        Int64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(reported_at)
ORDER BY (stream_id, batch_id);

-- Events that arrived later than the allowed lateness, by tenant and event
-- hour, per micro-batch: the batch layer's list of dirty hours.
CREATE TABLE IF NOT EXISTS {db}.late_event_hours
(
    tenant_id        String,
    event_hour       DateTime('UTC'),
    version          UInt64,
    late_events      UInt64,
    last_ingest_time DateTime('UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(event_hour)
ORDER BY (event_hour, tenant_id, version);
