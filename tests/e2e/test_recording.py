"""Recording meetings and streaming them, through the real gateway: a browser (Chromium, 600 Hz), a
SIP room system (baresip with a moving clip and a 1000 Hz tone) and a phone (baresip, 440 Hz)
recorded through the API; the browser's page shows the indicator while it runs; ffprobe reads the
file (H.264 at the composed size and AAC), the tones are in it until the host mutes the phone,
whose tone then leaves it, the picture moves; the entry says who started and stopped it and its size, the download is
the file, deleting removes both. The same meeting streamed to Debian's nginx with its RTMP module:
ffmpeg pulls it and finds both tones and a moving picture, the host's mute in the stream too; nginx
stopped and started again, the gateway reconnects and the calls never notice. A stream whose
server refuses, or takes the connection and never answers, keeps trying with backoff and says so
(API, metrics), its stream key in no log line and no answer. A room set to record automatically
records its phone meeting audio-only until it ends; a room that forbids it refuses. A full disk
(a small tmpfs) ends the recording cleanly (the file plays) while the call goes on; a read-only
folder is refused."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from playwright.sync_api import expect

from tests.support.baresip import Baresip, free_port, tone_level
from tests.support.browser import in_meeting, join
from tests.support.certificates import self_signed
from tests.support.gateway import (
    TEST_CONFIG,
    RunningGateway,
    logged,
    metric,
    participant,
    start_gateway,
    stop_and_check,
    wait_until,
)
from tests.support.nginx_rtmp import NginxRtmp
from tests.support.prompts import wait_heard

# With the Chromium tests, one at a time on one worker (conftest's "serial" group): the room systems'
# 720p30 video and the composed picture's encode here would starve a browser test's bandwidth
# estimation beside them (CI: test_simulcast's squeezed browser never got the lower layer in time)
pytestmark = pytest.mark.xdist_group("serial")

KEY = "live_5f2c9a-council-stream-key"  # (a stream key: in no log line, no answer)
EXPECTED_ERRORS = ("recording failed",)


def config(folder: Path, rtmp_port: int = 1, nginx: NginxRtmp | None = None, silent_port: int = 1) -> str:
    base = TEST_CONFIG.split("\nrooms:")[0]  # (the tests' gateway, with these rooms)
    return base + f"""
recording: {{folder: "{folder}", retention_days: 30}}
rooms:
  - {{id: council, host_pin: "1234"}}
  - {{id: hotline, host_pin: "1234", recording: automatic}}
  - {{id: closed, host_pin: "1234", recording: forbidden, streaming: forbidden}}
  - {{id: live, host_pin: "1234", stream_url: "rtmp://127.0.0.1:{rtmp_port}/live/{KEY}"}}
  - {{id: silent, host_pin: "1234", stream_url: "rtmp://127.0.0.1:{silent_port}/live/{KEY}"}}
  - {{id: stream, host_pin: "1234", stream_url: "{nginx.url(KEY) if nginx else 'rtmp://127.0.0.1:1/live/x'}"}}
"""


def call(gateway: RunningGateway, tmp_path: Path, room: str, name: str, tone_hz: float, video: bool = False) -> Baresip:
    """A guest in `room`: a phone, or a room system sending a moving clip (H.264)."""
    extra: dict[str, object] = {"video": "clip", "video_codecs": ("H264",)} if video else {}
    peer = Baresip(tmp_path / name.replace(" ", "-"), tone_hz=tone_hz, name=name, **extra)  # type: ignore[arg-type]
    peer.start(dial=f"sip:{room}@127.0.0.1:{gateway.sip_port}")
    wait_until(peer.established, 20, what=f"{name}'s call established")
    peer.send_keys("#")  # (a guest: no PIN)
    wait_until(lambda: participant(gateway, room, name), 20, what=f"{name} in {room}")
    return peer


def recording_entry(gateway: RunningGateway, room: str) -> dict[str, object] | None:
    entries = gateway.api("GET", "/api/recordings", params={"room": room}).json()
    return entries[0] if entries else None


def ended(gateway: RunningGateway, recording_id: str) -> dict[str, object] | None:
    entry = gateway.api("GET", f"/api/recordings/{recording_id}").json()
    return entry if entry.get("ended_at") is not None else None


def probe(path: Path) -> dict[str, object]:
    """ffprobe's reading of a file: its streams and duration."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        timeout=30,
    )
    return dict(json.loads(out.stdout))


