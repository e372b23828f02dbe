"""The gateway calls H.323 room systems into a meeting, and recognises its own when they call
(gateway/h323/service.py, url.py), against the tests' own H.323 endpoint answering on a port of its
own (tests/support/h323_peer.py): a room system of the directory (an h323: URL) called through the
API with fastStart, joining straight into the room and hearing a caller there (and heard); an
address a dial-out rule allows called without fastStart (H.245 channels, tunnelled); an address no
rule allows refused, an unreachable one reported; a trusted directory room system calling its own
room from its own address goes straight in (no PIN), while the same alias from another address
is a guest. Every signalling message of the dial-out is read by tshark."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import (
    TEST_CONFIG,
    RunningGateway,
    gateway_per_module,
    logged,
    metric,
    participant,
    wait_until,
)
from tests.support.h323_peer import H323Peer, assert_tshark_reads

CONFIG = TEST_CONFIG + "h323: {port: 0, dial_out_allow: ['h323:ratssaal@127\\.0\\.0\\.1:\\d+']}\n"
shared_gateway, demo = gateway_per_module("demo", CONFIG)


@pytest.fixture
def systems(demo: RunningGateway) -> Iterator[list[str]]:
    """Directory entries a test makes (append their ids): removed after it."""
    made: list[str] = []
    yield made
    for system in made:
        demo.api("DELETE", f"/api/systems/{system}")


def caller_in_room(gateway: RunningGateway, peers: list[H323Peer]) -> H323Peer:
    caller = H323Peer(gateway.h323_port, name="Anrufer", tone_hz=440.0)
    peers.append(caller)
    caller.call("4711")
    caller.send_keys("#")
    wait_until(lambda: participant(gateway, "demo", "Anrufer"), 20, what="the caller in the room")
    return caller


def test_a_directory_room_system_is_called_in_with_fast_start_and_hears_the_room(
    demo: RunningGateway, h323_peers: list[H323Peer], systems: list[str], tmp_path: Path
) -> None:
    caller = caller_in_room(demo, h323_peers)
    callee = H323Peer(demo.h323_port, name="Ratssaal", tone_hz=880.0, fast_start=True)
    h323_peers.append(callee)
    port = callee.listen()
    made = demo.api("POST", "/api/systems", json={"id": "saal", "name": "Ratssaal", "uri": f"h323:saal@127.0.0.1:{port}"})
    assert made.status_code == 201, made.text
    systems.append("saal")
    placed = demo.api("POST", "/api/rooms/demo/dial", json={"system": "saal"})
    assert placed.status_code == 202, placed.text
    assert placed.json()["uri"] == f"h323:saal@127.0.0.1:{port}"
    member = wait_until(lambda: participant(demo, "demo", "Ratssaal"), 20, what="the called room system in the room")
    assert isinstance(member, dict) and member["kind"] == "h323_room_system"
    setup = callee.setup_in
    assert setup["destinationAddress"] == [("h323-ID", "saal")] and setup["sourceAddress"][0] == ("h323-ID", "demo")
    assert callee.fast_start, "the gateway's Setup proposed no G.711 µ-law"
    wait_until(lambda: callee.hears(440.0) > -6 and caller.hears(880.0) > -6, 15, what="the two hear each other")
    assert metric(demo, "gateway_h323_call_attempts", direction="out") >= 1
    assert metric(demo, "gateway_h323_calls_active") == 2  # (the caller and the called)
    callee.hang_up()
    wait_until(lambda: participant(demo, "demo", "Ratssaal") is None, 15, what="the room system gone")
    assert_tshark_reads(callee, tmp_path)


def test_an_allowed_address_is_called_without_fast_start_others_are_refused(
    demo: RunningGateway, h323_peers: list[H323Peer], systems: list[str]
) -> None:
    caller = caller_in_room(demo, h323_peers)
    callee = H323Peer(demo.h323_port, name="Ratssaal", tone_hz=880.0, fast_start=False)
    h323_peers.append(callee)
    port = callee.listen()
    placed = demo.api("POST", "/api/rooms/demo/dial", json={"uri": f"h323:ratssaal@127.0.0.1:{port}"})
    assert placed.status_code == 202, placed.text
    wait_until(lambda: participant(demo, "demo", "ratssaal@127.0.0.1:" + str(port)), 20, what="the callee in the room")
    assert not callee.fast_start and callee.capabilities_acked.wait(10)
    wait_until(lambda: callee.hears(440.0) > -6 and caller.hears(880.0) > -6, 15, what="the two hear each other over H.245 channels")
    callee.hang_up()

    # No rule allows it: refused before anything is sent; an unreachable callee: reported.
    refused = demo.api("POST", "/api/rooms/demo/dial", json={"uri": "h323:ratssaal@192.0.2.1"})
    assert refused.status_code == 403 and refused.json()["error"] == "dial_out_refused", refused.text
    for bad in ("h323:ratssaal@127.0.0.1:99999", "h323:", "h323:a;b@127.0.0.1"):
        answer = demo.api("POST", "/api/rooms/demo/dial", json={"uri": bad})
        assert answer.status_code == 400 and answer.json()["error"] == "bad_uri", (bad, answer.text)
    entry = demo.api("POST", "/api/systems", json={"id": "kaputt", "name": "Kaputt", "uri": "h323:a;b@127.0.0.1"})
    assert entry.status_code == 400 and entry.json()["error"] == "bad_uri", entry.text  # (the directory takes only URLs it can call)
    # A number without a host: only a gatekeeper could say where it is, and this gateway has none.
    assert demo.api("POST", "/api/systems", json={"id": "nummer", "name": "Nummer", "uri": "h323:4930123"}).status_code == 201
    systems.append("nummer")
    nowhere = demo.api("POST", "/api/rooms/demo/dial", json={"system": "nummer"})
    assert nowhere.status_code == 400 and "gatekeeper" in nowhere.json()["reason"], nowhere.text
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # (nothing listens there)
    unreachable = demo.api("POST", "/api/rooms/demo/dial", json={"uri": f"h323:ratssaal@127.0.0.1:{closed_port}"})
    assert unreachable.status_code == 502 and unreachable.json()["error"] == "unreachable", unreachable.text
    codes = [line["code"] for line in logged(demo, "dial-out refused") if str(line.get("uri")).startswith("h323:")]
    assert codes[-5:] == ["dial_out_refused", *["bad_uri"] * 4], codes
    assert [line for line in logged(demo, "dial-out failed: callee unreachable") if line["address"] == f"127.0.0.1:{closed_port}"]


def test_a_trusted_room_system_calling_from_its_address_goes_straight_in_the_same_alias_elsewhere_is_a_guest(
    demo: RunningGateway, h323_peers: list[H323Peer], systems: list[str]
) -> None:
    made = demo.api("POST", "/api/systems", json={
        "id": "board", "name": "Board room", "uri": "h323:Board@127.0.0.1", "trusted": True, "default_room": "demo"})  # fmt: skip
    assert made.status_code == 201, made.text
    systems.append("board")
    board = H323Peer(demo.h323_port, name="Board")
    h323_peers.append(board)
    board.call("4711")  # (no key: a trusted system skips the voice menu)
    member = wait_until(lambda: participant(demo, "demo", "Board room"), 20, what="the trusted system in the room")
    assert isinstance(member, dict) and member["kind"] == "h323_room_system"
    board.hang_up()
    wait_until(lambda: participant(demo, "demo", "Board room") is None, 15, what="the board gone")

    forged = H323Peer(demo.h323_port, name="Board", source_host="127.0.0.2")
    h323_peers.append(forged)
    forged.call("4711")
    wait_until(lambda: any(line.get("system") == "board" for line in logged(demo, "caller claims a directory room system but calls from elsewhere")),
               10, what="the claim logged")  # fmt: skip
    assert participant(demo, "demo", "Board room") is None and participant(demo, "demo", "Board") is None  # (at the voice menu)
    forged.send_keys("#")
    guest = wait_until(lambda: participant(demo, "demo", "Board"), 20, what="the forged one in as a guest")
    assert isinstance(guest, dict) and guest["role"] == "guest"
    forged.hang_up()
