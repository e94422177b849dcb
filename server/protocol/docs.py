"""docs/protocol.md's reference section, generated from the registry and the error tables.

``python -m server.protocol [docs/protocol.md]`` builds the app (no Redis is touched) and
rewrites the part between the BEGIN/END markers; a test fails when it is stale.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import msgspec

from ..errors import Close, Code
from .registry import Command, Event, Message, Registry, type_of

BEGIN = "<!-- BEGIN GENERATED: python -m server.protocol -->"
END = "<!-- END GENERATED -->"
AREAS = {
    "ws": "WebSocket and connecting",
    "any": "any request",
    "chat": "shows, chat and moderation",
    "commerce": "commerce",
    "media": "media (WHIP/WHEP, recording, HLS)",
}
_ROLE_NAMES = {
    frozenset({"host", "moderator", "viewer"}): "anyone",
    frozenset({"host", "moderator"}): "staff (host, moderator)",
    frozenset({"viewer"}): "viewers",
}


def _type_name(kind: Any) -> str:
    base = typing.get_args(kind)[0] if typing.get_origin(kind) is typing.Annotated else kind
    if isinstance(base, types.UnionType) or typing.get_origin(base) is typing.Union:
        return " or ".join(_type_name(arg) for arg in typing.get_args(base))
    if base is type(None):
        return "null"
    origin = typing.get_origin(base) or base
    return getattr(origin, "__name__", str(origin))


def _range(low: float | None, high: float | None, unit: str) -> str:
    def number(n: float) -> str:
        return f"{n:,}"

    if low is None:
        return f"≤ {number(high or 0)}{unit}"
    if high is None:
        return f"≥ {number(low)}{unit}"
    return f"{number(low)}..{number(high)}{unit}"


def _limits(kind: Any) -> str:
    """The Meta constraints of a field, as the reader needs them."""
    if typing.get_origin(kind) is not typing.Annotated:
        return ""
    base = typing.get_args(kind)[0]
    unit = " chars" if base is str else " items"
    parts: list[str] = []
    for meta in typing.get_args(kind)[1:]:
        if not isinstance(meta, msgspec.Meta):
            continue
        if meta.ge is not None or meta.le is not None:
            parts.append(_range(meta.ge, meta.le, ""))
        if meta.min_length is not None or meta.max_length is not None:
            parts.append(_range(meta.min_length, meta.max_length, unit))
        if meta.pattern is not None:
            parts.append(f"`{meta.pattern}`")
        if meta.extra and "code" in meta.extra:
            parts.append(f"else `{meta.extra['code']}`")
    return ", ".join(parts)


def _description(kind: Any) -> str:
    if typing.get_origin(kind) is not typing.Annotated:
        return ""
    for meta in typing.get_args(kind)[1:]:
        if isinstance(meta, msgspec.Meta) and meta.description:
            return meta.description
    return ""


def _table(schema: type[msgspec.Struct], command: Command | None = None) -> list[str]:
    kinds = [type_of(schema), *getattr(schema, "ALSO", ())]
    title = " | ".join(kinds)
    rows = [f"### `{title}`", "", (schema.__doc__ or "").strip(), ""]
    if command is not None:
        roles = _ROLE_NAMES.get(command.roles, ", ".join(sorted(command.roles)))
        rows += [f"Who: {roles}.", ""]
    specs = [f for f in msgspec.structs.fields(schema) if not (command and f.name == "id")]
    if specs:
        if command is not None:
            rows += ["| field | type | required | limits | notes |", "|---|---|---|---|---|"]
        else:
            rows += ["| field | type | notes |", "|---|---|---|"]
        for spec in specs:
            kind = _type_name(spec.type)
            doc = _description(spec.type)
            if command is None:
                rows.append(f"| `{spec.name}` | {kind} | {doc} |")
                continue
            required = "yes" if spec.required else f"no (default {spec.default!r})"
            rows.append(f"| `{spec.name}` | {kind} | {required} | {_limits(spec.type)} | {doc} |")
        rows.append("")
    return rows


def markdown(registry: Registry) -> str:
    """The generated reference section of docs/protocol.md."""
    out: list[str] = []
    for section, kinds in registry.groups.items():
        out += [f"## {section}", ""]
        for kind in kinds:
            command = registry.commands.get(kind)
            schema: type[Message] | type[Event] = (
                command.schema if command is not None else registry.events[kind]
            )
            out += _table(schema, command)
    out += [
        "## Error codes",
        "",
        "Declared in `server/errors.py` (`Code`); HTTP status 0: WebSocket only.",
        "",
    ]
    for area, title in AREAS.items():
        out += [f"### {title}", "", "| code | HTTP | meaning |", "|---|---|---|"]
        out += [
            f"| `{c.value}` | {c.status or '–'} | {c.meaning} |" for c in Code if c.area == area
        ]
        out.append("")
    out += ["## Close codes", "", "| code | meaning |", "|---|---|"]
    out += [f"| {int(code)} | {code.meaning} |" for code in Close]
    return "\n".join(out) + "\n"


def app_registry() -> Registry:
    """The registry of a node with every part set up (built, never started)."""
    from ..app import create_app
    from ..appkeys import COMMANDS
    from ..config import Settings

    return create_app(Settings())[COMMANDS]


def write_docs(path: Path, registry: Registry | None = None) -> None:
    """Replace the generated section of `path` with :func:`markdown`."""
    text = path.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    body = markdown(registry or app_registry())
    path.write_text(f"{head}{BEGIN}\n\n{body}\n{END}{tail}")
