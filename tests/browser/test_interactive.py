"""Interactive commerce in the browser: the studio starts a poll, an auction and a group buy; a
phone viewer votes, bids (wins, pays) and joins (the group forms, pays); the host's panel follows."""

from __future__ import annotations

from typing import Any

from .conftest import add_product, open_studio, open_viewer, shot

MOBILE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


def open_form(host: Any, summary: str) -> Any:
    details = host.locator("#interactive details", has_text=summary)
    if not details.evaluate("(d) => d.open"):
        details.locator("summary").click()
    return details


def pay_in_checkout(viewer: Any, amount: str) -> None:
    viewer.get_by_role("dialog", name="Checkout").wait_for()
    viewer.get_by_role("button", name=f"Pay {amount}").click()
    viewer.locator("#order-done").wait_for()
    assert viewer.locator("#order-status").inner_text() == "paid"
    viewer.locator("#checkout-close").click()


def test_vote_bid_and_join_from_the_phone(make_show: Any, new_page: Any) -> None:
    show = make_show("Interactive show")
    host = new_page()
    open_studio(host, show)
    add_product(host, "Desk Lamp", "50.00", 20)
    viewer = new_page(**MOBILE)
    open_viewer(viewer, show, "Pia")

    # Poll: the viewer's vote reaches the host's live tally.
    poll = open_form(host, "Poll")
    poll.get_by_label("Options").fill("Red\nBlue")
    poll.get_by_role("button", name="Start poll").click()
    viewer.locator("#ia-poll").wait_for()
    viewer.locator("#ia-poll button[data-option='1']").click()
    viewer.locator("#ia-poll[data-outcome='voted']").wait_for()
    host.locator("#ia-live li[data-kind='poll']", has_text="Blue 1").wait_for()

    # Auction: one bid from the phone, the host ends it early, the winner pays at checkout.
    auction = open_form(host, "Live auction")
    auction.get_by_label("Start price").fill("10")
    auction.get_by_role("button", name="Start auction").click()
    viewer.locator("#ia-auction").wait_for()
    # One card open at a time: the poll folds into a chip, and a tap opens it again.
    assert viewer.locator("#ia-poll").count() == 0
    viewer.locator(".ia-chip[data-kind='poll']").click()
    viewer.locator("#ia-poll").wait_for()
    viewer.locator(".ia-chip[data-kind='auction']").click()
    viewer.locator("#ia-auction").wait_for()
    shot(viewer, "viewer_interactive_cards")
    widths = viewer.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], widths  # no horizontal scroll on the phone
    viewer.get_by_role("button", name="Bid $10.00").click()
    viewer.locator("#ia-auction[data-outcome='leading']").wait_for()
    row = host.locator("#ia-live li[data-kind='auction']", has_text="1 bids")
    row.wait_for()
    assert "Pia" in row.inner_text()
    row.get_by_role("button", name="End").click()
    pay_in_checkout(viewer, "$10.00")
    host.locator("#ia-live li[data-kind='auction']", has_text="won by Pia").wait_for()

    # Group buy of two: the phone joins, a second viewer completes the group, both are reserved.
    group = open_form(host, "Group buy")
    group.get_by_label("Group price").fill("8")
    group.get_by_label("Group size").fill("2")
    group.get_by_label("Units").fill("4")
    group.get_by_role("button", name="Start group buy").click()
    viewer.locator("#ia-group").wait_for()
    viewer.locator("#ia-join-btn").click()
    viewer.locator("#ia-group[data-outcome='joined']").wait_for()
    host.locator("#ia-live li[data-kind='group']", has_text="1 of 2 joined").wait_for()
    status, guest = show.api("POST", f"/api/shows/{show.id}/guest", {"name": "Max"})
    assert status == 201, guest
    status, deals = show.api("GET", f"/api/shows/{show.id}/group-buys")
    deal_id = deals["deals"][-1]["id"]
    status, joined = show.api("POST", f"/api/group-buys/{deal_id}/join", {}, guest["token"])
    assert status == 200 and joined["outcome"] == "formed", joined
    pay_in_checkout(viewer, "$8.00")
    host.locator("#ia-live li[data-kind='group']", has_text="1 formed").wait_for()

    # The host's funnel counts the bid, the join and the vote.
    host.locator("#ia-funnel", has_text="group joins 2").wait_for()  # stats come every ~2 s
    text = host.locator("#ia-funnel").inner_text()
    assert "Bids 1" in text and "votes 1" in text, text
    shot(host, "studio_interactive")
