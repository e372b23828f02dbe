"""A SIP room system's video both ways (baresip with baresip-ffmpeg's H.264, Chromium with its fake
camera): its camera reaches the browsers without a decode (H.264 passed through) or transcoded once
for browsers that take only VP8; it receives the room's composed picture, which follows the layout
and the host's spotlight; room systems with the same output share one encode."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.support.baresip import Baresip
from tests.support.browser import (
    in_meeting,
    inbound_video,
    join,
    participant_id,
    video_frames_by_sender,
    write_solid_y4m,
)
from tests.support.gateway import (
    TEST_CONFIG,
    RunningGateway,
    metric,
    start_gateway,
    stop_and_check,
    wait_until,
)
from tests.support.sipp import media
from tests.support.video import colour_fraction, load_rgb, region

pytestmark = pytest.mark.browser

GREEN, RED = (0, 200, 0), (220, 0, 0)

def received_from(page, sender: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """What a page decoded of one participant's video: frames, size and codec (from getStats)."""
    return next((video for video in inbound_video(page).values() if video["who"] == sender), {})


def room_system(tmp_path: Path, name: str, **video: object) -> Baresip:
    """baresip sending a moving clip; H.264 only unless video_codecs says otherwise."""
    video.setdefault("video_codecs", ("H264",))
    return Baresip(tmp_path / name.replace(" ", "-"), tone_hz=1000, name=name, video="clip", **video)  # type: ignore[arg-type]


def sip_participant(gateway: RunningGateway, room: str, name: str) -> dict[str, object] | None:
    people = gateway.api("GET", f"/api/rooms/{room}/participants").json()
    return next((p for p in people if p["name"] == name), None)


def join_call(gateway: RunningGateway, system: Baresip, room: str = "demo") -> str:
    system.start(dial=f"sip:{room}@127.0.0.1:{gateway.sip_port}")
    wait_until(system.established, 20, what=f"{system.directory.name}'s call established")
    system.send_keys("#")  # a guest: # at the PIN prompt
    name = system._settings[1]
    wait_until(lambda: sip_participant(gateway, room, name), 20, what=f"{name} in the room")
    member = sip_participant(gateway, room, name)
    assert member is not None
    return str(member["id"])


def composed_layers(gateway: RunningGateway, room: str = "demo") -> dict[str, object]:
    """Which simulcast layer of each participant's camera the composed picture takes."""
    people = gateway.api("GET", f"/api/rooms/{room}/participants").json()
    return {p["id"]: p["media"].get("composed_layer") for p in people}


def expect_composed_layers(gateway: RunningGateway, want: dict[str, int], what: str) -> None:
    def matches() -> bool:
        layers = composed_layers(gateway)
        return all(layers.get(p) == layer for p, layer in want.items())

    try:
        wait_until(matches, 30, what=what)
    except AssertionError as exc:  # (what the gateway had: the composed layers and the layers that came)
        came = {p: camera_layers(gateway, p) for p in want}
        raise AssertionError(f"{exc}: composed {composed_layers(gateway)}, received {came}") from None


def camera_layers(gateway: RunningGateway, pid: str, room: str = "demo") -> dict[str, int]:
    """The simulcast layers of a browser's camera that reached the gateway (frames per layer)."""
    people = gateway.api("GET", f"/api/rooms/{room}/participants").json()
    return dict(next((p["media"].get("camera_layers_in") or {} for p in people if p["id"] == pid), {}))


def share(rgb, x0: float, y0: float, x1: float, y1: float, colour: str) -> float:  # type: ignore[no-untyped-def]
    return colour_fraction(region(rgb, x0, y0, x1, y1), colour)


