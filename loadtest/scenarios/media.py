"""placeholder"""

from __future__ import annotations

from .base import Scenario


class MediaScenario(Scenario):
    name = "media"
    help = "media scenario"
