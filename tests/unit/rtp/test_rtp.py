"""The sans-IO RTP session and RFC 4733 DTMF: two sessions talk to each other, no sockets."""

from __future__ import annotations

from aiortc.rtp import RtcpPacket, RtcpSrPacket, RtpPacket

from gateway.rtp.crypto import Crypto
from gateway.rtp.dtmf import DtmfReceiver, decode, encode
from gateway.rtp.session import AudioIn, DigitIn, ForeignSource, RtpSession, SourceLearned

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
    report = a.rtcp_report(now=1.0, wall=1_700_000_000.0)
    b.receive(report, A, 1.0)
    assert b.stats.rtcp_in == 1


def test_sender_reports_carry_a_reception_block_with_losses() -> None:
    a, b = pair()
    for i in range(10):
        data, _ = a.send_audio(b"\xd5" * 160)
        if i != 4:  # one packet lost on the way
            b.receive(data, A, i * 0.02)
    b.receive(a.rtcp_report(now=0.2, wall=1_700_000_000.0), A, 0.2)
    report = b.rtcp_report(now=0.7, wall=1_700_000_000.5)
    assert b.rtcp_destination() == (A, True)  # no RTCP address given: muxed
    (sr,) = RtcpPacket.parse(report)
    assert isinstance(sr, RtcpSrPacket) and sr.ssrc == b.ssrc
    (block,) = sr.reports
    assert block.ssrc == a.ssrc and block.packets_lost == 1
    assert block.lsr != 0 and abs(block.dlsr - 0.5 * 65536) < 2



def test_the_remotes_reports_give_its_loss_of_our_stream_and_the_round_trip() -> None:
    a, b = pair()
    assert (a.remote_loss, a.rtt_ms) == (None, None)
    for i in range(10):
        data, _ = a.send_audio(b"\xd5" * 160)
        if i not in (3, 6):  # two of ten lost on the way
            b.receive(data, A, i * 0.02)
    b.receive(a.rtcp_report(now=10.0, wall=1_700_000_000.0), A, 10.05)  # our report, 50 ms on the way
    a.rtcp_report(now=10.2, wall=1_700_000_000.2)  # (another of ours, lost or not yet seen by b)
    a.receive(b.rtcp_report(now=10.35, wall=1_700_000_000.35), B, 10.4)  # theirs 300 ms later, 50 ms back
    assert a.remote_loss is not None and abs(a.remote_loss - 0.2) < 0.01
    assert a.rtt_ms is not None and abs(a.rtt_ms - 100) < 1
    # A report on someone else's stream says nothing about ours.
    c, _ = pair()
    a.receive(c.rtcp_report(now=11.0, wall=1_700_000_001.0), B, 11.0)
    assert abs(a.remote_loss - 0.2) < 0.01

# -- latching ("RTP bleed") -------------------------------------------------------------------------

INTRUDER = ("192.0.2.66", 40000)


def rtp_from(ssrc: int, seq: int, payload_type: int = 8, payload: bytes = b"\xd5" * 160, ts: int = 0) -> bytes:
    return RtpPacket(payload_type=payload_type, sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=payload).serialize()


def key_press(digit: str, ssrc: int, seq: int) -> list[bytes]:
    return [rtp_from(ssrc, seq + i, 101, encode(digit, 160 * (i + 1), i >= 2), ts=777) for i in range(4)]


def test_strict_takes_only_the_sdp_address_and_counts_the_rest() -> None:
    b = RtpSession(8, 8000, 160, remote=A, telephone_event_pt=101, remote_rtcp=(A[0], A[1] + 1), latching="strict")
    nat = (A[0], 61234)  # even the caller's own host, from another port
    first = b.receive(rtp_from(1, 1), nat, 0.0)
    assert [type(e) for e in first] == [ForeignSource] and first[0].address == nat  # reported once ...
    assert b.receive(rtp_from(1, 2), nat, 0.0) == []  # ... then only counted
    assert [e for data in key_press("5", 2, 10) for e in b.receive(data, INTRUDER, 0.0)] == []  # no digit
    assert (b.stats.dropped_foreign, b.stats.packets_in) == (6, 0)
    assert not b.may_send and b.destination == A
    assert [type(e) for e in b.receive(rtp_from(3, 1), A, 5.0)] == [AudioIn]  # the SDP's address, any time
    assert b.may_send and b.destination == A
    # RTCP: from the RTP port + 1 of the SDP's address only
    report = RtpSession(8, 8000, 160, remote=B).rtcp_report(1.0, 1_700_000_000.0)
    b.receive(report, (A[0], A[1] + 1), 1.0, rtcp_port=True)
    b.receive(report, (A[0], 61235), 1.0, rtcp_port=True)
    b.receive(report, INTRUDER, 1.0, rtcp_port=True)
    assert (b.stats.rtcp_in, b.stats.rtcp_dropped_foreign) == (1, 2)
    assert b.rtcp_destination() == ((A[0], A[1] + 1), False)