def sound(path: Path) -> tuple[np.ndarray, int]:
    """The file's audio decoded by FFmpeg, as float samples on the file's clock (each frame where
    its timestamp puts it: a sample's index over the rate is its time in the file, gaps silent),
    and its rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        placed = [(max(0, round((frame.time or 0.0) * rate)), frame.to_ndarray().reshape(-1)) for frame in container.decode(stream)]
    out = np.zeros(max((start + len(chunk) for start, chunk in placed), default=0))
    for start, chunk in placed:
        out[start : start + len(chunk)] = chunk
    return out, rate


def pictures(path: Path, at_s: tuple[float, ...]) -> list[np.ndarray]:
    """Grey pictures of the file's video nearest to these seconds."""
    wanted, out = list(at_s), []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if wanted and frame.time is not None and frame.time >= wanted[0]:
                out.append(frame.to_ndarray(format="gray").astype(np.int16))
                wanted.pop(0)
    return out


def playable_pictures(path: Path) -> int:
    """The pictures FFmpeg decodes from a file cut short; at most its torn last packet is broken."""
    pictures = broken = 0
    with av.open(str(path)) as container:
        for packet in container.demux(video=0):
            try:
                pictures += len(packet.decode())
            except av.error.InvalidDataError:
                broken += 1
    assert broken <= 1, f"{broken} broken packets"
    return pictures


def amplitude(samples: np.ndarray, rate: int, hz: float) -> float:
    """The amplitude of the tone at `hz` in these samples (0..1 of full scale)."""
    window = np.hanning(samples.size)
    spectrum = np.abs(np.fft.rfft(samples * window)) * 2 / window.sum()
    band = np.abs(np.fft.rfftfreq(samples.size, 1 / rate) - hz) < 15
    return float(spectrum[band].max())


def assert_muted_in(before: np.ndarray, after: np.ndarray, rate: int) -> None:
    """The phone (440 Hz) muted by its host is gone from the mix (30 dB down and more: what is
    left is the codec's noise), while the room system (1000 Hz) goes on as loud as before."""
    phone_before, phone_after = amplitude(before, rate, 440), amplitude(after, rate, 440)
    system_before, system_after = amplitude(before, rate, 1000), amplitude(after, rate, 1000)
    assert phone_after < phone_before / 30, (phone_before, phone_after)
    assert 0.5 < system_after / system_before < 2, (system_before, system_after)


