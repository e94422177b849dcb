"""The one way to load and call Lua scripts.

A module declares each script once, at import, beside the ``.lua`` file it names
(``BUY = lua.Script(HERE / "buy.lua", clock=True)``) and calls it with ``await BUY(app, keys, args)``
or queues it on a pipeline with ``BUY.queue(app, pipe, keys, args)``. The loader:

- registers the script once per Redis client (EVALSHA, with EVAL when Redis lost it; in a
  pipeline, which cannot load a missing script, EVAL);
- prepends the libraries it names (``broker.lua``: the pub/sub envelope; ``interactive_lib.lua``);
- for ``clock=True`` scripts appends the app clock (``server.clock``) as the last ARGV and
  defines ``now`` from it, so those scripts never call ``TIME``.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from ..appkeys import REDIS
from ..clock import now_ms

CLOCK_PREAMBLE = "local now = tonumber(ARGV[#ARGV])\n"  # the loader appends the app clock (ms)


class Script:
    """One Lua script: its file (or inline source), the libraries before it, whether it takes the clock."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        source: str | None = None,
        libs: Sequence[Path] = (),
        clock: bool = False,
    ) -> None:
        body = source if source is not None else Path(path or "").read_text()
        parts = [lib.read_text() for lib in libs]
        if clock:
            parts.insert(0, CLOCK_PREAMBLE)
        self.name = path.name if path is not None else "inline"
        self.clock = clock
        self.source = "".join(p if p.endswith("\n") else p + "\n" for p in parts) + body
        self._registered: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()

    def _args(self, app: web.Application, args: Sequence[Any]) -> list[Any]:
        return [*args, now_ms(app)] if self.clock else list(args)

    def registered(self, client: Any) -> Any:
        """The redis-py script object for this client (registered on first use)."""
        script = self._registered.get(client)
        if script is None:
            script = self._registered[client] = client.register_script(self.source)
        return script

    async def __call__(
        self, app: web.Application, keys: Sequence[str], args: Sequence[Any] = ()
    ) -> Any:
        return await self.registered(app[REDIS])(keys=list(keys), args=self._args(app, args))

    def queue(
        self, app: web.Application, pipe: Any, keys: Sequence[str], args: Sequence[Any] = ()
    ) -> None:
        """Add one call to ``pipe`` (EVAL: a pipeline, also a Cluster one, cannot load a missing script)."""
        pipe.eval(self.source, len(keys), *keys, *self._args(app, args))
