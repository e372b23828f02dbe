"""H.239 content between H.323 room systems and the meeting (gateway/h323/h239.py and service.py),
against the tests' own H.323 endpoint (tests/support/h323_peer.py: H.239 from the ITU-T texts,
its own PER codec): the room system's share button (presentationTokenRequest) takes the room's
presentation floor, its presentation channel (extended video capability, role label presentation)
reaches a headless Chromium as the large content tile; the browser's shared screen takes the floor
back (the gateway asks the room system for the token) and reaches the room system on a
presentation channel the gateway opens, closed again when the browser stops. Where only hosts
present, a guest room system's request is rejected; a host's stop takes the token back. Everything
on the signalling connection, tunnelled H.245 with its H.239 messages, is read by tshark."""

from __future__ import annotations

from pathlib import Path

from tests.support.browser import in_meeting, join, tiles, video_frames_by_sender
from tests.support.gateway import TEST_CONFIG, RunningGateway, gateway_per_module, participant, wait_until
from tests.support.h323_peer import (
    ACKNOWLEDGE,
    CHANNEL_ID,
    TOKEN_OWNER,
    TOKEN_RELEASE,
    TOKEN_REQUEST,
    H323Peer,
    assert_tshark_reads,
)

CONFIG = TEST_CONFIG + '  - {id: chamber, name: Chamber, host_pin: "1234", aliases: ["4712"], presenters: hosts}\n'
shared_gateway, demo = gateway_per_module("demo", CONFIG)


def presentation(gateway: RunningGateway, room: str = "demo") -> dict[str, object] | None:
    return gateway.api("GET", f"/api/rooms/{room}").json().get("presentation")  # type: ignore[no-any-return]


def in_room(gateway: RunningGateway, system: H323Peer, dialled: str, room: str = "demo") -> str:
    """The room system calls `dialled`, joins as a guest (#), has exchanged capabilities: its id."""
    system.call(dialled)
    system.send_keys("#")
    found = wait_until(lambda: participant(gateway, room, system.name), 20, what=f"{system.name} in {room}")
    assert isinstance(found, dict)
    assert system.capabilities_acked.wait(10), "the gateway did not acknowledge the capability set"
    return str(found["id"])


def messages(system: H323Peer, kind: str, sub_message: int) -> list[dict[int, object]]:
    return [params for k, sub, params in system.h239_in if (k, sub) == (kind, sub_message)]


def test_a_room_systems_presentation_reaches_a_browser_and_the_browsers_screen_reaches_it(
    demo: RunningGateway, open_participant, h323_peers: list[H323Peer], tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    anna = join(open_participant, demo, "demo", "Anna", None, pin="1234")
    wait_until(lambda: in_meeting(anna), 40, what="Anna in the meeting")
    system = H323Peer(demo.h323_port, name="Ratssaal", fast_start=False, h245="tunnel", content=True)
    h323_peers.append(system)
    system_id = in_room(demo, system, "4711")

    # Its share button: the token is granted, the room's floor is its, its channel carries slides.
    assert system.present(), system.h239_in
    wait_until(lambda: (presentation(demo) or {}).get("presenter") == system_id, 10, what="the room system presenting")
    assert presentation(demo)["content"] == "slides"  # type: ignore[index]
    content = f"{system_id}#content"
    wait_until(lambda: video_frames_by_sender(anna).get(content, 0) > 10, 40, what="Anna decodes the room system's slides")
    first = tiles(anna)[0]
    assert first["key"] == content and first["main"] and first["caption"] == "Ratssaal is presenting", tiles(anna)
    assert system.gateway_content is None  # (nobody else presents: no presentation channel to it)

    # Anna shares her screen: the gateway asks the room system for the token back, then sends
    # Anna's screen on a presentation channel of its own, saying that the token is the room's.
    anna.get_by_role("button", name="Share screen", exact=True).click()
    wait_until(lambda: messages(system, "request", TOKEN_REQUEST), 10, what="the gateway asking for the token back")
    wait_until(lambda: (presentation(demo) or {}).get("content") == "screen", 10, what="Anna presenting")
    wait_until(lambda: system.gateway_content is not None, 10, what="the gateway's presentation channel")
    assert system.content_in is not None
    system.content_in.wait_frames(10, timeout=40)
    assert wait_until(lambda: messages(system, "indication", TOKEN_OWNER), 10, what="the owner indication")[-1][CHANNEL_ID] == system.gateway_content
    assert system.content_out is None  # (it stopped sending when asked)

    # Anna stops: the channel closes and the token is released.
    channel = system.gateway_content
    anna.get_by_role("button", name="Stop sharing", exact=True).click()
    wait_until(lambda: system.content_closed == 1, 10, what="the presentation channel closed")
    released = wait_until(lambda: messages(system, "command", TOKEN_RELEASE), 10, what="presentationTokenRelease")
    assert released[-1][CHANNEL_ID] == channel
    wait_until(lambda: presentation(demo) is None, 10, what="nobody presenting")
    system.hang_up()
    wait_until(lambda: participant(demo, "demo", "Ratssaal") is None, 15, what="the room system gone")
    anna.close()

    packets = assert_tshark_reads(system, tmp_path, ("h245.subMessageIdentifier.standard",))
    sub_messages = {value for p in packets for value in p.fields.get("h245.subMessageIdentifier.standard", [])}
    assert {"3", "4", "5", "6"} <= sub_messages, sub_messages


def test_hosts_only_rooms_refuse_a_guests_token_and_a_host_takes_it_back(
    demo: RunningGateway, h323_peers: list[H323Peer], tmp_path: Path
) -> None:
    guest = H323Peer(demo.h323_port, name="Gast", fast_start=True, h245="tunnel", content=True)
    h323_peers.append(guest)
    in_room(demo, guest, "4712", room="chamber")
    assert not guest.present()
    assert presentation(demo, "chamber") is None
    guest.hang_up()

    system = H323Peer(demo.h323_port, name="Ratssaal", fast_start=True, h245="connect", content=True)
    h323_peers.append(system)
    system_id = in_room(demo, system, "4711")
    assert system.present()
    wait_until(lambda: (presentation(demo) or {}).get("presenter") == system_id, 10, what="the room system presenting")
    wait_until(lambda: system.content_out is not None and system.content_out.frames_sent > 5, 10, what="slides sent")
    assert demo.api("POST", "/api/rooms/demo/presentation/stop").status_code == 200
    taken = wait_until(lambda: messages(system, "request", TOKEN_REQUEST), 10, what="the token asked back")
    assert taken[-1][CHANNEL_ID] == 5
    assert presentation(demo) is None
    # Its own release afterwards (it acknowledged, then released) changes nothing.
    system.stop_presenting()
    assert messages(system, "response", 4)[-1].keys() >= {ACKNOWLEDGE}
    system.hang_up()
    assert_tshark_reads(guest, tmp_path)  # (the rejecting presentationTokenResponse)
    assert_tshark_reads(system, tmp_path)  # (H.245 on its own connection: the token asked back)
