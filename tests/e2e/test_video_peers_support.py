"""The video test support against the real programs, without the gateway: the testsrc2 clip
(ffmpeg), picture analysis (PNGs of baresip, Chromium's fake camera), baresip's video options in a
call between two baresips (H.264 and VP8, snapshots, its stats, PLI answered with a key frame), the
H.264 and RTCP checks on what tshark decodes of those calls, and the tests/sipp/video_*.xml
scenarios: each passes against a UAS that answers as the gateway must, and fails (sipp's exit code)
against one that does not."""

from __future__ import annotations

import base64
import socket
import struct
import subprocess
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.support.baresip import Baresip, free_rtp_ports
from tests.support.browser import CHROMIUM, chromium_args, write_solid_y4m
from tests.support.gateway import wait_until
from tests.support.sipp import SCENARIOS, SIPP, Sipp, free_udp_port, udp_port_bound
from tests.support.video import (
    PacketCapture,
    colours_seen,
    green_fraction,
    h264_rtp_check,
    is_black,
    load_rgb,
    looks_like_testsrc2,
    make_test_clip,
    mean_colour,
    region,
    rtcp_feedback_check,
    rtp_streams,
)

# Video peers encode and decode H.264 on the machine's two cores: one such test at a time (make test
# runs the "serial" group on one worker).
pytestmark = pytest.mark.xdist_group("serial")


# -- the clip and pictures --------------------------------------------------------------------------


def test_test_clip_is_made_once_shared_and_decodes(tmp_path: Path) -> None:
    clip = make_test_clip(size="320x180", rate=10, seconds=2)
    made = clip.stat().st_mtime_ns
    assert make_test_clip(size="320x180", rate=10, seconds=2) == clip and clip.stat().st_mtime_ns == made
    copy = make_test_clip(tmp_path / "clip.mp4", size="320x180", rate=10, seconds=2)
    assert copy.read_bytes() == clip.read_bytes()
    assert not list(clip.parent.glob(f".{clip.stem}.*{clip.suffix}")), "a partial clip was left behind"

    import av

    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 320, 180)
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == 20
    picture = load_rgb(clip)
    assert picture.shape == (180, 320, 3) and not is_black(picture)
    assert looks_like_testsrc2(picture), colours_seen(picture)


def test_picture_analysis(tmp_path: Path) -> None:
    green = load_rgb(write_solid_y4m(tmp_path / "green.y4m", (0, 200, 0)))
    assert green.shape == (240, 320, 3) and green_fraction(green) > 0.95 and not is_black(green)
    black = load_rgb(write_solid_y4m(tmp_path / "black.y4m", (0, 0, 0)))
    assert is_black(black) and green_fraction(black) == 0
    red = load_rgb(write_solid_y4m(tmp_path / "red.y4m", (220, 30, 30)))
    assert colours_seen(red) == {"red": 1.0}, (colours_seen(red), mean_colour(red))

    # left half yellow, right half blue: regions are fractions of the picture
    split = np.zeros((90, 160, 3), np.uint8)
    split[:, :80] = (230, 220, 20)
    split[:, 80:] = (20, 30, 220)
    assert set(colours_seen(split)) == {"yellow", "blue"}
    assert colours_seen(region(split, 0, 0, 0.5, 1)) == {"yellow": 1.0}
    assert colours_seen(region(split, 0.5, 0.5, 1, 1)) == {"blue": 1.0}
    assert region(split, 0.25, 0.25, 0.75, 0.75).shape == (45, 80, 3)

    # one PNG frame of testsrc2 straight from ffmpeg
    png = tmp_path / "testsrc2.png"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=15",
         "-frames:v", "1", str(png)],
        check=True, timeout=60,
    )  # fmt: skip
    picture = load_rgb(png)
    assert picture.shape == (360, 640, 3) and looks_like_testsrc2(picture), colours_seen(picture)
    assert not looks_like_testsrc2(green) and not looks_like_testsrc2(split)


