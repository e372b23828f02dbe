"""Dial-out: the gateway calls an auto-answering room system (baresip) into a room, where a browser
hears it; a destination outside the dial-out rules is refused (toll fraud) and the attempt logged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.baresip import Baresip
from tests.support.browser import hears, in_meeting, join
from tests.support.gateway import TEST_CONFIG, RunningGateway, start_gateway, stop_and_check, wait_until
from tests.support.prompts import assert_heard, assert_not_heard, wait_heard

pytestmark = pytest.mark.browser


@pytest.fixture
def dialling_gateway(tmp_path: Path) -> Iterator[RunningGateway]:
    rule = r"sip:[A-Za-z0-9]+@127\.0\.0\.1:\d+"
    config = TEST_CONFIG.replace(
        "sip: {host: 127.0.0.1, port: 0,", f"sip: {{host: 127.0.0.1, port: 0, dial_out_allow: ['{rule}'],"
    )
    running = start_gateway(tmp_path, config)
    yield running
    stop_and_check(running)


def test_dial_out_to_a_room_system_that_joins_and_is_heard(
    dialling_gateway: RunningGateway, open_participant, tmp_path: Path
) -> None:
    gateway = dialling_gateway
    anna = join(open_participant, gateway, "lobby", "Anna", 440, pin="1234")
    wait_until(lambda: in_meeting(anna), 30, what="Anna in the meeting")
    system = Baresip(tmp_path / "baresip", tone_hz=1000, name="Board room")
    system.start()  # waits for calls, answers them itself
    try:
        placed = gateway.api("POST", "/api/rooms/lobby/dial", json={"uri": f"sip:A@127.0.0.1:{system.sip_port}"})
        assert placed.status_code == 202, placed.text
        wait_until(system.established, 15, what="baresip answered the gateway's call")

        def members() -> list[dict[str, object]]:
            return [p for p in gateway.api("GET", "/api/rooms/lobby/participants").json() if p["kind"] != "browser"]

        # The lobby room: an invited room system goes straight in, not to the waiting room.
        wait_until(members, 10, what="the room system in the room")
        assert members()[0]["kind"] == "sip_room_system"
        wait_until(lambda: hears(anna, 1000), 15, what="the browser hears the dialled room system")

        # Outside the rules: refused before anything is sent, and logged.
        refused = gateway.api("POST", "/api/rooms/lobby/dial", json={"uri": "sip:00491234567@carrier.example"})
        assert refused.status_code == 403 and refused.json()["error"] == "dial_out_refused"
        assert any(
            line.get("event") == "dial-out refused"
            and line.get("code") == "dial_out_refused"
            and line.get("uri") == "sip:00491234567@carrier.example"
            for line in gateway.log_lines()
        )
        bad = gateway.api("POST", "/api/rooms/nowhere/dial", json={"uri": f"sip:A@127.0.0.1:{system.sip_port}"})
        assert bad.status_code == 404

        wait_heard(system, "joined")  # (removing it sooner would cut that prompt short)
        # The host removes it: the gateway hangs up (BYE), baresip's call ends.
        anna.get_by_role("button", name="Remove A from the meeting").click()
        anna.get_by_role("dialog").get_by_role("button", name="Remove", exact=True).click()
        wait_until(lambda: "session closed" in system.log() or "terminated" in system.log(), 15, what="BYE at baresip")
    finally:
        system.stop()
    # What the room system heard: that it is in the meeting, then that the host removed it.
    assert_heard(*system.recording(), "joined", "removed")
    assert_not_heard(*system.recording(), "welcome", "enter_pin", "enter_pin_optional")
