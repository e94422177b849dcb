"""Fails loudly when an aiortc/aioice upgrade moves the internals media/ relies on."""

from __future__ import annotations

import re
from pathlib import Path

import aiortc

from media.aiortc_internals import AIORTC_VERSION, check_internals


def test_internals_present() -> None:
    assert check_internals() == []


def test_aiortc_pinned_exactly() -> None:
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert (
        re.search(r'"aiortc==([\d.]+)"', pyproject).group(1) == AIORTC_VERSION == aiortc.__version__
    )


def test_only_one_module_touches_internals() -> None:
    media = Path(__file__).parents[2] / "media"
    offenders = [
        p.name
        for p in media.glob("*.py")
        if p.name != "aiortc_internals.py"
        and re.search(r"_RTCRtp\w+__|\._tx_srtp|\._nominated|\._handle_rtp", p.read_text())
    ]
    assert offenders == []
