"""Video routing between participants: forward encoded frames, transcode only when a receiver needs it.

Protocol-free. A source is one video stream of a participant, keyed by (participant, stream kind):
a room system's camera and its slides are two sources. It pushes whole encoded frames
(`on_frame`); each receiver subscribed to it gets the very same frame object when it can take the
frame as it is (same codec, and for H.264 a profile, level and packetization mode it decodes:
`codecs.can_forward`), so forwarding costs nothing per pixel.
A new subscriber waits for a keyframe (and one is requested from the source, rate-limited);
receivers' keyframe requests travel back the same way. When a receiver accepts none of the
source's codec, one Transcoder per (source, output codec) decodes once and encodes once, and all
receivers of that codec share its output. Receivers are participants (one per leg); which of its
outbound streams a frame goes to is the leg's business (by the source's stream kind). A
subscription may take other codecs than its receiver as a whole (a browser's slot sends the one
codec aiortc picked for it); the router says when a source's codec becomes known or changes
(`source_codec_changed`), so a receiver can show it where it is forwarded as it is.

Frames come from the network: an empty one is dropped before anyone gets it; one the transcoder
cannot decode is dropped and counted (`frames_undecodable`), a keyframe is asked of its source and
the transcoder skips to it. Only that source's transcoded stream pauses; nobody else notices.

Simulcast: a source may send its picture in several layers (a browser's camera at full and half
size, `EncodedVideoFrame.layer`). Each receiver gets one layer of it: the best there is, or lower
when it asks (`want_layer`: its bandwidth) or when it shows the picture small (`shown_size`: the
lowest layer whose size, read from its keyframes, covers the tile; the room's composed picture
decodes its strip from the small layer). A switch happens at the new layer's keyframe.
"""

from __future__ import annotations

import asyncio
import fractions
import os
import struct
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple, cast

import av
import structlog

from gateway.transcode.codecs import StreamCodec, StreamKind, forwardable_to

log = structlog.get_logger(__name__)

VIDEO_CLOCK = 90_000


@dataclass(frozen=True, slots=True)
class EncodedVideoFrame:
    codec: str  # "VP8" or "H264"
    data: bytes
    timestamp: int  # 90 kHz
    keyframe: bool
    # The stream's negotiated codec (profile, packetization), when the sender's leg knows it; the
    # same object for every frame of a stream. None: only the name is known (any profile).
    format: StreamCodec | None = None
    # Its simulcast layer (0 the lowest; a sender without simulcast sends layer 0 only)
    layer: int = 0


class VideoSourceId(NamedTuple):
    """One participant's video stream: the key of a source in the router."""

    participant: str
    stream: StreamKind = StreamKind.MAIN


# The source of the composed picture room systems receive (gateway.transcode.compositor): a leg's
# send_video gets it as the source of those frames, and asks it for keyframes like any other.
COMPOSED = VideoSourceId("#composed")


class VideoTimeline:
    """Rewrites source timestamps onto one outbound timeline that only moves forward, even when
    the stream switches from one source to another (a slot, a forwarded main video)."""

    __slots__ = ("last_source_ts", "out_ts")

    def __init__(self, start: int = 0) -> None:
        self.last_source_ts: int | None = None
        self.out_ts = start

    def restart(self) -> None:
        """The next frame comes from another source: its timestamps say nothing about the last ones."""
        self.last_source_ts = None

    def next(self, source_ts: int) -> int:
        if self.last_source_ts is None:
            step = VIDEO_CLOCK // 30
        else:
            step = (source_ts - self.last_source_ts) & 0xFFFFFFFF
            if step >= 1 << 31:  # an older frame: keep the timeline monotonic
                step = 0
        self.last_source_ts = source_ts
        self.out_ts += step  # (an RTP sender takes it modulo 2**32)
        return self.out_ts


