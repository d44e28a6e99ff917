"""`tidemark keys create|list|revoke`: the key is printed once, stored hashed, maps to one tenant,
becomes usable and, once revoked, stops working within the API's key refresh (1 s in these tests;
the bound allows for a loaded machine's slow refresh queries)."""

import hashlib
import json
import os
import subprocess
import sys
import time

from support.serving import SERVER_ENV, tenant_name
from support.wait import wait_until

# TIDEMARK_SERVING_KEY_REFRESH_S of the test API (1 s) plus two refresh queries, which a loaded
# 2-core box can stretch to seconds.
KEY_EFFECT_BOUND_S = 6.0


def _within_bound(api, token: str, status: int) -> float:
    """Seconds until /api/v1/me answers ``status`` for ``token`` (fails past the bound)."""
    started = time.monotonic()

    def answers() -> bool:
        got = api.get("/api/v1/me", token)
        assert got.status_code in (200, 401), got.text
        return got.status_code == status

    wait_until(answers, KEY_EFFECT_BOUND_S, f"the key to answer {status}", interval_s=0.1)
    return time.monotonic() - started


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tidemark.cli", "keys", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **SERVER_ENV},
    )


def test_keys_create_list_revoke(api, writer, serving_cfg):
    t = tenant_name("cli")
    human = _cli("create", "--tenant", t, "--name", "human")
    assert human.returncode == 0 and "accepts it within about 1 s" in human.stdout, human.stdout
    made = _cli("create", "--tenant", t, "--name", "ops laptop", "--json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    token, key_id = created["key"], created["key_id"]
    assert created["tenant"] == t and token.startswith(f"tmk_{key_id}_")
    stored = writer.execute(
        f"SELECT key_hash FROM {serving_cfg.clickhouse.database}.api_keys WHERE key_id = %(k)s", {"k": key_id}
    )
    secret = token.split("_", 2)[2]
    assert stored == [(hashlib.sha256(f"{key_id}:{secret}".encode()).hexdigest(),)]
    assert secret not in str(writer.execute(f"SELECT * FROM {serving_cfg.clickhouse.database}.api_keys"))
    listed = json.loads(_cli("list", "--tenant", t, "--json").stdout)
    assert sorted((k["key_id"], k["tenant_id"], k["revoked"]) for k in listed if k["name"] != "human") == [
        (key_id, t, False)
    ]
    _within_bound(api, token, 200)
    assert api.get("/api/v1/me", token).json()["tenant"] == t
    revoked = _cli("revoke", key_id)
    assert revoked.returncode == 0 and "refuses it within about 1 s" in revoked.stdout, revoked.stdout
    _within_bound(api, token, 401)
    listed = json.loads(_cli("list", "--tenant", t, "--json").stdout)
    assert [k["revoked"] for k in listed if k["key_id"] == key_id] == [True]
    bad = _cli("create", "--tenant", "x' OR 1=1")
    assert bad.returncode == 1 and "tenant" in bad.stderr
