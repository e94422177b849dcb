"""Relay: the routers and WHIP/WHEP sessions of one process (mediasoup's Worker)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import metrics
from .errors import MediaError
from .hls import HlsConfig, follow_hls, stop_hls
from .ice import IceConfig
from .pipe import PipeEdge, PipeOrigin, PipeServer, pipe_key
from .recorder import NAME_RE, Recorder
from .router import Router
from .session import Session
from .streams import is_main
from .whep import ViewerSession
from .whip import PublisherSession

log = logging.getLogger("liveshop.media.relay")

OnLive = Callable[[str, bool], Awaitable[None]]
OnEnded = Callable[[Session], None]
EDGE_READY_S = 5.0  # how long a viewer waits for a new edge's first hello from the origin


async def _ignore_live(show_id: str, live: bool) -> None:
    return None


@dataclass
class RelayConfig:
    ice: IceConfig = field(default_factory=IceConfig)
    connect_timeout_s: float = 15.0  # ICE + DTLS must complete within this
    gop_max_packets: int = 6000  # beyond this the GOP cache is dropped until the next keyframe
    max_viewers_per_show: int = 5000
    recordings_dir: Path | None = None  # where recordings go; None disables recording
    hls: HlsConfig | None = field(default_factory=HlsConfig)  # None: no LL-HLS packaging
    # Pipes (origin → edge, issue 11): keys derive from this secret (the server's token secret).
    pipe_secret: str = ""
    pipe_host: str = "127.0.0.1"  # where pipe sockets bind (the origin's pipe address, edges)
    pipe_port_min: int = 0
    pipe_port_max: int = 0
    edge_idle_s: float = 30.0  # an edge of another process with no viewers this long is closed


class Relay:
    """Accepts publishers and viewers, and closes everything on shutdown."""

    def __init__(
        self,
        config: RelayConfig | None = None,
        on_live: OnLive = _ignore_live,
        on_ended: OnEnded | None = None,
    ) -> None:
        self.config = config or RelayConfig()
        self.config.ice.apply()
        self.rtc_config = self.config.ice.rtc_configuration()
        self.on_live = on_live
        self.on_ended = on_ended  # told of every session that ends, for whatever reason
        self.routers: dict[str, Router] = {}
        self.sessions: dict[str, Session] = {}
        self._report_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.pipe_server: PipeServer | None = None
        # Where a show's origin is now (set by the server from the origin directory).
        self.rehome: Callable[[str], Awaitable[tuple[tuple[str, int], str] | None]] | None = None
        self._edges_opening: dict[str, asyncio.Future[PipeEdge]] = {}

    def _background(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def router(self, show_id: str) -> Router:
        router = self.routers.get(show_id)
        if router is None:
            router = self.routers[show_id] = Router(show_id)
        return router

    def live_router(self, show_id: str) -> Router:
        """The router of a show whose publisher is here and sending; 409 ``not_live`` otherwise."""
        router = self.routers.get(show_id)
        if router is None or router.publisher is None or not router.producers:
            raise MediaError(409, "not_live", "this show is not live")
        return router

    def _forget_if_idle(self, router: Router) -> None:
        """Drop a router with nothing left in it (never a newer one of the same show)."""
        if (
            router.publisher is None
            and router.edge is None
            and not router.viewers
            and self.routers.get(router.show_id) is router
        ):
            router.report()
            del self.routers[router.show_id]

    def start(self) -> None:
        if self._report_task is None:
            self._report_task = asyncio.ensure_future(self._report_loop())

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if self.pipe_server is not None:
                for pipe in self.pipe_server.expire():  # their edge stopped asking
                    self.close_pipe(pipe)
            pipes_out = edges = 0
            now = time.monotonic()
            for router in list(self.routers.values()):
                self._close_if_idle_edge(router, now)
                router.report()
                for pipe in router.pipes:
                    pipe.report()
                pipes_out += len(router.pipes)
                if router.edge is not None:
                    router.edge.report()
                    edges += 1
            metrics.PIPES.labels("out").set(pipes_out)
            metrics.PIPES.labels("in").set(edges)
            metrics.EDGES.set(edges)

    def _close_if_idle_edge(self, router: Router, now: float) -> None:
        """An edge joined to another process's origin, unwatched for ``edge_idle_s``, ends."""
        edge = router.edge
        if edge is None or edge.joined is None or edge.ended:
            return
        if router.viewers or router.pipes:
            router.idle_since = None
        elif router.idle_since is None:
            router.idle_since = now
        elif now - router.idle_since >= self.config.edge_idle_s:
            log.info("closing idle edge", extra={"show": router.show_id})
            self._background(edge.end())

    # ------------------------------------------------------------------ WHIP
    async def publish(
        self, show_id: str, offer_sdp: str, replace: bool = False
    ) -> PublisherSession:
        """Accept a publisher; 409 if the show already has one and ``replace`` is false."""
        router = self.router(show_id)
        if router.publisher is not None and not replace:
            raise MediaError(
                409,
                "already_live",
                "this show already has a publisher (use ?replace=1 to take over)",
            )
        session = PublisherSession(
            show_id, self.rtc_config, self._session_ended, self.config.gop_max_packets
        )
        try:
            sdp = await session.accept(offer_sdp)
        except BaseException:
            await session.end()
            raise
        session.answer = sdp  # type: ignore[attr-defined]
        old = router.publisher
        router.publisher = session
        router.epoch = session.id  # names this publisher in the origin directory and pipe keys
        router.set_producers(session.producers)
        if is_main(show_id):  # LL-HLS packages the host's stream only (docs/media.md, co-host)
            follow_hls(router, self.config.hls)
        self.sessions[session.id] = session
        session.start_watchdog(self.config.connect_timeout_s)
        if old is not None:
            old.producers = {}  # now owned by nobody: the router closed them
            self._background(old.end())  # never hold the new publisher's answer on a slow close
        await self.on_live(show_id, True)
        self.start()
        return session

    # ------------------------------------------------------------------ WHEP
    async def view(self, show_id: str, offer_sdp: str, viewer_id: str) -> ViewerSession:
        """Accept a viewer of a live show; 409 ``not_live`` otherwise."""
        router = self.live_router(show_id)
        if len(router.viewers) >= self.config.max_viewers_per_show:
            raise MediaError(503, "show_full", "too many viewers on this node")
        session = ViewerSession(router, viewer_id, self.rtc_config, self._session_ended)
        try:
            sdp = await session.accept(offer_sdp)
        except BaseException:
            await session.end()
            raise
        session.answer = sdp  # type: ignore[attr-defined]
        router.viewers[session.id] = session
        self.sessions[session.id] = session
        session.start_watchdog(self.config.connect_timeout_s)
        self.start()
        return session

    # ------------------------------------------------------------------ origin → edge
    def pipe_key(self, show_id: str) -> bytes:
        """The key of pipes from this show's current publisher (its epoch)."""
        return pipe_key(self.config.pipe_secret, show_id, self.live_router(show_id).epoch)

    async def pipe_to(self, show_id: str, edge: tuple[str, int]) -> PipeOrigin:
        """Origin side: pipe a live show's producers to an edge relay listening at ``edge``."""
        router = self.live_router(show_id)
        pipe = PipeOrigin(show_id, router.producers, edge, self.pipe_key(show_id))
        await pipe.start()
        router.pipes.append(pipe)
        return pipe

    async def serve_pipes(self) -> tuple[str, int]:
        """Origin side: open this process's pipe address, where edges anywhere join.

        Returns the bound (host, port); the announced one goes into the origin directory.
        """
        if self.pipe_server is None:
            self.pipe_server = PipeServer(self.config.pipe_secret, self._open_joined_pipe)
            await self.pipe_server.bind(
                self.config.pipe_host, self.config.pipe_port_min, self.config.pipe_port_max
            )
            self.start()
        return self.config.pipe_host, self.pipe_server.port

    def _open_joined_pipe(
        self, show_id: str, epoch: str, edge: tuple[str, int], key: bytes
    ) -> PipeOrigin | None:
        """An authenticated ``join``: pipe the show to ``edge`` if its publisher is here."""
        router = self.routers.get(show_id)
        if router is None or router.publisher is None or not router.producers:
            return None
        if router.epoch != epoch or router.edge is not None:
            return None  # a stale directory entry, or we are only an edge of this show
        assert self.pipe_server is not None and self.pipe_server.transport is not None
        pipe = PipeOrigin(show_id, router.producers, edge, key, self.pipe_server.transport)
        pipe.attach(router.producers)
        pipe.start_reports()
        router.pipes.append(pipe)
        log.info("pipe opened", extra={"show": show_id, "edge": f"{edge[0]}:{edge[1]}"})
        return pipe

    async def edge_from(self, show_id: str, origin: tuple[str, int], epoch: str) -> PipeEdge:
        """Edge side: this process serves ``show_id`` fed from the origin at ``origin``.

        Reuses the show's edge if one is up for that origin and epoch; concurrent viewers of a
        new edge wait for the same one. 503 ``edge_not_ready`` if the origin sends nothing.
        """
        router = self.routers.get(show_id)
        if router is not None and router.edge is not None and not router.edge.ended:
            if router.edge.joined == (origin, epoch) and router.edge.ready.is_set():
                return router.edge
        opening = self._edges_opening.get(show_id)
        if opening is None:
            opening = asyncio.ensure_future(self._open_edge(show_id, origin, epoch))
            self._edges_opening[show_id] = opening
            opening.add_done_callback(lambda _: self._edges_opening.pop(show_id, None))
        return await asyncio.shield(opening)

    async def _rehome(self, router: Router, edge: PipeEdge) -> bool:
        """An edge's origin said bye or went quiet: follow the show to a new origin, if any.

        ``rehome(show)`` (the origin directory) names the show's origin now; a different
        publisher epoch means the show moved (``?replace=1`` on another node), and a new edge
        joined there moves the viewers over as a replacement publisher would. The same epoch
        (the origin died, its lease not yet run out) or none: False, the viewers are ended.
        """
        if self.rehome is None or edge.joined is None or not (router.viewers or router.pipes):
            return False
        try:
            target = await self.rehome(router.show_id)
        except Exception:
            log.exception("looking up a new origin for %s", router.show_id)
            return False
        if target is None or target[1] == router.epoch:
            return False
        try:
            await self._open_edge(router.show_id, target[0], target[1])
        except MediaError as exc:
            log.warning("re-homing %s failed: %s", router.show_id, exc.code)
            return False
        log.info("edge re-homed", extra={"show": router.show_id, "epoch": target[1]})
        return True

    async def _open_edge(self, show_id: str, origin: tuple[str, int], epoch: str) -> PipeEdge:
        key = pipe_key(self.config.pipe_secret, show_id, epoch)
        edge, _ = await self.accept_pipe(show_id, self.config.pipe_host, key)
        self.routers[show_id].epoch = epoch
        edge.join(origin, epoch)
        try:
            await asyncio.wait_for(edge.ready.wait(), EDGE_READY_S)
        except TimeoutError:
            await edge.end()
            raise MediaError(
                503, "edge_not_ready", "the show's origin did not answer this node's pipe"
            ) from None
        return edge

    def close_pipe(self, pipe: PipeOrigin) -> None:
        """Origin side: stop piping to an edge (it is told ``bye``)."""
        pipe.close()
        router = self.routers.get(pipe.show_id)
        if router is not None and pipe in router.pipes:
            router.pipes.remove(pipe)

    async def accept_pipe(
        self, show_id: str, host: str = "127.0.0.1", key: bytes = b""
    ) -> tuple[PipeEdge, int]:
        """Edge side: listen for an origin's pipe; viewers can join once its hello arrives.

        A pipe already feeding the show here is ended first (with its viewers): the origin
        that asks for a new one has forgotten the old.
        """
        existing = self.routers.get(show_id)
        if existing is not None and existing.edge is not None:
            await existing.edge.end()
        router = self.router(show_id)
        if router.publisher is not None:
            raise MediaError(409, "already_live", "this show already has a publisher here")

        def on_ready(edge: PipeEdge) -> None:
            router.publisher = edge
            router.set_producers(edge.producers)
            if is_main(show_id):
                follow_hls(router, self.config.hls)
            self.start()

        async def on_bye(edge: PipeEdge) -> None:
            if router.edge is edge:
                router.edge = None
            if router.publisher is edge:
                router.publisher = None
                if await self._rehome(router, edge):
                    return  # a new origin's producers took the viewers (and worker pipes) over
                for pipe in router.pipes:  # this node's workers, fed from this edge
                    pipe.close()
                router.pipes.clear()
                stop_hls(router)
                router.clear_producers()
                await asyncio.gather(
                    *(viewer.end() for viewer in list(router.viewers.values())),
                    return_exceptions=True,
                )
            self._forget_if_idle(router)

        edge = PipeEdge(show_id, on_ready, on_bye, key, self.config.gop_max_packets)
        port = await edge.bind(host, self.config.pipe_port_min, self.config.pipe_port_max)
        router.edge = edge
        return edge, port

    # ------------------------------------------------------------------ recording
    def _recordings_dir(self, show_id: str) -> Path:
        if self.config.recordings_dir is None:
            raise MediaError(501, "recording_disabled", "recording is not configured")
        return self.config.recordings_dir / show_id

    def start_recording(self, show_id: str) -> Recorder:
        """Start remuxing the show's forwarded packets to a file (no re-encode)."""
        directory = self._recordings_dir(show_id)
        router = self.live_router(show_id)
        if router.recorder is not None:
            raise MediaError(409, "already_recording", "this show is already being recorded")
        router.recorder = Recorder(show_id, directory, router.producers)
        return router.recorder

    def stop_recording(self, show_id: str) -> Path:
        router = self.routers.get(show_id)
        if router is None or router.recorder is None:
            raise MediaError(409, "not_recording", "this show is not being recorded")
        recorder, router.recorder = router.recorder, None
        return recorder.stop()

    def list_recordings(self, show_id: str) -> list[dict[str, object]]:
        directory = self._recordings_dir(show_id)
        if not directory.is_dir():
            return []
        router = self.routers.get(show_id)
        active = (
            router.recorder.name if router is not None and router.recorder is not None else None
        )
        return [
            {"name": p.name, "bytes": p.stat().st_size, "recording": p.name == active}
            for p in sorted(directory.iterdir())
            if NAME_RE.match(p.name)
        ]

    def recording_path(self, show_id: str, name: str) -> Path:
        if not NAME_RE.match(name):
            raise MediaError(400, "bad_name", "not a recording name")
        path = self._recordings_dir(show_id) / name
        if not path.is_file():
            raise MediaError(404, "no_recording", "no such recording")
        return path

    # ------------------------------------------------------------------ lifecycle
    def get(self, show_id: str, session_id: str, kind: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None or session.show_id != show_id or session.kind != kind:
            raise MediaError(404, "no_session", "no such session")
        return session

    async def _session_ended(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        if self.on_ended is not None:
            self.on_ended(session)
        router = self.routers.get(session.show_id)
        if router is None:
            return
        if isinstance(session, ViewerSession):
            router.viewers.pop(session.id, None)
        elif isinstance(session, PublisherSession) and router.publisher is session:
            router.publisher = None
            for pipe in router.pipes:
                pipe.close()  # edges end their viewers on the pipe's bye
            router.pipes.clear()
            if router.recorder is not None:
                router.recorder.stop()
                router.recorder = None
            stop_hls(router)
            router.clear_producers()
            # the broadcast is over: end every viewer, concurrently
            await asyncio.gather(
                *(viewer.end() for viewer in list(router.viewers.values())), return_exceptions=True
            )
            await self.on_live(session.show_id, False)
        self._forget_if_idle(router)

    async def close(self) -> None:
        if self._report_task is not None:
            self._report_task.cancel()
            self._report_task = None
        if self.pipe_server is not None:
            self.pipe_server.close()
        for router in list(self.routers.values()):
            for pipe in router.pipes:
                pipe.close()
            if router.edge is not None:
                await router.edge.end()
        results = await asyncio.gather(
            *(s.end() for s in list(self.sessions.values())), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                log.error("closing session: %r", result)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
