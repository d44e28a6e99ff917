-- Measured freshness: every committed micro-batch records how long each of its on-time
-- events took from event time to queryable (the moment its registry row is written), as a
-- histogram in 100 ms steps: freshness_ms[i] milliseconds for freshness_events[i] events.
-- Percentiles over any set of batches are then exact up to the step:
--   SELECT quantilesExactWeighted(0.5, 0.95, 0.99)(f, n)
--   FROM stream_batches ARRAY JOIN freshness_ms AS f, freshness_events AS n WHERE ...
ALTER TABLE {db}.stream_batches ADD COLUMN freshness_ms Array(UInt32);
ALTER TABLE {db}.stream_batches ADD COLUMN freshness_events Array(UInt64);
