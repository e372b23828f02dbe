"""Every place the gateway reaches into aiortc's internals, in one file (aiortc is pinned to 1.16.x).

aiortc decodes everything it receives and encodes everything it sends, one stream at a time, in a
thread per receiver and an executor hop per frame. The gateway needs neither: it mixes audio from
encoded frames (decoding only the speakers) and forwards video untouched. So:

- `EncodedTrack` yields already-encoded `av.Packet`s; aiortc's sender packs them as they are.
- `tap_audio` replaces an audio receiver's packet handler: each RTP packet goes straight to the
  mixer with its sequence number and RFC 6464 level, skipping aiortc's jitter buffer and decoder
  (receiver statistics for RTCP reports are still kept).
- `tap_video` replaces the queue to the decoder thread: whole encoded frames, reassembled by
  aiortc's jitter buffer (with NACK/RTX), go to the router instead of to a decoder.
- `on_keyframe_request` routes a browser's PLI/FIR for a forwarded stream back to its source.
"""

from __future__ import annotations

import asyncio
import fractions
import queue
from collections.abc import Callable
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RtpPacket

AUDIO_TIME_BASE = fractions.Fraction(1, 48_000)
VIDEO_TIME_BASE = fractions.Fraction(1, 90_000)


class EncodedTrack(MediaStreamTrack):
    """A track whose frames are encoded packets pushed by the gateway (mixer or video router)."""

    def __init__(self, kind: str, max_queue: int = 16, max_backlog: int | None = None) -> None:
        """max_backlog: when the sender finds more packets than this waiting, it skips the oldest.
        For audio: a sender that stalled once would otherwise carry the backlog as latency forever."""
        super().__init__()
        self.kind = kind
        self._max_backlog = max_backlog
        self._queue: asyncio.Queue[av.Packet[Any] | None] = asyncio.Queue(max_queue)
        self._time_base = AUDIO_TIME_BASE if kind == "audio" else VIDEO_TIME_BASE
        self.dropped = 0
        self.pushed = 0

    def push(self, payload: bytes, pts: int) -> None:
        packet = av.Packet(payload)
        packet.pts = pts
        packet.time_base = self._time_base
        if self._queue.full():
            # The sender fell behind: drop the oldest, latency matters more than completeness.
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(packet)
        self.pushed += 1

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        packet = await self._queue.get()
        if self._max_backlog is not None:
            while packet is not None and self._queue.qsize() > self._max_backlog:
                packet = self._queue.get_nowait()
                self.dropped += 1
        if packet is None:
            raise MediaStreamError
        return packet

    def stop(self) -> None:
        super().stop()
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            pass


def _receiver_codecs(receiver: RTCRtpReceiver) -> dict[int, Any]:
    return receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined,no-any-return]


AudioPacketSink = Callable[[str, int, bytes, float | None, float], None]


def tap_audio(receiver: RTCRtpReceiver, sink: AudioPacketSink) -> None:
    """sink(codec_name, sequence_number, payload, level_dbov or None, arrival_s) per RTP packet."""
    remote_streams: dict[int, StreamStatistics] = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
    loop = asyncio.get_running_loop()

    async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
        if not receiver._enabled:
            return
        codec = _receiver_codecs(receiver).get(packet.payload_type)
        if codec is None:
            return
        stream = remote_streams.get(packet.ssrc)
        if stream is None:
            stream = remote_streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stream.add(packet)
        level = packet.extensions.audio_level
        sink(codec.name.lower(), packet.sequence_number, packet.payload, -float(level[1]) if level else None, loop.time())

    receiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]


VideoFrameSink = Callable[[str, bytes, int], None]


class _FrameTap(queue.Queue):  # type: ignore[type-arg]
    """Stands in for the receiver's decoder queue: frames go to the sink, only the stop marker queues."""

    def __init__(self, sink: VideoFrameSink) -> None:
        super().__init__()
        self._sink = sink

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(None)
            return
        codec, encoded_frame = item
        self._sink(codec.name.upper(), encoded_frame.data, encoded_frame.timestamp)


class VideoTap:
    """Installed on a video receiver before it starts; remembers the media SSRC for keyframe requests."""

    def __init__(self, receiver: RTCRtpReceiver, sink: VideoFrameSink) -> None:
        self._receiver = receiver
        self.media_ssrc: int | None = None
        receiver._RTCRtpReceiver__decoder_queue = _FrameTap(sink)  # type: ignore[attr-defined]
        original = receiver._handle_rtp_packet

        async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
            codec = _receiver_codecs(receiver).get(packet.payload_type)
            if codec is not None and codec.name.lower() != "rtx":
                self.media_ssrc = packet.ssrc
            await original(packet, arrival_time_ms)

        receiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]

    def request_keyframe(self) -> None:
        if self.media_ssrc is not None:
            asyncio.ensure_future(self._receiver._send_rtcp_pli(self.media_ssrc))


def send_audio_level(sender: RTCRtpSender, level_dbov: Callable[[], float]) -> None:
    """Sets the RFC 6464 level on packets a sender sends pre-encoded (aiortc only sets it on frames
    it encodes itself), as browsers do on every audio packet."""
    next_frame = sender._next_encoded_frame

    async def with_level(codec: Any) -> Any:
        encoded = await next_frame(codec)
        if encoded is not None and encoded.audio_level is None:
            encoded.audio_level = max(0, min(127, round(-level_dbov())))
        return encoded

    sender._next_encoded_frame = with_level  # type: ignore[method-assign]


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """A PLI or FIR from the browser for this (forwarded) stream calls `callback` instead of the encoder."""
    sender._send_keyframe = callback  # type: ignore[method-assign]


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> tuple[str, ...]:
    """Codec names agreed for a transceiver after the answer, preferred first, without RTX."""
    return tuple(
        dict.fromkeys(
            c.mimeType.split("/")[1].upper() for c in transceiver._codecs if c.mimeType.lower().split("/")[1] != "rtx"
        )
    )
