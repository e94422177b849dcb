"""Low-Latency HLS over HTTP: the packager's playlists, init segments, segments and parts.

``GET /hls/{show}/index.m3u8`` (any token of the show, like WHEP: ``Authorization: Bearer`` or
``?token=``) answers the multivariant playlist, which names the media playlist under the show's
stream key: ``/hls/{show}/{key}/live.m3u8``. The key is random per broadcast and unguessable, so
everything under it is public, token-free and cacheable by a CDN (segments and parts immutable,
playlists for about a part); only the small multivariant playlist goes to the origin per viewer.

Blocking playlist reload (RFC 8216bis §6.2.5.2): ``_HLS_msn``/``_HLS_part`` hold the request until
that part (or a later one) exists; a request for the preload-hinted part waits for it the same way.
``GET /hls/{show}/status`` tells the studio whether HLS is on and how far behind live it is.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from media.hls import HlsConfig, HlsPackager, HlsUnavailable
from media.hls.packager import check_codecs
from media.hls.playlist import media_playlist, multivariant_playlist

from .access import assert_may_watch
from .appkeys import SETTINGS
from .auth import authenticate
from .errors import ApiError, ConfigError
from .media_api import RELAY, ensure_local
from .shows import check_show_id

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization",
    "Access-Control-Max-Age": "600",
}
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
IMMUTABLE = "public, max-age=31536000, immutable"
NAME_RE = re.compile(r"^(?:init(\d{1,9})\.mp4|(\d{1,12})\.m4s|p(\d{1,12})\.m4s)$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def with_cors(handler: Handler) -> Handler:
    """Errors as ``{"error": {code, message}}`` too, but with CORS so a player on a CDN origin sees them."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            headers = dict(CORS, **{"Cache-Control": "no-store"})
            return web.json_response({"error": exc.to_dict()}, status=exc.status, headers=headers)

    return wrapped


def _packager(request: web.Request, show_id: str) -> HlsPackager:
    """The show's packager on this node, or why there is none (409 with a code)."""
    relay = request.app[RELAY]
    if relay.config.hls is None:
        raise ApiError(501, "hls_disabled", "LL-HLS is turned off on this server (--no-hls)")
    router = relay.routers.get(show_id)
    if router is None or not router.producers:
        raise ApiError(409, "not_live", "this show is not live on this node")
    if router.hls is None:
        try:
            check_codecs(router.producers)
        except HlsUnavailable as exc:
            raise ApiError(409, "hls_unavailable", str(exc)) from None
        raise ApiError(409, "not_live", "this show's HLS stream has not started")
    return router.hls


def _keyed(request: web.Request) -> HlsPackager:
    show_id = check_show_id(request.match_info["show_id"])
    packager = _packager(request, show_id)
    if request.match_info["key"] != packager.key:
        raise ApiError(404, "no_stream", "this HLS stream has ended or never existed")
    return packager


def _playlist(text: str, cache: str) -> web.Response:
    headers = dict(CORS, **{"Cache-Control": cache})
    return web.Response(text=text, content_type=PLAYLIST_TYPE, headers=headers)


async def handle_multivariant(request: web.Request) -> web.Response:
    show_id = check_show_id(request.match_info["show_id"])
    claims = await authenticate(request, show_id)
    await assert_may_watch(request.app, show_id, claims.user_id)  # a banned user gets no playlist
    if request.app[RELAY].config.hls is not None:
        await ensure_local(request.app, show_id)  # origin elsewhere: an edge here packages it
    packager = _packager(request, show_id)
    # just after go-live: wait for the first keyframe rather than send a player away
    if not await packager.wait(lambda: bool(packager.segments), packager.config.block_timeout_s):
        raise ApiError(409, "not_live", "this show's HLS stream has not started")
    # per viewer (token-checked): never cached by a shared cache
    return _playlist(
        multivariant_playlist(packager, f"{packager.key}/live.m3u8"), "private, no-store"
    )


def _query_int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 12:
        raise ApiError(400, "bad_hls_query", f"{name} must be a non-negative integer")
    return int(raw)