def is_keyframe(codec: str, data: bytes) -> bool:
    """Whether a whole encoded frame starts a decodable picture (VP8 key frame, H.264 IDR or SPS)."""
    if not data:
        return False
    if codec == "VP8":
        return (data[0] & 0x01) == 0
    if codec == "H264":
        i = 0
        while True:
            i = data.find(b"\x00\x00\x01", i)
            if i < 0 or i + 3 >= len(data):
                return False
            nal_type = data[i + 3] & 0x1F
            if nal_type in (5, 7):
                return True
            i += 3
    return False


Deliver = Callable[[VideoSourceId, EncodedVideoFrame], None]


VIDEO_NICENESS = 10  # video threads yield the CPU to the event loop (audio) when cores are short


def lower_priority() -> None:
    """Makes the calling thread nicer than the event loop's (Linux: niceness is per thread), so
    that an overloaded machine delays video work (composition, transcodes), not the 20 ms audio
    tick."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), VIDEO_NICENESS)
    except (AttributeError, OSError):  # (not Linux, or not allowed: run as is)
        pass


def nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (without start codes)."""
    units: list[bytes] = []
    starts: list[tuple[int, int]] = []  # (start code position, payload position)
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        begin = i - 1 if i > 0 and data[i - 1] == 0 else i
        starts.append((begin, i + 3))
        i = data.find(b"\x00\x00\x01", i + 3)
    for n, (_begin, payload) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(data)
        units.append(data[payload:end])
    return units


