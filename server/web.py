"""The web client: static pages and ES modules from ``web_client/``, no build step.

``/`` is the landing page, ``/host/{show_id}`` the host studio, ``/watch/{show_id}`` the viewer
page, ``/verify/{lottery_id}`` re-runs a giveaway draw in the browser; ``/static/…`` serves the
CSS and JavaScript. HTML is never cached (it names the module
versions); static files are revalidated (``no-cache`` + ETag/Last-Modified from aiohttp).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from .errors import not_found

WEB_ROOT = Path(__file__).resolve().parent.parent / "web_client"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
}

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # tokens travel in the URL fragment; never leak the path either
}


def _file_response(path: Path) -> web.FileResponse:
    response = web.FileResponse(path)
    response.headers["Content-Type"] = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers.update(SECURITY_HEADERS)
    return response


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _page(name: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return _file_response(WEB_ROOT / name)

    return handler


async def static_file(request: web.Request) -> web.StreamResponse:
    relative = request.match_info["path"]
    root = WEB_ROOT.resolve()
    path = (root / relative).resolve()
    if root not in path.parents or not path.is_file() or path.suffix not in CONTENT_TYPES:
        raise not_found("not_found", f"no static file {relative!r}")
    return _file_response(path)


def setup(app: web.Application) -> None:
    app.router.add_get("/", _page("index.html"))
    app.router.add_get("/host/{show_id}", _page("host.html"))
    app.router.add_get("/watch/{show_id}", _page("watch.html"))
    app.router.add_get("/verify/{lottery_id}", _page("verify.html"))
    app.router.add_get("/static/{path:.+}", static_file)
