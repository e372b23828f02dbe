"""Q.931 over TPKT as H.225.0 uses it (sans-IO, gateway/h323/q931.py): every message type and
element written and read back to equal objects, a Setup and a ReleaseComplete checked octet by
octet (Q.931 4 and H.225.0 7), the User-user element's two-octet length, TPKT framing of
a byte stream in any cut, and what cannot be read refused with Q931Error only, in linear time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.h323.q931 import (
    BEARER_VIDEO,
    MAX_ELEMENTS,
    Element,
    InformationElement,
    Message,
    MessageType,
    Q931Error,
    TpktReader,
    called_party_number,
    cause,
    display,
    parse,
    serialize,
    tpkt,
    user_user,
)

PER = bytes(range(40)) * 10  # stands in for an H.323-UserInformation (400 octets: past one length octet)


def test_a_setup_is_written_octet_by_octet_and_read_back() -> None:
    setup = Message(
        MessageType.SETUP, 0x1234, False,
        [BEARER_VIDEO, display("Ratssaal"), called_party_number("4711"), user_user(PER)],
    )  # fmt: skip
    data = serialize(setup)
    assert data[:6] == bytes([0x08, 0x02, 0x12, 0x34, 0x05, 0x04])  # discriminator, reference, Setup, bearer
    assert bytes([0x28, 8]) + b"Ratssaal" in data and bytes([0x70, 5, 0x81]) + b"4711" in data
    assert bytes([0x7E]) + len(PER + b"_").to_bytes(2, "big") + b"\x05" + PER[:4] in data  # (two octets of length)
    back = parse(data)
    assert back == setup
    assert (back.display, back.called_number, back.user_user) == ("Ratssaal", "4711", PER)


def test_the_flag_of_the_call_reference_says_who_allocated_it() -> None:
    released = Message(MessageType.RELEASE_COMPLETE, 0x1234, True, [cause(16), user_user(b"\x25\x80")])
    data = serialize(released)
    assert data[2:5] == bytes([0x92, 0x34, 0x5A])  # (flag set: from the destination side)
    back = parse(data)
    assert (back.call_reference, back.from_destination, back.cause) == (0x1234, True, 16)
    assert data.find(bytes([0x08, 0x02, 0x80, 0x90])) > 0  # Cause: ITU coding, user, normal clearing


@pytest.mark.parametrize("message_type", list(MessageType))
def test_every_message_type_round_trips(message_type: MessageType) -> None:
    message = Message(message_type, 7, False, [InformationElement(Element.SENDING_COMPLETE), user_user(b"\x00")])
    assert parse(serialize(message)) == message


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "shorter than its header"),
        (b"\x09\x02\x00\x01\x05", "protocol discriminator"),
        (b"\x08\x12\x00\x01\x05", "call reference length"),
        (b"\x08\x02\x00", "call reference"),
        (b"\x08\x02\x00\x01\x85", "top bit"),
        (b"\x08\x02\x00\x01\x05\x28", "ends in its length"),
        (b"\x08\x02\x00\x01\x05\x28\x09abc", "longer than the message"),
        (b"\x08\x02\x00\x01\x05\x7e\x00", "User-user element ends"),
        (b"\x08\x02\x00\x01\x05\x7e\x01\x00\x05", "longer than the message"),
        (b"\x08\x02\x00\x01\x05" + b"\xa1" * (MAX_ELEMENTS + 1), "information elements"),
    ],
)
def test_what_cannot_be_read_is_refused_with_its_reason(data: bytes, why: str) -> None:
    with pytest.raises(Q931Error, match=why):
        parse(data)


def test_what_cannot_be_written_is_refused() -> None:
    with pytest.raises(Q931Error):
        serialize(Message(MessageType.SETUP, 1 << 15))  # (two octets, the top bit is the flag)
    with pytest.raises(Q931Error):
        serialize(Message(MessageType.SETUP, 1, elements=[InformationElement(Element.DISPLAY, b"x" * 256)]))


def test_tpkt_frames_come_out_whole_however_the_stream_is_cut() -> None:
    messages = [serialize(Message(MessageType.SETUP, n, False, [user_user(PER[: 10 * n])])) for n in range(1, 6)]
    stream = b"".join(tpkt(m) for m in messages)
    assert stream[:4] == bytes([3, 0]) + (len(messages[0]) + 4).to_bytes(2, "big")
    for cut in (1, 3, 4, 7, 100, len(stream)):
        reader, got = TpktReader(), []
        for at in range(0, len(stream), cut):
            got += reader.feed(stream[at : at + cut])
        assert got == messages and reader.pending == 0, cut
    with pytest.raises(Q931Error, match="version"):
        TpktReader().feed(b"\x02\x00\x00\x08abcd")
    with pytest.raises(Q931Error, match="shorter than its header"):
        TpktReader().feed(b"\x03\x00\x00\x02")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_give_a_message_or_q931error_and_what_is_read_is_written_back_the_same(data: bytes) -> None:
    data = b"\x08\x02" + data
    try:
        message = parse(data)
    except Q931Error:
        return
    assert parse(serialize(message)) == message
