"""Issue 16: what parsing one client frame costs on the hot paths (chat, buy), both codecs.

    .venv/bin/python benchmarks/ws_decode.py [--n 100000]

Times ``Registry.parse`` (server/protocol/registry.py) of the app built by ``create_app``: the
whole path from frame to checked command (decode, request id, text rule, role, fields), best of
five runs of ``--n`` parses each. Prints one JSON line of ns per frame. The path it replaced
(``decode`` + ``request_id`` + ``check_text`` + the dataclass ``validate`` or, for ``buy``,
``fields.idempotency_key``) is measured the same way from an export of the commit before the
registry; see docs/performance.md "Issue 16a".
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from pathlib import Path

import msgpack

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.protocol.docs import app_registry  # noqa: E402

CHAT = {"type": "chat", "id": 17, "text": "hello everyone, this looks great!"}
BUY = {"type": "buy", "id": 18, "sale_id": "show-1a2b.s1", "key": "k-00001234"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="parses per timed run")
    n = parser.parse_args().n
    registry = app_registry()
    out: dict[str, int] = {}
    for name, message in (("chat", CHAT), ("buy", BUY)):
        for codec, frame in (("json", json.dumps(message)), ("msgpack", msgpack.packb(message))):
            command, body, rid = registry.parse(frame, "viewer")
            assert command.type == name and rid == message["id"], (command, body)
            best = min(
                timeit.repeat(lambda f=frame: registry.parse(f, "viewer"), number=n, repeat=5)
            )
            out[f"{name}_{codec}_ns"] = round(best / n * 1e9)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
