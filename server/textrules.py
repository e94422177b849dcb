"""The one rule for text arriving over HTTP or WebSocket: it must be valid Unicode.

JSON lets a client write a lone UTF-16 surrogate (``"\\ud800"``); Python decodes it into a
``str`` that cannot be encoded back to UTF-8, so it would crash the first handler, Redis call or
log line that encodes it — or be stored and crash every later read. Every decoded request body
(HTTP JSON, WebSocket JSON or msgpack) is checked once, right after decoding, by
:func:`bad_text_field`; HTTP answers 400 and WebSocket an ``error``, both with code ``bad_field``
and the offending field's name. Rejecting (rather than replacing with U+FFFD) keeps what a client
sent and what the server stored identical.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 32  # bodies are at most 64 KiB; deeper nesting is checked as one opaque field


def is_valid_text(value: str) -> bool:
    """True when ``value`` encodes to UTF-8 (no lone surrogates)."""
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def frame_may_hold_surrogates(frame: str | bytes) -> bool:
    """False when a WebSocket frame cannot have decoded to a lone surrogate (the walk is skipped).

    aiohttp decodes text frames as strict UTF-8 and msgpack decodes its strings strictly, and
    strict UTF-8 never yields a surrogate: only a JSON ``\\u`` escape in a text frame can. (Not
    so for HTTP bodies: ``json.loads`` of bytes decodes with ``surrogatepass``, so raw
    ``ED A0 80`` becomes one; those are always walked.)
    """
    return isinstance(frame, str) and "\\u" in frame


def bad_text_field(body: Any, field: str = "", depth: int = 0) -> str | None:
    """The dotted name of the first string (key or value) in ``body`` that is not valid text, else None.

    A bad key is reported as the key's parent path (its own name cannot be shown safely).
    """
    if isinstance(body, str):
        return None if is_valid_text(body) else (field or "body")
    if depth > MAX_DEPTH:
        return None
    if isinstance(body, dict):
        for key, value in body.items():
            if isinstance(key, str) and not is_valid_text(key):
                return field or "body"
            path = f"{field}.{key}" if field else str(key)
            found = bad_text_field(value, path, depth + 1)
            if found is not None:
                return found
    elif isinstance(body, list):
        for index, value in enumerate(body):
            found = bad_text_field(value, f"{field}[{index}]", depth + 1)
            if found is not None:
                return found
    return None
