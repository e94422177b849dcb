"""HTTP signalling for the media relay: WHIP ingest and WHEP playback (RFC 9725).

``POST /whip/{show}`` (host token) and ``POST /whep/{show}`` (any token of the show) take
an ``application/sdp`` offer and answer ``201 Created`` with the SDP answer and a
``Location``; ``DELETE`` on that location ends the session. CORS lets a page on another
origin publish or play. With ``--media-workers N`` viewers are served by worker processes
(``media.worker_pool``); publishers and recordings stay in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import logging
import os
import secrets
import socket
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web

from media import origin
from media.errors import MediaError
from media.ice import IceConfig
from media.origin import NodeLoad, OriginDirectory
from media.origin_control import ProcessControl
from media.relay import Relay, RelayConfig
from media.sdp import SDPFRAG, ice_etag, trickle
from media.streams import COHOST, MAIN, is_main, media_id, split
from media.whip import PublisherSession
from media.worker_pool import WorkerOptions, WorkerPool

from .access import assert_may_watch, assert_owns_viewer, viewer_started
from .appkeys import REDIS, SETTINGS
from .auth import ANY_ROLE, authenticate, token_from_request
from .config import Settings
from .errors import ApiError
from .insight import replay
from .redis import keys, lua
from .shows import check_show_id, set_live

log = logging.getLogger("liveshop.media_api")

RELAY = web.AppKey("media_relay", Relay)
WORKERS = web.AppKey("media_workers", WorkerPool)  # only with --media-workers N > 0
DIRECTORY = web.AppKey("media_directory", OriginDirectory)
CONTROL = web.AppKey("media_control", ProcessControl)
RETRY_AFTER_S = 5  # a full cluster: when to try again
ORIGIN_LUA = lua.Script(origin.LUA)  # media/origin.py calls it through the one loader

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


# What a page on another origin may do (RFC 9725 §4.1): trickle ICE PATCHes the session
# URL with If-Match, and reads Location, Link (ICE servers) and ETag. Error responses get
# their CORS headers from server.errors.error_middleware.
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, Link, ETag, Accept-Patch, WWW-Authenticate",
    "Access-Control-Max-Age": "600",
}
HOST_ONLY = frozenset({"host"})
PUBLISHERS = frozenset({"host", "cohost"})  # a co-host token publishes the cohost stream


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
        recordings_dir=Path(settings.data_dir) / "recordings",
        pipe_secret=settings.secret,
        pipe_host=_pipe_bind(settings),
        pipe_port_min=settings.pipe_port_min,
        pipe_port_max=settings.pipe_port_max,
    )


def _wildcard(address: str) -> bool:
    return address in ("", "0.0.0.0", "::")


def _pipe_bind(settings: Settings) -> str:
    if settings.pipe_address:
        return settings.pipe_address
    return "0.0.0.0" if _wildcard(settings.host) else settings.host


def _pipe_announced(settings: Settings, bound: str) -> str:
    """Where other nodes send ``join``: explicit, else the bound address, else an ICE one."""
    if settings.pipe_announced_address:
        return settings.pipe_announced_address
    if not _wildcard(bound):
        return bound
    for address in (*settings.ice_addresses, settings.announced_address):
        with contextlib.suppress(ValueError):
            if address and not ipaddress.ip_address(address).is_unspecified:
                return address
    return "127.0.0.1"


def _cpu_seconds(app: web.Application) -> tuple[float, int]:
    """CPU seconds of this process and its media workers, and how many processes that is."""
    seconds, processes = time.process_time(), 1
    pool = app.get(WORKERS)
    if pool is not None:
        for worker in pool.workers:
            used = worker.cpu_seconds()
            if used is not None:
                seconds, processes = seconds + used, processes + 1
    return seconds, processes


def local_viewers(app: web.Application) -> int:
    """Viewers this process serves, its media workers' included."""
    count = sum(len(router.viewers) for router in app[RELAY].routers.values())
    pool = app.get(WORKERS)
    if pool is not None:
        count += sum(worker.load for worker in pool.workers)
    return count


