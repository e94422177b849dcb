"""Requests to one named process of the cluster, over Redis pub/sub.

With ``--reuse-port`` (and a load balancer in front of N nodes) an HTTP request reaches any
process; some must be handled by one in particular: a WHEP ``DELETE`` by the process holding
that viewer, a recording start/stop by the show's origin. Each process subscribes to its own
channel (``liveshop:media:proc:<token>``); a request ``{"id", "op", "args", "reply"}`` is
answered on the caller's channel with ``{"re": id, "ok": {...}}`` or ``{"re": id, "error":
{"status", "code", "message"}}``. Callers wait ``CALL_TIMEOUT_S`` at most (504
``process_timeout``): a process that died answers nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import MediaError

log = logging.getLogger("liveshop.media.control")

CALL_TIMEOUT_S = 5.0
CHANNEL_PREFIX = "liveshop:media:proc:"

Handler = Callable[..., Awaitable[dict[str, Any]]]


class ProcessControl:
    """This process's end: serves ``handlers`` on its channel, calls other processes."""

    def __init__(self, redis: Any, token: str, handlers: dict[str, Handler]) -> None:
        self.redis = redis
        self.token = token
        self.handlers = handlers
        self.channel = CHANNEL_PREFIX + token
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._pubsub = self.redis.pubsub()
        await self._pubsub.subscribe(self.channel)
        self._task = asyncio.ensure_future(self._read())

    async def call(self, token: str, op: str, **args: Any) -> dict[str, Any]:
        """Run ``op`` on the process with ``token``; its MediaError comes back as ours."""
        request_id = f"{self.token}.{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        message = {"id": request_id, "op": op, "args": args, "reply": self.channel}
        try:
            receivers = await self.redis.publish(CHANNEL_PREFIX + token, json.dumps(message))
            # A cluster counts only its own node's subscribers: there, wait for the timeout.
            if not receivers and not hasattr(self.redis, "get_nodes"):
                raise MediaError(404, "no_process", "the process holding this is gone")
            return self.result(await asyncio.wait_for(future, CALL_TIMEOUT_S))
        except TimeoutError:
            raise MediaError(
                504, "process_timeout", "the process holding this did not answer"
            ) from None
        finally:
            self._pending.pop(request_id, None)

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=1.0
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("control channel read failed")
                await asyncio.sleep(1.0)
                continue
            if message is None or message.get("type") != "message":
                continue
            try:
                body = json.loads(message["data"])
            except (ValueError, TypeError):
                continue
            if "re" in body:
                future = self._pending.get(body["re"])
                if future is not None and not future.done():
                    future.set_result(body)
            elif "op" in body:
                task = asyncio.ensure_future(self._serve(body))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _serve(self, body: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"re": body.get("id")}
        try:
            handler = self.handlers[str(body["op"])]
            reply["ok"] = await handler(**body.get("args", {}))
        except MediaError as exc:
            reply["error"] = {"status": exc.status, "code": exc.code, "message": exc.message}
        except Exception as exc:
            log.exception("control operation %s failed", body.get("op"))
            reply["error"] = {"status": 500, "code": "process_error", "message": repr(exc)}
        with contextlib.suppress(Exception):
            await self.redis.publish(str(body.get("reply", "")), json.dumps(reply))

    @staticmethod
    def result(reply: dict[str, Any]) -> dict[str, Any]:
        """The ``ok`` part of a reply, or its error raised."""
        error = reply.get("error")
        if error is not None:
            raise MediaError(int(error["status"]), str(error["code"]), str(error["message"]))
        return dict(reply.get("ok") or {})

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._tasks):
            task.cancel()
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
