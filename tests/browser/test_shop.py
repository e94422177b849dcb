"""Commerce end to end in the browser: pin, flash sale, buy, pay; giveaway with a verified draw;
the mobile viewer layout."""

from __future__ import annotations

from typing import Any

from .conftest import add_product, open_studio, open_viewer, shot

MOBILE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


def start_flash_sale(
    host: Any, title: str, qty: int, price: str, limit: int, countdown: int, duration: int
) -> None:
    host.locator("#sf-product").select_option(label=f"{title} (20 in stock)")
    form = host.get_by_role("region", name="Flash sale")
    form.get_by_label("Quantity").fill(str(qty))
    form.get_by_label("Sale price").fill(price)
    form.get_by_label("Per-user limit").fill(str(limit))
    form.get_by_label("Countdown (s)").fill(str(countdown))
    form.get_by_label("Duration (s)").fill(str(duration))
    form.get_by_role("button", name="Start flash sale").click()
    host.locator("#sale-active").wait_for()


def test_pin_flash_sale_buy_and_pay(make_show: Any, new_page: Any) -> None:
    show = make_show("Sneaker drop")
    host = new_page()
    open_studio(host, show)
    viewer = new_page(**MOBILE)
    open_viewer(viewer, show, "Mia")

    add_product(host, "Cloud Runner", "120.00", 20)
    host.get_by_role("button", name="Pin Cloud Runner").click()
    host.locator("#product-list li.pinned", has_text="Cloud Runner").wait_for()
    card = viewer.locator("#products .product-card", has_text="Cloud Runner")
    card.wait_for()
    assert "20 left" in card.inner_text()

    # A coupon drop: the viewer claims it and it is applied at checkout.
    coupon = host.get_by_role("region", name="Coupon drop")
    coupon.get_by_label("Code").fill("SPRING10")
    coupon.get_by_label("Discount %").fill("10")
    coupon.get_by_role("button", name="Drop coupon").click()
    viewer.locator("#coupon", has_text="SPRING10").wait_for()
    viewer.get_by_role("button", name="Claim").click()
    viewer.locator("#coupon", has_text="Claimed").wait_for()

    start_flash_sale(host, "Cloud Runner", qty=5, price="99.00", limit=1, countdown=2, duration=120)
    viewer.locator("#sale").wait_for()
    buy = viewer.get_by_role("button", name="Buy")
    buy.wait_for()  # enabled once the countdown is over
    viewer.wait_for_function("() => !document.querySelector('#buy-btn').disabled")
    assert "$99.00" in viewer.locator("#sale-price").inner_text()
    shot(viewer, "viewer_flash_sale")
    buy.click()

    viewer.locator("#buy-result[data-outcome='reserved']").wait_for()
    assert "Reserved" in viewer.locator("#buy-result").inner_text()
    dialog = viewer.get_by_role("dialog", name="Checkout")
    dialog.wait_for()
    shot(viewer, "viewer_checkout")
    assert viewer.get_by_label('Apply coupon "SPRING10"').is_checked()
    viewer.get_by_role("button", name="Pay $89.10").click()
    viewer.locator("#order-done").wait_for()
    assert viewer.locator("#order-status").inner_text() == "paid"
    assert viewer.locator("#order-amount").inner_text() == "$89.10"  # 10% off $99.00
    shot(viewer, "viewer_order_paid")
    viewer.get_by_role("button", name="Close").click()

    # The host watches the stock fall and the order count in the stats.
    host.locator("#sale-active .sale-left", has_text="4 of 5 left").wait_for()
    host.wait_for_function("() => document.querySelector('#fn-paid').textContent === '1'")
    # Per-user limit 1: a second tap is refused with a clear outcome.
    viewer.wait_for_function("() => !document.querySelector('#buy-btn').disabled")
    viewer.get_by_role("button", name="Buy").click()
    viewer.locator("#buy-result[data-outcome='limit_reached']").wait_for()
    shot(host, "studio_sale")

    # Edit a product; at most 3 pins: with 3 pinned the other Pin buttons are disabled.
    cloud = host.locator("#product-list li", has_text="Cloud Runner")
    cloud.get_by_role("button", name="Edit Cloud Runner").click()
    host.get_by_label("Name", exact=True).fill("Cloud Runner 2")
    host.get_by_role("button", name="Save changes").click()
    viewer.locator("#products .product-card", has_text="Cloud Runner 2").wait_for()
    for title in ("Sock A", "Sock B", "Sock C"):
        add_product(host, title, "5.00", 10)
    host.get_by_role("button", name="Pin Sock A").click()
    host.get_by_role("button", name="Pin Sock B").click()
    host.locator("#product-list li.pinned").nth(2).wait_for()
    host.wait_for_function("() => document.querySelector('[aria-label=\"Pin Sock C\"]').disabled")
    assert viewer.locator("#products .product-card").count() <= 3
    viewer.locator("#products .product-card", has_text="Sock B").wait_for()


