"""The embedded Postgres starts whatever TIDEMARK_HOME is, even one the ``postgres`` user cannot reach.

``mktemp -d`` (and pytest's tmp_path) make 0700 root-owned directories. Run as root, Postgres runs as the
``postgres`` user, which cannot enter them: its cluster must then live under that user's own home, and the
server must still start, answer and stop. No other service is needed.
"""

import os
import shutil
import stat

import pytest
from support.ports import free_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="only a root caller runs Postgres as another user")


def test_cluster_of_a_home_closed_to_the_server_user_lives_outside_it_and_serves(tmp_path, monkeypatch):
    from tidemark.config import load
    from tidemark.stack.postgres import Postgres, bin_dir, cluster_root, data_dir

    if bin_dir() is None:
        pytest.fail("no Postgres binaries: run `make setup` (apt-get install postgresql)")
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    assert stat.S_IMODE(closed.stat().st_mode) == 0o700 and closed.stat().st_uid == 0
    home = closed / "home"
    monkeypatch.setenv("TIDEMARK_HOME", str(home))
    monkeypatch.setenv("TIDEMARK_POSTGRES_PORT", str(free_port()))
    cfg = load()
    root = cluster_root(cfg.home)
    assert not root.is_relative_to(closed), root  # the postgres user could never enter it there
    shutil.rmtree(root, ignore_errors=True)  # a fresh cluster every run
    server = Postgres(cfg)
    try:
        status = server.up()
        assert status.healthy, status
        assert (data_dir(cfg) / "PG_VERSION").exists()
        assert data_dir(cfg).stat().st_uid != 0  # owned by the server user, not root
    finally:
        server.down()
        shutil.rmtree(root, ignore_errors=True)
    assert not server.status().healthy
