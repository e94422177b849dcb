"""``GET /healthz`` and ``GET /metrics`` (Prometheus text format)."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

from . import __version__
from .appkeys import REDIS
from .redis.store import server_version

HTTP_REQUESTS = Counter(
    "liveshop_http_requests_total", "HTTP requests handled", ["method", "route", "status"]
)
HTTP_SECONDS = Histogram(
    "liveshop_http_request_seconds", "HTTP request handling time", ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)  # fmt: skip


@web.middleware
async def metrics_middleware(
    request: web.Request, handler: web.RequestHandler
) -> web.StreamResponse:
    route = (
        request.match_info.route.resource.canonical
        if request.match_info.route.resource
        else "unmatched"
    )
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        HTTP_REQUESTS.labels(request.method, route, str(status)).inc()
        HTTP_SECONDS.labels(route).observe(time.perf_counter() - started)


async def healthz(request: web.Request) -> web.Response:
    body: dict[str, object] = {"status": "ok", "version": __version__}
    try:
        redis = request.app[REDIS]
        await asyncio.wait_for(redis.ping(), timeout=2)
        body["redis"] = {
            "ok": True,
            "version": await asyncio.wait_for(server_version(redis), timeout=2),
        }
    except Exception as exc:  # any Redis failure means unhealthy, whatever its type
        body["status"] = "unavailable"
        body["redis"] = {"ok": False, "error": str(exc) or type(exc).__name__}
        return web.json_response(body, status=503)
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
