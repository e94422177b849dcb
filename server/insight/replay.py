"""The shoppable replay: a finished recording played back with the show's commerce on its clock.

While a recording runs, a :class:`Capture` at the show's origin (the process holding the
recorder) listens to the show's event channel and appends the events a replay shows (danmaku,
pinned products, flash sales, auctions, polls, group buys, paid orders as social proof) to a
bounded Redis stream of that recording, each stamped with this process's wall clock. The
recorder stamps the same clock when the file's first frame (its t = 0) arrives, so an event's
place in the recording is ``(stamp - started_at_ms) / 1000`` seconds; a snapshot of what was
pinned or running when Record was pressed opens the stream.

When the recording stops (the host's Stop, or the show ending) its metadata goes to Redis and,
with ``--replay-auto-publish`` (the default), it is public at once: ``/replay/ID`` plays it, the
show JSON's ``replay_url`` and the ``show.ended`` event name it. The host can unpublish and
publish it again. A replay's Buy orders one unit at the product's list price from the product's
stock (``replay_buy.lua``): a normal order paid through ``/api/orders/{id}/pay``; it never
re-opens a flash sale. Recording files stay on the node that recorded them: another node
answers the media request with a redirect there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
from aiohttp import web

from ..appkeys import REDIS, SETTINGS
from ..auth import authenticate, token_from_request, verify_for
from ..errors import ApiError, bad_request, conflict, forbidden, not_found, read_json
from ..openapi import operation
from ..redis import broker, lua
from ..redis import keys as base
from ..web import WEB_ROOT, _file_response

log = logging.getLogger("liveshop.replay")

# A recording id is its file name without the extension: SHOW-YYYYmmdd-HHMMSS-mmm.
REPLAY_ID_RE = re.compile(r"^([A-Za-z0-9_-]{1,64})-([0-9]{8}-[0-9]{6}-[0-9]{3})$")
CONTENT_TYPES = {".webm": "video/webm", ".mkv": "video/x-matroska", ".mp4": "video/mp4"}
# What a replay shows; everything else on the channel (stats, presence, likes, alerts) is skipped.
KEPT = frozenset(
    {
        "chat", "chat.delete", "chat.pin", "chat.unpin", "products",
        "sale.countdown", "sale.started", "sale.stock", "sale.ended",
        "auction.started", "auction.bid", "auction.ended",
        "poll.created", "poll.tally", "poll.closed",
        "group.created", "group.progress", "group.formed", "group.failed", "group.ended",
        "order.paid",
    }
)  # fmt: skip
# A replay is public for as long as it is published: no user ids, tokens or reservations in it.
PRIVATE = frozenset(
    {"uid", "user_id", "winner_user_id", "members", "by", "reservation_id", "expires_at", "key"}
)


def _k(show_id: str, *parts: str) -> str:
    return base.show_key(show_id, "replay", *parts)


def show_of(replay_id: str) -> str:
    """The show of a recording id, or 404 ``replay_not_found``."""
    match = REPLAY_ID_RE.fullmatch(replay_id)
    if not match:
        raise not_found("replay_not_found", f"no replay {replay_id!r}")
    return match.group(1)


def replay_url(replay_id: str) -> str:
    return f"/replay/{replay_id}"


def _public_event(event: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in event.items() if k not in PRIVATE}
    if out.get("type") == "products":
        out["pinned"] = [
            {k: v for k, v in p.items() if k not in PRIVATE} for p in out.get("pinned") or []
        ]
    return out


# -- capture ---------------------------------------------------------------------------------


@dataclass
class Capture:
    """Appends a recording's show events to its timeline stream until the recorder stops."""

    app: web.Application
    show_id: str
    recorder: Any  # media.recorder.Recorder
    pubsub: Any = None
    task: asyncio.Task[None] | None = None
    finished: dict[str, Any] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def replay_id(self) -> str:
        return Path(self.recorder.name).stem

    @property
    def stream(self) -> str:
        return _k(self.show_id, "timeline", self.replay_id)

    async def start(self) -> None:
        """Subscribed before it returns (no event after Record is missed), then the snapshot."""
        self.pubsub = self.app[REDIS].pubsub()
        await self.pubsub.subscribe(base.channel(self.show_id))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            message = await self.pubsub.get_message(timeout=0.5)
            if message and message["type"] == "subscribe":
                break
        for event in await snapshot(self.app, self.show_id):
            await self._append(event)
        self.task = asyncio.create_task(self._run())

    async def _append(self, event: dict[str, Any]) -> None:
        settings = self.app[SETTINGS]
        await self.app[REDIS].xadd(
            self.stream,
            {"ts": int(time.time() * 1000), "e": json.dumps(_public_event(event))},
            maxlen=settings.replay_max_events,
            approximate=True,
        )

    async def _keep(self, message: dict[str, Any]) -> None:
        if message["type"] != "message":
            return
        try:
            envelope = broker.decode(message["data"])
        except (ValueError, KeyError, TypeError):
            return
        public = not envelope.staff_only and envelope.to_user is None
        if public and envelope.event.get("type") in KEPT:
            await self._append(envelope.event)

    async def _run(self) -> None:
        try:
            while not self.recorder.closed:
                message = await self.pubsub.get_message(timeout=0.25)
                if message:
                    await self._keep(message)
            # what was published before Stop may still sit in the connection's buffer (what
            # arrived after it is dropped by the stop time when the timeline is read)
            drain_until = time.monotonic() + 0.5
            while time.monotonic() < drain_until:
                message = await self.pubsub.get_message(timeout=0.05)
                if message is None:
                    break
                await self._keep(message)
        except Exception:
            log.exception("replay capture of %s failed", self.show_id)
        finally:
            with contextlib.suppress(Exception):
                await self.pubsub.aclose()
        await self.finish()

    async def finish(self) -> dict[str, Any]:
        """Once the recorder stopped: store the replay's metadata (published per the settings)."""
        async with self.lock:
            if self.finished is None:
                self.finished = await _store(self.app, self.show_id, self.recorder)
                captures = self.app[CAPTURES]
                if captures.get(self.show_id) is self:
                    del captures[self.show_id]
            return self.finished


