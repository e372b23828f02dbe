"""A SIP room system (baresip) and a browser (Chromium) in one meeting: they hear each other, the
room system shows in the page's participant list, and the host's mute from the page silences it on
the media; phone keys reach the room."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.support import scenarios as sc
from tests.support.baresip import Baresip, recording_so_far, tone_level
from tests.support.browser import assert_silent_but_alive, hears, in_meeting, join, last_heard
from tests.support.gateway import (
    TEST_CONFIG,
    RunningGateway,
    logged,
    start_gateway,
    stop_and_check,
    wait_until,
)
from tests.support.prompts import MATCH, correlate, find_prompt, heard, load_prompt, wait_heard
from tests.support.sipp import Sipp

pytestmark = pytest.mark.browser


def sip_participants(gateway: RunningGateway, room: str) -> list[dict[str, object]]:
    return [p for p in gateway.api("GET", f"/api/rooms/{room}/participants").json() if p["kind"] != "browser"]


def tone_seconds(samples: np.ndarray, rate: int, tone: float, absent: float | None = None) -> int:
    """How many one-second windows (a quarter second apart) carry `tone` clearly (30 dB above the
    rest of the spectrum) and, if given, not `absent` (under 10 dB)."""
    windows = [samples[i : i + rate] for i in range(0, samples.size - rate, rate // 4)]
    return sum(1 for w in windows if tone_level(w, rate, tone) > 30 and (absent is None or tone_level(w, rate, absent) < 10))




def test_baresip_and_a_browser_hear_each_other_and_the_host_mutes_the_room_system(
    gateway: RunningGateway, open_participant, tmp_path: Path
) -> None:
    # Anna's tone is 6 kHz: above what G.711 carries, so hearing it proves wideband end to end.
    anna = join(open_participant, gateway, "demo", "Anna", 6000, pin="1234")
    wait_until(lambda: in_meeting(anna), 30, what="Anna in the meeting")

    room_system = Baresip(tmp_path / "baresip", tone_hz=1000, name="Room 123")
    room_system.start(dial=f"sip:demo@127.0.0.1:{gateway.sip_port}")
    try:
        wait_until(room_system.established, 15, what="baresip's call established")
        # The demo room has only a host PIN: a guest presses # at the PIN prompt (keys cut a prompt short).
        room_system.send_keys("#")
        wait_until(lambda: sip_participants(gateway, "demo"), 15, what="baresip in the room")
        (member,) = sip_participants(gateway, "demo")
        assert member["kind"] == "sip_room_system" and member["name"] == "Room 123"
        # Wideband stays wideband: baresip offers G.722 first and gets it.
        assert member["media"]["codec"] == "g722"

        # The page lists the room system with its kind, and the browser hears it.
        wait_until(lambda: anna.get_by_text("Room system (SIP)").count() >= 1, 10, what="room system in the list")
        wait_until(lambda: hears(anna, 1000), 15, what="the browser hears baresip's tone")
        # Its connection is graded from its audio and its RTCP reports on ours (loss, round trip).
        # (baresip reports every 5 s or so, on our sender reports, also every 5 s: under load the
        # first round trip can take three of its reports)
        try:
            graded = wait_until(
                lambda: [p for p in sip_participants(gateway, "demo") if p.get("quality") and p["media"].get("rtt_ms") is not None],
                30,
                what="baresip's connection graded, with a round trip from its reports",
            )
        except AssertionError as exc:  # (what the gateway had of its RTCP)
            raise AssertionError(f"{exc}: {sip_participants(gateway, 'demo')}") from None
        assert graded[0]["quality"] == "good" and graded[0]["media"]["remote_loss"] == 0.0  # type: ignore[index]
        assert 0 <= graded[0]["media"]["rtt_ms"] < 100  # type: ignore[index]
        # baresip records the meeting: wait until it has heard Anna's 6 kHz tone (and not itself) for a while
        wait_until(
            lambda: tone_seconds(*recording_so_far(room_system), 6000, absent=1000) >= 4,
            20,
            interval=0.5,
            what="baresip hearing the browser's 6 kHz tone",
        )

        # The host mutes the room system from the page: within a second the browser no longer hears
        # it, while the meeting audio keeps arriving.
        clicked = anna.evaluate("() => Date.now()")
        anna.get_by_role("button", name="Mute Room 123", exact=True).click()
        wait_until(lambda: sip_participants(gateway, "demo")[0]["host_muted"], 5, what="the room system muted")
        print(f"baresip last heard {(last_heard(anna, 1000) - clicked) / 1000:.3f} s after the click")
        assert_silent_but_alive(anna, 1000, 2.0, since=clicked + 1000, what="baresip a second after the host muted it")
        view = gateway.api("GET", "/api/rooms/demo/participants").json()
        muted = next(p for p in view if p["kind"] == "sip_room_system")
        assert muted["host_muted"] and muted["media"]["audio_frames_dropped_muted"] > 20
        assert muted["media"]["rtp_packets_in"] > 200 and muted["media"]["codec"] == "g722"
        anna.screenshot(path=str(tmp_path / "meeting-with-room-system.png"))
    finally:
        room_system.stop()

    # What baresip heard: between the prompts (welcome and PIN before, "the host muted you" after),
    # the browser's 6 kHz tone, clearly (wideband kept wideband: G.722, 16 kHz), and not itself.
    samples, rate = room_system.recording()
    assert rate == 16000
    clean = tone_seconds(samples, rate, 6000, absent=1000)
    assert clean >= 4, "baresip did not hear the browser's 6 kHz tone clearly for a second (or heard itself)"
    wait_until(lambda: not sip_participants(gateway, "demo"), 10, what="baresip gone from the room after hanging up")


def test_phone_keys_mute_and_raise_the_hand_and_a_forbidden_unmute_stays_muted(
    gateway: RunningGateway, open_participant, tmp_path: Path
) -> None:
    anna = join(open_participant, gateway, "demo", "Anna", 440, pin="1234")
    wait_until(lambda: in_meeting(anna), 30, what="Anna in the meeting")
    phone = Baresip(tmp_path / "baresip", tone_hz=1000, name="Citizen", codecs=("g711",))
    phone.start(dial=f"sip:4711@127.0.0.1:{gateway.sip_port}")  # the room's number
    try:
        wait_until(phone.established, 15, what="call established")
        phone.send_keys("#")
        wait_until(lambda: sip_participants(gateway, "demo"), 15, what="the phone in the room")
        wait_until(lambda: hears(anna, 1000), 15, what="the browser hears the phone")

        def state() -> dict[str, object]:
            (member,) = sip_participants(gateway, "demo")
            return {k: member[k] for k in ("muted", "self_muted", "host_muted", "self_unmute_forbidden")}

        phone.send_keys("*6")  # self-mute ...
        wait_until(lambda: state()["self_muted"], 5, what="*6 mutes")
        muted_at = anna.evaluate("() => Date.now()")  # (what was under way before that plays out in 0.7 s)
        assert_silent_but_alive(anna, 1000, 1.5, since=muted_at + 700, what="the phone after *6")
        phone.send_keys("*6")  # ... and back
        wait_until(lambda: not state()["muted"], 5, what="*6 again unmutes")
        wait_until(lambda: hears(anna, 1000), 10, what="the browser hears the phone after *6 *6")
        phone.send_keys("*1")  # raise the hand
        wait_until(lambda: sip_participants(gateway, "demo")[0]["hand_raised"], 5, what="*1 raises the hand")
        wait_until(lambda: anna.get_by_text("Citizen").count() >= 1, 5, what="the phone listed on the page")

        # The host mutes all guests and forbids unmuting: *6 no longer helps.
        anna.get_by_role("checkbox", name="and do not allow them to unmute themselves").check()
        anna.get_by_role("button", name="Mute all guests").click()
        forbidden = {"muted": True, "self_muted": False, "host_muted": True, "self_unmute_forbidden": True}
        wait_until(lambda: state() == forbidden, 5, what="muted by the host, unmuting forbidden")
        wait_heard(phone, "host_muted_you")  # the host's mute told to the phone (whole: a key would cut it short)
        before_key = recording_so_far(phone)[0].size
        phone.send_keys("*6")

        def answered_after_the_key() -> bool:
            samples, rate = recording_so_far(phone)
            return heard(samples[before_key:], rate, "host_muted_you")

        # The refused *6 is answered (the host muted you, heard again after the key): the gateway took it.
        wait_until(answered_after_the_key, 15, interval=0.5, what="'host_muted_you' heard again after the forbidden *6")
        assert state() == forbidden, f"a forbidden self-unmute by phone key changed the mute: {state()}"
        assert_silent_but_alive(anna, 1000, 1.5, what="the phone after a forbidden *6")
        forbidden_at = anna.evaluate("() => Date.now()")

        # Allowed again: *6 brings the phone back.
        anna.get_by_role("button", name="Allow Citizen to unmute").click()
        wait_until(lambda: not state()["self_unmute_forbidden"], 5, what="unmuting allowed")
        phone.send_keys("*6")
        wait_until(lambda: not state()["muted"], 5, what="*6 unmutes")
        wait_until(lambda: hears(anna, 1000), 10, what="the browser hears the phone again")
        assert last_heard(anna, 1000) > forbidden_at
    finally:
        phone.stop()
    # The phone was told that the host muted it.
    samples, rate = phone.recording()
    told = find_prompt(samples, rate, "host_muted_you")
    assert told.score >= MATCH, f"the phone never heard that the host muted it ({told})"


def test_a_caller_waits_in_the_lobby_with_music_until_the_host_admits_then_is_removed(
    gateway: RunningGateway, open_participant, tmp_path: Path
) -> None:
    # The caller arrives first: nobody is in the meeting yet.
    caller = Baresip(tmp_path / "baresip", tone_hz=1000, name="Front desk", codecs=("g711",))
    caller.start(dial=f"sip:lobby@127.0.0.1:{gateway.sip_port}")
    try:
        wait_until(caller.established, 15, what="call established")
        caller.send_keys("#")  # a guest (the room has only a host PIN)
        wait_until(
            lambda: gateway.api("GET", "/api/rooms/lobby").json()["live"]["lobby_waiting"] == 1, 10, what="the caller in the lobby"
        )
        # Deliberate: the caller listens to the waiting prompt (about 4 s), then to hold music.
        time.sleep(6.0)

        anna = join(open_participant, gateway, "lobby", "Anna", 440, pin="1234")
        wait_until(lambda: in_meeting(anna), 30, what="Anna in the meeting")
        assert anna.get_by_text("Phone", exact=False).count() + anna.get_by_text("Room system", exact=False).count() >= 1
        anna.get_by_role("button", name="Admit Front desk").click()
        wait_until(lambda: sip_participants(gateway, "lobby"), 10, what="the caller admitted")
        wait_until(lambda: hears(anna, 1000), 15, what="the browser hears the admitted caller")

        anna.get_by_role("button", name="Remove Front desk from the meeting").click()
        anna.get_by_role("dialog").get_by_role("button", name="Remove", exact=True).click()
        wait_until(lambda: not sip_participants(gateway, "lobby"), 5, what="the caller removed")
        wait_until(lambda: "session closed" in caller.log() or "Call terminated" in caller.log(), 15, what="BYE at baresip")
        assert logged(gateway, "ending call", reason="Removed by the host")
    finally:
        caller.stop()
    # While waiting the caller heard the waiting prompt, and after it the hold music the gateway
    # ships (its opening seconds, found by cross-correlation), not the prompt alone and not silence.
    samples, rate = caller.recording()
    prompt = find_prompt(samples, rate, "waiting_for_host")
    assert prompt.score >= MATCH, f"the caller did not hear the waiting prompt ({prompt})"
    prompt_end = int(prompt.offset_s * rate) + load_prompt("waiting_for_host", rate).size
    after_prompt = samples[prompt_end : prompt_end + 6 * rate]
    assert after_prompt.size >= 3 * rate, f"the recording ends {after_prompt.size / rate:.1f} s after the waiting prompt"
    opening = load_prompt("hold_music", rate, language="")[: 2 * rate]  # (hold music is not per language)
    music = correlate(opening, after_prompt)
    assert music.max() >= MATCH, f"no hold music after the waiting prompt (best match {music.max():.2f})"
    assert (after_prompt[: 3 * rate] ** 2).mean() ** 0.5 > 200, "silence after the waiting prompt"


def test_an_opus_room_system_with_srtp_is_heard_by_the_browser_and_hears_it(
    gateway: RunningGateway, open_participant, tmp_path: Path
) -> None:
    """Room systems offer Opus first (beside G.722) and encrypt with SDES-SRTP (RFC 4568); DTMF
    comes as telephone-event/8000 beside Opus/48000."""
    anna = join(open_participant, gateway, "demo", "Anna", 440, pin="1234")
    wait_until(lambda: in_meeting(anna), 30, what="Anna in the meeting")
    system = Baresip(
        tmp_path / "baresip", tone_hz=1300, name="Board room", codecs=("opus", "g722"),
        extra_config="module srtp.so", account_params=";mediaenc=srtp-mand",
    )
    system.start(dial=f"sip:demo@127.0.0.1:{gateway.sip_port}")
    try:
        wait_until(system.established, 15, what="call established")
        system.send_keys("#")
        (member,) = wait_until(lambda: sip_participants(gateway, "demo"), 15, what="the room system in the room")  # type: ignore[misc]
        assert member["media"]["codec"] == "opus", member["media"]
        # (that SDES-SRTP was agreed the gateway says only in its log)
        assert logged(gateway, "media agreed", codec="opus", srtp=True)
        wait_until(lambda: hears(anna, 1300), 15, what="the browser hears the room system")
        wait_until(
            lambda: tone_seconds(*recording_so_far(system), 440) >= 4, 20, interval=0.5, what="the room system hearing the browser"
        )
    finally:
        system.stop()
    samples, rate = system.recording()
    assert rate == 48000
    assert tone_seconds(samples, rate, 440) >= 4, "the room system did not hear the browser"


CITIZEN = "<sip:01701234567@carrier.example>"
# A citizen calls over the trunk, presses # (a guest) and waits (in the waiting room, then in the
# meeting) until the host removes it.
CITIZEN_CALL = sc.scenario(
    "a citizen calls the citizen office over the trunk and waits",
    sc.invite(CITIZEN),
    sc.answer(200),
    sc.ack(CITIZEN),
    sc.pause(500),
    sc.key("#", 2, caller=CITIZEN),
    sc.their_bye(60_000),
)


def test_hosts_see_a_callers_whole_number_in_the_waiting_room_and_the_list_and_guests_do_not(
    open_participant, tmp_path: Path
) -> None:
    """A citizen calls the citizen office over the trunk (its number, 0170…, read as +49170…): the
    host sees the whole number with the waiting entry and, once admitted, in the participant list;
    a guest in the same meeting sees only the masked one the room shows."""
    # (a PBX trunk that does not register: its calls come from 127.0.0.1, numbers read in E.164)
    trunk = '{id: pbx, registrar: "127.0.0.1:9", registers: false, user: gateway}'
    config = TEST_CONFIG.replace("sip: {host: 127.0.0.1, port: 0,", f"sip: {{host: 127.0.0.1, port: 0, trunks: [{trunk}],")
    gateway = start_gateway(tmp_path, config)
    scenario = tmp_path / "citizen.xml"
    scenario.write_text(CITIZEN_CALL)
    try:
        anna = join(open_participant, gateway, "lobby", "Anna", 440, pin="1234")
        wait_until(lambda: in_meeting(anna), 30, what="Anna, the host, in the meeting")
        citizen = Sipp(gateway, tmp_path / "sipp", str(scenario), "lobby")
        wait_until(lambda: gateway.api("GET", "/api/rooms/lobby").json()["live"]["lobby_waiting"] == 1, 15, what="the caller waiting")
        entry = anna.locator("#lobby-list li", has_text="+49170•••••67")
        expect(entry).to_contain_text("+491701234567", timeout=15_000)
        anna.get_by_role("button", name="Admit +49170•••••67").click()
        wait_until(lambda: sip_participants(gateway, "lobby"), 10, what="the caller admitted")
        ben = join(open_participant, gateway, "lobby", "Ben", 880)
        anna.get_by_role("button", name="Admit Ben").click()
        wait_until(lambda: in_meeting(ben), 30, what="Ben, a guest, in the meeting")
        caller_row = anna.locator("#participant-list li", has_text="+49170•••••67")
        expect(caller_row).to_contain_text("+491701234567")
        expect(ben.locator("#participant-list li", has_text="+49170•••••67")).to_be_visible()
        assert "+491701234567" not in ben.content()
        anna.get_by_role("button", name="Remove +49170•••••67 from the meeting").click()
        anna.get_by_role("dialog").get_by_role("button", name="Remove", exact=True).click()
        result = citizen.wait(30)
        assert result.returncode == 0, result.describe()
    finally:
        stop_and_check(gateway)
