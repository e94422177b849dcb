"""placeholder"""

from __future__ import annotations

from .base import Scenario


class LotteryScenario(Scenario):
    name = "lottery"
    help = "lottery scenario"
