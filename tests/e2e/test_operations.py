"""Operations with real peers: hosts invite room systems from the page, host links, opening hours for
browsers and callers, trusted room systems of the directory, routing rules, graceful shutdown."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.baresip import Baresip
from tests.support.browser import in_meeting, join
from tests.support.gateway import TEST_CONFIG, RunningGateway, start_gateway, stop_and_check, wait_until
from tests.support.prompts import assert_heard

pytestmark = pytest.mark.browser

ALWAYS_CLOSED = {"timezone": "Europe/Berlin", "weekly": {}, "closed": []}


@pytest.fixture
def ops_gateway(tmp_path: Path) -> Iterator[RunningGateway]:
    rule = r"sip:[A-Za-z0-9]+@127\.0\.0\.1:\d+"
    config = TEST_CONFIG.replace(
        "sip: {host: 127.0.0.1, port: 0,", f"sip: {{host: 127.0.0.1, port: 0, dial_out_allow: ['{rule}'],"
    )
    running = start_gateway(tmp_path, config)
    yield running
    stop_and_check(running)


def members(gateway: RunningGateway, room: str, kind: str | None = None) -> list[dict[str, object]]:
    found = gateway.api("GET", f"/api/rooms/{room}/participants").json()
    return [p for p in found if kind is None or p["kind"] == kind]


def test_a_host_invites_a_room_system_from_the_page(ops_gateway: RunningGateway, open_participant, tmp_path: Path) -> None:
    gateway = ops_gateway
    system = Baresip(tmp_path / "baresip", tone_hz=1000, name="Board room")
    system.start()  # answers by itself
    try:
        entry = {"id": "board", "name": "Board room", "uri": f"sip:A@127.0.0.1:{system.sip_port}"}
        assert gateway.api("POST", "/api/systems", json=entry).status_code == 201
        anna = join(open_participant, gateway, "lobby", "Anna", 440, pin="1234")
        wait_until(lambda: in_meeting(anna), 30, what="Anna in the meeting")

        # A destination outside the dial-out rules, typed by the host: refused, the page says why.
        anna.get_by_role("button", name="Invite a room system…").click()
        dialog = anna.get_by_role("dialog", name="Invite a room system")
        dialog.get_by_label("or a SIP address or number").fill("sip:00491234567@carrier.example")
        dialog.get_by_role("button", name="Call").click()
        anna.get_by_text("This destination may not be called").wait_for(timeout=10_000)
        assert not members(gateway, "lobby", "sip_room_system")

        # The room system from the directory, chosen by keyboard.
        anna.get_by_role("button", name="Invite a room system…").click()
        dialog.get_by_label("Room system from the directory").wait_for()
        wait_until(lambda: dialog.get_by_role("option", name="Board room").count() == 1, 10, what="directory listed")
        dialog.get_by_label("Room system from the directory").select_option("board")
        dialog.get_by_role("button", name="Call").focus()
        anna.keyboard.press("Enter")
        wait_until(system.established, 15, what="baresip answered the host's invitation")
        wait_until(lambda: members(gateway, "lobby", "sip_room_system"), 10, what="the room system in the room")
        assert members(gateway, "lobby", "sip_room_system")[0]["name"] == "Board room"
        assert any(
            line.get("event") == "dial-out placed" and str(line.get("requested_by", "")).startswith("host Anna")
            for line in gateway.log_lines()
        )
    finally:
        system.stop()


def test_a_host_link_lets_a_host_in_without_the_pin(ops_gateway: RunningGateway, open_participant) -> None:
    gateway = ops_gateway
    link = gateway.api("POST", "/api/rooms/demo/host-link", json={"valid_hours": 2})
    assert link.status_code == 200, link.text
    page = open_participant(gateway.base_url + link.json()["path"], 440)
    page.get_by_text("You join as a host with this link").wait_for()
    assert not page.get_by_label("PIN (optional)").is_visible()
    assert "host=" not in page.url  # a guest given this address must not become a host
    page.get_by_label("Your name").fill("Chair")
    page.get_by_role("button", name="Join").click()
    wait_until(lambda: in_meeting(page), 30, what="the host in the meeting")
    assert members(gateway, "demo")[0]["role"] == "host"

    # A forged or altered token is refused and explained.
    token = link.json()["path"].split("host=")[1]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    other = open_participant(f"{gateway.base_url}/r/demo?host={forged}&name=Mallory", None)
    other.get_by_text("This host link is no longer valid").wait_for(timeout=20_000)
    assert len(members(gateway, "demo")) == 1
    assert forged not in gateway.log_path.read_text() and token not in gateway.log_path.read_text()


def bye_received(baresip_log: str) -> str:
    """The first BYE request in baresip's SIP trace (its headers), "" before one came."""
    for block in re.split(r"\n\s*\n", baresip_log):
        lines = [line.strip() for line in block.splitlines()]
        start = next((i for i, line in enumerate(lines) if line.startswith("BYE sip:")), None)
        if start is not None:
            return "\n".join(lines[start:])
    return ""


