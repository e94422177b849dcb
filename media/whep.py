"""WHEP playback: a viewer's session whose senders are parked and fed by consumers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiortc import RTCConfiguration

from . import metrics
from .aiortc_internals import ParkedTrack, interoperable_dtls
from .consumer import Consumer
from .errors import MediaError
from .router import Router
from .sdp import answer, check_offer, matching_codecs
from .session import Session


class ViewerSession(Session):
    """One viewer: one consumer per producer kind the offer asks to receive."""

    kind = "whep"

    def __init__(
        self,
        router: Router,
        viewer_id: str,
        config: RTCConfiguration,
        on_end: Callable[[Session], Awaitable[None]],
    ) -> None:
        super().__init__(router.show_id, config, on_end)
        self.router = router
        self.viewer_id = viewer_id
        self.consumers: list[Consumer] = []

    async def accept(self, offer_sdp: str) -> str:
        offer, kinds = check_offer(offer_sdp)
        for kind in kinds:  # created before the offer so our codec preferences apply
            producer = self.router.producers.get(kind)
            if producer is None:
                continue
            transceiver = self.pc.addTransceiver(ParkedTrack(kind), direction="sendonly")
            transceiver.setCodecPreferences(matching_codecs(kind, producer.codec))
            self.consumers.append(
                Consumer(self.show_id, self.viewer_id, kind, transceiver.sender, self.router)
            )
        if not self.consumers:
            raise MediaError(
                406, "no_common_media", "the offer receives no audio/video this show publishes"
            )
        await self.set_offer(offer)
        interoperable_dtls(self.pc)
        chosen = await answer(self.pc)
        for consumer in self.consumers:
            codec = chosen.get(consumer.kind)
            producer = self.router.producers.get(consumer.kind)
            if (
                codec is None
                or producer is None
                or codec.mimeType.lower() != producer.codec.mimeType.lower()
            ):
                raise MediaError(
                    406,
                    "no_common_codec",
                    f"viewer cannot receive {producer.codec.mimeType if producer else consumer.kind}",
                )
        return self.pc.localDescription.sdp

    async def on_connected(self) -> None:
        for _ in range(50):
            if self.ended:
                return
            if all(c.connect() for c in self.consumers):
                break
            await asyncio.sleep(0.01)
        else:
            await self.end()
            return
        for consumer in self.consumers:
            if not self.ended:
                self.router.add_sink(consumer)

    async def teardown(self) -> None:
        for consumer in self.consumers:
            consumer.close()
        metrics.forget_viewer(self.show_id, self.viewer_id)