def test_room_system_camera_passes_through_to_the_browser_and_it_sees_the_composed_room(
    gateway: RunningGateway, open_participant, tmp_path: Path
) -> None:
    anna = join(open_participant, gateway, "demo", "Anna", None, pin="1234", video_file=write_solid_y4m(tmp_path / "g.y4m", GREEN, 640, 360))
    ben = join(open_participant, gateway, "demo", "Ben", None, video_file=write_solid_y4m(tmp_path / "r.y4m", RED, 640, 360))
    wait_until(lambda: in_meeting(anna) and in_meeting(ben), 30, what="Anna and Ben in the meeting")
    system = room_system(tmp_path, "Room 123")
    try:
        sip_id = join_call(gateway, system)

        # Room system -> browser: H.264 640x360 decoded by Chromium, forwarded without a decode.
        wait_until(lambda: video_frames_by_sender(anna).get(sip_id, 0) >= 30, 30, what="Anna decodes the room system's video")
        seen = received_from(anna, sip_id)
        assert (seen["width"], seen["height"]) == (640, 360) and seen["mime"] == "video/H264", seen
        assert metric(gateway, "gateway_video_frames_forwarded", room="demo") > 30
        assert metric(gateway, "gateway_video_transcoder_decodes", room="demo") == 0

        # Browser -> room system: the composed picture, Anna (green) and Ben (red) on it; the room
        # system alone in the room does not see itself.
        wait_until(system.receiving_video, 20, what="baresip decodes the composed picture")
        assert system.received_resolution() == (1280, 720)
        wait_until(
            lambda: colour_fraction(load_rgb(system.snapshot()), "green") > 0.05
            and colour_fraction(load_rgb(system.snapshot()), "red") > 0.05,
            20,
            what="Anna's and Ben's cameras in the composed picture",
        )
        assert metric(gateway, "gateway_video_composed_encoders", room="demo") == 1

        # The host spotlights Ben: he fills the large area; then Anna. The camera in the strip is
        # composed from its lower simulcast layer (320x180 of Chromium's 640x360: enough for a
        # 304x172 tile, a quarter of the pixels to decode), the large one from the full picture.
        anna_id, ben_id = participant_id(anna), participant_id(ben)
        wait_until(
            lambda: all(len(camera_layers(gateway, p)) == 2 for p in (anna_id, ben_id)),
            30,
            what="both layers of both cameras (Chromium adds the upper one as its bandwidth estimate grows)",
        )
        for (who, colour), other in zip(((ben_id, "red"), (anna_id, "green")), (anna_id, ben_id), strict=True):
            assert gateway.api("PUT", "/api/rooms/demo/spotlight", json={"participant": who}).status_code == 200
            wait_until(
                lambda colour=colour: share(load_rgb(system.snapshot()), 0.3, 0.2, 0.7, 0.6, colour) > 0.8,
                20,
                what=f"the spotlighted participant ({colour}) large for the room system",
            )
            expect_composed_layers(gateway, {who: 1, other: 0}, "the large camera from its full picture, the strip's from its lower layer")
            strip_colour = "green" if colour == "red" else "red"
            wait_until(
                lambda strip_colour=strip_colour: share(load_rgb(system.snapshot()), 0.3, 0.78, 0.7, 0.98, strip_colour) > 0.3,
                20,
                what=f"the strip's camera ({strip_colour}) shown from its lower layer",
            )
        assert metric(gateway, "gateway_video_composed_lower_layer_frames", room="demo") > 0
        # Grid: both side by side, the same size.
        assert gateway.api("PUT", "/api/rooms/demo/spotlight", json={"participant": None}).status_code == 200
        assert gateway.api("PUT", "/api/rooms/demo/layout", json={"layout": "grid"}).status_code == 200

        def grid_shown() -> bool:
            rgb = load_rgb(system.snapshot())
            green, red = colour_fraction(rgb, "green"), colour_fraction(rgb, "red")
            return green > 0.15 and red > 0.15 and abs(green - red) < 0.1

        wait_until(grid_shown, 20, what="a grid of Anna and Ben")
        # Two 628x352 tiles: the lower layer would be blurred there, so both come in full.
        expect_composed_layers(gateway, {anna_id: 1, ben_id: 1}, "both cameras composed from their full pictures in the grid")

        # Ben turns his camera off: his tile shows his name on grey, Anna's stays.
        ben.click("#btn-cam")
        wait_until(
            lambda: colour_fraction(load_rgb(system.snapshot()), "red") < 0.01
            and colour_fraction(load_rgb(system.snapshot()), "green") > 0.15,
            20,
            what="Ben's tile without his camera",
        )
    finally:
        system.stop()


