"""Moved to :mod:`server.broker` (publish/subscribe and the envelope); this alias lets branches
written before the move merge cleanly. New code imports ``server.broker``."""

from __future__ import annotations

from .broker import publish

__all__ = ["publish"]