CAPTURES = web.AppKey("replay_captures", dict[str, Capture])
BUY_LUA = lua.Script(
    Path(__file__).with_name("replay_buy.lua"),
    libs=[Path(__file__).parent.parent / "commerce" / "interactive_lib.lua"],
)


async def snapshot(app: web.Application, show_id: str) -> list[dict[str, Any]]:
    """What a viewer saw when Record was pressed, as the events that would have shown it."""
    from ..commerce import auctions, group_buys, polls, sales
    from ..commerce.products import pinned_products

    events: list[dict[str, Any]] = [
        {"type": "products", "pinned": await pinned_products(app, show_id)}
    ]
    for sale in await sales.list_sales(app, show_id):
        if sale["status"] == "live":
            events.append(sales.started_event(sale))
        elif sale["status"] == "scheduled":
            events.append(sales.countdown_event(sale))
    for auction in await auctions.list_auctions(app, show_id):
        if auction["status"] == "live":
            events.append({"type": "auction.started", **auctions.event_fields(auction)})
    for poll in await polls.list_polls(app, show_id):
        if poll["status"] == "open":
            events.append({"type": "poll.created", **polls.event_fields(poll)})
    for deal in await group_buys.list_deals(app, show_id):
        if deal["status"] == "live":
            events.append({"type": "group.created", **group_buys.progress_fields(deal)})
    return events


async def recording_started(app: web.Application, show_id: str, recorder: Any) -> None:
    """Called where the recorder runs (the show's origin) right after Record."""
    try:
        capture = Capture(app, show_id, recorder)
        app[CAPTURES][show_id] = capture
        await capture.start()
    except Exception:
        log.exception("replay capture of %s did not start", show_id)


async def recording_stopped(app: web.Application, show_id: str) -> dict[str, Any]:
    """After Stop (the recorder is closed): the replay's fields for the stop answer."""
    capture = app[CAPTURES].get(show_id)
    if capture is None or not capture.recorder.closed:
        return {}
    try:
        meta = await capture.finish()
    except Exception:
        log.exception("replay of %s not stored", show_id)
        return {}
    return {"replay_id": meta["id"], "published": meta["published"]} if meta else {}


async def show_ended(app: web.Application, show_id: str) -> dict[str, Any]:
    """For the ``show.ended`` event: the recording the end stopped becomes a replay first."""
    try:
        capture = app[CAPTURES].get(show_id)
        if capture is not None and capture.recorder.closed:
            await capture.finish()
        url = await app[REDIS].hget(base.meta(show_id), "replay_url")
        return {"replay_url": url} if url else {}
    except Exception:
        log.exception("replay lookup for the end of %s failed", show_id)
        return {}


