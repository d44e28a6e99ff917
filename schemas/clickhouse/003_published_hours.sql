-- The batch layer's registry of published hours: the lambda merge switch.
--
-- Publishing an hour = (1) insert its recomputed rollups into rollup_input with
-- layer='batch' and a new version (invisible: no registry row points at it),
-- then (2) insert one row here. That single-row insert is the atomic switch:
-- readers resolve, per hour, the latest 'published' version and read batch rows
-- of exactly that version, and streaming rows only for hours with no published
-- version. A reader therefore sees the old hour or the new one, never a mix or
-- a gap (see tidemark/serving/rollups.py).
--
-- status 'failed_quality' records a gate failure: nothing was switched, the
-- streaming rows (or the previous version) stay visible.
CREATE TABLE IF NOT EXISTS {db}.published_hours
(
    hour            DateTime('UTC'),
    version         UInt64,
    status          Enum8('published' = 1, 'failed_quality' = 2),
    published_at    DateTime('UTC'),
    sequence        UInt64,          -- epoch microseconds of the switch: orders publishes within a second
    delta_version   UInt64,
    raw_rows        UInt64,
    dedup_rows      UInt64,
    rollup_rows     UInt64,
    late_rows       UInt64,
    run_id          String,
    reason          String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, sequence, version);
