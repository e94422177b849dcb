"""The events commerce broadcasts to a show (inside ``batch``; never droppable), declared once.

Registered by ``server.commerce.setup`` for docs/protocol.md ("Commerce events") and checked
against real frames by the commerce tests. The publishers build them as dicts (encoded once per
batch for every viewer); these Structs are their contract.
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta

from ..protocol import Event


def _d(text: str) -> Meta:
    return Meta(description=text)


class ProductPinned(Event, tag="product.pinned"):
    """A product was pinned to the stream (at most 3 are)."""

    product: Annotated[dict[str, Any], _d("the product, with `price`, `currency`, `stock`")]


class ProductUnpinned(Event, tag="product.unpinned"):
    """A product was unpinned."""

    product_id: Annotated[str, _d("the product")]


class Products(Event, tag="products"):
    """The pinned list changed (a pin change, or an update of a pinned product)."""

    pinned: Annotated[list[Any], _d("the pinned products with price and stock left")]


class SaleCountdown(Event, tag="sale.countdown"):
    """Every second until a scheduled sale starts."""

    sale_id: Annotated[str, _d("the sale")]
    product_id: Annotated[str, _d("its product")]
    title: Annotated[str, _d("product title")]
    price: Annotated[int, _d("sale price (minor units)")]
    currency: Annotated[str, _d("ISO currency")]
    quantity: Annotated[int, _d("units on sale")]
    starts_at: Annotated[int, _d("start (ms)")]
    seconds_left: Annotated[int, _d("seconds to the start")]


class SaleStarted(Event, tag="sale.started"):
    """A sale is live: buy now."""

    sale_id: Annotated[str, _d("the sale")]
    product_id: Annotated[str, _d("its product")]
    title: Annotated[str, _d("product title")]
    price: Annotated[int, _d("sale price (minor units)")]
    list_price: Annotated[int, _d("the product's own price")]
    currency: Annotated[str, _d("ISO currency")]
    quantity: Annotated[int, _d("units on sale")]
    left: Annotated[int, _d("units not reserved or sold")]
    per_user_limit: Annotated[int, _d("units one user may hold")]
    ends_at: Annotated[int, _d("end (ms)")]


class SaleStock(Event, tag="sale.stock"):
    """Units left changed (at most every 200 ms, only when it changed)."""

    sale_id: Annotated[str, _d("the sale")]
    left: Annotated[int, _d("units not reserved or sold")]
    sold: Annotated[int, _d("units paid")]


class SaleEnded(Event, tag="sale.ended"):
    """The sale is over (time up, sold out and settled, or ended by staff)."""

    sale_id: Annotated[str, _d("the sale")]
    sold: Annotated[int, _d("units paid")]
    reserved: Annotated[int, _d("units still reserved (payable until they expire)")]
    left: Annotated[int, _d("units never sold")]


class OrderPaid(Event, tag="order.paid"):
    """Social proof: someone just bought."""

    buyer: Annotated[str, _d("the buyer's display name")]
    product_id: Annotated[str, _d("the product")]
    product: Annotated[str, _d("its title")]
    sale_id: Annotated[str, _d("the sale")]
    left: Annotated[int, _d("units of the sale left")]
    text: Annotated[str, _d('"Alice just bought …"')]


class CouponDropped(Event, tag="coupon.dropped"):
    """Staff dropped a coupon: claim it with `coupon.claim`."""

    coupon: Annotated[
        dict[str, Any],
        _d("`id`, `title`, `percent_off`, `amount_off`, `currency`, `count`, `left`, `expires_at`"),
    ]


class LotteryCreated(Event, tag="lottery.created"):
    """A giveaway opened (its commitment is published before anyone can enter)."""

    lottery: Annotated[
        dict[str, Any],
        _d(
            "`id`, `prize`, `winners_count`, `eligibility`, `keyword`, `commitment`, `opens_at`, `closes_at`, `proof_url`"
        ),
    ]


class LotteryDrawn(Event, tag="lottery.drawn"):
    """A giveaway was drawn; anyone can check it with the proof."""

    lottery_id: Annotated[str, _d("the giveaway")]
    prize: Annotated[str, _d("the prize")]
    winners: Annotated[list[Any], _d("[{`user_id`, `name`}]")]
    entrants_count: Annotated[int, _d("entrants")]
    entrants_hash: Annotated[str, _d("hash of the sorted entrants")]
    seed: Annotated[str, _d("the revealed seed")]
    commitment: Annotated[str, _d("the commitment published at creation")]
    proof_url: Annotated[str, _d("`GET` it for the proof")]


class Stats(Event, tag="stats"):
    """Staff only: live numbers of the show, every ~2 s while something changes."""

    viewers: Annotated[int, _d("current viewers")]
    peak_viewers: Annotated[int, _d("peak concurrent viewers")]
    chat_per_minute: Annotated[float, _d("chat messages in the last minute")]
    chat_messages: Annotated[int, _d("chat messages")]
    likes: Annotated[int, _d("likes")]
    product_clicks: Annotated[int, _d("product clicks")]
    reservations: Annotated[int, _d("reservations")]
    paid_orders: Annotated[int, _d("paid orders")]
    gmv: Annotated[dict[str, int], _d("{currency: minor units}")]
    funnel: Annotated[
        dict[str, int],
        _d("`viewers`, `clicked`, `reserved`, `paid`, `bid`, `group_joined`, `voted`"),
    ]


class PollEvent(Event, tag="poll.created"):
    """`poll.created`, `poll.tally` (at most every 250 ms while votes change) and `poll.closed` (final, frozen)."""

    ALSO = ("poll.tally", "poll.closed")
    poll_id: Annotated[str, Meta(description="the poll")]
    question: Annotated[str, Meta(description="the question (created, closed)")]
    options: Annotated[list[Any], Meta(description="[{label, product_id}] (created, closed)")]
    tallies: Annotated[list[Any], Meta(description="votes per option")]
    total: Annotated[int, Meta(description="voters")]
    ends_at: Annotated[int, Meta(description="close time (ms)")]


class AuctionEvent(Event, tag="auction.started"):
    """`auction.started`, `auction.bid` (state after bids, at most every 100 ms) and `auction.ended` (`winner_name`, `winner_user_id`, `reservation_id`, `reserve_met`)."""

    ALSO = ("auction.bid", "auction.ended")
    auction_id: Annotated[str, Meta(description="the auction")]
    price: Annotated[
        int, Meta(description="current price (minor units); start price before the first bid")
    ]
    leader_name: Annotated[
        str, Meta(description="display name of the leading bidder ('' before the first bid)")
    ]
    bids: Annotated[int, Meta(description="accepted bids")]
    ends_at: Annotated[int, Meta(description="end time (ms), after every soft-close extension")]


class GroupEvent(Event, tag="group.created"):
    """`group.created` (the deal), `group.progress` ("2 of 3 joined", at most every 100 ms), `group.formed` (`members` [{user_id, name, reservation_id}]: pay now), `group.failed` (`members` [user ids]: units released), `group.ended`."""

    ALSO = ("group.progress", "group.formed", "group.failed", "group.ended")
    deal_id: Annotated[str, Meta(description="the deal")]
    group: Annotated[int, Meta(description="number of the group in the deal (1, 2, …)")]
    joined: Annotated[int, Meta(description="members of the open group")]
    size: Annotated[int, Meta(description="members needed")]
    ends_at: Annotated[int, Meta(description="end of the open group's join window (ms)")]
    left: Annotated[int, Meta(description="units of the deal not held")]


EVENTS: tuple[type[Event], ...] = (
    ProductPinned, ProductUnpinned, Products, SaleCountdown, SaleStarted, SaleStock, SaleEnded,
    OrderPaid, CouponDropped, LotteryCreated, LotteryDrawn, Stats, PollEvent, AuctionEvent, GroupEvent,
)  # fmt: skip