async def relay_ctx(app: web.Application) -> AsyncIterator[None]:
    """Create the relay (and the media workers); on shutdown stop them, close every peer connection."""
    settings = app[SETTINGS]
    pool: WorkerPool | None = None

    async def on_live(show_id: str, live: bool) -> None:
        if not live and pool is not None:
            pool.show_ended(show_id)
        try:
            if is_main(show_id):
                await set_live(app, show_id, live)
            elif not live:  # a co-host's stream ended: the show goes on (server/cohost.py)
                from .cohost import stream_ended

                await stream_ended(app, split(show_id)[0])
        except Exception:
            log.exception("set_live(%s, %s) failed", show_id, live)

    taken_over: set[str] = set()  # shows whose publisher moved to another node

    async def on_live_directory(show_id: str, live: bool) -> None:
        try:
            if live:
                taken_over.discard(show_id)
                await directory.claim(show_id, relay.routers[show_id].epoch)
            else:
                await directory.release(show_id)
        except Exception:
            log.exception("origin directory update for %s failed", show_id)
        if not live and show_id in taken_over:
            taken_over.discard(show_id)  # still live, elsewhere: the show must not read "ended"
            if pool is not None:
                pool.show_ended(show_id)
            return
        await on_live(show_id, live)

    async def on_lost(show_id: str) -> None:
        """Another node's publisher took the show over: ours ends (its edges follow)."""
        router = relay.routers.get(show_id)
        if router is not None and isinstance(router.publisher, PublisherSession):
            taken_over.add(show_id)
            await router.publisher.end()

    config = _relay_config(app)
    relay = Relay(config, on_live=on_live_directory)
    app[RELAY] = relay
    host, port = await relay.serve_pipes()
    node_id = settings.node_id or socket.gethostname()
    token = secrets.token_hex(4)  # names this process in session ids and its control channel
    control = app[CONTROL] = ProcessControl(
        app[REDIS],
        token,
        {"end": _end_local(app), "record": _record_local(app), "trickle": _trickle_local(app)},
    )
    await control.start()
    directory = app[DIRECTORY] = OriginDirectory(
        app[REDIS],
        node_id=node_id,
        process_id=f"{node_id}:{os.getpid()}:{token}",
        pipe_address=(_pipe_announced(settings, host), port),
        url=settings.base_url,
        origin_key=keys.media_stream_origin,
        nodes_key=keys.MEDIA_NODES,
        script=functools.partial(ORIGIN_LUA, app),
        on_lost=on_lost,
    )

    async def rehome(show_id: str) -> tuple[tuple[str, int], str] | None:
        origin = await directory.lookup(show_id)
        if origin is None or origin.process == directory.process_id:
            return None
        return origin.pipe, origin.epoch

    relay.rehome = rehome
    renewing = asyncio.ensure_future(
        directory.run(
            lambda: local_viewers(app),
            lambda: _cpu_seconds(app),
            settings.media_node_max_viewers,
            settings.media_node_max_cpu,
        )
    )
    log.info(
        "media node up",
        extra={"node": node_id, "pipe": f"{directory.pipe_address[0]}:{port}"},
    )
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
        renewing.cancel()
        await control.close()
        if pool is not None:
            await pool.close()
        await relay.close()
        with contextlib.suppress(Exception):
            await directory.close()


async def _read_offer(request: web.Request) -> str:
    if request.content_type != "application/sdp":
        raise ApiError(415, "unsupported_media_type", "send the SDP offer as application/sdp")
    try:  # SDP is UTF-8 (RFC 8866 §5); request.text() would raise UnicodeDecodeError → 500
        return (await request.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "bad_sdp", "the SDP offer is not valid UTF-8") from None


def _created(
    request: web.Request, kind: str, show_id: str, session_id: str, sdp: str, stream: str = MAIN
) -> web.Response:
    relay = request.app[RELAY]
    headers = dict(CORS)
    # ``~token`` names this process, so a DELETE that reaches another one is passed on.
    path = show_id if stream == MAIN else f"{show_id}/{stream}"
    headers["Location"] = f"/{kind}/{path}/{session_id}~{request.app[CONTROL].token}"
    headers["Liveshop-Node"] = request.app[DIRECTORY].process_id  # which process serves it
    headers["ETag"] = ice_etag(sdp)
    headers["Accept-Patch"] = SDPFRAG
    links = relay.config.ice.link_headers()
    if links:
        headers["Link"] = ", ".join(links)
    return web.Response(status=201, text=sdp, content_type="application/sdp", headers=headers)


