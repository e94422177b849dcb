"""The commerce Lua scripts, each declared once (loaded and called through :mod:`server.redis.lua`).

``clock`` scripts decide time windows (a sale's start and end, a reservation's and a coupon's
expiry) on the app clock (:mod:`server.clock`), so tests advance the clock instead of sleeping;
the interactive scripts take ``now`` as an argument from the same clock. ``pin.lua`` keeps Redis
``TIME`` (it only orders pins).
"""

from __future__ import annotations

from pathlib import Path

from ..redis.lua import Script

HERE = Path(__file__).parent

BUY = Script(HERE / "buy.lua", clock=True)
SALE_CREATE = Script(HERE / "sale_create.lua", clock=True)
ORDER = Script(HERE / "order.lua", clock=True)
PIN = Script(HERE / "pin.lua")
COUPON_CLAIM = Script(HERE / "coupon_claim.lua", clock=True)
ORDERS_APPLY = Script(HERE / "orders_apply.lua")
SOLDOUT_RECORD = Script(HERE / "soldout_record.lua")
# Auctions and group buys create reservations: the library writes them like buy.lua does.
POLL = Script(HERE / "poll.lua")
AUCTION = Script(HERE / "auction.lua", libs=[HERE / "interactive_lib.lua"])
GROUP = Script(HERE / "group.lua", libs=[HERE / "interactive_lib.lua"])
INTERACTIVE = {"poll": POLL, "auction": AUCTION, "group": GROUP}
