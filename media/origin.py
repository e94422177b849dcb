"""Origin directory: which process of which node holds a show's publisher, in Redis.

When a publisher goes live, its process *claims* the show: a hash ``{show:ID}:media:origin``
with the node id, the process, its pipe address (announced host:port where edges send
``join``, see :mod:`media.pipe`), the publisher epoch (names this publisher; pipe keys are
derived from it) and the node's public URL. The claim is a lease (``LEASE_S``) renewed every
``LEASE_S / 3``: removed when the broadcast ends, gone within ``LEASE_S`` if the process dies.
Renewal is compare-and-set on the epoch (``origin.lua``, called through the ``script`` the server
gives: its one Lua loader, ``server.redis.lua``), so a publisher that took the show
over elsewhere (``?replace=1`` on another node) is never overwritten; the old origin is told
(``on_lost``) and ends its publisher.

The same object keeps the node registry used for placement: every process writes its viewer
count to one hash (``liveshop:media:nodes``) every ``HEARTBEAT_S``; entries older than
``STALE_S`` are ignored (and pruned), so a dead process drops out by itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("liveshop.media.origin")

LEASE_S = 6.0
HEARTBEAT_S = 2.0
STALE_S = 3 * HEARTBEAT_S + 1
LUA = Path(__file__).with_name("origin.lua")
# Calls origin.lua: (keys, args) → its reply. The server passes its loader's script (EVALSHA).
OriginScript = Callable[[list[str], list[Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Origin:
    """A show's origin as the directory holds it."""

    node: str
    process: str
    pipe: tuple[str, int]
    epoch: str
    url: str


@dataclass(frozen=True)
class NodeLoad:
    """One process's line in the node registry."""

    process: str
    node: str
    url: str
    viewers: int
    max_viewers: int  # 0: no ceiling
    cpu: float  # share of one core, averaged over the process and its media workers
    max_cpu: float  # 0: no ceiling
    seen: float


class OriginDirectory:
    """This process's view of the origin directory and the node registry.

    ``origin_key(show)`` names a show's entry (``server.redis.keys.media_origin``; the show's hash
    tag keeps it in the show's Redis Cluster slot); ``nodes_key`` is one global hash.
    """

    def __init__(
        self,
        redis: Any,
        *,
        node_id: str,
        process_id: str,
        pipe_address: tuple[str, int],
        url: str,
        origin_key: Callable[[str], str],
        nodes_key: str,
        script: OriginScript,
        on_lost: Callable[[str], Awaitable[None]],
    ) -> None:
        self.redis = redis
        self.node_id = node_id
        self.process_id = process_id
        self.pipe_address = pipe_address
        self.url = url
        self.origin_key = origin_key
        self.nodes_key = nodes_key
        self.on_lost = on_lost
        self.claims: dict[str, str] = {}  # show → epoch we registered
        self.script = script
        self._task: asyncio.Task[None] | None = None

    def _fields(self, epoch: str) -> list[str]:
        host, port = self.pipe_address
        return [
            "node", self.node_id,
            "process", self.process_id,
            "pipe", f"{host}:{port}",
            "epoch", epoch,
            "url", self.url,
            "since", str(int(time.time() * 1000)),
        ]  # fmt: skip

    async def claim(self, show_id: str, epoch: str) -> None:
        """The publisher of ``show_id`` (epoch ``epoch``) is live here."""
        self.claims[show_id] = epoch
        await self.script(
            [self.origin_key(show_id)], ["claim", epoch, int(LEASE_S * 1000), *self._fields(epoch)]
        )

    async def release(self, show_id: str) -> None:
        """The broadcast ended here: remove the entry, unless another publisher holds it."""
        epoch = self.claims.pop(show_id, None)
        if epoch is not None:
            await self.script([self.origin_key(show_id)], ["release", epoch, int(LEASE_S * 1000)])

    async def lookup(self, show_id: str) -> Origin | None:
        entry = await self.redis.hgetall(self.origin_key(show_id))
        if not entry or "pipe" not in entry:
            return None
        host, _, port = str(entry["pipe"]).rpartition(":")
        return Origin(
            node=entry.get("node", ""),
            process=entry.get("process", ""),
            pipe=(host.strip("[]"), int(port)),
            epoch=entry.get("epoch", ""),
            url=entry.get("url", ""),
        )

    async def renew(self) -> None:
        """Extend every lease of ours; re-claim a lapsed one; give up a taken-over one."""
        for show_id, epoch in list(self.claims.items()):
            result = await self.script(
                [self.origin_key(show_id)], ["renew", epoch, int(LEASE_S * 1000)]
            )
            if int(result) == 0 and self.claims.get(show_id) == epoch:
                await self.claim(show_id, epoch)
            elif int(result) < 0 and self.claims.get(show_id) == epoch:
                del self.claims[show_id]
                log.warning("show %s was taken over by another origin", show_id)
                await self.on_lost(show_id)

    # ------------------------------------------------------------------ node registry
    async def heartbeat(
        self, viewers: int, max_viewers: int = 0, cpu: float = 0.0, max_cpu: float = 0.0
    ) -> None:
        line = {
            "node": self.node_id,
            "url": self.url,
            "viewers": viewers,
            "max": max_viewers,
            "cpu": round(cpu, 4),
            "max_cpu": max_cpu,
            "seen": time.time(),
        }
        await self.redis.hset(self.nodes_key, self.process_id, json.dumps(line))

    async def nodes(self) -> list[NodeLoad]:
        """Every live process's load (stale lines are pruned on the way)."""
        raw = await self.redis.hgetall(self.nodes_key)
        now = time.time()
        fresh: list[NodeLoad] = []
        stale: list[str] = []
        for process, text in raw.items():
            try:
                line = json.loads(text)
                load = NodeLoad(
                    process,
                    str(line["node"]),
                    str(line["url"]),
                    int(line["viewers"]),
                    int(line.get("max", 0)),
                    float(line.get("cpu", 0.0)),
                    float(line.get("max_cpu", 0.0)),
                    float(line["seen"]),
                )
            except (ValueError, KeyError, TypeError):
                stale.append(process)
                continue
            if now - load.seen <= STALE_S:
                fresh.append(load)
            else:
                stale.append(process)
        if stale:
            await self.redis.hdel(self.nodes_key, *stale)
        return fresh

    async def run(
        self,
        viewers: Callable[[], int],
        cpu_seconds: Callable[[], tuple[float, int]],
        max_viewers: int = 0,
        max_cpu: float = 0.0,
    ) -> None:
        """Renew leases and heartbeat until cancelled; a Redis hiccup is logged and retried.

        ``cpu_seconds()`` is (CPU seconds so far, processes they are summed over): the share
        reported is the CPU used since the last heartbeat per process, of one core.
        """
        beat = 0.0
        last = (cpu_seconds()[0], time.monotonic())
        while True:
            try:
                await self.renew()
                now = time.monotonic()
                if now - beat >= HEARTBEAT_S:
                    beat = now
                    seconds, processes = cpu_seconds()
                    share = (seconds - last[0]) / max(1e-3, now - last[1]) / max(1, processes)
                    last = (seconds, now)
                    await self.heartbeat(viewers(), max_viewers, share, max_cpu)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("origin directory renewal failed")
            await asyncio.sleep(LEASE_S / 3)

    async def close(self) -> None:
        """Shutdown: release every claim and leave the node registry."""
        for show_id in list(self.claims):
            await self.release(show_id)
        await self.redis.hdel(self.nodes_key, self.process_id)
