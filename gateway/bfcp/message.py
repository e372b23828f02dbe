"""BFCP messages (RFC 8855, which obsoletes RFC 4582): bytes to `Message` and back, sans-IO.

A message is a 12-octet COMMON-HEADER and attributes:

     0                   1                   2                   3
    +-----+-+-+-----+---------------+-------------------------------+
    | Ver |R|F| Res |   Primitive   |        Payload Length         |
    +-----+-+-+-----+---------------+-------------------------------+
    |                         Conference ID                         |
    +-------------------------------+-------------------------------+
    |         Transaction ID        |            User ID            |
    +-------------------------------+-------------------------------+
    | Fragment Offset (F only)      |  Fragment Length (F only)     |

Version 1 is BFCP over TCP/TLS, version 2 over UDP (RFC 8855 5.1, where R marks a response and F a
fragment). Payload Length counts 4-octet words after the header. An attribute is

    | Type (7) |M| Length (8) | contents, padded to 4 octets |

with Length counting the two header octets and the contents but not the padding (5.2). Grouped
attributes (BENEFICIARY-INFORMATION, FLOOR-REQUEST-INFORMATION, REQUESTED-BY-INFORMATION,
FLOOR-REQUEST-STATUS, OVERALL-REQUEST-STATUS) start with a 16-bit id and hold attributes.

Parsing is linear in the message, bounded (MAX_MESSAGE octets, MAX_ATTRIBUTES attributes, nesting
depth 2) and raises only BfcpError, whose `code` is the RFC's Error code to answer with (4 Parse
Error, 5 Use TLS, 6 Unsupported Version, 7 Incorrect Message Length, 8 Generic Error, 9 Unknown
Mandatory Attribute). Fragments (F) are refused here with 8: a reassembly layer would sit above.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

HEADER = struct.Struct("!BBHIHH")
MAX_MESSAGE = 65_535  # octets (a UDP datagram's worth; RFC 8855 allows more over TCP, we take none)
MAX_ATTRIBUTES = 256
MAX_DEPTH = 2  # grouped attributes inside grouped attributes, at most this deep


class Primitive(enum.IntEnum):
    FLOOR_REQUEST = 1
    FLOOR_RELEASE = 2
    FLOOR_REQUEST_QUERY = 3
    FLOOR_REQUEST_STATUS = 4
    USER_QUERY = 5
    USER_STATUS = 6
    FLOOR_QUERY = 7
    FLOOR_STATUS = 8
    CHAIR_ACTION = 9
    CHAIR_ACTION_ACK = 10
    HELLO = 11
    HELLO_ACK = 12
    ERROR = 13
    FLOOR_REQUEST_STATUS_ACK = 14
    FLOOR_STATUS_ACK = 15
    GOODBYE = 16
    GOODBYE_ACK = 17


class AttributeType(enum.IntEnum):
    BENEFICIARY_ID = 1
    FLOOR_ID = 2
    FLOOR_REQUEST_ID = 3
    PRIORITY = 4
    REQUEST_STATUS = 5
    ERROR_CODE = 6
    ERROR_INFO = 7
    PARTICIPANT_PROVIDED_INFO = 8
    STATUS_INFO = 9
    SUPPORTED_ATTRIBUTES = 10
    SUPPORTED_PRIMITIVES = 11
    USER_DISPLAY_NAME = 12
    USER_URI = 13
    BENEFICIARY_INFORMATION = 14
    FLOOR_REQUEST_INFORMATION = 15
    REQUESTED_BY_INFORMATION = 16
    FLOOR_REQUEST_STATUS = 17
    OVERALL_REQUEST_STATUS = 18


class RequestStatus(enum.IntEnum):
    PENDING = 1
    ACCEPTED = 2
    GRANTED = 3
    DENIED = 4
    CANCELLED = 5
    RELEASED = 6
    REVOKED = 7


class ErrorCode(enum.IntEnum):
    CONFERENCE_DOES_NOT_EXIST = 1
    USER_DOES_NOT_EXIST = 2
    UNKNOWN_PRIMITIVE = 3
    UNKNOWN_MANDATORY_ATTRIBUTE = 4
    UNAUTHORIZED_OPERATION = 5
    INVALID_FLOOR_ID = 6
    FLOOR_REQUEST_ID_DOES_NOT_EXIST = 7
    MAX_FLOOR_REQUESTS_REACHED = 8
    USE_TLS = 9
    PARSE_ERROR = 10
    USE_DTLS = 11
    UNSUPPORTED_VERSION = 12
    INCORRECT_MESSAGE_LENGTH = 13
    GENERIC_ERROR = 14


class BfcpError(ValueError):
    """A message we cannot take; `code` is the Error to answer it with (RFC 8855 13.8)."""

    def __init__(self, reason: str, code: ErrorCode = ErrorCode.PARSE_ERROR) -> None:
        super().__init__(reason)
        self.code = code


_U16 = {AttributeType.BENEFICIARY_ID, AttributeType.FLOOR_ID, AttributeType.FLOOR_REQUEST_ID}
_TEXT = {
    AttributeType.ERROR_INFO,
    AttributeType.PARTICIPANT_PROVIDED_INFO,
    AttributeType.STATUS_INFO,
    AttributeType.USER_DISPLAY_NAME,
    AttributeType.USER_URI,
}
_GROUPED = {
    AttributeType.BENEFICIARY_INFORMATION,
    AttributeType.FLOOR_REQUEST_INFORMATION,
    AttributeType.REQUESTED_BY_INFORMATION,
    AttributeType.FLOOR_REQUEST_STATUS,
    AttributeType.OVERALL_REQUEST_STATUS,
}


@dataclass
class Attribute:
    """One attribute. `value` by type: an int (the 16-bit ids; PRIORITY 0-4), a str (the text
    attributes), (status, queue position) for REQUEST-STATUS, (code, details bytes) for ERROR-CODE,
    a list of ints for SUPPORTED-ATTRIBUTES/-PRIMITIVES, and for grouped attributes `value` is
    their id and `children` their attributes."""

    type: AttributeType
    value: object = None
    children: list[Attribute] = field(default_factory=list)
    mandatory: bool = False

    def find(self, wanted: AttributeType) -> Attribute | None:
        return next((a for a in self.children if a.type is wanted), None)


@dataclass
class Message:
    primitive: Primitive
    conference_id: int
    transaction_id: int
    user_id: int
    attributes: list[Attribute] = field(default_factory=list)
    version: int = 1  # 1 over TCP/TLS, 2 over UDP
    response: bool = False  # R (version 2 only)

    def find(self, wanted: AttributeType) -> Attribute | None:
        return next((a for a in self.attributes if a.type is wanted), None)

    def all(self, wanted: AttributeType) -> list[Attribute]:
        return [a for a in self.attributes if a.type is wanted]


# -- bytes to messages ----------------------------------------------------------------------------


def message_length(data: bytes) -> int | None:
    """The whole length of the message `data` starts with (header included), from its header;
    None when fewer than 4 octets are there yet (TCP framing reads this much first)."""
    if len(data) < 4:
        return None
    words = int.from_bytes(data[2:4], "big")
    return 12 + 4 * words + (4 if data[0] & 0x08 else 0)


def parse(data: bytes, transport: str = "tcp") -> Message:
    """One whole message. Raises BfcpError (never anything else) for what we cannot take."""
    if len(data) > MAX_MESSAGE:
        raise BfcpError(f"message of {len(data)} octets is too long", ErrorCode.INCORRECT_MESSAGE_LENGTH)
    if len(data) < HEADER.size:
        raise BfcpError("shorter than the common header", ErrorCode.INCORRECT_MESSAGE_LENGTH)
    first, primitive_number, words, conference_id, transaction_id, user_id = HEADER.unpack_from(data)
    version, response, fragment = first >> 5, bool(first & 0x10), bool(first & 0x08)
    if version not in (1, 2):
        raise BfcpError(f"version {version}", ErrorCode.UNSUPPORTED_VERSION)
    if transport == "udp" and version != 2:
        raise BfcpError("BFCP over UDP is version 2", ErrorCode.UNSUPPORTED_VERSION)
    if fragment:
        raise BfcpError("fragmented messages are not taken", ErrorCode.GENERIC_ERROR)
    if HEADER.size + 4 * words != len(data):
        raise BfcpError(
            f"payload length says {4 * words} octets, {len(data) - HEADER.size} came", ErrorCode.INCORRECT_MESSAGE_LENGTH
        )
    try:
        primitive = Primitive(primitive_number)
    except ValueError:
        raise BfcpError(f"unknown primitive {primitive_number}", ErrorCode.UNKNOWN_PRIMITIVE) from None
    counter = [0]
    attributes = _attributes(memoryview(data)[HEADER.size :], 0, counter)
    return Message(primitive, conference_id, transaction_id, user_id, attributes, version, response and version == 2)


def _attributes(data: memoryview, depth: int, counter: list[int]) -> list[Attribute]:
    out = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 2:
            raise BfcpError("an attribute header is cut off")
        counter[0] += 1
        if counter[0] > MAX_ATTRIBUTES:
            raise BfcpError("too many attributes")
        type_number, mandatory, length = data[offset] >> 1, bool(data[offset] & 1), data[offset + 1]
        if length < 2 or offset + length > len(data):
            raise BfcpError(f"attribute {type_number} has length {length}")
        contents = data[offset + 2 : offset + length]
        padded = (length + 3) & ~3
        if offset + padded > len(data):
            raise BfcpError(f"attribute {type_number} lacks its padding")
        offset += padded
        try:
            kind = AttributeType(type_number)
        except ValueError:
            if mandatory:
                raise BfcpError(f"unknown mandatory attribute {type_number}", ErrorCode.UNKNOWN_MANDATORY_ATTRIBUTE) from None
            continue  # (an unknown attribute the sender marked optional is skipped)
        out.append(_attribute(kind, mandatory, contents, depth, counter))
    return out


def _attribute(kind: AttributeType, mandatory: bool, contents: memoryview, depth: int, counter: list[int]) -> Attribute:
    size = len(contents)
    if kind in _U16 or kind is AttributeType.PRIORITY:
        if size != 2:
            raise BfcpError(f"{kind.name} has {size} octets, not 2")
        value = int.from_bytes(contents, "big")
        return Attribute(kind, value >> 13 if kind is AttributeType.PRIORITY else value, mandatory=mandatory)
    if kind is AttributeType.REQUEST_STATUS:
        if size != 2:
            raise BfcpError(f"REQUEST-STATUS has {size} octets, not 2")
        try:
            status = RequestStatus(contents[0])
        except ValueError:
            raise BfcpError(f"unknown request status {contents[0]}") from None
        return Attribute(kind, (status, contents[1]), mandatory=mandatory)
    if kind is AttributeType.ERROR_CODE:
        if size < 1:
            raise BfcpError("ERROR-CODE without its code")
        return Attribute(kind, (contents[0], bytes(contents[1:])), mandatory=mandatory)
    if kind in _TEXT:
        try:
            return Attribute(kind, bytes(contents).decode("utf-8"), mandatory=mandatory)
        except UnicodeDecodeError:
            raise BfcpError(f"{kind.name} is not UTF-8") from None
    if kind in (AttributeType.SUPPORTED_ATTRIBUTES, AttributeType.SUPPORTED_PRIMITIVES):
        shift = 1 if kind is AttributeType.SUPPORTED_ATTRIBUTES else 0  # (attribute types: 7 bits and R)
        return Attribute(kind, [octet >> shift for octet in contents], mandatory=mandatory)
    # grouped
    if depth >= MAX_DEPTH:
        raise BfcpError(f"{kind.name} nested too deep")
    if size < 2:
        raise BfcpError(f"{kind.name} without its id")
    children = _attributes(contents[2:], depth + 1, counter)
    return Attribute(kind, int.from_bytes(contents[:2], "big"), children, mandatory)


# -- messages to bytes ----------------------------------------------------------------------------


def serialize(message: Message) -> bytes:
    payload = b"".join(_encode(a) for a in message.attributes)
    if HEADER.size + len(payload) > MAX_MESSAGE:
        raise ValueError("message too long")
    first = (message.version << 5) | (0x10 if message.response and message.version == 2 else 0)
    header = HEADER.pack(
        first, int(message.primitive), len(payload) // 4, message.conference_id, message.transaction_id, message.user_id
    )
    return header + payload


def _encode(attribute: Attribute) -> bytes:
    kind, value = attribute.type, attribute.value
    contents: bytes
    if kind in _U16:
        contents = _int(value).to_bytes(2, "big")
    elif kind is AttributeType.PRIORITY:
        contents = (_int(value) << 13).to_bytes(2, "big")
    elif kind is AttributeType.REQUEST_STATUS:
        assert isinstance(value, tuple)
        contents = bytes((_int(value[0]), _int(value[1])))
    elif kind is AttributeType.ERROR_CODE:
        assert isinstance(value, tuple) and isinstance(value[1], bytes)
        contents = bytes((_int(value[0]),)) + value[1]
    elif kind in _TEXT:
        contents = str(value).encode("utf-8")
    elif kind in (AttributeType.SUPPORTED_ATTRIBUTES, AttributeType.SUPPORTED_PRIMITIVES):
        assert isinstance(value, list)
        shift = 1 if kind is AttributeType.SUPPORTED_ATTRIBUTES else 0
        contents = bytes(_int(item) << shift for item in value)
    else:
        contents = _int(value).to_bytes(2, "big") + b"".join(_encode(c) for c in attribute.children)
    length = 2 + len(contents)
    if length > 255:
        raise ValueError(f"{kind.name} is {length} octets, more than an attribute holds")
    padding = b"\0" * (-length % 4)
    return bytes(((int(kind) << 1) | int(attribute.mandatory), length)) + contents + padding


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"an int is needed here, not {type(value).__name__}")
    return value
