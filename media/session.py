"""What WHIP and WHEP sessions share: a peer connection, a connect deadline, teardown."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from .errors import MediaError

log = logging.getLogger("liveshop.media.session")

CLOSE_TIMEOUT_S = 10.0  # a stuck close must not hold up teardown of the rest


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
        try:
            await asyncio.wait_for(self.pc.close(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning("%s %s: peer connection close timed out", self.kind, self.id)
        except Exception:
            log.exception("closing peer connection")
        await self._on_end(self)

    async def teardown(self) -> None:
        """Hook: release relay state before the peer connection closes."""