def test_giveaway_drawn_and_viewer_verifies_proof(make_show: Any, new_page: Any) -> None:
    show = make_show("Giveaway show")
    host = new_page()
    open_studio(host, show)
    viewer = new_page(**MOBILE)
    open_viewer(viewer, show, "Zoe")

    host.get_by_label("Prize").fill("Signed sneakers")
    host.get_by_label("Window (s)").fill("120")
    host.get_by_role("button", name="Start giveaway").click()
    viewer.locator("#giveaway", has_text="Signed sneakers").wait_for()
    viewer.get_by_role("button", name="Enter").click()
    viewer.locator("#entered").wait_for()

    host.get_by_role("button", name="Draw now").click()
    host.locator("#ga-winners", has_text="Zoe").wait_for()
    viewer.locator("#winners", has_text="Zoe").wait_for()
    viewer.locator("#you-won").wait_for()
    shot(viewer, "viewer_giveaway_won")

    with viewer.context.expect_page() as new_tab:
        viewer.get_by_role("link", name="Verify the draw").click()
    proof_page = new_tab.value
    proof_page.wait_for_function(
        "() => document.body.dataset.verified !== undefined", timeout=20_000
    )
    assert proof_page.evaluate("() => document.body.dataset.verified") == "true"
    assert proof_page.locator("#checks li[data-ok='true']").count() == 5
    shot(proof_page, "giveaway_verified")


def test_mobile_viewer_layout(make_show: Any, new_page: Any) -> None:
    show = make_show("Mobile layout show")
    status, body = show.api(
        "POST",
        f"/api/shows/{show.id}/products",
        {"title": "Trail Blazer", "price": 8900, "stock": 10},
        show.host_token,
    )
    assert status == 201, body
    product_id = body["product"]["id"]
    assert show.api("POST", f"/api/products/{product_id}/pin", {}, show.host_token)[0] == 200
    status, body = show.api(
        "POST",
        f"/api/shows/{show.id}/sales",
        {
            "product_id": product_id,
            "quantity": 3,
            "price": 6900,
            "per_user_limit": 1,
            "duration_s": 300,
        },
        show.host_token,
    )
    assert status == 201, body

    # Everything at once on the small screen: a giveaway and a coupon too.
    status, body = show.api(
        "POST",
        f"/api/shows/{show.id}/lotteries",
        {"prize": "Gift card", "duration_s": 300},
        show.host_token,
    )
    assert status == 201, body

    # The coupon is dropped before the viewer joins: the page catches up from the coupon listing.
    status, body = show.api(
        "POST",
        f"/api/shows/{show.id}/coupons",
        {"title": "WELCOME5", "percent_off": 5, "count": 10},
        show.host_token,
    )
    assert status == 201, body

    viewer = new_page(**MOBILE)
    open_viewer(viewer, show, "Ana")
    buy = viewer.get_by_role("button", name="Buy")
    buy.wait_for()
    viewer.locator("#giveaway", has_text="Gift card").wait_for()
    viewer.locator("#coupon", has_text="WELCOME5").wait_for()
    viewer.get_by_role("button", name="Claim").wait_for()
    # No horizontal scroll at 390×844.
    widths = viewer.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth, document.body.scrollWidth]"
    )
    assert widths[0] <= widths[1] and widths[2] <= widths[1], widths
    # The Buy button is fully inside the viewport, in the lower (thumb) half, and nothing covers it.
    box = buy.bounding_box()
    assert box is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["y"] + box["height"] <= 844
    assert box["y"] > 844 / 2
    assert box["height"] >= 44
    on_top = viewer.evaluate(
        "([x, y]) => document.elementFromPoint(x, y)?.closest('#buy-btn') !== null",
        [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
    )
    assert on_top
    # Keyboard: Buy is reachable with Tab and shows a visible focus ring.
    buy.focus()
    outline = viewer.evaluate(
        "() => getComputedStyle(document.querySelector('#buy-btn')).outlineStyle"
    )
    assert outline != "none"
    shot(viewer, "viewer_mobile")