async def _store(app: web.Application, show_id: str, recorder: Any) -> dict[str, Any]:
    """The metadata of a finished recording (none for one stopped before its first frame)."""
    if recorder.started_at_ms is None or not recorder.path.is_file():
        await app[REDIS].delete(_k(show_id, "timeline", Path(recorder.name).stem))
        return {}  # stopped before its first frame: no replay, no timeline left behind
    duration = await asyncio.to_thread(_duration_s, recorder.path)
    settings = app[SETTINGS]
    replay_id = Path(recorder.name).stem
    media = recorder.path
    if media.suffix == ".mkv":  # H.264: browsers play it from MP4
        media = await asyncio.to_thread(_remux_mp4, recorder.path) or media
    meta = {
        "id": replay_id,
        "show_id": show_id,
        "file": recorder.name,
        "media_file": media.name,
        "content_type": CONTENT_TYPES.get(media.suffix, "application/octet-stream"),
        "started_at_ms": recorder.started_at_ms,
        "stopped_at_ms": recorder.stopped_at_ms,
        "duration_s": duration,
        "bytes": recorder.path.stat().st_size,
        "published": bool(settings.replay_auto_publish),
        "node_url": settings.base_url,
        "url": replay_url(replay_id),
    }
    meta["products"] = sorted(
        {p["id"] for e in await _entries(app, show_id, replay_id) for p in e.get("pinned", [])}
    )
    await app[REDIS].hset(_k(show_id, "recordings"), replay_id, json.dumps(meta))
    await _point_show(app, show_id)
    return meta


def _remux_mp4(src: Path) -> Path | None:
    """The Matroska H.264 recording copied into an MP4 (no re-encode) with its index up front
    (``+faststart``), so a ``<video>`` seeks it through range requests; None if that fails."""
    dst = src.with_suffix(".mp4")
    part = dst.with_name(dst.name + ".part")
    try:
        with (
            av.open(str(src)) as inp,
            av.open(str(part), "w", format="mp4", options={"movflags": "+faststart"}) as out,
        ):
            streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
            for packet in inp.demux():
                if packet.dts is None:
                    continue  # the demuxer's end-of-stream packets
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
        part.rename(dst)
        return dst
    except (av.error.FFmpegError, OSError, ValueError):
        log.exception("remuxing %s to MP4 failed: the replay serves the Matroska file", src)
        part.unlink(missing_ok=True)
        return None


def _duration_s(path: Path) -> float | None:
    """The file's own duration (the muxer writes it on close), for the seek bar before load."""
    try:
        with av.open(str(path)) as container:
            if container.duration:
                return round(container.duration / av.time_base, 3)
    except av.error.FFmpegError:
        pass
    return None


async def _point_show(app: web.Application, show_id: str) -> None:
    """The show's ``replay_url``: its newest published replay (none: the field goes)."""
    replays = await list_replays(app, show_id, published_only=True)
    if replays:
        await app[REDIS].hset(base.meta(show_id), "replay_url", replays[-1]["url"])
    else:
        await app[REDIS].hdel(base.meta(show_id), "replay_url")


# -- reading ---------------------------------------------------------------------------------


async def list_replays(
    app: web.Application, show_id: str, published_only: bool = False
) -> list[dict[str, Any]]:
    raw = await app[REDIS].hgetall(_k(show_id, "recordings"))
    replays = sorted((json.loads(v) for v in raw.values()), key=lambda m: m["started_at_ms"])
    return [m for m in replays if m["published"] or not published_only]


async def get_replay(
    app: web.Application, replay_id: str, request: web.Request | None = None
) -> dict[str, Any]:
    """The replay's metadata; an unpublished one only for the show's host (else 404)."""
    show_id = show_of(replay_id)
    raw = await app[REDIS].hget(_k(show_id, "recordings"), replay_id)
    if not raw:
        raise not_found("replay_not_found", f"no replay {replay_id!r}")
    meta = json.loads(raw)
    if not meta["published"] and not (request is not None and _is_host(request, show_id)):
        raise not_found("replay_not_found", f"no replay {replay_id!r}")
    return meta


