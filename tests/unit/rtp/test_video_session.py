"""An RtpSession serving a video line: whole frames out and back in (H.264 and VP8 payloads),
keyframe requests both ways over RTCP (PLI, FIR), and what an audio line makes of them."""

from __future__ import annotations

import struct

import pytest

from gateway.rtp.aiortc_glue import RtpPacket, fir, pli
from gateway.rtp.crypto import Crypto
from gateway.rtp.session import BitrateWanted, KeyframeWanted, PictureLost, RtpEvent, RtpSession, VideoIn
from gateway.transcode.codecs import StreamCodec, StreamKind, h264, vp8
from gateway.transcode.video import EncodedVideoFrame, is_keyframe

A, B = ("198.51.100.1", 4000), ("203.0.113.9", 5000)
SPS, PPS = b"\x67\x42\xe0\x1f\x8c\x8d", b"\x68\xce\x3c\x80"
IDR = b"\x65" + bytes(range(256)) * 12  # larger than a packet: fragmented (FU-A)
SLICE = b"\x41" + b"\x9a" * 300


def annex_b(*nal_units: bytes) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + nal for nal in nal_units)


def video_pair(codecs: tuple[StreamCodec, ...] = (h264(97),), **kwargs: object) -> tuple[RtpSession, RtpSession]:
    return (
        RtpSession.for_video(StreamKind.MAIN, codecs, B, **kwargs),
        RtpSession.for_video(StreamKind.MAIN, codecs, A, **kwargs),
    )


def deliver(packets: list[bytes], to: RtpSession, source: tuple[str, int]) -> list[RtpEvent]:
    return [event for data in packets for event in to.receive(data, source, 0.0)]


def test_h264_frames_go_out_as_packets_and_come_back_whole() -> None:
    a, b = video_pair()
    key = EncodedVideoFrame("H264", annex_b(SPS, PPS, IDR), 1_000, True)
    delta = EncodedVideoFrame("H264", annex_b(SLICE), 4_000, False)
    first, to = a.send_video(key)
    assert to == B and len(first) > 2
    parsed = [RtpPacket.parse(p) for p in first]
    assert [p.marker for p in parsed] == [0] * (len(first) - 1) + [1]  # the frame ends on the marker
    assert {p.payload_type for p in parsed} == {97} and len({p.timestamp for p in parsed}) == 1
    assert deliver(first, b, A) == []  # whole only when the next frame starts
    second, _ = a.send_video(delta)
    assert RtpPacket.parse(second[0]).timestamp - parsed[0].timestamp == 3_000  # the source's spacing
    events = deliver(second, b, A)
    assert len(events) == 1 and isinstance(events[0], VideoIn)
    frame = events[0].frame
    assert (frame.codec, frame.data, frame.keyframe) == ("H264", key.data, True)
    assert frame.format == h264(97)  # the negotiated descriptor of its payload type
    assert b.stats.packets_in == len(first) + len(second)


def test_vp8_frames_and_a_second_codec_on_the_line() -> None:
    a, b = video_pair((vp8(96), h264(97)))
    frames = [EncodedVideoFrame("VP8", b"\x10" + bytes(2000), 0, True), EncodedVideoFrame("H264", annex_b(SLICE), 3000, False)]
    events: list[RtpEvent] = []
    for frame in frames + [EncodedVideoFrame("VP8", b"\x11", 6000, False)]:
        events += deliver(a.send_video(frame)[0], b, A)
    got = [e.frame for e in events if isinstance(e, VideoIn)]
    assert [(f.codec, f.data) for f in got] == [(f.codec, f.data) for f in frames]
    assert got[0].keyframe and got[0].format == vp8(96) and got[1].format == h264(97)
    with pytest.raises(ValueError):
        a.send_video(EncodedVideoFrame("AV1", b"x", 0, True))  # not agreed on this line


def test_a_new_source_continues_the_timeline() -> None:
    a, _ = video_pair()
    first = RtpPacket.parse(a.send_video(EncodedVideoFrame("H264", annex_b(SLICE), 90_000, False))[0][0])
    a.restart_timeline()  # another participant's frames from now on, with their own clock
    second = RtpPacket.parse(a.send_video(EncodedVideoFrame("H264", annex_b(SLICE), 5, False))[0][0])
    assert (second.timestamp - first.timestamp) & 0xFFFFFFFF == 3_000
    assert second.sequence_number == (first.sequence_number + 1) & 0xFFFF and second.ssrc == first.ssrc


def test_keyframe_requests_travel_over_rtcp_pli_or_fir() -> None:
    a, b = video_pair()
    assert b.keyframe_request() is None  # nothing heard yet: no SSRC to name
    deliver(a.send_video(EncodedVideoFrame("H264", annex_b(SPS, PPS, IDR), 0, True))[0], b, A)
    request = b.keyframe_request()
    assert request is not None and request[1] == 206 and request[0] & 0x1F == 1  # PSFB, PLI
    assert a.receive(request, B, 0.0) == [KeyframeWanted()]
    assert a.stats.keyframes_wanted == 1 and b.stats.keyframes_asked == 1
    assert a.receive(pli(b.ssrc, a.ssrc ^ 1), B, 0.0) == []  # about somebody else's stream

    only_fir = (h264(97, rtcp_fb=("ccm fir",)),)
    c, d = video_pair(only_fir)
    deliver(c.send_video(EncodedVideoFrame("H264", annex_b(SLICE), 0, False))[0], d, A)
    request = d.keyframe_request()
    assert request is not None and request[0] & 0x1F == 4  # FIR: what was agreed
    assert c.receive(request, B, 0.0) == [KeyframeWanted()]
    assert c.receive(fir(d.ssrc, c.ssrc ^ 1, 9), B, 0.0) == []