async def handle_whip(request: web.Request) -> web.Response:
    show_id = check_show_id(request.match_info["show_id"])
    stream = request.match_info.get("stream", "")
    claims = await authenticate(request, show_id, PUBLISHERS)
    if stream == COHOST or claims.role == "cohost":  # OBS knows one URL: the token says which
        from .cohost import publish_cohost

        return await publish_cohost(request, show_id, claims)
    claims.require(HOST_ONLY)
    offer = await _read_offer(request)
    replace = request.query.get("replace", "") in ("1", "true", "yes")
    relay = request.app[RELAY]
    router = relay.routers.get(show_id)
    if not replace and (router is None or router.publisher is None):
        origin = await request.app[DIRECTORY].lookup(show_id)
        if origin is not None and origin.process != request.app[DIRECTORY].process_id:
            raise ApiError(
                409,
                "already_live",
                f"this show is live on node {origin.node} (use ?replace=1 to take over)",
            )
    session = await relay.publish(show_id, offer, replace=replace)
    return _created(request, "whip", show_id, session.id, session.answer)  # type: ignore[attr-defined]


async def handle_whep(request: web.Request) -> web.Response:
    """Play the host's stream (``/whep/{show}``) or the co-host's (``/whep/{show}/cohost``)."""
    show_id = check_show_id(request.match_info["show_id"])
    stream = request.match_info.get("stream", MAIN)
    media = media_id(show_id, stream)
    claims = await authenticate(request, show_id)
    await assert_may_watch(request.app, show_id, claims.user_id)
    offer = await _read_offer(request)
    await _place(request, show_id, stream)
    try:
        await ensure_local(request.app, media)
    except ApiError as exc:
        if stream == MAIN or exc.code != "not_live":
            raise
        raise ApiError(409, "not_live", "no co-host is live in this show") from None
    pool = request.app.get(WORKERS)
    if pool is not None:
        session_id, answer = await pool.view(media, offer, claims.user_id)
        viewer_started(request.app, media, session_id, claims.user_id)
        return _created(request, "whep", show_id, session_id, answer, stream)
    session = await request.app[RELAY].view(media, offer, claims.user_id)
    viewer_started(request.app, media, session.id, claims.user_id)
    return _created(request, "whep", show_id, session.id, session.answer, stream)  # type: ignore[attr-defined]


async def ensure_local(app: web.Application, show_id: str) -> None:
    """Make the show servable here: it is, or an edge fed from its origin is opened/reused."""
    relay = app[RELAY]
    router = relay.routers.get(show_id)
    if router is not None and router.publisher is not None and router.producers:
        return
    directory = app[DIRECTORY]
    origin = await directory.lookup(show_id)
    if origin is None or origin.process == directory.process_id:
        raise ApiError(409, "not_live", "this show is not live")
    await relay.edge_from(show_id, origin.pipe, origin.epoch)


async def _place(request: web.Request, show_id: str, stream: str = MAIN) -> None:
    """A full node sends the viewer elsewhere: 307 to the least loaded node with room.

    Full: at ``--media-node-max-viewers`` (summed over the node's processes) or at
    ``--media-node-max-cpu`` (their mean CPU share), from the node registry (≤ 2 s old).
    """
    settings = request.app[SETTINGS]
    if settings.media_node_max_viewers <= 0 and settings.media_node_max_cpu <= 0:
        return
    directory = request.app[DIRECTORY]
    loads = await directory.nodes()
    per_node: dict[str, list[NodeLoad]] = {}
    for load in loads:
        per_node.setdefault(load.node, []).append(load)
    ours = per_node.pop(directory.node_id, [])  # our own line included (its CPU share)
    viewers = local_viewers(request.app) + sum(
        load.viewers for load in ours if load.process != directory.process_id
    )
    cpu = statistics.fmean([load.cpu for load in ours] or [0.0])
    if not _full(viewers, cpu, settings.media_node_max_viewers, settings.media_node_max_cpu):
        return
    room = []
    for lines in per_node.values():
        node_viewers = sum(line.viewers for line in lines)
        node_cpu = statistics.fmean(line.cpu for line in lines)
        if not _full(node_viewers, node_cpu, lines[0].max_viewers, lines[0].max_cpu):
            room.append((node_viewers, node_cpu, lines[0].url))
    headers = dict(CORS)
    if room:
        url = min(room)[2]
        body = {"error": {"code": "node_full", "message": "this node is full: try the Location"}}
        # Clients drop Authorization on a redirect to another origin (Fetch, aiohttp), so the
        # viewer's own token rides along in the query, which authenticate() also reads.
        query = urlencode({"token": token_from_request(request) or ""})
        raise web.HTTPTemporaryRedirect(
            f"{url.rstrip('/')}/whep/{show_id}{'' if stream == MAIN else '/' + stream}?{query}",
            headers=headers,
            text=json.dumps(body),
            content_type="application/json",
        )
    headers["Retry-After"] = str(RETRY_AFTER_S)
    body = {"error": {"code": "cluster_full", "message": "every media node is full"}}
    raise web.HTTPServiceUnavailable(
        headers=headers, text=json.dumps(body), content_type="application/json"
    )


