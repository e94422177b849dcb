"""``--demo`` starts the demo show fresh on every run (issue 17); ``--demo-keep`` keeps it."""

from __future__ import annotations

from server.app import create_app
from server.config import Settings
from server.demo import ensure_demo
from server.shows import set_live


async def _leave_traces(client, token: str) -> None:
    """What a previous run leaves behind: the show ended and a sale still counting down."""
    auth = {"Authorization": f"Bearer {token}"}
    products = (await (await client.get("/api/shows/demo/products")).json())["products"]
    resp = await client.post(
        "/api/shows/demo/sales",
        json={"product_id": products[0]["id"], "quantity": 1, "price": 100, "duration_s": 600},
        headers=auth,
    )
    assert resp.status == 201, await resp.text()
    await set_live(client.app, "demo", False)


async def test_demo_starts_fresh_unless_kept(aiohttp_client, settings: Settings) -> None:
    client = await aiohttp_client(create_app(settings))
    first = await ensure_demo(client.app, fresh=True)
    seeded = (await (await client.get("/api/shows/demo/products")).json())["products"]
    await _leave_traces(client, first["host_token"])

    kept = await ensure_demo(client.app, fresh=False)
    assert kept["fresh"] == "no"
    show = (await (await client.get("/api/shows/demo")).json())["show"]
    assert show["status"] == "ended"
    assert len((await (await client.get("/api/shows/demo/sales")).json())["sales"]) == 1

    again = await ensure_demo(client.app, fresh=True)
    assert again["fresh"] == "yes"
    show = (await (await client.get("/api/shows/demo")).json())["show"]
    assert show["status"] == "upcoming"
    assert (await (await client.get("/api/shows/demo/sales")).json())["sales"] == []
    products = (await (await client.get("/api/shows/demo/products")).json())["products"]
    assert [p["title"] for p in products] == [p["title"] for p in seeded]
    listing = (await (await client.get("/api/shows")).json())["shows"]
    assert [s["id"] for s in listing].count("demo") == 1
