"""H.323 room systems see and are seen (gateway/h323): an H.323 endpoint of the tests
(tests/support/h323_peer.py) sends the test clip as H.264 (H.241 capability, RFC 6184 RTP) and a
headless Chromium in the same room decodes it as that participant's tile; the endpoint decodes the
room's composed picture the gateway sends back; a new viewer's need of a picture reaches the room
system as H.245 videoFastUpdatePicture. Both with fastStart (video agreed in the Setup) and with
H.245 logical channels opened after the capability exchange."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.browser import in_meeting, join, video_frames_by_sender
from tests.support.gateway import RunningGateway, logged, participant, participants, wait_until
from tests.support.h323_peer import H323Peer, assert_tshark_reads


def leave(page) -> None:  # type: ignore[no-untyped-def]
    if in_meeting(page):
        page.click("#btn-leave")


@pytest.mark.parametrize(("fast_start", "h245"), [(True, "tunnel"), (False, "listen")], ids=["faststart", "h245-channels"])
def test_a_browser_sees_the_h323_camera_and_the_room_system_sees_the_room(
    gateway: RunningGateway, open_participant, h323_peers: list[H323Peer], fast_start: bool, h245: str, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    anna = join(open_participant, gateway, "demo", "Anna", 660.0, pin="1234")
    wait_until(lambda: in_meeting(anna), 30, what="Anna in the meeting")
    system = H323Peer(gateway.h323_port, name="Ratssaal", fast_start=fast_start, h245=h245, video=True)
    h323_peers.append(system)
    system.call("4711")
    system.send_keys("#")
    member = wait_until(lambda: participant(gateway, "demo", "Ratssaal"), 20, what="the room system in the room")
    assert isinstance(member, dict) and member["kind"] == "h323_room_system"
    # The room system's camera: decoded in Anna's browser as its tile.
    wait_until(lambda: video_frames_by_sender(anna).get(str(member["id"]), 0) >= 30, 40, what="Anna decodes the H.323 camera")
    # The room's composed picture (Anna's camera in it): decoded by the room system.
    assert system.video_in is not None
    system.video_in.wait_frames(20, timeout=40)
    agreed = [line for line in logged(gateway, "video agreed") if line.get("protocol") == "h323"]
    assert agreed and agreed[-1]["direction"] == "sendrecv" and agreed[-1]["codec"] == "H264", agreed
    # Anna's browser asked for a picture of the running camera at least once (joining, decoding):
    # the gateway asks the room system in H.245 (no RTCP feedback in H.323).
    wait_until(lambda: system.fast_updates >= 1, 20, what="videoFastUpdatePicture at the room system")
    system.hang_up()
    wait_until(lambda: participant(gateway, "demo", "Ratssaal") is None, 15, what="the room system gone")
    leave(anna)
    wait_until(lambda: not participants(gateway, "demo"), 15, what="the room empty")
    assert_tshark_reads(system, tmp_path)  # (H.264's H.241 capability and channels, fastStart or H.245)
