"""Error and close codes are declared once (server/errors.py) and every raised code is declared."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from media.errors import MediaError
from server.commerce.keys import KIND_NAMES
from server.errors import JOIN_CLOSE, ApiError, Close, Code, CodedError, ws_error, ws_error_of
from server.protocol import ProtocolError

ROOT = Path(__file__).resolve().parents[2]
# Calls whose argument at this position is an error code.
CODE_ARG = {"ApiError": 1, "MediaError": 1, "ProtocolError": 0, "bad_request": 0, "not_found": 0,
            "conflict": 0, "ws_error": 0}  # fmt: skip


def raised_codes() -> dict[str, set[str]]:
    """Every string literal passed as an error code in server/ and media/ → where."""
    found: dict[str, set[str]] = {}
    for path in [*ROOT.joinpath("server").rglob("*.py"), *ROOT.joinpath("media").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            index = CODE_ARG.get(str(name))
            if index is None or len(node.args) <= index:
                continue
            arg = node.args[index]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.setdefault(arg.value, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_raised_code_is_declared() -> None:
    codes = raised_codes()
    assert {"bad_field", "bad_sdp", "bad_key", "not_live"} <= set(codes)  # the scan sees them
    undeclared = {
        code: where for code, where in codes.items() if code not in Code.__members__.values()
    }
    assert not undeclared, f"declare these in server/errors.py Code: {undeclared}"


def test_codes_built_at_run_time_are_declared() -> None:
    declared = {c.value for c in Code}
    # keys.show_of: f"{name}_not_found" for every kind of id
    assert {f"{name}_not_found" for name in KIND_NAMES.values()} <= declared
    # order.lua answers coupon_* codes that orders.py raises as they are
    lua = ROOT.joinpath("server/commerce/order.lua").read_text()
    assert set(re.findall(r"'(coupon_[a-z_]+)'", lua)) <= declared
    # media's IPC errors (worker, origin process) travel as codes of the same table
    assert {"worker_error", "process_error", "internal"} <= declared


def test_the_table_is_well_formed() -> None:
    for code in Code:
        assert code == code.value and re.fullmatch(r"[a-z_]+", code.value)
        assert code.status == 0 or 400 <= code.status < 600, code
        assert code.area in {"ws", "any", "chat", "commerce", "media"} and code.meaning
    assert all(close.meaning for close in Close)
    assert JOIN_CLOSE[Code.BANNED] == Close.POLICY_VIOLATION == 1008
    assert JOIN_CLOSE[Code.UNAUTHORIZED] == 4001 and JOIN_CLOSE[Code.SHOW_NOT_FOUND] == 4004


def test_one_wire_error_for_every_kind() -> None:
    """HTTP, WebSocket and media errors are one kind (CodedError) with one wire form."""
    assert issubclass(ApiError, CodedError) and issubclass(MediaError, CodedError)
    assert ws_error(Code.INTERNAL, "internal error") == {
        "type": "error", "id": None, "code": "internal", "message": "internal error"}  # fmt: skip
    sold_out = ApiError(409, "sold_out", "nothing left", left=0)
    assert ws_error_of(sold_out, 7) == {"type": "error", "id": 7, "code": "sold_out",
        "message": "nothing left", "left": 0, "details": {"left": 0}}  # fmt: skip
    bad = ProtocolError(Code.BAD_FIELD, "text: expected `str`", "text")
    assert ws_error_of(bad, None)["field"] == "text" and ws_error_of(bad)["details"] == {
        "field": "text"
    }
    media = MediaError(409, Code.NOT_LIVE, "this show is not live")
    assert media.to_dict() == {"code": "not_live", "message": "this show is not live"}
    assert media.status == Code.NOT_LIVE.status
