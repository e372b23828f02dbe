"""Recording meetings and streaming them, through the real gateway: a SIP room system (baresip with
a moving clip and a 1000 Hz tone) and a phone (baresip, 440 Hz) recorded through the API; ffprobe
reads the file (H.264 at the composed size and AAC), both tones are in it until the host mutes the
phone, the picture moves; the entry says who started and stopped it and its size, the download is
the file, deleting removes both. A room set to record automatically records its phone meeting
audio-only until it ends; a room that forbids it refuses; a stream whose server is not there ends
with a reason and an alert, its stream key in no log line and no answer. A full disk (a small
tmpfs) ends the recording cleanly (the file plays) while the call goes on; a read-only folder is
refused."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from tests.support.baresip import Baresip, free_port, tone_level
from tests.support.gateway import (
    ADMIN_TOKEN,
    RunningGateway,
    participant,
    start_gateway,
    stop_and_check,
    wait_until,
)

KEY = "live_5f2c9a-council-stream-key"  # (a stream key: in no log line, no answer)
EXPECTED_ERRORS = ("streaming failed", "recording failed")


def config(folder: Path, rtmp_port: int = 1) -> str:
    return f"""
server: {{host: 127.0.0.1, port: 0}}
admin: {{token: {ADMIN_TOKEN}}}
logging: {{level: debug, format: json}}
sip: {{host: 127.0.0.1, port: 0, language: en, digit_timeout_s: 2}}
storage: {{path: null}}
admission: {{max_loop_lag_ms: 1000}}
recording: {{folder: "{folder}", retention_days: 30}}
rooms:
  - {{id: council, host_pin: "1234"}}
  - {{id: hotline, host_pin: "1234", recording: automatic}}
  - {{id: closed, host_pin: "1234", recording: forbidden, streaming: forbidden}}
  - {{id: live, host_pin: "1234", stream_url: "rtmp://127.0.0.1:{rtmp_port}/live/{KEY}"}}
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
    """The file's audio decoded by FFmpeg, as float samples, and its rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks = [frame.to_ndarray().reshape(-1) for frame in container.decode(stream)]
        return np.concatenate(chunks).astype(np.float64), stream.codec_context.sample_rate


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


def mounted_tmpfs(where: Path, size: str, read_only: bool = False) -> None:
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True, timeout=10)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    folder = tmp_path_factory.mktemp("recordings")
    running = start_gateway(tmp_path_factory.mktemp("gateway"), config(folder, rtmp_port=free_port()))
    running.folder = folder  # type: ignore[attr-defined]
    yield running
    stop_and_check(running, expected_errors=EXPECTED_ERRORS)
    log = running.log_path.read_text()
    assert KEY not in log  # the stream key, in no log line of the whole run


@pytest.mark.browser  # (baresip's video and the composed picture: the heavy peers' group)
def test_a_meeting_is_recorded_with_its_picture_and_sound_and_a_host_mute_silences_the_phone(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    system = call(gateway, tmp_path, "council", "Room 123", 1000, video=True)
    phone = call(gateway, tmp_path, "council", "Phone", 440)
    try:
        started = gateway.api("POST", "/api/rooms/council/recording")
        assert started.status_code == 200, started.text
        recording_id = started.json()["recording"]
        assert gateway.api("POST", "/api/rooms/council/recording").json()["error"] == "already_recording"
        room = gateway.api("GET", "/api/rooms/council").json()
        assert room["broadcasting"]["recording"]["started_by"] == "admin"
        entry = recording_entry(gateway, "council")
        assert entry is not None and entry["id"] == recording_id and entry["ended_at"] is None and entry["video"] is True
        file = Path(gateway.folder) / str(entry["file"])  # type: ignore[attr-defined]
        # (the recording is written as it is made, a fragment a second at most)
        wait_until(lambda: file.exists() and file.stat().st_size > 50_000, 30, what="the recording's first fragment")
        time.sleep(max(0.0, 4.0 - (time.time() - float(entry["started_at"]))))  # (4 s with both, then the mute)
        phone_id = participant(gateway, "council", "Phone")["id"]  # type: ignore[index]
        muted_at = time.time()
        assert gateway.api("POST", f"/api/rooms/council/participants/{phone_id}/mute").status_code == 200
        time.sleep(4.0)  # (4 s with the phone muted)
        stopped = gateway.api("POST", "/api/rooms/council/recording/stop").json()
        assert stopped == {"stopped": True}
        entry = wait_until(lambda: ended(gateway, recording_id), 20, what="the recording's end")
        assert gateway.api("GET", "/api/rooms/council").json()["broadcasting"]["recording"] is None
        assert system.established() and phone.established()  # (the meeting goes on)
    finally:
        phone.stop()
        system.stop()

    assert entry["started_by"] == entry["stopped_by"] == "admin" and entry["end_reason"] is None  # type: ignore[index]
    assert entry["size"] == file.stat().st_size  # type: ignore[index]
    download = gateway.api("GET", f"/api/recordings/{recording_id}/file")
    assert download.status_code == 200 and download.content == file.read_bytes()

    info = probe(file)
    streams = {s["codec_type"]: s for s in info["streams"]}  # type: ignore[attr-defined]
    assert (streams["video"]["codec_name"], streams["video"]["width"], streams["video"]["height"]) == ("h264", 1280, 720)
    assert (streams["audio"]["codec_name"], streams["audio"]["sample_rate"], streams["audio"]["channels"]) == ("aac", "48000", 1)
    duration = float(info["format"]["duration"])  # type: ignore[index]
    assert duration >= 6.0, info["format"]  # type: ignore[index]

    samples, rate = sound(file)
    mute_s = muted_at - float(entry["started_at"])  # type: ignore[index, arg-type]
    before = samples[int(0.5 * rate) : int((mute_s - 0.5) * rate)]
    after = samples[int((mute_s + 1.5) * rate) : int((duration - 0.5) * rate)]
    assert before.size > rate and after.size > rate, (mute_s, duration)
    assert tone_level(before, rate, 1000) > 20 and tone_level(before, rate, 440) > 20  # both, before the mute
    # The phone muted in it too: its tone falls to the codec's noise (measured: 126 dB above the
    # median of the spectrum before, 52 after, beside the room system's 129; AAC of pure tones has
    # a very low floor), the room system's stays
    assert tone_level(after, rate, 1000) > 100
    assert tone_level(after, rate, 440) < min(tone_level(before, rate, 440), tone_level(after, rate, 1000)) - 50

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


def test_a_stream_whose_server_is_not_there_ends_with_an_alert_and_its_key_is_never_shown(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    room = gateway.api("GET", "/api/rooms/live").json()
    assert KEY not in json.dumps(room) and room["stream_url"] == "**********"
    phone = call(gateway, tmp_path, "live", "Caller", 440)
    try:
        started = gateway.api("POST", "/api/rooms/live/streaming")
        assert started.status_code == 200 and KEY not in started.text
        wait_until(
            lambda: gateway.api("GET", "/api/rooms/live").json()["broadcasting"]["streaming"] is None,
            30,
            what="the stream's end (nothing listens on its port)",
        )
        failed = [line for line in gateway.log_lines() if line.get("event") == "streaming failed"]
        assert failed and failed[-1]["room"] == "live" and failed[-1]["reason"], failed
        assert participant(gateway, "live", "Caller") is not None and phone.established()  # (the call goes on)
    finally:
        phone.stop()


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