async def handle_media_playlist(request: web.Request) -> web.Response:
    packager = _keyed(request)
    config = packager.config
    msn = _query_int(request, "_HLS_msn")
    part = _query_int(request, "_HLS_part")
    if msn is None:
        if part is not None:
            raise ApiError(400, "bad_hls_query", "_HLS_part needs _HLS_msn")
        return _playlist(
            _rendered(packager), f"public, max-age={max(1, int(config.part_target_s))}"
        )
    if msn > packager.last_msn + 2:  # RFC 8216bis §6.2.5.2: too far in the future
        raise ApiError(400, "bad_hls_query", "_HLS_msn is more than two segments ahead of live")
    timeout = min(config.block_timeout_s, 3 * config.target_duration_s)
    if not await packager.wait(lambda: packager.has_part(msn, part), timeout):
        if not packager.closed:
            raise ApiError(503, "hls_timeout", "that part did not appear in time")
    # any playlist holding that part answers a blocking URL: a CDN may keep it and share it
    return _playlist(_rendered(packager), f"public, max-age={6 * config.target_duration_s}")


def _rendered(packager: HlsPackager) -> str:
    """One rendering per window change, shared by every waiting viewer."""
    if packager.rendered is None or packager.rendered[0] != packager.version:
        packager.rendered = (packager.version, media_playlist(packager))
    return packager.rendered[1]


async def handle_file(request: web.Request) -> web.Response:
    packager = _keyed(request)
    match = NAME_RE.match(request.match_info["name"])
    if match is None:
        raise ApiError(404, "no_such_file", "no such HLS file")
    init, msn, number = match.groups()
    data: bytes | None = None
    if init is not None:
        data = packager.inits.get(int(init))
    elif msn is not None:
        segment = packager.segment(int(msn))
        data = segment.data if segment is not None else None
    else:
        wanted = int(number)
        if wanted == packager.next_part:  # the preload hint: hold until it is written
            await packager.wait(lambda: wanted in packager.parts, packager.config.block_timeout_s)
        part = packager.parts.get(wanted)
        data = part.data if part is not None and part.data else None
    if data is None:
        raise ApiError(404, "no_such_file", "that HLS file is not (or no longer) available")
    headers = dict(CORS, **{"Cache-Control": IMMUTABLE})
    return web.Response(body=data, content_type="video/mp4", headers=headers)


async def handle_status(request: web.Request) -> web.Response:
    """Whether HLS is on for the show, and its delay behind live (for the studio)."""
    show_id = check_show_id(request.match_info["show_id"])
    await authenticate(request, show_id)
    try:
        packager = _packager(request, show_id)
    except ApiError as exc:
        status = {"available": False, "code": exc.code, "reason": exc.message}
    else:
        status = packager.status()
        status["playlist"] = f"/hls/{show_id}/index.m3u8"
    return web.json_response({"hls": status}, headers=dict(CORS, **{"Cache-Control": "no-store"}))


async def handle_options(request: web.Request) -> web.Response:
    return web.Response(status=204, headers=CORS)


async def hls_ctx(app: web.Application) -> AsyncIterator[None]:
    """The relay's packagers follow the server's HLS settings (after ``media_api`` made the relay)."""
    settings = app[SETTINGS]
    relay = app[RELAY]
    if settings.hls and not 0.1 <= settings.hls_part_s <= settings.hls_segment_s / 4:
        raise ConfigError(
            "--hls-part-s must be 0.1 s or more and at most a quarter of --hls-segment-s"
        )
    relay.config.hls = (
        HlsConfig(
            segment_s=settings.hls_segment_s,
            part_s=settings.hls_part_s,
            part_target_s=round(settings.hls_part_s * 4 / 3 + 0.001, 3),
            target_duration_s=math.ceil(2 * settings.hls_segment_s),
        )
        if settings.hls
        else None
    )
    yield


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(hls_ctx)
    app.router.add_get("/hls/{show_id}/index.m3u8", with_cors(handle_multivariant))
    app.router.add_get("/hls/{show_id}/status", with_cors(handle_status))
    app.router.add_get("/hls/{show_id}/{key}/live.m3u8", with_cors(handle_media_playlist))
    app.router.add_get("/hls/{show_id}/{key}/{name}", with_cors(handle_file))
    app.router.add_route("OPTIONS", "/hls/{show_id}/{tail:.*}", handle_options)