def _is_host(request: web.Request, show_id: str) -> bool:
    token = token_from_request(request)
    if not token:
        return False
    try:
        return verify_for(request.app, token, show_id).role == "host"
    except ApiError:
        return False


async def _entries(app: web.Application, show_id: str, replay_id: str) -> list[dict[str, Any]]:
    out = []
    for _, fields in await app[REDIS].xrange(_k(show_id, "timeline", replay_id)):
        event = json.loads(fields["e"])
        event["ts"] = int(fields["ts"])
        out.append(event)
    return out


async def timeline(app: web.Application, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The replay's events on the recording's clock (``t`` seconds), oldest first.

    The snapshot and anything before the first frame sit at 0; deleted danmaku are left out.
    """
    entries = await _entries(app, meta["show_id"], meta["id"])
    deleted = {e.get("id") for e in entries if e["type"] == "chat.delete"}
    start = meta["started_at_ms"]
    events = []
    for event in entries:
        if event["type"] == "chat.delete" or (event["type"] == "chat" and event["id"] in deleted):
            continue
        ts = event.pop("ts")
        if meta.get("stopped_at_ms") and ts > meta["stopped_at_ms"]:
            continue
        events.append({"t": round(max(0, ts - start) / 1000, 3), **event})
    return events


async def _products(app: web.Application, show_id: str, ids: list[str]) -> dict[str, Any]:
    """What the replay's Buy sells: each product now, at its list price, with its stock."""
    from ..commerce import keys as ck

    if not ids:
        return {}
    async with app[REDIS].pipeline(transaction=False) as pipe:
        pipe.hmget(ck.products(show_id), ids)
        pipe.hmget(ck.stock(show_id), ids)
        raw, stock = await pipe.execute()
    return {
        pid: {**json.loads(data), "stock": int(left or 0)}
        for pid, data, left in zip(ids, raw, stock, strict=True)
        if data
    }


# -- buying after the show -------------------------------------------------------------------


async def buy(
    app: web.Application, meta: dict[str, Any], claims: Any, product_id: Any, key: str
) -> dict[str, Any]:
    """One unit of a product the replay showed, at its list price; idempotent per (user, key)."""
    from ..commerce.activity import touch
    from ..commerce.interactive import base_keys, now_ms
    from ..commerce.keys import buy_keys

    show_id = meta["show_id"]
    if not isinstance(product_id, str) or not product_id:
        raise bad_request("bad_field", "product_id is required", field="product_id")
    if product_id not in meta["products"]:
        raise conflict("not_in_replay", f"product {product_id!r} is not shown in this replay")
    settings = app[SETTINGS]
    raw = await BUY_LUA(
        app,
        [*base_keys(show_id), buy_keys(show_id)],
        [show_id, product_id, claims.user_id, claims.name, key, now_ms(app),
         settings.reservation_ttl_s * 1000],
    )  # fmt: skip
    answer = json.loads(raw)
    if answer["outcome"] == "unknown_product":
        raise not_found("product_not_found", f"no product {product_id!r}")
    if answer["outcome"] == "sold_out":
        raise conflict("out_of_stock", "the product has no stock left")
    await touch(app, show_id)  # the sweeper and the order consumer follow the show again
    return answer


# -- HTTP ------------------------------------------------------------------------------------


async def serve_file(
    request: web.Request, path: Path, content_type: str, download: bool = False
) -> web.StreamResponse:
    """A recording with HTTP range requests (RFC 9110 §14), so a ``<video>`` can seek.

    aiohttp's FileResponse answers ``206`` with ``Content-Range`` and ``Accept-Ranges``; a range
    it cannot serve (beyond the end, several ranges, malformed) is answered here first as ``416``
    with ``Content-Range: bytes */SIZE`` and the code ``range_not_satisfiable``.
    """
    if "Range" in request.headers:
        size = (await asyncio.to_thread(path.stat)).st_size
        try:
            rng = request.http_range
        except ValueError:
            rng = None
        if rng is None or (rng.start is not None and rng.start >= size):
            raise ApiError(
                416,
                "range_not_satisfiable",
                f"the file has {size} bytes; send one range such as bytes=0-1023",
                headers={"Content-Range": f"bytes */{size}"},
            )
    headers = {"Content-Type": content_type, "Cache-Control": "no-cache"}
    if download:
        headers["Content-Disposition"] = f'attachment; filename="{path.name}"'
    return web.FileResponse(path, headers=headers)


def _local_file(app: web.Application, meta: dict[str, Any]) -> Path | None:
    from ..media_api import RELAY

    try:
        path = app[RELAY].recording_path(meta["show_id"], meta["file"])
    except Exception:
        return None
    media = path.with_name(meta.get("media_file") or meta["file"])  # the MP4 beside an H.264 .mkv
    return media if media.is_file() else None


@operation("A public replay's metadata", auth="optional")
async def handle_get(request: web.Request) -> web.Response:
    meta = await get_replay(request.app, request.match_info["id"], request)
    return web.json_response({"replay": meta})


@operation("A replay's events on the recording's clock, and what its Buy sells", auth="optional")
async def handle_timeline(request: web.Request) -> web.Response:
    meta = await get_replay(request.app, request.match_info["id"], request)
    events = await timeline(request.app, meta)
    products = await _products(request.app, meta["show_id"], meta["products"])
    return web.json_response({"replay": meta, "events": events, "products": products})


@operation("The replay's video file, with range requests", auth="optional")
async def handle_media(request: web.Request) -> web.StreamResponse:
    meta = await get_replay(request.app, request.match_info["id"], request)
    path = _local_file(request.app, meta)
    if path is None:
        here = request.app[SETTINGS].base_url
        if meta.get("node_url") and meta["node_url"] != here:
            raise web.HTTPTemporaryRedirect(f"{meta['node_url']}{request.path_qs}")
        raise not_found("replay_file_missing", "the recording's file is not on this server")
    return await serve_file(request, path, meta["content_type"])


@operation("Buy a product of the replay at its list price (a normal order)")
async def handle_buy(request: web.Request) -> web.Response:
    from ..commerce import fields

    meta = await get_replay(request.app, request.match_info["id"])
    claims = await authenticate(request, meta["show_id"])
    body = await read_json(request, 4096)
    key = fields.idempotency_key(body)
    return web.json_response(await buy(request.app, meta, claims, body.get("product_id"), key))


async def _set_published(request: web.Request, published: bool) -> web.Response:
    replay_id = request.match_info["id"]
    show_id = show_of(replay_id)
    claims = await authenticate(request, show_id)
    if claims.role != "host":
        raise forbidden("only the host publishes or unpublishes a replay")
    meta = await get_replay(request.app, replay_id, request)
    meta["published"] = published
    await request.app[REDIS].hset(_k(show_id, "recordings"), replay_id, json.dumps(meta))
    await _point_show(request.app, show_id)
    return web.json_response({"replay": meta})


@operation("Make a replay public (host)")
async def handle_publish(request: web.Request) -> web.Response:
    return await _set_published(request, True)


@operation("Take a replay down (host): its page and Buy answer 404 replay_not_found")
async def handle_unpublish(request: web.Request) -> web.Response:
    return await _set_published(request, False)


@operation("The show's replays: published ones, or every one for its host", auth="optional")
async def handle_list(request: web.Request) -> web.Response:
    from ..shows import get_show

    show_id = request.match_info["show_id"]
    await get_show(request.app, show_id)
    host = _is_host(request, show_id)
    return web.json_response(
        {"replays": await list_replays(request.app, show_id, published_only=not host)}
    )


async def handle_page(request: web.Request) -> web.StreamResponse:
    return _file_response(WEB_ROOT / "replay.html")


async def _replay_ctx(app: web.Application) -> AsyncIterator[None]:
    app[CAPTURES] = {}
    yield
    for capture in list(app[CAPTURES].values()):
        if capture.task is not None:
            capture.task.cancel()


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(_replay_ctx)
    app.router.add_get("/replay/{id}", handle_page)
    app.router.add_get("/api/replays/{id}", handle_get)
    app.router.add_get("/api/replays/{id}/timeline", handle_timeline)
    app.router.add_get("/api/replays/{id}/media", handle_media)
    app.router.add_post("/api/replays/{id}/buy", handle_buy)
    app.router.add_post("/api/replays/{id}/publish", handle_publish)
    app.router.add_post("/api/replays/{id}/unpublish", handle_unpublish)
    app.router.add_get("/api/shows/{show_id}/replays", handle_list)
