"""Every place the gateway touches aiortc, in one file (aiortc is pinned to 1.16.x): an upgrade
is checked here and nowhere else. Both `rtp/` (SIP and H.323 media) and `webrtc/` use it.

For our own RTP engine (`rtp/session.py`):
- RTP and RTCP packets (`RtpPacket`, `RtcpPacket`, sender reports, receiver statistics) and the
  payload-specific feedback that asks for keyframes (`pli`, `fir`, `keyframe_feedback`);
- H.264 (RFC 6184, packetization mode 1) and VP8 (RFC 7741) payloads: `packetize`, and
  `VideoAssembler` that turns packets into whole frames (aiortc's depayloaders and jitter buffer).

For browsers (`webrtc/`): aiortc decodes everything it receives and encodes everything it sends,
one stream at a time, in a thread per receiver and an executor hop per frame. The gateway needs
neither: it mixes audio from encoded frames (decoding only the speakers) and forwards video
untouched. So:
- `EncodedTrack` yields already-encoded `av.Packet`s; aiortc's sender packs them as they are.
  aiortc sends every frame of a transceiver in its first agreed codec; `send_any_codec` makes a
  video slot's sender send each frame in its own codec (any the browser agreed on for the slot),
  so VP8 and H.264 senders alike are forwarded untouched on any slot.
- `tap_audio` replaces an audio receiver's packet handler: each RTP packet goes straight to the
  mixer with its sequence number and RFC 6464 level, skipping aiortc's jitter buffer and decoder
  (receiver statistics for RTCP reports are still kept).
- `VideoTap` replaces the queue to the decoder thread: whole encoded frames, reassembled by
  aiortc's jitter buffer (with NACK/RTX), go to the router instead of to a decoder, with the
  stream's negotiated codec (`stream_codec`) attached.
- `on_keyframe_request` routes a browser's PLI/FIR for a forwarded stream back to its source.
- Simulcast from browsers (RFC 8853): `offer_simulcast` asks for the camera in layers (a=rid,
  a=simulcast:recv), `offer_rid_extension` makes aiortc read the RID header extension, `route_by_mid`
  routes the layers' unannounced SSRCs by their MID, and `VideoTap` reassembles each layer on its own
  and says which layer a frame is. `on_receiver_estimate` hands over a browser's REMB (aiortc ignores
  it), by which the gateway picks the layer each browser receives.
- The peer connection classes the webrtc package builds on are re-exported from here.
- `ignore_close_races` quiets one known aiortc race: a peer connection closed while its connect
  task (started unawaited by `setRemoteDescription`) still waits on ICE or DTLS.
"""

from __future__ import annotations

import asyncio
import copy
import fractions
import queue
import struct
from collections.abc import Callable
from typing import Any

import av
import structlog
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc import codecs as aiortc_codecs
from aiortc.codecs.h264 import H264Encoder, h264_depayload
from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload
from aiortc.exceptions import InvalidStateError
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcdtlstransport import RtpRouter
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpHeaderExtensionParameters
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtcrtpsender import RTCEncodedFrame
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB,
    RTP_HISTORY_SIZE,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpPacket,
    is_rtcp,
    unpack_remb_fci,
)
from aiortc.stats import RTCRemoteInboundRtpStreamStats, RTCStatsReport

from gateway.transcode.codecs import StreamCodec, fmtp_of

__all__ = [
    "AUDIO_TIME_BASE",
    "VIDEO_TIME_BASE",
    "AudioPacketSink",
    "EncodedTrack",
    "MediaStreamError",
    "MediaStreamTrack",
    "RTCBundlePolicy",
    "RTCConfiguration",
    "RTCIceServer",
    "RTCPeerConnection",
    "RTCRtpSender",
    "RTCSessionDescription",
    "RtcpPacket",
    "RtcpReceiverInfo",
    "RtcpRrPacket",
    "RtcpSenderInfo",
    "RtcpSrPacket",
    "RtpPacket",
    "StreamStatistics",
    "VideoAssembler",
    "VideoFrameSink",
    "VideoTap",
    "bitrate_feedback",
    "codec_capabilities",
    "far_end_report",
    "fir",
    "ignore_close_races",
    "is_rtcp",
    "keyframe_feedback",
    "negotiated_codecs",
    "offer_rid_extension",
    "send_any_codec",
    "offer_simulcast",
    "on_keyframe_request",
    "on_receiver_estimate",
    "packetize",
    "pli",
    "route_by_mid",
    "send_audio_level",
    "stream_codec",
    "tap_audio",
    "tmmbr_requests",
]

