"""`tidemark serve`: the dashboard query API (FastAPI) and the dashboard page at `/`.

Every /api route checks the caller's key (header ``X-API-Key``, or ``Authorization: Bearer``) from
memory, takes a token from the client address's bucket and then the key's tenant's, reading the
question's cache entry in the same Redis call (tidemark/serving/admission.py: a caller without a
valid key costs that, never a ClickHouse query), and answers from the cache or the rollups.
Parameters are whitelisted per route: an unknown parameter (``tenant=...`` included) is a 400,
never ignored.
Errors are JSON ``{"error": code, "detail": what happened and what to do}``; every malformed input
is a 400, and no answer carries internal detail (addresses, exception text): that goes to the log.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from tidemark.config import Settings
from tidemark.serving.admission import Admission, ApiError
from tidemark.serving.cache import Busy
from tidemark.serving.core import Service
from tidemark.serving.queries import Filters
from tidemark.serving.ranges import RangeError, resolve
from tidemark.serving.reader import EXPORT, Overloaded, QueryTimeout, Unavailable
from tidemark.serving.slo_feed import SloFeed, install

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
FAVICON = STATIC / "app" / "favicon.svg"
NODE_MODULES = STATIC / "node_modules"
# Vendored npm files the page and the docs load (no CDN): URL name -> file under node_modules.
VENDOR = {
    "chart.umd.min.js": "chart.js/dist/chart.umd.min.js",
    "swagger-ui-bundle.js": "swagger-ui-dist/swagger-ui-bundle.js",
    "swagger-ui.css": "swagger-ui-dist/swagger-ui.css",
}
RANGE_PARAMS = {"range", "start", "end"}
FILTER_PARAMS = {"country", "device", "page"}
MAX_TEXT = 200
Metric = Literal["events", "users"]
Dimension = Literal["country", "device", "page"]


def _error(status: int, code: str, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def allowed_params(*names: set[str] | str):
    allowed = set()
    for n in names:
        allowed |= {n} if isinstance(n, str) else n

    def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            raise ApiError(
                400,
                "unknown_parameter",
                f"unknown parameter(s) {', '.join(unknown)[:200]}; this endpoint takes {', '.join(sorted(allowed))}",
            )
        for name in request.query_params:
            if len(request.query_params.getlist(name)) > 1:
                raise ApiError(400, "repeated_parameter", f"parameter {name} given more than once")

    return check


def _text(name: str):
    return Query(None, min_length=1, max_length=MAX_TEXT, description=f"only rows whose {name} is exactly this")


def app_from_environment() -> FastAPI:
    """uvicorn's app factory in each API worker process: a worker is an entry point, so it reads the
    settings here, once, and passes them in."""
    from tidemark.config import settings

    return create_app(settings())


def create_app(cfg: Settings) -> FastAPI:

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.service = Service(cfg)
        app.state.slo = SloFeed(cfg)
        await app.state.service.start()
        app.state.slo.start()
        yield
        app.state.slo.close()
        await app.state.service.close()

    app = FastAPI(
        title="Tidemark dashboard API",
        version="1",
        description="Web-analytics rollups for one tenant per API key. Send the key as `X-API-Key`.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return _error(exc.status, exc.code, exc.detail, exc.headers)

    async def admitted_first(request: Request) -> JSONResponse | None:
        """A request that failed before its question was asked: its caller is decided first (the
        tokens are spent, and a 401/429/503 wins over the 400), as if decided up front."""
        adm: Admission | None = getattr(request.state, "admission", None)
        if adm is None:
            return None
        try:
            await adm.check()
        except ApiError as exc:
            return await api_error(request, exc)
        except Unavailable as exc:
            return await unavailable(request, exc)
        return None

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        refused = await admitted_first(request)
        if refused is not None:
            return refused
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}" for e in exc.errors())
        return _error(400, "invalid_parameter", problems[:500])

    def rejected(reason: str, status: int, code: str, detail: str, headers: dict | None = None) -> JSONResponse:
        app.state.service.metrics.inc("tidemark_rejected_total", reason=reason)
        return _error(status, code, detail, headers)

    @app.exception_handler(RangeError)
    async def bad_range(request: Request, exc: RangeError):
        refused = await admitted_first(request)
        if refused is not None:
            return refused
        return _error(400, getattr(exc, "code", "invalid_range"), str(exc))

    @app.exception_handler(QueryTimeout)
    async def timed_out(request: Request, exc: QueryTimeout):
        return rejected(
            "timeout",
            504,
            "query_timeout",
            f"{exc}. Other requests are unaffected; narrow the range or filters, or use the CSV export (longer limit).",
        )

    @app.exception_handler(Overloaded)
    @app.exception_handler(Busy)
    async def overloaded(request: Request, exc: Exception):
        return rejected("overloaded", 503, "overloaded", f"{exc}; retry in a second", {"Retry-After": "1"})

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, exc: Unavailable):
        # The message names no address or error text (tidemark/serving/reader.py logs those).
        return rejected("unavailable", 503, "unavailable", f"{exc}; retry in a few seconds", {"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
        return rejected("internal", 500, "internal_error", "the server failed to answer; the error is logged")

    async def tenant_key(request: Request) -> Admission:
        """The caller, decided (tokens taken) with the question's cache read: see admission.py."""
        service: Service = request.app.state.service
        token = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization") or ""
        if not token and auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        key, unavailable = None, None
        try:  # from memory: costs nothing, whoever asks
            key = service.authenticate(token) if token else None
        except Unavailable as exc:
            unavailable = exc
        address = request.client.host if request.client else "unknown"
        adm = Admission(service, address, token, key, unavailable)
        request.state.admission = adm
        return adm

    def served(body: dict, how: str) -> JSONResponse:
        return JSONResponse(body, headers={"X-Cache": how, "Cache-Control": "no-store"})

    def the_range(range_: str | None, start: str | None, end: str | None):
        return resolve(time.time(), range_, start, end)

    range_q = Query(None, alias="range", max_length=16, description="1h, 6h, 24h, 7d, 30d, 90d or e.g. 90m (ends now)")
    start_q = Query(None, max_length=40, description="ISO 8601 (with zone) or epoch seconds")
    end_q = Query(None, max_length=40, description="ISO 8601 (with zone) or epoch seconds; default now")

    @app.get("/api/v1/me", dependencies=[Depends(allowed_params())])
    async def me(adm: Admission = Depends(tenant_key)):
        """The tenant (and key) this API key belongs to."""
        await adm.check()
        key = adm.key
        assert key is not None  # check() refused the request otherwise
        return {"tenant": key.tenant_id, "key_id": key.key_id, "key_name": key.name}

    @app.get(
        "/api/v1/timeseries", dependencies=[Depends(allowed_params(RANGE_PARAMS, FILTER_PARAMS, "metric", "compare"))]
    )
    async def timeseries(
        request: Request,
        adm: Admission = Depends(tenant_key),
        metric: Metric = "events",
        range_: str | None = range_q,
        start: str | None = start_q,
        end: str | None = end_q,
        country: str | None = _text("country"),
        device: str | None = _text("device"),
        page: str | None = _text("page"),
        compare: bool = False,
    ):
        """Events or distinct users per bucket (minute up to 6 h, hour up to 14 d, day beyond); with
        `compare=true` each point also has `previous`, the period before at the same offset."""
        body, how = await request.app.state.service.time_series(
            adm, the_range(range_, start, end), metric, Filters(country, device, page), compare
        )
        return served(body, how)

    @app.get("/api/v1/top", dependencies=[Depends(allowed_params(RANGE_PARAMS, FILTER_PARAMS, "dimension", "limit"))])
    async def top(
        request: Request,
        adm: Admission = Depends(tenant_key),
        dimension: Dimension = "page",
        limit: int = Query(10, ge=1, le=100),
        range_: str | None = range_q,
        start: str | None = start_q,
        end: str | None = end_q,
        country: str | None = _text("country"),
        device: str | None = _text("device"),
        page: str | None = _text("page"),
    ):
        """The values of one dimension with the most events, with events and distinct users."""
        body, how = await request.app.state.service.top(
            adm, the_range(range_, start, end), dimension, limit, Filters(country, device, page)
        )
        return served(body, how)

    @app.get("/api/v1/totals", dependencies=[Depends(allowed_params(RANGE_PARAMS, FILTER_PARAMS, "compare"))])
    async def totals(
        request: Request,
        adm: Admission = Depends(tenant_key),
        range_: str | None = range_q,
        start: str | None = start_q,
        end: str | None = end_q,
        country: str | None = _text("country"),
        device: str | None = _text("device"),
        page: str | None = _text("page"),
        compare: bool = False,
    ):
        """Events and distinct users over the range (and the previous period with `compare=true`)."""
        body, how = await request.app.state.service.totals(
            adm, the_range(range_, start, end), Filters(country, device, page), compare
        )
        return served(body, how)

    @app.get("/api/v1/anomalies", dependencies=[Depends(allowed_params(RANGE_PARAMS, "metric"))])
    async def anomalies(
        request: Request,
        adm: Admission = Depends(tenant_key),
        metric: Metric | None = None,
        range_: str | None = range_q,
        start: str | None = start_q,
        end: str | None = end_q,
    ):
        """Hours (and live minutes) whose events or distinct users left their seasonal baseline, overall
        or for a top country, device or page: kind (spike or drop), observed, expected and score."""
        body, how = await request.app.state.service.anomalies(adm, the_range(range_, start, end), metric)
        return served(body, how)

    @app.get("/api/v1/realtime", dependencies=[Depends(allowed_params())])
    async def realtime(request: Request, adm: Admission = Depends(tenant_key)):
        """Distinct users in the last 5 minutes (the current one included), from the minute grain."""
        body, how = await request.app.state.service.realtime(adm)
        return served(body, how)

    @app.get("/api/v1/freshness", dependencies=[Depends(allowed_params())])
    async def freshness(request: Request, adm: Admission = Depends(tenant_key)):
        """The newest queryable minute, the last published hour, and the stream's progress and lag."""
        body, how = await request.app.state.service.freshness(adm)
        return served(body, how)

    def csv_response(header: list[str], rows: list[list], name: str, how: str) -> Response:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        for row in rows:  # a value starting with = + - @ would be a formula to a spreadsheet
            writer.writerow(["'" + c if isinstance(c, str) and c[:1] in "=+-@" else c for c in row])
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"', "X-Cache": how},
        )

    @app.get(
        "/api/v1/export/timeseries.csv",
        dependencies=[Depends(allowed_params(RANGE_PARAMS, FILTER_PARAMS, "metric", "compare"))],
    )
    async def timeseries_csv(
        request: Request,
        adm: Admission = Depends(tenant_key),
        metric: Metric = "events",
        range_: str | None = range_q,
        start: str | None = start_q,
        end: str | None = end_q,
        country: str | None = _text("country"),
        device: str | None = _text("device"),
        page: str | None = _text("page"),
        compare: bool = False,
    ):
        """The time series as CSV (export query class: longer time limit)."""
        body, how = await request.app.state.service.time_series(
            adm, the_range(range_, start, end), metric, Filters(country, device, page), compare, EXPORT
        )
        from tidemark.serving.ranges import TimeRange

        iso = lambda t: TimeRange(t, t, "minute").as_dict()["start"]  # noqa: E731
        header = ["bucket_start", metric] + ([f"previous_{metric}"] if compare else [])
        rows = [[iso(p["t"]), p["value"]] + ([p["previous"]] if compare else []) for p in body["points"]]
        return csv_response(header, rows, f"{metric}-{body['bucket']}.csv", how)

    @app.get(
        "/api/v1/export/top.csv",
        dependencies=[Depends(allowed_params(RANGE_PARAMS, FILTER_PARAMS, "dimension", "limit"))],
    )
    async def top_csv(
        request: Request,
        adm: Admission = Depends(tenant_key),
        dimension: Dimension = "page",
        limit: int = Query(10, ge=1, le=100),
        range_: str | None = range_q,
        start: str | None = start_q,
        end: str | None = end_q,
        country: str | None = _text("country"),
        device: str | None = _text("device"),
        page: str | None = _text("page"),
    ):
        """The top-N list as CSV (export query class)."""
        body, how = await request.app.state.service.top(
            adm, the_range(range_, start, end), dimension, limit, Filters(country, device, page), EXPORT
        )
        rows = [[r["value"], r["events"], r["users"]] for r in body["rows"]]
        return csv_response([dimension, "events", "users"], rows, f"top-{dimension}.csv", how)

    @app.get("/health", include_in_schema=False)
    async def health(request: Request):
        checks = await request.app.state.service.health()
        ok = all(v is True for v in checks.values())
        return JSONResponse({"healthy": ok, **checks}, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request):
        return PlainTextResponse(request.app.state.service.metrics.render() + request.app.state.slo.prometheus())

    @app.get("/", include_in_schema=False)
    async def dashboard():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        # Browsers ask for it on every page (the API's JSON and /docs too): without it, a 404 in the console.
        return FileResponse(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    @app.get("/vendor/{name}", include_in_schema=False)
    async def vendor(name: str):
        if name not in VENDOR or not (NODE_MODULES / VENDOR[name]).exists():
            raise ApiError(
                404,
                "not_found",
                f"no vendored file {name[:60]!r} (run `make setup`: npm ci in tidemark/serving/static)",
            )
        return FileResponse(NODE_MODULES / VENDOR[name], headers={"Cache-Control": "max-age=86400"})

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Tidemark API",
            swagger_js_url="/vendor/swagger-ui-bundle.js",
            swagger_css_url="/vendor/swagger-ui.css",
            swagger_favicon_url="/favicon.ico",
        )

    install(app)  # API latency for the SLOs, and GET /slo
    app.mount("/static", StaticFiles(directory=STATIC / "app"), name="static")
    return app
