"""A room's compositor in a process of its own, restarted when it dies.

`CompositorProcess` has the loop-side interface of `compositor.Compositor` (set_scene, on_frame,
add_output, remove_output, set_bitrate, request_keyframe, remove_source, counters, close) and runs
the real `Compositor` in a child process (`python -m gateway.transcode.compositor_process`), which
the room's cameras go to as encoded frames and from which the composed, encoded frames come back.
Encoded video is small (a 720p camera about 6 kB a frame), so the pipe costs little; all decoding,
composing and encoding happens in the child.

Why a process, not threads in the gateway's: measured with bench/video_legs.py on this 2-core
machine, one room system's composition on threads made 0.3-1.5 % of the room's 20 ms mixer ticks
late (up to 19 ms): the Python parts of composing hold the GIL, and a video thread at lower CPU
priority that holds it while the OS runs something else stalls the event loop (a priority
inversion niceness cannot fix). In its own process the compositor shares no lock with the audio.
And libavcodec decodes camera frames that came from the internet: if one ever crashes it, the
child dies, not the gateway; the room's calls go on, the child is started again (backoff 0, 1, 2,
5, 10 s), given the room's scene and outputs, and the picture comes back with the next keyframes.
RTP timestamps go on where they were (the epoch is the parent's; CLOCK_MONOTONIC is one clock
for every process of the machine).

The protocol, both ways over the child's stdin and stdout: messages of
[u32 length][u16 header length][header: a JSON object][payload bytes]. No pickle either way: the
child handles untrusted media, so what it says is read as data only, bounded in size, and the
child is killed (and started again) when it says something malformed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import struct
import sys
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import structlog

from gateway.logging import active_config
from gateway.transcode.compositor import Compositor, OutputSpec, Tile
from gateway.transcode.layout import Layout
from gateway.transcode.video import EncodedVideoFrame, lower_priority

log = structlog.get_logger(__name__)

MAX_MESSAGE = 8 * 1024 * 1024  # a 1080p keyframe is well under 1 MB
MAX_HEADER = 64 * 1024
PIPE_BUFFER_LIMIT = 4 * 1024 * 1024  # camera frames are dropped (to the next keyframe) beyond this
RESTART_BACKOFF_S = (0.0, 1.0, 2.0, 5.0, 10.0)
HEALTHY_AFTER_S = 60.0  # a child that ran this long starts the backoff afresh when it dies
STATS_PERIOD_S = 0.1
MAX_TILES = 64  # cameras in one `tiles` message (a grid shows 16)
_LENGTH = struct.Struct(">I")
_HEADER_LENGTH = struct.Struct(">H")
# The counters that add up over the children of one room (the others describe the live child).
_SUMMED = ("compositions", "frames_out", "late_frames", "frames_dropped", "decode_errors", "encode_errors", "decodes", "encodes")


class ProtocolError(Exception):
    """A message that breaks the framing or the header format."""


def encode_message(header: dict[str, Any], payload: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    if len(head) > MAX_HEADER:
        raise ProtocolError("header too long")
    return _LENGTH.pack(_HEADER_LENGTH.size + len(head) + len(payload)) + _HEADER_LENGTH.pack(len(head)) + head + payload


async def read_message(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes] | None:
    """The next message, None at the end of the stream. Raises ProtocolError."""
    try:
        (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("stream ended inside a length") from None
        return None
    if not _HEADER_LENGTH.size <= length <= MAX_MESSAGE:
        raise ProtocolError(f"message length {length} out of bounds")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise ProtocolError("stream ended inside a message") from None
    (head_length,) = _HEADER_LENGTH.unpack_from(body)
    if _HEADER_LENGTH.size + head_length > length:
        raise ProtocolError("header longer than its message")
    try:
        header = json.loads(body[_HEADER_LENGTH.size : _HEADER_LENGTH.size + head_length])
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("header is not JSON") from None
    if not isinstance(header, dict) or not isinstance(header.get("op"), str):
        raise ProtocolError("header is not an object with an op")
    return header, body[_HEADER_LENGTH.size + head_length :]


def _spec_from(data: Any) -> OutputSpec:
    if not isinstance(data, dict):
        raise ProtocolError("output spec is not an object")
    try:
        return OutputSpec(**data)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"bad output spec: {exc}") from None


@dataclass
class _Output:
    spec: OutputSpec
    deliver: Callable[[EncodedVideoFrame], None]
    cap_bps: int | None = None


# -- the parent's side (the gateway's event loop) ------------------------------------------------


class CompositorProcess:
    """The composed picture of one room, made by a child process; see the module's docstring.
    Every method is called on the event loop; `deliver` and `on_keyframe_needed` are called on it."""

    def __init__(
        self,
        *,
        max_fps: int = 30,
        speaker_hold_s: float = 2.0,
        canvas: tuple[int, int] = (1280, 720),
        room: str | None = None,
        request_keyframe_from: Callable[[str], None] | None = None,
        on_tiles: Callable[[dict[str, tuple[int, int]]], None] | None = None,
    ) -> None:
        self.on_keyframe_needed = request_keyframe_from
        self.on_tiles = on_tiles
        self._canvas = canvas
        self._config = {
            "max_fps": max_fps,
            "speaker_hold_s": speaker_hold_s,
            "canvas": list(canvas),
            "room": room,
            "epoch": time.monotonic(),
        }
        logging = active_config()  # (the child logs as the gateway does, to the same stderr)
        self._env = {**os.environ, "GATEWAY_LOG_LEVEL": logging.level, "GATEWAY_LOG_FORMAT": logging.format}
        root = str(Path(__file__).resolve().parents[2])  # (the child imports this very gateway)
        self._env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        self._log = log.bind(room=room) if room else log
        self._scene: dict[str, Any] | None = None
        self._outputs: dict[str, _Output] = {}
        self._skipping: set[str] = set()  # cameras dropped to their next keyframe (the pipe was full)
        self._process: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._closed = False
        self._stats: dict[str, Any] = {}  # the live child's last report
        self._base: dict[str, int] = dict.fromkeys(_SUMMED, 0)  # what children before it did
        self.restarts = 0
        self.frames_not_sent = 0
        self._task = asyncio.get_running_loop().create_task(self._supervise())

    # -- the room's state ---------------------------------------------------------------------------

    def set_scene(
        self,
        tiles: Sequence[Tile],
        layout: Layout,
        spotlight: str | None,
        speaking: Collection[str],
        exclude: str | None = None,
    ) -> None:
        self._scene = {
            "op": "scene",
            "tiles": [[t.participant, t.name, t.has_video] for t in tiles],
            "layout": Layout(layout).value,
            "spotlight": spotlight,
            "speaking": sorted(speaking),
            "exclude": exclude,
        }
        self._send(self._scene)

    def on_frame(self, participant: str, frame: EncodedVideoFrame) -> None:
        writer = self._writer
        if writer is None or self._closed:
            return  # (a child that starts asks for keyframes itself)
        if participant in self._skipping:
            if not frame.keyframe:
                self.frames_not_sent += 1
                return
            self._skipping.discard(participant)
        if writer.transport.get_write_buffer_size() > PIPE_BUFFER_LIMIT:
            self.frames_not_sent += 1
            self._skipping.add(participant)
            self._ask_keyframe(participant)
            return
        header = {"op": "frame", "p": participant, "c": frame.codec, "t": frame.timestamp, "k": frame.keyframe}
        self._send(header, frame.data)

    def remove_source(self, participant: str) -> None:
        self._skipping.discard(participant)
        self._send({"op": "remove_source", "p": participant})

    # -- outputs ------------------------------------------------------------------------------------

    def add_output(self, receiver: str, spec: OutputSpec, deliver: Callable[[EncodedVideoFrame], None]) -> None:
        if self._closed:
            return
        self._outputs[receiver] = _Output(spec, deliver)
        self._send({"op": "output", "r": receiver, "spec": asdict(spec)})

    def remove_output(self, receiver: str) -> None:
        if self._outputs.pop(receiver, None) is not None:
            self._send({"op": "remove_output", "r": receiver})

    def set_bitrate(self, receiver: str, bps: int) -> None:
        output = self._outputs.get(receiver)
        if output is not None:
            output.cap_bps = int(bps)
            self._send({"op": "bitrate", "r": receiver, "bps": int(bps)})

    def request_keyframe(self, receiver: str) -> None:
        if receiver in self._outputs:
            self._send({"op": "keyframe", "r": receiver})

    # -- figures ------------------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """Compositor.counters() summed over the room's children (encoders and outputs: the live
        one's), with the restarts and the camera frames not sent because the child fell behind."""
        live = self._stats
        out = {k: self._base[k] + int(live.get(k, 0)) for k in _SUMMED}
        out["encoders"] = int(live.get("encoders", 0)) if self._writer is not None else 0
        out["outputs"] = len({o.spec for o in self._outputs.values()})
        out["restarts"] = self.restarts
        out["frames_not_sent"] = self.frames_not_sent
        return out

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self._process is not None and self._process.returncode is None else None

    # -- the child ----------------------------------------------------------------------------------

    def _send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        writer = self._writer
        if writer is None or writer.is_closing():
            return  # (the next child gets the whole state when it starts)
        writer.write(encode_message(header, payload))

    def _ask_keyframe(self, participant: str) -> None:
        if self.on_keyframe_needed is not None:
            try:
                self.on_keyframe_needed(participant)
            except Exception:
                self._log.exception("keyframe request failed", participant=participant)

    async def _supervise(self) -> None:
        failures = 0
        while not self._closed:
            started = time.monotonic()
            try:
                await self._run_child()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log.exception("compositor process failed")
            if self._closed:
                return
            self.restarts += 1
            failures = 0 if time.monotonic() - started >= HEALTHY_AFTER_S else failures + 1
            delay = RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S)) - 1] if failures else 0.0
            self._log.error(
                "compositor process ended; starting it again",
                exit_code=self._process.returncode if self._process is not None else None,
                restarts=self.restarts,
                in_s=delay,
            )
            await asyncio.sleep(delay)

    async def _run_child(self) -> None:
        process = self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.transcode.compositor_process",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=self._env,
            start_new_session=True,  # (a terminal's Ctrl-C goes to the gateway, which closes it)
            limit=MAX_MESSAGE + 16,
        )
        assert process.stdin is not None and process.stdout is not None
        try:
            self._writer = process.stdin
            self._send({"op": "init", **self._config})
            if self._scene is not None:
                self._send(self._scene)
            for receiver, output in self._outputs.items():
                self._send({"op": "output", "r": receiver, "spec": asdict(output.spec)})
                if output.cap_bps is not None:
                    self._send({"op": "bitrate", "r": receiver, "bps": output.cap_bps})
            self._skipping.clear()
            while True:
                try:
                    message = await read_message(process.stdout)
                except ProtocolError as exc:
                    self._log.error("compositor process sent a malformed message", error=str(exc))
                    break
                if message is None:
                    break
                try:
                    self._received(*message)
                except ProtocolError as exc:
                    self._log.error("compositor process sent a malformed message", error=str(exc))
                    break
        finally:
            self._writer = None
            for key in _SUMMED:  # (what a child did counts after it is gone)
                self._base[key] += int(self._stats.get(key, 0))
            self._stats = {}
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await process.wait()

    def _received(self, header: dict[str, Any], payload: bytes) -> None:
        op = header["op"]
        if op == "out":
            receivers, codec, timestamp = header.get("r"), header.get("c"), header.get("t")
            if not isinstance(receivers, list) or codec not in OutputSpec.CODECS or not isinstance(timestamp, int):
                raise ProtocolError("bad out message")
            frame = EncodedVideoFrame(codec, payload, timestamp & 0xFFFFFFFF, bool(header.get("k")))
            for receiver in receivers:
                output = self._outputs.get(receiver) if isinstance(receiver, str) else None
                if output is not None:
                    try:
                        output.deliver(frame)
                    except Exception:  # one broken leg must not cost the receivers after it
                        self._log.exception("sending the composed picture failed", receiver=receiver)
        elif op == "keyframe_needed":
            participant = header.get("p")
            if not isinstance(participant, str):
                raise ProtocolError("bad keyframe_needed message")
            self._ask_keyframe(participant)
        elif op == "tiles":
            self._tiles_received(header.get("tiles"))
        elif op == "stats":
            stats = header.get("stats")
            if not isinstance(stats, dict) or not all(isinstance(v, int) for v in stats.values()):
                raise ProtocolError("bad stats message")
            self._stats = stats
        else:
            raise ProtocolError(f"unknown op {op!r}")

    def _tiles_received(self, tiles: Any) -> None:
        width, height = self._canvas
        if not isinstance(tiles, dict) or len(tiles) > MAX_TILES:
            raise ProtocolError("bad tiles message")
        sizes: dict[str, tuple[int, int]] = {}
        for participant, size in tiles.items():
            if not (
                isinstance(size, list)
                and len(size) == 2
                and all(isinstance(n, int) and not isinstance(n, bool) for n in size)
                and 0 < size[0] <= width
                and 0 < size[1] <= height
            ):
                raise ProtocolError("bad tiles message")
            sizes[participant] = (size[0], size[1])
        if self.on_tiles is not None:
            try:
                self.on_tiles(sizes)
            except Exception:
                self._log.exception("tile sizes not taken")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        process, writer = self._process, self._writer
        if writer is not None and not writer.is_closing():
            with contextlib.suppress(Exception):
                writer.write(encode_message({"op": "close"}))
                writer.close()
        if process is not None and process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


