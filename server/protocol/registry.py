"""The command registry: every WebSocket command declared once — schema, handler, roles, docs.

A command is a :class:`Command`: its schema is a :class:`Message` (a msgspec Struct tagged by
``type``, constraints as ``msgspec.Meta``, the docstring and field descriptions are its docs), its
handler runs it, ``roles`` says who may send it. Parts declare their commands beside their
handlers and add them in ``setup(app)`` with :func:`register`; the gateway asks the app's
:class:`Registry` to :meth:`~Registry.parse` each frame and runs the handler. Events
(server → client) are declared the same way as :class:`Event` Structs and registered for the docs.

Parsing has two paths with one outcome. The fast one decodes a frame straight into the union of
every registered schema (one msgspec decoder per codec: type, constraints and tag checked in C).
A frame it refuses (or one with a JSON ``\\u`` escape, which may hide a lone surrogate) takes the
slow one: the generic decode, then the same checks one by one in the order clients have always
seen them (bad frame → bad type → bad text → unknown type → role → fields), so every refusal
keeps its code, its ``field`` and its request ``id``.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Union

import msgspec

from ..auth import ANY_ROLE as ANYONE
from ..auth import STAFF
from ..errors import ApiError, Code, CodedError
from .wire import ProtocolError, check_text, decode, request_id

if TYPE_CHECKING:
    from aiohttp import web

    from ..auth import Claims

__all__ = ["ANYONE", "STAFF", "VIEWERS", "Command", "Event", "Message", "Registry", "register"]

VIEWERS: frozenset[str] = frozenset({"viewer"})


class Message(msgspec.Struct, kw_only=True, tag_field="type"):
    """A client → server command. Subclass with ``tag="<type>"``; fields carry ``Meta`` constraints.

    ``id`` is the optional request id every command may carry (any JSON value; only a plain
    integer is echoed back, see :func:`.wire.request_id`). Unknown fields are ignored.
    """

    id: Any = None


class Event(msgspec.Struct, kw_only=True, tag_field="type"):
    """A server → client message or event (inside ``batch``), declared for the docs and tests.

    ``ALSO`` lists further ``type`` values sharing the same fields (documented together).
    """

    ALSO: ClassVar[tuple[str, ...]] = ()


M = typing.TypeVar("M", bound=Message)
Handler = Callable[["web.Application", "Claims", Any], Awaitable[dict[str, Any] | None]]

_AT = re.compile(r" - at `\$\.?(.*)`$")
_MISSING = re.compile(r"^Object missing required field `([^`]+)`")


def type_of(schema: type[msgspec.Struct]) -> str:
    """The ``type`` tag of a Message or Event schema."""
    return str(schema.__struct_config__.tag)


@dataclass(frozen=True, eq=False)
class Command:
    """One WebSocket command: schema (with its docs), handler, allowed roles.

    ``refusal`` is the ``forbidden`` message for a role outside ``roles`` (``{role}`` and
    ``{type}`` are filled in). ``bounded`` commands run under the node's real-time dispatch
    slots (see gateway ``DISPATCH_SLOTS``): the chat layer's, whose Redis work is bounded there.
    """

    schema: type[Message]
    handler: Handler
    roles: frozenset[str] = ANYONE
    refusal: str = "role '{role}' may not use {type}"
    bounded: bool = False
    type: str = field(init=False)
    field_codes: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", type_of(self.schema))
        codes: dict[str, str] = {}
        for spec in msgspec.structs.fields(self.schema):
            for meta in typing.get_args(spec.type)[1:]:
                if isinstance(meta, msgspec.Meta) and meta.extra and "code" in meta.extra:
                    codes[spec.name] = meta.extra["code"]
        object.__setattr__(self, "field_codes", codes)

    def allow(self, role: str) -> None:
        """Raise ``forbidden`` unless ``role`` may send this command."""
        if role not in self.roles:
            raise ApiError(403, Code.FORBIDDEN, self.refusal.format(role=role, type=self.type))

    def convert(self, message: dict[str, Any]) -> Message:
        """A decoded message dict checked against the schema (null counts as absent)."""
        clean = {k: v for k, v in message.items() if v is not None and isinstance(k, str)}
        try:
            return msgspec.convert(clean, self.schema)
        except msgspec.ValidationError as exc:
            raise self.field_error(self._first_fault(clean) or str(exc)) from None

    def _first_fault(self, message: dict[str, Any]) -> str | None:
        """msgspec's complaint about the first bad field in schema order (the order clients saw
        before msgspec, which reports in the frame's order): one error, the same one every time."""
        for spec in msgspec.structs.fields(self.schema):
            if spec.name not in message:
                if spec.required:
                    return f"Object missing required field `{spec.name}`"
                continue
            try:
                msgspec.convert(message[spec.name], spec.type)
            except msgspec.ValidationError as exc:
                text = str(exc)
                if " - at `$" in text:  # inside the field: a path relative to its value
                    return text.replace(" - at `$", f" - at `$.{spec.name}", 1)
                return f"{text} - at `$.{spec.name}`"
        return None

    def field_error(self, text: str) -> ApiError:
        """msgspec's complaint as a ``bad_field`` (or the field's own code) naming the field."""
        missing = _MISSING.match(text)
        if missing:
            name = missing.group(1)
            message = f"{name} is required"
        else:
            at = _AT.search(text)
            name = at.group(1) if at else "type"
            reason = _AT.sub("", text)
            message = f"{name}: {reason[:1].lower()}{reason[1:]}"
        top = re.split(r"[.\[]", name, maxsplit=1)[0]
        return ProtocolError(self.field_codes.get(top, Code.BAD_FIELD), message, name)


