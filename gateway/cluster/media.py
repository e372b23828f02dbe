"""The backplane's media between two nodes, sans-IO: per room one audio stream each way (Opus
between machines, the plain samples, L16, between the workers of one machine), in SRTP
keyed by the control link's session (wire.py), all rooms of a pair of nodes on one UDP port each.

What a node sends for a room is its mixer's frame for the link: the mix-minus of everyone it serves
(the other node's share left out), encoded once. What it receives goes into its mixer as one voice.
A packet is taken only from the address the other node's control link named, only when SRTP
authenticates it, and only for a stream of a room linked now; anything else is counted and dropped.

Video: the cameras the other node takes, each as it was encoded (no transcode on the way), one
stream per camera. A frame is cut into fragments of at most VIDEO_CHUNK bytes, each an RTP packet
(payload type VIDEO_PAYLOAD_TYPE, the frame's timestamp, the marker on the last) whose payload
starts with VIDEO_HEADER: the frame's number, the fragment's index and count, the codec and
keyframe flags and the simulcast layer. The receiver puts a frame together once all its fragments
came; after a frame that did not (a lost packet), nothing of its simulcast layer (of every layer,
when none of its fragments came) is passed on until that layer's next keyframe, which it asks for
(`lost`).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import pylibsrtp

from gateway.rtp.aiortc_glue import RtpPacket
from gateway.transcode.audio import FRAME_SAMPLES, AudioCodec
from gateway.transcode.video import EncodedVideoFrame

PAYLOAD_TYPES = {AudioCodec.OPUS: 111, AudioCodec.L16: 96}
_TAG_BYTES = 16
VIDEO_PAYLOAD_TYPE = 100
VIDEO_CHUNK = 1100  # (with the headers and SRTP's tag well inside libsrtp's 1500 bytes)
MAX_VIDEO_FRAGMENTS = 2048  # a frame of up to 2.2 MB; a 1080p keyframe is a few hundred kB
VIDEO_HEADER = struct.Struct("!HHHBB")  # frame number, index, count, flags, layer
_KEYFRAME, _H264 = 1, 2
_LAYERS = range(4)
_VIDEO_CODECS = {"VP8": 0, "H264": _H264}


def _tag(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()[:_TAG_BYTES]


@dataclass
class MediaCounters:
    packets_out: int = 0
    packets_in: int = 0
    dropped_foreign: int = 0  # from an address the other node did not name
    dropped_unauthentic: int = 0  # SRTP refused it (forged, altered, replayed)
    dropped_unknown_stream: int = 0  # authentic, but for no room linked now
    video_frames_out: int = 0
    video_frames_in: int = 0
    video_frames_lost: int = 0  # a fragment never came (the next keyframe was asked for)
    video_fragments_malformed: int = 0


class _VideoIn:
    """One camera's frames coming in: fragments put together, a frame passed on once complete."""

    def __init__(self, deliver: Callable[[EncodedVideoFrame], None], lost: Callable[[], None], counters: MediaCounters) -> None:
        self._deliver = deliver
        self._lost = lost
        self._counters = counters
        self._frame: int | None = None  # the frame being put together (its number)
        self._done: int | None = None  # the last frame passed on or given up
        self._parts: dict[int, bytes] = {}
        self._shape: tuple[int, int, int, int] = (0, 0, 0, 0)  # count, flags, layer, timestamp
        self._broken = set(_LAYERS)  # layers waiting for a keyframe: a decoder would show garbage

    def take(self, packet: RtpPacket) -> None:
        payload = packet.payload
        if len(payload) <= VIDEO_HEADER.size or len(payload) > VIDEO_HEADER.size + VIDEO_CHUNK:
            self._counters.video_fragments_malformed += 1
            return
        number, index, count, flags, layer = VIDEO_HEADER.unpack_from(payload)
        if not 0 < count <= MAX_VIDEO_FRAGMENTS or index >= count or flags & ~(_KEYFRAME | _H264) or layer > 3:
            self._counters.video_fragments_malformed += 1
            return
        if number == self._done:
            return  # (a late fragment of a frame passed on or given up)
        if number != self._frame:
            self._start(number)
        shape = (count, flags, layer, packet.timestamp)
        if not self._parts:
            self._shape = shape
        elif shape != self._shape:
            self._counters.video_fragments_malformed += 1
            return
        self._parts.setdefault(index, payload[VIDEO_HEADER.size :])
        if len(self._parts) == count:
            self._complete(number)

    def _start(self, number: int) -> None:
        expected = None if self._done is None else (self._done + 1) & 0xFFFF
        if self._frame is not None:
            self._give_up({self._shape[2]} if self._parts else set(_LAYERS))  # (it never came whole)
        elif expected is not None and number != expected:
            self._give_up(set(_LAYERS))  # (a whole frame never came: of which layer, nobody knows)
        self._frame = number
        self._parts = {}

    def _give_up(self, layers: set[int]) -> None:
        self._counters.video_frames_lost += 1
        self._broken |= layers
        self._lost()

    def _complete(self, number: int) -> None:
        count, flags, layer, timestamp = self._shape
        data = b"".join(self._parts[i] for i in range(count))
        self._frame, self._done, self._parts = None, number, {}
        keyframe = bool(flags & _KEYFRAME)
        if layer in self._broken and not keyframe:
            self._lost()  # (rate-limited by the router: asked again until a keyframe comes)
            return
        self._broken.discard(layer)
        self._counters.video_frames_in += 1
        codec = "H264" if flags & _H264 else "VP8"
        self._deliver(EncodedVideoFrame(codec, data, timestamp, keyframe, layer=layer))


