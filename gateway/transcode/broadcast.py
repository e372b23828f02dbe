"""A room's broadcast: its composed picture and its full mix, muxed for a recording and a live stream.

Protocol-free. The picture comes already encoded (H.264 Annex B, the compositor's output for the
broadcast: one encode, shared with room systems whose output is the same); the mix comes as PCM
(48 kHz mono, one 20 ms frame per mixer tick) and is encoded to AAC **once** for every target. A
`Broadcast` hands the same packets to each of its targets (`Muxer`): a file (fragmented MP4, so
a recording cut short by a full disk or a crash is still playable up to its last fragment) or a
live stream (FLV, the container RTMP carries). A room without video is recorded audio-only.

Timestamps: the picture's are 90 kHz from the compositor's epoch (a time.monotonic instant), the
mix's frames carry the tick's time.monotonic; both land on one clock, so picture and sound stay
together. A target starts at a keyframe of the picture (its SPS and PPS become the container's
codec data) and from there takes the mix too; audio-only targets start at once.

A target that fails (the disk is full, permission denied, the streaming server went away) is
closed as cleanly as it can be and reported once (`on_ended`); the others, and the meeting, go
on. Nothing here blocks on the network by itself: a live stream's target is opened by its caller
off the event loop (the broadcast process).
"""

from __future__ import annotations

import contextlib
import fractions
import functools
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import av
import numpy as np
import numpy.typing as npt
import structlog

from gateway.transcode.video import VIDEO_CLOCK, EncodedVideoFrame, nal_units

log = structlog.get_logger(__name__)

AUDIO_RATE = 48_000
AUDIO_FRAME = 960  # samples in one 20 ms mixer tick at 48 kHz
AAC_BITRATE = 128_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)
# Containers by kind: a file is fragmented MP4 (playable however it ends), a stream FLV (RTMP).
# A fragment ends at each keyframe and after at most a second (an audio-only recording has no
# keyframes: it held nothing but its header until it was closed), and flush_packets writes what
# the muxer gives out at once (without it a file held its first 28 bytes after seconds of
# recording): a crash or a full disk loses at most the last second.
FORMATS: dict[str, tuple[str, dict[str, str]]] = {
    "mp4": (
        "mp4",
        {"movflags": "frag_keyframe+empty_moov+default_base_moof", "frag_duration": "1000000", "flush_packets": "1"},
    ),
    "flv": ("flv", {"flvflags": "no_duration_filesize", "flush_packets": "1"}),
}


def parameter_sets(data: bytes) -> bytes | None:
    """The SPS and PPS NAL units of an H.264 Annex B access unit, each behind a 4-byte start
    code; None unless it has both (a target can start on it: they are its codec data)."""
    units = [unit for unit in nal_units(data) if unit and unit[0] & 0x1F in (7, 8)]
    kinds = {unit[0] & 0x1F for unit in units}
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in units) if kinds == {7, 8} else None


def check_target(url: str, kind: str) -> None:
    """A file is an absolute path, a live stream an rtmp:// or rtmps:// URL: nothing else reaches
    FFmpeg's protocols (file:, pipe:, http: and the rest could read or write what they should not).
    Raises ValueError, naming neither (a stream URL holds its key)."""
    if kind == "mp4":
        if not url.startswith("/") or "\x00" in url:
            raise ValueError("a recording's file must be an absolute path")
    elif not (url.startswith(("rtmp://", "rtmps://")) and url.isprintable() and " " not in url):
        raise ValueError("a live stream goes to an rtmp:// or rtmps:// URL")


@dataclass
class TargetState:
    name: str
    url: str
    started_at: float | None = None  # (time.monotonic) its first picture or sound
    ended: str | None = None  # why it ended, None while it runs
    bytes_written: int = 0  # the media's so far; a file's size once it is closed


class Output(Protocol):
    """A target as the broadcast drives it: a Muxer, or a live stream muxed elsewhere."""

    state: TargetState

    @property
    def open(self) -> bool: ...

    def start(self, at: float, keyframe: bytes | None) -> None: ...

    def write_video(self, data: bytes, at: float, keyframe: bool) -> None: ...

    def write_audio(self, packet: av.Packet[Any], at: float) -> None: ...

    def close(self) -> None: ...


