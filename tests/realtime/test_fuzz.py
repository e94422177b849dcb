"""Fuzzed frames never crash the server and never disturb other viewers."""

from __future__ import annotations

import asyncio

import aiohttp
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import API_KEY, http_json

from .conftest import open_ws

pytestmark = pytest.mark.slow

TYPES = [
    "chat",
    "like",
    "ping",
    "mod.delete",
    "mod.mute",
    "mod.ban",
    "mod.pin",
    "mod.unpin",
    "buy",
    "x",
    "",
]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1), st.floats(),
    st.text(max_size=300), st.binary(max_size=50),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES) | values},
    optional={
        "id": values,
        "text": values,
        "count": values,
        "user_id": values,
        "minutes": values,
        "message_id": values,
    },
)
frames = st.one_of(
    st.binary(max_size=300).map(lambda b: ("bytes", b)),
    st.text(max_size=300).map(lambda t: ("text", t)),
    messages.map(lambda m: ("bytes", msgpack.packb(m, use_bin_type=True))),
    messages.map(lambda m: ("json", m)),
)


@pytest.fixture
def fuzz_server(server_proc, redis_url):
    server = server_proc(
        "--redis-url", redis_url, "--secret", "fuzz", "--chat-rate", "1000", "--chat-burst", "1000"
    )
    status, body = http_json(server.url + "/api/shows", "POST", {"title": "fuzz"}, API_KEY)
    assert status == 201
    yield server, body["show"]["id"], body["host_token"]
    assert "Traceback" not in server.log()


def _ws(server, show_id: str, token: str) -> str:
    return server.url.replace("http", "ws", 1) + f"/ws/{show_id}?token={token}"


async def _send_all(url: str, batch: list[tuple[str, object]]) -> None:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url, protocols=("liveshop.msgpack",))
        for kind, payload in batch:
            if ws.closed:
                break
            try:
                if kind == "json":
                    await ws.send_json(
                        payload, dumps=lambda o: __import__("json").dumps(o, default=repr)
                    )
                elif kind == "text":
                    await ws.send_str(payload)  # type: ignore[arg-type]
                else:
                    await ws.send_bytes(payload)  # type: ignore[arg-type]
            except (ConnectionError, ValueError):
                break
        await ws.send_bytes(msgpack.packb({"type": "ping", "id": 424242}))
        async for msg in ws:  # every frame gets an answer until our ping's reply or a close
            if msg.type == aiohttp.WSMsgType.BINARY:
                body = msgpack.unpackb(msg.data, strict_map_key=False)
                assert body["type"] in ("welcome", "batch", "reply", "error"), body
                if body.get("id") == 424242:
                    break
        if ws.closed:
            assert ws.close_code in (1008, 1009), ws.close_code
        await ws.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(frames, min_size=1, max_size=6), as_host=st.booleans())
def test_fuzzed_frames_never_crash_the_server(fuzz_server, batch, as_host):
    server, show_id, host = fuzz_server
    token = (
        host
        if as_host
        else http_json(server.url + f"/api/shows/{show_id}/guest", "POST", {})[1]["token"]
    )
    asyncio.run(asyncio.wait_for(_send_all(_ws(server, show_id, token), batch), 20))
    assert server.proc.poll() is None


async def test_server_healthy_after_fuzz_and_bystander_unaffected(fuzz_server):
    server, show_id, host = fuzz_server
    async with aiohttp.ClientSession() as session:
        bystander = await open_ws(session, _ws(server, show_id, host))
        surrogate = await bystander.request({"type": "chat", "text": "\ud800"})
        assert surrogate["code"] == "bad_field"
        abuser = await session.ws_connect(_ws(server, show_id, host))
        for i in range(50):
            if abuser.closed:
                break
            await abuser.send_bytes(bytes([0xC1, i]))
        assert (await bystander.request({"type": "ping"}))["type"] == "reply"
        assert len(bystander.errors) == 1  # only its own surrogate message
    assert http_json(server.url + "/healthz")[0] == 200
    assert "Traceback" not in server.log()
