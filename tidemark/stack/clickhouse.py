"""The embedded ClickHouse server (its config files: `tidemark.stack.clickhouse_conf`)."""

from __future__ import annotations

import shutil

from tidemark.stack.service_base import Service, http_ok


class ClickHouse(Service):
    name = "clickhouse"
    binary_hint = "run `make setup` (apt-get install clickhouse-server clickhouse-client)"

    def signature(self) -> str:
        return "clickhouse"

    @property
    def external(self) -> bool:
        return self.cfg.clickhouse.external

    @property
    def address(self) -> str:
        return self.cfg.clickhouse.address

    def port(self) -> int:
        return self.cfg.clickhouse.port

    def ports(self) -> list[tuple[int, str]]:
        ch = self.cfg.clickhouse
        return [(ch.port, "CLICKHOUSE_PORT"), (ch.http_port, "CLICKHOUSE_HTTP_PORT")]

    def binary(self) -> str | None:
        return shutil.which("clickhouse-server") or shutil.which("clickhouse")

    def argv(self, binary: str) -> list[str]:
        conf = self.cfg.home / "clickhouse" / "config.xml"
        if binary.endswith("/clickhouse"):
            return [binary, "server", f"--config-file={conf}"]
        return [binary, f"--config-file={conf}"]

    def prepare(self) -> None:
        from tidemark.stack.clickhouse_conf import render

        render(self.cfg.clickhouse, self.cfg.home / "clickhouse", self.cfg.serving)

    def healthy(self) -> bool:
        ch = self.cfg.clickhouse
        if not self.external:
            return http_ok(f"http://{ch.host}:{ch.http_port}/ping")
        from tidemark.io.clickhouse import client

        try:
            client(ch, database="default", connect_timeout=2).execute("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - any failure means "not healthy yet"
            return False
