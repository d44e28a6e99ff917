-- How far back the hot tier dropped minute rows (tidemark/tiering/hot.py): minute_rollups holds
-- nothing complete before max(dropped_through) (a republished hour writes its minute rows again,
-- the rest of its day stays dropped). Written before each DROP PARTITION, so a reader never sees a
-- dropped day without it. The serving API reads max(dropped_through) with each registry refresh
-- and answers minute-only questions before it from the hour grain where it can, else refuses
-- with a 400 (tidemark/serving/queries.py choose_grain): never a silent partial answer.
CREATE TABLE IF NOT EXISTS {db}.minute_horizon
(
    dropped_through  DateTime('UTC'),
    recorded_at      DateTime('UTC'),
    run_id           String
)
ENGINE = MergeTree
ORDER BY (dropped_through, recorded_at);
