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

The pipe protocol and the supervision are `gateway.transcode.child`'s (shared with the broadcast's
process): JSON headers and bytes, no pickle, bounded, and a child that says something malformed
is killed and started again.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import structlog

from gateway.transcode.child import (
    MAX_MESSAGE,
    ChildProcess,
    ChildWriter,
    ProtocolError,
    encode_message,
    read_message,
    run_child,
)
from gateway.transcode.compositor import Compositor, OutputSpec, Tile
from gateway.transcode.layout import Layout
from gateway.transcode.video import EncodedVideoFrame

__all__ = ["MAX_MESSAGE", "CompositorProcess", "ProtocolError", "encode_message", "read_message"]

log = structlog.get_logger(__name__)

PIPE_BUFFER_LIMIT = 4 * 1024 * 1024  # camera frames are dropped (to the next keyframe) beyond this
STATS_PERIOD_S = 0.1
MAX_TILES = 64  # cameras in one `tiles` message (a grid shows 16)
# The counters that add up over the children of one room (the others describe the live child).
_SUMMED = (
    "compositions",
    "frames_out",
    "late_frames",
    "frames_dropped",
    "decode_errors",
    "encode_errors",
    "decodes",
    "encodes",
)


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


class CompositorProcess(ChildProcess):
    """The composed picture of one room, made by a child process; see the module's docstring.
    Every method is called on the event loop; `deliver` and `on_keyframe_needed` are called on it."""

    module = "gateway.transcode.compositor_process"
    what = "compositor process"

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
        # (time.monotonic: the picture's RTP time 0, for every child of the room and its broadcast)
        self.epoch = time.monotonic()
        self._config = {
            "max_fps": max_fps,
            "speaker_hold_s": speaker_hold_s,
            "canvas": list(canvas),
            "room": room,
            "epoch": self.epoch,
        }
        self._scene: dict[str, Any] | None = None
        self._outputs: dict[str, _Output] = {}
        self._skipping: set[str] = set()  # cameras dropped to their next keyframe (the pipe was full)
        self._stats: dict[str, Any] = {}  # the live child's last report
        self._base: dict[str, int] = dict.fromkeys(_SUMMED, 0)  # what children before it did
        self.frames_not_sent = 0
        super().__init__(room)

    # -- the room's state ---------------------------------------------------------------------------

    def set_scene(
        self,
        tiles: Sequence[Tile],
        layout: Layout,
        spotlight: str | None,
        speaking: Collection[str],
        exclude: str | None = None,
        notice: str | None = None,
    ) -> None:
        self._scene = {
            "op": "scene",
            "tiles": [[t.participant, t.name, t.has_video] for t in tiles],
            "layout": Layout(layout).value,
            "spotlight": spotlight,
            "speaking": sorted(speaking),
            "exclude": exclude,
            "notice": notice,
        }
        self._send(self._scene)

    def on_frame(self, participant: str, frame: EncodedVideoFrame) -> None:
        if not self.running or self._closed:
            return  # (a child that starts asks for keyframes itself)
        if participant in self._skipping:
            if not frame.keyframe:
                self.frames_not_sent += 1
                return
            self._skipping.discard(participant)
        if self._buffered() > PIPE_BUFFER_LIMIT:
            self.frames_not_sent += 1
            self._skipping.add(participant)
            self._ask_keyframe(participant)
            return
        header = {
            "op": "frame",
            "p": participant,
            "c": frame.codec,
            "t": frame.timestamp,
            "k": frame.keyframe,
        }
        self._send(header, frame.data)

    def remove_source(self, participant: str) -> None:
        self._skipping.discard(participant)
        self._send({"op": "remove_source", "p": participant})

    # -- outputs ------------------------------------------------------------------------------------

    def add_output(
        self, receiver: str, spec: OutputSpec, deliver: Callable[[EncodedVideoFrame], None]
    ) -> None:
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
        out["encoders"] = int(live.get("encoders", 0)) if self.running else 0
        out["outputs"] = len({o.spec for o in self._outputs.values()})
        out["restarts"] = self.restarts
        out["frames_not_sent"] = self.frames_not_sent
        return out

    # -- the child ----------------------------------------------------------------------------------

    def _ask_keyframe(self, participant: str) -> None:
        if self.on_keyframe_needed is not None:
            try:
                self.on_keyframe_needed(participant)
            except Exception:
                self._log.exception("keyframe request failed", participant=participant)

    def _started(self) -> None:
        self._send({"op": "init", **self._config})
        if self._scene is not None:
            self._send(self._scene)
        for receiver, output in self._outputs.items():
            self._send({"op": "output", "r": receiver, "spec": asdict(output.spec)})
            if output.cap_bps is not None:
                self._send({"op": "bitrate", "r": receiver, "bps": output.cap_bps})
        self._skipping.clear()

    def _gone(self) -> None:
        for key in _SUMMED:  # (what a child did counts after it is gone)
            self._base[key] += int(self._stats.get(key, 0))
        self._stats = {}

    def _received(self, header: dict[str, Any], payload: bytes) -> None:
        op = header["op"]
        if op == "out":
            receivers, codec, timestamp = header.get("r"), header.get("c"), header.get("t")
            if (
                not isinstance(receivers, list)
                or codec not in OutputSpec.CODECS
                or not isinstance(timestamp, int)
            ):
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


# -- the child's side --------------------------------------------------------------------------------


class _Child:
    """Runs one Compositor for the parent's messages."""

    def __init__(self, write: ChildWriter) -> None:
        self._write = write
        self._compositor: Compositor | None = None
        self._pending: dict[int, tuple[EncodedVideoFrame, list[str]]] = {}
        self._encoders_reported = 0

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
        self._write(
            {"op": "out", "r": receivers, "c": frame.codec, "t": frame.timestamp, "k": frame.keyframe},
            frame.data,
        )

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
            notice = header.get("notice")
            if notice is not None and not isinstance(notice, str):
                raise ProtocolError("bad scene message: notice")
            compositor.set_scene(
                tiles, Layout(header["layout"]), header["spotlight"], header["speaking"], header["exclude"], notice
            )
        elif op == "output":
            receiver = str(header["r"])
            compositor.add_output(
                receiver, _spec_from(header["spec"]), functools.partial(self._deliver, receiver)
            )
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

    async def run(self) -> None:
        while True:
            self._report()
            await asyncio.sleep(STATS_PERIOD_S)

    async def close(self) -> None:
        if self._compositor is not None:
            await self._compositor.close()
            self._report()


def main() -> None:
    """The child: composes until the parent closes its stdin (or says close)."""
    run_child(_Child, "compositor process")


if __name__ == "__main__":
    main()
