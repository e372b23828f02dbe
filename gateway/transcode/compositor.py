"""The composed picture room systems receive: one canvas per room, encoded once per distinct output.

Protocol-free. A room system (SIP or H.323, one video stream per leg) cannot take each participant's
camera separately, so the room composes them: the active speaker large with a strip of the others,
or a grid (`layout.arrange`), names drawn on the tiles, a border around whoever talks. The
`Compositor` of a room decodes each shown participant's camera (one decoder per participant, on
its own thread, frames in order), composes ONE canvas per tick and encodes it once per
`OutputSpec`: all receivers whose spec is equal share one encoder and get the very same frames.

Threads, not processes: PyAV releases the GIL around avcodec_send/receive_* and sws_scale
(measured: a pure-Python loop on the loop thread kept 96-106 % of its speed while another thread
encoded or decoded 720p without pause, against 54 % beside a pure-Python thread), so the event
loop keeps its 20 ms audio tick while video runs. The compositor runs on one plain thread per room
with its own deadline loop (time.monotonic): its pace does not depend on how busy the event loop
is, and the loop only ever does the cheap parts (bookkeeping, handing frames to receivers, which
`loop.call_soon_threadsafe` schedules). Without outputs the thread sleeps; nothing is composed.
Video threads run at a lower CPU priority than the loop (`VIDEO_NICENESS`): when cores run short,
the composed picture drops frames before the audio tick is late. A canvas is composed again only
when something on it changed, and a camera that the arrangement does not show is not decoded (its
decoder waits for a keyframe, asked for when the camera is shown again). The room is told the size
of each camera's tile (`on_tiles`), so that a browser's camera in the strip comes in its small
simulcast layer: a 640x360 decode for a 304x172 tile instead of a 1280x720 one.

Bitrate: an output group (receivers with an equal spec) encodes at the minimum of the spec's bitrate
and its receivers' caps (RTCP TMMBR/REMB, `set_bitrate`): one encode serves everyone, so it must
fit the narrowest receiver. A cap low enough also lowers the encoded size (the ladder of
`OutputSpec.for_codec`); a receiver with a very different cap should be given its own spec. The
encoder is reopened (an IDR) for a change: at once when the rate falls by 10 % or more, at most
every 5 s when it rises.

Nothing a source sends can stop the compositor: an undecodable frame is counted, logged once per
participant, a keyframe is asked of that participant (`on_keyframe_needed`, rate-limited) and its
decoder skips to it; the others go on. An encoder that fails is reopened (its next frame is an IDR).
"""

from __future__ import annotations

import asyncio
import fractions
import functools
import math
import threading
import time
import unicodedata
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, cast

import av
import numpy as np
import numpy.typing as npt
import structlog
from av.video.reformatter import VideoReformatter
from PIL import Image, ImageDraw, ImageFont

from gateway.transcode.codecs import (
    DEFAULT_PROFILE_LEVEL_ID,
    H264Profile,
    StreamCodec,
    h264_profile_level,
    packetization_mode,
)
from gateway.transcode.layout import MAX_GRID, MAX_STRIP, Layout, Rect, SpeakerHold, arrange
from gateway.transcode.video import (
    VIDEO_CLOCK,
    EncodedVideoFrame,
    is_keyframe,
    lower_priority,
    nal_units,
    open_encoder,
)

log = structlog.get_logger(__name__)

Plane = npt.NDArray[np.uint8]

# -- output formats --------------------------------------------------------------------------------

# H.264 Annex A, Table A-1, by H264ProfileLevel.level (level_idc x 10; level 1b as 9):
# (MaxMBPS macroblocks/s, MaxFS macroblocks, MaxBR kbit/s for the baseline/main profiles)
H264_LEVELS: dict[int, tuple[int, int, int]] = {
    9: (1485, 99, 128),
    100: (1485, 99, 64),
    110: (3000, 396, 192),
    120: (6000, 396, 384),
    130: (11880, 396, 768),
    200: (11880, 396, 2000),
    210: (19800, 792, 4000),
    220: (20250, 1620, 4000),
    300: (40500, 1620, 10000),
    310: (108000, 3600, 14000),
    320: (216000, 5120, 20000),
    400: (245760, 8192, 20000),
    410: (245760, 8192, 50000),
    420: (522240, 8704, 50000),
    500: (589824, 22080, 135000),
    510: (983040, 36864, 240000),
    520: (2073600, 36864, 240000),
}
# 16:9 sizes, largest first, with the bandwidth (kbit/s, b=AS/TIAS or a TMMBR/REMB cap) each needs
# to look right with a realtime encoder; 160x90 is there only for levels below 320x180.
LADDER: tuple[tuple[int, int, int], ...] = (
    (1920, 1080, 2500),
    (1280, 720, 1000),
    (960, 540, 600),
    (640, 360, 400),
    (480, 270, 200),
    (320, 180, 0),
    (160, 90, 0),
)
FPS_STEPS = (30, 25, 15, 10)
DEFAULT_BITRATE_720P30 = 1_500_000
PAYLOAD_SHARE = 0.95  # of a bandwidth limit: the rest is RTP/UDP/IP headers
KEYFRAME_INTERVAL_S = 3  # periodic IDRs, for room systems joining a running stream
KEYFRAME_MIN_GAP_S = 0.5  # requested keyframes, per encoder
SOURCE_KEYFRAME_GAP_S = 0.5  # keyframes asked of one participant
MODE0_SLICE_BYTES = 1100  # packetization-mode 0: every NAL unit in one RTP packet


def macroblocks(width: int, height: int) -> int:
    return math.ceil(width / 16) * math.ceil(height / 16)


def default_bitrate(width: int, height: int, fps: int) -> int:
    """What an output of this size and rate is encoded at without a tighter limit (1.5 Mbit/s at
    720p30; pixels count less than linearly)."""
    scale = ((width * height) / (1280 * 720)) ** 0.75 * math.sqrt(fps / 30)
    return int(DEFAULT_BITRATE_720P30 * scale) // 1000 * 1000


