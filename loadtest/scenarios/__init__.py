"""The scenarios, by CLI name."""

from __future__ import annotations

from .auction import AuctionScenario
from .base import Scenario
from .chat import ChatScenario
from .flash_sale import FlashSaleScenario
from .group_buy import GroupBuyScenario
from .hls import HlsScenario
from .lottery import LotteryScenario
from .media import MediaScenario
from .poll import PollScenario
from .show import ShowScenario

SCENARIOS: dict[str, type[Scenario]] = {
    cls.name: cls
    for cls in (
        ChatScenario,
        FlashSaleScenario,
        HlsScenario,
        LotteryScenario,
        MediaScenario,
        ShowScenario,
    )
    + (AuctionScenario, GroupBuyScenario, PollScenario)  # interactive commerce (issue 18)
}

__all__ = ["SCENARIOS", "Scenario"]