AUDIO_TIME_BASE = fractions.Fraction(1, 48_000)
VIDEO_TIME_BASE = fractions.Fraction(1, 90_000)

log = structlog.get_logger(__name__)


def ignore_close_races(loop: asyncio.AbstractEventLoop) -> None:
    """aiortc's `setRemoteDescription` starts the connection in a task nobody awaits; when the peer
    connection is closed before that task is through (a browser leaves or the gateway shuts down
    while ICE or DTLS is still connecting), the task ends with `InvalidStateError` ("RTCIceTransport
    is closed") and asyncio logs it as an error. That ending is the close the gateway asked for: log
    it at debug level. Every other unretrieved exception goes to the handler that was there before."""
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        task = context.get("future")
        coro = task.get_coro() if isinstance(task, asyncio.Task) else None
        if isinstance(context.get("exception"), InvalidStateError) and getattr(coro, "__qualname__", "") == (
            "RTCPeerConnection.__connect"
        ):
            log.debug("peer connection closed while connecting", error=str(context["exception"]))
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


# -- RTCP feedback (RFC 4585 PLI, RFC 5104 FIR) ------------------------------------------------------


def pli(ssrc: int, media_ssrc: int) -> bytes:
    """A Picture Loss Indication for the stream `media_ssrc`, from `ssrc`."""
    return bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=ssrc, media_ssrc=media_ssrc))


def fir(ssrc: int, media_ssrc: int, sequence: int) -> bytes:
    """A Full Intra Request (RFC 5104 4.3.1): media SSRC 0, one FCI entry naming the stream."""
    fci = struct.pack("!LB3x", media_ssrc, sequence & 0xFF)
    return bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=ssrc, media_ssrc=0, fci=fci))


def bitrate_feedback(packet: object, own_ssrc: int) -> int | None:
    """The most a parsed RTCP packet allows us to send (bit/s): a REMB (PSFB 15 "REMB", the
    browsers' and many room systems' estimate) naming our stream. None for anything else."""
    if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP and packet.fci[:4] == b"REMB":
        try:
            bitrate, ssrcs = unpack_remb_fci(packet.fci)
        except (ValueError, struct.error):
            return None
        return bitrate if own_ssrc in ssrcs or not ssrcs else None
    return None


def tmmbr_requests(data: bytes, own_ssrc: int) -> list[int]:
    """The bit rates TMMBR messages (RFC 5104 4.2.1: RTPFB fmt 3) in a compound RTCP datagram ask of
    our stream. Read from the bytes: aiortc parses every RTPFB as a NACK. Walks the packets by their
    length fields, so it is linear in the datagram and stops at the first one that does not fit."""
    out: list[int] = []
    pos = 0
    while pos + 4 <= len(data):
        first, packet_type, words = struct.unpack_from("!BBH", data, pos)
        end = pos + 4 + 4 * words
        if first >> 6 != 2 or end > len(data):
            break
        if packet_type == RTCP_RTPFB and first & 0x1F == 3:
            for fci in range(pos + 12, end - 7, 8):  # (header, sender SSRC, media SSRC 0, then FCIs)
                ssrc, bits = struct.unpack_from("!LL", data, fci)
                if ssrc == own_ssrc:
                    exponent, mantissa = bits >> 26, (bits >> 9) & 0x1FFFF
                    out.append(mantissa << exponent)
        pos = end
    return out


def keyframe_feedback(packet: object, own_ssrc: int) -> bool:
    """Whether a parsed RTCP packet asks the sender `own_ssrc` for a keyframe (PLI or FIR)."""
    if not isinstance(packet, RtcpPsfbPacket):
        return False
    if packet.fmt == RTCP_PSFB_PLI:
        return packet.media_ssrc in (own_ssrc, 0)
    if packet.fmt == RTCP_PSFB_FIR:
        fci = packet.fci
        return any(struct.unpack_from("!L", fci, i)[0] == own_ssrc for i in range(0, len(fci) - 7, 8))
    return False


