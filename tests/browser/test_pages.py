"""Landing page and the "1 host + N operators" studio: a moderator opens the studio without the camera."""

from __future__ import annotations

from typing import Any

from tests.conftest import API_KEY

from .conftest import open_viewer, shot


def test_landing_lists_shows_and_creates_one(
    make_show: Any, new_page: Any, web_server: Any
) -> None:
    existing = make_show("Already upcoming")
    page = new_page()
    page.goto(web_server.url + "/")
    page.locator(f"#upcoming-shows a[data-show='{existing.id}']").wait_for()
    page.get_by_label("Show title").fill("My first drop")
    page.get_by_label("Operator API key").fill("test:not-the-operator-key-0000")
    page.get_by_role("button", name="Create a demo show").click()
    page.locator("#create-error", has_text="operator_required").wait_for()
    page.get_by_label("Operator API key").fill(API_KEY)
    page.get_by_role("button", name="Create a demo show").click()
    studio_link = page.get_by_role("link", name="Open the studio")
    studio_link.wait_for()
    shot(page, "landing")
    studio_link.click()
    page.get_by_role("heading", name="Broadcast").wait_for()
    page.wait_for_function(
        "() => document.querySelector('#show-title').textContent === 'My first drop'"
    )
    # The token left the address bar once the studio read it; the sample products are there.
    assert "token=" not in page.url
    page.locator("#product-list li", has_text="Cloud Runner sneakers").wait_for()


def test_moderator_opens_studio_without_camera_and_moderates(make_show: Any, new_page: Any) -> None:
    show = make_show("Team show")
    host = new_page()
    host.goto(show.host_url)
    host.get_by_role("button", name="Create moderator link").click()
    link = host.get_by_label("Moderator link")
    link.wait_for()
    mod_url = link.input_value()
    assert "#token=" in mod_url

    mod = new_page()
    mod.goto(mod_url)
    mod.wait_for_function("() => document.querySelector('#conn').dataset.state === 'open'")
    assert mod.locator("#broadcast").is_hidden()
    assert "moderator" in mod.locator("#whoami").inner_text()

    viewer = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    open_viewer(viewer, show, "Kai")
    viewer.get_by_label("Say something").fill("pin me please")
    viewer.get_by_role("button", name="Send").click()
    row = mod.locator("#chat-list li", has_text="pin me please")
    row.wait_for()
    row.hover()
    row.get_by_role("button", name="Pin Kai: pin me please").click()
    viewer.locator("#pinned-comment", has_text="pin me please").wait_for()
    host.locator("#pinned-comment", has_text="pin me please").wait_for()
    shot(mod, "studio_moderator")

    # Ban: the viewer is disconnected and told so; they cannot chat any more.
    mod.on("dialog", lambda dialog: dialog.accept())
    row.hover()
    row.get_by_role("button", name="Ban Kai: pin me please").click()
    viewer.locator("#chat-error", has_text="banned").wait_for()
    assert viewer.evaluate("() => window.liveshop.socket.state") == "failed"

    # A studio opened without a token asks for one.
    anon = new_page()
    anon.goto(f"{show.server.url}/host/{show.id}")
    anon.get_by_role("heading", name="Sign in to the studio").wait_for()
    anon.get_by_label("Token").fill(show.host_token)
    anon.get_by_role("button", name="Open studio").click()
    anon.get_by_role("heading", name="Broadcast").wait_for()
