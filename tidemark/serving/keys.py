"""API keys: one key, exactly one tenant; stored hashed (ClickHouse `api_keys`, 011_api_keys.sql).

A key reads ``tmk_<key_id>_<secret>``: the key id (16 hex) finds the row, the secret (43 url-safe
characters, 256 random bits) is checked against ``sha256(key_id:secret)``. The secret is shown
once, at creation; nothing stored can be turned back into a key. A plain (fast) hash is enough
because the secret is random, not a password: there is nothing to guess from a dictionary.

Writes (create, revoke) use the writer connection from the CLI. The API never looks a key up on a
request: it holds every key's latest state in memory (``KeyRing``), re-read in the background every
``key_refresh_s``, so a flood of unknown keys costs a dict lookup, not a ClickHouse query. A created
key becomes usable, and a revoked one is refused, within one refresh (plus the refresh's own query).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from tidemark.config import Settings
from tidemark.errors import TidemarkError
from tidemark.io.clickhouse import client, insert_rows

KEY_PATTERN = re.compile(r"^tmk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
COLUMNS = ("key_id", "key_hash", "tenant_id", "name", "created_at", "revoked", "rate_per_s", "burst", "sequence")


class KeyAdminError(TidemarkError, ValueError):
    """A bad argument to keys create/revoke; the message says what is allowed."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant_id: str
    name: str
    created_at: datetime
    revoked: bool
    rate_per_s: float
    burst: int


def _hash(key_id: str, secret: str) -> str:
    return hashlib.sha256(f"{key_id}:{secret}".encode()).hexdigest()


def parse(token: str) -> tuple[str, str] | None:
    """(key_id, secret) of a well-formed key, else None."""
    match = KEY_PATTERN.match(token or "")
    return (match.group(1), match.group(2)) if match else None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def create(cfg: Settings, tenant: str, name: str = "", rate_per_s: float = 0.0, burst: int = 0) -> tuple[ApiKey, str]:
    """A new key for ``tenant``: returns its record and the key itself (shown once, never stored)."""
    if not TENANT_PATTERN.match(tenant):
        raise KeyAdminError(f"tenant {tenant!r}: use 1-64 letters, digits or _ . : - (starting with a letter or digit)")
    if len(name) > 200:
        raise KeyAdminError("name: at most 200 characters")
    if rate_per_s < 0 or burst < 0:
        raise KeyAdminError("rate and burst must be >= 0 (0 = the server default)")
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    now = _now()
    insert_rows(
        client(cfg.clickhouse),
        f"{cfg.clickhouse.database}.api_keys",
        COLUMNS,
        [
            (
                key_id,
                _hash(key_id, secret),
                tenant,
                name,
                now,
                0,
                float(rate_per_s),
                int(burst),
                int(now.timestamp() * 1_000_000),
            )
        ],
    )
    return ApiKey(key_id, tenant, name, now, False, float(rate_per_s), int(burst)), f"tmk_{key_id}_{secret}"


_LATEST = (
    "SELECT key_id, argMax(tenant_id, sequence), argMax(name, sequence), min(created_at), "
    "argMax(revoked, sequence), argMax(rate_per_s, sequence), argMax(burst, sequence), "
    "argMax(key_hash, sequence) FROM {db}.api_keys {where} GROUP BY key_id ORDER BY key_id"
)


def _record(row) -> ApiKey:
    return ApiKey(row[0], row[1], row[2], row[3], bool(row[4]), float(row[5]), int(row[6]))


def list_keys(cfg: Settings, tenant: str | None = None) -> list[ApiKey]:
    rows = client(cfg.clickhouse).execute(_LATEST.format(db=cfg.clickhouse.database, where=""))
    return [_record(r) for r in rows if tenant is None or r[1] == tenant]


def revoke(cfg: Settings, key_id: str) -> ApiKey:
    found = [k for k in list_keys(cfg) if k.key_id == key_id]
    if not found:
        raise KeyAdminError(f"no key with id {key_id!r}; `tidemark keys list` shows the ids")
    key = found[0]
    ch = client(cfg.clickhouse)
    (key_hash,) = ch.execute(
        f"SELECT argMax(key_hash, sequence) FROM {cfg.clickhouse.database}.api_keys WHERE key_id = %(k)s", {"k": key_id}
    )[0]
    now = _now()
    insert_rows(
        ch,
        f"{cfg.clickhouse.database}.api_keys",
        COLUMNS,
        [
            (
                key_id,
                key_hash,
                key.tenant_id,
                key.name,
                key.created_at,
                1,
                key.rate_per_s,
                key.burst,
                int(now.timestamp() * 1_000_000),
            )
        ],
    )
    return ApiKey(key.key_id, key.tenant_id, key.name, key.created_at, True, key.rate_per_s, key.burst)


class KeyRing:
    """Every key's latest state, in memory: key_id -> (stored hash, record). Replaced whole by each
    load (a revoked or deleted key disappears with the next load), so it holds exactly the table's
    keys: it never grows with what clients send and never evicts a valid key."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[str, ApiKey]] = {}
        self.loaded_at: float | None = None  # time.monotonic() of the last successful load's start
        self.loaded_through: float = 0.0  # wall clock of that start: keys written before it are in

    def load(self, ch, db: str) -> int:
        """Read the latest state of every key (one query); returns how many live keys there are."""
        started_mono, started_wall = time.monotonic(), time.time()
        rows = ch.execute(_LATEST.format(db=db, where=""))
        self._keys = {r[0]: (r[7], _record(r)) for r in rows if not r[4]}
        self.loaded_at, self.loaded_through = started_mono, started_wall
        return len(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def age_s(self) -> float | None:
        return None if self.loaded_at is None else time.monotonic() - self.loaded_at

    def verify(self, token: str) -> ApiKey | None:
        """The live (not revoked) key ``token`` names, checked against its stored hash; else None."""
        parsed = parse(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        found = self._keys.get(key_id)
        if found is None or not hmac.compare_digest(found[0], _hash(key_id, secret)):
            return None
        return found[1]
