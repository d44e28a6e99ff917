-- Which stream serves each topic: an explicit, logged promotion (tidemark/stream/identity.py).
-- Per topic, the promotion with the highest sequence names the current stream: serving counts its
-- committed rows only, Airflow's completeness sensor follows its offsets, and retire deletes the rows of
-- the streams it passed over. A stream becomes current by `tidemark stream-promote`, or on its own as
-- the first stream of a topic with none; another checkpoint starting on the topic never takes over.
CREATE TABLE IF NOT EXISTS {db}.stream_promotions
(
    topic        String,
    stream_id    String,
    epoch        UInt64,
    sequence     UInt64,          -- microseconds since 1970 at the promotion: orders a topic's promotions
    promoted_at  DateTime('UTC'),
    promoted_by  String,          -- user@host of `tidemark stream-promote`, or how it happened on its own
    reason       String
)
ENGINE = MergeTree
ORDER BY (topic, sequence);

-- Until now the newest identity of each topic was current: record that as the topic's first promotion,
-- so a running install keeps serving the same stream.
INSERT INTO {db}.stream_promotions
SELECT topic, argMax(stream_id, (created_at, stream_id)), argMax(epoch, (created_at, stream_id)),
       toUInt64(max(created_at)) * 1000000, max(created_at), 'migration', 'the newest identity when promotions began'
FROM {db}.stream_identities GROUP BY topic;

-- Where a stream's checkpoint started reading ('earliest' or 'latest'): one that started at 'latest'
-- lacks the topic's earlier events, so promoting it over a serving stream needs --force.
ALTER TABLE {db}.stream_identities ADD COLUMN starting_offsets String;
