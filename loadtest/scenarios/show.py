"""placeholder"""

from __future__ import annotations

from .base import Scenario


class ShowScenario(Scenario):
    name = "show"
    help = "show scenario"
