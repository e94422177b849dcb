"""The HTTP API as an OpenAPI 3.1 document, built from the routes and the handlers' own declarations.

Paths, methods and path parameters come from the aiohttp router (what really answers). A handler
says more with :func:`operation`: who may call it, a dataclass declaring its JSON body and the
bodies it answers with. A declared body is also what the handler validates with (:func:`read_body`
checks types and limits, 400 ``bad_field`` naming the field), so the document and the checks
cannot drift apart. An undeclared route is still listed, with a generic body and the common
error shape. Served at ``GET /api/openapi.json``; schemathesis fuzzes it in the test suite.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Awaitable, Callable
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any

from aiohttp import web

from .errors import ApiError, bad_request, read_json

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DOCUMENTED_PREFIXES = ("/api/", "/whip/", "/whep/", "/{kind}/", "/healthz")
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}


def prop(doc: str, default: Any = MISSING, code: str = "", **limits: Any) -> Any:
    """A declared body field: description, optional default, JSON-schema limits and the error
    code a mismatch answers with (default ``bad_field``)."""
    meta = {"doc": doc, **limits}
    if code:
        meta["x-error-code"] = code
    if default is MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Operation:
    summary: str
    # "none", "optional", "token" (a JWT), "operator" (an API key), "token_or_operator"
    auth: str = "token"
    body: type | None = None  # a dataclass declaring the JSON request body
    responses: dict[int, type | None] = field(default_factory=dict)  # status → body dataclass
    body_content: str = "application/json"
    response_content: str = "application/json"


def operation(summary: str, **details: Any) -> Callable[[Handler], Handler]:
    """Declare a handler for the OpenAPI document (the handler itself is unchanged)."""

    def mark(handler: Handler) -> Handler:
        handler.__openapi__ = Operation(summary, **details)  # type: ignore[attr-defined]
        return handler

    return mark


# ----------------------------------------------------------------------------- schemas


def _type_schema(hint: Any) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        inner = _type_schema(options[0])
        return {**inner, "type": [inner["type"], "null"]} if len(options) == 1 else {}
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(hint))}
    if origin is list:
        return {"type": "array", "items": _type_schema(typing.get_args(hint)[0])}
    if origin is dict:
        return {"type": "object"}
    if is_dataclass(hint):
        return schema_of(hint)  # type: ignore[arg-type]
    return {
        str: {"type": "string"},
        int: {"type": "integer"},
        float: {"type": "number"},
        bool: {"type": "boolean"},
    }.get(hint, {})


def schema_of(declared: type) -> dict[str, Any]:
    """JSON Schema of a declaration dataclass (fields without a default are required)."""
    hints = typing.get_type_hints(declared)
    properties: dict[str, Any] = {}
    required = []
    for f in fields(declared):  # type: ignore[arg-type]
        schema = _type_schema(hints[f.name])
        meta = dict(f.metadata)
        if "doc" in meta:
            schema["description"] = meta.pop("doc")
        schema.update(meta)
        properties[f.name] = schema
        if f.default is MISSING and f.default_factory is MISSING:
            required.append(f.name)
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    if declared.__doc__:
        out["description"] = declared.__doc__.strip().splitlines()[0]
    return out


_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "object": (dict,), "array": (list,), "null": (type(None),),
}  # fmt: skip


def _is(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind != "boolean":
        return False  # JSON true is not the integer 1
    return isinstance(value, _PYTHON_TYPES.get(kind, (object,)))


def _check(name: str, value: Any, schema: dict[str, Any]) -> None:
    """Type and limit checks for one top-level field: 400 ``bad_field`` on the first mismatch."""
    try:
        _check_value(name, value, schema)
    except ApiError as exc:
        exc.code = schema.get("x-error-code", exc.code)
        raise


def _check_value(name: str, value: Any, schema: dict[str, Any]) -> None:
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds] if kinds else []
    if kinds and not any(_is(value, kind) for kind in kinds):
        raise bad_request("bad_field", f"{name} must be of type {' or '.join(kinds)}", field=name)
    if "enum" in schema and value not in schema["enum"]:
        raise bad_request("bad_field", f"{name} must be one of {schema['enum']}", field=name)
    if isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            raise bad_request("bad_field", f"{name} has the wrong length", field=name)
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise bad_request("bad_field", f"{name} has the wrong form", field=name)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            raise bad_request("bad_field", f"{name} is out of range", field=name)


async def read_body(request: web.Request, declared: type) -> dict[str, Any]:
    """The JSON body, checked against its declaration (types, limits, required fields)."""
    body = await read_json(request)
    schema = schema_of(declared)
    for name in schema.get("required", []):
        if name not in body:
            raise bad_request("bad_field", f"{name} is required", field=name)
    for name, value in body.items():
        if name in schema["properties"]:
            _check(name, value, schema["properties"][name])
    return body


# ----------------------------------------------------------------------------- the document


def _path_and_params(resource: Any) -> tuple[str, list[dict[str, Any]]]:
    """The OpenAPI path of a route and its path parameters (``{kind:whip|whep}`` → an enum)."""
    info = resource.get_info()
    path = info.get("formatter") or info.get("path") or resource.canonical
    pattern = info.get("pattern")
    params = []
    for name in re.findall(r"\{([^}]+)\}", path):
        schema: dict[str, Any] = {"type": "string"}
        group = (
            re.search(rf"\(\?P<{name}>([A-Za-z0-9_|-]+)\)", pattern.pattern) if pattern else None
        )
        if group:
            schema["enum"] = group.group(1).split("|")
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return path, params


SECURITY = {
    "none": [],
    "optional": [{}, {"token": []}],
    "token": [{"token": []}],
    "operator": [{"operator": []}],
    "token_or_operator": [{"token": []}, {"operator": []}],
}


def _operation_doc(method: str, path: str, declared: Operation | None) -> dict[str, Any]:
    media = path.startswith(("/whip/", "/whep/")) and method == "POST"
    declared = declared or Operation(
        summary=f"{method} {path}",
        auth="optional",
        body_content="application/sdp" if media else "application/json",
        response_content="application/sdp" if media else "application/json",
    )
    doc: dict[str, Any] = {"summary": declared.summary, "security": SECURITY[declared.auth]}
    if method in ("POST", "PATCH", "PUT"):
        if declared.body_content == "application/json":
            body_schema = schema_of(declared.body) if declared.body else {"type": "object"}
        else:
            body_schema = {"type": "string"}
        doc["requestBody"] = {"content": {declared.body_content: {"schema": body_schema}}}
    responses: dict[str, Any] = {}
    for status, body in declared.responses.items():
        schema = schema_of(body) if body else {}
        responses[str(status)] = {
            "description": body.__doc__.strip().splitlines()[0] if body and body.__doc__ else "ok",
            "content": {declared.response_content: {"schema": schema}},
        }
    if not declared.responses:
        responses["2XX"] = {"description": "success", "content": {"*/*": {"schema": {}}}}
    for status in ("4XX", "5XX"):
        responses[status] = {
            "description": "an error with a code (docs/protocol.md)",
            "content": {"application/json": {"schema": ERROR_SCHEMA}},
        }
    doc["responses"] = responses
    return doc


def document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of this app's HTTP API."""
    paths: dict[str, Any] = {}
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource else ""
        if route.method in ("HEAD", "OPTIONS", "*") or not canonical.startswith(
            DOCUMENTED_PREFIXES
        ):
            continue
        if canonical == "/api/openapi.json":
            continue
        path, params = _path_and_params(route.resource)
        handler = route.handler
        declared = getattr(handler, "__openapi__", None)
        op = _operation_doc(route.method, path, declared)
        op["operationId"] = (
            f"{route.method.lower()}_{re.sub(r'[^A-Za-z0-9]+', '_', path).strip('_')}"
        )
        if params:
            op["parameters"] = params
        paths.setdefault(path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "liveshop HTTP API",
            "version": "1",
            "description": "Generated from the server's routes and handler declarations "
            "(server/openapi.py). The WebSocket protocol is in docs/protocol.md.",
        },
        "components": {
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "operator": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an operator API key ID:SECRET (--api-key)",
                },
            }
        },
        "paths": dict(sorted(paths.items())),
    }


async def handle_openapi(request: web.Request) -> web.Response:
    return web.json_response(document(request.app))


def setup(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", handle_openapi)