CAMERA_FRAME_JS = """
async () => {
  const stream = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}});
  const video = document.createElement('video');
  video.muted = true;
  video.srcObject = stream;
  await video.play();
  await new Promise(r => setTimeout(r, 500));
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext('2d').drawImage(video, 0, 0);
  stream.getTracks().forEach(t => t.stop());
  return canvas.toDataURL('image/png');
}
"""


@pytest.mark.browser
def test_chromium_fake_camera_pictures(playwright_instance, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Chromium's fake camera shows a green picture (with a moving pie): green_fraction tells it;
    a solid Y4M camera shows its colour."""
    red_camera = write_solid_y4m(tmp_path / "red.y4m", (220, 30, 30))
    for name, video_file in (("fake", None), ("red", red_camera)):
        browser = playwright_instance.chromium.launch(
            executable_path=CHROMIUM, args=chromium_args(None, True, video_file), headless=True
        )
        try:
            page = browser.new_page()
            # a page of a secure origin (getUserMedia needs one) served by the test itself
            page.route("http://127.0.0.1:9/**", lambda route: route.fulfill(status=200, content_type="text/html", body="<p>camera</p>"))
            page.goto("http://127.0.0.1:9/camera")
            data_url = page.evaluate(CAMERA_FRAME_JS)
        finally:
            browser.close()
        png = tmp_path / f"{name}.png"
        png.write_bytes(base64.b64decode(data_url.split(",", 1)[1]))
        picture = load_rgb(png)
        if name == "fake":
            assert picture.shape == (480, 640, 3) and green_fraction(picture) > 0.3, colours_seen(picture)
        else:
            assert colours_seen(picture, 0.5) == {"red": pytest.approx(1.0, abs=0.02)}, mean_colour(picture)


# -- baresip video calls ------------------------------------------------------------------------------


def _pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    """RTCP PSFB PLI (RFC 4585 6.3.1): V=2, FMT=1, PT=206, length 2."""
    return struct.pack("!BBHII", 0x80 | 1, 206, 2, sender_ssrc, media_ssrc)


def test_baresip_sends_h264_testsrc2_to_baresip_and_answers_a_pli_with_a_key_frame(tmp_path: Path) -> None:
    """A (testsrc2 clip, avformat) calls B (fakevideo's bars); both send H.264. B's snapshot of what it
    receives is testsrc2, A's is the bars. On the wire (tshark): A's stream to B is one SSRC of
    well-formed H.264 at 15 fps; a PLI sent to A's RTCP port is seen there, and A's next key frame
    follows it."""
    a_ports, b_ports = free_rtp_ports(), free_rtp_ports()
    caller = Baresip(tmp_path / "a", tone_hz=1000, name="Clip", codecs=("g711",), video="clip", rtp_ports=a_ports)
    callee = Baresip(tmp_path / "b", tone_hz=700, name="Bars", codecs=("g711",), video="fakevideo", rtp_ports=b_ports)
    ports = [*range(a_ports[0], a_ports[1] + 1), *range(b_ports[0], b_ports[1] + 1)]
    feedback = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    capture = PacketCapture(tmp_path / "call.pcapng", ports)
    try:
        callee.start()
        caller.start(dial=f"sip:A@127.0.0.1:{callee.sip_port}")
        wait_until(callee.established, 15, what="the call established")
        wait_until(lambda: callee.receiving_video() and caller.receiving_video(), 15, what="video both ways")

        received = load_rgb(callee.snapshot())
        assert received.shape == (360, 640, 3) and callee.received_resolution() == (640, 360)
        assert not is_black(received) and looks_like_testsrc2(received), colours_seen(received)
        bars = load_rgb(caller.snapshot())
        assert set(colours_seen(bars, 0.25)) == {"red", "green", "blue"}, colours_seen(bars)
        sent = load_rgb(caller.snapshot(sent=True))
        assert looks_like_testsrc2(sent), colours_seen(sent)

        a_video, b_video = caller.video_stats(), callee.video_stats()
        assert (a_video.encoder, b_video.decoder) == ("H264", "H264"), a_video.text
        assert b_video.remote_rtp == f"127.0.0.1:{a_video.local_port}" and a_video.ssrc
        assert a_ports[0] <= a_video.local_port <= a_ports[1] and b_ports[0] <= b_video.local_port <= b_ports[1]
        key_frames = b_video.key_frames_received
        assert key_frames >= 1

        # A PLI to A (to its RTCP port: rtcp_mux is off) brings a key frame to B. (baresip 1.0 loses a
        # request that comes while it encodes a frame, about one in ten here: PLIs are repeated.)
        plis_sent: list[float] = []
        for _ in range(4):
            plis_sent.append(time.time())
            feedback.sendto(_pli(0x5EED, a_video.ssrc), ("127.0.0.1", a_video.local_port + 1))
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline and callee.video_stats().key_frames_received == key_frames:
                time.sleep(0.1)
            if callee.video_stats().key_frames_received > key_frames:
                break
        assert callee.video_stats().key_frames_received > key_frames, f"no key frame after {len(plis_sent)} PLIs"
        # baresip's own view: its status line's frame rates (measured over 5 s)
        # (its bit rates are sampled now and then: a line may show 0 between two samples)
        wait_until(lambda: (s := callee.status()) and s.fps_received >= 10 and s.video_bps_received > 50_000, 15, what="B's received frame rate")
        assert callee.video_stats().frames_received >= 30
        capture.flush()
    finally:
        capture.stop()
        feedback.close()
        caller.stop()
        callee.stop()

    b_port, a_port = b_video.local_port, a_video.local_port
    (streams,) = rtp_streams(capture.path, b_port).values()
    (payload_type,) = streams
    stream = h264_rtp_check(capture.path, b_port, payload_type)
    assert stream.problems() == [], stream.describe()
    assert stream.ssrcs == {a_video.ssrc} and stream.sequence_gaps == 0, stream.describe()
    assert 14 <= stream.frame_rate <= 16 and {5, 7, 8} <= set(stream.nal_types), stream.describe()
    assert stream.key_frames >= 2 and any(0 < t - plis_sent[-1] < 2 for t in stream.key_frame_times), (
        plis_sent,
        stream.key_frame_times,
    )
    # tshark's H.264 dissector read the same NAL unit types
    assert set(stream.dissected_types) >= {5, 7, 8}, stream.dissected_types
    # B's stream the other way, and the PLI on A's RTCP port
    assert h264_rtp_check(capture.path, a_port, payload_type).problems() == []
    rtcp = rtcp_feedback_check(capture.path, a_port + 1)
    # (B asks with PLIs of its own when its decoder waits for a key frame: ours are those at plis_sent)
    assert rtcp.pli >= len(plis_sent) and a_video.ssrc in rtcp.media_ssrcs and not rtcp.malformed, rtcp
    assert all(any(abs(t - sent) < 1 for t in rtcp.times) for sent in plis_sent), (plis_sent, rtcp.times)


def test_h264_check_finds_broken_streams(tmp_path: Path) -> None:
    """Packets made here, sent over loopback and read back by tshark: a stream with two SSRCs, an FU-A
    cut short, a missing marker bit and a NAL unit with the forbidden bit is reported as such."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    port = int(sink.getsockname()[1])
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def rtp(seq: int, stamp: int, payload: bytes, marker: bool = False, ssrc: int = 0x1234) -> bytes:
        return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | 96, seq, stamp, ssrc) + payload

    sps, pps = bytes.fromhex("6742c01f8c8d40f0"), bytes.fromhex("68ce3c80")
    stap = bytes([0x78]) + len(sps).to_bytes(2, "big") + sps + len(pps).to_bytes(2, "big") + pps
    packets = [
        rtp(1, 3000, stap),
        rtp(2, 3000, bytes([0x7C, 0x85]) + b"\x88" * 40),  # FU-A start of an IDR slice ...
        rtp(3, 3000, bytes([0x7C, 0x05]) + b"\x11" * 40),  # ... its middle, then no end:
        rtp(4, 6000, bytes([0x41]) + b"\x9a" * 40),  # a slice, and no marker bit on the frame before
        rtp(5, 6000, bytes([0x41]) + b"\x9a" * 40, marker=True),
        rtp(6, 9000, bytes([0xC1]) + b"\x9a" * 40, marker=True),  # the forbidden bit
        rtp(1, 12000, bytes([0x41]) + b"\x9a" * 40, marker=True, ssrc=0x9999),  # a second SSRC
    ]
    with PacketCapture(tmp_path / "forged.pcapng", [port]) as capture:
        for packet in packets:
            sender.sendto(packet, ("127.0.0.1", port))
        capture.flush()
    sink.close()
    sender.close()
    report = h264_rtp_check(capture.path, port, 96)
    assert report.packets == 7 and report.ssrcs == {0x1234, 0x9999}
    assert report.packet_types == {24: 1, 28: 2, 1: 3}, report.packet_types
    assert report.nal_types[7] == 1 and report.nal_types[8] == 1 and report.key_frames == 1
    assert report.frames_without_marker == 1 and report.forbidden_bit == 1
    assert report.timestamp_steps == {3000: 2}, report.timestamp_steps  # (of the main SSRC)
    problems = " / ".join(report.problems())
    for expected in ("2 SSRCs", "FU-A without its end", "without the marker bit", "forbidden bit"):
        assert expected in problems, problems


def test_baresip_without_video_stays_audio_only(tmp_path: Path) -> None:
    """The helper's callers that want no video get the config they always had: no video module, no
    video line in the offer; the control connection still answers commands."""
    caller = Baresip(tmp_path / "a", tone_hz=1000, name="Phone A", codecs=("g711",))
    callee = Baresip(tmp_path / "b", tone_hz=700, name="Phone B", codecs=("g711",))
    config = (tmp_path / "a" / "config").read_text()
    assert not any(line.startswith(("video_", "module avcodec", "module snapshot")) for line in config.splitlines()), config
    assert "video_codecs" not in (tmp_path / "a" / "accounts").read_text()
    try:
        callee.start()
        caller.start(dial=f"sip:A@127.0.0.1:{callee.sip_port}")
        wait_until(lambda: caller.established() and callee.established(), 15, what="the audio call")
        call = str(caller.command("callstat")["data"])
        assert "audio RTP/AVP" in call and "video" not in call, call
        status = wait_until(lambda: (s := caller.status()) and s.audio_bps_received > 0 and s, 10, what="audio in baresip's status")
        assert status.video_bps_received == 0 and not caller.receiving_video(), status  # type: ignore[union-attr]
    finally:
        caller.stop()
        callee.stop()
    assert caller.recording()[0].size > 0


def test_baresip_vp8_call_between_baresips(tmp_path: Path) -> None:
    caller = Baresip(tmp_path / "a", tone_hz=1000, name="VP8 A", codecs=("g711",), video="fakevideo", video_codecs=("VP8",))
    callee = Baresip(tmp_path / "b", tone_hz=700, name="VP8 B", codecs=("g711",), video="clip", video_codecs=("VP8",))
    try:
        callee.start()
        caller.start(dial=f"sip:A@127.0.0.1:{callee.sip_port}")
        wait_until(lambda: callee.receiving_video() and caller.receiving_video(), 20, what="VP8 video both ways")
        assert caller.video_codec() == callee.video_codec() == "VP8", (caller.video_codec(), callee.video_codec())
        bars = load_rgb(callee.snapshot())
        assert set(colours_seen(bars, 0.25)) == {"red", "green", "blue"}, colours_seen(bars)
        clip = load_rgb(caller.snapshot())
        assert looks_like_testsrc2(clip), colours_seen(clip)
    finally:
        caller.stop()
        callee.stop()


def test_baresip_takes_main_video_in_packetization_mode_1_and_declines_slides(tmp_path: Path) -> None:
    """video_content_line.xml against a real UA (baresip, answering automatically): it passes, and the
    main video baresip sends to sipp's video port is H.264 in FU-A packets (packetization-mode=1),
    well-formed by tshark's reading."""
    phone = Baresip(tmp_path / "baresip", tone_hz=1000, name="Answering", codecs=("g711",), video="clip")
    media_port = free_udp_port(span=6)
    capture = PacketCapture(tmp_path / "video.pcapng", range(media_port, media_port + 6))
    try:
        phone.start()
        sipp = Sipp(types.SimpleNamespace(sip_port=phone.sip_port), tmp_path / "sipp", "video_content_line.xml", "A", media_port=media_port)  # type: ignore[arg-type]
        result = sipp.wait(60)
        capture.flush()
    finally:
        capture.stop()
        phone.stop()
    assert result.returncode == 0, result.describe()
    assert phone.video_codec() == "H264 packetization-mode=1", phone.video_codec()
    stream = h264_rtp_check(capture.path, media_port + 2, 96)
    assert stream.problems() == [] and stream.packet_types[28] > stream.frames, stream.describe()
    assert not rtp_streams(capture.path, media_port + 4), "media sent to the declined slides line"


# -- the sipp video scenarios against a stand-in UAS ---------------------------------------------------

AUDIO_ANSWER = [
    "v=0", "o=uas 1 1 IN IP4 [local_ip]", "s=-", "c=IN IP4 [media_ip]", "t=0 0",
    "m=audio [media_port] RTP/AVP 0 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15", "a=sendrecv",
]  # fmt: skip
H264_ANSWER = ["a=rtpmap:96 H264/90000", "a=fmtp:96 profile-level-id=42e01f;packetization-mode=1", "a=sendrecv"]


def video(port: str, proto: str = "RTP/AVP", *extra: str) -> list[str]:
    return [f"m=video {port} {proto} 96", *H264_ANSWER, *extra]


# For each scenario: the answers (to its INVITE, then its re-INVITEs) a gateway must give, and answers
# it must not: with those, sipp must fail.
ANSWERS: dict[str, tuple[list[list[str]], dict[str, list[list[str]]]]] = {
    "video_avpf.xml": (
        [AUDIO_ANSWER + video("[media_port+2]", "RTP/AVPF", "a=rtcp-fb:96 nack", "a=rtcp-fb:96 nack pli", "a=rtcp-fb:96 ccm fir")],
        {
            "video as RTP/AVP": [AUDIO_ANSWER + video("[media_port+2]", "RTP/AVP", "a=rtcp-fb:96 nack pli")],
            "video declined": [AUDIO_ANSWER + video("0", "RTP/AVPF", "a=rtcp-fb:96 nack pli")],
            "rtcp-fb only on the audio": [AUDIO_ANSWER + ["a=rtcp-fb:* nack"] + video("[media_port+2]", "RTP/AVPF")],
        },
    ),
    "video_dual_srtp.xml": (
        [AUDIO_ANSWER + video("0", "RTP/SAVP") + video("[media_port+2]")],
        {
            "both videos": [AUDIO_ANSWER + video("[media_port+4]", "RTP/SAVP") + video("[media_port+2]")],
            "no video": [AUDIO_ANSWER + video("0", "RTP/SAVP") + video("0")],
            "a video line missing": [AUDIO_ANSWER + video("[media_port+2]")],
        },
    ),
    "video_reinvite.xml": (
        [AUDIO_ANSWER, AUDIO_ANSWER + video("[media_port+2]"), AUDIO_ANSWER + video("0")],
        {
            "video not added": [AUDIO_ANSWER, AUDIO_ANSWER + video("0"), AUDIO_ANSWER + video("0")],
            "video not removed": [AUDIO_ANSWER, AUDIO_ANSWER + video("[media_port+2]"), AUDIO_ANSWER + video("[media_port+2]")],
        },
    ),
    "video_unknown_codec.xml": (
        [AUDIO_ANSWER + ["m=video 0 RTP/AVP 98"]],
        {
            "video line left out": [AUDIO_ANSWER],
            "video accepted": [AUDIO_ANSWER + ["m=video [media_port+2] RTP/AVP 98", "a=rtpmap:98 H265/90000"]],
        },
    ),
    "video_content_line.xml": (
        [AUDIO_ANSWER + video("[media_port+2]", "RTP/AVP", "a=content:main") + video("0")],
        {
            "slides accepted": [AUDIO_ANSWER + video("[media_port+2]") + video("[media_port+4]", "RTP/AVP", "a=content:slides")],
            "main declined": [AUDIO_ANSWER + video("0") + video("[media_port+4]", "RTP/AVP", "a=content:slides")],
        },
    ),
}


def _uas_reply(body: list[str] | None, first: bool) -> str:
    lines = [
        "SIP/2.0 200 OK", "[last_Via:]", "[last_From:]", "[last_To:]" + (";tag=[pid]SIPpTag01[call_number]" if first else ""),
        "[last_Call-ID:]", "[last_CSeq:]", "Contact: <sip:uas@[local_ip]:[local_port];transport=[transport]>",
    ]  # fmt: skip
    lines += ["Content-Type: application/sdp", "Content-Length: [len]", "", *body] if body is not None else ["Content-Length: 0"]
    return "  <send>\n    <![CDATA[\n" + "\n".join(f"      {line}" for line in lines) + "\n\n    ]]>\n  </send>\n"


def uas_scenario(answers: list[list[str]]) -> str:
    """A sipp UAS answering the video scenarios' calls: the INVITE and each re-INVITE with the next
    SDP of `answers`, the INFO (the guest's #) and the BYE with 200."""
    parts = ['<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="stand-in UAS">\n']
    for index, answer in enumerate(answers):
        parts += ['  <recv request="INVITE" crlf="true"/>\n', _uas_reply(answer, index == 0), '  <recv request="ACK"/>\n']
        if index == 0:
            parts += ['  <recv request="INFO"/>\n', _uas_reply(None, False)]
    parts += ['  <recv request="BYE"/>\n', _uas_reply(None, False), "</scenario>\n"]
    return "".join(parts)


def run_against_uas(directory: Path, scenario: str, answers: list[list[str]]) -> tuple[int, str]:
    """sipp running `scenario` against a sipp UAS that answers with `answers`: (the scenario's exit
    code, what went wrong)."""
    directory.mkdir(parents=True)
    (directory / "uas.xml").write_text(uas_scenario(answers))
    for _attempt in range(3):
        # (ports free when picked may be taken before sipp binds them, by a run beside this one:
        # then the UAS exits at once, and is started again on other ports)
        uas_port = free_udp_port()
        uas = subprocess.Popen(
            [SIPP, "-sf", str(directory / "uas.xml"), "-i", "127.0.0.1", "-p", str(uas_port), "-mp", str(free_udp_port(span=4)),
             "-m", "1", "-nostdin", "-timeout", "30s", "-trace_err", "-error_file", str(directory / "uas-errors.log")],
            cwd=directory, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while uas.poll() is None and not udp_port_bound(uas_port) and time.monotonic() < deadline:
            time.sleep(0.05)
        if uas.poll() is None:
            break
    try:
        assert uas.poll() is None, f"the UAS sipp did not start: {(directory / 'uas-errors.log').read_text() if (directory / 'uas-errors.log').exists() else ''}"
        sipp = Sipp(types.SimpleNamespace(sip_port=uas_port), directory / "uac", scenario, "demo")  # type: ignore[arg-type]
        result = sipp.wait(60)
    finally:
        uas.kill()
        uas.wait()
    return result.returncode, result.describe()


@pytest.mark.parametrize("scenario", sorted(ANSWERS))
def test_video_scenario_passes_right_answers_and_fails_wrong_ones(scenario: str, tmp_path: Path) -> None:
    assert (SCENARIOS / scenario).exists()
    good, bad = ANSWERS[scenario]
    runs = {"right": good, **bad}
    with ThreadPoolExecutor(len(runs)) as pool:  # (sipp is light: all at once)
        done = {name: pool.submit(run_against_uas, tmp_path / name.replace(" ", "-"), scenario, answers) for name, answers in runs.items()}
        results = {name: future.result() for name, future in done.items()}
    code, why = results.pop("right")
    assert code == 0, why
    for name, (code, why) in results.items():
        assert code != 0, f"{scenario} passed an answer with {name}:\n{why}"
        assert "regexp" in why, why