class Muxer:
    """One output container: a file or a live stream. Its streams are created with its first
    keyframe (audio-only: at once)."""

    def __init__(self, name: str, url: str, kind: str, video: bool, options: dict[str, str] | None = None) -> None:
        if kind not in FORMATS:
            raise ValueError(f"broadcast targets are {sorted(FORMATS)}, not {kind!r}")
        check_target(url, kind)
        self.state = TargetState(name, url)
        self._kind = kind
        self._video = video
        self._options = {**FORMATS[kind][1], **(options or {})}
        self._container: Any = None
        self._video_stream: Any = None
        self._audio_stream: Any = None
        self._zero = 0.0  # (time.monotonic) the container's time 0

    @property
    def open(self) -> bool:
        return self._container is not None

    def start(self, at: float, keyframe: bytes | None) -> None:
        """Opens the container: time 0 is `at`; with video, `keyframe` (with its SPS and PPS) says
        the picture's size and codec data. FFmpeg's own H.264 parser reads them (the stream is
        copied, never encoded here: an encoder opened for the stream would write its own)."""
        container = av.open(self.state.url, "w", format=FORMATS[self._kind][0], options=self._options)
        try:
            if self._video:
                assert keyframe is not None
                with av.open(io.BytesIO(keyframe), format="h264") as probe:
                    stream = container.add_stream_from_template(probe.streams.video[0])
                stream.time_base = VIDEO_TIME_BASE
                self._video_stream = stream
            # (PyAV opens an AAC encoder for this stream to write the header: configured as the
            # broadcast's own, its codec data (AAC LC, 48 kHz, mono) is that of the packets muxed)
            audio = container.add_stream("aac", rate=AUDIO_RATE)
            audio.layout = "mono"
            audio.time_base = AUDIO_TIME_BASE
            self._audio_stream = audio
            # (opens the file or the connection and writes the header: a target that cannot start says so here)
            container.start_encoding()
        except Exception:
            container.close()
            raise
        self._container = container
        self._zero = at
        self.state.started_at = at

    def write_video(self, data: bytes, at: float, keyframe: bool) -> None:
        if self._video_stream is None:
            return
        packet = av.Packet(data)
        packet.stream = self._video_stream
        packet.pts = packet.dts = max(0, round((at - self._zero) * VIDEO_CLOCK))
        packet.time_base = VIDEO_TIME_BASE
        packet.is_keyframe = keyframe
        self._mux(packet, len(data))

    def write_audio(self, packet: av.Packet[Any], at: float) -> None:
        if self._audio_stream is None or at < self._zero:
            return
        out = av.Packet(bytes(packet))
        out.stream = self._audio_stream
        out.pts = out.dts = round((at - self._zero) * AUDIO_RATE)
        out.time_base = AUDIO_TIME_BASE
        self._mux(out, out.size)

    def _mux(self, packet: av.Packet[Any], size: int) -> None:
        self._container.mux(packet)
        self.state.bytes_written += size

    def close(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            container.close()
            if self._kind == "mp4":  # (what it holds: the container's own bytes too)
                with contextlib.suppress(OSError):
                    self.state.bytes_written = os.path.getsize(self.state.url)


class Broadcast:
    """The broadcast of one room: its targets, one AAC encode of the mix for all of them.

    `epoch`: the time.monotonic instant of the picture's RTP time 0 (the compositor's). `video`:
    whether the room has a picture (without one, targets are audio-only). `on_started(name, at)`
    is called when a target has its first picture or sound (at: time.monotonic), `on_ended(name,
    why)` once when a target stops by itself (an error: its reason), `on_keyframe_wanted` when a
    target waits for a keyframe to start. `live_stream(name, url)` makes a live stream's target
    (by default it is muxed here, like a file)."""

    def __init__(
        self,
        epoch: float,
        video: bool = True,
        on_ended: Callable[[str, str], None] | None = None,
        on_keyframe_wanted: Callable[[], None] | None = None,
        on_started: Callable[[str, float], None] | None = None,
        live_stream: Callable[[str, str], Output] | None = None,
    ) -> None:
        self._epoch = epoch
        self._live_stream = live_stream
        self._video = video
        self.on_ended = on_ended
        self.on_started = on_started
        self.on_keyframe_wanted = on_keyframe_wanted
        self._targets: dict[str, Output] = {}
        self._encoder: Any = None
        self._audio_at: float | None = None  # (time.monotonic) the time of the encoder's sample 0
        self._samples = 0  # samples handed to the encoder since then
        self._last_ts: int | None = None  # the picture's 90 kHz timestamps, extended past 2**32
        self._ts_base = 0
        self.frames_in = 0
        self.audio_frames_in = 0

    # -- targets ----------------------------------------------------------------------------------

    def add_target(self, name: str, url: str, kind: str, options: dict[str, str] | None = None) -> TargetState:
        """A file (`kind` mp4) or a live stream (flv); it starts with the next keyframe."""
        if name in self._targets:
            raise ValueError(f"a target named {name!r} runs already")
        muxer: Output
        if kind == "flv" and self._live_stream is not None:
            check_target(url, kind)
            muxer = self._live_stream(name, url)
        else:
            muxer = Muxer(name, url, kind, self._video, options)
        self._targets[name] = muxer
        if self._video and self.on_keyframe_wanted is not None:
            self.on_keyframe_wanted()
        return muxer.state

    def remove_target(self, name: str) -> TargetState | None:
        """Stops a target (its file is complete, its stream ends)."""
        muxer = self._targets.pop(name, None)
        if muxer is None:
            return None
        self._close(muxer, None)
        return muxer.state

    def targets(self) -> list[TargetState]:
        return [m.state for m in self._targets.values()]

    # -- media ------------------------------------------------------------------------------------

    def video(self, frame: EncodedVideoFrame) -> None:
        """A frame of the composed picture (H.264 Annex B)."""
        if not self._video or frame.codec != "H264" or not frame.data:
            return
        self.frames_in += 1
        at = self._picture_time(frame.timestamp)
        starts = frame.keyframe and parameter_sets(frame.data) is not None
        for muxer in list(self._targets.values()):
            if not muxer.open:
                if not starts:
                    continue
                self._start(muxer, at, frame.data)
                if not muxer.open:  # (it could not start: ended, and said why)
                    continue
            self._write(muxer, functools.partial(muxer.write_video, frame.data, at, frame.keyframe))

    def audio(self, pcm: npt.NDArray[np.int16], at: float) -> None:
        """One tick of the full mix: 48 kHz mono PCM, and the tick's time.monotonic."""
        self.audio_frames_in += 1
        if not self._targets:  # (the next target starts with a fresh encoder and clock)
            self._encoder, self._audio_at = None, None
            return
        if self._encoder is None:
            encoder = av.CodecContext.create("aac", "w")
            encoder.sample_rate = AUDIO_RATE
            encoder.layout = "mono"
            encoder.format = "fltp"
            encoder.bit_rate = AAC_BITRATE
            encoder.time_base = AUDIO_TIME_BASE
            encoder.open()
            self._encoder = encoder
        if self._audio_at is None:
            self._audio_at, self._samples = at, 0
        elif abs(at - (self._audio_at + self._samples / AUDIO_RATE)) > 0.2:
            # ticks were skipped (the loop fell far behind): the sound follows the clock again
            self._audio_at = at - self._samples / AUDIO_RATE
        frame = av.AudioFrame.from_ndarray(np.asarray(pcm, np.int16).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._samples
        frame.time_base = AUDIO_TIME_BASE
        self._samples += frame.samples
        for packet in self._encoder.encode(frame):
            packet_at = self._audio_at + (packet.pts or 0) / AUDIO_RATE
            for muxer in list(self._targets.values()):
                if not muxer.open and not self._video:  # (audio only: from its first sound)
                    self._start(muxer, packet_at, None)
                if muxer.open:
                    self._write(muxer, functools.partial(muxer.write_audio, packet, packet_at))

    # -- inside -----------------------------------------------------------------------------------

    def _picture_time(self, timestamp: int) -> float:
        """The picture's RTP timestamp as a time.monotonic instant (the epoch's clock)."""
        if self._last_ts is not None and timestamp < self._last_ts and self._last_ts - timestamp > 1 << 31:
            self._ts_base += 1 << 32  # (wrapped, after 13 hours)
        self._last_ts = timestamp
        return self._epoch + (self._ts_base + timestamp) / VIDEO_CLOCK

    def _start(self, muxer: Output, at: float, keyframe: bytes | None) -> None:
        try:
            muxer.start(at, keyframe)
        except Exception as exc:  # (av.error.*, OSError: no such folder, permission denied)
            self._targets.pop(muxer.state.name, None)
            self._ended(muxer, failure_reason(exc))
            return
        if self.on_started is not None:
            self.on_started(muxer.state.name, at)

    def _write(self, muxer: Output, write: Callable[[], None]) -> None:
        try:
            write()
        except Exception as exc:  # the disk is full, the server went away: this target ends
            self._targets.pop(muxer.state.name, None)
            self._close(muxer, failure_reason(exc))

    def _close(self, muxer: Output, reason: str | None) -> None:
        try:
            muxer.close()
        except Exception as exc:
            reason = reason or failure_reason(exc)
        if reason is not None:
            self._ended(muxer, reason)

    def _ended(self, muxer: Output, reason: str) -> None:
        muxer.state.ended = reason
        log.warning("broadcast target ended", target=muxer.state.name, reason=reason)
        if self.on_ended is not None:
            self.on_ended(muxer.state.name, reason)

    def close(self) -> None:
        for name in list(self._targets):
            self.remove_target(name)


def failure_reason(exc: BaseException) -> str:
    """Why a target failed, in words for the log and the API (never its URL: a stream key)."""
    errno = getattr(exc, "errno", None)
    if errno is not None:
        return os.strerror(errno) if isinstance(errno, int) and errno > 0 else type(exc).__name__
    return type(exc).__name__
