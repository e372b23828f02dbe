"""The broadcast in its own process: a recording made through the real child and read back by
FFmpeg, a child killed mid-recording (the target ends and says so, its file still plays, the next
recording works), targets refused before they reach FFmpeg, and a child that gets malformed
messages stops with a log line, not a traceback."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from gateway.transcode.broadcast_process import CHILD_FAILED, BroadcastProcess, Target
from gateway.transcode.child import encode_message
from gateway.transcode.video import VIDEO_CLOCK, EncodedVideoFrame
from tests.unit.transcode.test_broadcast import EPOCH, SIZE, picture, read, tone
from tests.unit.transcode.test_compositor import until
from tests.unit.transcode.test_compositor_process import assert_child_refuses


class Ends:
    """A target's on_started and on_ended."""

    def __init__(self) -> None:
        self.started: list[float] = []
        self.ended: list[tuple[str | None, int]] = []

    def start(self, at: float) -> None:
        self.started.append(at)

    def end(self, reason: str | None, written: int) -> None:
        self.ended.append((reason, written))


def feed(broadcast: BroadcastProcess, frames: list[EncodedVideoFrame], seconds: float, first_tick: int = 0) -> None:
    """The picture and 440 Hz in the mix, in their order in time (as fast as the pipe takes them)."""
    video = iter(f for f in frames if f.timestamp >= first_tick * 0.02 * VIDEO_CLOCK)
    pending = next(video, None)
    for tick in range(first_tick, first_tick + int(seconds * 50)):
        at = EPOCH + tick * 0.02
        while pending is not None and EPOCH + pending.timestamp / VIDEO_CLOCK <= at:
            broadcast.video(pending)
            pending = next(video, None)
        broadcast.audio(tone(tick), at)


async def test_a_recording_made_by_the_child_holds_the_picture_and_the_mix(tmp_path: Path) -> None:
    broadcast = BroadcastProcess(epoch=EPOCH, video=True, room="council")
    ends = Ends()
    try:
        await until(lambda: broadcast.running, 20)
        broadcast.add_target("recording", str(tmp_path / "council.mp4"), "mp4", ends.start, ends.end)
        feed(broadcast, picture(3), 3)
        await until(lambda: ends.started, 20)
        assert ends.started == [EPOCH]  # the first keyframe's time
        broadcast.remove_target("recording")
        await until(lambda: ends.ended, 20)
        [(reason, written)] = ends.ended
        assert reason is None and written == (tmp_path / "council.mp4").stat().st_size > 0
        assert broadcast.targets() == {}
    finally:
        await broadcast.close()
    info = read(tmp_path / "council.mp4")
    assert info["streams"] == ["audio", "video"] and info["broken"] == 0
    assert info["video"] == ("h264", *SIZE) and info["audio"] == "aac"
    assert 2.8 <= float(info["duration"]) <= 3.2  # type: ignore[arg-type]
    assert abs(float(info["peak_hz"]) - 440) < 5  # type: ignore[arg-type]


async def test_a_child_killed_mid_recording_ends_the_recording_which_still_plays(tmp_path: Path) -> None:
    broadcast = BroadcastProcess(epoch=EPOCH, video=True, room="council")
    first, second = Ends(), Ends()
    frames = picture(4)
    try:
        await until(lambda: broadcast.running, 20)
        broadcast.add_target("recording", str(tmp_path / "first.mp4"), "mp4", first.start, first.end)
        feed(broadcast, frames, 2.5)  # (fragments end at keyframes: seconds 0 and 1 are written once it took them)
        await until(lambda: (tmp_path / "first.mp4").exists() and (tmp_path / "first.mp4").stat().st_size > 20_000, 20)
        pid = broadcast.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await until(lambda: first.ended, 20)
        assert first.ended[0][0] == CHILD_FAILED
        await until(lambda: broadcast.running and broadcast.pid != pid, 20)
        assert broadcast.restarts == 1
        # the next child takes a new recording; the old one is not taken up again (its file stays)
        broadcast.add_target("recording", str(tmp_path / "second.mp4"), "mp4", second.start, second.end)
        feed(broadcast, frames, 1.5, first_tick=125)
        await until(lambda: second.started, 20)
        broadcast.remove_target("recording")
        await until(lambda: second.ended, 20)
        assert second.ended[0][0] is None
    finally:
        await broadcast.close()
    cut = read(tmp_path / "first.mp4")
    # (at least its first fragment, second 0: when the child died it may not have had the next)
    assert cut["streams"] == ["audio", "video"] and int(cut["pictures"]) >= 25  # type: ignore[call-overload]
    assert abs(float(cut["peak_hz"]) - 440) < 5  # type: ignore[arg-type]
    assert int(read(tmp_path / "second.mp4")["pictures"]) >= 25  # type: ignore[call-overload]


