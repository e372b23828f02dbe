"""What the admin API made survives a restart (SQLite, storage.path): rooms, room systems, routing
rules, call records and the host-link key. A configuration file that later defines a room clashing
with one in the database wins: the database room is reported (log, /api/status) and not served
until it is deleted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.api import API_CONFIG, ws_join
from tests.support.gateway import RunningGateway, start_gateway, stop_and_check, wait_until
from tests.support.sip_client import RawCaller

CLASH_EVENT = "room in the database clashes with the configuration file"


def persistent_config(tmp_path: Path, extra_rooms: str = "") -> str:
    config = API_CONFIG.replace("storage: {path: null}", f"storage: {{path: {tmp_path / 'gw.sqlite3'}}}")
    assert config != API_CONFIG
    return config + extra_rooms


def restart(gateway: RunningGateway, tmp_path: Path, config: str) -> RunningGateway:
    stop_and_check(gateway)
    return start_gateway(tmp_path, config)


def stop_expecting_only_clash_errors(gateway: RunningGateway) -> list[dict[str, object]]:
    """Stops a gateway; the clash errors it logged are given back, any other error fails the test."""
    gateway.process.terminate()
    gateway.process.wait(15)
    errors = [line for line in gateway.log_lines() if line.get("level") in ("error", "critical")]
    unexpected = [e for e in errors if not str(e.get("event", "")).startswith(CLASH_EVENT)]
    assert not unexpected, f"gateway logged errors: {unexpected}"
    return errors


@pytest.mark.browser
def test_rooms_systems_rules_and_call_records_survive_a_restart(tmp_path: Path, open_participant) -> None:  # type: ignore[no-untyped-def]
    from tests.support.browser import in_meeting, join

    config = persistent_config(tmp_path)
    gateway = start_gateway(tmp_path, config)
    try:
        room = {"id": "kept", "name": "Kept room", "host_pin": "80706050", "aliases": ["8123"], "lobby": False}
        assert gateway.api("POST", "/api/rooms", json=room).status_code == 201
        system = {"id": "board-sys", "name": "Board", "uri": "sip:board@127.0.0.1:5999", "default_room": "kept", "password": "Brett-Kennwort-9"}
        assert gateway.api("POST", "/api/systems", json=system).status_code == 201
        rules = [
            {"id": "by-number", "pattern": r"7(\d{3})", "room": r"room-\1"},
            {"id": "all-nines", "pattern": r"9+", "room": "kept"},
        ]
        assert gateway.api("PUT", "/api/rules", json=rules).status_code == 200
        assert gateway.api("POST", "/api/rooms", json={"id": "room-123"}).status_code == 201
        link = gateway.api("POST", "/api/rooms/kept/host-link").json()

        # A browser joins and leaves: one call record.
        kim = join(open_participant, gateway, "kept", "Kim", 440)
        wait_until(lambda: in_meeting(kim), 45, what="Kim in the meeting")
        kim.click("#btn-leave")
        wait_until(lambda: gateway.api("GET", "/api/call-records?room=kept").json(), 20, what="Kim's call record")
        (record,) = gateway.api("GET", "/api/call-records?room=kept").json()
        assert record["name"] == "Kim" and record["end_reason"] == "left"

        gateway = restart(gateway, tmp_path, config)

        assert gateway.api("GET", "/api/status").json()["conflicts"] == []
        kept = gateway.api("GET", "/api/rooms/kept").json()
        assert {k: kept[k] for k in room} == room and kept["origin"] == "api"
        assert {r["id"] for r in gateway.api("GET", "/api/rooms").json()} >= {"kept", "room-123", "demo"}
        assert gateway.api("GET", "/api/systems").json() == [
            {**system, "trusted": False, "srtp": None, "password": "**********", "auth_user": None, "challenge_calls": False}
        ]
        # (its password itself was kept, not the mask the API shows: it registers with it)
        device = RawCaller(gateway.sip_port)
        try:
            assert device.register("board", "Brett-Kennwort-9").status == 200
        finally:
            device.close()
        assert gateway.api("GET", "/api/rules").json() == rules  # in their order
        for called, expected in [("8123", "kept"), ("7123", "room-123"), ("999", "kept"), ("7999", None)]:
            assert gateway.api("GET", "/api/route", params={"called": called}).json()["room"] == expected, called
        assert gateway.api("GET", "/api/call-records?room=kept").json() == [record]
        # The host-link key is kept too: a link issued before the restart still works.
        joined = ws_join(gateway, "kept", host=link["path"].split("?host=", 1)[1])
        assert joined["type"] == "joined" and joined["you"]["role"] == "host"

        # The room works: a browser joins it.
        kim.goto(f"{gateway.base_url}/r/kept?name=Kim")
        wait_until(lambda: in_meeting(kim), 45, what="Kim in the meeting after the restart")
        assert [p["name"] for p in gateway.api("GET", "/api/rooms/kept/participants").json()] == ["Kim"]
    finally:
        stop_and_check(gateway)


def test_a_config_room_that_clashes_with_the_database_wins_and_the_clash_is_reported(tmp_path: Path) -> None:
    config = persistent_config(tmp_path)
    gateway = start_gateway(tmp_path, config)
    try:
        for body in (
            {"id": "board", "name": "Board (database)", "host_pin": "31415926", "aliases": ["8001"]},
            {"id": "annex", "name": "Annex (database)", "aliases": ["9001"]},
            {"id": "quiet", "name": "No clash"},
        ):
            assert gateway.api("POST", "/api/rooms", json=body).status_code == 201
    finally:
        stop_and_check(gateway)

    # The file now has a room "board" (same id) and a room "hall" dialled by annex's alias.
    clashing = persistent_config(
        tmp_path,
        '  - {id: board, name: "Board (file)", host_pin: "1234"}\n  - {id: hall, name: Hall, aliases: ["9001"]}\n',
    )
    gateway = start_gateway(tmp_path, clashing)
    try:
        conflicts = {c["room"]: c["problems"] for c in gateway.api("GET", "/api/status").json()["conflicts"]}
        assert set(conflicts) == {"board", "annex"}
        assert any("'board'" in p for p in conflicts["board"]) and any("'9001'" in p and "'hall'" in p for p in conflicts["annex"])

        # The file's version is served, the database's is not.
        board = gateway.api("GET", "/api/rooms/board").json()
        assert board["name"] == "Board (file)" and board["origin"] == "config" and board["host_pin"] == "1234"
        assert gateway.api("GET", "/api/rooms/annex").status_code == 404
        assert gateway.api("GET", "/api/route", params={"called": "9001"}).json()["room"] == "hall"
        assert gateway.api("GET", "/api/route", params={"called": "8001"}).json()["room"] is None
        assert gateway.api("GET", "/api/rooms/quiet").json()["origin"] == "api"
        # It cannot be made again while the clash stands.
        again = gateway.api("POST", "/api/rooms", json={"id": "annex"})
        assert again.status_code == 409 and "delete it first" in again.json()["reason"]

        # Deleting resolves each clash; the file's rooms stay.
        assert gateway.api("DELETE", "/api/rooms/board").status_code == 204
        assert [c["room"] for c in gateway.api("GET", "/api/status").json()["conflicts"]] == ["annex"]
        assert gateway.api("GET", "/api/rooms/board").json()["origin"] == "config"
        assert gateway.api("DELETE", "/api/rooms/board").status_code == 409  # now only the file's is left
        assert gateway.api("DELETE", "/api/rooms/annex").status_code == 204
        assert gateway.api("GET", "/api/status").json()["conflicts"] == []
        assert gateway.api("POST", "/api/rooms", json={"id": "annex", "aliases": ["9002"]}).status_code == 201
    finally:
        errors = stop_expecting_only_clash_errors(gateway)

    # A clear error per clashing room, naming it and what it clashes with.
    logged: dict[Any, Any] = {e["room"]: e for e in errors}
    assert set(logged) == {"board", "annex"}
    assert "DELETE /api/rooms/<id>" in str(logged["board"]["event"])
    assert logged["annex"]["problems"] == conflicts["annex"] and str(tmp_path / "gw.sqlite3") == logged["annex"]["database"]

    # Resolved for good: the next start is clean.
    gateway = start_gateway(tmp_path, clashing)
    try:
        assert gateway.api("GET", "/api/status").json()["conflicts"] == []
        assert gateway.api("GET", "/api/rooms/annex").json()["aliases"] == ["9002"]
        assert gateway.api("GET", "/api/rooms/board").json()["origin"] == "config"
    finally:
        stop_and_check(gateway)
