-- API keys of the serving API (tidemark/serving/keys.py, `tidemark keys create|list|revoke`).
--
-- A key is `tmk_<key_id>_<secret>`; only sha256(key_id:secret) is stored, so the table (readable
-- by the serving users, who resolve keys with it) never holds a usable key. Each key belongs to
-- exactly one tenant. Rows are appended, never updated: the newest row of a key_id (by `sequence`,
-- epoch microseconds) is its state, so a revocation is one more row with revoked = 1.
-- rate_per_s / burst override the per-tenant token bucket for this key's tenant (0 = default).
CREATE TABLE IF NOT EXISTS {db}.api_keys
(
    key_id      String,
    key_hash    String,
    tenant_id   String,
    name        String,
    created_at  DateTime('UTC'),
    revoked     UInt8,
    rate_per_s  Float64,
    burst       UInt32,
    sequence    UInt64
)
ENGINE = MergeTree
ORDER BY (key_id, sequence);
