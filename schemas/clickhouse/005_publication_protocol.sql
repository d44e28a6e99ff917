-- The batch layer's publication protocol and the speed layer's identities
-- (see tidemark/batch/publication.py and tidemark/serving/rollups.py).

-- published_hours becomes the log of every version of an hour, not only of switches:
--   staged         a run began staging this version (its rows exist but nothing points at them;
--                  cleanup leaves a young staged version alone: another run may be about to publish it)
--   published      the switch; among an hour's published rows the one with the highest
--                  (delta_version, sequence) is current, so an older snapshot can never win
--   failed_quality the gate failed; the version's rows were removed
--   discarded      the run lost the compare-and-set (a fresher snapshot was already published)
--                  or cleanup removed an abandoned staging; its rows were removed
--   failed_run     the run died after staging (recorded when it could be)
-- content_key identifies the lake files (and transform) a version was computed from: an unchanged
-- hour is recognised without recomputing it.
ALTER TABLE {db}.published_hours MODIFY COLUMN status
    Enum8('published' = 1, 'failed_quality' = 2, 'staged' = 3, 'discarded' = 4, 'failed_run' = 5);
ALTER TABLE {db}.published_hours ADD COLUMN content_key String;

-- One row per stream identity (a checkpoint): which topic it consumes and when it was created.
-- Per topic, the newest identity is the current one: serving counts streaming rows of current
-- identities only, and only up to their last committed micro-batch. A stream restarted from a
-- fresh checkpoint (which replays the topic) or a second stream on the same topic therefore never
-- doubles a total; the rows of a superseded identity are retired by `tidemark stream-retire`.
CREATE TABLE IF NOT EXISTS {db}.stream_identities
(
    stream_id      String,
    epoch          UInt64,          -- versions of this identity: [epoch * 1e9, (epoch + 1) * 1e9)
    topic          String,
    checkpoint     String,
    created_at     DateTime('UTC'), -- when the checkpoint (and so the identity) was created
    registered_at  DateTime('UTC')
)
ENGINE = MergeTree
ORDER BY (topic, created_at, stream_id);

-- Identities of streams that ran before this migration: one per stream_id seen, topic unknown
-- (''), so the newest of them is current.
INSERT INTO {db}.stream_identities
SELECT stream_id, intDiv(min(version), 1000000000), '', '', min(committed_at), now()
FROM {db}.stream_batches GROUP BY stream_id;

-- An index of the Delta log: which commit added data files to which event hour. Built
-- incrementally from the table's _delta_log (tidemark/batch/lake_log.py), it answers "did any
-- commit after version V add data to hour H?" without scanning data: the dirty-hour rule.
-- Only data changes are indexed (dataChange = true), so OPTIMIZE never makes an hour dirty.
-- Rows with event_hour = 1970-01-01 mark versions read that added no event hour (the watermark).
-- Not partitioned: each indexing INSERT is one block, so it lands whole or not at all.
CREATE TABLE IF NOT EXISTS {db}.lake_commits
(
    table_uri    String,          -- the Delta table's location (one index per table)
    version      UInt64,
    event_hour   DateTime('UTC'),
    files        UInt32,
    records      UInt64,
    commit_time  DateTime('UTC')
)
ENGINE = MergeTree
ORDER BY (table_uri, event_hour, version);