# -- video payloads ------------------------------------------------------------------------------------


def packetize(codec: str, data: bytes, picture_id: int = 0, single_nal: bool = False) -> list[bytes]:
    """One whole encoded frame as RTP payloads: H.264 (Annex B in; FU-A/STAP-A out, or with
    `single_nal` one NAL unit per packet: packetization-mode 0, whose encoder keeps NAL units
    small) or VP8."""
    if codec == "H264":
        if single_nal:
            return [nal for nal in H264Encoder._split_bitstream(data) if nal]
        return H264Encoder._packetize(H264Encoder._split_bitstream(data))
    if codec == "VP8":
        return Vp8Encoder._packetize(data, picture_id)
    raise ValueError(f"no packetizer for {codec}")


_DEPAYLOAD: dict[str, Callable[[bytes], bytes]] = {"H264": h264_depayload, "VP8": vp8_depayload}


class VideoAssembler:
    """Whole frames from the packets of one video stream (aiortc's depayloaders and video jitter
    buffer): a frame comes out once the first packet of the next one arrived."""

    def __init__(self, capacity: int = 512) -> None:
        self._buffer = JitterBuffer(capacity=capacity, is_video=True)

    def add(self, packet: RtpPacket, codec: str) -> tuple[bool, tuple[bytes, int] | None]:
        """(picture lost: ask for a keyframe, (frame data, RTP timestamp) or None). Raises
        ValueError for a payload the codec's depayloader cannot read."""
        depayload = _DEPAYLOAD.get(codec)
        if depayload is None:
            raise ValueError(f"no depayloader for {codec}")
        packet._data = depayload(packet.payload) if packet.payload else b""  # type: ignore[attr-defined]
        lost, frame = self._buffer.add(packet)
        return lost, (frame.data, frame.timestamp) if frame is not None else None


# -- browsers: encoded media in and out of aiortc's peer connection -----------------------------------


class EncodedTrack(MediaStreamTrack):
    """A track whose frames are encoded packets pushed by the gateway (mixer or video router)."""

    def __init__(self, kind: str, max_queue: int = 16, max_backlog: int | None = None) -> None:
        """max_backlog: when the sender finds more packets than this waiting, it skips the oldest.
        For audio: a sender that stalled once would otherwise carry the backlog as latency forever."""
        super().__init__()
        self.kind = kind
        self._max_backlog = max_backlog
        self._queue: asyncio.Queue[tuple[av.Packet[Any], int | None] | None] = asyncio.Queue(max_queue)
        self._time_base = AUDIO_TIME_BASE if kind == "audio" else VIDEO_TIME_BASE
        self.dropped = 0
        self.pushed = 0

    def push(self, payload: bytes, pts: int, payload_type: int | None = None) -> None:
        """`payload_type`: the agreed payload type to send it with, for a sender that sends more than
        one codec (send_any_codec)."""
        packet = av.Packet(payload)
        packet.pts = pts
        packet.time_base = self._time_base
        if self._queue.full():
            # The sender fell behind: drop the oldest, latency matters more than completeness.
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait((packet, payload_type))
        self.pushed += 1

    async def recv(self) -> av.Packet[Any]:
        return (await self.recv_with_payload_type())[0]

    async def recv_with_payload_type(self) -> tuple[av.Packet[Any], int | None]:
        if self.readyState != "live":
            raise MediaStreamError
        item = await self._queue.get()
        if self._max_backlog is not None:
            while item is not None and self._queue.qsize() > self._max_backlog:
                item = self._queue.get_nowait()
                self.dropped += 1
        if item is None:
            raise MediaStreamError
        return item

    def stop(self) -> None:
        super().stop()
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            pass


def stream_codec(codec: RTCRtpCodecParameters) -> StreamCodec:
    """aiortc's negotiated codec as the gateway's protocol-free descriptor."""
    feedback = tuple(f"{fb.type} {fb.parameter}".strip().lower() for fb in codec.rtcpFeedback)
    return StreamCodec(
        name=codec.name,
        payload_type=codec.payloadType or 0,
        clock_rate=codec.clockRate,
        channels=codec.channels or 1,
        fmtp=fmtp_of(codec.parameters.items()),
        rtcp_fb=feedback,
    )


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


