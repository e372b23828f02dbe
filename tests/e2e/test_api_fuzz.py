"""Property-based fuzzing of the admin API from its own OpenAPI schema (schemathesis on Hypothesis),
against a real gateway process with an admin token: valid and invalid requests for every operation.

No answer may be a 5xx, and every 4xx must be our JSON error body {"error": code, "reason": text}.
SIP is off in the fuzzed gateway: generated room systems could otherwise be dialled at whatever
address the generator made up. Bounded (examples per operation) to about a minute on a loaded
2-core machine; set API_FUZZ_EXAMPLES for a longer run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.generation import GenerationMode

from tests.support.gateway import ADMIN_TOKEN, RunningGateway, start_gateway, stop_and_check

EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "25"))

FUZZ_CONFIG = f"""
server: {{host: 127.0.0.1, port: 0}}
admin: {{token: {ADMIN_TOKEN}}}
logging: {{level: info, format: json}}
sip: {{enabled: false}}
storage: {{path: STORAGE}}
rooms:
  - {{id: demo, name: Demo, host_pin: "1234", aliases: ["4711"]}}
  - {{id: lobby, name: Citizen office, host_pin: "1234", lobby: true}}
"""

# Deliberate 5xx answers: dial-out needs SIP, which this gateway runs without.
ALLOWED_5XX = {("POST", "/api/rooms/{room}/dial"): {503: "sip_disabled"}}


# Made before the passes that name them (they may be changed or deleted by what is generated).
KNOWN = {"room": "fuzz-room", "system": "fuzz-sys", "rule": "fuzz-rule"}


def _make_known(gateway: RunningGateway, auth: dict[str, str]) -> None:
    base = gateway.base_url + "/api"
    httpx.post(base + "/rooms", json={"id": KNOWN["room"], "host_pin": "2468"}, headers=auth, timeout=10)
    httpx.post(base + "/systems", json={"id": KNOWN["system"], "name": "Fuzz", "uri": "sip:fuzz@127.0.0.1"}, headers=auth, timeout=10)
    httpx.post(base + "/rules", json={"id": KNOWN["rule"], "pattern": "f(.)", "room": "fuzz-\\1"}, headers=auth, timeout=10)


@pytest.fixture(scope="module")
def fuzzed_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    tmp_path = tmp_path_factory.mktemp("fuzz")
    running = start_gateway(tmp_path, FUZZ_CONFIG.replace("STORAGE", str(tmp_path / "gw.sqlite3")))
    yield running
    stop_and_check(running)


def _problem(method: str, path: str, response: Any) -> str | None:
    """What is wrong with an answer, or None."""
    status = response.status_code
    if status >= 500:
        allowed = ALLOWED_5XX.get((method, path), {})
        body = _json(response)
        if allowed.get(status) is None or not body or body.get("error") != allowed[status]:
            return f"{status} answer: {response.text[:300]}"
        return None
    if status == 400 and response.text == "Invalid HTTP request received.":
        # The HTTP server (uvicorn's h11) refused a request it cannot read at all (a header named
        # with spaces, `Content-Length: -Infinity`) before any route saw it: HTTP's answer, not the API's.
        return None
    if 400 <= status < 500:
        body = _json(response)
        if not isinstance(body, dict) or not isinstance(body.get("error"), str) or not isinstance(body.get("reason"), str):
            return f"{status} answer without a JSON error and reason: {response.text[:300]!r}"
        content_type = response.headers.get("content-type") or [""]  # schemathesis: a list per header
        if not str(content_type[0] if isinstance(content_type, list) else content_type).startswith("application/json"):
            return f"{status} answer is not served as JSON: {content_type}"
    return None


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def test_no_generated_request_gets_a_server_error(fuzzed_gateway: RunningGateway) -> None:
    gateway = fuzzed_gateway
    raw = httpx.get(gateway.base_url + "/api/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(raw)
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    failures: list[str] = []
    calls = 0
    started = time.monotonic()

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25, "the schema lost operations"

    def fuzz(operation: Any, mode: GenerationMode, known: dict[str, str] | None = None) -> list[str]:
        seen: list[str] = []

        @given(case=operation.as_strategy(generation_mode=mode, path_parameters=known))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: the run stays bounded
            suppress_health_check=list(HealthCheck),
        )
        def probe(case: Any) -> None:
            nonlocal calls
            response = case.call(base_url=gateway.base_url, headers=auth, timeout=15)
            calls += 1
            problem = _problem(case.method.upper(), operation.path, response)
            if problem is not None and len(seen) < 3:
                seen.append(f"{case.method.upper()} {operation.path} ({mode.value}): {problem}\n    {case.as_curl_command()}")

        try:
            probe()
        except hypothesis.errors.Unsatisfiable:  # the generator gave up on an operation: not the gateway's fault
            pass
        return seen

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += fuzz(operation, mode)
        # Random path parameters rarely name anything: once more with a room, system and rule that
        # exist (made again first, in case a generated DELETE took them), so bodies reach the checks
        # behind the lookup.
        names = [name for name in KNOWN if "{" + name + "}" in operation.path]
        if names:
            _make_known(gateway, auth)
            failures += fuzz(operation, GenerationMode.POSITIVE, {name: KNOWN[name] for name in names})

    # Still serving after it all.
    assert gateway.api("GET", "/api/status").status_code == 200
    print(f"fuzzed {len(operations)} operations with {calls} requests in {time.monotonic() - started:.0f} s")
    assert not failures, "\n".join(failures)


def test_the_schema_documents_every_route(fuzzed_gateway: RunningGateway) -> None:
    raw = httpx.get(fuzzed_gateway.base_url + "/api/openapi.json", timeout=10).json()
    paths = raw["paths"]
    for path in (
        "/api/status",
        "/api/rooms",
        "/api/rooms/{room}",
        "/api/rooms/{room}/host-link",
        "/api/rooms/{room}/participants",
        "/api/rooms/{room}/lobby/{entry}/admit",
        "/api/systems/{system}",
        "/api/rules",
        "/api/route",
        "/api/call-records",
    ):
        assert path in paths, path
    # The bearer token is declared (the docs' "Authorize" button), on every route but none outside /api.
    assert raw["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http", "scheme": "bearer", "description": "an API token from admin.token or admin.tokens"
    }
    assert all(op.get("security") == [{"HTTPBearer": []}] for item in paths.values() for op in item.values())


def test_api_fuzz_config_file_is_valid(tmp_path: Path) -> None:
    from gateway.config import parse_config

    assert parse_config(FUZZ_CONFIG.replace("STORAGE", str(tmp_path / "x.sqlite3"))).sip.enabled is False