def test_a_closed_office_shows_its_hours_and_callers_hear_it(
    ops_gateway: RunningGateway, open_participant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = ops_gateway
    room = {
        "id": "office",
        "name": "Citizen office",
        "host_pin": "4321",
        "aliases": ["5000"],
        "opening_hours": {**ALWAYS_CLOSED, "weekly": {"mon": ["08:00-08:01"]}, "closed": ["2099-12-24"]},
    }
    assert gateway.api("POST", "/api/rooms", json=room).status_code == 201
    guest = join(open_participant, gateway, "office", "Citizen", None)
    guest.get_by_role("heading", name="This office is closed at the moment").wait_for(timeout=20_000)
    guest.get_by_role("heading", name="Opening hours").wait_for()
    assert "Next opening" in guest.locator("#status-hours").inner_text()
    assert "08:00–08:01" in guest.locator("#status-hours").inner_text()
    guest.screenshot(path=str(tmp_path / "closed.png"))

    # Hosts still enter.
    host = join(open_participant, gateway, "office", "Clerk", 440, pin="4321")
    wait_until(lambda: in_meeting(host), 30, what="the host in the closed office")

    # A caller to the office's number hears that it is closed, then the gateway hangs up with Reason.
    monkeypatch.setenv("BARESIP_TRACE", "1")  # baresip logs the SIP messages: the BYE as it arrived
    phone = Baresip(tmp_path / "phone", tone_hz=800, name="+4930123")
    phone.start(dial=f"sip:5000@127.0.0.1:{gateway.sip_port}")
    try:
        wait_until(phone.established, 15, what="the call answered")
        phone.send_keys("#")  # no PIN: a guest
        wait_until(lambda: bye_received(phone.log()), 30, what="the gateway's BYE after the prompt")
        bye = bye_received(phone.log())
        assert "cause=480" in bye and "Closed" in bye, f"the BYE does not say the office is closed:\n{bye}"
        assert not members(gateway, "office", "sip_room_system"), "the caller got in"
    finally:
        phone.stop()
    samples, rate = phone.recording()
    assert_heard(samples, rate, "closed")  # the shipped "closed" prompt, found in what the caller heard
    assert [p["name"] for p in members(gateway, "office")] == ["Clerk"]


def test_a_trusted_room_system_and_routing_rules(ops_gateway: RunningGateway, tmp_path: Path) -> None:
    gateway = ops_gateway
    # The council chamber's own system: no PIN and no waiting room when it calls its room ("lobby"
    # has a lobby and a host PIN), even when it just dials the gateway.
    council = Baresip(tmp_path / "council", tone_hz=700, name="Council chamber")
    entry = {"id": "council", "name": "Council chamber", "uri": "sip:A@127.0.0.1", "trusted": True, "default_room": "lobby"}
    assert gateway.api("POST", "/api/systems", json=entry).status_code == 201
    council.start(dial=f"sip:gateway@127.0.0.1:{gateway.sip_port}")
    try:
        wait_until(lambda: members(gateway, "lobby", "sip_room_system"), 20, what="the trusted system in its room")
        system = members(gateway, "lobby", "sip_room_system")[0]
        assert system["name"] == "Council chamber" and system["role"] == "guest"
        assert gateway.api("GET", "/api/rooms/lobby/lobby").json() == []
    finally:
        council.stop()

    # Routing: 8<nnn> goes to room-<nnn>; a bad expression is refused with a reason.
    assert gateway.api("POST", "/api/rooms", json={"id": "room-42", "name": "Room 42"}).status_code == 201
    bad = gateway.api("PUT", "/api/rules", json=[{"id": "r1", "pattern": "8(\\d+", "room": "room-\\1"}])
    assert bad.status_code == 422 and "regular expression" in bad.json()["reason"]
    rules = [{"id": "r1", "pattern": "8(\\d{2,3})", "room": "room-\\1"}]
    assert gateway.api("PUT", "/api/rules", json=rules).status_code == 200
    assert gateway.api("GET", "/api/route", params={"called": "842"}).json()["room"] == "room-42"
    phone = Baresip(tmp_path / "phone", tone_hz=900, name="Caller")
    phone.start(dial=f"sip:842@127.0.0.1:{gateway.sip_port}")
    try:
        wait_until(lambda: members(gateway, "room-42"), 20, what="the caller routed into room-42")
    finally:
        phone.stop()


def test_shutdown_tells_everyone_the_meeting_ends(tmp_path: Path, open_participant) -> None:
    database = tmp_path / "gw.sqlite3"
    gateway = start_gateway(tmp_path, TEST_CONFIG.replace("storage: {path: null}", f"storage: {{path: {database}}}"))
    phone = Baresip(tmp_path / "phone", tone_hz=900, name="Caller")
    try:
        anna = join(open_participant, gateway, "demo", "Anna", 440, pin="1234")
        wait_until(lambda: in_meeting(anna), 30, what="Anna in the meeting")
        phone.start(dial=f"sip:demo@127.0.0.1:{gateway.sip_port}")
        wait_until(phone.established, 15, what="the call answered")
        phone.send_keys("#")
        wait_until(lambda: len(members(gateway, "demo")) == 2, 20, what="the caller in the meeting")
        gateway.process.terminate()
        anna.get_by_text("The service is being restarted").wait_for(timeout=20_000)
        wait_until(lambda: "terminated" in phone.log() or "session closed" in phone.log(), 20, what="BYE to the caller")
        gateway.process.wait(20)
        assert gateway.process.returncode == 0
        events = [line.get("event") for line in gateway.log_lines()]
        assert "shutting down: meetings ended" in events and "gateway stopped" in events
        assert any(
            line.get("event") == "ending call" and line.get("reason") == "Gateway shutting down"
            for line in gateway.log_lines()
        ), "the caller heard why and got a BYE with a Reason"
        # Both call records were written before the process ended.
        with sqlite3.connect(database) as db:
            rows = db.execute("SELECT name, kind, end_reason, audio_codec FROM call_records ORDER BY name").fetchall()
        assert rows == [("Anna", "browser", "shutdown", "opus"), ("Caller", "sip_room_system", "shutdown", "g722")]
    finally:
        phone.stop()
        stop_and_check(gateway)