def mounted_tmpfs(where: Path, size: str, read_only: bool = False) -> None:
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True, timeout=10)


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxRtmp]:
    """The town's streaming server (started by the test that uses it)."""
    server = NginxRtmp(tmp_path_factory.mktemp("nginx"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def silent_server() -> Iterator[socket.socket]:
    """A 'streaming server' that takes connections and never answers (nor reads): the RTMP
    handshake waits on it for ever."""
    server = socket.create_server(("127.0.0.1", 0))
    taken: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                taken.append(server.accept()[0])
            except (TimeoutError, OSError):
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server
    stop.set()
    thread.join(2)
    for connection in taken:
        connection.close()
    server.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, nginx: NginxRtmp, silent_server: socket.socket) -> Iterator[RunningGateway]:
    folder = tmp_path_factory.mktemp("recordings")
    silent_port = silent_server.getsockname()[1]
    running = start_gateway(
        tmp_path_factory.mktemp("gateway"), config(folder, rtmp_port=free_port(), nginx=nginx, silent_port=silent_port)
    )
    running.folder = folder  # type: ignore[attr-defined]
    yield running
    stop_and_check(running, expected_errors=EXPECTED_ERRORS)
    log = running.log_path.read_text()
    assert KEY not in log  # the stream key, in no log line of the whole run


@pytest.mark.browser  # (baresip's video and the composed picture: the heavy peers' group)
def test_a_meeting_is_recorded_with_its_picture_and_sound_and_a_host_mute_silences_the_phone(
    gateway: RunningGateway, open_participant, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """A browser, a SIP room system and a phone in one meeting, recorded through the API."""
    clara = join(open_participant, gateway, "council", "Clara", 600)
    system = call(gateway, tmp_path, "council", "Room 123", 1000, video=True)
    phone = call(gateway, tmp_path, "council", "Phone", 440)
    try:
        wait_until(lambda: in_meeting(clara), 30, what="Clara in the meeting")
        expect(clara.locator("#recording-badge")).to_be_hidden()
        started = gateway.api("POST", "/api/rooms/council/recording")
        assert started.status_code == 200, started.text
        recording_id = started.json()["recording"]
        assert gateway.api("POST", "/api/rooms/council/recording").json()["error"] == "already_recording"
        room = gateway.api("GET", "/api/rooms/council").json()
        assert room["broadcasting"]["recording"]["started_by"] == "admin"
        entry = recording_entry(gateway, "council")
        assert entry is not None and entry["id"] == recording_id and entry["ended_at"] is None and entry["video"] is True
        file = Path(gateway.folder) / str(entry["file"])  # type: ignore[attr-defined]
        expect(clara.locator("#recording-badge")).to_have_text("Recording")  # (the indicator on her page)
        # (the recording is written as it is made, a fragment a second at most)
        wait_until(lambda: file.exists() and file.stat().st_size > 50_000, 30, what="the recording's first fragment")
        # (4 s with both, then the mute; the entry's start is its file's time 0, its first keyframe)
        started_at = float(gateway.api("GET", f"/api/recordings/{recording_id}").json()["started_at"])
        time.sleep(max(0.0, 4.0 - (time.time() - started_at)))
        phone_id = participant(gateway, "council", "Phone")["id"]  # type: ignore[index]
        muted_at = time.time()
        assert gateway.api("POST", f"/api/rooms/council/participants/{phone_id}/mute").status_code == 200
        time.sleep(4.0)  # (4 s with the phone muted)
        stopped = gateway.api("POST", "/api/rooms/council/recording/stop").json()
        assert stopped == {"stopped": True}
        entry = wait_until(lambda: ended(gateway, recording_id), 20, what="the recording's end")
        assert gateway.api("GET", "/api/rooms/council").json()["broadcasting"]["recording"] is None
        expect(clara.locator("#recording-badge")).to_be_hidden()
        assert system.established() and phone.established() and in_meeting(clara)  # (the meeting goes on)
    finally:
        phone.stop()
        system.stop()
        clara.close()

    assert entry["started_by"] == entry["stopped_by"] == "admin" and entry["end_reason"] is None  # type: ignore[index]
    assert entry["size"] == file.stat().st_size  # type: ignore[index]
    download = gateway.api("GET", f"/api/recordings/{recording_id}/file")
    assert download.status_code == 200 and download.content == file.read_bytes()

    info = probe(file)
    streams = {s["codec_type"]: s for s in info["streams"]}  # type: ignore[attr-defined]
    assert (streams["video"]["codec_name"], streams["video"]["width"], streams["video"]["height"]) == ("h264", 1280, 720)
    assert (streams["audio"]["codec_name"], streams["audio"]["sample_rate"], streams["audio"]["channels"]) == ("aac", "48000", 1)
    duration = float(info["format"]["duration"])  # type: ignore[index]
    assert duration >= 7.0, info["format"]  # type: ignore[index]

    samples, rate = sound(file)
    mute_s = muted_at - float(entry["started_at"])  # type: ignore[index, arg-type]
    before = samples[int(0.5 * rate) : int((mute_s - 0.5) * rate)]
    after = samples[int((mute_s + 1.5) * rate) : int((duration - 0.5) * rate)]
    assert before.size > rate and after.size > rate, (mute_s, duration)
    assert tone_level(before, rate, 1000) > 20 and tone_level(before, rate, 440) > 20  # both, before the mute
    assert amplitude(before, rate, 600) > 0.01 and amplitude(after, rate, 600) > 0.01  # and the browser's, throughout
    assert_muted_in(before, after, rate)

    first, later = pictures(file, (1.0, 3.0))
    # the picture moves: the room system's clip (testsrc2), in a tile of the composed picture
    assert int((np.abs(first - later) > 25).sum()) > 2000

    assert gateway.api("DELETE", f"/api/recordings/{recording_id}").status_code == 204
    assert not file.exists()
    assert gateway.api("GET", f"/api/recordings/{recording_id}").status_code == 404


def test_a_room_set_to_record_automatically_records_its_phone_meeting_audio_only_until_it_ends(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    phone = call(gateway, tmp_path, "hotline", "Caller", 440)
    try:
        entry = wait_until(lambda: recording_entry(gateway, "hotline"), 20, what="the automatic recording")
        assert entry["started_by"] == "automatic" and entry["video"] is False  # type: ignore[index]
        wait_heard(phone, "recording")  # the caller is told ("This meeting is being recorded.")
        file = Path(gateway.folder) / str(entry["file"])  # type: ignore[attr-defined, index]
        wait_until(lambda: file.exists() and file.stat().st_size > 40_000, 30, what="two seconds or so recorded")  # (AAC: 16 kB/s)
    finally:
        phone.stop()
    entry = wait_until(lambda: ended(gateway, str(entry["id"])), 20, what="the recording's end with the meeting")  # type: ignore[index]
    assert entry["stopped_by"] == "meeting_ended" and entry["end_reason"] is None  # type: ignore[index]
    info = probe(file)
    assert [s["codec_name"] for s in info["streams"]] == ["aac"]  # type: ignore[attr-defined]
    samples, rate = sound(file)
    assert tone_level(samples[rate // 2 : 3 * rate // 2], rate, 440) > 20


def test_a_room_that_forbids_recording_refuses_it(gateway: RunningGateway, tmp_path: Path) -> None:
    phone = call(gateway, tmp_path, "closed", "Caller", 440)
    try:
        for what in ("recording", "streaming"):
            refused = gateway.api("POST", f"/api/rooms/closed/{what}")
            assert refused.status_code == 403 and refused.json()["error"] == f"{what}_forbidden"
        assert recording_entry(gateway, "closed") is None
    finally:
        phone.stop()


def streaming(gateway: RunningGateway, room: str) -> dict[str, object]:
    return dict(gateway.api("GET", f"/api/rooms/{room}").json()["broadcasting"]["streaming"] or {})


def test_a_stream_whose_server_is_not_there_keeps_trying_and_says_so_and_its_key_is_never_shown(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    room = gateway.api("GET", "/api/rooms/live").json()
    assert KEY not in json.dumps(room) and room["stream_url"] == "**********"
    phone = call(gateway, tmp_path, "live", "Caller", 440)
    try:
        started = gateway.api("POST", "/api/rooms/live/streaming")
        assert started.status_code == 200 and KEY not in started.text
        assert started.json()["connected"] is False
        wait_until(lambda: streaming(gateway, "live").get("interruptions"), 30, what="the stream's failed connection, reported")
        assert streaming(gateway, "live")["connected"] is False  # (it keeps trying, with backoff)
        assert metric(gateway, "gateway_streaming_connected", room="live") == 0
        assert metric(gateway, "gateway_streaming_interruptions", room="live") >= 1
        reported = wait_until(lambda: logged(gateway, "live stream interrupted; reconnecting", room="live"), 10, what="the interruption logged")
        assert reported[0]["reason"], reported  # type: ignore[index]
        assert participant(gateway, "live", "Caller") is not None and phone.established()  # (the call goes on)
        assert gateway.api("POST", "/api/rooms/live/streaming/stop").json() == {"stopped": True}
        wait_until(lambda: not streaming(gateway, "live"), 20, what="the stream stopped")
    finally:
        phone.stop()


def test_a_streaming_server_that_never_answers_is_given_up_and_tried_again_and_the_meeting_goes_on(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    """FFmpeg's RTMP client would wait on it for ever: the live stream's process is killed after
    its connect timeout and the next one tries again; the call and the API answer throughout."""
    phone = call(gateway, tmp_path, "silent", "Caller", 440)
    try:
        assert gateway.api("POST", "/api/rooms/silent/streaming").status_code == 200
        wait_until(lambda: streaming(gateway, "silent").get("interruptions"), 30, what="the silent server given up")
        reported = wait_until(lambda: logged(gateway, "live stream interrupted; reconnecting", room="silent"), 10, what="the interruption logged")
        assert reported[0]["reason"] == "the streaming server did not answer", reported  # type: ignore[index]
        wait_until(
            lambda: len([line for line in gateway.log_lines() if line.get("event") == "live stream process ended; starting it again"]) >= 2,
            40,
            what="tried again, with backoff",
        )
        assert phone.established() and participant(gateway, "silent", "Caller") is not None
        assert gateway.api("POST", "/api/rooms/silent/streaming/stop").json() == {"stopped": True}
        wait_until(lambda: not streaming(gateway, "silent"), 20, what="the stream stopped")
    finally:
        phone.stop()


@pytest.mark.browser  # (baresip's video and the composed picture: the heavy peers' group)
def test_a_meeting_streamed_to_nginx_is_seen_and_heard_and_the_stream_comes_back_after_the_server_restarts(
    gateway: RunningGateway, nginx: NginxRtmp, tmp_path: Path
) -> None:
    nginx.start()
    system = call(gateway, tmp_path, "stream", "Room 123", 1000, video=True)
    phone = call(gateway, tmp_path, "stream", "Phone", 440)
    try:
        assert gateway.api("POST", "/api/rooms/stream/streaming").status_code == 200
        wait_until(lambda: nginx.publishing(KEY), 30, what="the gateway publishing to nginx")
        wait_until(lambda: streaming(gateway, "stream").get("connected"), 10, what="the stream connected")
        heard = nginx.pull(KEY, 5, tmp_path / "viewer.mp4")
        info = probe(heard)
        kinds = {s["codec_type"]: s["codec_name"] for s in info["streams"]}  # type: ignore[attr-defined]
        assert kinds == {"video": "h264", "audio": "aac"}, info
        samples, rate = sound(heard)
        assert tone_level(samples[rate:], rate, 1000) > 20 and tone_level(samples[rate:], rate, 440) > 20
        first, later = pictures(heard, (1.0, 3.0))
        assert int((np.abs(first - later) > 25).sum()) > 2000  # (moving: the room system's clip)

        phone_id = participant(gateway, "stream", "Phone")["id"]  # type: ignore[index]
        assert gateway.api("POST", f"/api/rooms/stream/participants/{phone_id}/mute").status_code == 200
        muted, _ = sound(nginx.pull(KEY, 4, tmp_path / "muted.mp4"))
        assert_muted_in(samples[rate:], muted[rate:], rate)  # (muted in the stream too)

        # The server goes away and comes back: the gateway reconnects, the meeting never notices
        nginx.stop()
        wait_until(lambda: streaming(gateway, "stream").get("connected") is False, 20, what="the stream's loss noticed")
        nginx.start()
        wait_until(lambda: nginx.publishing(KEY), 40, what="the gateway publishing to nginx again")
        wait_until(lambda: streaming(gateway, "stream").get("connected"), 10, what="the stream connected again")
        assert streaming(gateway, "stream")["interruptions"] == 1
        again = nginx.pull(KEY, 3, tmp_path / "again.mp4")
        assert {s["codec_type"] for s in probe(again)["streams"]} == {"video", "audio"}  # type: ignore[attr-defined]
        assert system.established() and phone.established()
        assert participant(gateway, "stream", "Room 123") is not None
        assert gateway.api("POST", "/api/rooms/stream/streaming/stop").json() == {"stopped": True}
        wait_until(lambda: not nginx.publishing(KEY), 20, what="the stream's end at nginx")
    finally:
        phone.stop()
        system.stop()


@pytest.mark.browser
def test_a_full_disk_ends_the_recording_cleanly_and_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    full, read_only = tmp_path / "small", tmp_path / "read-only"
    mounted_tmpfs(full, "600k")
    mounted_tmpfs(read_only, "1m", read_only=True)
    running = None
    system = None
    try:
        (tmp_path / "gateway").mkdir()
        running = start_gateway(tmp_path / "gateway", config(full))
        system = call(running, tmp_path, "council", "Room 123", 1000, video=True)
        assert running.api("POST", "/api/rooms/council/recording").status_code == 200
        entry = wait_until(
            lambda: (e := recording_entry(running, "council")) and e["ended_at"] is not None and e,  # type: ignore[arg-type]
            60,
            what="the recording's end on the full disk",
        )
        assert entry["end_reason"] == "No space left on device" and entry["size"] > 0  # type: ignore[index]
        assert system.established() and participant(running, "council", "Room 123") is not None
        assert playable_pictures(full / str(entry["file"])) >= 15  # type: ignore[index]
        assert running.api("GET", "/api/rooms/council").json()["broadcasting"]["recording"] is None
        system.stop()
        stop_and_check(running, expected_errors=EXPECTED_ERRORS)

        (tmp_path / "gateway-ro").mkdir()
        running = start_gateway(tmp_path / "gateway-ro", config(read_only))
        system = call(running, tmp_path / "ro", "council", "Room 123", 1000)
        refused = running.api("POST", "/api/rooms/council/recording")
        assert refused.status_code == 503 and refused.json()["error"] == "recording_failed", refused.text
        assert "Read-only file system" in refused.json()["reason"]
        system.stop()
        stop_and_check(running, expected_errors=EXPECTED_ERRORS)
        running = None
    finally:
        if system is not None:
            system.stop()
        if running is not None and running.process.poll() is None:
            running.process.kill()
        subprocess.run(["umount", str(full)], check=False, timeout=10)
        subprocess.run(["umount", str(read_only)], check=False, timeout=10)


@pytest.mark.browser
def test_a_host_streams_and_records_from_the_page_and_every_page_shows_it(
    gateway: RunningGateway, nginx: NginxRtmp, open_participant, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """The host (Chromium) starts the live stream and the recording from the meeting page; the
    guest's page shows both badges (and is told); ffmpeg pulls the stream from nginx: both
    browsers' tones and Chromium's moving fake camera. A guest has no such buttons."""
    if not nginx.running:
        nginx.start()
    anna = join(open_participant, gateway, "stream", "Anna", 600, pin="1234")  # the host
    ben = join(open_participant, gateway, "stream", "Ben", 800)
    wait_until(lambda: in_meeting(anna) and in_meeting(ben), 30, what="Anna and Ben in the meeting")
    try:
        expect(ben.locator("#btn-record")).to_be_hidden()  # (guests neither see nor may)
        # A guest's page that asks anyway (a modified client) is refused, and nothing records
        ben.evaluate("() => window.gatewayClient.send({type: 'broadcast', what: 'recording', on: true})")
        wait_until(
            lambda: (ben.evaluate("() => window.gatewayClient.lastError") or {}).get("request") == "broadcast",
            10,
            what="Ben's recording refused",
        )
        assert ben.evaluate("() => window.gatewayClient.lastError")["code"] == "not_allowed"
        assert recording_entry(gateway, "stream") is None
        anna.get_by_role("button", name="Start live stream").click()
        wait_until(lambda: nginx.publishing(KEY), 30, what="the page's stream reaching nginx")
        expect(ben.locator("#streaming-badge")).to_have_text("Live")
        expect(anna.get_by_role("button", name="Stop live stream")).to_be_visible()
        pulled = nginx.pull(KEY, 5, tmp_path / "viewer.mp4")
        samples, rate = sound(pulled)
        assert amplitude(samples[rate:], rate, 600) > 0.01 and amplitude(samples[rate:], rate, 800) > 0.01
        first, later = pictures(pulled, (1.0, 3.0))
        assert int((np.abs(first - later) > 25).sum()) > 500  # (Chromium's fake camera moves)
        # The server goes away: every page says the stream reconnects, and that it is back
        nginx.stop()
        expect(ben.locator("#streaming-badge")).to_have_text("Live: reconnecting…", timeout=20_000)
        nginx.start()
        expect(ben.locator("#streaming-badge")).to_have_text("Live", timeout=40_000)

        anna.get_by_role("button", name="Start recording").click()
        expect(ben.locator("#recording-badge")).to_have_text("Recording")
        entry = wait_until(lambda: recording_entry(gateway, "stream"), 10, what="the page's recording")
        assert str(entry["started_by"]).startswith("host Anna (")  # type: ignore[index]
        ben.screenshot(path=str(tmp_path / "guest-page.png"))
        anna.get_by_role("button", name="Stop recording").click()
        anna.get_by_role("button", name="Stop live stream").click()
        expect(ben.locator("#recording-badge")).to_be_hidden()
        expect(ben.locator("#streaming-badge")).to_be_hidden()
        ended_entry = wait_until(lambda: ended(gateway, str(entry["id"])), 20, what="the recording's end")  # type: ignore[index]
        assert str(ended_entry["stopped_by"]).startswith("host Anna (")  # type: ignore[index]
        wait_until(lambda: not nginx.publishing(KEY), 20, what="the stream's end at nginx")
    finally:
        anna.close()
        ben.close()


def test_rtmps_reaches_a_server_whose_certificate_is_trusted_and_never_one_whose_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream key over RTMPS goes only to the server the URL names: its certificate checked
    against the certificate authorities the gateway trusts (here SSL_CERT_FILE), and its name.
    FFmpeg's own TLS would have sent it to anyone."""
    trusted, stranger = self_signed(tmp_path / "trusted"), self_signed(tmp_path / "stranger")
    nginx = NginxRtmp(tmp_path / "nginx", tls=[trusted, stranger])
    nginx.start()
    monkeypatch.setenv("SSL_CERT_FILE", str(trusted[0]))
    (tmp_path / "gateway").mkdir()
    rooms = (
        f"  - {{id: secure, host_pin: \"1234\", stream_url: \"{nginx.url(KEY, tls=0)}\"}}\n"
        f"  - {{id: spoofed, host_pin: \"1234\", stream_url: \"{nginx.url('other-' + KEY, tls=1)}\"}}\n"
    )
    running = start_gateway(tmp_path / "gateway", TEST_CONFIG.split("\nrooms:")[0] + "\nrooms:\n" + rooms)
    phones: list[Baresip] = []
    try:
        phones.append(call(running, tmp_path / "a", "secure", "Caller", 440))
        phones.append(call(running, tmp_path / "b", "spoofed", "Caller", 440))
        for room in ("secure", "spoofed"):
            assert running.api("POST", f"/api/rooms/{room}/streaming").status_code == 200
        wait_until(lambda: nginx.publishing(KEY), 30, what="the stream over RTMPS at nginx")
        wait_until(lambda: streaming(running, "secure").get("connected"), 10, what="connected over RTMPS")
        heard, rate = sound(nginx.pull(KEY, 3, tmp_path / "secure.mp4"))
        assert amplitude(heard[rate:], rate, 440) > 0.01
        wait_until(lambda: streaming(running, "spoofed").get("interruptions"), 30, what="the stranger's certificate refused")
        assert not nginx.publishing("other-" + KEY)
        refused = wait_until(lambda: logged(running, "live stream interrupted; reconnecting", room="spoofed"), 10, what="the refusal logged")
        assert refused[0]["reason"] == "the streaming server's certificate was not accepted", refused  # type: ignore[index]
    finally:
        for phone in phones:
            phone.stop()
        stop_and_check(running)
        nginx.stop()
    assert KEY not in running.log_path.read_text()