def test_one_slot_carries_a_vp8_camera_then_a_room_systems_h264_untouched(open_participant, tmp_path: Path) -> None:
    """A browser with a single video slot shows whom the host spotlights: Anna's VP8 camera, then
    the room system's H.264, then Anna again, on the same transceiver: each frame goes out in its
    own codec's payload type, and Chromium decodes each (nothing is transcoded)."""
    gateway = start_gateway(tmp_path, TEST_CONFIG + "webrtc: {video_slots: 1}\n")
    system = room_system(tmp_path, "Room 9")
    try:
        anna = join(open_participant, gateway, "demo", "Anna", None, pin="1234", video_file=write_solid_y4m(tmp_path / "g.y4m", GREEN, 640, 360))
        carl = join(open_participant, gateway, "demo", "Carl", None)
        wait_until(lambda: in_meeting(anna) and in_meeting(carl), 30, what="Anna and Carl in the meeting")
        sip_id = join_call(gateway, system)
        (mid,) = carl.evaluate("() => Object.keys(window.gatewayClient.videoSlots || {})")
        decoded = 0
        for who, mime in ((participant_id(anna), "video/VP8"), (sip_id, "video/H264"), (participant_id(anna), "video/VP8")):
            assert gateway.api("PUT", "/api/rooms/demo/spotlight", json={"participant": who}).status_code == 200
            wait_until(
                lambda who=who, mime=mime, decoded=decoded: (slot := inbound_video(carl).get(mid, {})).get("who") == who
                and slot["mime"] == mime
                and int(slot["frames"]) > decoded + 20,  # type: ignore[call-overload]
                30,
                what=f"Carl's one slot decoding {who} in {mime}",
            )
            decoded = int(inbound_video(carl)[mid]["frames"])  # type: ignore[call-overload]
        assert metric(gateway, "gateway_video_transcoder_decodes", room="demo") == 0
    finally:
        system.stop()
        stop_and_check(gateway)


def test_a_browser_that_takes_only_vp8_gets_the_room_system_transcoded_once(open_participant, tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, TEST_CONFIG + "webrtc: {video_codecs: [VP8]}\n")
    system = room_system(tmp_path, "Room 7")
    try:
        anna = join(open_participant, gateway, "demo", "Anna", None, pin="1234")
        ben = join(open_participant, gateway, "demo", "Ben", None)
        wait_until(lambda: in_meeting(anna) and in_meeting(ben), 30, what="Anna and Ben in the meeting")
        sip_id = join_call(gateway, system)
        for page in (anna, ben):
            wait_until(lambda page=page: video_frames_by_sender(page).get(sip_id, 0) >= 30, 30, what="the room system's video decoded")
            seen = received_from(page, sip_id)
            assert (seen["width"], seen["height"]) == (640, 360) and seen["mime"] == "video/VP8", seen
        # one transcoder for the sender's VP8, shared by both browsers
        assert metric(gateway, "gateway_video_transcoders", room="demo") == 1
        assert metric(gateway, "gateway_video_transcoder_decodes", room="demo") > 0
    finally:
        system.stop()
        stop_and_check(gateway)


def test_a_second_room_system_adds_no_encode_and_a_smaller_one_adds_exactly_one(gateway: RunningGateway, open_participant, tmp_path: Path) -> None:
    anna = join(open_participant, gateway, "demo", "Anna", None, pin="1234", video_file=write_solid_y4m(tmp_path / "g.y4m", GREEN, 640, 360))
    wait_until(lambda: in_meeting(anna), 30, what="Anna in the meeting")
    first, second = room_system(tmp_path, "Room A"), room_system(tmp_path, "Room B")
    small = room_system(tmp_path, "Room C", extra_config="rtp_bandwidth 200-300")  # b=AS:172 on its video
    try:
        join_call(gateway, first)
        wait_until(first.receiving_video, 20, what="Room A decodes the composed picture")
        assert metric(gateway, "gateway_video_composed_encoders", room="demo") == 1
        join_call(gateway, second)
        wait_until(second.receiving_video, 20, what="Room B decodes the composed picture")
        assert metric(gateway, "gateway_video_composed_encoders", room="demo") == 1
        assert second.received_resolution() == first.received_resolution() == (1280, 720)
        join_call(gateway, small)
        wait_until(small.receiving_video, 20, what="Room C decodes the composed picture")
        assert metric(gateway, "gateway_video_composed_encoders", room="demo") == 2
        resolution = small.received_resolution()
        assert resolution is not None and resolution[0] < 1280
    finally:
        for system in (first, second, small):
            system.stop()


