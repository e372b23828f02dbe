"""Routing rules and room systems through the real API: patterns RE2 cannot run are refused, saved
systems are resolved."""

from __future__ import annotations

from tests.support.gateway import RunningGateway, wait_until


def test_the_api_refuses_rules_re2_cannot_run_and_resolves_systems_it_saves(gateway: RunningGateway) -> None:
    refused = gateway.api("POST", "/api/rules", json={"id": "back", "pattern": r"(\d)\1", "room": "demo"})
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["error"] == "bad_request" and body["reason"].startswith("body.pattern: ")
    assert "RE2" in body["reason"] and "invalid escape sequence" in body["reason"]
    whole = [{"id": "ok", "pattern": "9.*", "room": "demo"}, {"id": "look", "pattern": "(?=8)8", "room": "demo"}]
    refused = gateway.api("PUT", "/api/rules", json=whole)
    assert refused.status_code == 422 and "invalid perl operator" in refused.json()["reason"], refused.text
    assert gateway.api("GET", "/api/rules").json() == []  # nothing of the refused list was taken
    added = gateway.api("POST", "/api/rules", json={"id": "evil", "pattern": "(a+)+$", "room": "demo"})
    assert added.status_code == 201, added.text  # RE2 runs it in linear time: nothing to refuse
    answer = gateway.api("GET", "/api/route", params={"called": "a" * 127 + "!"})
    assert answer.status_code == 200 and answer.json()["room"] is None

    created = gateway.api("POST", "/api/systems", json={"id": "local", "name": "Local", "uri": "sip:local@localhost"})
    assert created.status_code == 201, created.text

    def resolved() -> bool:
        return any(
            line.get("event") == "room system host name resolved" and "127.0.0.1" in str(line.get("addresses"))
            for line in gateway.log_lines()
        )

    wait_until(resolved, 10, what="localhost resolved after POST /api/systems")
