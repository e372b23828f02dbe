"""The compositor in its own process: the pipe protocol (bounded, no pickle, malformed input is an
error, never a crash), and the real child process: it composes, comes back after kill -9 with the
room's state and continuous timestamps, survives undecodable cameras, and refuses garbage."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from gateway.transcode.compositor import OutputSpec, Tile
from gateway.transcode.compositor_process import (
    MAX_MESSAGE,
    CompositorProcess,
    ProtocolError,
    encode_message,
    read_message,
)
from gateway.transcode.layout import Layout, arrange
from gateway.transcode.video import EncodedVideoFrame
from tests.unit.transcode.test_compositor import Received, camera_frame, looks, until

SMALL = OutputSpec("H264", "42e01f", width=320, height=180, fps=15, bitrate_bps=300_000)
GREEN = (0, 200, 0)


def reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_messages_go_through_the_pipe_as_they_were() -> None:
    data = encode_message({"op": "frame", "p": "anna", "k": True}, b"\x00\x01payload") + encode_message({"op": "close"})
    reader = reader_of(data)
    assert await read_message(reader) == ({"op": "frame", "p": "anna", "k": True}, b"\x00\x01payload")
    assert await read_message(reader) == ({"op": "close"}, b"")
    assert await read_message(reader) is None  # the end of the stream, between messages


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x00\x01x",  # shorter than its header length
        (MAX_MESSAGE + 1).to_bytes(4, "big"),  # larger than any message may be
        b"\x00\x00\x00\x08\x00\x10abcdef",  # header longer than the message
        b"\x00\x00\x00\x06\x00\x04{op:",  # header not JSON
        b"\x00\x00\x00\x04\x00\x02[]",  # JSON, not an object
        b"\x00\x00\x00\x0a\x00\x08{\"op\":1}",  # op not a string
        b"\x00\x00\x00\x20\x00\x02{}",  # the stream ends inside the message
        b"\x00\x00",  # ... inside the length
        b"\x00\x00\x00\x05\x00\x03\xff\xfe{",  # not UTF-8
    ],
)
async def test_malformed_messages_are_protocol_errors(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        await read_message(reader_of(data))


class Feed:
    """A camera sending a green VP8 keyframe 15 times a second into a CompositorProcess."""

    def __init__(self, compositor: CompositorProcess, frame: EncodedVideoFrame) -> None:
        self.compositor, self.frame = compositor, frame
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.compositor.on_frame("anna", self.frame)
            await asyncio.sleep(1 / 15)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_the_child_composes_and_comes_back_after_kill_9_where_it_was() -> None:
    asked: list[str] = []
    tiles: list[dict[str, tuple[int, int]]] = []
    compositor = CompositorProcess(
        max_fps=15, canvas=(320, 180), room="r", request_keyframe_from=asked.append, on_tiles=tiles.append
    )
    received = Received()
    compositor.set_scene([Tile("anna", "Anna")], Layout.SPEAKER, None, [])
    compositor.add_output("room-system", SMALL, received)
    feed = Feed(compositor, camera_frame(GREEN, 320, 180))
    (_, rect), = arrange(Layout.SPEAKER, ["anna"], "anna", 320, 180)
    try:
        await until(lambda: len(received.frames) >= 10 and looks(received.last_picture(), rect, GREEN), 20)
        assert received.frames[0].keyframe
        await until(lambda: compositor.counters()["encodes"] >= 10, 2)  # (the child reports every 0.1 s)
        counters = compositor.counters()
        assert counters["encoders"] == 1 and counters["decodes"] >= 1
        assert counters["restarts"] == 0
        assert tiles == [{"anna": (320, 180)}]  # (her tile's size, told once: the picture is hers alone)
        first_pid = compositor.pid
        assert first_pid is not None

        os.kill(first_pid, signal.SIGKILL)
        await until(lambda: compositor.restarts == 1, 10)
        # (counted once the old child's output ended, before the new one runs: frames the old one
        # wrote before dying are all in, none of the new one's yet)
        before = len(received.frames)
        last_timestamp = received.frames[-1].timestamp
        await until(lambda: compositor.pid not in (None, first_pid), 10)
        await until(lambda: len(received.frames) >= before + 10, 20)
        again = received.frames[before:]
        # the new child's first frame is an IDR, the picture is Anna's camera again, and the RTP
        # clock went on (the epoch is the parent's): nothing for the room system to resynchronise
        assert again[0].keyframe
        assert again[0].timestamp > last_timestamp
        await until(lambda: looks(received.last_picture(), rect, GREEN), 20)
        await until(lambda: compositor.counters()["encodes"] >= counters["encodes"] + 10, 2)  # summed over both children
        assert tiles == [{"anna": (320, 180)}] * 2  # (the new child tells them afresh)
        pid = compositor.pid
    finally:
        feed.task.cancel()
        await compositor.close()
    assert pid is not None
    await until(lambda: not alive(pid), 5)


@pytest.mark.parametrize(
    "tiles",
    [
        [],  # not an object
        {"anna": [320]},
        {"anna": [0, 180]},
        {"anna": [321, 180]},  # larger than the canvas
        {"anna": [True, 180]},
        {"anna": ["320", "180"]},
        {f"p{i}": [10, 10] for i in range(65)},  # more tiles than a picture has
    ],
)
async def test_tile_sizes_from_the_child_are_checked(tiles: object) -> None:
    told: list[dict[str, tuple[int, int]]] = []
    compositor = CompositorProcess(canvas=(320, 180), on_tiles=told.append)
    try:
        compositor._received({"op": "tiles", "tiles": {"anna": [160, 90]}}, b"")
        assert told == [{"anna": (160, 90)}]
        with pytest.raises(ProtocolError):  # (the child is killed and started again)
            compositor._received({"op": "tiles", "tiles": tiles}, b"")
        assert len(told) == 1
    finally:
        await compositor.close()


async def test_an_undecodable_camera_costs_a_keyframe_request_not_the_child() -> None:
    asked: list[str] = []
    compositor = CompositorProcess(max_fps=15, canvas=(320, 180), request_keyframe_from=asked.append)
    received = Received()
    compositor.set_scene([Tile("anna", "Anna")], Layout.SPEAKER, None, [])
    compositor.add_output("room-system", SMALL, received)
    feed = Feed(compositor, EncodedVideoFrame("VP8", b"\x00\x9d\x01\x2a" + bytes(range(256)) * 8, 0, True))
    try:
        await until(lambda: compositor.counters()["decode_errors"] >= 3 and "anna" in asked, 20)
        await until(lambda: len(received.frames) >= 10, 20)  # Anna's name tile goes on
        assert compositor.restarts == 0 and compositor.pid is not None
    finally:
        feed.task.cancel()
        await compositor.close()


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        encode_message({"op": "frame", "p": "x", "c": "VP8", "t": 0, "k": True}),  # before init
        encode_message({"op": "init", "max_fps": 15, "speaker_hold_s": 1, "canvas": [320, 180], "epoch": 0})
        + encode_message({"op": "output", "r": "x", "spec": {"codec": "MPEG2"}}),
        encode_message({"op": "init", "max_fps": 15, "speaker_hold_s": 1, "canvas": [320, 180], "epoch": 0})
        + encode_message({"op": "scene", "tiles": 7}),
    ],
)
def test_the_child_refuses_a_malformed_message_with_a_log_line_not_a_traceback(garbage: bytes) -> None:
    assert_child_refuses("gateway.transcode.compositor_process", garbage)


def assert_child_refuses(module: str, garbage: bytes) -> None:
    """The child process `module`, sent `garbage`, stops with exit code 2 and a log line, no
    traceback, and writes nothing but messages on stdout."""
    child = subprocess.run(
        [sys.executable, "-m", module],
        input=garbage,
        capture_output=True,
        timeout=30,
        env={**os.environ, "GATEWAY_LOG_FORMAT": "json"},
    )
    assert child.returncode == 2, child.stderr
    assert b"malformed message from the gateway" in child.stderr
    assert b"Traceback" not in child.stderr
    assert child.stdout == b"" or child.stdout.startswith(b"\x00")  # (nothing but messages on stdout)


async def test_a_child_that_falls_behind_gets_no_backlog_only_frames_from_the_next_keyframe() -> None:
    """The child stopped (SIGSTOP: as good as stuck): camera frames pile up in the pipe until the
    bound, then are dropped, and the camera is asked for a keyframe; once the child runs again,
    frames go to it from the next keyframe on (a delta frame after a gap would decode to garbage)."""
    asked: list[str] = []
    compositor = CompositorProcess(max_fps=15, canvas=(320, 180), request_keyframe_from=asked.append)
    received = Received()
    compositor.set_scene([Tile("anna", "Anna")], Layout.SPEAKER, None, [])
    compositor.add_output("room-system", SMALL, received)
    try:
        await until(lambda: compositor.pid is not None and len(received.frames) >= 3, 20)
        pid = compositor.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        big = EncodedVideoFrame("VP8", bytes(200_000), 0, False)
        for _ in range(60):  # 12 MB: more than the pipe and the bound of 4 MB together
            compositor.on_frame("anna", big)
        dropped = compositor.frames_not_sent
        assert dropped > 0 and asked == ["anna"]
        compositor.on_frame("anna", big)  # a delta frame after the gap: dropped as well
        assert compositor.frames_not_sent == dropped + 1
        os.kill(pid, signal.SIGCONT)
        await until(lambda: compositor.counters()["frames_not_sent"] == dropped + 1 and len(received.frames) >= 10, 20)
        compositor.on_frame("anna", camera_frame(GREEN, 320, 180))  # the keyframe: sent again
        assert compositor.frames_not_sent == dropped + 1
        assert compositor.restarts == 0
    finally:
        await compositor.close()
