-- What each tiering run measured (tidemark/tiering/report.py): per tier, table and partition, the
-- rows, bytes, files (ClickHouse: active parts) and small files (below TIDEMARK_SMALL_FILE_BYTES),
-- before the run and after it. A retried task adds a later `reported_at`; take the latest per
-- (run_id, phase). Dry runs write nothing here.
CREATE TABLE IF NOT EXISTS {db}.tiering_reports
(
    run_id        String,
    interval_end  DateTime('UTC'),
    reported_at   DateTime('UTC'),
    dry_run       UInt8,
    phase         Enum8('before' = 1, 'after' = 2),
    tier          String,          -- hot | warm | lake_hot | lake_cold | lake_rejected
    table_name    String,
    partition     String,
    rows          UInt64,
    bytes         UInt64,
    files         UInt64,
    small_files   UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(interval_end)
ORDER BY (interval_end, run_id, phase, tier, table_name, partition);