def _full(viewers: int, cpu: float, max_viewers: int, max_cpu: float) -> bool:
    return (max_viewers > 0 and viewers >= max_viewers) or (max_cpu > 0 and cpu >= max_cpu)


async def handle_delete(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    show_id = check_show_id(request.match_info["show_id"])
    stream = request.match_info.get("stream", MAIN)
    claims = await authenticate(request, show_id, _session_roles(kind, stream))
    show_id = media_id(show_id, stream)  # the relay's key for that stream
    session_id, _, token = request.match_info["session_id"].rpartition("~")
    if not session_id:
        raise ApiError(404, "no_session", "no such session")
    user_id = claims.user_id if kind == "whep" else None  # a viewer ends only its own session
    control = request.app[CONTROL]
    if token == control.token:
        await _end_local(request.app)(kind, show_id, session_id, user_id)
    else:  # held by another process of this node or another node: it checks the owner
        await control.call(
            token, "end", kind=kind, show_id=show_id, session_id=session_id, user_id=user_id
        )
    return web.Response(status=200, headers=CORS)


def _session_roles(kind: str, stream: str) -> frozenset[str]:
    """Who may DELETE/PATCH a session: the host's WHIP the host, the co-host's both, WHEP anyone."""
    if kind == "whep":
        return ANY_ROLE
    return HOST_ONLY if stream == MAIN else PUBLISHERS


def _end_local(app: web.Application) -> Callable[..., Awaitable[dict[str, object]]]:
    async def end(
        kind: str, show_id: str, session_id: str, user_id: str | None = None
    ) -> dict[str, object]:
        if user_id is not None:
            assert_owns_viewer(app, show_id, session_id, user_id)
        pool = app.get(WORKERS)
        if kind == "whep" and pool is not None and pool.owns(session_id):
            await pool.end_viewer(show_id, session_id)
        else:
            await app[RELAY].get(show_id, session_id, kind).end()
        return {}

    return end


def _record_local(app: web.Application) -> Callable[..., Awaitable[dict[str, object]]]:
    """Start or stop recording here, at the show's origin."""

    async def record(show_id: str, start: bool) -> dict[str, object]:
        relay = app[RELAY]
        if start:
            router = relay.routers.get(show_id)
            if router is not None and router.edge is not None:
                raise MediaError(409, "not_live", "this show is not live here")  # an edge
            recorder = relay.start_recording(show_id)
            await replay.recording_started(app, show_id, recorder)  # its timeline capture
            return {"name": recorder.name, "recording": True}
        path = relay.stop_recording(show_id)
        size = path.stat().st_size if path.is_file() else 0  # stopped before its first keyframe
        done = await replay.recording_stopped(app, show_id)
        return {"name": path.name, "bytes": size, "recording": False, **done}

    return record


async def _record(request: web.Request, show_id: str, start: bool) -> dict[str, object]:
    """Recording runs at the origin: here, or on the process the directory names."""
    directory = request.app[DIRECTORY]
    origin = await directory.lookup(show_id)
    if origin is None or origin.process == directory.process_id:
        return await _record_local(request.app)(show_id, start)
    token = origin.process.rpartition(":")[2]
    return await request.app[CONTROL].call(token, "record", show_id=show_id, start=start)


async def handle_patch(request: web.Request) -> web.Response:
    """Trickle ICE (RFC 9725 §4.3.1): the client's late candidates; 204 with the ETag.

    An ICE restart (new ufrag) is 422 ``ice_restart_unsupported``: aiortc cannot restart.
    """
    kind = request.match_info["kind"]
    show_id = check_show_id(request.match_info["show_id"])
    stream = request.match_info.get("stream", MAIN)
    await authenticate(request, show_id, _session_roles(kind, stream))
    show_id = media_id(show_id, stream)
    if request.content_type != SDPFRAG:
        raise ApiError(415, "unsupported_media_type", f"send the ICE fragment as {SDPFRAG}")
    frag = await request.text()
    if_match = request.headers.get("If-Match")
    session_id, _, token = request.match_info["session_id"].rpartition("~")
    if not session_id:
        raise ApiError(404, "no_session", "no such session")
    control = request.app[CONTROL]
    args = {"kind": kind, "show_id": show_id, "session_id": session_id, "frag": frag}
    if token == control.token:
        reply = await _trickle_local(request.app)(**args, if_match=if_match)
    else:  # held by another process of this node or another node
        reply = await control.call(token, "trickle", **args, if_match=if_match)
    return web.Response(status=204, headers={**CORS, "ETag": str(reply["etag"])})


def _trickle_local(app: web.Application) -> Callable[..., Awaitable[dict[str, object]]]:
    """Apply a client's trickled candidates to a session held by this process."""

    async def apply(
        kind: str, show_id: str, session_id: str, frag: str, if_match: str | None
    ) -> dict[str, object]:
        pool = app.get(WORKERS)
        if kind == "whep" and pool is not None and pool.owns(session_id):
            etag = await pool.trickle(show_id, session_id, frag, if_match)
        else:
            session = app[RELAY].get(show_id, session_id, kind)
            etag = await trickle(session.pc, frag, if_match)
        return {"etag": etag}

    return apply


async def handle_options(request: web.Request) -> web.Response:
    headers = dict(CORS)
    if "session_id" in request.match_info:
        headers["Accept-Patch"] = SDPFRAG
    else:
        headers["Accept-Post"] = "application/sdp"
    links = request.app[RELAY].config.ice.link_headers()
    if links:
        headers["Link"] = ", ".join(links)
    return web.Response(status=204, headers=headers)


async def handle_recording_start(request: web.Request) -> web.Response:
    show_id = check_show_id(request.match_info["show_id"])
    await authenticate(request, show_id, HOST_ONLY)
    return web.json_response({"recording": await _record(request, show_id, True)}, status=201)


async def handle_recording_stop(request: web.Request) -> web.Response:
    show_id = check_show_id(request.match_info["show_id"])
    await authenticate(request, show_id, HOST_ONLY)
    return web.json_response({"recording": await _record(request, show_id, False)})


async def handle_recording_list(request: web.Request) -> web.Response:
    show_id = check_show_id(request.match_info["show_id"])
    await authenticate(request, show_id, HOST_ONLY)
    recordings = request.app[RELAY].list_recordings(show_id)
    return web.json_response({"recordings": recordings})


async def handle_recording_get(request: web.Request) -> web.StreamResponse:
    show_id = check_show_id(request.match_info["show_id"])
    await authenticate(request, show_id, HOST_ONLY)
    path = request.app[RELAY].recording_path(show_id, request.match_info["name"])
    content_type = replay.CONTENT_TYPES.get(path.suffix, "application/octet-stream")
    return await replay.serve_file(request, path, content_type, download=True)  # with ranges


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(relay_ctx)
    # A show's other publisher streams (issue 20): before the session routes, which would
    # otherwise take ``OPTIONS /whip/{show}/cohost`` for a session's.
    streams = "{stream:" + COHOST + "}"
    for kind, handler in (("whip", handle_whip), ("whep", handle_whep)):
        app.router.add_post(f"/{kind}/{{show_id}}/{streams}", media_errors(handler))
        app.router.add_route("OPTIONS", f"/{kind}/{{show_id}}/{streams}", handle_options)
    session = "/{kind:whip|whep}/{show_id}/" + streams + "/{session_id}"
    app.router.add_route("OPTIONS", session, handle_options)
    app.router.add_delete(session, media_errors(handle_delete))
    app.router.add_patch(session, media_errors(handle_patch))
    app.router.add_post("/whip/{show_id}", media_errors(handle_whip))
    app.router.add_post("/whep/{show_id}", media_errors(handle_whep))
    app.router.add_route("OPTIONS", "/whip/{show_id}", handle_options)
    app.router.add_route("OPTIONS", "/whep/{show_id}", handle_options)
    app.router.add_route("OPTIONS", "/{kind:whip|whep}/{show_id}/{session_id}", handle_options)
    app.router.add_delete("/{kind:whip|whep}/{show_id}/{session_id}", media_errors(handle_delete))
    app.router.add_patch("/{kind:whip|whep}/{show_id}/{session_id}", media_errors(handle_patch))
    app.router.add_post("/api/shows/{show_id}/recordings", media_errors(handle_recording_start))
    app.router.add_post("/api/shows/{show_id}/recordings/stop", media_errors(handle_recording_stop))
    app.router.add_get("/api/shows/{show_id}/recordings", media_errors(handle_recording_list))
    app.router.add_get("/api/shows/{show_id}/recordings/{name}", media_errors(handle_recording_get))
