"""Real headless Chromium (Debian's, driven by Playwright) against a real ``python -m server``.

Flags per shared/BROWSER.md: a fake camera, fake permission UI, loopback ICE. One browser and one
server per module; every test gets fresh pages (contexts) and saves screenshots to tests/artifacts.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ARTIFACTS, ServerProcess, create_show_http, http_json, start_server

pytestmark = pytest.mark.browser

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/lib/chromium/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
]
# Generous: the CI box has 2 cores shared with other test processes.
WAIT_MS = 20_000


def chromium_path() -> str | None:
    explicit = os.environ.get("LIVESHOP_CHROMIUM")
    if explicit:
        return explicit
    for path in CHROMIUM_CANDIDATES:
        if Path(path).exists():
            return path
    return shutil.which("chromium")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one module. Not session-wide: the sync Playwright driver keeps an event loop
    running in this thread, which would break the async (pytest-aiohttp) tests collected after it."""
    sync_api = pytest.importorskip("playwright.sync_api")
    path = chromium_path()
    if not path:
        reason = "Debian's chromium is not installed (apt-get install chromium; ./dev test does it)"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI must never skip the browser tests
        pytest.skip(reason)
    playwright = sync_api.sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=path, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            try:
                browser.close()
            except Exception:  # a crashed browser must not keep the driver (and its loop) alive
                pass
    finally:
        playwright.stop()


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One liveshop server for the module (each test uses its own show)."""
    server = start_server(
        tmp_path_factory.mktemp("web") / "data",
        "--payment-latency-ms",
        "0",
    )
    yield server
    server.stop()


class Show:
    def __init__(self, server: ServerProcess, show_id: str, host_token: str) -> None:
        self.server = server
        self.id = show_id
        self.host_token = host_token

    @property
    def host_url(self) -> str:
        return f"{self.server.url}/host/{self.id}#token={self.host_token}"

    @property
    def watch_url(self) -> str:
        return f"{self.server.url}/watch/{self.id}"

    def api(
        self, method: str, path: str, body: dict | None = None, token: str | None = None
    ) -> tuple[int, dict]:
        return http_json(self.server.url + path, method, body, token)


@pytest.fixture
def make_show(web_server: ServerProcess) -> Callable[..., Show]:
    def make(title: str = "Browser test show") -> Show:
        show_id, host_token = create_show_http(web_server.url, title, host_name="Ada")
        return Show(web_server, show_id, host_token)

    return make


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """Factory: a page in a fresh context (own storage). ``page.errors`` collects console errors and
    failed HTTP responses; uncaught JavaScript exceptions (``page.js_errors``) fail the test."""
    contexts: list[Any] = []
    pages: list[Any] = []

    def make(viewport: dict[str, int] | None = None, **kwargs: Any) -> Any:
        context = browser.new_context(viewport=viewport or {"width": 1440, "height": 900}, **kwargs)
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        page = context.new_page()
        pages.append(page)
        page.errors = []  # type: ignore[attr-defined]
        page.js_errors = []  # type: ignore[attr-defined]
        page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error" and page.errors.append(msg.text))
        page.on(
            "response",
            lambda r: (
                r.status >= 400
                and page.errors.append(f"HTTP {r.status} {r.request.method} {r.url}")
            ),
        )
        return page

    yield make
    js_errors = [f"{page.url}: {err}" for page in pages for err in page.js_errors]
    if os.environ.get("LIVESHOP_SHOW_PAGE_ERRORS"):
        for page in pages:
            for err in page.errors:
                print("PAGE ERROR", page.url, err)
    for context in contexts:
        try:
            context.close()
        except Exception:  # the browser may already be gone at session end
            pass
    assert not js_errors, js_errors


DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


def shot(page: Any, name: str, full_page: bool = False, docs: str | None = None) -> Path:
    """Save a screenshot to tests/artifacts; ``docs="studio.png"`` also retakes that README
    picture in docs/img when LIVESHOP_DOCS_SCREENSHOTS=1 (off by default: CI never rewrites docs)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    if docs and os.environ.get("LIVESHOP_DOCS_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMG / docs)
    return path


FRAMES_DECODED_JS = """async () => {
  const pc = window.liveshop && window.liveshop.player && window.liveshop.player.pc;
  if (!pc) return 0;
  const stats = await pc.getStats();
  let frames = 0;
  stats.forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') frames += r.framesDecoded || 0; });
  return frames;
}"""

FRAMES_ENCODED_JS = """async () => {
  const pc = window.liveshop && window.liveshop.publisher && window.liveshop.publisher.pc;
  if (!pc) return 0;
  const stats = await pc.getStats();
  let frames = 0;
  stats.forEach((r) => { if (r.type === 'outbound-rtp' && r.kind === 'video') frames += r.framesEncoded || 0; });
  return frames;
}"""


def poll(page: Any, js: str, minimum: int = 1, timeout_ms: int = 10_000) -> int:
    """Wait (in the page) for an async counter to reach ``minimum``; returns its value then,
    or its value at the deadline (the caller's assertion says what it needed)."""
    return int(
        page.evaluate(
            f"""async ([minimum, timeoutMs]) => {{
  const read = {js};
  const deadline = performance.now() + timeoutMs;
  let value = Number(await read());
  while (value < minimum && performance.now() < deadline) {{
    await new Promise((resolve) => setTimeout(resolve, 100));
    value = Number(await read());
  }}
  return value;
}}""",
            [minimum, timeout_ms],
        )
    )


def open_studio(page: Any, show: Show) -> None:
    page.goto(show.host_url)
    page.get_by_role("heading", name="Broadcast").wait_for()
    page.wait_for_function("() => document.querySelector('#conn').dataset.state === 'open'")


def open_viewer(page: Any, show: Show, name: str) -> None:
    page.goto(f"{show.watch_url}?name={name}")
    page.wait_for_function("() => document.querySelector('#conn').dataset.state === 'open'")


def go_live(page: Any) -> None:
    """Start the camera and go live from an open studio page."""
    page.get_by_role("button", name="Start camera").click()
    page.wait_for_function("() => !document.querySelector('#golive-btn').disabled")
    page.get_by_role("button", name="Go live").click()
    page.wait_for_function("() => document.querySelector('#publish-state').textContent === 'LIVE'")


def add_product(page: Any, title: str, price: str, stock: int) -> None:
    if not page.locator("#product-editor").evaluate("(details) => details.open"):
        page.locator("#product-editor summary").click()
    form = page.locator("#product-form")
    form.get_by_label("Name", exact=True).fill(title)
    form.get_by_label("Price", exact=True).fill(price)
    form.get_by_label("Stock", exact=True).fill(str(stock))
    form.get_by_role("button", name="Add product").click()
    page.locator("#product-list li", has_text=title).wait_for()


def viewer_chat(page: Any, text: str) -> None:
    page.get_by_label("Say something").fill(text)
    page.get_by_role("button", name="Send").click()


UNLABELLED_JS = """() => [...document.querySelectorAll('button, input, select, textarea, a[href]')]
  .filter((el) => el.type !== 'hidden' && el.getClientRects().length > 0)
  .filter((el) => {
    const byLabel = el.labels ? [...el.labels].map((l) => l.textContent).join(' ') : '';
    const name = (el.getAttribute('aria-label') || byLabel || (el.tagName === 'INPUT' ? '' : el.textContent) || el.title || '').trim();
    return !name;
  })
  .map((el) => el.outerHTML.slice(0, 120))"""


def unlabelled_controls(page: Any) -> list[str]:
    """Visible controls without an accessible name (label, aria-label or text)."""
    return list(page.evaluate(UNLABELLED_JS))