class Rejected(Exception):
    """A frame refused before its handler ran: the error, the request id, the metrics label."""

    def __init__(self, error: CodedError, request_id: int | None, kind: str | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.request_id = request_id
        self.kind = kind  # the command type, "other" (unknown), None (not a message)


class Registry:
    """The commands (and events) a node speaks: filled by every part's ``setup(app)``."""

    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}
        self.events: dict[str, type[Event]] = {}
        self.groups: dict[str, list[str]] = {}  # docs section → command and event types
        self._by_schema: dict[type[Message], Command] = {}
        self._json: msgspec.json.Decoder[Any] | None = None
        self._msgpack: msgspec.msgpack.Decoder[Any] | None = None

    def add(
        self, section: str, commands: Iterable[Command] = (), events: Iterable[type[Event]] = ()
    ) -> None:
        """Register ``commands`` and ``events`` under the docs heading ``section``."""
        names = self.groups.setdefault(section, [])
        for command in commands:
            if command.type in self.commands:
                raise ValueError(f"WebSocket command {command.type!r} is registered twice")
            self.commands[command.type] = command
            self._by_schema[command.schema] = command
            names.append(command.type)
        for event in events:
            kind = type_of(event)
            if kind in self.events:
                raise ValueError(f"event {kind!r} is registered twice")
            self.events[kind] = event
            names.append(kind)
        self._json = self._msgpack = None  # rebuilt with the new union on the next frame

    def _decoders(self) -> tuple[msgspec.json.Decoder[Any], msgspec.msgpack.Decoder[Any]]:
        schemas = tuple(self._by_schema)
        union: Any = Union[schemas] if schemas else Message  # noqa: UP007 (a runtime tuple)
        self._json = msgspec.json.Decoder(union)
        self._msgpack = msgspec.msgpack.Decoder(union)
        return self._json, self._msgpack

    def parse(self, data: str | bytes, role: str) -> tuple[Command, Message, int | None]:
        """The command, its checked body and the request id of one client frame, or :class:`Rejected`."""
        json_decoder, msgpack_decoder = (
            (self._json, self._msgpack) if self._msgpack is not None else self._decoders()
        )
        try:
            if isinstance(data, str):
                if "\\u" in data:  # may decode to a lone surrogate: checked on the slow path
                    return self._parse_slowly(data, role)
                body = json_decoder.decode(data)  # type: ignore[union-attr]
            else:
                body = msgpack_decoder.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return self._parse_slowly(data, role)
        command = self._by_schema[type(body)]
        rid = request_id(body.id)
        if role not in command.roles:
            try:
                command.allow(role)
            except ApiError as exc:
                raise Rejected(exc, rid, command.type) from None
        return command, body, rid

    def _parse_slowly(self, data: str | bytes, role: str) -> tuple[Command, Message, int | None]:
        try:
            message = decode(data)
        except ProtocolError as exc:
            raise Rejected(exc, None, None) from None
        rid = request_id(message.get("id"))
        kind: str | None = None
        try:
            check_text(message, data)
            command = self.commands.get(message["type"])
            kind = message["type"] if command is not None else "other"
            if command is None:
                raise ProtocolError(Code.UNKNOWN_TYPE, f"unknown message type {message['type']!r}")
            command.allow(role)
            return command, command.convert(message), rid
        except CodedError as exc:
            raise Rejected(exc, rid, kind) from None


def register(
    app: web.Application,
    section: str,
    commands: Iterable[Command] = (),
    events: Iterable[type[Event]] = (),
) -> None:
    """Add a part's commands and events to the app's registry (call from ``setup(app)``)."""
    from ..appkeys import COMMANDS

    app[COMMANDS].add(section, commands, events)
