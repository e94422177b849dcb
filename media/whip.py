"""WHIP ingest (RFC 9725): a publisher's session, its receivers tapped into producers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiortc import RTCConfiguration

from .aiortc_internals import interoperable_dtls
from .errors import MediaError
from .producer import Producer
from .sdp import answer, check_offer, ingest_codecs
from .session import Session


class PublisherSession(Session):
    """The host's (or OBS's) peer connection, receive-only."""

    kind = "whip"

    def __init__(
        self,
        show_id: str,
        config: RTCConfiguration,
        on_end: Callable[[Session], Awaitable[None]],
        gop_max_packets: int = 6000,
    ) -> None:
        super().__init__(show_id, config, on_end)
        self.producers: dict[str, Producer] = {}
        self.gop_max_packets = gop_max_packets

    async def accept(self, offer_sdp: str) -> str:
        """Answer the publisher's offer; producers tap the receivers before any RTP arrives."""
        offer, kinds = check_offer(offer_sdp)
        for kind in kinds:  # created before the offer so our codec preferences apply
            self.pc.addTransceiver(kind, direction="recvonly").setCodecPreferences(
                ingest_codecs(kind)
            )
        await self.set_offer(offer)
        interoperable_dtls(self.pc)
        transceivers = self.pc.getTransceivers()
        chosen = await answer(self.pc)
        if not chosen:
            raise MediaError(
                406, "no_common_codec", "no audio/video codec in common (Opus, VP8, H.264 mode 1)"
            )
        for transceiver in transceivers:
            codec = chosen.get(transceiver.kind)
            if codec is not None and transceiver.kind not in self.producers:
                self.producers[transceiver.kind] = Producer(
                    self.show_id,
                    transceiver.kind,
                    codec,
                    transceiver.receiver,
                    self.gop_max_packets,
                )
        return self.pc.localDescription.sdp

    async def teardown(self) -> None:
        for producer in self.producers.values():
            producer.close()
