"""Errors the relay reports to signalling: an HTTP status, a stable code and a message.

The codes are the one table in :mod:`server.errors` (``Code``, area ``media``): the relay and the
API speak the same values. That table is values only (no server state), the one import of
``server`` here.
"""

from __future__ import annotations

from server.errors import Code, CodedError

__all__ = ["Code", "MediaError"]


class MediaError(CodedError):
    """A rejected WHIP/WHEP request (RFC 9725 §4.2 error handling)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, code, message)