def size_for_bandwidth(kbps: float, max_width: int, max_height: int) -> tuple[int, int]:
    """The largest ladder size within max_width x max_height that this bandwidth carries."""
    fitting = [(w, h) for w, h, _ in LADDER if w <= max_width and h <= max_height]
    for w, h, need in LADDER:
        if (w, h) in fitting and kbps >= need:
            return w, h
    return fitting[-1] if fitting else (LADDER[-1][0], LADDER[-1][1])


def _int_parameter(codec: StreamCodec, key: str) -> int | None:
    value = codec.parameter(key)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number > 0 else None


def _level_limits(level: int) -> tuple[int, int, int]:
    known = [lv for lv in H264_LEVELS if lv <= level]
    return H264_LEVELS[max(known) if known else 100]


def _fps_for(macroblock_count: int, want: int, max_mbps: int | None, max_fps: int | None) -> int:
    """The highest frame rate up to `want` that the limits allow (snapped to FPS_STEPS when limited)."""
    limit = want
    if max_fps is not None:
        limit = min(limit, max_fps)
    if max_mbps is not None:
        limit = min(limit, max_mbps // macroblock_count)
    if limit >= want:
        return want
    return next((f for f in FPS_STEPS if f <= limit), max(limit, 0))


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """One distinct output of a room's composed picture. Receivers with equal specs share one
    encoder: every field is part of what makes two outputs the same. For H.264, profile_level_id
    is the receiver's own (the encoder always makes constrained baseline, which every H.264 profile
    decodes, at a level within it)."""

    codec: str  # "H264" | "VP8"
    profile_level_id: str | None = None  # H.264 only, lower-case hex ("42e01f", "640c1f")
    packetization_mode: int = 1  # H.264 only: 0 keeps every NAL unit small enough for one RTP packet
    width: int = 1280
    height: int = 720
    fps: int = 30
    bitrate_bps: int = DEFAULT_BITRATE_720P30

    CODECS: ClassVar[tuple[str, ...]] = ("H264", "VP8")

    def __post_init__(self) -> None:
        if self.codec not in self.CODECS:
            raise ValueError(f"compositor outputs are H264 or VP8, not {self.codec!r}")
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise ValueError(f"output size {self.width}x{self.height} must be even and at least 16x16")
        if not 1 <= self.fps <= 60:
            raise ValueError(f"output rate {self.fps} fps out of 1..60")
        if self.bitrate_bps <= 0:
            raise ValueError("output bitrate must be positive")
        if self.packetization_mode not in (0, 1):
            raise ValueError(f"packetization-mode {self.packetization_mode} not supported (0 or 1)")

    @property
    def key(self) -> str:
        """A readable name of the output (stats, logs)."""
        if self.codec == "H264":
            codec = f"H264/{self.profile_level_id}/pm{self.packetization_mode}"
        else:
            codec = self.codec
        return f"{codec}/{self.width}x{self.height}@{self.fps}/{self.bitrate_bps // 1000}k"

    def with_bitrate(self, bps: int) -> OutputSpec:
        return replace(self, bitrate_bps=bps)

    @classmethod
    def for_codec(
        cls,
        codec: StreamCodec,
        *,
        width: int = 1280,
        height: int = 720,
        fps: int = 30,
        max_kbps: int | None = None,
    ) -> OutputSpec:
        """The output a receiver that agreed on `codec` can take, at most width x height at fps.

        H.264: the level of profile-level-id bounds frame size, macroblock rate and bitrate (H.264
        Table A-1); max-fs / max-mbps / max-br replace them when given (RFC 6184 says they only ever
        raise them), max-fps caps the rate. VP8: max-fs and max-fr (RFC 7741). The bandwidth
        (codec.bandwidth_kbps from b=AS/TIAS, and max_kbps) picks the size from LADDER and caps the
        bitrate. The largest size that still runs at 15 fps or more wins; then the highest rate."""
        name = codec.name.upper()
        if name not in cls.CODECS:
            raise ValueError(f"compositor outputs are H264 or VP8, not {codec.name!r}")
        max_fs: int | None = None
        max_mbps: int | None = None
        max_br_kbps: int | None = None
        max_fps = _int_parameter(codec, "max-fps")
        profile_level_id: str | None = None
        mode = 1
        if name == "H264":
            profile_level_id = (codec.parameter("profile-level-id") or DEFAULT_PROFILE_LEVEL_ID).lower()
            mode = packetization_mode(codec)
            if mode not in (0, 1):
                raise ValueError(f"packetization-mode {mode} not supported (0 or 1)")
            described = h264_profile_level(codec)
            level = described.level if described is not None else 100
            max_mbps, max_fs, max_br_kbps = _level_limits(level)
            if described is not None and described.profile in (
                H264Profile.HIGH,
                H264Profile.CONSTRAINED_HIGH,
            ):
                max_br_kbps = max_br_kbps * 5 // 4  # cpbBrVclFactor 1250 for High
            max_fs = _int_parameter(codec, "max-fs") or max_fs
            max_mbps = _int_parameter(codec, "max-mbps") or max_mbps
            max_br_kbps = _int_parameter(codec, "max-br") or max_br_kbps
        else:
            max_fs = _int_parameter(codec, "max-fs")
            max_fr = _int_parameter(codec, "max-fr")
            if max_fr is not None:
                max_fps = min(max_fps, max_fr) if max_fps is not None else max_fr
        limits = [k for k in (codec.bandwidth_kbps, max_kbps) if k is not None and k > 0]
        bandwidth_kbps = min(limits) if limits else None

        candidates: list[tuple[int, int, int]] = []  # (w, h, fps), largest first
        for w, h, need in LADDER:
            if w > width or h > height:
                continue
            if bandwidth_kbps is not None and bandwidth_kbps < need:
                continue
            mbs = macroblocks(w, h)
            if max_fs is not None:
                if mbs > max_fs:
                    continue
                # (Annex A: neither side longer than sqrt(8 * MaxFS) macroblocks)
                if name == "H264" and max(math.ceil(w / 16), math.ceil(h / 16)) ** 2 > 8 * max_fs:
                    continue
            rate = _fps_for(mbs, fps, max_mbps, max_fps)
            if rate >= 1:
                candidates.append((w, h, rate))
        if not candidates:
            w, h, _ = LADDER[-1]
            candidates.append((w, h, max(1, _fps_for(macroblocks(w, h), fps, max_mbps, max_fps))))
        good = [c for c in candidates if c[2] >= min(15, fps)]
        w, h, rate = good[0] if good else max(candidates, key=lambda c: (c[2], c[0]))

        bitrate = default_bitrate(w, h, rate)
        if bandwidth_kbps is not None:
            bitrate = min(bitrate, int(bandwidth_kbps * 1000 * PAYLOAD_SHARE))
        if max_br_kbps is not None:
            bitrate = min(bitrate, max_br_kbps * 1000)
        return cls(
            codec=name,
            profile_level_id=profile_level_id,
            packetization_mode=mode if name == "H264" else 1,
            width=w,
            height=h,
            fps=rate,
            bitrate_bps=max(bitrate, 16_000),
        )


@dataclass(frozen=True, slots=True)
class Tile:
    """A participant as the picture shows them: their name, and whether their camera sends."""

    participant: str
    name: str
    has_video: bool = True


# -- drawing ---------------------------------------------------------------------------------------

BLACK = (16, 128, 128)  # limited-range BT.601 Y, U, V
NO_VIDEO_GREY = 48
TEXT_Y = 235
SPEAKING_COLOUR = (177, 35, 170)  # amber, RGB (255, 190, 0)
NOTICE_COLOUR = (67, 98, 216)  # red, RGB (200, 0, 0): the recording / live mark
MAX_NAME_CHARS = 64
_DIM_Y = (16 + (np.arange(256) - 16) * 0.35).clip(0, 255).astype(np.uint8)  # the bar behind a label
_DIM_C = (128 + (np.arange(256) - 128) * 0.35).clip(0, 255).astype(np.uint8)

# Pillow's FreeType rendering is not documented as thread-safe; every room's thread renders
# through this lock (once per name and size: the results are cached).
_text_lock = threading.Lock()


# A system font with wide coverage when installed (DejaVu: Latin, Greek, Cyrillic, Arabic, Hebrew),
# else Pillow's scalable default font (ASCII only).
FONT_FILES = ("DejaVuSans.ttf",)


@functools.lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in FONT_FILES:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def _glyph(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, char: str) -> bytes:
    image = Image.new("L", (32, 32))
    ImageDraw.Draw(image).text((4, 4), char, fill=255, font=font)
    return image.tobytes()


@functools.lru_cache(maxsize=4096)
def _has_glyph(char: str) -> bool:
    """Whether the font draws this character (not its 'missing' box). Call under _text_lock."""
    font = _font(16)
    return char.isspace() or _glyph(font, char) != _glyph(font, "\uffff")


def _drawable(text: str) -> str:
    """The text with characters the font lacks replaced by their base letters where there are
    some (Ä -> A with the ASCII-only default font); others stay (drawn as boxes). Under _text_lock."""
    out = []
    for char in text:
        if not _has_glyph(char):
            base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
            if base and all(_has_glyph(c) for c in base):
                char = base
        out.append(char)
    return "".join(out)


def clean_name(name: str) -> str:
    """A display name as drawn: no control or format characters, spaces collapsed, bounded."""
    kept = "".join(c if not unicodedata.category(c).startswith(("C", "Z")) else " " for c in name)
    return " ".join(kept.split())[:MAX_NAME_CHARS]


def initials(name: str) -> str:
    words = clean_name(name).split()
    return "".join(w[0] for w in words[:2]).upper()


def text_fits(text: str, size: int, width: int) -> bool:
    with _text_lock:
        return _font(size).getlength(_drawable(text)) <= width


@functools.lru_cache(maxsize=1024)
def text_mask(text: str, size: int, max_width: int) -> Plane:
    """The text as an alpha mask (0..255, one row per pixel), cut with an ellipsis to max_width."""
    with _text_lock:
        font = _font(size)
        text = _drawable(clean_name(text))
        if font.getlength(text) > max_width:
            lo, hi = 0, len(text)
            while lo < hi:  # the longest prefix that fits with the ellipsis
                mid = (lo + hi + 1) // 2
                if font.getlength(text[:mid].rstrip() + "…") <= max_width:
                    lo = mid
                else:
                    hi = mid - 1
            text = text[:lo].rstrip() + "…" if lo else ""
        if not text:
            return np.zeros((1, 1), np.uint8)
        left, _top, right, _bottom = font.getbbox(text)
        if isinstance(font, ImageFont.FreeTypeFont):
            ascent, descent = font.getmetrics()
        else:  # (the bitmap fallback when Pillow has no FreeType)
            ascent, descent = font.getbbox("Ag")[3], 0
        width = max(1, min(max_width, int(right - left)))
        image = Image.new("L", (width, max(1, ascent + descent)))
        ImageDraw.Draw(image).text((-left, 0), text, fill=255, font=font)
        mask: Plane = np.array(image, dtype=np.uint8)
    mask.setflags(write=False)
    return mask


def _blend_text(y: Plane, mask: Plane, top: int, left: int, bottom: int, right: int) -> None:
    """Blends a light text mask into the Y plane at (top, left), clipped to bottom/right."""
    h = max(0, min(mask.shape[0], bottom - top))
    w = max(0, min(mask.shape[1], right - left))
    if not h or not w:
        return
    region = y[top : top + h, left : left + w]
    alpha: npt.NDArray[np.uint16] = mask[:h, :w].astype(np.uint16)
    region[:] = ((region.astype(np.uint16) * (255 - alpha) + TEXT_Y * alpha + 127) // 255).astype(np.uint8)


_scaler_threads: dict[str, int] = {"threads": 1}


def scale(scaler: VideoReformatter, frame: av.VideoFrame, width: int, height: int) -> av.VideoFrame:
    """frame as yuv420p at width x height, on one thread: PyAV >= 17 otherwise lets swscale start
    a thread per core for every scaler, which costs more than it saves on tile-sized pictures and
    with a thread per room already (the `threads` argument is new in 17: older ones scale on one).
    Smaller pictures (a camera in a tile, nearly always) are scaled by area averaging: no aliasing
    on fine detail, and cheaper than bilinear (measured at 720p to 960x540 plus 320x180: 0.60 vs
    0.73 ms); larger ones bilinearly."""
    smaller = width <= frame.width and height <= frame.height
    try:
        return scaler.reformat(
            frame,
            width=width,
            height=height,
            format="yuv420p",
            interpolation="AREA" if smaller else "BILINEAR",
            **_scaler_threads,
        )
    except TypeError:
        if not _scaler_threads:
            raise
        _scaler_threads.clear()
        return scale(scaler, frame, width, height)


def plane_views(frame: av.VideoFrame) -> tuple[Plane, Plane, Plane]:
    """Writable numpy views of a yuv420p frame's Y, U and V planes (no copy)."""
    views = []
    for index, (w, h) in enumerate(
        ((frame.width, frame.height),) + ((frame.width // 2, frame.height // 2),) * 2
    ):
        plane = frame.planes[index]
        data = np.frombuffer(cast(Any, plane), np.uint8)
        views.append(data.reshape(-1, plane.line_size)[:h, :w])
    return views[0], views[1], views[2]


# -- the compositor --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scene:
    tiles: dict[str, Tile]  # in the room's order
    layout: Layout
    spotlight: str | None
    speaking: frozenset[str]
    version: int = 0
    notice: str | None = None  # a mark at the top right for everyone (recorded, live)


class _Source:
    """One participant's camera: its decoder lives on its own thread; `latest` is the newest picture."""

    def __init__(self, participant: str) -> None:
        self.participant = participant
        self.executor = ThreadPoolExecutor(
            1, thread_name_prefix=f"decode-{participant[:16]}", initializer=lower_priority
        )
        self.lock = threading.Lock()
        self.pending = 0
        self.skipping = True  # (loop) drop frames up to the next keyframe
        self.last_keyframe_request = -1e9
        self.decoder: av.VideoCodecContext | None = None  # (decoder thread)
        self.decoder_codec: str | None = None
        self.latest: tuple[int, av.VideoFrame] | None = None  # (serial, picture)
        self.serial = 0
        self.decodes = 0
        self.errors = 0

    def decode(self, frame: EncodedVideoFrame) -> None:
        """On the source's thread. Raises what the codec raises; then the decoder starts afresh."""
        if self.decoder is None or self.decoder_codec != frame.codec:
            if not frame.keyframe:
                return
            decoder = av.VideoCodecContext.create("vp8" if frame.codec == "VP8" else "h264", "r")
            decoder.thread_count = 1  # (no frame threading: it would hold pictures back)
            self.decoder, self.decoder_codec = decoder, frame.codec
        try:
            pictures = self.decoder.decode(av.Packet(frame.data))
        except Exception:
            self.decoder = None
            raise
        for picture in pictures:
            self.serial += 1
            self.decodes += 1
            self.latest = (self.serial, picture)


@dataclass
class _Receiver:
    id: str
    deliver: Callable[[EncodedVideoFrame], None]
    cap_bps: int | None = None
    waiting_keyframe: bool = True
    failures: int = 0


@dataclass
class _Group:
    """All receivers of one OutputSpec and their shared encoder (which only the compositor thread
    touches). The fields above the line are changed on the loop under the compositor's lock."""

    spec: OutputSpec
    receivers: dict[str, _Receiver] = field(default_factory=dict)
    cap_bps: int | None = None
    force_keyframe: bool = False
    keyframe_wanted: bool = False
    # --- compositor thread only
    encoder: av.VideoCodecContext | None = None
    encoder_size: tuple[int, int] = (0, 0)
    encoder_bitrate: int = 0
    opened_at: float = 0.0
    last_keyframe_at: float = -1e9
    next_at: float | None = None
    errors: int = 0

    def target(self) -> tuple[int, int, int]:
        """(width, height, bitrate) the encoder should run at under the receivers' caps."""
        spec = self.spec
        if self.cap_bps is None or self.cap_bps >= spec.bitrate_bps:
            return spec.width, spec.height, spec.bitrate_bps
        w, h = size_for_bandwidth(self.cap_bps / 1000, spec.width, spec.height)
        return w, h, max(16_000, int(self.cap_bps * PAYLOAD_SHARE))


def _open_encoder(spec: OutputSpec, width: int, height: int, bitrate: int) -> av.VideoCodecContext:
    """video.open_encoder plus what a shared realtime output needs: periodic IDRs with SPS/PPS in
    front of each, a forced picture type making an IDR, one thread (rooms run in parallel, one
    encode each), VBV so a keyframe does not burst past the receivers' limit, and for
    packetization-mode 0 slices small enough for single NAL unit packets."""
    kbps = max(16, bitrate // 1000)
    params = [f"repeat-headers=1:bframes=0:vbv-maxrate={kbps}:vbv-bufsize={kbps}"]
    if spec.packetization_mode == 0:
        params.append(f"slice-max-size={MODE0_SLICE_BYTES}")
    return open_encoder(
        spec.codec,
        width,
        height,
        bitrate,
        spec.fps,
        gop_size=spec.fps * KEYFRAME_INTERVAL_S,
        threads=1,
        x264={"forced-idr": "1", "x264-params": ":".join(params)},
    )


def _without_sei(data: bytes) -> bytes:
    """An Annex B frame without its SEI NAL units (x264's version SEI is larger than a packet)."""
    units = nal_units(data)
    if not any(u and u[0] & 0x1F == 6 for u in units):
        return data
    return b"".join(b"\x00\x00\x00\x01" + u for u in units if u and u[0] & 0x1F != 6)


class Compositor:
    """The composed picture of one room for its room systems; see the module's docstring.

    Every public method is called on the event loop; `deliver` callbacks and `on_keyframe_needed`
    are called on it too. `clock` drives the speaker hold and the keyframe rate limits; the pace of
    composition is the thread's own time.monotonic."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        max_fps: int = 30,
        speaker_hold_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        canvas: tuple[int, int] = (1280, 720),
        request_keyframe_from: Callable[[str], None] | None = None,
        room: str | None = None,
        max_pending_decodes: int = 5,
        epoch: float | None = None,
        on_tiles: Callable[[dict[str, tuple[int, int]]], None] | None = None,
    ) -> None:
        width, height = canvas
        if width < 64 or height < 36 or width % 2 or height % 2:
            raise ValueError(f"canvas {width}x{height} must be even and at least 64x36")
        self._loop = loop
        self._max_fps = max_fps
        self._clock = clock
        self._size = (width, height)
        self.on_keyframe_needed = request_keyframe_from
        # Told (on the loop) the size of every camera's tile whenever the arrangement changes, so
        # that a camera shown small can be sent in a smaller simulcast layer (less to decode).
        self.on_tiles = on_tiles
        self._tiles: dict[str, tuple[int, int]] = {}  # (thread) the sizes last told
        self._log = log.bind(room=room) if room else log
        self._max_pending = max_pending_decodes
        self._lock = threading.Lock()  # scene, hold, groups: shared by the loop and the thread
        self._hold = SpeakerHold(speaker_hold_s, clock)
        self._scene = _Scene({}, Layout.SPEAKER, None, frozenset())
        self._groups: dict[OutputSpec, _Group] = {}
        self._receivers: dict[str, _Group] = {}
        self._sources: dict[str, _Source] = {}
        self._wanted: frozenset[str] = frozenset()  # whose pictures the arrangement shows (thread writes)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._closed = False
        self._t0 = time.monotonic() if epoch is None else epoch  # RTP time 0 (time.monotonic)
        # (compositor thread) the last canvas and what it showed, its scaled copies, scaled pictures
        self._canvas: av.VideoFrame | None = None
        self._canvas_signature: object = None
        self._canvas_sizes: dict[tuple[int, int], av.VideoFrame] = {}
        self._scaled: dict[str, tuple[int, int, int, Plane, Plane, Plane]] = {}
        self._name_tiles: dict[tuple[str, int, int], tuple[Plane, Plane, Plane]] = {}
        self._notice: tuple[str, tuple[int, int, Plane, Plane, Plane] | None] | None = None  # (text, its box)
        # One scaler per participant and per output size: a VideoReformatter keeps its swscale
        # context, which costs four times the scaling itself to set up (0.8 vs 0.2 ms at 720p).
        self._scalers: dict[str, VideoReformatter] = {}
        self._canvas_scalers: dict[tuple[int, int], VideoReformatter] = {}
        self._thread_failures = 0
        # stats
        self.compositions = 0
        self.late_frames = 0
        self.frames_out = 0
        self.frames_dropped = 0  # camera frames not decoded (hidden, behind, waiting for a keyframe)
        self.decode_errors = 0
        self.encode_errors = 0
        self._encodes: dict[str, int] = {}
        self._decodes: dict[str, int] = {}  # of sources removed

    # -- the room's state (loop) ---------------------------------------------------------------------

    def set_scene(
        self,
        tiles: Sequence[Tile],
        layout: Layout,
        spotlight: str | None,
        speaking: Collection[str],
        exclude: str | None = None,
        notice: str | None = None,
    ) -> None:
        """The room as the picture should show it: its participants in order, its layout, whom a
        host put in the spotlight (shown large for everyone; in a grid room too, in the speaker
        arrangement) and who talks now (the mixer's detection; SpeakerHold smooths it). `exclude`
        is someone not shown (the one room system of a meeting need not see itself). `notice`: a
        mark for everyone at the top right (the meeting is recorded or streamed live)."""
        shown = {t.participant: t for t in tiles if t.participant != exclude}
        talking = frozenset(p for p in speaking if p in shown)
        with self._lock:
            before = self._scene.speaking
            self._hold.present(shown)
            for pid in talking - before:
                self._hold.speaking(pid, True)
            for pid in before - talking:
                self._hold.speaking(pid, False)
            self._scene = _Scene(
                shown,
                Layout(layout),
                spotlight if spotlight in shown else None,
                talking,
                self._scene.version + 1,
                notice or None,
            )

    def on_frame(self, participant: str, frame: EncodedVideoFrame) -> None:
        """A whole encoded camera frame (VP8 or H.264 Annex B) of a participant."""
        if self._closed:
            return
        source = self._sources.get(participant)
        if source is None:
            source = self._sources[participant] = _Source(participant)
        if participant not in self._wanted:
            # Not shown: not decoded. Its decoder then needs a keyframe, which is asked for once
            # the arrangement shows it again.
            source.skipping = True
            self.frames_dropped += 1
            return
        if not frame.data or frame.codec not in OutputSpec.CODECS:
            self._decode_failed(source, ValueError(f"empty or unknown frame ({frame.codec})"))
            return
        with source.lock:
            behind = source.pending >= self._max_pending
        if behind and not frame.keyframe:
            source.skipping = True  # a dropped frame breaks the references: skip to a keyframe
        if source.skipping:
            if not frame.keyframe:
                self.frames_dropped += 1
                self._ask_keyframe(source)
                return
            source.skipping = False
        with source.lock:
            source.pending += 1
        try:
            future = source.executor.submit(source.decode, frame)
        except RuntimeError:  # (the executor shut down: the source was just removed)
            return
        future.add_done_callback(functools.partial(self._decoded, source))

    def _decoded(self, source: _Source, future: Future[None]) -> None:
        """On the source's thread, after each decode."""
        with source.lock:
            source.pending -= 1
        error = future.exception() if not future.cancelled() else None
        if error is not None:
            self._post(self._decode_failed, source, error)

    def _decode_failed(self, source: _Source, error: BaseException) -> None:
        source.errors += 1
        self.decode_errors += 1
        if source.errors == 1:
            self._log.warning("camera frame not decodable", participant=source.participant, error=str(error))
        source.skipping = True
        self._ask_keyframe(source)

    def _ask_keyframe(self, source: _Source) -> None:
        now = self._clock()
        if self.on_keyframe_needed is None or now - source.last_keyframe_request < SOURCE_KEYFRAME_GAP_S:
            return
        source.last_keyframe_request = now
        try:
            self.on_keyframe_needed(source.participant)
        except Exception:
            self._log.exception("keyframe request failed", participant=source.participant)

    def remove_source(self, participant: str) -> None:
        """The participant's camera went away (left, or stopped sending)."""
        source = self._sources.pop(participant, None)
        if source is not None:
            source.executor.shutdown(wait=False, cancel_futures=True)
            source.latest = None
            self._decodes[participant] = self._decodes.get(participant, 0) + source.decodes

    # -- outputs (loop) --------------------------------------------------------------------------

    def add_output(
        self, receiver: str, spec: OutputSpec, deliver: Callable[[EncodedVideoFrame], None]
    ) -> None:
        """A room system that takes the picture as `spec`. Receivers with an equal spec share one
        encoder; a receiver's first frame is a keyframe. Adding a receiver again moves it."""
        if self._closed:
            return
        self.remove_output(receiver)
        with self._lock:
            group = self._groups.get(spec)
            if group is None:
                group = self._groups[spec] = _Group(spec)
            else:
                group.force_keyframe = True  # the newcomer needs a picture now, not at the next IDR
            group.receivers[receiver] = _Receiver(receiver, deliver)
            self._receivers[receiver] = group
            self._update_cap(group)
        self._start()

    def remove_output(self, receiver: str) -> None:
        with self._lock:
            group = self._receivers.pop(receiver, None)
            if group is None:
                return
            group.receivers.pop(receiver, None)
            if not group.receivers:
                self._groups.pop(group.spec, None)
            else:
                self._update_cap(group)

    def set_bitrate(self, receiver: str, bps: int) -> None:
        """A receiver's bitrate limit (RTCP TMMBR, REMB). Its output group encodes at the lowest
        limit of its receivers (one encode must fit all of them)."""
        with self._lock:
            group = self._receivers.get(receiver)
            if group is None:
                return
            group.receivers[receiver].cap_bps = max(16_000, int(bps)) if bps > 0 else None
            self._update_cap(group)

    @staticmethod
    def _update_cap(group: _Group) -> None:
        caps = [r.cap_bps for r in group.receivers.values() if r.cap_bps is not None]
        group.cap_bps = min(caps) if caps else None

    def request_keyframe(self, receiver: str) -> None:
        """The receiver lost a picture (RTCP PLI/FIR, SIP INFO picture_fast_update, H.245
        videoFastUpdatePicture): the next frame of its encoder is an IDR, at most one per
        KEYFRAME_MIN_GAP_S per encoder (a request within the gap is served when it ends)."""
        with self._lock:
            group = self._receivers.get(receiver)
            if group is not None:
                group.keyframe_wanted = True

    def _deliver(self, spec: OutputSpec, frame: EncodedVideoFrame) -> None:
        """On the loop: an encoded frame of one output, to every receiver of it."""
        group = self._groups.get(spec)
        if group is None:
            return
        for receiver in list(group.receivers.values()):
            if receiver.waiting_keyframe:
                if not frame.keyframe:
                    continue
                receiver.waiting_keyframe = False
            self.frames_out += 1
            try:
                receiver.deliver(frame)
            except Exception:  # one broken leg must not cost the receivers after it
                receiver.failures += 1
                if receiver.failures == 1:
                    self._log.exception("sending the composed picture failed", receiver=receiver.id)

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        """Hands a result from a worker thread to the loop (dropped once the loop is gone)."""
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass

    # -- lifetime ------------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="compositor", daemon=True)
            self._thread.start()
        self._wake.set()

    async def close(self) -> None:
        self._closed = True
        with self._lock:
            self._stopping = True
            self._groups.clear()
            self._receivers.clear()
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)
        for participant in list(self._sources):
            self.remove_source(participant)

    @property
    def stats(self) -> dict[str, Any]:
        return {
            "compositions": self.compositions,
            "encodes": dict(self._encodes),
            "decodes": self._decodes
            | {p: self._decodes.get(p, 0) + s.decodes for p, s in self._sources.items()},
            "frames_out": self.frames_out,
            "late_frames": self.late_frames,
            "encoders": self.encoders,
            "outputs": len(self._groups),
            "frames_dropped": self.frames_dropped,
            "decode_errors": self.decode_errors,
            "encode_errors": self.encode_errors,
        }

    @property
    def encoders(self) -> int:
        """Encoders open now (one per distinct output that has encoded)."""
        return sum(1 for g in list(self._groups.values()) if g.encoder is not None)

    def counters(self) -> dict[str, int]:
        """The stats as totals (metrics): decodes and encodes summed over participants and outputs."""
        stats = self.stats
        return {
            **{k: v for k, v in stats.items() if isinstance(v, int)},
            "decodes": sum(stats["decodes"].values()),
            "encodes": sum(stats["encodes"].values()),
        }

    # -- the compositor thread ---------------------------------------------------------------------

    def _run(self) -> None:
        lower_priority()
        next_at: float | None = None
        while True:
            with self._lock:
                if self._stopping:
                    return
                rates = [g.spec.fps for g in self._groups.values()]
            if not rates:
                self._wake.wait()
                self._wake.clear()
                next_at = None
                continue
            period = 1 / min(self._max_fps, max(rates))
            now = time.monotonic()
            if next_at is None:
                next_at = now
            if now < next_at:
                self._wake.wait(next_at - now)
                self._wake.clear()
                continue
            if now - next_at >= period:  # behind by a frame or more: skip, do not catch up
                self.late_frames += int((now - next_at) / period)
                next_at = now
            try:
                self._tick(next_at, period)
            except Exception:
                self._thread_failures += 1
                if self._thread_failures == 1:
                    self._log.exception("composing the picture failed")
            next_at += period

    def _tick(self, at: float, period: float) -> None:
        with self._lock:
            groups = list(self._groups.values())
            scene = self._scene
            large = scene.spotlight or self._hold.current()
            layout = Layout.SPEAKER if scene.spotlight else scene.layout
            order = list(scene.tiles)
            capacity = MAX_STRIP + 1 if layout is Layout.SPEAKER else MAX_GRID
            if len(order) > capacity:  # who is shown: the large one and those who spoke last
                position = {p: i for i, p in enumerate(order)}
                recency = {p: self._hold.last_spoke(p) for p in order}
                ranked = sorted(order, key=lambda p: (p != large, -(recency[p] or -1e18), position[p]))
                keep = set(ranked[:capacity])
                order = [p for p in order if p in keep]
        if not groups:
            return
        width, height = self._size
        arrangement = arrange(layout, order, large, width, height)
        wanted = frozenset(p for p, _ in arrangement if scene.tiles[p].has_video)
        if wanted != self._wanted:
            for gone in self._wanted - wanted:
                source = self._sources.get(gone)
                if source is not None:
                    source.latest = None  # (hidden: shown again only with fresh pictures)
                self._scaled.pop(gone, None)
                self._scalers.pop(gone, None)
            self._wanted = wanted
        tiles = {p: (rect.w, rect.h) for p, rect in arrangement if p in wanted}
        if tiles != self._tiles:
            self._tiles = tiles
            if self.on_tiles is not None:
                self._post(self.on_tiles, tiles)
        pictures = {}
        for pid in wanted:
            source = self._sources.get(pid)
            latest = source.latest if source is not None else None
            if latest is not None:
                pictures[pid] = latest
        signature = (
            tuple(arrangement),
            scene.version,
            large,
            tuple(sorted((p, serial) for p, (serial, _) in pictures.items())),
        )
        if self._canvas is None or signature != self._canvas_signature:
            self._canvas = self._compose(arrangement, scene, large, layout, pictures)
            self._canvas_signature = signature
            self._canvas_sizes = {}
            self.compositions += 1
        timestamp = round((at - self._t0) * VIDEO_CLOCK) & 0xFFFFFFFF
        for group in groups:
            if group.next_at is not None and at + period / 2 < group.next_at:
                continue  # a lower rate than the composition's: frames dropped evenly
            step = 1 / group.spec.fps
            group.next_at = (
                at + step if group.next_at is None or group.next_at + step < at else group.next_at + step
            )
            with self._lock:  # (taken only when this output encodes now: a lower rate keeps it)
                keyframe = group.force_keyframe or (
                    group.keyframe_wanted and at - group.last_keyframe_at >= KEYFRAME_MIN_GAP_S
                )
                if keyframe:
                    group.force_keyframe = group.keyframe_wanted = False
            self._encode(group, at, timestamp, keyframe)

    def _encode(self, group: _Group, at: float, timestamp: int, keyframe: bool) -> None:
        spec = group.spec
        width, height, bitrate = group.target()
        reopen = group.encoder is None
        if group.encoder is not None:
            size_changed = (width, height) != group.encoder_size
            lower = bitrate < group.encoder_bitrate * 0.9  # congestion: at once
            higher = bitrate > group.encoder_bitrate * 1.1 and at - group.opened_at >= 5.0  # recovery: slowly
            reopen = size_changed or lower or higher
        try:
            encoder = group.encoder
            if reopen or encoder is None:  # (the old one stays until the new one replaces it: stats never see none)
                encoder = group.encoder = _open_encoder(spec, width, height, bitrate)
                group.encoder_size, group.encoder_bitrate, group.opened_at = (width, height), bitrate, at
                keyframe = True
            assert self._canvas is not None
            picture = self._canvas_sizes.get((width, height))
            if picture is None:
                picture = self._canvas
                if (width, height) != (picture.width, picture.height):
                    scaler = self._canvas_scalers.setdefault((width, height), VideoReformatter())
                    picture = scale(scaler, picture, width, height)
                self._canvas_sizes[(width, height)] = picture
            picture.pts = timestamp
            picture.time_base = fractions.Fraction(1, VIDEO_CLOCK)
            picture.pict_type = av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
            packets = encoder.encode(picture)
        except Exception as exc:
            group.encoder = None  # reopened on the next frame, which is then an IDR
            group.errors += 1
            self.encode_errors += 1
            if group.errors == 1:
                self._log.warning("encoding the composed picture failed", output=spec.key, error=str(exc))
            return
        self._encodes[spec.key] = self._encodes.get(spec.key, 0) + 1
        for packet in packets:
            data = bytes(packet)
            if spec.codec == "H264" and spec.packetization_mode == 0:
                data = _without_sei(data)
            key = is_keyframe(spec.codec, data)
            if key:
                group.last_keyframe_at = at
            self._post(self._deliver, spec, EncodedVideoFrame(spec.codec, data, timestamp, key))

    # -- drawing (compositor thread) -----------------------------------------------------------------

    def _compose(
        self,
        arrangement: list[tuple[str, Rect]],
        scene: _Scene,
        large: str | None,
        layout: Layout,
        pictures: dict[str, tuple[int, av.VideoFrame]],
    ) -> av.VideoFrame:
        width, height = self._size
        canvas = av.VideoFrame(width, height, "yuv420p")
        y, u, v = plane_views(canvas)
        y.fill(BLACK[0])
        u.fill(BLACK[1])
        v.fill(BLACK[2])
        for pid, rect in arrangement:
            tile = scene.tiles[pid]
            picture = pictures.get(pid)
            if picture is not None:
                self._draw_picture(y, u, v, pid, rect, picture)
            else:
                self._draw_name_tile(y, u, v, tile.name, rect)
            self._draw_label(y, u, v, tile.name, rect)
            if pid in scene.speaking and len(arrangement) > 1 and (layout is Layout.GRID or pid != large):
                self._draw_border(y, u, v, rect)
        if scene.notice:
            self._draw_notice(y, u, v, scene.notice)
        return canvas

    def _draw_notice(self, y: Plane, u: Plane, v: Plane, text: str) -> None:
        """White on red at the picture's top right, over whatever is there: seen on every room
        system, and in the recording and the stream themselves. The box covers what is under it,
        so it is drawn once per text and copied into each picture."""
        if self._notice is None or self._notice[0] != text:
            self._notice = (text, self._notice_box(text))
        box = self._notice[1]
        if box is None:
            return
        top, left, by, bu, bv = box
        y[top : top + by.shape[0], left : left + by.shape[1]] = by
        u[top // 2 : top // 2 + bu.shape[0], left // 2 : left // 2 + bu.shape[1]] = bu
        v[top // 2 : top // 2 + bv.shape[0], left // 2 : left // 2 + bv.shape[1]] = bv

    def _notice_box(self, text: str) -> tuple[int, int, Plane, Plane, Plane] | None:
        """The notice's box (its top, left, and its Y, U and V planes), None when nothing of the text
        can be drawn."""
        width, height = self._size
        size = max(12, min(40, height // 22))
        pad = max(2, size // 3) & ~1
        mask = text_mask(text, size, width // 3)
        if mask.shape == (1, 1):
            return None
        box_h = (mask.shape[0] + 2 * pad + 1) & ~1
        box_w = (mask.shape[1] + 2 * pad + 1) & ~1
        by: Plane = np.full((box_h, box_w), NOTICE_COLOUR[0], np.uint8)
        _blend_text(by, mask, pad, pad, box_h, box_w)
        # (the letters white, not pink: their chroma neutral, as far as the text covers it)
        alpha = np.zeros((box_h // 2, box_w // 2), np.float32)
        sub = mask[::2, ::2].astype(np.float32) / 255
        rows, cols = min(sub.shape[0], alpha.shape[0] - pad // 2), min(sub.shape[1], alpha.shape[1] - pad // 2)
        alpha[pad // 2 : pad // 2 + rows, pad // 2 : pad // 2 + cols] = sub[:rows, :cols]
        bu, bv = ((colour * (1 - alpha) + 128 * alpha).astype(np.uint8) for colour in NOTICE_COLOUR[1:])
        return pad, (width - pad - box_w) & ~1, by, bu, bv

    def _draw_picture(
        self, y: Plane, u: Plane, v: Plane, pid: str, rect: Rect, picture: tuple[int, av.VideoFrame]
    ) -> None:
        serial, frame = picture
        cached = self._scaled.get(pid)
        if cached is None or cached[:3] != (serial, rect.w, rect.h):
            # cover the tile, keep the aspect ratio, crop the middle
            factor = max(rect.w / frame.width, rect.h / frame.height)
            cover_w = max(rect.w, math.ceil(frame.width * factor / 2) * 2)
            cover_h = max(rect.h, math.ceil(frame.height * factor / 2) * 2)
            scaled = scale(self._scalers.setdefault(pid, VideoReformatter()), frame, cover_w, cover_h)
            sy, su, sv = plane_views(scaled)
            ox, oy = ((cover_w - rect.w) // 2) & ~1, ((cover_h - rect.h) // 2) & ~1
            cached = (
                serial,
                rect.w,
                rect.h,
                sy[oy : oy + rect.h, ox : ox + rect.w],
                su[oy // 2 : (oy + rect.h) // 2, ox // 2 : (ox + rect.w) // 2],
                sv[oy // 2 : (oy + rect.h) // 2, ox // 2 : (ox + rect.w) // 2],
            )
            self._scaled[pid] = cached
        _, _, _, ty, tu, tv = cached
        y[rect.y : rect.bottom, rect.x : rect.right] = ty
        u[rect.y // 2 : rect.bottom // 2, rect.x // 2 : rect.right // 2] = tu
        v[rect.y // 2 : rect.bottom // 2, rect.x // 2 : rect.right // 2] = tv

    def _draw_name_tile(self, y: Plane, u: Plane, v: Plane, name: str, rect: Rect) -> None:
        key = (name, rect.w, rect.h)
        tile = self._name_tiles.get(key)
        if tile is None:
            ty: Plane = np.full((rect.h, rect.w), NO_VIDEO_GREY, np.uint8)
            size = max(10, min(96, rect.h // 6))
            room = int(rect.w * 0.9)
            text = clean_name(name)
            if not text or not text_fits(text, size, room):
                text = initials(name) or "?"
            mask = text_mask(text, size, room)
            top, left = max(0, (rect.h - mask.shape[0]) // 2), max(0, (rect.w - mask.shape[1]) // 2)
            _blend_text(ty, mask, top, left, rect.h, rect.w)
            tile = (
                ty,
                np.full((rect.h // 2, rect.w // 2), 128, np.uint8),
                np.full((rect.h // 2, rect.w // 2), 128, np.uint8),
            )
            if len(self._name_tiles) > 64:
                self._name_tiles.clear()
            self._name_tiles[key] = tile
        ty, tu, tv = tile
        y[rect.y : rect.bottom, rect.x : rect.right] = ty
        u[rect.y // 2 : rect.bottom // 2, rect.x // 2 : rect.right // 2] = tu
        v[rect.y // 2 : rect.bottom // 2, rect.x // 2 : rect.right // 2] = tv

    def _draw_label(self, y: Plane, u: Plane, v: Plane, name: str, rect: Rect) -> None:
        """The name in a small dark bar at the tile's bottom left."""
        size = max(14, min(28, rect.h // 8))  # readable across a meeting room, even on a strip tile
        pad = max(2, size // 3) & ~1
        mask = text_mask(name, size, max(1, rect.w - 2 * pad - 2))
        if mask.shape == (1, 1):
            return
        bar_h = min(rect.h, (mask.shape[0] + pad + 1) & ~1)
        bar_w = min(rect.w, (mask.shape[1] + 2 * pad + 1) & ~1)
        top, left = rect.bottom - bar_h, rect.x
        bar = y[top : rect.bottom, left : left + bar_w]
        bar[:] = _DIM_Y[bar]
        for plane in (u, v):
            chroma = plane[top // 2 : rect.bottom // 2, left // 2 : (left + bar_w) // 2]
            chroma[:] = _DIM_C[chroma]
        _blend_text(y, mask, top + (bar_h - mask.shape[0]) // 2, left + pad, rect.bottom, left + bar_w)

    def _draw_border(self, y: Plane, u: Plane, v: Plane, rect: Rect) -> None:
        t = max(2, min(6, rect.h // 40)) & ~1
        for plane, value, div in (
            (y, SPEAKING_COLOUR[0], 1),
            (u, SPEAKING_COLOUR[1], 2),
            (v, SPEAKING_COLOUR[2], 2),
        ):
            x0, y0, x1, y1, w = rect.x // div, rect.y // div, rect.right // div, rect.bottom // div, t // div
            plane[y0 : y0 + w, x0:x1] = value
            plane[y1 - w : y1, x0:x1] = value
            plane[y0:y1, x0 : x0 + w] = value
            plane[y0:y1, x1 - w : x1] = value