VideoFrameSink = Callable[[StreamCodec, bytes, int], None]


class _FrameTap(queue.Queue):  # type: ignore[type-arg]
    """Stands in for the receiver's decoder queue: frames go to the sink, only the stop marker queues."""

    def __init__(self, sink: VideoFrameSink) -> None:
        super().__init__()
        self._sink = sink
        self._described: dict[int | None, tuple[RTCRtpCodecParameters, StreamCodec]] = {}

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(None)
            return
        codec, encoded_frame = item
        # one descriptor object per payload type: the router caches its verdicts by it
        known = self._described.get(codec.payloadType)
        if known is None or known[0] is not codec:
            known = self._described[codec.payloadType] = (codec, stream_codec(codec))
        self._sink(known[1], encoded_frame.data, encoded_frame.timestamp)


class VideoTap:
    """Installed on a video receiver before it starts; remembers the media SSRCs for keyframe
    requests. With simulcast (RFC 8853: the browser sends each layer as its own SSRC, named by the
    RID header extension) each layer gets a jitter buffer and NACK state of its own (aiortc keeps
    one per receiver, for one stream), and `layer` tells the sink which layer the frame it is given
    belongs to: the index of its RID in `rids` (lowest first); 0 without simulcast."""

    def __init__(self, receiver: RTCRtpReceiver, sink: VideoFrameSink, rids: tuple[str, ...] = ()) -> None:
        self._receiver = receiver
        self.media_ssrc: int | None = None
        self.layer = 0
        self.layer_ssrcs: dict[int, int] = {}  # layer -> its SSRC (simulcast)
        self._layer_of_rid = {rid: i for i, rid in enumerate(rids)}
        self._ssrc_layer: dict[int, int] = {}
        self._streams: dict[int, tuple[JitterBuffer, NackGenerator]] = {}
        receiver._RTCRtpReceiver__decoder_queue = _FrameTap(sink)  # type: ignore[attr-defined]
        original = receiver._handle_rtp_packet

        rtx_ssrcs: dict[int, int] = receiver._RTCRtpReceiver__rtx_ssrc  # type: ignore[attr-defined]

        async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
            codec = _receiver_codecs(receiver).get(packet.payload_type)
            if codec is None:
                await original(packet, arrival_time_ms)
                return
            if codec.name.lower() == "rtx":
                # A layer's retransmissions come on an SSRC of their own, named by the repaired RID.
                repaired = self._layer_of_rid.get(packet.extensions.repaired_rtp_stream_id or "")
                if packet.ssrc not in rtx_ssrcs and repaired in self.layer_ssrcs:
                    rtx_ssrcs[packet.ssrc] = self.layer_ssrcs[repaired]
                layer = self._ssrc_layer.get(rtx_ssrcs.get(packet.ssrc, -1))
                if layer is not None:
                    self._use(receiver, self.layer_ssrcs[layer], layer)
                await original(packet, arrival_time_ms)
                return
            layer = self._ssrc_layer.get(packet.ssrc)
            if layer is None and packet.extensions.rtp_stream_id in self._layer_of_rid:
                layer = self._ssrc_layer[packet.ssrc] = self._layer_of_rid[packet.extensions.rtp_stream_id]
                self.layer_ssrcs[layer] = packet.ssrc
                self._streams[packet.ssrc] = (JitterBuffer(capacity=512, is_video=True), NackGenerator())
            if layer is not None:  # (a layer's own reassembly; aiortc's per-receiver state otherwise)
                self._use(receiver, packet.ssrc, layer)
            self.media_ssrc = packet.ssrc
            self.layer = layer or 0
            await original(packet, arrival_time_ms)

        receiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]

    def _use(self, receiver: RTCRtpReceiver, ssrc: int, layer: int) -> None:
        """The layer's jitter buffer and NACK state for the packet about to be handled (aiortc
        handles a transport's packets one at a time: nothing else runs in between)."""
        buffer, nacks = self._streams[ssrc]
        receiver._RTCRtpReceiver__jitter_buffer = buffer  # type: ignore[attr-defined]
        receiver._RTCRtpReceiver__nack_generator = nacks  # type: ignore[attr-defined]
        self.layer = layer

    def request_keyframe(self) -> None:
        """A PLI for every layer (a receiver switching layers needs the new one's keyframe)."""
        for ssrc in list(self.layer_ssrcs.values()) or ([self.media_ssrc] if self.media_ssrc is not None else []):
            asyncio.ensure_future(self._receiver._send_rtcp_pli(ssrc))


