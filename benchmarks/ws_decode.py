"""Issue 16: what parsing one client frame costs on the hot paths (chat, buy), both codecs.

    .venv/bin/python benchmarks/ws_decode.py [--n 100000]
    git archive 13d9781 server | tar -x -C /tmp/before   # the commit before the registry
    .venv/bin/python benchmarks/ws_decode.py --before /tmp/before

Times ``Registry.parse`` (server/protocol/registry.py) of the app built by ``create_app``: the
whole path from frame to checked command (decode, request id, text rule, role, fields), best of
five runs of ``--n`` parses each. Prints one JSON line of ns per frame. The path it replaced
(``decode`` + ``request_id`` + ``check_text`` + the dataclass ``validate`` or, for ``buy``,
``fields.idempotency_key``) is measured the same way with ``--before`` on an export of the
commit before the registry; see docs/performance.md "Issue 16a".
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

ROOT = Path(__file__).resolve().parent.parent


CHAT = {"type": "chat", "id": 17, "text": "hello everyone, this looks great!"}
BUY = {"type": "buy", "id": 18, "sale_id": "show-1a2b.s1", "key": "k-00001234"}


def registry_path() -> Callable[[str, str | bytes], Any]:
    from server.protocol.docs import app_registry

    registry = app_registry()
    return lambda _name, frame: registry.parse(frame, "viewer")


def old_path() -> Callable[[str, str | bytes], Any]:
    """The pre-registry checks, as the old gateway ran them (imported from ``--before``)."""
    from server import protocol  # the old module: decode, validate, …
    from server.commerce import fields

    def parse(name: str, frame: str | bytes) -> Any:
        message = protocol.decode(frame)
        rid = protocol.request_id(message)
        protocol.check_text(message, frame)
        if name == "buy":
            key = fields.idempotency_key(message)
            if not isinstance(message.get("sale_id"), str):
                raise ValueError("sale_id")
            return message["sale_id"], key, rid
        return protocol.validate(message), rid

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="parses per timed run")
    parser.add_argument("--before", help="an export of the pre-registry tree: time its checks")
    args = parser.parse_args()
    sys.path.insert(0, args.before or str(ROOT))
    parse = old_path() if args.before else registry_path()
    out: dict[str, int] = {}
    for name, message in (("chat", CHAT), ("buy", BUY)):
        for codec, frame in (("json", json.dumps(message)), ("msgpack", msgpack.packb(message))):
            parse(name, frame)  # warm, and fails loudly if the frame is refused
            runs = timeit.repeat(lambda f=frame, k=name: parse(k, f), number=args.n, repeat=5)
            out[f"{name}_{codec}_ns"] = round(min(runs) / args.n * 1e9)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
