"""H.323 room systems call into a meeting (gateway/h323), against an H.323 endpoint written in the
tests from the ITU-T texts (tests/support/h323_peer.py, its own PER codec): H.245 in all three
forms (tunnelled, on a connection the caller listens on, on one the gateway listens on), with and
without fastStart; the PIN typed as H.245 userInputIndication; two room systems hearing each other
through the room's mix; a host's mute silencing one on the media itself; endings as Q.931 causes;
everything the gateway sent on call signalling and on separate H.245 connections read by Wireshark
with no malformed packet; keys as RFC 2833 telephone-events and as H.245 signal indications; and a
port facing the internet that shrugs off garbage, bad PER and connections that never speak."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.support.gateway import (
    TEST_CONFIG,
    RunningGateway,
    gateway_per_module,
    logged,
    participant,
    participants,
    wait_until,
)
from tests.support.h323_peer import H323Peer, assert_tshark_reads, q931

H245_PORTS = (46100, 46199)  # (the gateway listens for H.245 connections there: a firewall's range)
shared_gateway, demo = gateway_per_module(
    "demo", TEST_CONFIG + f"h323: {{port: 0, setup_timeout_s: 2, h245_port_min: {H245_PORTS[0]}, h245_port_max: {H245_PORTS[1]}}}\n"
)


def joined(gateway: RunningGateway, peer: H323Peer, dialled: str, keys: str, **expected: object) -> dict[str, object]:
    """`peer` calls `dialled`, types `keys` at the voice menu, and is in the room: its participant."""
    peer.call(dialled)
    peer.send_keys(keys)
    found = wait_until(lambda: participant(gateway, "demo", peer.name), 20, what=f"{peer.name} in the room")
    assert isinstance(found, dict)
    for key, value in expected.items():
        assert found[key] == value, (key, found)
    return found


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"fast_start": True, "h245": "tunnel"}, {"fast_start": False, "h245": "listen"}),
        ({"fast_start": False, "h245": "tunnel"}, {"fast_start": True, "h245": "connect"}),
    ],
    ids=["faststart-tunnelled+separate-caller-listens", "tunnelled-channels+faststart-gateway-listens"],
)
def test_two_room_systems_meet_hear_each_other_and_a_host_mute_silences_one(
    demo: RunningGateway, h323_peers: list[H323Peer], tmp_path: Path, first: dict[str, object], second: dict[str, object]
) -> None:
    council = H323Peer(demo.h323_port, name="Ratssaal", tone_hz=440.0, **first)  # type: ignore[arg-type]
    office = H323Peer(demo.h323_port, name="Buergerbuero", tone_hz=1000.0, **second)  # type: ignore[arg-type]
    h323_peers += [council, office]
    host = joined(demo, council, "4711", "1234#", kind="h323_room_system", role="host")
    guest = joined(demo, office, "4711", "#", kind="h323_room_system", role="guest")
    (answered,) = [line for line in logged(demo, "call answered") if line.get("name") == "Ratssaal"][-1:]
    assert answered["fast_start"] is first["fast_start"] and answered["tunnelling"] is (first["h245"] == "tunnel")
    # Each hears the other through the room's mix (not itself).
    wait_until(lambda: council.hears(1000.0) > -6 and office.hears(440.0) > -6, 15, what="the two hear each other")
    # (and not itself, once the prompts saying who joined are over)
    wait_until(lambda: council.hears(440.0) < -40 and office.hears(1000.0) < -40, 10, what="neither hearing itself")
    # The host mutes the office on the media: the council no longer hears its tone.
    assert demo.api("POST", f"/api/rooms/demo/participants/{guest['id']}/mute").status_code == 200
    wait_until(lambda: council.hears(1000.0) < -40, 10, what="the muted office silent")
    assert office.hears(440.0) > -6, "the host's mute silenced the wrong side"
    # H.245 ran as each side says: capabilities and master/slave both ways, and the gateway the master.
    for peer in (council, office):
        if peer.h245_mode == "connect":
            assert peer.gateway_h245 is not None and H245_PORTS[0] <= peer.gateway_h245[1] <= H245_PORTS[1], peer.gateway_h245
        names = [name for _, name, _ in peer.control_in]
        assert {"terminalCapabilitySet", "terminalCapabilitySetAck", "masterSlaveDetermination"} <= set(names), names
        assert peer.master_slave_done.is_set()
    # The host leaves: a normal clearing; the other is still in the room.
    council.hang_up()
    wait_until(lambda: participant(demo, "demo", "Ratssaal") is None, 10, what="the council gone")
    assert participant(demo, "demo", "Buergerbuero") is not None and host["id"] != guest["id"]
    office.hang_up()
    wait_until(lambda: not participants(demo, "demo"), 10, what="the room empty")
    for peer in (council, office):
        assert_tshark_reads(peer, tmp_path)


def test_a_wrong_pin_ends_the_call_with_a_q931_cause(demo: RunningGateway, h323_peers: list[H323Peer]) -> None:
    caller = H323Peer(demo.h323_port, name="Falsch")
    h323_peers.append(caller)
    caller.call("4711")
    before = len(logged(demo, "wrong PIN"))
    for attempt in range(1, 4):  # (sip.pin_attempts: 3)
        time.sleep(1.0)  # deliberate: keys faster than 10 a second are a flood, and dropped
        caller.send_keys("9999#")
        wait_until(
            lambda attempt=attempt: len(logged(demo, "wrong PIN")) == before + attempt or caller.released.is_set(),
            15,
            what=f"wrong PIN {attempt} taken",
        )
    assert caller.released.wait(30), "the gateway did not release the call"
    assert len(logged(demo, "wrong PIN")) >= before + 2
    assert caller.causes == [21]  # call rejected (Q.850), after the prompt
    assert not participants(demo, "demo")
    released = [name for name, _ in caller.received if name == "releaseComplete"]
    assert released == ["releaseComplete"]


def test_the_port_shrugs_off_garbage_bad_per_and_silent_connections(demo: RunningGateway, h323_peers: list[H323Peer]) -> None:
    # Not TPKT at all: the connection is closed.
    with socket.create_connection(("127.0.0.1", demo.h323_port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(1024) == b""
    # A Setup whose user information is not PER: ReleaseComplete with cause 100.
    with socket.create_connection(("127.0.0.1", demo.h323_port), timeout=5) as sock:
        sock.sendall(q931(0x05, 77, False, b"\xff\xfe\xfd\xfc"))
        answer = b""
        while len(answer) < 4 or len(answer) < int.from_bytes(answer[2:4], "big"):
            chunk = sock.recv(1024)
            assert chunk, "closed without an answer"
            answer += chunk
        assert answer[4 + 4] == 0x5A and bytes([0x08, 2, 0x80, 100 | 0x80]) in answer  # ReleaseComplete, cause 100
    # A connection that never brings a Setup is closed after setup_timeout_s (2 s here).
    with socket.create_connection(("127.0.0.1", demo.h323_port), timeout=5) as sock:
        started = time.monotonic()
        assert sock.recv(1024) == b""
        assert time.monotonic() - started < 4.5
    # And a real call still goes through.
    caller = H323Peer(demo.h323_port, name="Danach")
    h323_peers.append(caller)
    joined(demo, caller, "4711", "#", kind="h323_room_system")
    caller.hang_up()
    wait_until(lambda: not participants(demo, "demo"), 10, what="the room empty")


@pytest.mark.parametrize("form", ["rfc2833", "signal"])
def test_the_pin_and_phone_keys_arrive_as_rfc2833_and_as_signal_indications(
    demo: RunningGateway, h323_peers: list[H323Peer], form: str, tmp_path: Path
) -> None:
    """The guest PIN of a room, then the self-mute key (*6): as RFC 2833 telephone-events on the
    audio channel (fastStart), or as one H.245 userInputIndication signal per key (H.245 channels)."""
    name = f"Tasten {form}"
    caller = H323Peer(demo.h323_port, name=name, fast_start=form == "rfc2833")
    h323_peers.append(caller)
    caller.call("secret")  # (the room's guest PIN is 5555)
    caller.send_keys("5555#", form)
    member = wait_until(lambda: participant(demo, "secret", name), 30, what="the caller in the room by its PIN")
    assert isinstance(member, dict) and member["role"] == "guest" and not member["muted"]
    caller.send_keys("*6", form)
    wait_until(lambda: (participant(demo, "secret", name) or {}).get("self_muted") is True, 15, what="self-muted by *6")
    via = "rfc4733" if form == "rfc2833" else "h245"
    assert [line for line in logged(demo, "DTMF received") if line.get("via") == via and line.get("digit") == "6"], via
    caller.hang_up()
    wait_until(lambda: participant(demo, "secret", name) is None, 15, what="the caller gone")
    assert_tshark_reads(caller, tmp_path)
