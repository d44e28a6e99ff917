"""Who may ask: a request's key (checked in memory) and its two token buckets, decided once per
request, in the same Redis round trip that reads the request's cache entry.

The route's dependency only collects what the decision needs (the key, the client address); the
decision itself (``Admission.check``) runs when the question's cache key is known, so the token
buckets and the cache entry are one script call (tidemark/serving/limits.py). Every outcome, and
the order in which they win, is the same as deciding up front:

1. the client address's bucket (429), whatever key it sends;
2. keys that cannot be checked right now (503);
3. no key (401), an unknown or revoked key (401);
4. the key's tenant's bucket (429).

A request that fails before its question exists (a malformed range or parameter) is decided
without a cache key first, so it still spends its tokens and still hears 401/429 before its 400
(tidemark/serving/api.py).
"""

from __future__ import annotations

from tidemark.errors import TidemarkError
from tidemark.serving.keys import ApiKey
from tidemark.serving.reader import Unavailable


class ApiError(TidemarkError):
    def __init__(self, status: int, code: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers or {}


class Admission:
    """One request's caller: its key (None if unknown), decided at most once."""

    def __init__(self, service, address: str, token: str, key: ApiKey | None, unavailable: Unavailable | None):
        self.service = service
        self.address = address
        self.token = token
        self.key = key
        self.unavailable = unavailable
        self.decided = False

    @property
    def tenant_id(self) -> str:
        """The key's tenant; only meaningful once ``check`` passed ('' builds a question that
        ``check`` refuses before anything runs)."""
        return self.key.tenant_id if self.key is not None else ""

    async def check(self, cache_key: str | None = None) -> tuple[bytes | None, bytes | None] | None:
        """Take the tokens and raise what the request must hear, else return the raw cache entry
        (and remembered timeout) under ``cache_key`` read in the same round trip. A second call
        (the request was already admitted) does nothing and returns None."""
        if self.decided:
            return None
        self.decided = True
        service = self.service
        client, tenant, cached = await service.admit(self.address, self.key, cache_key)
        if not client.allowed:
            service.metrics.inc("tidemark_rejected_total", reason="client_rate_limited")
            raise ApiError(
                429,
                "rate_limited",
                f"too many requests from this address; retry after {client.retry_after_s} s",
                {"Retry-After": str(client.retry_after_s)},
            )
        if self.unavailable is not None:
            raise self.unavailable
        if not self.token:
            raise ApiError(
                401,
                "missing_key",
                "send your API key in the X-API-Key header (create one with `tidemark keys create --tenant ...`)",
            )
        if self.key is None or tenant is None:
            raise ApiError(401, "invalid_key", "this API key is unknown or revoked")
        if not tenant.allowed:
            service.metrics.inc("tidemark_rejected_total", reason="rate_limited")
            raise ApiError(
                429,
                "rate_limited",
                f"too many requests for this tenant; retry after {tenant.retry_after_s} s",
                {"Retry-After": str(tenant.retry_after_s)},
            )
        return cached
