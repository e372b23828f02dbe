"""The one aiortc race the gateway quiets, and nothing more."""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.exceptions import InvalidStateError
from aiortc.rtcdtlstransport import RtpRouter
from aiortc.rtp import RtpPacket, is_rtcp

from gateway.rtp.aiortc_glue import ignore_close_races, offer_simulcast, route_by_mid


async def _handled(future: asyncio.Future[Any], exception: BaseException) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    before = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        ignore_close_races(loop)
        loop.call_exception_handler({"message": "Task exception was never retrieved", "exception": exception, "future": future})
    finally:
        loop.set_exception_handler(before)
    return seen


async def test_a_peer_connection_closed_while_connecting_is_not_an_error() -> None:
    pc = RTCPeerConnection()
    await pc.close()
    connect = asyncio.ensure_future(pc._RTCPeerConnection__connect())  # type: ignore[attr-defined]
    await connect
    assert await _handled(connect, InvalidStateError("RTCIceTransport is closed")) == []


async def test_other_exceptions_still_reach_the_previous_handler() -> None:
    pc = RTCPeerConnection()
    await pc.close()
    connect = asyncio.ensure_future(pc._RTCPeerConnection__connect())  # type: ignore[attr-defined]
    await connect
    (seen,) = await _handled(connect, ValueError("a real bug"))
    assert isinstance(seen["exception"], ValueError)

    async def elsewhere() -> None:
        return None

    other = asyncio.ensure_future(elsewhere())
    await other
    (seen,) = await _handled(other, InvalidStateError("same type, other task"))
    assert isinstance(seen["exception"], InvalidStateError)


async def test_pre_encoded_audio_carries_its_level_as_rfc_6464_says() -> None:
    """aiortc keeps a frame's level in dBov (-127..0) and writes its negation into the header
    extension: a -20 dBov frame goes out as 20 (it went out as 108, silence, before)."""
    from types import SimpleNamespace

    from gateway.rtp.aiortc_glue import send_audio_level

    frame = SimpleNamespace(audio_level=None)

    async def next_frame(codec: object) -> object:
        return frame

    sender = SimpleNamespace(_next_encoded_frame=next_frame)
    send_audio_level(sender, lambda: -20.4)  # type: ignore[arg-type]
    assert await sender._next_encoded_frame(None) is frame
    assert frame.audio_level == -20 and -frame.audio_level == 20  # (what aiortc writes)


def test_simulcast_is_asked_for_on_the_camera_line_only_lowest_layer_first() -> None:
    sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 97\r\na=mid:1\r\na=recvonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 97\r\na=mid:2\r\n"
    asked = offer_simulcast(sdp, "1", ("l", "h"))
    camera, screen = asked.split("m=video")[1:]
    assert "a=rid:l recv\r\na=rid:h recv\r\na=simulcast:recv l;h\r\n" in camera
    assert "simulcast" not in screen and "a=rid" not in screen
    assert offer_simulcast(sdp, "7", ("l", "h")) == sdp  # (no such line: unchanged)


def test_packets_of_unannounced_ssrcs_are_routed_by_their_mid() -> None:
    route_by_mid()
    router = RtpRouter()
    camera, screen = object(), object()
    router.register_receiver(camera, ssrcs=[], payload_types=[97], mid="1")  # type: ignore[arg-type]
    router.register_receiver(screen, ssrcs=[], payload_types=[97], mid="2")  # type: ignore[arg-type]
    packet = RtpPacket(payload_type=97, ssrc=1234)
    assert router.route_rtp(packet) is None  # (no MID: two receivers take payload type 97)
    packet.extensions.mid = "2"
    assert router.route_rtp(packet) is screen
    assert router.route_rtp(RtpPacket(payload_type=97, ssrc=1234)) is screen  # (its SSRC learnt)
    stray = RtpPacket(payload_type=96, ssrc=99)
    stray.extensions.mid = "1"
    assert router.route_rtp(stray) is None  # (a payload type the line did not agree on)