def test_learn_latches_the_first_source_in_the_window_and_then_no_other() -> None:
    b = RtpSession(8, 8000, 160, remote=A, telephone_event_pt=101, remote_rtcp=(A[0], A[1] + 1), learn_s=3.0, agreed_at=10.0)
    nat = ("198.51.100.200", 61234)  # the phone's NAT: another address and port than the SDP's
    learned = b.receive(rtp_from(1, 1), nat, 10.5)
    assert [type(e) for e in learned] == [SourceLearned, AudioIn] and learned[0].address == nat
    assert b.destination == nat and b.may_send
    # an intruder, in the window or after it, with audio and keys: dropped, never followed, no digit
    for now in (10.6, 20.0):
        assert not [e for e in b.receive(rtp_from(9, 1), INTRUDER, now) if isinstance(e, AudioIn)]
        assert [e for data in key_press("*", 9, 5) for e in b.receive(data, INTRUDER, now) if isinstance(e, DigitIn)] == []
    assert b.destination == nat and b.stats.dropped_foreign == 10
    # the phone's keys still count
    assert [e.digit for data in key_press("#", 1, 2) for e in b.receive(data, nat, 11.0) if isinstance(e, DigitIn)] == ["#"]
    # RTCP from the learnt host (its own NAT mapping) is learnt too; from elsewhere it is not
    assert b.rtcp_destination() is None  # no guessing the NAT's RTCP port
    report = RtpSession(8, 8000, 160, remote=B).rtcp_report(1.0, 1_700_000_000.0)
    assert b.receive(report, INTRUDER, 12.0, rtcp_port=True) == []
    assert [type(e) for e in b.receive(report, (nat[0], 61299), 12.0, rtcp_port=True)] == [SourceLearned]
    assert b.rtcp_destination() == ((nat[0], 61299), False)
    assert (b.stats.rtcp_in, b.stats.rtcp_dropped_foreign) == (1, 1)


def test_learn_prefers_the_sdp_address_within_the_window_and_closes_after_it() -> None:
    b = RtpSession(8, 8000, 160, remote=A, learn_s=3.0, agreed_at=0.0)
    b.receive(rtp_from(9, 1), INTRUDER, 0.1)  # a spray that raced the caller's first packet
    assert b.destination == INTRUDER
    b.receive(rtp_from(1, 1), A, 0.2)  # the signalled address shows up: it wins, for good
    assert b.destination == A and b.stats.remote_moved == 1
    b.receive(rtp_from(9, 2), INTRUDER, 0.3)
    assert b.destination == A and b.stats.dropped_foreign == 1

    late = RtpSession(8, 8000, 160, remote=A, learn_s=3.0, agreed_at=0.0)
    assert late.receive(rtp_from(9, 1), INTRUDER, 3.5) != []  # (the ForeignSource report)
    assert late.destination == A and late.stats.dropped_foreign == 1 and not late.may_send
    late.confirm(4.0)  # the ACK came late: learning runs on from it
    assert [type(e) for e in late.receive(rtp_from(1, 1), INTRUDER, 4.5)] == [SourceLearned, AudioIn]


def test_a_new_address_by_re_invite_is_learnt_again_and_a_hold_keeps_the_old() -> None:
    b = RtpSession(8, 8000, 160, remote=A, learn_s=3.0, agreed_at=0.0)
    b.receive(rtp_from(1, 1), A, 0.1)
    b.renegotiate(8, 8000, 160, ("0.0.0.0", A[1]), None, None, None, now=50.0)  # old-style hold
    assert b.destination == A
    assert [type(e) for e in b.receive(rtp_from(1, 2), A, 51.0)] == [AudioIn]
    moved = ("203.0.113.77", 7000)
    b.renegotiate(8, 8000, 160, moved, None, None, None, now=60.0)
    assert b.destination == moved
    nat = ("203.0.113.77", 9999)  # the new address, behind a NAT: learnt in the new window
    assert [type(e) for e in b.receive(rtp_from(1, 3), nat, 60.2)] == [SourceLearned, AudioIn]
    assert b.receive(rtp_from(1, 4), A, 60.3) != [] and b.stats.dropped_foreign == 1  # the old one is foreign now
    assert b.destination == nat


def test_only_valid_packets_latch_or_allow_sending() -> None:
    b = RtpSession(8, 8000, 160, remote=A, learn_s=3.0)
    b.receive(rtp_from(9, 1, payload_type=0), INTRUDER, 0.1)  # not the call's payload type
    b.receive(b"\x80" + b"\x00" * 5, INTRUDER, 0.1)  # garbage
    assert b.destination == A and not b.may_send
    srtp = RtpSession(8, 8000, 160, remote=A, remote_crypto=Crypto(1, "AES_CM_128_HMAC_SHA1_80", bytes(30)))
    srtp.receive(rtp_from(9, 1), INTRUDER, 0.1)  # not protected with the call's key
    assert srtp.destination == A and not srtp.may_send and srtp.stats.dropped_undecryptable == 1
