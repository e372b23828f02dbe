"""A host on the phone: the host PIN by DTMF makes a host, *5 mutes all guests, *7 locks the
meeting; a guest calling into the locked meeting hears so and is put out with a Reason header. What
each phone hears is checked in its recording against the shipped prompts."""

from __future__ import annotations

from pathlib import Path

from tests.support.baresip import Baresip, menu_speaking
from tests.support.gateway import RunningGateway, logged, participants, wait_until
from tests.support.prompts import assert_heard, assert_not_heard, wait_heard


def test_host_keys_mute_all_and_lock_and_a_late_guest_is_turned_away(gateway: RunningGateway, tmp_path: Path) -> None:
    guest = Baresip(tmp_path / "guest", tone_hz=1000, name="Guest phone", codecs=("g711",))
    host = Baresip(tmp_path / "host", tone_hz=700, name="Chair", codecs=("g711",))
    late = Baresip(tmp_path / "late", tone_hz=900, name="Late phone", codecs=("g711",))
    try:
        guest.start(dial=f"sip:demo@127.0.0.1:{gateway.sip_port}")
        wait_until(guest.established, 15, what="guest call established")
        wait_until(lambda: menu_speaking(guest), 15, what="the voice menu speaking to the guest")
        guest.send_keys("#")
        wait_until(lambda: len(participants(gateway, "demo")) == 1, 10, what="the guest in the room")

        host.start(dial=f"sip:demo@127.0.0.1:{gateway.sip_port}")
        wait_until(host.established, 15, what="host call established")
        wait_until(lambda: menu_speaking(host), 15, what="the voice menu speaking to the host")
        host.send_keys("1234#")
        wait_until(lambda: any(p["role"] == "host" for p in participants(gateway, "demo")), 10, what="a host by phone")
        wait_heard(host, "joined")

        host.send_keys("*5")
        wait_until(
            lambda: all(p["host_muted"] for p in participants(gateway, "demo") if p["role"] == "guest"),
            5,
            what="*5 mutes the guests",
        )
        wait_heard(host, "all_guests_muted")
        wait_heard(guest, "host_muted_you")
        guest.send_keys("*7")  # a guest may not lock
        wait_heard(guest, "not_allowed")  # (the key was taken and answered: the room's state is final)
        assert not gateway.api("GET", "/api/rooms/demo").json()["live"]["locked"]
        assert logged(gateway, "phone key", command="lock")
        host.send_keys("*7")
        wait_until(lambda: gateway.api("GET", "/api/rooms/demo").json()["live"]["locked"], 5, what="*7 locks")
        wait_heard(host, "meeting_locked")

        late.start(dial=f"sip:4711@127.0.0.1:{gateway.sip_port}")
        wait_until(late.established, 15, what="late call answered (the room has a host PIN)")
        wait_until(lambda: menu_speaking(late), 15, what="the voice menu speaking to the late guest")
        late.send_keys("#")
        wait_until(lambda: "session closed" in late.log() or "terminated" in late.log(), 20, what="BYE at the late guest")
        assert len(participants(gateway, "demo")) == 2
        assert logged(gateway, "ending call", reason="Meeting locked"), "the late guest was not turned away as locked out"

        host.send_keys("*5")  # again: the guests are unmuted
        wait_until(
            lambda: not any(p["host_muted"] for p in participants(gateway, "demo")),
            5,
            what="a second *5 unmutes the guests",
        )
        wait_heard(host, "all_guests_unmuted")
        wait_heard(guest, "you_are_unmuted")
    finally:
        for phone in (guest, host, late):
            phone.stop()
    # What each heard (the shipped prompts found in what baresip recorded), in order.
    assert_heard(*guest.recording(), "joined", "host_muted_you", "not_allowed", "you_are_unmuted")
    assert_heard(*host.recording(), "joined", "all_guests_muted", "meeting_locked", "all_guests_unmuted")
    assert_not_heard(*host.recording(), "not_allowed")
    assert_heard(*late.recording(), "meeting_locked")
    assert_not_heard(*late.recording(), "joined")
