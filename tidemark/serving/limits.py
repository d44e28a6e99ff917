"""Rate limits: token buckets in Redis, shared by every API process. Two per request, in one
round trip: the client address's first, then (only if the client had a token, and the request
carries a valid key) the key's tenant's. A request without a valid key spends its client's tokens
like any other, so nobody without a key can run up costs; keys are checked in memory, so that
check costs nothing whichever comes first.

The same script reads the request's cache entry (and its remembered timeout) when both buckets
gave a token, so a cache hit costs one Redis round trip in all (tidemark/serving/cache.py).

One Lua script refills each bucket by the time elapsed (Redis's own clock, so API hosts' clocks do
not matter), takes a token if there is one, and otherwise says how long until the next one: the
``Retry-After`` of the 429. A bucket's key expires once it would be full again, so idle clients and
tenants cost nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_TOKEN_BUCKETS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function take(key, rate, burst)
  local state = redis.call('HMGET', key, 'tokens', 'ts')
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
  redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
  return allowed, wait
end
local ca, cw = take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
if ca == 0 or #KEYS < 2 then
  return {ca, tostring(cw), 0, '0', false, false}
end
local ta, tw = take(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
if ta == 0 or #KEYS < 3 then
  return {ca, tostring(cw), ta, tostring(tw), false, false}
end
return {ca, tostring(cw), ta, tostring(tw), redis.call('GET', KEYS[3]), redis.call('GET', KEYS[3] .. ':err')}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: int  # whole seconds, at least 1 when refused (Retry-After takes integers)


def _decision(allowed, wait) -> Decision:
    return Decision(True, 0) if int(allowed) else Decision(False, max(1, math.ceil(float(wait))))


class RateLimiter:
    def __init__(self, redis, default_rate: float, default_burst: int, client_rate: float, client_burst: int):
        self.default_rate = default_rate
        self.default_burst = default_burst
        self.client_rate = client_rate
        self.client_burst = client_burst
        self._script = redis.register_script(_TOKEN_BUCKETS)

    async def admit(
        self, address: str, tenant: str | None = None, rate: float = 0.0, burst: int = 0, cache_key: str | None = None
    ) -> tuple[Decision, Decision | None, tuple[bytes | None, bytes | None] | None]:
        """(the client's decision, the tenant's or None when no tenant was given or the client had
        no token, and -- when ``cache_key`` was given and both were allowed -- the raw cache entry
        and remembered timeout under it). A key's own rate/burst of 0 means the server default."""
        # Prefixes apart: a tenant id may contain ':' but never makes a key starting "tm:rlc:".
        keys = [f"tm:rlc:{address}"]
        if tenant is not None:
            keys.append(f"tm:rl:{tenant}")
            if cache_key is not None:
                keys.append(cache_key)
        args = [self.client_rate, self.client_burst, rate or self.default_rate, burst or self.default_burst]
        ca, cw, ta, tw, entry, failed = await self._script(keys=keys, args=args)
        client = _decision(ca, cw)
        tenant_decision = _decision(ta, tw) if client.allowed and tenant is not None else None
        read = (entry, failed) if len(keys) == 3 and tenant_decision is not None and tenant_decision.allowed else None
        return client, tenant_decision, read