# -- the child's side --------------------------------------------------------------------------------


class _Child:
    """Runs one Compositor for the parent's messages."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._compositor: Compositor | None = None
        self._pending: dict[int, tuple[EncodedVideoFrame, list[str]]] = {}
        self._encoders_reported = 0

    def _write(self, header: dict[str, Any], payload: bytes = b"") -> None:
        if not self._writer.is_closing():
            self._writer.write(encode_message(header, payload))

    def _deliver(self, receiver: str, frame: EncodedVideoFrame) -> None:
        # The compositor hands one frame to all receivers of an output in one go: collected
        # here, the frame goes to the parent once, with the list of its receivers.
        entry = self._pending.get(id(frame))
        if entry is None:
            self._pending[id(frame)] = (frame, [receiver])
            asyncio.get_running_loop().call_soon(self._flush, id(frame))
        else:
            entry[1].append(receiver)

    def _flush(self, key: int) -> None:
        frame, receivers = self._pending.pop(key)
        if self._compositor is not None and self._compositor.encoders != self._encoders_reported:
            self._report()  # (a new encoder is reported before its first frame)
        self._write({"op": "out", "r": receivers, "c": frame.codec, "t": frame.timestamp, "k": frame.keyframe}, frame.data)

    def _keyframe_needed(self, participant: str) -> None:
        self._write({"op": "keyframe_needed", "p": participant})

    def _tiles(self, tiles: dict[str, tuple[int, int]]) -> None:
        self._write({"op": "tiles", "tiles": {p: list(size) for p, size in tiles.items()}})

    def handle(self, header: dict[str, Any], payload: bytes) -> None:
        op = header["op"]
        compositor = self._compositor
        if op == "init":
            if compositor is None:
                width, height = header["canvas"]
                self._compositor = Compositor(
                    asyncio.get_running_loop(),
                    max_fps=int(header["max_fps"]),
                    speaker_hold_s=float(header["speaker_hold_s"]),
                    canvas=(int(width), int(height)),
                    room=header.get("room"),
                    epoch=float(header["epoch"]),
                    request_keyframe_from=self._keyframe_needed,
                    on_tiles=self._tiles,
                )
            return
        if compositor is None:
            raise ProtocolError(f"{op!r} before init")
        if op == "frame":
            frame = EncodedVideoFrame(str(header["c"]), payload, int(header["t"]), bool(header["k"]))
            compositor.on_frame(str(header["p"]), frame)
        elif op == "scene":
            tiles = [Tile(str(p), str(name), bool(video)) for p, name, video in header["tiles"]]
            compositor.set_scene(tiles, Layout(header["layout"]), header["spotlight"], header["speaking"], header["exclude"])
        elif op == "output":
            receiver = str(header["r"])
            compositor.add_output(receiver, _spec_from(header["spec"]), functools.partial(self._deliver, receiver))
        elif op == "remove_output":
            compositor.remove_output(str(header["r"]))
        elif op == "bitrate":
            compositor.set_bitrate(str(header["r"]), int(header["bps"]))
        elif op == "keyframe":
            compositor.request_keyframe(str(header["r"]))
        elif op == "remove_source":
            compositor.remove_source(str(header["p"]))
        else:
            raise ProtocolError(f"unknown op {op!r}")

    def _report(self) -> None:
        if self._compositor is not None:
            counters = self._compositor.counters()
            self._encoders_reported = counters["encoders"]
            self._write({"op": "stats", "stats": counters})

    async def report(self) -> None:
        while True:
            self._report()
            await asyncio.sleep(STATS_PERIOD_S)

    async def close(self) -> None:
        if self._compositor is not None:
            await self._compositor.close()
            self._report()


async def _serve(out: Any) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_MESSAGE + 16)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, out)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    child = _Child(writer)
    reporter = loop.create_task(child.report())
    try:
        while (message := await read_message(reader)) is not None:
            header, payload = message
            if header["op"] == "close":
                break
            try:
                child.handle(header, payload)
            except ProtocolError:
                raise
            except (KeyError, TypeError, ValueError) as exc:
                raise ProtocolError(f"bad {header['op']!r} message: {exc}") from None
    finally:
        reporter.cancel()
        await child.close()
        with contextlib.suppress(Exception):
            await writer.drain()
            writer.close()


def main() -> None:
    """The child: composes until the parent closes its stdin (or says close)."""
    from gateway.config import LoggingConfig
    from gateway.logging import configure_logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The protocol gets stdout's pipe to itself; anything else that writes to fd 1 (a library's
    # printf) lands in stderr, beside the logs, instead of in the middle of a message.
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    lower_priority()  # (threads inherit it: all video work of the room yields to the gateway's loop)
    level = os.environ.get("GATEWAY_LOG_LEVEL", "info")
    fmt = os.environ.get("GATEWAY_LOG_FORMAT", "auto")
    configure_logging(LoggingConfig.model_validate({"level": level, "format": fmt}))
    try:
        asyncio.run(_serve(out))
    except ProtocolError as exc:
        log.error("compositor process stopped: malformed message from the gateway", error=str(exc))
        sys.exit(2)
    except Exception:
        log.exception("compositor process failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
