"""server/web.py: the pages and static files of the web client, their types and caching."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient


@pytest.mark.parametrize(
    ("path", "marker"),
    [
        ("/", "Live now"),
        ("/host/abc", "Studio"),
        ("/watch/abc", 'id="video"'),
        ("/verify/abc.l1", "Verify"),
    ],
)
async def test_pages_are_html_and_never_cached(client: TestClient, path: str, marker: str) -> None:
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert marker in await resp.text()


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/js/watch.js", "text/javascript; charset=utf-8"),
        ("/static/css/base.css", "text/css; charset=utf-8"),
    ],
)
async def test_static_files_have_module_friendly_types(
    client: TestClient, path: str, content_type: str
) -> None:
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == content_type
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "path", ["/static/../server/auth.py", "/static/%2e%2e/pyproject.toml", "/static/js/nope.js"]
)
async def test_static_refuses_missing_and_outside_files(client: TestClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 404