async def test_a_target_that_cannot_start_ends_with_a_reason_and_the_room_goes_on(tmp_path: Path) -> None:
    broadcast = BroadcastProcess(epoch=EPOCH, video=False)
    missing, good = Ends(), Ends()
    try:
        await until(lambda: broadcast.running, 20)
        broadcast.add_target("missing", str(tmp_path / "no" / "such" / "folder.mp4"), "mp4", missing.start, missing.end)
        broadcast.add_target("good", str(tmp_path / "audio.mp4"), "mp4", good.start, good.end)
        feed(broadcast, [], 1)
        await until(lambda: missing.ended and good.started, 20)
        assert missing.ended == [("No such file or directory", 0)] and missing.started == []
        broadcast.remove_target("good")
        await until(lambda: good.ended, 20)
    finally:
        await broadcast.close()
    info = read(tmp_path / "audio.mp4")
    assert info["streams"] == ["audio"] and abs(float(info["peak_hz"]) - 440) < 5  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("file:/etc/passwd", "mp4"),  # only an absolute path is a file
        ("relative.mp4", "mp4"),
        ("http://example.org/x", "flv"),  # only rtmp(s) is a stream
        ("pipe:1", "flv"),
        ("rtmp://host/live/key with space", "flv"),
    ],
)
async def test_targets_other_than_files_and_rtmp_are_refused_before_ffmpeg(url: str, kind: str) -> None:
    broadcast = BroadcastProcess(epoch=EPOCH, video=False)
    try:
        with pytest.raises(ValueError) as refused:
            broadcast.add_target("x", url, kind)
        assert url not in str(refused.value)  # (a stream URL holds its key)
        assert broadcast.targets() == {}
    finally:
        await broadcast.close()


async def test_the_child_refuses_what_the_parent_let_through_by_mistake(tmp_path: Path) -> None:
    """The child checks targets too: an add that names an http URL ends at once, with the reason."""
    broadcast = BroadcastProcess(epoch=EPOCH, video=False)
    ends = Ends()
    try:
        await until(lambda: broadcast.running, 20)
        broadcast._targets["x"] = Target("x", "flv", "http://example.org/secret-key", ends.start, ends.end)
        broadcast._send({"op": "add", "name": "x", "url": "http://example.org/secret-key", "kind": "flv"})
        await until(lambda: ends.ended, 20)
        reason, _ = ends.ended[0]
        assert reason == "a live stream goes to an rtmp:// or rtmps:// URL"
    finally:
        await broadcast.close()


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        encode_message({"op": "a", "at": 1.0}, bytes(1920)),  # before init
        encode_message({"op": "init", "epoch": 0, "video": True}) + encode_message({"op": "a", "at": 1.0}, bytes(7)),
        encode_message({"op": "init", "epoch": 0, "video": True}) + encode_message({"op": "v", "k": True}, b"x"),
        encode_message({"op": "init", "epoch": 0, "video": True}) + encode_message({"op": "dance"}),
    ],
)
def test_the_child_refuses_a_malformed_message_with_a_log_line_not_a_traceback(garbage: bytes) -> None:
    assert_child_refuses("gateway.transcode.broadcast_process", garbage)


async def test_closing_completes_the_files_of_running_targets(tmp_path: Path) -> None:
    broadcast = BroadcastProcess(epoch=EPOCH, video=False)
    ends = Ends()
    await until(lambda: broadcast.running, 20)
    broadcast.add_target("recording", str(tmp_path / "a.mp4"), "mp4", ends.start, ends.end)
    feed(broadcast, [], 1)
    await until(lambda: ends.started, 20)
    await broadcast.close()
    assert ends.ended and ends.ended[0][0] is None and ends.ended[0][1] > 0
    assert abs(float(read(tmp_path / "a.mp4")["peak_hz"]) - 440) < 5  # type: ignore[arg-type]
