"""The sans-IO RTP session and RFC 4733 DTMF: two sessions talk to each other, no sockets."""

from __future__ import annotations

from aiortc.rtp import RtcpPacket, RtcpSrPacket, RtpPacket

from gateway.rtp.crypto import Crypto
from gateway.rtp.dtmf import DtmfReceiver, decode, encode
from gateway.rtp.session import AudioIn, DigitIn, RtpSession

A, B = ("198.51.100.1", 4000), ("203.0.113.9", 5000)


def pair(**kwargs: object) -> tuple[RtpSession, RtpSession]:
    return (
        RtpSession(payload_type=8, clock_rate=8000, samples_per_frame=160, remote=B, telephone_event_pt=101, **kwargs),  # type: ignore[arg-type]
        RtpSession(payload_type=8, clock_rate=8000, samples_per_frame=160, remote=A, telephone_event_pt=101, **kwargs),  # type: ignore[arg-type]
    )


def test_audio_flows_with_continuous_numbering_and_talkspurt_markers() -> None:
    a, b = pair()
    sent = [a.send_audio(bytes([i]) * 160, speech=i not in (3, 4)) for i in range(8)]
    packets = [RtpPacket.parse(data) for data, to in sent]
    assert all(to == B for _, to in sent)
    assert len({p.ssrc for p in packets}) == 1
    assert [(p.sequence_number - packets[0].sequence_number) & 0xFFFF for p in packets] == list(range(8))
    assert [(p.timestamp - packets[0].timestamp) & 0xFFFFFFFF for p in packets] == [160 * i for i in range(8)]
    assert [p.marker for p in packets] == [1, 0, 0, 0, 0, 1, 0, 0]  # first frame, and speech again after 3-4
    received = [event for data, _ in sent for event in b.receive(data, A, 0.0)]
    assert [e.payload[0] for e in received if isinstance(e, AudioIn)] == list(range(8))
    assert b.stats.packets_in == 8


def test_symmetric_rtp_answers_where_packets_really_come_from() -> None:
    a, b = pair()
    nat = ("198.51.100.1", 61234)  # the phone announced 4000, its NAT sends from 61234
    data, _ = a.send_audio(b"\xd5" * 160)
    b.receive(data, nat, 0.0)
    assert b.send_audio(b"\xd5" * 160)[1] == nat


def test_unknown_payload_types_and_garbage_are_dropped_and_counted() -> None:
    _, b = pair()
    other = RtpPacket(payload_type=0, sequence_number=1, timestamp=1, ssrc=7, payload=b"x" * 160).serialize()
    assert b.receive(other, A, 0.0) == []
    assert b.receive(b"\x00" * 20, A, 0.0) == [] and b.receive(b"\x80", A, 0.0) == []
    assert (b.stats.dropped_unknown_pt, b.stats.dropped_malformed, b.stats.packets_in) == (1, 2, 0)
    assert b.send_audio(b"x")[1] == A  # garbage never moves where we send


def test_dtmf_presses_are_reported_once_despite_repeats_and_end_packets() -> None:
    _, b = pair()
    digits = []
    seq = 100
    for press, digit in enumerate("1#"):
        for duration, end in ((160, False), (320, False), (480, True), (480, True), (480, True)):
            packet = RtpPacket(payload_type=101, sequence_number=seq, timestamp=8000 * press, ssrc=9, payload=encode(digit, duration, end))
            seq += 1
            digits += [e.digit for e in b.receive(packet.serialize(), A, 0.0) if isinstance(e, DigitIn)]
    assert digits == ["1", "#"]


def test_dtmf_codec() -> None:
    event = decode(encode("*", 800, True, volume=7))
    assert event is not None and (event.digit, event.end, event.duration, event.volume) == ("*", True, 800, 7)
    assert decode(b"\x10\x00\x00\xa0") is None  # event 16 (flash) is not a DTMF digit
    assert decode(b"\x01") is None
    receiver = DtmfReceiver()
    assert receiver.packet(encode("5", 160, False), 1234) == "5"
    assert receiver.packet(encode("5", 320, True), 1234) is None


def test_srtp_with_keys_from_sdes() -> None:
    key_a, key_b = Crypto(1, "AES_CM_128_HMAC_SHA1_80", bytes(range(30))), Crypto(1, "AES_CM_128_HMAC_SHA1_80", bytes(range(30, 60)))
    a = RtpSession(8, 8000, 160, B, local_crypto=key_a, remote_crypto=key_b)
    b = RtpSession(8, 8000, 160, A, local_crypto=key_b, remote_crypto=key_a)
    data, _ = a.send_audio(b"\xd5" * 160)
    assert b"\xd5" * 160 not in data  # encrypted on the wire
    assert [e.payload for e in b.receive(data, A, 0.0) if isinstance(e, AudioIn)] == [b"\xd5" * 160]
    eavesdropper = RtpSession(8, 8000, 160, A, remote_crypto=Crypto(1, "AES_CM_128_HMAC_SHA1_80", bytes(30)))
    assert eavesdropper.receive(a.send_audio(b"\xd5" * 160)[0], A, 0.0) == []
    assert eavesdropper.stats.dropped_undecryptable == 1
    report, _ = a.rtcp_report(now=1.0, wall=1_700_000_000.0)
    b.receive(report, A, 1.0)
    assert b.stats.rtcp_in == 1


def test_sender_reports_carry_a_reception_block_with_losses() -> None:
    a, b = pair()
    for i in range(10):
        data, _ = a.send_audio(b"\xd5" * 160)
        if i != 4:  # one packet lost on the way
            b.receive(data, A, i * 0.02)
    b.receive(a.rtcp_report(now=0.2, wall=1_700_000_000.0)[0], A, 0.2)
    report, to = b.rtcp_report(now=0.7, wall=1_700_000_000.5)
    assert to == A
    (sr,) = RtcpPacket.parse(report)
    assert isinstance(sr, RtcpSrPacket) and sr.ssrc == b.ssrc
    (block,) = sr.reports
    assert block.ssrc == a.ssrc and block.packets_lost == 1
    assert block.lsr != 0 and abs(block.dlsr - 0.5 * 65536) < 2
