"""Media worker: one more process serving viewers, fed by pipes from the origin relay.

mediasoup runs one Worker per core; so does liveshop with ``--media-workers N``. The main
process keeps HTTP, the WebSocket and the publishers (the origin); each worker runs a
:class:`Relay` of its own whose routers are fed by :class:`~media.pipe.PipeEdge`, and its
viewers' ICE/DTLS/SRTP run between them and the worker directly.

``python -m media.worker --fd N --parent PID --index I`` is started by
:class:`media.worker_pool.WorkerPool`. Its control channel is one end of a socketpair
(fd ``N``), private to the two processes: JSON lines, requests ``{"id", "op", ...}`` answered
``{"id", "ok": true, ...}`` or ``{"id", "error": {"status", "code", "message"}}``, and
events ``{"event": "ended" | "stats", ...}``. The worker stops on ``stop``, on SIGTERM, when
the channel closes, and (``PR_SET_PDEATHSIG``) when the main process dies.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import REGISTRY

from .errors import MediaError
from .ice import IceConfig
from .relay import Relay, RelayConfig
from .sdp import trickle
from .session import Session

log = logging.getLogger("liveshop.media.worker")

CONTROL_LIMIT = 16 * 1024 * 1024  # longest control line (a metrics snapshot of many viewers)
STATS_EVERY_S = 1.0
EDGE_READY_S = 5.0  # how long a viewer waits for the pipe's first hello
# Reported by the pool from its own bookkeeping (exact, at once), not forwarded from here.
NOT_FORWARDED = frozenset({"liveshop_media_viewers", "liveshop_media_publishers"})
_PR_SET_PDEATHSIG = 1


def encode(message: dict[str, Any]) -> bytes:
    """One control message: a JSON line."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def metrics_snapshot() -> list[list[Any]]:
    """This process's ``liveshop_media_*`` samples: [name, type, help, [[sample, labels, value]]]."""
    families = []
    for family in REGISTRY.collect():
        if (
            family.name.startswith("liveshop_media_")
            and family.name not in NOT_FORWARDED
            and family.samples
        ):
            families.append(
                [
                    family.name,
                    family.type,
                    family.documentation,
                    [[s.name, s.labels, s.value] for s in family.samples],
                ]
            )
    return families


class Worker:
    """The worker side of the control channel: a Relay of edges, driven by the main process."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.relay: Relay | None = None
        self.stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.ops: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
            "configure": self.configure,
            "accept_pipe": self.accept_pipe,
            "view": self.view,
            "end": self.end,
            "trickle": self.trickle,
            "end_show": self.end_show,
            "stop": self.stop,
        }

    def send(self, message: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode(message))

    # ------------------------------------------------------------------ operations
    async def configure(self, config: dict[str, Any]) -> dict[str, Any]:
        self.relay = Relay(
            RelayConfig(
                ice=IceConfig(**config["ice"]),
                connect_timeout_s=config["connect_timeout_s"],
                gop_max_packets=config["gop_max_packets"],
                max_viewers_per_show=config["max_viewers_per_show"],
                recordings_dir=None,  # the origin records
                hls=None,  # and packages LL-HLS: no HTTP here to serve it
            ),
            on_ended=self._session_ended,
        )
        self._background(self._report_stats())
        return {"pid": os.getpid()}

    def _relay(self) -> Relay:
        if self.relay is None:
            raise MediaError(503, "worker_not_configured", "media worker is not configured")
        return self.relay

    async def accept_pipe(self, show: str, key: str) -> dict[str, Any]:
        """Listen for the main process's pipe of ``show``; ``key`` (hex) authenticates it."""
        _, port = await self._relay().accept_pipe(show, key=bytes.fromhex(key))
        return {"port": port}

    async def view(self, show: str, offer: str, viewer: str) -> dict[str, Any]:
        relay = self._relay()
        router = relay.routers.get(show)
        if router is not None and router.edge is not None and not router.edge.ready.is_set():
            try:
                await asyncio.wait_for(router.edge.ready.wait(), EDGE_READY_S)
            except TimeoutError:
                raise MediaError(
                    503, "edge_not_ready", "the show's stream has not reached this media worker"
                ) from None
        session = await relay.view(show, offer, viewer)
        return {"session": session.id, "show": show, "answer": session.answer}  # type: ignore[attr-defined]

    async def end(self, show: str, session: str) -> dict[str, Any]:
        await self._relay().get(show, session, "whep").end()
        return {}

    async def trickle(
        self, show: str, session: str, frag: str, if_match: str | None
    ) -> dict[str, Any]:
        """A viewer's trickle PATCH (RFC 9725 §4.3), relayed by the pool."""
        pc = self._relay().get(show, session, "whep").pc
        return {"etag": await trickle(pc, frag, if_match)}

    async def end_show(self, show: str) -> dict[str, Any]:
        router = self._relay().routers.get(show)
        if router is not None and router.edge is not None:
            await router.edge.end()
        return {}

    async def stop(self) -> dict[str, Any]:
        self.stopping.set()
        return {}

    # ------------------------------------------------------------------ events
    def _session_ended(self, session: Session) -> None:
        if session.kind == "whep":
            self.send({"event": "ended", "session": session.id})

    async def _report_stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_EVERY_S)
            self.send({"event": "stats", "metrics": metrics_snapshot()})

    # ------------------------------------------------------------------ channel
    def _background(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, message: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"id": message.get("id")}
        try:
            op = self.ops[message.pop("op")]
            message.pop("id", None)
            reply.update(await op(**message), ok=True)
        except MediaError as exc:
            reply["error"] = {"status": exc.status, "code": exc.code, "message": exc.message}
        except Exception as exc:
            log.exception("control operation failed")
            reply["error"] = {"status": 500, "code": "worker_error", "message": repr(exc)}
        self.send(reply)

    async def _read(self) -> None:
        while True:
            try:
                line = await self.reader.readline()
            except (ConnectionError, ValueError):
                line = b""
            if not line:
                log.info("control channel closed")
                self.stopping.set()
                return
            self._background(self._handle(json.loads(line)))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, lambda: None)  # the main process stops us in order
        reading = asyncio.ensure_future(self._read())
        await self.stopping.wait()
        if self.relay is not None:
            await self.relay.close()
        reading.cancel()
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        if not self.writer.is_closing():
            await self.writer.drain()
            self.writer.close()


def _die_with_parent(parent: int) -> None:
    """The kernel sends SIGTERM when the main process dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the line above
        raise SystemExit(0)


def _setup_logging(index: int, level: str, json_lines: bool) -> None:
    class Formatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + self.formatException(record.exc_info)
            if json_lines:
                return json.dumps(
                    {
                        "ts": round(record.created, 3),
                        "level": record.levelname.lower(),
                        "logger": record.name,
                        "msg": message,
                        "worker": index,
                    }
                )
            stamp = self.formatTime(record, "%H:%M:%S")
            return f"{stamp} {record.levelname.lower():7} {record.name}[worker {index}]: {message}"

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Formatter())
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger().setLevel(level.upper())


async def _main(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=CONTROL_LIMIT)
    await Worker(reader, writer).run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m media.worker", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="control socket file descriptor")
    parser.add_argument("--parent", type=int, required=True, help="pid of the main process")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-json", action="store_true")
    args = parser.parse_args(argv)
    _die_with_parent(args.parent)
    _setup_logging(args.index, args.log_level, args.log_json)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_main(args.fd))


if __name__ == "__main__":
    main()