def test_an_audio_line_ignores_keyframe_requests_and_a_video_line_counts_bad_payloads() -> None:
    audio = RtpSession(8, 8000, 160, remote=B)
    audio.send_audio(b"\xd5" * 160)
    assert audio.receive(pli(1234, audio.ssrc), B, 0.0) == []
    _, b = video_pair()
    broken = RtpPacket(payload_type=97, sequence_number=1, timestamp=0, ssrc=77, payload=b"\x18\x00")  # cut STAP-A
    assert b.receive(broken.serialize(), A, 0.0) == [] and b.stats.dropped_malformed == 1
    unknown = RtpPacket(payload_type=100, sequence_number=2, timestamp=0, ssrc=77, payload=b"\x41x")
    assert b.receive(unknown.serialize(), A, 0.0) == [] and b.stats.dropped_unknown_pt == 1


def test_a_lost_picture_is_reported_so_the_leg_can_ask_for_a_keyframe() -> None:
    a, b = video_pair()
    packets = [p for i in range(4) for p in a.send_video(EncodedVideoFrame("H264", annex_b(SLICE), i * 3000, False))[0]]
    deliver(packets[:1], b, A)
    far = RtpPacket.parse(packets[1])
    far.sequence_number = (far.sequence_number + 600) & 0xFFFF  # beyond what the buffer holds
    assert PictureLost() in b.receive(far.serialize(), A, 0.0)


def test_srtp_protects_video_and_its_feedback() -> None:
    key_a, key_b = Crypto(1, "AES_CM_128_HMAC_SHA1_80", bytes(range(30))), Crypto(1, "AES_CM_128_HMAC_SHA1_80", bytes(30))
    a = RtpSession.for_video(StreamKind.CONTENT, (h264(97),), B, local_crypto=key_a, remote_crypto=key_b)
    b = RtpSession.for_video(StreamKind.CONTENT, (h264(97),), A, local_crypto=key_b, remote_crypto=key_a)
    key = EncodedVideoFrame("H264", annex_b(SPS, PPS, IDR), 0, True)
    deliver(a.send_video(key)[0], b, A)
    events = deliver(a.send_video(EncodedVideoFrame("H264", annex_b(SLICE), 3000, False))[0], b, A)
    assert [e.frame.data for e in events if isinstance(e, VideoIn)] == [key.data]
    assert is_keyframe("H264", key.data)
    request = b.keyframe_request()
    assert request is not None and a.receive(request, B, 0.0) == [KeyframeWanted()]


def tmmbr(sender: int, media: int, bps: int) -> bytes:
    """RFC 5104 4.2.1: RTPFB fmt 3, one FCI (SSRC, exponent 6 bits, mantissa 17, overhead 9)."""
    exponent = 0
    while bps >> exponent >= 1 << 17:
        exponent += 1
    bits = (exponent << 26) | ((bps >> exponent) << 9) | 40
    return struct.pack("!BBHLLLL", 0x83, 205, 4, sender, 0, media, bits)


def remb(sender: int, media: int, bps: int) -> bytes:
    exponent = 0
    while bps >> exponent >= 1 << 18:
        exponent += 1
    fci = b"REMB" + struct.pack("!B", 1) + struct.pack("!L", (exponent << 18) | (bps >> exponent))[1:] + struct.pack("!L", media)
    return struct.pack("!BBHLL", 0x8F, 206, 2 + len(fci) // 4, sender, 0) + fci


def test_tmmbr_and_remb_limit_what_we_send() -> None:
    a, b = video_pair()
    deliver(a.send_video(EncodedVideoFrame("H264", annex_b(SPS, PPS, IDR), 0, True))[0], b, A)
    assert a.receive(tmmbr(b.ssrc, a.ssrc, 512_000), B, 0.0) == [BitrateWanted(512_000)]
    assert a.receive(tmmbr(b.ssrc, a.ssrc ^ 1, 512_000), B, 0.0) == []  # about somebody else's stream
    assert a.receive(remb(b.ssrc, a.ssrc, 300_000), B, 0.0) == [BitrateWanted(300_000)]
    assert a.receive(remb(b.ssrc, a.ssrc ^ 1, 300_000), B, 0.0) == []
    # a TMMBR whose length runs past the datagram is not read
    cut = tmmbr(b.ssrc, a.ssrc, 512_000)
    assert a.receive(cut[:2] + b"\x00\x09" + cut[4:], B, 0.0) == []


def test_packetization_mode_0_sends_one_nal_unit_per_packet() -> None:
    a, b = video_pair((h264(98, packetization_mode=0),))
    small = b"\x65" + b"\x11" * 900
    frame = EncodedVideoFrame("H264", annex_b(SPS, PPS, small, small), 0, True)
    packets = [RtpPacket.parse(p) for p in a.send_video(frame)[0]]
    assert [p.payload for p in packets] == [SPS, PPS, small, small]  # no STAP-A, no FU-A
    assert [p.marker for p in packets] == [0, 0, 0, 1]
    deliver(a.send_video(frame)[0], b, A)
    events = deliver(a.send_video(EncodedVideoFrame("H264", annex_b(SLICE), 3000, False))[0], b, A)
    assert [e.frame.data for e in events if isinstance(e, VideoIn)] == [frame.data]
