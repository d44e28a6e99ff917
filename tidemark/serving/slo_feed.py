"""The API's part in the SLOs: it times every /api request into the process's latency recorder
(tidemark/slo/latency.py; flushed to ClickHouse by a background thread, never on the request's
path) and, in the same thread, refreshes its copy of the SLO monitor's last status, which
``/metrics`` (Prometheus text) and ``GET /slo`` (the dashboard's SLO panel) serve from memory.
Neither carries a tenant: the figures are the service's, over every tenant."""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import QueryParams

from tidemark.config import Settings
from tidemark.serving.ranges import resolve
from tidemark.slo.latency import Flusher, LatencyRecorder, span_class
from tidemark.slo.status import latest, prometheus

# Routes whose answer covers a time range: the query SLO's span (7 or 90 days) comes from it.
RANGED = ("/api/v1/timeseries", "/api/v1/top", "/api/v1/totals", "/api/v1/export/")


def span_of(path: str, params) -> str:
    if not path.startswith(RANGED):
        return ""
    try:
        r = resolve(time.time(), params.get("range"), params.get("start"), params.get("end"))
    except Exception:  # noqa: BLE001 - a bad range is a 400 the route reports; its latency still counts
        return "invalid"
    return span_class(r.end - r.start)


class SloFeed:
    def __init__(self, cfg: Settings) -> None:
        self.cfg = cfg
        self.recorder = LatencyRecorder()
        self.status: list[dict] = []
        self.flusher = Flusher(self.recorder, cfg.clickhouse, also=self._refresh)

    def _refresh(self, ch) -> None:
        self.status = latest(ch, self.cfg.clickhouse.database)

    def start(self) -> None:
        self.flusher.start()

    def close(self) -> None:
        self.flusher.stop()

    def prometheus(self) -> str:
        return prometheus(self.status)


class Timing:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it would add a task and a copy per request): times
    every /api request into the app's SloFeed, by route template (never the URL: no tenant or value
    in a label). The router fills ``scope["route"]`` in place, so it is known once the app returns."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith("/api/"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]  # an exception that escapes is a 500

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None)
            feed: SloFeed | None = getattr(scope["app"].state, "slo", None)
            if feed is not None and route:
                params = QueryParams(scope.get("query_string", b""))
                feed.recorder.record(route, span_of(route, params), time.perf_counter() - started, status[0] >= 500)


def install(app: FastAPI) -> None:
    """Time every /api request, and serve ``GET /slo``."""
    app.add_middleware(Timing)

    @app.get("/slo", include_in_schema=False)
    async def slo(request: Request):
        feed: SloFeed = request.app.state.slo
        return JSONResponse({"slos": feed.status}, headers={"Cache-Control": "no-store"})
