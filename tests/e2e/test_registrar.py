"""Room systems registering with the gateway: a directory entry with a password, baresip registering
with it (digest), shown as registered on the admin page, then invited into a meeting from the page,
which calls it where it registered from. A wrong password and an unknown device are refused, and no
password reaches the log or the API."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.test_admin_page import SHOTS, SLOW, open_admin, sign_in
from tests.support import scenarios as sc
from tests.support.baresip import Baresip
from tests.support.browser import in_meeting, join
from tests.support.gateway import (
    ADMIN_TOKEN,
    TEST_CONFIG,
    RunningGateway,
    metric,
    participant,
    start_gateway,
    stop_and_check,
    wait_until,
)
from tests.support.sipp import Sipp

pytestmark = pytest.mark.browser

PASSWORD = "Ratssaal-Kennwort-42"
ANNEX_PASSWORD = "Anbau-Kennwort-17"


def registration(gateway: RunningGateway, system: str) -> dict[str, object]:
    states = {s["system"]: s for s in gateway.api("GET", "/api/registrations").json()}
    return states[system]


def test_a_room_system_registers_with_its_password_and_is_invited_from_the_page(
    gateway: RunningGateway, open_participant, tmp_path: Path
) -> None:
    for entry in (
        {"id": "boardroom", "name": "Board room", "uri": "sip:boardroom@127.0.0.1", "password": PASSWORD},
        {"id": "annex", "name": "Annex", "uri": "sip:annex@127.0.0.1", "password": ANNEX_PASSWORD},
    ):
        created = gateway.api("POST", "/api/systems", json=entry)
        assert created.status_code == 201, created.text
        assert created.json()["password"] == "**********"  # set, never said
    assert registration(gateway, "boardroom") == {"system": "boardroom", "registered": False}

    registrar = f"127.0.0.1:{gateway.sip_port}"
    board = Baresip(tmp_path / "board", tone_hz=1000, name="Board room", register=(f"sip:boardroom@{registrar}", PASSWORD))
    wrong = Baresip(tmp_path / "wrong", tone_hz=500, name="Annex", register=(f"sip:annex@{registrar}", "not-the-password"))
    stranger = Baresip(tmp_path / "stranger", tone_hz=500, name="Stranger", register=(f"sip:stranger@{registrar}", "guess"))
    devices = (board, wrong, stranger)
    try:
        for device in devices:
            device.start()
        wait_until(lambda: registration(gateway, "boardroom")["registered"], 20, what="the board room registered")
        state = registration(gateway, "boardroom")
        assert state["address"] == f"127.0.0.1:{board.sip_port}" and "baresip" in str(state["user_agent"]).lower()
        # the wrong password and the unknown device: refused (each challenged, then 403)
        wait_until(lambda: metric(gateway, "gateway_sip_registrations_total", outcome="refused") >= 2, 20, what="two refusals")
        assert registration(gateway, "annex")["registered"] is False

        # A browser in the demo meeting; an administrator invites the board room from the admin page.
        anna = join(open_participant, gateway, "demo", "Anna", 440, pin="1234")
        wait_until(lambda: in_meeting(anna), 30, what="Anna in the meeting")
        page = open_admin(open_participant, gateway)
        sign_in(page, ADMIN_TOKEN)
        page.get_by_role("link", name="Room systems").click()
        expect(page.get_by_role("row", name="Board room boardroom")).to_contain_text(
            f"Registered from 127.0.0.1:{board.sip_port}", timeout=SLOW
        )
        expect(page.get_by_role("row", name="Annex annex")).to_contain_text("Not registered")
        page.screenshot(path=str(SHOTS / "admin-registrations.png"))
        page.get_by_role("link", name="Live meetings").click()
        card = page.locator("article.live-room", has=page.get_by_role("heading", name="Demo demo"))
        card.get_by_role("button", name="Invite …: Demo").click()
        dialog = page.get_by_role("dialog", name="Invite into “Demo”")
        dialog.get_by_label("Room system from the directory").select_option("boardroom")
        dialog.get_by_role("button", name="Call room system").click()
        wait_until(board.established, 20, what="the registered board room answered the gateway's call")
        found = wait_until(lambda: participant(gateway, "demo", "Board room"), 15, what="the board room in demo")
        assert isinstance(found, dict) and found["kind"] == "sip_room_system"
    finally:
        for device in devices:
            device.stop()
    log = gateway.log_path.read_text()
    assert PASSWORD not in log and ANNEX_PASSWORD not in log and "not-the-password" not in log
    assert PASSWORD not in gateway.api("GET", "/api/systems").text


def test_a_room_system_that_is_not_registered_is_not_called_and_its_password_is_kept_until_removed(
    gateway: RunningGateway,
) -> None:
    entry = {"id": "away", "name": "Away", "uri": "sip:away@127.0.0.1", "password": "x-Passwort-1"}
    assert gateway.api("POST", "/api/systems", json=entry).status_code == 201
    refused = gateway.api("POST", "/api/rooms/demo/dial", json={"system": "away"})
    assert refused.status_code == 409 and refused.json()["error"] == "not_registered"
    # An edit that sends no password, or the mask the API shows, keeps it; "" removes it.
    for body in ({"name": "Away 2", "uri": entry["uri"]}, {"name": "Away 3", "uri": entry["uri"], "password": "**********"}):
        kept = gateway.api("PUT", "/api/systems/away", json=body)
        assert kept.status_code == 200 and kept.json()["password"] == "**********", kept.text
        assert registration(gateway, "away") == {"system": "away", "registered": False}
    removed = gateway.api("PUT", "/api/systems/away", json={"name": "Away", "uri": entry["uri"], "password": ""})
    assert removed.status_code == 200 and removed.json()["password"] is None
    assert "away" not in {s["system"] for s in gateway.api("GET", "/api/registrations").json()}




@pytest.mark.parametrize(
    ("caller", "sip_settings"),
    [
        # the From names the board room, whose entry says challenge_calls: a forged From gets a challenge
        ('"Board room" <sip:boardroom@127.0.0.1>', ""),
        # the gateway takes calls only from devices with credentials (and trunks)
        ('"Anyone" <sip:someone@198.51.100.9>', " challenge_untrusted: true,"),
    ],
    ids=["per-entry", "untrusted-sources"],
)
def test_challenged_calls_need_the_room_systems_password(caller: str, sip_settings: str, tmp_path: Path) -> None:
    """A caller without the password gets 401 (sipp, which cannot answer it); the board room itself,
    registered with its password, answers the challenge of its call (baresip: the INVITE again with
    Authorization) and joins its room as the directory's room system."""
    config = TEST_CONFIG.replace("sip: {host: 127.0.0.1, port: 0,", "sip: {host: 127.0.0.1, port: 0," + sip_settings)
    gateway = start_gateway(tmp_path, config)
    board: Baresip | None = None
    try:
        entry = {
            "id": "boardroom", "name": "Board room", "uri": "sip:boardroom@127.0.0.1", "password": PASSWORD,
            "challenge_calls": not sip_settings, "default_room": "demo", "trusted": True,
        }  # fmt: skip
        assert gateway.api("POST", "/api/systems", json=entry).status_code == 201
        scenario = tmp_path / "unauthenticated.xml"
        challenge = sc.check("challenge", "Digest realm=", "WWW-Authenticate")
        steps = (sc.invite(caller), sc.answer(401, challenge), sc.ack(caller))
        scenario.write_text(sc.scenario("a caller without credentials", *steps, checked=["challenge"]))
        stranger = Sipp(gateway, tmp_path / "sipp", str(scenario), "demo")
        result = stranger.wait(30)
        assert result.returncode == 0, result.describe()
        assert participant(gateway, "demo", "Board room") is None and participant(gateway, "demo", "Anyone") is None

        registrar = f"127.0.0.1:{gateway.sip_port}"
        board = Baresip(tmp_path / "board", tone_hz=1000, name="Board room", register=(f"sip:boardroom@{registrar}", PASSWORD))
        board.start(dial=f"sip:demo@{registrar}")
        found = wait_until(lambda: participant(gateway, "demo", "Board room"), 20, what="the board room in demo")
        assert isinstance(found, dict) and found["kind"] == "sip_room_system"
        assert metric(gateway, "gateway_sip_registrations_total", outcome="challenged") >= 2  # (its REGISTER and its INVITE)
    finally:
        if board is not None:
            board.stop()
        stop_and_check(gateway)
    assert PASSWORD not in gateway.log_path.read_text()