def route_by_mid() -> None:
    """aiortc 1.16 routes an RTP packet of an unannounced SSRC by payload type only, which fails
    when several receivers share the payload types (a browser's camera and screen lines under
    BUNDLE). Browsers announce no SSRCs for simulcast layers: such packets are routed by their MID
    header extension (RFC 8843 9.2), once, and their SSRC learnt."""
    if getattr(RtpRouter, "_routes_by_mid", False):
        return
    original = RtpRouter.route_rtp

    def route_rtp(self: RtpRouter, packet: RtpPacket) -> Any:
        if packet.ssrc not in self.ssrc_table and packet.extensions.mid is not None:
            receiver = self.mid_table.get(packet.extensions.mid)
            if receiver is not None and receiver in self.payload_type_table.get(packet.payload_type, ()):
                self.ssrc_table[packet.ssrc] = receiver
                return receiver
        return original(self, packet)

    RtpRouter.route_rtp = route_rtp  # type: ignore[method-assign]
    RtpRouter._routes_by_mid = True  # type: ignore[attr-defined]


RID_URIS = {
    10: "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    11: "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
}


def offer_rid_extension() -> None:
    """Video lines offer the RID header extensions (RFC 8852), so that aiortc reads each simulcast
    layer's name, and its retransmissions' (RTX), from their packets."""
    video = aiortc_codecs.HEADER_EXTENSIONS["video"]
    for id, uri in RID_URIS.items():
        if not any(ext.uri == uri for ext in video):
            video.append(RTCRtpHeaderExtensionParameters(id=id, uri=uri))


def offer_simulcast(sdp: str, mid: str, rids: tuple[str, ...]) -> str:
    """The offer with simulcast asked for on the line `mid` (a=rid ... recv and a=simulcast:recv,
    RFC 8853), lowest layer first: browsers scale the layers down in that order."""
    lines = sdp.split("\r\n")
    at = next((i for i, line in enumerate(lines) if line == f"a=mid:{mid}"), None)
    if at is None:
        return sdp
    extra = [f"a=rid:{rid} recv" for rid in rids] + ["a=simulcast:recv " + ";".join(rids)]
    return "\r\n".join(lines[: at + 1] + extra + lines[at + 1 :])


def send_audio_level(sender: RTCRtpSender, level_dbov: Callable[[], float]) -> None:
    """Sets the RFC 6464 level on packets a sender sends pre-encoded (aiortc only sets it on frames
    it encodes itself), as browsers do on every audio packet."""
    next_frame = sender._next_encoded_frame

    async def with_level(codec: Any) -> Any:
        encoded = await next_frame(codec)
        if encoded is not None and encoded.audio_level is None:
            # aiortc keeps the level as dBov (-127..0) and writes its negation (RFC 6464's 0..127)
            encoded.audio_level = max(-127, min(0, round(level_dbov())))
        return encoded

    sender._next_encoded_frame = with_level  # type: ignore[method-assign]


