"""/api/openapi.json: generated from the routes and declarations, and fuzzed by schemathesis.

schemathesis generates requests (valid and invalid) for every operation of the document and
checks each answer: never a 5xx, status, content type and body matching the document. The run
is bounded by ``max-examples`` per operation so the suite stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from server.app import create_app
from server.config import Settings
from server.openapi import document
from tests.conftest import API_KEY, ServerProcess, create_show_http, http_json, start_server

MAX_EXAMPLES = 15  # per operation (42 operations): 20-35 s on the shared 2-core machine


async def test_document_lists_every_api_route(client) -> None:
    resp = await client.get("/api/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"] == "3.1.0" and doc == document(client.app)
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource and route.resource.canonical.startswith("/api/")
        and route.method not in ("HEAD", "OPTIONS")
        and route.resource.canonical != "/api/openapi.json"
    }  # fmt: skip
    listed = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert routes <= listed
    create = doc["paths"]["/api/shows"]["post"]
    assert create["security"] == [{"operator": []}]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["title"]["maxLength"] == 120
    assert doc["paths"]["/whep/{show_id}"]["post"]["requestBody"]["content"]["application/sdp"]
    kinds = doc["paths"]["/{kind}/{show_id}/{session_id}"]["delete"]["parameters"][0]
    assert kinds["schema"]["enum"] == ["whip", "whep"]


async def test_declared_bodies_are_what_the_handlers_check(client, make_show) -> None:
    show_id, host = await make_show()
    url = f"/api/shows/{show_id}/tokens"
    headers = {"Authorization": f"Bearer {host}"}
    for body, field in (
        ({"ttl_s": "60"}, "ttl_s"),
        ({"ttl_s": True}, "ttl_s"),
        ({"ttl_s": 10}, "ttl_s"),
        ({"name": 5}, "name"),
        ({"name": "x" * 41}, "name"),
        ({"role": "admin"}, "role"),
    ):
        resp = await client.post(url, json=body, headers=headers)
        error = (await resp.json())["error"]
        assert resp.status == 400 and error["details"]["field"] == field, (body, error)
    resp = await client.post(
        "/api/shows", json={"id": 5}, headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_show_id"


@pytest.fixture(scope="module")
def api_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, str, str]]:
    server = start_server(tmp_path_factory.mktemp("openapi") / "data", "--payment-latency-ms", "0")
    show_id, host = create_show_http(server.url, "fuzzed")
    status, _ = http_json(
        f"{server.url}/api/shows/{show_id}/products", "POST",
        {"title": "Thing", "price": 100, "stock": 5}, host,
    )  # fmt: skip
    assert status == 201
    yield server, show_id, host
    server.stop()
    assert "Traceback" not in server.log(), server.log()[-4000:]


@schemathesis.serializer("application/sdp")
def _sdp(ctx: schemathesis.SerializationContext, value: object) -> dict[str, bytes]:
    """WHIP/WHEP offers are text; lone surrogates go out as the invalid UTF-8 they make."""
    if isinstance(value, bytes):
        return {"data": value}
    text = value if isinstance(value, str) else json.dumps(value)
    return {"data": text.encode("utf-8", "surrogatepass")}


# The document of an app that is never started (building it needs no Redis); the requests go to
# the live server of ``api_server``, which serves the same document.
schema = schemathesis.openapi.from_dict(
    document(create_app(Settings(api_key=[API_KEY]))),
    config=SchemathesisConfig.from_dict(
        {
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES},
            # Undeclared bodies are documented as "any object": a 400 for one is an answer, not a bug.
            "checks": {"positive_data_acceptance": {"enabled": False}},
        }
    ),
)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=MAX_EXAMPLES)
def test_no_input_breaks_the_api(case: schemathesis.Case, api_server) -> None:
    server, show_id, host = api_server
    if (
        case.path_parameters
        and "show_id" in case.path_parameters
        and case.meta
        and (case.meta.generation.mode.name == "POSITIVE")
    ):
        case.path_parameters["show_id"] = show_id  # reach past the 404 of a random id
    headers = (
        {}
        if case.headers and "Authorization" in case.headers
        else {"Authorization": f"Bearer {host}"}
    )
    excluded = []
    if case.path == "/api/shows/{show_id}/recordings/stop":
        # GET /api/shows/{id}/recordings/{name} also matches ".../stop" (a recording named "stop"),
        # so a 405 here rightly allows GET: the two routes overlap; the check cannot know that.
        excluded += [
            schemathesis.checks.unsupported_method,
            schemathesis.checks.allow_header_conformance,
        ]
    case.call_and_validate(base_url=server.url, headers=headers, excluded_checks=excluded)
