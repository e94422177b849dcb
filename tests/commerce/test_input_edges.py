"""Inputs that used to crash or slip through: non-UTF-8 SDP, unanchored id/key patterns."""

from __future__ import annotations

from typing import Any


async def test_non_utf8_sdp_is_400_bad_sdp(shop: Any) -> None:
    viewer = await shop.buyer()
    for path, token in (
        (f"/whip/{shop.show_id}", shop.host_token),
        (f"/whep/{shop.show_id}", viewer),
    ):
        resp = await shop.client.post(
            path,
            data=b"v=0\r\n\xff\xfe\xc3(\r\n",
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
        )
        body = await resp.json()
        assert resp.status == 400 and body["error"]["code"] == "bad_sdp", body


async def test_idempotency_key_with_trailing_newline_is_refused(shop: Any) -> None:
    sale = await shop.sale(quantity=2)
    token = await shop.buyer()
    status, body = await shop.call("POST", f"/api/sales/{sale['id']}/buy", token, key="k\n")
    assert status == 400 and body["error"]["code"] == "bad_key", body
    assert (await shop.get_sale(sale["id"]))["reserved"] == 0  # nothing reserved
    rid = (await shop.buy(sale["id"], token, "k"))["reservation_id"]
    status, body = await shop.call("POST", f"/api/orders/{rid}/pay", token, key="p\n")
    assert status == 400 and body["error"]["code"] == "bad_key"
    # Ids are anchored the same way: "<id>\n" names nothing.
    status, body = await shop.call("GET", f"/api/sales/{sale['id']}%0A")
    assert status == 404
    status, body = await shop.call("GET", f"/api/shows/{shop.show_id}%0A")
    assert status == 400 and body["error"]["code"] == "bad_show_id"
