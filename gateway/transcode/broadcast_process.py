"""A room's broadcast (recording, live stream) in a process of its own.

`BroadcastProcess` runs `broadcast.Broadcast` in a child (`python -m
gateway.transcode.broadcast_process`, supervised as `child.ChildProcess`): the room's composed
picture (H.264, already encoded by the compositor) and its full mix (48 kHz PCM, one 20 ms frame a
tick) go to it over a pipe; the child encodes the sound to AAC once and muxes both into every
target. Why a process: muxing and writing a file, and above all connecting to and writing to a
streaming server, block; FFmpeg's network code may block for seconds on a server that went
away. In the gateway's process that would stall the audio tick; in the child it stalls nothing
but the broadcast.

A target lives in one child only. If the child dies, its targets end ("the broadcast process
failed": a recording is playable up to its last fragment) and are not taken up again by the next
child (a recording reopened would overwrite its file); their owner decides what follows.

A live stream's connection lives in a process of its own again (`stream_process`: FFmpeg's RTMP
client blocks without a timeout), which reconnects with backoff; the stream's target stays while
it does, and says so: interrupted {name, reason}, resumed {name}.

Messages to the child: init {epoch, video, room}, add {name, url, kind}, remove {name},
v {t, k} + an H.264 access unit, a {at} + PCM, close. From it: started {name, at}, ended {name,
reason (None: stopped as asked), bytes}, interrupted {name, reason}, resumed {name}, keyframe (a
target waits for one), stats {targets: {name: bytes}}.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
import structlog

from gateway.transcode.broadcast import AUDIO_FRAME, FORMATS, Broadcast, TargetState, check_target
from gateway.transcode.child import ChildProcess, ChildWriter, ProtocolError, run_child
from gateway.transcode.stream_process import StreamProcess
from gateway.transcode.video import EncodedVideoFrame

log = structlog.get_logger(__name__)

PIPE_BUFFER_LIMIT = 4 * 1024 * 1024  # frames of the picture are dropped (to the next keyframe) beyond this
STATS_PERIOD_S = 1.0
MAX_TARGETS = 8
CHILD_FAILED = "the broadcast process failed"


@dataclass
class Target:
    """A target as the parent knows it."""

    name: str
    kind: str
    url: str = field(repr=False)  # (a stream's key: in no repr, no log)
    on_started: Callable[[float], None] | None = None
    on_ended: Callable[[str | None, int], None] | None = None
    # a live stream lost its server (why) and reconnects; None: it is back
    on_interrupted: Callable[[str | None], None] | None = None
    started_at: float | None = None  # (time.monotonic) its first picture or sound
    bytes_written: int = 0
    interrupted: str | None = None  # (a live stream: why it is down now)


class BroadcastProcess(ChildProcess):
    """The broadcast of one room, muxed by a child process; see the module's docstring. Every
    method runs on the event loop, and so do the callbacks."""

    module = "gateway.transcode.broadcast_process"
    what = "broadcast process"

    def __init__(
        self,
        *,
        epoch: float,
        video: bool,
        room: str | None = None,
        on_keyframe_wanted: Callable[[], None] | None = None,
    ) -> None:
        self.video_enabled = video
        self.on_keyframe_wanted = on_keyframe_wanted
        self._config = {"epoch": epoch, "video": video, "room": room}
        self._targets: dict[str, Target] = {}
        self._skipping = False  # the picture is dropped to its next keyframe (the pipe was full)
        self.frames_not_sent = 0
        self.audio_not_sent = 0
        super().__init__(room)

    # -- targets ------------------------------------------------------------------------------------

    def add_target(
        self,
        name: str,
        url: str,
        kind: str,
        on_started: Callable[[float], None] | None = None,
        on_ended: Callable[[str | None, int], None] | None = None,
        on_interrupted: Callable[[str | None], None] | None = None,
    ) -> None:
        """A recording (`kind` mp4: `url` an absolute path) or a live stream (flv: an rtmp(s) URL);
        it starts with the next keyframe. `on_ended(reason, bytes)` is called once when it ends:
        reason None when it was stopped (its file is complete), else why it failed. A live stream
        whose server goes away reconnects: `on_interrupted(why)`, and `on_interrupted(None)` once
        it is back."""
        if kind not in FORMATS:
            raise ValueError(f"broadcast targets are {sorted(FORMATS)}, not {kind!r}")
        if name in self._targets:
            raise ValueError(f"a target named {name!r} runs already")
        check_target(url, kind)
        if len(self._targets) >= MAX_TARGETS:
            raise ValueError(f"a room has at most {MAX_TARGETS} broadcast targets")
        self._targets[name] = Target(name, kind, url, on_started, on_ended, on_interrupted)
        self._send({"op": "add", "name": name, "url": url, "kind": kind})  # (or when the child has started)

    def remove_target(self, name: str) -> None:
        """Stops a target; its `on_ended(None, bytes)` follows once the child closed it."""
        if name in self._targets:
            self._send({"op": "remove", "name": name})

    def targets(self) -> dict[str, Target]:
        return dict(self._targets)

    # -- media --------------------------------------------------------------------------------------

    def video(self, frame: EncodedVideoFrame) -> None:
        """A frame of the composed picture (H.264 Annex B)."""
        if not self.video_enabled or not self._targets or not self.running:
            return
        if self._skipping:
            if not frame.keyframe:
                self.frames_not_sent += 1
                return
            self._skipping = False
        if self._buffered() > PIPE_BUFFER_LIMIT:
            self.frames_not_sent += 1
            self._skipping = True
            self._keyframe_wanted()
            return
        self._send({"op": "v", "t": frame.timestamp, "k": frame.keyframe}, frame.data)

    def audio(self, pcm: np.ndarray[Any, Any], at: float | None = None) -> None:
        """One tick of the full mix (48 kHz mono int16), `at` its time.monotonic (now if None)."""
        if not self._targets or not self.running:
            return
        if self._buffered() > PIPE_BUFFER_LIMIT:
            self.audio_not_sent += 1
            return
        self._send(
            {"op": "a", "at": time.monotonic() if at is None else at}, np.asarray(pcm, np.int16).tobytes()
        )

    # -- the child ----------------------------------------------------------------------------------

    def _keyframe_wanted(self) -> None:
        if self.on_keyframe_wanted is not None:
            try:
                self.on_keyframe_wanted()
            except Exception:
                self._log.exception("keyframe request failed")

    def _started(self) -> None:
        self._send({"op": "init", **self._config})
        self._skipping = False
        for target in self._targets.values():  # (added before the child ran: a child that died ended its own)
            self._send({"op": "add", "name": target.name, "url": target.url, "kind": target.kind})

    def _gone(self) -> None:
        for target in list(self._targets.values()):
            self._end(target.name, CHILD_FAILED, target.bytes_written)

    def _end(self, name: str, reason: str | None, written: int) -> None:
        target = self._targets.pop(name, None)
        if target is None:
            return
        target.bytes_written = max(target.bytes_written, written)
        if target.on_ended is not None:
            try:
                target.on_ended(reason, target.bytes_written)
            except Exception:
                self._log.exception("a broadcast target's end was not taken", target=name)

    def _received(self, header: dict[str, Any], payload: bytes) -> None:
        op = header["op"]
        if op == "started":
            name, at = header.get("name"), header.get("at")
            if not isinstance(name, str) or not isinstance(at, (int, float)):
                raise ProtocolError("bad started message")
            target = self._targets.get(name)
            if target is not None:
                target.started_at = float(at)
                if target.on_started is not None:
                    try:
                        target.on_started(float(at))
                    except Exception:
                        self._log.exception("a broadcast target's start was not taken", target=name)
        elif op == "ended":
            name, reason, written = header.get("name"), header.get("reason"), header.get("bytes")
            if (
                not isinstance(name, str)
                or not isinstance(reason, (str, type(None)))
                or not isinstance(written, int)
            ):
                raise ProtocolError("bad ended message")
            self._end(name, reason, written)
        elif op in ("interrupted", "resumed"):
            name, reason = header.get("name"), header.get("reason")
            if not isinstance(name, str) or (op == "interrupted" and not isinstance(reason, str)):
                raise ProtocolError(f"bad {op} message")
            target = self._targets.get(name)
            if target is not None:
                target.interrupted = str(reason)[:200] if op == "interrupted" else None
                if target.on_interrupted is not None:
                    try:
                        target.on_interrupted(target.interrupted)
                    except Exception:
                        self._log.exception("a live stream's interruption was not taken", target=name)
        elif op == "keyframe":
            self._keyframe_wanted()
        elif op == "stats":
            targets = header.get("targets")
            if not isinstance(targets, dict) or not all(isinstance(v, int) for v in targets.values()):
                raise ProtocolError("bad stats message")
            for name, written in targets.items():
                if name in self._targets:
                    self._targets[name].bytes_written = written
        else:
            raise ProtocolError(f"unknown op {op!r}")

    async def close(self, timeout_s: float = 10.0) -> None:
        """Stops every target (files are completed) and the child."""
        await super().close(timeout_s)
        self._gone()


# -- the child's side --------------------------------------------------------------------------------


class _StreamTarget:
    """A live stream of the Broadcast: muxed and pushed by a StreamProcess, which reconnects."""

    def __init__(self, name: str, url: str, video: bool, child: _Child) -> None:
        self.state = TargetState(name, url)
        self._url, self._video, self._child = url, video, child
        self._process: StreamProcess | None = None

    @property
    def open(self) -> bool:
        return self._process is not None

    def start(self, at: float, keyframe: bytes | None) -> None:
        name = self.state.name
        self._process = StreamProcess(
            self._url,
            video=self._video,
            on_connected=lambda: self._child.stream_up(name),
            on_lost=lambda reason: self._child.stream_down(name, reason),
            on_keyframe_wanted=self._child.keyframe_wanted,
        )
        self.state.started_at = at

    def write_video(self, data: bytes, at: float, keyframe: bool) -> None:
        if self._process is not None:
            self._process.video(data, at, keyframe)
            self.state.bytes_written = self._process.bytes_written

    def write_audio(self, packet: av.Packet[Any], at: float) -> None:
        if self._process is not None:
            self._process.audio(bytes(packet), at)

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            self._child.closing(process.close())


class _Child:
    """Runs one Broadcast for the parent's messages."""

    def __init__(self, write: ChildWriter) -> None:
        self._write = write
        self._broadcast: Broadcast | None = None
        self._states: dict[str, TargetState] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._streams_up: set[str] = set()

    def keyframe_wanted(self) -> None:
        self._write({"op": "keyframe"})

    def stream_up(self, name: str) -> None:
        if name not in self._streams_up:
            self._streams_up.add(name)
            self._write({"op": "resumed", "name": name})

    def stream_down(self, name: str, reason: str) -> None:
        self._streams_up.discard(name)
        self._write({"op": "interrupted", "name": name, "reason": reason})

    def closing(self, work: Coroutine[Any, Any, None]) -> None:
        """A live stream's process that is being closed: awaited before the child ends."""
        task = asyncio.get_running_loop().create_task(work)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _started(self, name: str, at: float) -> None:
        self._write({"op": "started", "name": name, "at": at})

    def _ended(self, name: str, reason: str | None, written: int = 0) -> None:
        self._write({"op": "ended", "name": name, "reason": reason, "bytes": written})

    def _failed(self, name: str, reason: str) -> None:
        state = self._states.pop(name, None)
        self._ended(name, reason, state.bytes_written if state is not None else 0)

    def handle(self, header: dict[str, Any], payload: bytes) -> None:
        op = header["op"]
        broadcast = self._broadcast
        if op == "init":
            if broadcast is None:
                video = bool(header["video"])
                self._broadcast = Broadcast(
                    float(header["epoch"]),
                    video=video,
                    on_ended=self._failed,
                    on_keyframe_wanted=self.keyframe_wanted,
                    on_started=self._started,
                    live_stream=lambda name, url: _StreamTarget(name, url, video, self),
                )
            return
        if broadcast is None:
            raise ProtocolError(f"{op!r} before init")
        if op == "v":
            broadcast.video(
                EncodedVideoFrame("H264", payload, int(header["t"]) & 0xFFFFFFFF, bool(header["k"]))
            )
        elif op == "a":
            if len(payload) != 2 * AUDIO_FRAME:
                raise ProtocolError(f"an audio frame of {len(payload)} bytes (one is {2 * AUDIO_FRAME})")
            broadcast.audio(np.frombuffer(payload, np.int16), float(header["at"]))
        elif op == "add":
            name = str(header["name"])
            try:
                self._states[name] = broadcast.add_target(name, str(header["url"]), str(header["kind"]))
            except ValueError as exc:
                self._ended(name, str(exc))
        elif op == "remove":
            name = str(header["name"])
            state = broadcast.remove_target(name)
            if state is not None and state.ended is None:  # (else it failed closing, and said so)
                self._states.pop(name, None)
                self._ended(name, None, state.bytes_written)
        else:
            raise ProtocolError(f"unknown op {op!r}")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(STATS_PERIOD_S)
            if self._broadcast is not None:
                self._write(
                    {"op": "stats", "targets": {t.name: t.bytes_written for t in self._broadcast.targets()}}
                )

    async def close(self) -> None:
        broadcast = self._broadcast
        if broadcast is not None:
            for state in broadcast.targets():
                self.handle({"op": "remove", "name": state.name}, b"")
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=10.0)


def main() -> None:
    """The child: muxes until the parent closes its stdin (or says close)."""
    run_child(_Child, "broadcast process")


if __name__ == "__main__":
    main()
