"""`tidemark keys create|list|revoke`: the key is printed once, stored hashed, maps to one tenant,
and stops working after revocation (within the API's key cache, 1 s in these tests)."""

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest
from serving_helpers import tenant_name

pytestmark = pytest.mark.integration


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tidemark.cli", "keys", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ,
    )


def test_keys_create_list_revoke(api, writer, serving_cfg):
    t = tenant_name("cli")
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
    assert [(k["key_id"], k["tenant_id"], k["revoked"]) for k in listed] == [(key_id, t, False)]
    assert api.get("/api/v1/me", token).json()["tenant"] == t
    assert _cli("revoke", key_id).returncode == 0
    deadline = time.monotonic() + 5
    while api.get("/api/v1/me", token).status_code != 401:
        assert time.monotonic() < deadline, "a revoked key still works after 5 s"
        time.sleep(0.2)
    assert json.loads(_cli("list", "--tenant", t, "--json").stdout)[0]["revoked"] is True
    bad = _cli("create", "--tenant", "x' OR 1=1")
    assert bad.returncode == 1 and "tenant" in bad.stderr
