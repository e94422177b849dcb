"""Errors the relay reports to signalling: an HTTP status, a stable code and a message."""

from __future__ import annotations


class MediaError(Exception):
    """A rejected WHIP/WHEP request (RFC 9725 §4.2 error handling)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