def keyframe_size(codec: str, data: bytes) -> tuple[int, int] | None:
    """The picture size a keyframe starts: from a VP8 key frame's header (RFC 6386 9.1); None when
    it is not one, or not known without parsing more (an H.264 SPS)."""
    if codec == "VP8" and len(data) >= 10 and not data[0] & 0x01 and data[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", data, 6)
        return width & 0x3FFF, height & 0x3FFF  # (the top two bits: upscaling hints)
    return None


class UndecodableFrame(ValueError):
    """A frame the transcoder could not decode (garbage, truncated, empty)."""


@dataclass(frozen=True)
class TranscodeDone:
    """What a transcode hands back on the loop: the frames made, or that the frame was undecodable."""

    deliver: Callable[[list[EncodedVideoFrame]], None]
    failed: Callable[[], None] = lambda: None

    def __call__(self, frames: list[EncodedVideoFrame]) -> None:
        self.deliver(frames)


@dataclass
class _Codecs:
    """What a receiver (or one of its subscriptions) takes: codecs preferred first; a bare name
    takes any profile."""

    codecs: tuple[StreamCodec | str, ...]
    names: frozenset[str] = frozenset()
    # whether it takes a stream negotiated as this descriptor as it is (computed once per descriptor)
    takes: dict[StreamCodec, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.names = frozenset((c if isinstance(c, str) else c.name).upper() for c in self.codecs)

    def accepts(self, frame: EncodedVideoFrame) -> bool:
        if frame.codec not in self.names:
            return False
        described = frame.format
        if described is None:
            return True
        verdict = self.takes.get(described)
        if verdict is None:
            verdict = self.takes[described] = forwardable_to(described, self.codecs)
        return verdict

    @property
    def target(self) -> str:
        """The codec a transcode for this receiver makes: its preferred one."""
        first = self.codecs[0]
        return (first if isinstance(first, str) else first.name).upper()


@dataclass
class _Receiver(_Codecs):
    id: str = ""
    deliver: Deliver = lambda source, frame: None
    waiting_keyframe: set[VideoSourceId] = field(default_factory=set)
    frames_out: int = 0
    frames_below_top: int = 0  # frames of a lower simulcast layer than the best the source sent
    send_failures: int = 0
    # Every simulcast layer as it comes (another node's link: its router picks per receiver there)
    all_layers: bool = False
    # Subscriptions that take other codecs than the receiver as a whole (a browser's slot: the one
    # codec its transceiver sends)
    per_source: dict[VideoSourceId, _Codecs] = field(default_factory=dict)
    # Simulcast: the layer it gets of each source now, the highest it wants (absent: the best) and
    # the size it shows the picture at (absent: not known, the best)
    layers: dict[VideoSourceId, int] = field(default_factory=dict)
    wanted_layers: dict[VideoSourceId, int] = field(default_factory=dict)
    shown_sizes: dict[VideoSourceId, tuple[int, int]] = field(default_factory=dict)

    def codecs_for(self, source: VideoSourceId) -> _Codecs:
        return self.per_source.get(source, self)


@dataclass
class _Source:
    id: VideoSourceId
    request_keyframe: Callable[[], None]
    last_request: float = -1e9
    frames_in: int = 0
    frames_undecodable: int = 0
    codec: str | None = None
    layer_seen: dict[int, float] = field(default_factory=dict)  # simulcast layer -> when it last sent
    layer_bytes: dict[int, int] = field(default_factory=dict)  # simulcast layer -> bytes in this window
    layer_bps: dict[int, float] = field(default_factory=dict)  # simulcast layer -> bit/s, last window
    layer_size: dict[int, tuple[int, int]] = field(default_factory=dict)  # simulcast layer -> its last keyframe's size
    window_start: float = -1.0

    def top_layer(self, now: float) -> int:
        """Its highest layer that sends (a browser pauses its upper layers when its uplink is short)."""
        return max((layer for layer, at in self.layer_seen.items() if now - at < LAYER_GONE_S), default=0)


def open_encoder(
    codec: str,
    width: int,
    height: int,
    bitrate: int,
    fps: int = 30,
    *,
    gop_size: int | None = None,
    threads: int | None = None,
    x264: dict[str, str] | None = None,
) -> av.VideoCodecContext:
    """A realtime encoder of one video output: H.264 constrained baseline (x264 ultrafast,
    zerolatency) or VP8 (libvpx realtime). `x264`: further x264 options (x264-params, forced-idr)."""
    name = "libvpx" if codec == "VP8" else "libx264"
    ctx = cast(av.VideoCodecContext, av.CodecContext.create(name, "w"))
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuv420p"
    ctx.bit_rate = bitrate
    ctx.framerate = fractions.Fraction(fps, 1)
    ctx.time_base = fractions.Fraction(1, VIDEO_CLOCK)
    if gop_size is not None:
        ctx.gop_size = gop_size
    if threads is not None:
        ctx.thread_count = threads
    if name == "libx264":
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", **(x264 or {})}
        ctx.profile = "Baseline"
    else:
        ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    ctx.open()
    return ctx


# Content (slides, a shared screen) when it must be transcoded: sharp text rather than motion: at
# most 1920x1080 (larger screens scaled down, the aspect kept), 15 fps, 2 Mbit/s, x264 tuned for
# still images.
CONTENT_MAX_SIZE = (1920, 1080)
CONTENT_FPS = 15
CONTENT_BITRATE = 2_000_000
SINGLE_PACKET_NAL_BYTES = 1100  # (an RTP payload of at most this, with headers under 1280 octets)


def fit_within(width: int, height: int, box: tuple[int, int]) -> tuple[int, int]:
    """The largest even size of this aspect within `box` (the size itself when it fits)."""
    scale = min(1.0, box[0] / width, box[1] / height)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


class Transcoder:
    """Decodes one source and encodes it into one other codec; shared by all receivers of that codec.
    `content`: the source is a presentation (the content profile above), else a camera."""

    def __init__(self, target_codec: str, bitrate: int | None = None, *, content: bool = False) -> None:
        self.target = target_codec
        self.content = content
        self._bitrate = bitrate or (CONTENT_BITRATE if content else 1_000_000)
        self._decoder: av.VideoCodecContext | None = None
        self._decoder_codec: str | None = None
        self._encoder: av.VideoCodecContext | None = None
        self._size: tuple[int, int] | None = None
        self.force_keyframe = True
        # A decoder starts at a keyframe: fed from the middle of a stream, or after a frame it
        # could not read, it would only turn references it does not have into broken pictures.
        self._needs_keyframe = True

    def _open_encoder(self, width: int, height: int) -> av.VideoCodecContext:
        # H.264 in NAL units that fit one RTP packet: the one output serves receivers of either
        # packetization mode (mode 0 sends each NAL unit whole), at a few percent of compression.
        x264 = {"x264-params": f"slice-max-size={SINGLE_PACKET_NAL_BYTES}"}
        if self.content:
            x264["tune"] = "stillimage,zerolatency"
            return open_encoder(self.target, width, height, self._bitrate, CONTENT_FPS, x264=x264)
        return open_encoder(self.target, width, height, self._bitrate, x264=x264)

    def transcode(self, frame: EncodedVideoFrame) -> list[EncodedVideoFrame]:
        """Raises UndecodableFrame on a frame the decoder rejects; frames up to the next keyframe
        are skipped then (returned as nothing)."""
        if not frame.data:  # (an empty packet is libavcodec's 'flush': the decoder would be finished)
            raise UndecodableFrame("empty frame")
        if self._needs_keyframe:
            if not frame.keyframe:
                return []
            self._needs_keyframe = False
        if self._decoder is None or self._decoder_codec != frame.codec:
            self._decoder = av.VideoCodecContext.create("libvpx" if frame.codec == "VP8" else "h264", "r")
            self._decoder_codec = frame.codec
        try:
            pictures = self._decoder.decode(av.Packet(frame.data))
        except Exception as exc:  # whatever the codec raises on garbage: start afresh at a keyframe
            self._decoder = None
            self._needs_keyframe = True
            raise UndecodableFrame(f"{type(exc).__name__}: {exc}") from exc
        out: list[EncodedVideoFrame] = []
        for picture in pictures:
            size = (picture.width, picture.height)
            if self.content:
                size = fit_within(*size, CONTENT_MAX_SIZE)
            if self._encoder is None or size != self._size:
                self._encoder, self._size = self._open_encoder(*size), size
                self.force_keyframe = True
            picture = picture.reformat(width=size[0], height=size[1], format="yuv420p")
            picture.pts = frame.timestamp
            picture.time_base = fractions.Fraction(1, VIDEO_CLOCK)
            if self.force_keyframe:
                picture.pict_type = av.video.frame.PictureType.I
                self.force_keyframe = False
            for packet in self._encoder.encode(picture):
                data = bytes(packet)
                out.append(EncodedVideoFrame(self.target, data, frame.timestamp, is_keyframe(self.target, data)))
        return out


class TranscodePool:
    """Runs one Transcoder per (source, output codec), each on its own worker thread so frames stay
    in order and the event loop never decodes or encodes a picture; results return on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_pending: int = 8) -> None:
        self._loop = loop
        self._max_pending = max_pending
        # per (source, codec): the transcoder, its thread, [frames pending, failures]
        self._workers: dict[tuple[VideoSourceId, str], tuple[Transcoder, ThreadPoolExecutor, list[int]]] = {}
        self.decodes = 0  # frames handed to a transcoder's decoder, in all

    def __call__(self, source: VideoSourceId, codec: str, frame: EncodedVideoFrame, done: TranscodeDone) -> None:
        worker = self._workers.get((source, codec))
        if worker is None:
            transcoder = Transcoder(codec, content=source.stream is StreamKind.CONTENT)
            executor = ThreadPoolExecutor(1, thread_name_prefix=f"transcode-{codec}", initializer=lower_priority)
            worker = (transcoder, executor, [0, 0])
            self._workers[(source, codec)] = worker
        transcoder, executor, counts = worker
        if counts[0] >= self._max_pending and not frame.keyframe:
            return  # falling behind: skip to the next keyframe rather than build up delay
        counts[0] += 1
        self.decodes += 1

        def finished(future: Future[list[EncodedVideoFrame]]) -> None:
            counts[0] -= 1
            try:
                frames = future.result()
            except Exception as exc:  # a corrupt frame must not stop the stream, nor anyone else's
                counts[1] += 1
                if counts[1] == 1:  # once per stream; the router counts every one
                    log.warning("video frame not transcodable", source=source, codec=codec, error=str(exc))
                self._loop.call_soon_threadsafe(done.failed)
                return
            if frames:
                self._loop.call_soon_threadsafe(done, frames)

        executor.submit(transcoder.transcode, frame).add_done_callback(finished)

    def counters(self) -> dict[str, int]:
        """Transcoders running (one per source and output codec) and frames they decoded."""
        return {"transcoders": len(self._workers), "decodes": self.decodes}

    def drop(self, participant: str) -> None:
        """The participant left: the transcoders of all its streams go."""
        for key in [k for k in self._workers if k[0].participant == participant]:
            self._workers.pop(key)[1].shutdown(wait=False)

    def close(self) -> None:
        for _transcoder, executor, _pending in self._workers.values():
            executor.shutdown(wait=False)
        self._workers.clear()


LAYER_GONE_S = 1.0  # a simulcast layer silent this long is taken as paused
LAYER_WINDOW_S = 1.0  # each layer's bit rate is measured over windows this long


class VideoRouter:
    def __init__(
        self,
        keyframe_interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        transcode: Callable[[VideoSourceId, str, EncodedVideoFrame, TranscodeDone], None] | None = None,
    ) -> None:
        """`transcode(source, codec, frame, done)` runs a Transcoder (off the loop) and calls done
        with the frames made, or done.failed() when the frame could not be decoded."""
        self._sources: dict[VideoSourceId, _Source] = {}
        self._receivers: dict[str, _Receiver] = {}
        # Subscriptions live apart from the sources: a receiver may subscribe to a stream whose
        # media is not attached yet (or is reconnecting), and gets its video once it is.
        self._subscribers: dict[VideoSourceId, set[str]] = {}
        self._keyframe_interval = keyframe_interval_s
        self._clock = clock
        self._transcode = transcode
        self.frames_forwarded = 0
        self.frames_transcoded = 0
        self.frames_undecodable = 0
        # Told when a source's codec becomes known or changes (receivers may place it better)
        self.source_codec_changed: Callable[[VideoSourceId], None] | None = None
        # Told ("source", id) when a source comes or goes, ("demand", id) when a source gets its
        # first subscriber or loses its last (a node link forwards only what someone takes)
        self.changed: Callable[[str, VideoSourceId], None] | None = None

    def _changed(self, kind: str, id: VideoSourceId) -> None:
        if self.changed is not None:
            self.changed(kind, id)

    def demanded(self, id: VideoSourceId) -> bool:
        """Some receiver subscribes to the source (whether or not it is attached)."""
        return bool(self._subscribers.get(id))

    def add_source(self, id: VideoSourceId, request_keyframe: Callable[[], None]) -> None:
        """A stream that sends video, and how to ask its sender for a keyframe. Registering it again
        (a renegotiation) changes only the keyframe request path; its counters go on."""
        source = self._sources.get(id)
        if source is not None:
            source.request_keyframe = request_keyframe
            return
        self._sources[id] = _Source(id, request_keyframe)
        if self._subscribers.get(id):
            self.request_keyframe(id, force=True)
        self._changed("source", id)

    def add_receiver(self, id: str, codecs: Sequence[StreamCodec | str], deliver: Deliver, all_layers: bool = False) -> None:
        """A participant that takes video in these codecs (preferred first; descriptors with their
        profiles, or bare names for any profile). `all_layers`: every simulcast layer, not one."""
        self._receivers[id] = _Receiver(tuple(codecs), id=id, deliver=deliver, all_layers=all_layers)

    def remove_source(self, id: VideoSourceId) -> None:
        """The stream went away; who subscribed to it stays subscribed (a reconnect)."""
        if self._sources.pop(id, None) is None:
            return
        subscribers = self._subscribers.get(id, set())
        for receiver in self._receivers.values():
            if receiver.id in subscribers:
                receiver.waiting_keyframe.add(id)
        self._changed("source", id)

    def remove_sources(self, participant: str) -> None:
        """The participant's media went away (all its streams); subscriptions to them stay."""
        for id in [id for id in self._sources if id.participant == participant]:
            self.remove_source(id)

    def remove_receiver(self, id: str) -> None:
        self._receivers.pop(id, None)
        self._unsubscribe_everywhere(id)

    def _unsubscribe_everywhere(self, receiver_id: str) -> None:
        for source_id, subscribers in list(self._subscribers.items()):
            if receiver_id in subscribers:
                subscribers.discard(receiver_id)
                if not subscribers:
                    self._changed("demand", source_id)

    def remove(self, participant: str) -> None:
        """The participant left: as the sender of all its streams and as receiver."""
        gone = [id for id in self._sources if id.participant == participant]
        for id in gone:
            del self._sources[id]
        for id in [id for id in self._subscribers if id.participant == participant]:
            del self._subscribers[id]
        self._receivers.pop(participant, None)
        for receiver in self._receivers.values():
            for choices in (receiver.layers, receiver.wanted_layers, receiver.shown_sizes):
                for id in [id for id in choices if id.participant == participant]:
                    del choices[id]
        self._unsubscribe_everywhere(participant)
        for id in gone:
            self._changed("source", id)

    def source_ids(self) -> list[VideoSourceId]:
        return list(self._sources)

    def sources_of(self, participant: str) -> list[VideoSourceId]:
        return [id for id in self._sources if id.participant == participant]

    def subscribe(
        self, receiver_id: str, source_id: VideoSourceId, codecs: Sequence[StreamCodec | str] | None = None
    ) -> None:
        """`codecs`: what this subscription takes, when it is not what the receiver takes as a whole
        (a browser's slot sends one codec); subscribing again changes only that."""
        receiver = self._receivers.get(receiver_id)
        if receiver is None or receiver_id == source_id.participant:
            return
        if codecs is None:
            receiver.per_source.pop(source_id, None)
        elif source_id not in receiver.per_source or receiver.per_source[source_id].codecs != tuple(codecs):
            receiver.per_source[source_id] = _Codecs(tuple(codecs))
        subscribers = self._subscribers.setdefault(source_id, set())
        if receiver_id not in subscribers:
            subscribers.add(receiver_id)
            receiver.waiting_keyframe.add(source_id)
            self.request_keyframe(source_id, force=True)
            if len(subscribers) == 1:
                self._changed("demand", source_id)

    def unsubscribe(self, receiver_id: str, source_id: VideoSourceId) -> None:
        subscribers = self._subscribers.get(source_id)
        if subscribers is not None and receiver_id in subscribers:
            subscribers.discard(receiver_id)
            if not subscribers:
                self._changed("demand", source_id)
        receiver = self._receivers.get(receiver_id)
        if receiver is not None:
            receiver.waiting_keyframe.discard(source_id)
            receiver.per_source.pop(source_id, None)

    def subscriptions(self, receiver_id: str) -> set[VideoSourceId]:
        return {source for source, subs in self._subscribers.items() if receiver_id in subs}

    def want_layer(self, receiver_id: str, source_id: VideoSourceId, layer: int | None) -> None:
        """The highest simulcast layer of the source this receiver should get (its bandwidth); None:
        the best there is. The switch happens at the new layer's next keyframe, which is asked for."""
        receiver = self._receivers.get(receiver_id)
        if receiver is None or receiver.wanted_layers.get(source_id) == layer:
            return
        if layer is None:
            receiver.wanted_layers.pop(source_id, None)
        else:
            receiver.wanted_layers[source_id] = layer
        self.request_keyframe(source_id)

    def shown_size(self, receiver_id: str, source_id: VideoSourceId, size: tuple[int, int] | None) -> None:
        """The size (width, height) the receiver shows the source's picture at; None: not known. It
        gets the lowest simulcast layer whose keyframes are at least that large (and no higher
        than `want_layer` says): a picture shown small costs the receiver a small decode. The
        choice follows the layers' sizes as they change (a browser lowers its resolution when its
        CPU or uplink is short). (The keyframe a switch needs is asked for by the first frame of
        the new layer: most size changes change no layer, and most sources have but one.)"""
        receiver = self._receivers.get(receiver_id)
        if receiver is None:
            return
        if size is None:
            receiver.shown_sizes.pop(source_id, None)
        else:
            receiver.shown_sizes[source_id] = size

    @staticmethod
    def _layer_for_size(source: _Source, size: tuple[int, int] | None) -> int:
        """The lowest layer at least `size` large; beyond any (unknown sizes, no size) the best."""
        best = 1 << 30
        if size is not None:
            for layer, (width, height) in source.layer_size.items():
                if width >= size[0] and height >= size[1] and layer < best:
                    best = layer
        return best

    def layer_bps(self, source_id: VideoSourceId) -> dict[int, float]:
        """What each simulcast layer of the source sends (bit/s, over the last second or so)."""
        source = self._sources.get(source_id)
        return dict(source.layer_bps) if source else {}

    @staticmethod
    def _count_layer(source: _Source, frame: EncodedVideoFrame, now: float) -> None:
        if source.window_start < 0:
            source.window_start = now
        source.layer_bytes[frame.layer] = source.layer_bytes.get(frame.layer, 0) + len(frame.data)
        elapsed = now - source.window_start
        if elapsed >= LAYER_WINDOW_S:
            source.layer_bps = {layer: count * 8 / elapsed for layer, count in source.layer_bytes.items()}
            source.layer_bytes.clear()
            source.window_start = now

    def layer_of(self, receiver_id: str, source_id: VideoSourceId) -> int | None:
        """The simulcast layer the receiver gets of the source now (None before its first frame)."""
        receiver = self._receivers.get(receiver_id)
        if receiver is None or source_id in receiver.waiting_keyframe:
            return None
        if source_id in receiver.layers:
            return receiver.layers[source_id]
        source = self._sources.get(source_id)  # (one layer only: the one it sends)
        subscribed = receiver_id in self._subscribers.get(source_id, ())
        return next(iter(source.layer_seen)) if source and subscribed and len(source.layer_seen) == 1 else None

    def _takes_layer(self, receiver: _Receiver, source: _Source, frame: EncodedVideoFrame, top: int, now: float) -> bool:
        """Whether this frame's layer of a simulcast source is the one the receiver gets: the layer
        it wants, at most `top` (the source's highest that sends); a switch waits for a keyframe of
        the new layer."""
        wanted = min(
            receiver.wanted_layers.get(source.id, 1 << 30),
            self._layer_for_size(source, receiver.shown_sizes.get(source.id)),
            top,
        )
        current = receiver.layers.get(source.id)
        if current is not None and now - source.layer_seen.get(current, -1e9) >= LAYER_GONE_S:
            current = None  # (its layer paused: any keyframe of the wanted one will do)
        if frame.layer == current and current == wanted:
            return True
        if frame.layer == wanted:
            if frame.keyframe:
                receiver.layers[source.id] = wanted
                return True
            self.request_keyframe(source.id)  # (rate-limited)
            return False
        # Until the wanted layer's keyframe comes, the current layer goes on (no frozen picture).
        return frame.layer == current

    def request_keyframe(self, source_id: VideoSourceId, force: bool = False) -> None:
        """A receiver lost a picture (PLI/FIR) or a new one subscribed: ask the source, rate-limited."""
        source = self._sources.get(source_id)
        if source is None:
            return
        now = self._clock()
        if not force and now - source.last_request < self._keyframe_interval:
            return
        source.last_request = now
        source.request_keyframe()

    def source_codec(self, source_id: VideoSourceId) -> str | None:
        """The codec the source sends (of its last frame), None before its first frame."""
        source = self._sources.get(source_id)
        return source.codec if source else None

    def source_stats(self, source_id: VideoSourceId) -> int:
        source = self._sources.get(source_id)
        return source.frames_in if source else 0

    def source_undecodable(self, source_id: VideoSourceId) -> int:
        """Frames of this source dropped as empty or undecodable."""
        source = self._sources.get(source_id)
        return source.frames_undecodable if source else 0

    def participant_stats(self, participant: str) -> tuple[int, int]:
        """Frames in and frames dropped as undecodable, over all streams of a participant."""
        sources = [s for id, s in self._sources.items() if id.participant == participant]
        return sum(s.frames_in for s in sources), sum(s.frames_undecodable for s in sources)

    def receiver_stats(self, receiver_id: str) -> int:
        receiver = self._receivers.get(receiver_id)
        return receiver.frames_out if receiver else 0

    def frames_below_top(self, receiver_id: str) -> int:
        """Frames the receiver took from a lower simulcast layer than the best its source sent."""
        receiver = self._receivers.get(receiver_id)
        return receiver.frames_below_top if receiver else 0

    def _undecodable(self, source_id: VideoSourceId) -> None:
        source = self._sources.get(source_id)
        if source is None:
            return
        source.frames_undecodable += 1
        self.frames_undecodable += 1
        self.request_keyframe(source_id)  # (rate-limited)

    def on_frame(self, source_id: VideoSourceId, frame: EncodedVideoFrame) -> None:
        source = self._sources.get(source_id)
        if source is None:
            return
        source.frames_in += 1
        now = self._clock()
        if frame.layer not in source.layer_seen and len(source.layer_seen) == 1:
            # (a second layer: the source turns out to send simulcast; its receivers so far got the first)
            first = next(iter(source.layer_seen))
            for rid in self._subscribers.get(source_id, ()):
                receiver = self._receivers.get(rid)
                if receiver is not None and source_id not in receiver.waiting_keyframe:
                    receiver.layers.setdefault(source_id, first)
        source.layer_seen[frame.layer] = now
        if frame.keyframe:
            size = keyframe_size(frame.codec, frame.data)
            if size is not None:
                source.layer_size[frame.layer] = size
        self._count_layer(source, frame, now)
        top = source.top_layer(now) if len(source.layer_seen) > 1 else None  # (None: no simulcast)
        if not frame.data:  # nothing any receiver's packetizer or decoder should be handed
            self._undecodable(source_id)
            return
        if source.codec != frame.codec:
            source.codec = frame.codec
            if self.source_codec_changed is not None:
                self.source_codec_changed(source_id)
        needs: dict[str, list[_Receiver]] = {}
        for rid in self._subscribers.get(source_id, ()):
            receiver = self._receivers.get(rid)
            if receiver is None:
                continue
            if top is not None and not receiver.all_layers:
                if not self._takes_layer(receiver, source, frame, top, now):
                    continue
                if frame.layer < top:
                    receiver.frames_below_top += 1
            takes = receiver.codecs_for(source_id)
            if takes.accepts(frame):
                self._forward(receiver, source_id, frame)
            elif takes.codecs:
                needs.setdefault(takes.target, []).append(receiver)
        for codec, receivers in needs.items():
            if self._transcode is None:
                continue
            targets = [r.id for r in receivers]

            def done(frames: list[EncodedVideoFrame], targets: list[str] = targets) -> None:
                for out in frames:
                    for rid in targets:
                        receiver = self._receivers.get(rid)
                        if receiver is not None:
                            self._forward(receiver, source_id, out, transcoded=True)

            self._transcode(source_id, codec, frame, TranscodeDone(done, lambda: self._undecodable(source_id)))

    def _forward(self, receiver: _Receiver, source_id: VideoSourceId, frame: EncodedVideoFrame, transcoded: bool = False) -> None:
        if source_id in receiver.waiting_keyframe:
            if not frame.keyframe:
                # Asked again (rate-limited) until one comes: a sender may drop a request (baresip
                # ignores a PLI that arrives while it encodes) and a receiver would wait forever.
                self.request_keyframe(source_id)
                return
            receiver.waiting_keyframe.discard(source_id)
        receiver.frames_out += 1
        if transcoded:
            self.frames_transcoded += 1
        else:
            self.frames_forwarded += 1  # (as it came: no decode)
        try:
            receiver.deliver(source_id, frame)
        except Exception:  # one receiver's broken leg must not cost the receivers after it
            receiver.send_failures += 1
            if receiver.send_failures == 1:
                log.exception("sending video failed", receiver=receiver.id, source=source_id)
