"""The backplane's media between two nodes, sans-IO: per room one audio stream each way (Opus
between machines, the plain samples, L16, between the workers of one machine), in SRTP
keyed by the control link's session (wire.py), all rooms of a pair of nodes on one UDP port each.

What a node sends for a room is its mixer's frame for the link: the mix-minus of everyone it serves
(the other node's share left out), encoded once. What it receives goes into its mixer as one voice.
A packet is taken only from the address the other node's control link named, only when SRTP
authenticates it, and only for a stream of a room linked now; anything else is counted and dropped.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

import pylibsrtp

from gateway.rtp.aiortc_glue import RtpPacket
from gateway.transcode.audio import FRAME_SAMPLES, AudioCodec

PAYLOAD_TYPES = {AudioCodec.OPUS: 111, AudioCodec.L16: 96}
_TAG_BYTES = 16


def _tag(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()[:_TAG_BYTES]


@dataclass
class MediaCounters:
    packets_out: int = 0
    packets_in: int = 0
    dropped_foreign: int = 0  # from an address the other node did not name
    dropped_unauthentic: int = 0  # SRTP refused it (forged, altered, replayed)
    dropped_unknown_stream: int = 0  # authentic, but for no room linked now


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
        if self.codec is AudioCodec.L16:
            data = packet.serialize()
            return data + _tag(self.send_key, data)
        return bytes(self._tx.protect(packet.serialize()))

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
        deliver = self._in.get(packet.ssrc)
        if deliver is None or packet.payload_type != PAYLOAD_TYPES[self.codec]:
            self.counters.dropped_unknown_stream += 1
            return
        self.counters.packets_in += 1
        deliver(packet.sequence_number, packet.payload)
