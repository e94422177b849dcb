"""Origin → edge: a show received by one relay is piped over UDP to another that serves viewers."""

from __future__ import annotations

from media.publish import PublishOptions
from media.relay import Relay, RelayConfig

from .peers import SMALL, TestPublisher, TestViewer, wait_until


async def test_edge_viewers_decode_and_join_instantly() -> None:
    origin, edge = Relay(RelayConfig()), Relay(RelayConfig())
    pub = TestPublisher(PublishOptions(codec="vp8", keyint_s=10.0, **SMALL))
    viewers: list[TestViewer] = []
    try:
        await pub.publish(origin, "piped")
        assert await wait_until(
            lambda: origin.routers["piped"].producers["video"].packets_received > 30
        )
        # The edge joins the origin's pipe address (as another node would, from the directory).
        address = await origin.serve_pipes()
        pipe_edge = await edge.edge_from("piped", address, origin.routers["piped"].epoch)
        assert pipe_edge.ready.is_set()

        for i in range(2):
            v = TestViewer()
            await v.join(edge, "piped", f"edge{i}")
            viewers.append(v)
        assert await wait_until(
            lambda: all(len(v.frames) >= 15 and v.audio_frames > 0 for v in viewers), 15
        )
        assert all(set(v.frames) == {(320, 240)} for v in viewers)
        # Instant join at the edge too: from the GOP the origin piped, no new keyframe.
        assert pub.video.keyframes_forced == 0
        origin_gop = origin.routers["piped"].producers["video"].gop
        assert 1 <= edge.routers["piped"].producers["video"].gop.keyframes <= origin_gop.keyframes

        # A PLI at the edge goes upstream (throttled at both ends) and reaches the publisher.
        edge.routers["piped"].producers["video"].request_keyframe()
        assert await wait_until(lambda: pub.video.keyframes_forced == 1, 5)

        # The broadcast ends at the origin: the edge's viewers are ended too.
        await origin.get("piped", pub.session_id, "whip").end()
        assert await wait_until(lambda: not edge.sessions and "piped" not in edge.routers, 5)
    finally:
        for v in viewers:
            await v.close()
        await pub.close()
        await origin.close()
        await edge.close()


async def test_an_idle_edge_closes_and_the_origin_stops_piping_to_it() -> None:
    origin, edge = Relay(RelayConfig()), Relay(RelayConfig(edge_idle_s=0.5))
    pub = TestPublisher(PublishOptions(codec="vp8", audio=False, **SMALL))
    viewer = TestViewer()
    try:
        await pub.publish(origin, "idle")
        assert await wait_until(lambda: origin.routers["idle"].producers["video"].packets_received)
        address = await origin.serve_pipes()
        await edge.edge_from("idle", address, origin.routers["idle"].epoch)
        await viewer.join(edge, "idle", "v")
        assert await wait_until(lambda: len(viewer.frames) >= 5, 15)
        assert len(origin.routers["idle"].pipes) == 1

        await edge.get("idle", viewer.session_id, "whep").end()
        # No viewer left: the edge ends after edge_idle_s, says leave, the origin stops at once.
        assert await wait_until(lambda: "idle" not in edge.routers, 5)
        assert await wait_until(lambda: not origin.routers["idle"].pipes, 3)
        assert origin.routers["idle"].publisher is not None  # the broadcast itself goes on
    finally:
        await viewer.close()
        await pub.close()
        await origin.close()
        await edge.close()