def send_any_codec(sender: RTCRtpSender, track: EncodedTrack) -> None:
    """Makes a sender of pre-encoded video send each frame with the payload type it was pushed
    with (`EncodedTrack.push`: one the far end agreed on for the transceiver, of the frame's codec;
    RTP lets a stream change its payload type, RFC 3550 5.2, and browsers decode every codec they
    agreed on), packetized for that codec (H.264 in single NAL units where that payload type is
    packetization-mode 0), and its retransmissions with that payload type's RTX. aiortc sends
    everything in the first codec agreed; a slot that forwards VP8 from one browser and H.264 from
    a room system, or more VP8 cameras than half the slots, would need transcoding otherwise. A
    frame without an agreed payload type is dropped (the router never sends one: it transcodes for
    such a receiver)."""
    original_send = sender.send
    original_retransmit = sender._retransmit
    # payload type -> (its codec, the codec's name, whether it is H.264 packetization-mode 0)
    by_pt: dict[int, tuple[RTCRtpCodecParameters, str, bool]] = {}
    rtx_by_apt: dict[int, int] = {}
    vp8_picture_id = 0

    async def send(parameters: Any) -> None:
        codecs = list(parameters.codecs)
        for codec in codecs:
            if codec.mimeType.lower().endswith("/rtx"):
                rtx_by_apt[int(codec.parameters.get("apt", -1))] = codec.payloadType
            else:
                name = codec.mimeType.split("/")[-1].upper()
                mode0 = name == "H264" and str(codec.parameters.get("packetization-mode", "0")) == "0"
                by_pt[codec.payloadType] = (codec, name, mode0)
        if codecs:
            # aiortc's RTP loop stamps every packet with the payload type of the codec object it is
            # given: a copy of our own, set before each frame to that frame's codec.
            codecs[0] = copy.copy(codecs[0])
            parameters.codecs = codecs
        await original_send(parameters)

    async def next_encoded_frame(active: RTCRtpCodecParameters) -> RTCEncodedFrame | None:
        nonlocal vp8_picture_id
        packet, payload_type = await track.recv_with_payload_type()
        agreed = by_pt.get(payload_type) if payload_type is not None else None
        if agreed is None or not sender._enabled:
            return None
        codec, name, single_nal = agreed
        active.payloadType = codec.payloadType
        payloads = packetize(name, bytes(packet), vp8_picture_id, single_nal=single_nal)
        if name == "VP8":
            vp8_picture_id = (vp8_picture_id + 1) % (1 << 15)
        return RTCEncodedFrame(payloads, int(packet.pts or 0), None)  # type: ignore[arg-type]  # (aiortc passes None too)

    async def retransmit(sequence_number: int) -> None:
        history: dict[int, RtpPacket] = sender._RTCRtpSender__rtp_history  # type: ignore[attr-defined]
        packet = history.get(sequence_number % RTP_HISTORY_SIZE)
        if packet is not None:  # (its own codec's RTX; none: resent as it was)
            sender._RTCRtpSender__rtx_payload_type = rtx_by_apt.get(packet.payload_type)  # type: ignore[attr-defined]
        await original_retransmit(sequence_number)

    sender.send = send  # type: ignore[method-assign]
    sender._next_encoded_frame = next_encoded_frame  # type: ignore[method-assign,assignment]
    sender._retransmit = retransmit  # type: ignore[method-assign]


def far_end_report(sender: RTCRtpSender) -> tuple[float | None, float | None]:
    """What the far end's last receiver report said of what `sender` sends: the share lost (0..1)
    and the round trip in ms (None where no report came yet, or it gave no round trip)."""
    stats: RTCStatsReport = sender._RTCRtpSender__stats  # type: ignore[attr-defined]
    for entry in stats.values():
        if isinstance(entry, RTCRemoteInboundRtpStreamStats):
            rtt = entry.roundTripTime
            return entry.fractionLost / 256, None if rtt is None else rtt * 1000
    return None, None


def on_receiver_estimate(sender: RTCRtpSender, callback: Callable[[int], None]) -> None:
    """`callback(bit/s)` with each REMB (the far end's estimate of what it can receive) that names
    this sender's SSRC; aiortc itself ignores them."""
    original = sender._handle_rtcp_packet

    async def handle_rtcp_packet(packet: Any) -> None:
        bps = bitrate_feedback(packet, sender._ssrc)
        if bps is not None:
            callback(bps)
        await original(packet)

    sender._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """A PLI or FIR from the browser for this (forwarded) stream calls `callback` instead of the encoder."""
    sender._send_keyframe = callback  # type: ignore[method-assign]


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> tuple[StreamCodec, ...]:
    """Codecs agreed for a transceiver after the answer, preferred first, without RTX."""
    return tuple(stream_codec(c) for c in transceiver._codecs if c.mimeType.lower().split("/")[1] != "rtx")


def codec_capabilities(kind: str) -> list[Any]:
    """aiortc's codec capabilities of a kind ("audio", "video"), for setCodecPreferences."""
    return list(RTCRtpSender.getCapabilities(kind).codecs)
