"""Rate limits: token buckets in Redis, shared by every API process. Two per request: the client
address's first (before the key is even looked at, so nobody without a key can run up costs), then
the key's tenant's.

One Lua script refills the bucket by the time elapsed (Redis's own clock, so API hosts' clocks do
not matter), takes a token if there is one, and otherwise says how long until the next one: the
``Retry-After`` of the 429. The bucket's key expires once it would be full again, so idle tenants
cost nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = burst; ts = now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: int  # whole seconds, at least 1 when refused (Retry-After takes integers)


class RateLimiter:
    def __init__(self, redis, default_rate: float, default_burst: int, client_rate: float, client_burst: int):
        self.redis = redis
        self.default_rate = default_rate
        self.default_burst = default_burst
        self.client_rate = client_rate
        self.client_burst = client_burst
        self._script = redis.register_script(_TOKEN_BUCKET)

    async def _take(self, bucket: str, rate: float, burst: int) -> Decision:
        allowed, wait = await self._script(keys=[bucket], args=[rate, burst])
        if int(allowed):
            return Decision(True, 0)
        return Decision(False, max(1, math.ceil(float(wait))))

    async def take(self, tenant: str, rate: float = 0.0, burst: int = 0) -> Decision:
        return await self._take(f"tm:rl:{tenant}", rate or self.default_rate, burst or self.default_burst)

    async def take_client(self, address: str) -> Decision:
        # Its own prefix: a tenant id may contain ':' but never makes a key starting "tm:rlc:".
        return await self._take(f"tm:rlc:{address}", self.client_rate, self.client_burst)
