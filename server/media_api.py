"""HTTP signalling for the media relay: WHIP ingest and WHEP playback (RFC 9725).

``POST /whip/{show}`` (host token) and ``POST /whep/{show}`` (any token of the show) take
an ``application/sdp`` offer and answer ``201 Created`` with the SDP answer and a
``Location``; ``DELETE`` on that location ends the session. CORS lets a page on another
origin publish or play. With ``--media-workers N`` viewers are served by worker processes
(``media.worker_pool``); publishers and recordings stay in this process.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web

from media.errors import MediaError
from media.ice import IceConfig
from media.relay import Relay, RelayConfig
from media.worker_pool import WorkerOptions, WorkerPool

from .access import assert_may_watch, assert_owns_viewer, viewer_started
from .appkeys import SETTINGS
from .auth import ANY_ROLE, authenticate
from .errors import ApiError
from .shows import check_show_id, set_live

log = logging.getLogger("liveshop.media_api")

RELAY = web.AppKey("media_relay", Relay)
WORKERS = web.AppKey("media_workers", WorkerPool)  # only with --media-workers N > 0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def media_errors(handler: Handler) -> Handler:
    """The relay's rejections (MediaError) become the API's JSON errors, with their code."""

    @functools.wraps(handler)
    async def translated(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except MediaError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from exc

    return translated


CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Expose-Headers": "Location, Link",
    "Access-Control-Max-Age": "600",
}
HOST_ONLY = frozenset({"host"})


def _relay_config(app: web.Application) -> RelayConfig:
    settings = app[SETTINGS]
    addresses = list(settings.ice_addresses)
    if not addresses and settings.host not in ("", "0.0.0.0", "::"):
        addresses = [settings.host]
    return RelayConfig(
        ice=IceConfig(
            addresses=addresses,
            announced_address=settings.announced_address,
            port_min=settings.udp_port_min,
            port_max=settings.udp_port_max,
            servers=list(settings.ice_servers),
        ),
        connect_timeout_s=float(getattr(settings, "media_connect_timeout_s", 15.0)),
        recordings_dir=Path(settings.data_dir) / "recordings",
    )


async def relay_ctx(app: web.Application) -> AsyncIterator[None]:
    """Create the relay (and the media workers); on shutdown stop them, close every peer connection."""
    settings = app[SETTINGS]
    pool: WorkerPool | None = None

    async def on_live(show_id: str, live: bool) -> None:
        if not live and pool is not None:
            pool.show_ended(show_id)
        try:
            await set_live(app, show_id, live)
        except Exception:
            log.exception("set_live(%s, %s) failed", show_id, live)

    config = _relay_config(app)
    relay = Relay(config, on_live=on_live)
    app[RELAY] = relay
    if settings.media_workers > 0:
        options = WorkerOptions(
            ice=config.ice,
            connect_timeout_s=config.connect_timeout_s,
            gop_max_packets=config.gop_max_packets,
            max_viewers_per_show=config.max_viewers_per_show,
            log_level=settings.log_level,
            log_json=settings.log_json,
        )
        pool = app[WORKERS] = WorkerPool(relay, settings.media_workers, options)
        await pool.start()
    try:
        yield
    finally:
        if pool is not None:
            await pool.close()
        await relay.close()


async def _read_offer(request: web.Request) -> str:
    if request.content_type != "application/sdp":
        raise ApiError(415, "unsupported_media_type", "send the SDP offer as application/sdp")
    try:  # SDP is UTF-8 (RFC 8866 §5); request.text() would raise UnicodeDecodeError → 500
        return (await request.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "bad_sdp", "the SDP offer is not valid UTF-8") from None


def _created(
    request: web.Request, kind: str, show_id: str, session_id: str, sdp: str
) -> web.Response:
    relay = request.app[RELAY]
    headers = dict(CORS)
    headers["Location"] = f"/{kind}/{show_id}/{session_id}"
    links = relay.config.ice.link_headers()
    if links:
        headers["Link"] = ", ".join(links)
    return web.Response(status=201, text=sdp, content_type="application/sdp", headers=headers)


async def handle_whip(request: web.Request) -> web.Response:
    show_id = check_show_id(request.match_info["show_id"])
    await authenticate(request, show_id, HOST_ONLY)
    offer = await _read_offer(request)
    replace = request.query.get("replace", "") in ("1", "true", "yes")
    session = await request.app[RELAY].publish(show_id, offer, replace=replace)
    return _created(request, "whip", show_id, session.id, session.answer)  # type: ignore[attr-defined]


async def handle_whep(request: web.Request) -> web.Response:
    show_id = check_show_id(request.match_info["show_id"])
    claims = await authenticate(request, show_id)
    await assert_may_watch(request.app, show_id, claims.user_id)
    offer = await _read_offer(request)
    pool = request.app.get(WORKERS)
    if pool is not None:
        session_id, answer = await pool.view(show_id, offer, claims.user_id)
        viewer_started(request.app, show_id, session_id, claims.user_id)
        return _created(request, "whep", show_id, session_id, answer)
    session = await request.app[RELAY].view(show_id, offer, claims.user_id)
    viewer_started(request.app, show_id, session.id, claims.user_id)
    return _created(request, "whep", show_id, session.id, session.answer)  # type: ignore[attr-defined]


async def handle_delete(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    show_id = check_show_id(request.match_info["show_id"])
    claims = await authenticate(request, show_id, HOST_ONLY if kind == "whip" else ANY_ROLE)
    session_id = request.match_info["session_id"]
    if kind == "whep":
        assert_owns_viewer(request.app, show_id, session_id, claims)
    pool = request.app.get(WORKERS)
    if kind == "whep" and pool is not None and pool.owns(session_id):
        await pool.end_viewer(show_id, session_id)
    else:
        await request.app[RELAY].get(show_id, session_id, kind).end()
    return web.Response(status=200, headers=CORS)


async def handle_options(request: web.Request) -> web.Response:
    headers = dict(CORS)
    headers["Accept-Post"] = "application/sdp"
    links = request.app[RELAY].config.ice.link_headers()
    if links:
        headers["Link"] = ", ".join(links)
    return web.Response(status=204, headers=headers)


async def handle_recording_start(request: web.Request) -> web.Response:
    show_id = check_show_id(request.match_info["show_id"])
    await authenticate(request, show_id, HOST_ONLY)
    recorder = request.app[RELAY].start_recording(show_id)
    return web.json_response({"recording": {"name": recorder.name, "recording": True}}, status=201)


async def handle_recording_stop(request: web.Request) -> web.Response:
    show_id = check_show_id(request.match_info["show_id"])
    await authenticate(request, show_id, HOST_ONLY)
    path = request.app[RELAY].stop_recording(show_id)
    return web.json_response(
        {"recording": {"name": path.name, "bytes": path.stat().st_size, "recording": False}}
    )


async def handle_recording_list(request: web.Request) -> web.Response:
    show_id = check_show_id(request.match_info["show_id"])
    await authenticate(request, show_id, HOST_ONLY)
    recordings = request.app[RELAY].list_recordings(show_id)
    return web.json_response({"recordings": recordings})


async def handle_recording_get(request: web.Request) -> web.StreamResponse:
    show_id = check_show_id(request.match_info["show_id"])
    await authenticate(request, show_id, HOST_ONLY)
    path = request.app[RELAY].recording_path(show_id, request.match_info["name"])
    return web.FileResponse(
        path, headers={"Content-Disposition": f'attachment; filename="{path.name}"'}
    )


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(relay_ctx)
    app.router.add_post("/whip/{show_id}", media_errors(handle_whip))
    app.router.add_post("/whep/{show_id}", media_errors(handle_whep))
    app.router.add_route("OPTIONS", "/whip/{show_id}", handle_options)
    app.router.add_route("OPTIONS", "/whep/{show_id}", handle_options)
    app.router.add_route("OPTIONS", "/{kind:whip|whep}/{show_id}/{session_id}", handle_options)
    app.router.add_delete("/{kind:whip|whep}/{show_id}/{session_id}", media_errors(handle_delete))
    app.router.add_post("/api/shows/{show_id}/recordings", media_errors(handle_recording_start))
    app.router.add_post("/api/shows/{show_id}/recordings/stop", media_errors(handle_recording_stop))
    app.router.add_get("/api/shows/{show_id}/recordings", media_errors(handle_recording_list))
    app.router.add_get("/api/shows/{show_id}/recordings/{name}", media_errors(handle_recording_get))
