"""Which per-viewer writer forwards RTP: the C extension (``media._fastpath``) or pure Python.

The extension is optional (setup.py builds it with ``optional=True``): when it is not built,
or ``LIVESHOP_FASTPATH=0`` is set, :mod:`media.aiortc_internals` falls back to the Python
``rtp_writer`` and producers fan out through ``Consumer.forward`` one viewer at a time. Both
paths send the same bytes (tests/media/test_fastpath.py compares them); the C one costs less
CPU per copy (docs/performance.md, issue 12).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

log = logging.getLogger("liveshop.media.fastpath")

ENV = "LIVESHOP_FASTPATH"
# media/_fastpath.c's INTERFACE: a build from an older source (an in-place .so left behind by a
# checkout that moved on) is refused, and the pure-Python path serves until pip rebuilds it.
INTERFACE = 1


def _load() -> tuple[ModuleType | None, str]:
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return None, f"disabled by {ENV}=0"
    try:
        from . import _fastpath
    except ImportError as exc:
        return None, f"not built ({exc})"
    built = getattr(_fastpath, "INTERFACE", None)
    if built != INTERFACE:
        return (
            None,
            f"stale build (interface {built}, this source needs {INTERFACE}: pip install .)",
        )
    from pylibsrtp import Error

    _fastpath.set_error_class(Error)  # what a failing srtp_protect raises, as in pylibsrtp
    return _fastpath, "built"


_native, reason = _load()
_enabled = _native is not None


def native() -> ModuleType | None:
    """The extension module when it is built and selected, else None."""
    return _native if _enabled else None


def available() -> bool:
    """True when the extension is importable (whether or not it is selected)."""
    return _native is not None


def describe() -> str:
    """One line for logs and benchmark output: which path forwards RTP and why."""
    if _enabled:
        return "fast path: C extension media._fastpath"
    return f"fast path off: pure Python ({reason if _native is None else 'selected off'})"


@contextmanager
def selected(enabled: bool) -> Iterator[None]:
    """Choose the path for viewers that connect inside the block (tests run both paths).

    Viewers keep the writer they connected with; producers hand to the extension only the
    consumers whose writer is the extension's.
    """
    global _enabled
    if enabled and _native is None:
        raise RuntimeError(f"media fast path requested but {reason}")
    previous, _enabled = _enabled, enabled
    try:
        yield
    finally:
        _enabled = previous


def _all_forward(consumers: list[Any], packet: Any, live: Any) -> list[Any]:
    return consumers


def fan_out() -> Callable[[list[Any], Any, Any], list[Any]]:
    """``fan_out(consumers, packet, LIVE)`` → the consumers still to call ``forward`` on.

    The extension's forwards every live consumer that has a C writer in one call; without
    it every consumer goes through ``forward``. Always the extension's when it is built:
    it only touches consumers that connected with a C writer.
    """
    return _native.fan_out if _native is not None else _all_forward
