"""The house's seams hold: one Lua loader, one broker, packages that say what they own.

Each rule names the one module allowed to do a thing; the check reads the whole tree, so a new
module that goes around a seam fails here instead of in review.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
SOURCES = [p for top in ("server", "media", "loadtest") for p in (ROOT / top).rglob("*.py")]


def _offenders(pattern: str, allowed: set[str], suffix: str = "*.py") -> list[str]:
    regex = re.compile(pattern)
    files = [p for top in ("server", "media") for p in (ROOT / top).rglob(suffix)]
    assert len(files) > 10  # the tree, not an empty glob
    return sorted(
        rel
        for p in files
        if (rel := str(p.relative_to(ROOT))) not in allowed and regex.search(p.read_text())
    )


def test_only_the_loader_loads_lua() -> None:
    assert _offenders(r"register_script|\.eval\(|\.evalsha\(", {"server/redis/lua.py"}) == []


def test_only_the_broker_publishes_and_subscribes() -> None:
    # media/origin_control.py is the media relay's own request/reply between processes (no show
    # events, no envelope): media/ keeps no dependency on the server's broker.
    # server/insight/replay.py's capture reads the show channel itself so it can drain what was
    # published before Stop from its own connection (it decodes with broker.decode).
    allowed = {"server/redis/broker.py", "media/origin_control.py", "server/insight/replay.py"}
    assert _offenders(r"\[REDIS\]\.publish\(|\bredis\.publish\(|\.pubsub\(", allowed) == []
    lua_publishers = _offenders(r"redis\.call\(\s*['\"]PUBLISH", set(), "*.lua")
    assert lua_publishers == ["server/redis/broker.lua"]  # scripts publish with broker_publish


def test_every_server_package_says_what_it_owns() -> None:
    packages = sorted((ROOT / "server").rglob("__init__.py"))
    assert {p.parent.name for p in packages} >= {
        "server", "ws", "protocol", "realtime", "redis", "commerce", "insight",
    }  # fmt: skip
    for init in packages:
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 80, f"{init.relative_to(ROOT)} has no docstring of what it owns"


def test_media_and_loadtest_import_only_the_shared_declarations() -> None:
    """Media shares the error codes (server.errors); the load tester finds the Redis binary the
    server bundles for its network-namespace Redis. Nothing else crosses."""
    allowed = {("media", "server.errors"), ("loadtest", "server.redis.embedded")}
    offenders = []
    for path in SOURCES:
        top = path.relative_to(ROOT).parts[0]
        if top == "server":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            offenders += [
                f"{path.relative_to(ROOT)}: {n}"
                for n in names
                if n.split(".")[0] == "server" and (top, n) not in allowed
            ]
    assert offenders == []
