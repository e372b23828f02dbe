"""BFCP messages (RFC 8855): read from bytes written out by hand from the RFC's layouts (not by our
encoder), written back, and every malformed input refused with the Error code to answer it with."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bfcp.message import (
    MAX_ATTRIBUTES,
    Attribute,
    AttributeType,
    BfcpError,
    ErrorCode,
    Message,
    Primitive,
    RequestStatus,
    message_length,
    parse,
    serialize,
)


def header(primitive: int, words: int, version: int = 1, r: bool = False, conference: int = 1234, tid: int = 7, user: int = 42) -> bytes:
    return struct.pack("!BBHIHH", (version << 5) | (0x10 if r else 0), primitive, words, conference, tid, user)


# A FloorRequest for floor 1 (mandatory), as a room system sends it over TCP.
FLOOR_REQUEST = header(1, 1) + bytes([2 << 1 | 1, 4, 0x00, 0x01])

# A FloorRequestStatus over UDP (version 2, R set): FLOOR-REQUEST-INFORMATION 9 { OVERALL-REQUEST-
# STATUS 9 { REQUEST-STATUS Granted, queue 0 }, FLOOR-REQUEST-STATUS 1 { REQUEST-STATUS Granted },
# BENEFICIARY-INFORMATION 42 { USER-DISPLAY-NAME "Ratssaal" } }
_ors = bytes([18 << 1, 8, 0, 9, 5 << 1, 4, 3, 0])
_frs = bytes([17 << 1, 8, 0, 1, 5 << 1, 4, 3, 0])
_name = bytes([12 << 1, 10]) + b"Ratssaal" + b"\0\0"  # 10 octets and 2 of padding
_bi = bytes([14 << 1, 16, 0, 42]) + _name
_fri = bytes([15 << 1, 4 + len(_ors) + len(_frs) + len(_bi), 0, 9]) + _ors + _frs + _bi
STATUS = header(4, len(_fri) // 4, version=2, r=True) + _fri


def test_a_floor_request_written_from_the_rfc_layout_is_read_and_written_back_the_same() -> None:
    message = parse(FLOOR_REQUEST)
    assert (message.primitive, message.conference_id, message.transaction_id, message.user_id) == (Primitive.FLOOR_REQUEST, 1234, 7, 42)
    (floor,) = message.attributes
    assert (floor.type, floor.value, floor.mandatory) == (AttributeType.FLOOR_ID, 1, True)
    assert serialize(message) == FLOOR_REQUEST
    assert message_length(FLOOR_REQUEST[:4]) == len(FLOOR_REQUEST)


def test_grouped_attributes_nest_and_padding_is_not_in_the_length() -> None:
    message = parse(STATUS, "udp")
    assert (message.version, message.response) == (2, True)
    info = message.find(AttributeType.FLOOR_REQUEST_INFORMATION)
    assert info is not None and info.value == 9
    overall = info.find(AttributeType.OVERALL_REQUEST_STATUS)
    assert overall is not None and overall.value == 9
    assert overall.children[0].value == (RequestStatus.GRANTED, 0)
    beneficiary = info.find(AttributeType.BENEFICIARY_INFORMATION)
    assert beneficiary is not None and beneficiary.value == 42
    assert beneficiary.children[0].value == "Ratssaal"
    assert serialize(message) == STATUS


def test_hello_ack_lists_what_it_supports() -> None:
    ack = Message(Primitive.HELLO_ACK, 1, 3, 5, [
        Attribute(AttributeType.SUPPORTED_PRIMITIVES, [int(p) for p in Primitive]),
        Attribute(AttributeType.SUPPORTED_ATTRIBUTES, [int(a) for a in AttributeType]),
    ])  # fmt: skip
    data = serialize(ack)
    assert len(data) % 4 == 0
    again = parse(data)
    assert again.find(AttributeType.SUPPORTED_PRIMITIVES).value == list(range(1, 18))  # type: ignore[union-attr]
    assert again.find(AttributeType.SUPPORTED_ATTRIBUTES).value == list(range(1, 19))  # type: ignore[union-attr]
    # (attribute types are 7 bits with a reserved bit: 18 is sent as 36)
    assert bytes([36]) in data


def test_an_error_message_carries_its_code_and_text() -> None:
    error = Message(Primitive.ERROR, 1, 9, 5, [
        Attribute(AttributeType.ERROR_CODE, (int(ErrorCode.UNKNOWN_MANDATORY_ATTRIBUTE), bytes([60 << 1])), mandatory=True),
        Attribute(AttributeType.ERROR_INFO, "Attribut 60 unbekannt"),
    ])  # fmt: skip
    again = parse(serialize(error))
    assert again.find(AttributeType.ERROR_CODE).value == (4, bytes([120]))  # type: ignore[union-attr]
    assert again.find(AttributeType.ERROR_INFO).value == "Attribut 60 unbekannt"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (FLOOR_REQUEST[:11], ErrorCode.INCORRECT_MESSAGE_LENGTH),
        (header(1, 2) + FLOOR_REQUEST[12:], ErrorCode.INCORRECT_MESSAGE_LENGTH),  # says 8 octets, 4 came
        (FLOOR_REQUEST + b"\0\0\0\0", ErrorCode.INCORRECT_MESSAGE_LENGTH),
        (header(1, 1, version=3) + FLOOR_REQUEST[12:], ErrorCode.UNSUPPORTED_VERSION),
        (header(99, 0), ErrorCode.UNKNOWN_PRIMITIVE),
        (header(1, 1) + bytes([60 << 1 | 1, 4, 0, 0]), ErrorCode.UNKNOWN_MANDATORY_ATTRIBUTE),
        (header(1, 1) + bytes([2 << 1, 9, 0, 1]), ErrorCode.PARSE_ERROR),  # length past the message
        (header(1, 1) + bytes([2 << 1, 1, 0, 1]), ErrorCode.PARSE_ERROR),  # length under its header
        (header(1, 1) + bytes([2 << 1, 3, 0, 1]), ErrorCode.PARSE_ERROR),  # FLOOR-ID of 1 octet
        (header(1, 1) + bytes([5 << 1, 4, 9, 0]), ErrorCode.PARSE_ERROR),  # request status 9
        (header(1, 2) + bytes([12 << 1, 6]) + b"\xff\xfe\xfd\xfc" + b"\0\0", ErrorCode.PARSE_ERROR),  # not UTF-8
        (bytes([0x28]) + header(1, 1)[1:] + FLOOR_REQUEST[12:], ErrorCode.GENERIC_ERROR),  # F: a fragment
    ],
    ids=["short", "longer-than-sent", "more-than-said", "version-3", "primitive-99", "unknown-mandatory",
         "attribute-past-end", "attribute-length-1", "floor-id-1-octet", "request-status-9", "not-utf8", "fragment"],
)  # fmt: skip
def test_malformed_messages_are_refused_with_the_error_code_to_answer(data: bytes, code: ErrorCode) -> None:
    with pytest.raises(BfcpError) as refused:
        parse(data)
    assert refused.value.code is code, refused.value


def test_version_1_over_udp_is_refused_and_unknown_optional_attributes_are_skipped() -> None:
    with pytest.raises(BfcpError) as refused:
        parse(FLOOR_REQUEST, "udp")
    assert refused.value.code is ErrorCode.UNSUPPORTED_VERSION
    skipped = parse(header(1, 2) + bytes([60 << 1, 4, 0, 0]) + FLOOR_REQUEST[12:])
    assert [a.type for a in skipped.attributes] == [AttributeType.FLOOR_ID]


def test_nesting_and_attribute_counts_are_bounded() -> None:
    inner = bytes([14 << 1, 4, 0, 1])
    for _ in range(3):
        inner = bytes([14 << 1, 4 + len(inner), 0, 1]) + inner
    with pytest.raises(BfcpError, match="deep"):
        parse(header(4, len(inner) // 4) + inner)
    many = bytes([2 << 1, 4, 0, 1]) * (MAX_ATTRIBUTES + 1)
    with pytest.raises(BfcpError, match="too many"):
        parse(header(1, len(many) // 4) + many)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_are_read_or_refused_with_a_bfcp_error(data: bytes) -> None:
    for transport in ("tcp", "udp"):
        try:
            parse(data, transport)
        except BfcpError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_any_attribute_bytes_after_a_valid_header_are_read_or_refused(payload: bytes) -> None:
    payload += b"\0" * (-len(payload) % 4)
    try:
        message = parse(header(4, len(payload) // 4) + payload)
    except BfcpError:
        return
    parse(serialize(message))  # what was read can be written and read again