@dataclass
class _Outbound:
    ssrc: int
    seq: int = 0
    timestamp: int = 0


@dataclass
class PeerMedia:
    """The media of the link to one node: `protect` what goes out, `receive` what came."""

    send_key: bytes
    receive_key: bytes
    address: tuple[str, int] | None = None  # where the other node takes media (its control link said)
    codec: AudioCodec = AudioCodec.OPUS  # what the links' audio is in (both ends agree by configuration)
    counters: MediaCounters = field(default_factory=MediaCounters)

    def __post_init__(self) -> None:
        self._tx = pylibsrtp.Session(
            policy=pylibsrtp.Policy(key=self.send_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        )
        self._rx = pylibsrtp.Session(
            policy=pylibsrtp.Policy(key=self.receive_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND)
        )
        self._out: dict[str, _Outbound] = {}
        self._in: dict[int, Callable[[int, bytes], None]] = {}  # ssrc -> (sequence, frame)
        self._video_out: dict[Hashable, _Outbound] = {}  # (room, camera) -> its stream
        self._video_frames: dict[Hashable, int] = {}  # (room, camera) -> the next frame's number
        self._video_in: dict[int, _VideoIn] = {}  # ssrc -> the camera's frames
        self._last_seq: dict[int, int] = {}  # (L16: the newest sequence number taken per stream)

    def open_stream(self, room: str, send_ssrc: int, receive_ssrc: int, deliver: Callable[[int, bytes], None]) -> None:
        self._out[room] = _Outbound(send_ssrc)
        self._in[receive_ssrc] = deliver

    def close_stream(self, room: str, receive_ssrc: int) -> None:
        self._out.pop(room, None)
        self._in.pop(receive_ssrc, None)

    def protect(self, room: str, payload: bytes, marker: bool) -> bytes | None:
        """The SRTP packet carrying one 20 ms frame of `room`'s stream (None: no such stream)."""
        stream = self._out.get(room)
        if stream is None:
            return None
        packet = RtpPacket(
            payload_type=PAYLOAD_TYPES[self.codec],
            marker=int(marker),
            sequence_number=stream.seq,
            timestamp=stream.timestamp,
            ssrc=stream.ssrc,
            payload=payload,
        )
        stream.seq = (stream.seq + 1) & 0xFFFF
        stream.timestamp = (stream.timestamp + FRAME_SAMPLES) & 0xFFFFFFFF
        self.counters.packets_out += 1
        return self._protect(packet)

    def _protect(self, packet: RtpPacket) -> bytes:
        if self.codec is AudioCodec.L16:
            data = packet.serialize()
            return data + _tag(self.send_key, data)
        return bytes(self._tx.protect(packet.serialize()))

    def open_video_in(self, ssrc: int, deliver: Callable[[EncodedVideoFrame], None], lost: Callable[[], None]) -> None:
        """A camera the other node sends (its stream's SSRC): `deliver` gets each whole frame,
        `lost` is called when one did not come whole (ask for a keyframe)."""
        if ssrc not in self._video_in:
            self._video_in[ssrc] = _VideoIn(deliver, lost, self.counters)

    def close_video_in(self, ssrc: int) -> None:
        self._video_in.pop(ssrc, None)

    def close_video_out(self, key: Hashable) -> None:
        self._video_out.pop(key, None)
        self._video_frames.pop(key, None)

    def protect_video(self, key: Hashable, ssrc: int, frame: EncodedVideoFrame) -> list[bytes]:
        """The packets carrying one frame of camera `key` (its stream's SSRC)."""
        codec = _VIDEO_CODECS.get(frame.codec)
        if codec is None or not frame.data or len(frame.data) > VIDEO_CHUNK * MAX_VIDEO_FRAGMENTS:
            return []
        stream = self._video_out.get(key)
        if stream is None:
            stream = self._video_out[key] = _Outbound(ssrc)
        number = self._video_frames.get(key, 0)
        self._video_frames[key] = (number + 1) & 0xFFFF
        data = frame.data
        count = -(-len(data) // VIDEO_CHUNK)
        flags = codec | (_KEYFRAME if frame.keyframe else 0)
        packets = []
        for index in range(count):
            header = VIDEO_HEADER.pack(number, index, count, flags, min(frame.layer, 3))
            packet = RtpPacket(
                payload_type=VIDEO_PAYLOAD_TYPE,
                marker=int(index == count - 1),
                sequence_number=stream.seq,
                timestamp=frame.timestamp & 0xFFFFFFFF,
                ssrc=stream.ssrc,
                payload=header + data[index * VIDEO_CHUNK : (index + 1) * VIDEO_CHUNK],
            )
            stream.seq = (stream.seq + 1) & 0xFFFF
            packets.append(self._protect(packet))
        self.counters.packets_out += count
        self.counters.video_frames_out += 1
        return packets

    def _unprotect(self, data: bytes) -> bytes:
        """SRTP's, or (L16 between the workers of one machine, larger than libsrtp's 1500-byte
        packets) an HMAC-SHA256 tag and no encryption: the loopback never leaves the machine, and
        nothing unauthenticated gets in. Replays are refused by the sequence number."""
        if self.codec is not AudioCodec.L16:
            return bytes(self._rx.unprotect(data))
        body, tag = data[:-_TAG_BYTES], data[-_TAG_BYTES:]
        if len(data) <= 12 + _TAG_BYTES or not hmac.compare_digest(tag, _tag(self.receive_key, body)):
            raise ValueError("not authentic")
        ssrc, seq = int.from_bytes(body[8:12], "big"), int.from_bytes(body[2:4], "big")
        last = self._last_seq.get(ssrc)
        if last is not None and not 0 < (seq - last) & 0xFFFF < 0x8000:
            raise ValueError("replayed or too old")
        self._last_seq[ssrc] = seq
        return body

    def receive(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.address is None or addr[:2] != self.address:
            self.counters.dropped_foreign += 1
            return
        try:
            packet = RtpPacket.parse(self._unprotect(data))
        except (pylibsrtp.Error, ValueError):
            self.counters.dropped_unauthentic += 1
            return
        if packet.payload_type == VIDEO_PAYLOAD_TYPE:
            video = self._video_in.get(packet.ssrc)
            if video is None:
                self.counters.dropped_unknown_stream += 1
                return
            self.counters.packets_in += 1
            video.take(packet)
            return
        deliver = self._in.get(packet.ssrc)
        if deliver is None or packet.payload_type != PAYLOAD_TYPES[self.codec]:
            self.counters.dropped_unknown_stream += 1
            return
        self.counters.packets_in += 1
        deliver(packet.sequence_number, packet.payload)
