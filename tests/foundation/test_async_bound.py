"""The async tests' own time bound (tests/conftest.py): a test over it fails, and one whose
cleanup never finishes fails too, naming where it is stuck, instead of hanging the run."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from .. import conftest


async def test_a_test_past_its_bound_is_cancelled_and_fails() -> None:
    cleaned = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            cleaned.set()

    with pytest.raises(pytest.fail.Exception, match="still running after 0 s: cancelled") as failed:
        await conftest._bounded(slow, 0.05)()
    assert cleaned.is_set()
    assert "<locals>.slow\n" in str(failed.value)  # where it was waiting when the bound came


async def test_an_app_whose_shutdown_hangs_fails_naming_where(monkeypatch) -> None:
    """The aiohttp_client fixture's teardown goes through the same bound."""
    monkeypatch.setattr(conftest, "CANCEL_GRACE_S", 0.05)
    app = web.Application()

    async def hangs_on_cleanup(app: web.Application):
        yield
        await asyncio.sleep(60)

    app.cleanup_ctx.append(hangs_on_cleanup)
    client = TestClient(TestServer(app))
    await client.start_server()
    with pytest.raises(pytest.fail.Exception, match="closing the app still running") as failed:
        await conftest.run_bounded(client.close(), 0.05, "closing the app")
    assert "hangs_on_cleanup" in str(failed.value)


async def test_a_cleanup_that_never_finishes_fails_with_its_stack(monkeypatch) -> None:
    monkeypatch.setattr(conftest, "CANCEL_GRACE_S", 0.05)
    never = asyncio.get_running_loop().create_future()

    async def stuck_in_finally() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.shield(never)  # a cleanup awaiting what never comes

    with pytest.raises(pytest.fail.Exception) as failed:
        await conftest._bounded(stuck_in_finally, 0.05)()
    assert "cleanup still stuck" in str(failed.value)
    assert "stuck_in_finally" in str(failed.value)  # the stack names the stuck coroutine
    never.set_result(None)


async def test_a_test_within_its_bound_returns_its_result_or_error() -> None:
    async def quick() -> int:
        return 7

    async def broken() -> None:
        raise ValueError("the test's own error")

    assert await conftest._bounded(quick, 1)() == 7
    with pytest.raises(ValueError, match="own error"):
        await conftest._bounded(broken, 1)()