def test_a_room_system_that_offers_only_vp8_gets_the_composed_picture_in_vp8(gateway: RunningGateway, open_participant, tmp_path: Path) -> None:
    """baresip with its vp8 module (libvpx) and no H.264: the composition is encoded in VP8 for it,
    Anna's camera on it; its own VP8 camera goes to Anna as it came (VP8 forwarded, no decode)."""
    anna = join(open_participant, gateway, "demo", "Anna", None, pin="1234", video_file=write_solid_y4m(tmp_path / "g.y4m", GREEN, 640, 360))
    wait_until(lambda: in_meeting(anna), 30, what="Anna in the meeting")
    system = room_system(tmp_path, "Room VP8", video_codecs=("VP8",))
    try:
        sip_id = join_call(gateway, system)
        wait_until(system.receiving_video, 20, what="baresip decodes the composed picture")
        assert system.video_stats().decoder == "VP8", system.video_debug()
        assert system.received_resolution() == (1280, 720)
        wait_until(lambda: colour_fraction(load_rgb(system.snapshot()), "green") > 0.2, 20, what="Anna's camera in the VP8 picture")
        assert metric(gateway, "gateway_video_composed_encoders", room="demo") == 1
        wait_until(lambda: video_frames_by_sender(anna).get(sip_id, 0) >= 30, 30, what="Anna decodes the room system's VP8 camera")
        assert received_from(anna, sip_id)["mime"] == "video/VP8"
        assert metric(gateway, "gateway_video_transcoder_decodes", room="demo") == 0
    finally:
        system.stop()


def compositor_processes(gateway: RunningGateway) -> list[int]:
    """The gateway's compositor child processes (one per room with a room system)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == gateway.process.pid and b"gateway.transcode.compositor_process" in cmdline and stat.rsplit(")", 1)[1].split()[0] != "Z":
            found.append(int(entry.name))
    return found


def test_a_killed_compositor_process_costs_the_room_system_neither_its_call_nor_its_picture(open_participant, tmp_path: Path) -> None:
    """The composition runs in a child process (a crash in a codec must not end the gateway):
    kill -9 it in the middle of a call and the room system stays in the call, its audio flows, and
    its picture comes back from a new child (frames decoded again, Anna's camera on them)."""
    gateway = start_gateway(tmp_path)
    system = room_system(tmp_path, "Room 9")
    try:
        anna = join(open_participant, gateway, "demo", "Anna", None, pin="1234", video_file=write_solid_y4m(tmp_path / "g.y4m", GREEN, 640, 360))
        wait_until(lambda: in_meeting(anna), 30, what="Anna in the meeting")
        join_call(gateway, system)
        wait_until(lambda: colour_fraction(load_rgb(system.snapshot()), "green") > 0.2, 30, what="Anna's camera in the composed picture")
        children = wait_until(lambda: compositor_processes(gateway), 10, what="the compositor's process")
        assert isinstance(children, list) and len(children) == 1
        os.kill(children[0], signal.SIGKILL)

        def audio() -> tuple[int, int]:
            counters = media(gateway, "demo", "Room 9")
            return int(counters["audio_packets_in"]), int(counters["audio_frames_out"])  # type: ignore[call-overload]

        heard, sent = audio()
        wait_until(lambda: metric(gateway, "gateway_video_compositor_restarts", room="demo") == 1, 15, what="the restart counted")
        wait_until(lambda: compositor_processes(gateway) not in ([], children), 15, what="a new compositor process")
        frames = system.video_stats().frames_received
        wait_until(lambda: system.video_stats().frames_received >= frames + 60, 30, what="the room system decodes the picture again")
        wait_until(lambda: colour_fraction(load_rgb(system.snapshot()), "green") > 0.2, 20, what="Anna's camera in the new child's picture")
        assert system.established()
        # its audio went on both ways meanwhile (the mixer sends every 20 ms, silence included)
        wait_until(
            lambda: audio()[0] >= heard + 250 and audio()[1] >= sent + 250, 15, what="the room system's audio flowing both ways"
        )
    finally:
        system.stop()
        gateway.process.terminate()
        gateway.process.wait(30)
    errors = [line for line in gateway.log_lines() if line.get("level") in ("error", "critical")]
    assert [e["event"] for e in errors] == ["compositor process ended; starting it again"], errors
    # (its exit code is -9 as a rule; asyncio says 255 when another waiter reaped the child first)
    assert errors[0]["exit_code"] in (-signal.SIGKILL, 255) and "Traceback" not in gateway.log_path.read_text()
