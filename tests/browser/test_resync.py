"""The pages take the server's ``resync`` snapshot after its pub/sub connection comes back."""

from __future__ import annotations

from typing import Any

import redis

from server.redis import keys

from .conftest import open_studio, open_viewer


def test_pages_apply_resync_after_pubsub_reconnect(
    web_server: Any, make_show: Any, new_page: Any
) -> None:
    show = make_show("Resync")
    viewer, studio = new_page(), new_page()
    open_viewer(viewer, show, "Ria")
    open_studio(studio, show)
    store = redis.Redis.from_url(f"unix://{web_server.data_dir / 'redis.sock'}")
    try:
        # Likes counted while this node heard nothing (no event published), then its pub/sub
        # connection drops: redis-py reconnects and resubscribes, the hub sends `resync`.
        store.hincrby(keys.counters(show.id), "likes", 4321)
        assert store.client_kill_filter(_type="pubsub") >= 1
    finally:
        store.close()
    viewer.wait_for_function("() => document.querySelector('#like-count').textContent === '4321'")
    studio.wait_for_function("() => document.querySelector('#st-likes').textContent === '4321'")
