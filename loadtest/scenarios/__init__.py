"""The scenarios, by CLI name."""

from __future__ import annotations

from .base import Scenario
from .chat import ChatScenario
from .flash_sale import FlashSaleScenario
from .hls import HlsScenario
from .lottery import LotteryScenario
from .media import MediaScenario
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
}

__all__ = ["SCENARIOS", "Scenario"]
