"""A PK battle on a 3-node Redis Cluster, two app nodes: every pk.lua call stays in one slot.

The two shows and the PK record hash to different slots (checked below), so a script touching
two of them would fail with CROSSSLOT; the start saga, the scores and the one result work.
"""

from __future__ import annotations

from typing import Any

import pytest
from redis.crc import key_slot

from media.aiortc_internals import configure_ice
from media.publish import Publisher
from server.app import create_app
from server.config import Settings
from server.realtime.pk import PK, pk_key, pointer_key
from tests.conftest import API_KEY, OPERATOR
from tests.realtime.test_cluster import cluster_url  # noqa: F401 - the 3-node cluster fixture

from .conftest import open_ws
from .test_pk import TINY, until_live

pytestmark = pytest.mark.slow


async def test_pk_on_a_cluster(aiohttp_client: Any, cluster_url: str, tmp_path: Any) -> None:  # noqa: F811
    configure_ice(["127.0.0.1"])

    def settings() -> Settings:
        return Settings(
            redis_url=cluster_url, data_dir=tmp_path, secret="cluster", api_key=[API_KEY],
            ice_addresses=["127.0.0.1"],
        )  # fmt: skip

    nodes = [await aiohttp_client(create_app(settings())) for _ in range(2)]
    shows = []
    publishers = []
    try:
        for node, title in zip(nodes, ("left", "right"), strict=True):
            resp = await node.post("/api/shows", json={"title": title}, headers=OPERATOR)
            body = await resp.json()
            show_id, host = body["show"]["id"], body["host_token"]
            shows.append((show_id, host))
        (a, host_a), (b, host_b) = shows
        auth_a, auth_b = ({"Authorization": f"Bearer {t}"} for t in (host_a, host_b))
        watcher = await open_ws(nodes[1], f"/ws/{a}?token={host_a}")
        for node, (show_id, host) in zip(nodes, shows, strict=True):
            publisher = Publisher(str(node.make_url("")).rstrip("/"), show_id, host, TINY)
            await publisher.start()
            publishers.append(publisher)
            await until_live(node, show_id)

        resp = await nodes[0].post(f"/api/shows/{a}/pk", json={"show_id": b}, headers=auth_a)
        assert resp.status == 201, await resp.text()
        sent = await resp.json()
        slots = {
            key_slot(k.encode()) for k in (pointer_key(a), pointer_key(b), pk_key(sent["pk_id"]))
        }
        assert len(slots) == 3  # three slots: no script may touch two of these keys

        resp = await nodes[1].post(
            f"/api/shows/{b}/pk/accept", json={"invite": sent["invite"]}, headers=auth_b
        )
        assert resp.status == 200, await resp.text()
        await nodes[0].app[PK].add_points(a, likes=4)
        await nodes[1].app[PK].add_points(b, likes=1, gmv=500)
        await watcher.until(
            lambda w: any(e["scores"] == {a: 4, b: 6} for e in w.of_type("pk.score")), 10
        )
        resp = await nodes[0].post(f"/api/shows/{b}/pk", json={"show_id": a}, headers=auth_b)
        assert resp.status == 409 and (await resp.json())["error"]["code"] == "already_in_pk"

        resp = await nodes[0].post(f"/api/shows/{a}/pk/end", headers=auth_a)
        assert resp.status == 200, await resp.text()
        await watcher.until(lambda w: bool(w.of_type("pk.ended")), 10)
        ended = watcher.of_type("pk.ended")
        assert len(ended) == 1 and ended[0]["scores"] == {a: 4, b: 6}
        assert ended[0]["result"] == "cancelled" and ended[0]["reason"] == "ended_by_host"
        state = await (await nodes[1].get(f"/api/shows/{b}/pk", headers=auth_b)).json()
        assert state["pk"] is None
        await watcher.close()
    finally:
        for publisher in publishers:
            await publisher.stop()
