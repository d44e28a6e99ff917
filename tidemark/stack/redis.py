"""The embedded Redis server (the serving layer's cache and rate limits)."""

from __future__ import annotations

import shutil

from tidemark.stack.service_base import Service


class Redis(Service):
    name = "redis"
    binary_hint = "run `make setup` (apt-get install redis-server)"

    def signature(self) -> str:
        return "redis-server"

    @property
    def external(self) -> bool:
        return self.cfg.redis.external

    @property
    def address(self) -> str:
        return self.cfg.redis.url

    def port(self) -> int:
        return self.cfg.redis.port

    def ports(self) -> list[tuple[int, str]]:
        return [(self.cfg.redis.port, "TIDEMARK_REDIS_PORT")]

    def binary(self) -> str | None:
        return shutil.which("redis-server")

    def argv(self, binary: str) -> list[str]:
        data = self.cfg.home / "redis"
        data.mkdir(parents=True, exist_ok=True)
        return [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port()),
            "--dir",
            str(data),
            "--daemonize",
            "no",
            "--save",
            "60 1000",
            "--appendonly",
            "no",
            "--loglevel",
            "warning",
        ]

    def healthy(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.address, socket_timeout=1, socket_connect_timeout=1).ping())
        except (redis.RedisError, OSError):
            return False
