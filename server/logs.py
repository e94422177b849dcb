"""Structured logs: one line per event; JSON objects with ``--log-json``; repeats throttled.

A failing dependency makes every retry loop log the same line as fast as it retries (a dead Redis
once grew the log by ~17,000 lines in 25 s). :class:`Throttle` is the one rule for that: each
distinct line (logger, level, message template) passes ``burst`` times per ``every_s`` window;
the rest are counted, and the next line that passes says how many were held back. It is
installed on the log handler, so it covers every logger (ours, aiohttp's, redis-py's); retry
loops call :func:`retry_failed`, which also drops the traceback after a line's first showing.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD)
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname.lower():7} {record.name}: {record.getMessage()}"
        if extras:
            line += f" [{extras}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class Throttle(logging.Filter):
    """Pass each distinct line ``burst`` times per ``every_s``; count and report the rest."""

    def __init__(self, every_s: float = 10.0, burst: int = 3) -> None:
        super().__init__()
        self.every_s = every_s
        self.burst = burst
        self.lock = threading.Lock()
        self.windows: dict[tuple[str, int, str], list[float]] = {}  # key → [start, passed, held]

    def filter(self, record: logging.LogRecord) -> bool:
        _quiet_bad_request(record)
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        with self.lock:
            window = self.windows.get(key)
            if window is None or now - window[0] >= self.every_s:
                held = int(window[2]) if window else 0
                self.windows[key] = [now, 1, 0]
                if len(self.windows) > 10_000:  # bounded memory under hostile variety
                    self.windows = {key: self.windows[key]}
                if held:
                    record.suppressed = held  # the text/JSON formatters show extras
                return True
            if window[1] < self.burst:
                window[1] += 1
                return True
            window[2] += 1
            return False


def _quiet_bad_request(record: logging.LogRecord) -> None:
    """aiohttp logs a malformed request (say a header over 8,190 bytes) as a traceback at ERROR:
    anyone can send those, so it becomes one warning line (and is throttled like any repeat)."""
    if record.name != "aiohttp.server" or not record.exc_info:
        return
    from aiohttp.http_exceptions import HttpProcessingError

    exc = record.exc_info[1]
    if isinstance(exc, HttpProcessingError):
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = "bad HTTP request from %s: %s"
        record.args = (*(record.args or ("?",))[:1], f"{type(exc).__name__}: {exc.message[:80]!r}")
        record.exc_info = None
        record.exc_text = None


_TRACEBACK_SHOWN: set[tuple[str, str]] = set()


def retry_failed(logger: logging.Logger, message: str, *args: Any) -> None:
    """A retry loop's failure: a warning with the exception, its traceback only the first time.

    Call it inside ``except``; repeats are throttled by the handler's :class:`Throttle`.
    """
    exc = sys.exc_info()[1]
    key = (logger.name, message)
    first = key not in _TRACEBACK_SHOWN
    _TRACEBACK_SHOWN.add(key)
    logger.warning(
        message + ": %s", *args, f"{type(exc).__name__}: {exc}" if exc else "", exc_info=first
    )


def setup_logging(json_lines: bool, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    handler.addFilter(Throttle())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log is one line per request: too loud for a load test.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
