"""What WHIP and WHEP sessions share: a peer connection, a connect deadline, teardown."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCConfiguration, RTCDtlsTransport, RTCPeerConnection, RTCSessionDescription

from .aiortc_internals import close_notify, stop_decoder
from .errors import MediaError

log = logging.getLogger("liveshop.media.session")

CLOSE_TIMEOUT_S = 10.0  # a stuck close must not hold up teardown of the rest
# The close_notify goes out at once and again after these delays (seconds): a peer whose
# receive buffer was full when the first copy came has read its backlog by then.
CLOSE_NOTIFY_RESEND_S = (0.1, 0.5, 2.0)


def await_chain(task: asyncio.Future[Any]) -> str:
    """Where a pending task waits: each coroutine of its ``await`` chain, outermost first
    (``Task.print_stack`` shows only the outermost frame of a suspended task)."""
    lines = []
    awaited: Any = task.get_coro() if isinstance(task, asyncio.Task) else task
    while awaited is not None:
        if type(awaited).__name__ in ("async_generator_asend", "async_generator_athrow"):
            # an ``async with`` of an @asynccontextmanager (aiohttp's cleanup_ctx): the step
            # object does not name its generator, but it is the one object it refers to
            awaited = next((o for o in gc.get_referents(awaited) if inspect.isasyncgen(o)), awaited)
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        frame = frame or getattr(awaited, "ag_frame", None)
        if frame is None:
            lines.append(f"  awaiting {awaited!r}")
            break
        code = frame.f_code
        lines.append(f"  {code.co_filename}:{frame.f_lineno} in {code.co_qualname}")
        awaited = (
            getattr(awaited, "cr_await", None)
            or getattr(awaited, "gi_yieldfrom", None)
            or getattr(awaited, "ag_await", None)
        )
    return "\n".join(lines)


def dtls_transports(pc: RTCPeerConnection) -> list[RTCDtlsTransport]:
    """The connection's DTLS transports, each once (bundled transceivers share one)."""
    return list(dict.fromkeys(t.receiver.transport for t in pc.getTransceivers()))


async def close_peer(pc: RTCPeerConnection, name: str) -> None:
    """``pc.close()``, with a close_notify the peer cannot miss for one lost datagram (sent
    again, :func:`~media.aiortc_internals.close_notify`), and bounded: a close still stuck
    after CLOSE_TIMEOUT_S is logged with where it waits, and the DTLS and ICE transports are
    stopped directly so the sockets are freed (aiortc stops them only after every sender and
    receiver has stopped)."""
    loop = asyncio.get_running_loop()
    transports = dtls_transports(pc)
    for dtls in transports:
        farewell = close_notify(dtls)
        if farewell is not None:
            resend, release = farewell
            for delay in CLOSE_NOTIFY_RESEND_S:
                loop.call_later(delay, resend)
            loop.call_later(CLOSE_NOTIFY_RESEND_S[-1] + 0.1, release)
    closing = asyncio.ensure_future(pc.close())
    try:
        done, _ = await asyncio.wait({closing}, timeout=CLOSE_TIMEOUT_S)
    except asyncio.CancelledError:
        closing.cancel()
        raise
    if done:
        if not closing.cancelled() and closing.exception() is not None:
            log.error("%s: closing the peer connection failed", name, exc_info=closing.exception())
        return
    log.warning("%s: peer connection close timed out in:\n%s", name, await_chain(closing))
    closing.cancel()
    for dtls in transports:
        try:
            await asyncio.wait_for(dtls.stop(), CLOSE_TIMEOUT_S)
            await asyncio.wait_for(dtls.transport.stop(), CLOSE_TIMEOUT_S)
        except Exception:
            log.exception("%s: stopping the transports failed", name)
    for transceiver in pc.getTransceivers():
        stop_decoder(transceiver.receiver)


class Session:
    """One WHIP or WHEP resource (RFC 9725 §4.3): created by POST, ended by DELETE."""

    kind = "session"

    def __init__(
        self, show_id: str, config: RTCConfiguration, on_end: Callable[[Session], Awaitable[None]]
    ) -> None:
        self.id = secrets.token_urlsafe(12)
        self.show_id = show_id
        self.pc = RTCPeerConnection(config)
        self.connected = asyncio.Event()
        self.ended = False
        self._on_end = on_end
        self._watchdog: asyncio.Task[None] | None = None
        self.pc.on("connectionstatechange", self._on_state)

    async def _on_state(self) -> None:
        state = self.pc.connectionState
        log.debug("%s %s %s", self.kind, self.id, state)
        if state == "connected":
            self.connected.set()
            await self.on_connected()
        elif state in ("failed", "closed"):
            if state == "failed":
                log.warning("%s %s: ICE/DTLS failed", self.kind, self.id)
            await self.end()

    async def on_connected(self) -> None:
        """Hook: the DTLS/SRTP path is up."""

    async def set_offer(self, offer: RTCSessionDescription) -> None:
        try:
            await self.pc.setRemoteDescription(offer)
        except MediaError:
            raise
        except Exception as exc:
            text = str(exc)
            if "codec" in text.lower() or "parameters" in text.lower():
                raise MediaError(406, "no_common_codec", f"no codec in common: {text}") from exc
            raise MediaError(400, "bad_sdp", f"offer rejected: {text or exc!r}") from exc

    def start_watchdog(self, timeout: float) -> None:
        """ICE/DTLS that never completes times out and frees everything."""

        async def watch() -> None:
            try:
                await asyncio.wait_for(self.connected.wait(), timeout)
            except TimeoutError:
                log.info(
                    "%s %s: ICE/DTLS not connected after %.1fs, closing",
                    self.kind,
                    self.id,
                    timeout,
                )
                await self.end()

        self._watchdog = asyncio.ensure_future(watch())

    async def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        await self.teardown()
        await close_peer(self.pc, f"{self.kind} {self.id}")
        await self._on_end(self)

    async def teardown(self) -> None:
        """Hook: release relay state before the peer connection closes."""