async def test_a_slot_sends_each_frame_in_its_own_codec_with_its_own_rtx() -> None:
    """aiortc sends every frame of a transceiver in its first agreed codec; a video slot sends VP8
    and H.264 frames alike, each with its own payload type on one stream (sequence numbers go
    on), and retransmits each with its own codec's RTX payload type."""
    from types import SimpleNamespace

    from aiortc import RTCRtpSender
    from aiortc.rtcrtpparameters import RTCRtcpParameters, RTCRtpCodecParameters, RTCRtpSendParameters

    from gateway.rtp.aiortc_glue import EncodedTrack, send_any_codec

    sent: list[RtpPacket] = []

    async def send_rtp(data: bytes) -> None:  # (aiortc sends its RTCP this way too: left out)
        if not is_rtcp(data):
            sent.append(RtpPacket.parse(data))

    transport = SimpleNamespace(
        state="connected", _register_rtp_sender=lambda *a: None, _unregister_rtp_sender=lambda *a: None, _send_rtp=send_rtp
    )
    track = EncodedTrack("video")
    sender = RTCRtpSender(track, transport)  # type: ignore[arg-type]
    send_any_codec(sender, track)
    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    h264 = RTCRtpCodecParameters(
        mimeType="video/H264", clockRate=90000, payloadType=102,
        parameters={"packetization-mode": "1", "profile-level-id": "42e01f"},
    )  # fmt: skip
    h264_mode0 = RTCRtpCodecParameters(
        mimeType="video/H264", clockRate=90000, payloadType=104,
        parameters={"packetization-mode": "0", "profile-level-id": "42e01f"},
    )  # fmt: skip
    rtx = [
        RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=pt, parameters={"apt": apt})
        for pt, apt in ((97, 96), (103, 102), (105, 104))
    ]
    parameters = RTCRtpSendParameters(
        codecs=[vp8, rtx[0], h264, rtx[1], h264_mode0, rtx[2]], muxId="3", rtcp=RTCRtcpParameters(cname="c", ssrc=sender._ssrc)
    )
    await sender.send(parameters)
    try:
        big_nal = b"\x00\x00\x00\x01\x65" + bytes(3000)  # (an IDR slice: FU-A in packetization mode 1)
        sps = b"\x00\x00\x00\x01\x67\x42\xe0\x1f"
        track.push(b"\x10\x02\x00\x9d\x01\x2a" + bytes(200), 0, 96)
        track.push(sps + big_nal, 3000, 102)
        track.push(b"\x01" + bytes(200), 6000, 120)  # never agreed: dropped
        track.push(b"\x11" + bytes(200), 9000, 96)
        track.push(sps + b"\x00\x00\x00\x01\x65" + bytes(900), 12000, 104)  # packetization-mode 0
        for _ in range(100):
            if len({p.timestamp for p in sent}) >= 4:
                break
            await asyncio.sleep(0.01)
        frames = list(dict.fromkeys(p.timestamp for p in sent))  # (in the order sent)
        by_frame = [sorted({p.payload_type for p in sent if p.timestamp == ts}) for ts in frames]
        assert by_frame == [[96], [102], [96], [104]]
        mode0 = [p for p in sent if p.payload_type == 104]
        assert [p.payload[0] & 0x1F for p in mode0] == [7, 5]  # single NAL units, no STAP-A or FU-A
        assert len({p.ssrc for p in sent}) == 1
        seqs = [p.sequence_number for p in sent]
        assert all((b - a) % 65536 == 1 for a, b in zip(seqs, seqs[1:], strict=False))  # (one stream)
        h264_packets = [p for p in sent if p.payload_type == 102]
        assert h264_packets[0].payload[0] & 0x1F in (7, 24)  # the SPS (alone, or in a STAP-A)
        assert any(p.payload[0] & 0x1F == 28 for p in h264_packets)  # FU-A: the big slice in parts
        assert sent[0].payload[0] & 0x10  # VP8 payload descriptor, start of partition
        assert vp8.payloadType == 96  # (the transceiver's own codec object is never changed)

        # Retransmissions: each with its codec's RTX payload type, the original sequence number inside.
        before = len(sent)
        await sender._retransmit(h264_packets[1].sequence_number)
        await sender._retransmit(sent[0].sequence_number)
        rtx_sent = sent[before:]
        assert [p.payload_type for p in rtx_sent] == [103, 97]
        assert int.from_bytes(rtx_sent[0].payload[:2], "big") == h264_packets[1].sequence_number
    finally:
        await sender.stop()
