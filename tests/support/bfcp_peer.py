"""BFCP peers for tests: a floor participant (`BfcpClient`, a room system sharing content) and a
floor control server (`BfcpServerPeer`, an MCU that insists on being the server), over TCP (BFCP
version 1, RFC 4582) or UDP (version 2, RFC 8855), and Wireshark's BFCP dissector (tshark) as an
independent reader of what went over the wire.

Written from the RFCs' message layouts with `struct`, independently of the gateway's own BFCP
module (which it must never import): a shared misreading of the RFC would otherwise pass unseen.

A message is a 12-octet COMMON-HEADER and attributes (RFC 8855 5.1, 5.2):

     0                   1                   2                   3
    +-----+-+-+-----+---------------+-------------------------------+
    | Ver |R|F| Res |   Primitive   |  Payload Length (4-octet units after the header)
    +-----+-+-+-----+---------------+-------------------------------+
    |                         Conference ID                         |
    +-------------------------------+-------------------------------+
    |         Transaction ID        |            User ID            |
    +-------------------------------+-------------------------------+

    attribute: | Type (7) |M| Length (8) | contents | padding to 4 octets |

Length counts the two header octets and the contents, not the padding. The 16-bit attributes
(BENEFICIARY-ID, FLOOR-ID, FLOOR-REQUEST-ID, PRIORITY, REQUEST-STATUS) have Length 4 and no
padding; text and octet lists have Length 2 + n, padded; a grouped attribute is a 16-bit id and
attributes, its Length covering the included attributes with their padding. F (fragments) is never
sent here and refused when read.

Transactions (RFC 8855 8): a request's response has its Transaction ID. Over UDP, R marks a
response; requests are retransmitted until answered (every `retransmit_interval` s, 0.5 s by
default, at most `retransmissions` times, 4: a fixed interval, simpler than RFC 8855 6.2's timer
rules and short enough for tests); the server's own FloorRequestStatus / FloorStatus carry a
non-zero Transaction ID, are retransmitted the same way, and the client answers each with
FloorRequestStatusAck / FloorStatusAck (R set: they respond to the server's transaction). Over TCP the server's own messages have Transaction ID 0 and nothing acknowledges
them; R is not set (RFC 4582 reserves the bit), responses are matched by Transaction ID alone.

Each peer records every raw message it sent and received (`sent`, `received`, and both in order in
`wire`, ready for `tcp_pcap`) and what it found wrong in the other side's behaviour (`problems`:
undecodable messages, a missing R bit, a response whose ids differ from the request's, an
exhausted retransmission): a test against the gateway asserts it empty."""

from __future__ import annotations

import enum
import json
import os
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Self, TypedDict, cast

from tests.support.pcap import WARNING, tcp_pcap

# -- numbers of RFC 8855 ------------------------------------------------------------------------------


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


PENDING, ACCEPTED, GRANTED, DENIED, CANCELLED, RELEASED, REVOKED = (int(s) for s in RequestStatus)

_HEADER = struct.Struct("!BBHIHH")
HEADER_SIZE = _HEADER.size  # 12
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
# what only ever answers a request: over UDP, one of these without R is the peer's mistake
_RESPONSE_ONLY = {
    Primitive.USER_STATUS,
    Primitive.CHAIR_ACTION_ACK,
    Primitive.HELLO_ACK,
    Primitive.ERROR,
    Primitive.FLOOR_REQUEST_STATUS_ACK,
    Primitive.FLOOR_STATUS_ACK,
    Primitive.GOODBYE_ACK,
}
_RESPONSES = _RESPONSE_ONLY | {Primitive.FLOOR_REQUEST_STATUS, Primitive.FLOOR_STATUS}


def _name(primitive: int) -> str:
    try:
        return "".join(word.capitalize() for word in Primitive(primitive).name.split("_"))
    except ValueError:
        return f"primitive {primitive}"


# -- attributes ---------------------------------------------------------------------------------------


class Attribute(NamedTuple):
    """One attribute: `type` (an AttributeType, or the bare number of an unknown one), the M bit, and
    `value` by type: int (BENEFICIARY-ID, FLOOR-ID, FLOOR-REQUEST-ID; PRIORITY 0-4), str (the text
    attributes), (status, queue position) for REQUEST-STATUS, (code, details) for ERROR-CODE, a tuple
    of ints for SUPPORTED-ATTRIBUTES / -PRIMITIVES, (id, (children ...)) for the grouped attributes
    and bytes for a type this module does not know."""

    type: int
    mandatory: bool
    value: object

    @property
    def id(self) -> int:
        """A grouped attribute's id (its header's 16 bits)."""
        assert self.type in _GROUPED, f"{self.type} is not a grouped attribute"
        return cast(tuple[int, tuple[Attribute, ...]], self.value)[0]

    @property
    def children(self) -> tuple[Attribute, ...]:
        """A grouped attribute's attributes (empty for the others)."""
        if self.type not in _GROUPED:
            return ()
        return tuple(cast(tuple[int, tuple[Attribute, ...]], self.value)[1])

    def find(self, wanted: int) -> Attribute | None:
        """A grouped attribute's first child of this type."""
        return next((child for child in self.children if child.type == wanted), None)


def beneficiary_id(user_id: int, mandatory: bool = False) -> Attribute:
    return Attribute(AttributeType.BENEFICIARY_ID, mandatory, user_id)


def floor_id(floor: int, mandatory: bool = True) -> Attribute:
    return Attribute(AttributeType.FLOOR_ID, mandatory, floor)


def floor_request_id(request_id: int, mandatory: bool = True) -> Attribute:
    return Attribute(AttributeType.FLOOR_REQUEST_ID, mandatory, request_id)


def priority(level: int, mandatory: bool = False) -> Attribute:
    """PRIORITY: 0 lowest ... 4 highest (3 bits, then 13 reserved)."""
    return Attribute(AttributeType.PRIORITY, mandatory, level)


def request_status_attr(status: int, queue_position: int = 0, mandatory: bool = False) -> Attribute:
    """REQUEST-STATUS: one octet of status (RequestStatus), one of queue position."""
    return Attribute(AttributeType.REQUEST_STATUS, mandatory, (status, queue_position))


def error_code(code: int, details: bytes = b"", mandatory: bool = True) -> Attribute:
    """ERROR-CODE: one octet, then error-specific details (for Unknown Mandatory Attribute: one octet
    per attribute type, type << 1)."""
    return Attribute(AttributeType.ERROR_CODE, mandatory, (code, bytes(details)))


def error_info(text: str, mandatory: bool = False) -> Attribute:
    return Attribute(AttributeType.ERROR_INFO, mandatory, text)


def participant_provided_info(text: str, mandatory: bool = False) -> Attribute:
    return Attribute(AttributeType.PARTICIPANT_PROVIDED_INFO, mandatory, text)


def status_info(text: str, mandatory: bool = False) -> Attribute:
    return Attribute(AttributeType.STATUS_INFO, mandatory, text)


def user_display_name(text: str, mandatory: bool = False) -> Attribute:
    return Attribute(AttributeType.USER_DISPLAY_NAME, mandatory, text)


def user_uri(text: str, mandatory: bool = False) -> Attribute:
    return Attribute(AttributeType.USER_URI, mandatory, text)


def supported_attributes(types: Iterable[int], mandatory: bool = False) -> Attribute:
    return Attribute(AttributeType.SUPPORTED_ATTRIBUTES, mandatory, tuple(int(t) for t in types))


def supported_primitives(primitives: Iterable[int], mandatory: bool = False) -> Attribute:
    return Attribute(AttributeType.SUPPORTED_PRIMITIVES, mandatory, tuple(int(p) for p in primitives))


def _grouped(kind: AttributeType, ident: int, children: Sequence[Attribute], mandatory: bool) -> Attribute:
    return Attribute(kind, mandatory, (ident, tuple(children)))


def beneficiary_information(user_id: int, *children: Attribute, mandatory: bool = False) -> Attribute:
    return _grouped(AttributeType.BENEFICIARY_INFORMATION, user_id, children, mandatory)


def floor_request_information(request_id: int, *children: Attribute, mandatory: bool = False) -> Attribute:
    return _grouped(AttributeType.FLOOR_REQUEST_INFORMATION, request_id, children, mandatory)


def requested_by_information(user_id: int, *children: Attribute, mandatory: bool = False) -> Attribute:
    return _grouped(AttributeType.REQUESTED_BY_INFORMATION, user_id, children, mandatory)


def floor_request_status(floor: int, *children: Attribute, mandatory: bool = False) -> Attribute:
    return _grouped(AttributeType.FLOOR_REQUEST_STATUS, floor, children, mandatory)


def overall_request_status(request_id: int, *children: Attribute, mandatory: bool = False) -> Attribute:
    return _grouped(AttributeType.OVERALL_REQUEST_STATUS, request_id, children, mandatory)


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def encode_attribute(attribute: Attribute) -> bytes:
    """One attribute with its padding."""
    kind, value = int(attribute.type), attribute.value
    if not 0 < kind < 128:
        raise ValueError(f"attribute type {kind} does not fit 7 bits")
    if kind in _U16:
        body = struct.pack("!H", cast(int, value))
    elif kind == AttributeType.PRIORITY:
        body = struct.pack("!H", (cast(int, value) & 0x7) << 13)
    elif kind == AttributeType.REQUEST_STATUS:
        status, position = cast(tuple[int, int], value)
        body = struct.pack("!BB", int(status), int(position))
    elif kind == AttributeType.ERROR_CODE:
        code, details = cast(tuple[int, bytes], value)
        body = bytes([int(code)]) + bytes(details)
    elif kind in _TEXT:
        body = str(value).encode("utf-8")
    elif kind == AttributeType.SUPPORTED_ATTRIBUTES:
        body = bytes((int(t) & 0x7F) << 1 for t in cast(Iterable[int], value))
    elif kind == AttributeType.SUPPORTED_PRIMITIVES:
        body = bytes(int(p) for p in cast(Iterable[int], value))
    elif kind in _GROUPED:
        ident, children = cast(tuple[int, Iterable[Attribute]], value)
        body = struct.pack("!H", int(ident)) + b"".join(encode_attribute(child) for child in children)
    else:
        body = bytes(cast(bytes, value))
    length = 2 + len(body)
    if length > 255:
        raise ValueError(f"attribute {kind} of {length} octets does not fit its 8-bit Length")
    return _padded(bytes([kind << 1 | bool(attribute.mandatory), length]) + body)


def _decode_attributes(data: bytes, at: int, end: int, depth: int = 0) -> list[Attribute]:
    found: list[Attribute] = []
    while at < end:
        if end - at < 2:
            raise ValueError(f"{end - at} octets left at {at}: too few for an attribute header")
        first, length = data[at], data[at + 1]
        kind, mandatory = first >> 1, bool(first & 1)
        if length < 2:
            raise ValueError(f"attribute {kind} at {at}: Length {length}")
        stop = at + length
        padded = at + length + (-length % 4)
        if padded > end:
            raise ValueError(f"attribute {kind} at {at}: Length {length} runs past its container (ends at {end})")
        body = data[at + 2 : stop]
        value: object
        if kind in _U16 or kind in (AttributeType.PRIORITY, AttributeType.REQUEST_STATUS):
            if length != 4:
                raise ValueError(f"attribute {kind} at {at}: Length {length}, want 4")
            if kind == AttributeType.PRIORITY:
                value = body[0] >> 5
            elif kind == AttributeType.REQUEST_STATUS:
                value = (body[0], body[1])
            else:
                value = int.from_bytes(body, "big")
        elif kind == AttributeType.ERROR_CODE:
            if length < 3:
                raise ValueError(f"ERROR-CODE at {at}: Length {length}")
            value = (body[0], bytes(body[1:]))
        elif kind in _TEXT:
            value = body.decode("utf-8")
        elif kind == AttributeType.SUPPORTED_ATTRIBUTES:
            value = tuple(octet >> 1 for octet in body)
        elif kind == AttributeType.SUPPORTED_PRIMITIVES:
            value = tuple(body)
        elif kind in _GROUPED:
            if length < 4 or length % 4:
                raise ValueError(f"grouped attribute {kind} at {at}: Length {length} (4 + padded attributes)")
            if depth >= 3:
                raise ValueError(f"grouped attributes nested deeper than 3 at {at}")
            value = (int.from_bytes(body[:2], "big"), tuple(_decode_attributes(data, at + 4, stop, depth + 1)))
        else:
            value = bytes(body)
        if any(data[stop:padded]):
            raise ValueError(f"attribute {kind} at {at}: padding is not zero")
        found.append(Attribute(AttributeType(kind) if kind in AttributeType._value2member_map_ else kind, mandatory, value))
        at = padded
    return found


# -- messages -------------------------------------------------------------------------------------------


@dataclass
class Decoded:
    """One message as read: the header's fields and the attributes (in order, grouped ones nested)."""

    version: int
    response: bool
    primitive: int
    conference_id: int
    transaction_id: int
    user_id: int
    attributes: list[Attribute] = field(default_factory=list)
    raw: bytes = b""

    @property
    def name(self) -> str:
        return _name(self.primitive)

    def find(self, wanted: int) -> Attribute | None:
        """The first top-level attribute of this type."""
        return next((a for a in self.attributes if a.type == wanted), None)

    def find_all(self, wanted: int) -> list[Attribute]:
        return [a for a in self.attributes if a.type == wanted]

    def error(self) -> tuple[int, str | None] | None:
        """An Error message's (code, ERROR-INFO text or None); None for other messages."""
        if self.primitive != Primitive.ERROR:
            return None
        code = self.find(AttributeType.ERROR_CODE)
        info = self.find(AttributeType.ERROR_INFO)
        return (cast(tuple[int, bytes], code.value)[0] if code else 0), (str(info.value) if info else None)

    def describe(self) -> str:
        flags = "R " if self.response else ""
        return (
            f"{self.name} v{self.version} {flags}conf={self.conference_id} tid={self.transaction_id} "
            f"user={self.user_id} {_describe(self.attributes)}"
        )


def _describe(attributes: Iterable[Attribute]) -> str:
    parts = []
    for a in attributes:
        name = a.type.name if isinstance(a.type, AttributeType) else str(a.type)
        mark = "!" if a.mandatory else ""
        if a.type in _GROUPED:
            parts.append(f"{name}{mark}({a.id}: {_describe(a.children)})")
        else:
            parts.append(f"{name}{mark}={a.value!r}")
    return "[" + ", ".join(parts) + "]"


def encode(
    primitive: int,
    conference_id: int,
    transaction_id: int,
    user_id: int,
    attributes: Iterable[Attribute] = (),
    version: int = 1,
    response: bool = False,
) -> bytes:
    """A whole message (never fragmented: F is 0)."""
    payload = b"".join(encode_attribute(a) for a in attributes)
    assert len(payload) % 4 == 0
    first = (version & 0x7) << 5 | (0x10 if response else 0)
    return _HEADER.pack(first, int(primitive), len(payload) // 4, conference_id, transaction_id, user_id) + payload


def message_length(header: bytes) -> int:
    """The whole message's length in octets from its first 4 octets (TCP framing)."""
    return HEADER_SIZE + 4 * int.from_bytes(header[2:4], "big")


def decode(data: bytes) -> Decoded:
    """One whole message; ValueError for anything that is not one exactly (fragments included)."""
    if len(data) < HEADER_SIZE:
        raise ValueError(f"{len(data)} octets: shorter than the common header")
    first, primitive, words, conference, transaction, user = _HEADER.unpack_from(data)
    version = first >> 5
    if version not in (1, 2):
        raise ValueError(f"version {version}")
    if first & 0x08:
        raise ValueError("F (a fragment): these tools never send fragments and read none")
    if HEADER_SIZE + 4 * words != len(data):
        raise ValueError(f"Payload Length {words} words, but {len(data) - HEADER_SIZE} octets follow the header")
    attributes = _decode_attributes(data, HEADER_SIZE, len(data))
    return Decoded(version, bool(first & 0x10), primitive, conference, transaction, user, attributes, bytes(data))


def request_status(decoded: Decoded) -> tuple[int, int] | None:
    """(floor request id, status) of the (first) FLOOR-REQUEST-INFORMATION of a FloorRequestStatus
    or FloorStatus: its id, and OVERALL-REQUEST-STATUS > REQUEST-STATUS, or, without that, the first
    FLOOR-REQUEST-STATUS > REQUEST-STATUS. None if the message has none."""
    information = decoded.find(AttributeType.FLOOR_REQUEST_INFORMATION)
    if information is None:
        return None
    for holder in (information.find(AttributeType.OVERALL_REQUEST_STATUS), information.find(AttributeType.FLOOR_REQUEST_STATUS)):
        status = holder.find(AttributeType.REQUEST_STATUS) if holder else None
        if status is not None:
            return information.id, cast(tuple[int, int], status.value)[0]
    return None


def status_text(decoded: Decoded) -> str | None:
    """The STATUS-INFO text of a FloorRequestStatus (OVERALL-REQUEST-STATUS's, else a
    FLOOR-REQUEST-STATUS's), None if it has none."""
    information = decoded.find(AttributeType.FLOOR_REQUEST_INFORMATION)
    if information is None:
        return None
    for holder in (information.find(AttributeType.OVERALL_REQUEST_STATUS), information.find(AttributeType.FLOOR_REQUEST_STATUS)):
        text = holder.find(AttributeType.STATUS_INFO) if holder else None
        if text is not None:
            return str(text.value)
    return None


def floor_request_info(request_id: int, floors: Iterable[int], status: int, text: str | None = None) -> Attribute:
    """The FLOOR-REQUEST-INFORMATION a floor control server sends about one request: the overall
    status (with STATUS-INFO text if given) and one FLOOR-REQUEST-STATUS per floor."""
    overall = [request_status_attr(status)] + ([status_info(text)] if text else [])
    return floor_request_information(
        request_id,
        overall_request_status(request_id, *overall),
        *(floor_request_status(floor, request_status_attr(status)) for floor in floors),
    )


# -- the peers ------------------------------------------------------------------------------------------


@dataclass
class _Outstanding:
    """A message of ours waiting for its response (a request, or the server's own message over UDP
    waiting for its acknowledgement)."""

    raw: bytes
    primitive: int
    conference_id: int
    user_id: int
    address: tuple[str, int] | None
    due: float
    retransmitted: int = 0


class _Endpoint:
    """What client and server share: one socket (a TCP connection, perhaps still to be accepted, or a
    UDP socket), a reader thread that frames, decodes and records every message, answers what needs
    answering (`_handle`) and retransmits over UDP, and request/response matching."""

    role = "peer"

    def __init__(
        self,
        transport: str,
        version: int,
        sock: socket.socket | None,
        listener: socket.socket | None = None,
        peer: tuple[str, int] | None = None,
        retransmit_interval: float = 0.5,
        retransmissions: int = 4,
    ) -> None:
        assert transport in ("tcp", "udp"), transport
        self.transport = transport
        self.version = version
        self.peer = peer
        self.retransmit_interval = retransmit_interval
        self.retransmissions = retransmissions
        self.sent: list[bytes] = []  # every raw message sent (retransmissions included), in order
        self.received: list[bytes] = []  # every raw message received, in order
        self.wire: list[tuple[bool, bytes]] = []  # both, in order: (sent by the client side, raw)
        self.messages: list[Decoded] = []  # the received ones that decoded
        self.problems: list[str] = []
        self.retransmitted = 0  # our messages sent again (UDP)
        self.lost: list[bytes] = []  # datagrams dropped on arrival by lose()
        self._lose = 0
        self._sock = sock
        self._listener = listener
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._outstanding: dict[int, _Outstanding] = {}
        self._responses: dict[int, Decoded] = {}
        self._failed: dict[int, str] = {}
        self._returned: set[int] = set()  # indexes into messages that wait_for gave out
        self._connected = threading.Event()
        self._closed = threading.Event()
        self._peer_gone = False
        self._next_tid = 0
        if sock is not None:
            self._connected.set()
        bound = listener or sock
        assert bound is not None
        self.port = int(bound.getsockname()[1])
        self._thread = threading.Thread(target=self._run, name=f"bfcp-{self.role}-{self.port}", daemon=True)
        self._thread.start()

    # -- the reader thread

    def _run(self) -> None:
        buffer = b""
        try:
            if self._listener is not None and self._sock is None:
                self._listener.settimeout(0.05)
                while not self._closed.is_set():
                    try:
                        conn, address = self._listener.accept()
                    except TimeoutError:
                        continue
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self._sock, self.peer = conn, (address[0], int(address[1]))
                    self._connected.set()
                    break
            sock = self._sock
            if sock is None:
                return
            sock.settimeout(0.05)
            while not self._closed.is_set():
                self._tick()
                try:
                    if self.transport == "udp":
                        data, address = sock.recvfrom(65_535)
                        with self._cond:
                            losing, self._lose = self._lose > 0, max(0, self._lose - 1)
                            if losing:
                                self.lost.append(data)
                        if not losing:
                            self._deliver(data, (address[0], int(address[1])))
                        continue
                    data = sock.recv(65_536)
                except (TimeoutError, ConnectionRefusedError):
                    continue  # (over UDP, an ICMP port unreachable from an earlier datagram)
                except OSError:
                    break
                if not data:
                    break
                buffer += data
                while len(buffer) >= 4 and len(buffer) >= message_length(buffer):
                    whole = message_length(buffer)
                    self._deliver(buffer[:whole], self.peer)
                    buffer = buffer[whole:]
        finally:
            with self._cond:
                self._peer_gone = True
                if buffer and not self._closed.is_set():
                    self.problems.append(f"the connection ended inside a message ({len(buffer)} octets: {buffer[:24].hex()})")
                self._cond.notify_all()

    def _tick(self) -> None:
        """Retransmits what is due (UDP), gives up after `retransmissions`."""
        if self.transport != "udp":
            return
        now = time.monotonic()
        again: list[_Outstanding] = []
        with self._cond:
            for tid, pending in list(self._outstanding.items()):
                if pending.due > now:
                    continue
                if pending.retransmitted >= self.retransmissions:
                    del self._outstanding[tid]
                    why = f"no answer to our {_name(pending.primitive)} (transaction {tid}) after {pending.retransmitted} retransmissions"
                    self._failed[tid] = why
                    self.problems.append(why)
                    self._cond.notify_all()
                    continue
                pending.retransmitted += 1
                pending.due = now + self.retransmit_interval
                again.append(pending)
        for pending in again:
            self.retransmitted += 1
            try:
                self._send(pending.raw, pending.address)
            except OSError as exc:
                self.problems.append(f"retransmitting {_name(pending.primitive)} failed: {exc!r}")

    def _deliver(self, raw: bytes, address: tuple[str, int] | None) -> None:
        try:
            message = decode(raw)
        except ValueError as exc:
            with self._cond:
                self.received.append(raw)
                self.wire.append((self.role == "server", raw))
                self.problems.append(f"undecodable message {raw[:48].hex()}: {exc}")
                self._cond.notify_all()
            return
        with self._cond:
            self.received.append(raw)
            self.wire.append((self.role == "server", raw))
            self.messages.append(message)
            answered = self._take_response(message)
            self._cond.notify_all()
        if answered:
            return
        try:
            self._handle(message, address)
        except Exception as exc:  # (a test tool: what broke is a finding, the thread goes on)
            with self._cond:
                self.problems.append(f"handling {message.describe()} failed: {exc!r}")
                self._cond.notify_all()

    def _take_response(self, message: Decoded) -> bool:
        """(with the lock) Whether `message` answers one of ours; records it then."""
        tid = message.transaction_id
        if tid == 0:
            return False
        pending = self._outstanding.get(tid)
        if pending is None:
            if message.response and tid in self._responses:
                return True  # the answer again, to a retransmission of ours
            return False
        if self.transport == "udp" and not message.response:
            if message.primitive not in _RESPONSE_ONLY:
                return False  # the other side's own message (its transaction ids are its own)
            self.problems.append(f"{message.name} (transaction {tid}) over UDP without the R bit")
        elif self.transport == "tcp" and message.primitive not in _RESPONSES:
            return False
        if (message.conference_id, message.user_id) != (pending.conference_id, pending.user_id):
            self.problems.append(
                f"{message.name} answers {_name(pending.primitive)} (transaction {tid}) with conference "
                f"{message.conference_id} user {message.user_id}, not {pending.conference_id} / {pending.user_id}"
            )
        del self._outstanding[tid]
        self._responses[tid] = message
        return True

    def _handle(self, message: Decoded, address: tuple[str, int] | None) -> None:
        raise NotImplementedError

    # -- sending

    def wait_connected(self, timeout: float = 10) -> None:
        """(TCP, the side that accepts) Returns once the other side has connected."""
        if not self._connected.wait(timeout):
            raise AssertionError(f"BFCP {self.role}: nobody connected to port {self.port} in {timeout} s")

    def _send(self, raw: bytes, address: tuple[str, int] | None = None) -> None:
        """Records, then sends (recorded first: an answer can come back before sendall returns)."""
        self.wait_connected()
        sock = self._sock
        assert sock is not None
        target = address or self.peer
        if self.transport == "udp" and target is None:
            raise AssertionError(f"BFCP {self.role} over UDP: no peer address to send to yet")
        with self._send_lock:
            with self._cond:
                self.sent.append(raw)
                self.wire.append((self.role == "client", raw))
            if target is None or self.transport == "tcp":
                sock.sendall(raw)
            else:
                sock.sendto(raw, target)

    def lose(self, count: int = 1) -> None:
        """(UDP) Drops the next `count` datagrams that arrive, as a lossy network would (kept in
        `lost`, not in `received`): the other side's retransmission must make up for them."""
        assert self.transport == "udp", "only datagrams get lost"
        with self._cond:
            self._lose += count

    def send_raw(self, data: bytes, address: tuple[str, int] | None = None) -> None:
        """Sends these octets as they are (anything: a test of how the other side copes)."""
        self._send(bytes(data), address)

    def _new_tid(self) -> int:
        with self._cond:
            self._next_tid = self._next_tid % 0xFFFF + 1  # 1 ... 65535, never 0
            return self._next_tid

    def _transact(
        self, primitive: int, attributes: Iterable[Attribute], conference_id: int, user_id: int, timeout: float
    ) -> Decoded:
        """Sends a request (a new transaction id) and waits for its response (retransmitting over UDP)."""
        if self.transport == "udp" and self.peer is None:
            raise AssertionError(f"BFCP {self.role} over UDP: no peer address to send {_name(primitive)} to yet")
        tid = self._new_tid()
        raw = encode(primitive, conference_id, tid, user_id, list(attributes), self.version)
        due = time.monotonic() + self.retransmit_interval if self.transport == "udp" else float("inf")
        with self._cond:
            self._outstanding[tid] = _Outstanding(raw, primitive, conference_id, user_id, self.peer, due)
        self._send(raw)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if tid in self._responses:
                    return self._responses[tid]
                if tid in self._failed:
                    raise AssertionError(f"BFCP {self.role}: {self._failed[tid]}; received: {self._history()}")
                left = deadline - time.monotonic()
                if left <= 0 or (self._peer_gone and self.transport == "tcp"):
                    self._outstanding.pop(tid, None)
                    why = "the connection closed" if self._peer_gone and left > 0 else f"nothing in {timeout} s"
                    raise AssertionError(
                        f"BFCP {self.role}: no answer to {_name(primitive)} (transaction {tid}): {why}; received: {self._history()}"
                    )
                self._cond.wait(min(left, 0.5))

    def request(
        self, primitive: int, attributes: Iterable[Attribute] = (), timeout: float = 5, expect: int | None = None
    ) -> Decoded:
        """Sends any request as this side's conference and user and returns the response (with
        `expect`, asserts it is of that primitive)."""
        conference_id, user_id = self._ids()
        answer = self._transact(primitive, attributes, conference_id, user_id, timeout)
        if expect is not None and answer.primitive != expect:
            raise AssertionError(f"BFCP {self.role}: {_name(primitive)} was answered with {answer.describe()}, not {_name(expect)}")
        return answer

    def _ids(self) -> tuple[int, int]:
        raise NotImplementedError

    def _answer(self, to: Decoded, primitive: int, attributes: Iterable[Attribute], address: tuple[str, int] | None) -> bytes:
        """A response to `to` (its conference, transaction and user; R set over version 2)."""
        raw = encode(primitive, to.conference_id, to.transaction_id, to.user_id, list(attributes), self.version, response=self.version == 2)
        self._send(raw, address)
        return raw

    # -- what came

    def _history(self) -> str:
        return "; ".join(m.describe() for m in self.messages[-12:]) or "nothing"

    def wait_for(
        self, primitive: int, timeout: float = 10, where: Callable[[Decoded], bool] | None = None
    ) -> Decoded:
        """The first received message of this primitive (and matching `where`) that no earlier
        wait_for returned: successive calls give successive messages."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index, message in enumerate(self.messages):
                    if index not in self._returned and message.primitive == primitive and (where is None or where(message)):
                        self._returned.add(index)
                        return message
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"BFCP {self.role}: no {_name(primitive)} in {timeout} s; received: {self._history()}")
                self._cond.wait(min(left, 0.5))

    def statuses(self, request_id: int) -> list[int]:
        """Every status the FloorRequestStatus messages received so far gave this request, in order
        (over UDP each message once: a retransmission is the same message again)."""
        with self._cond:
            return self._statuses(request_id)

    def _statuses(self, request_id: int) -> list[int]:
        messages = [m for m in self.messages if m.primitive == Primitive.FLOOR_REQUEST_STATUS]
        if self.transport == "udp":
            messages = list({m.raw: m for m in messages}.values())
        found = [request_status(m) for m in messages]
        return [state[1] for state in found if state is not None and state[0] == request_id]

    def close(self) -> None:
        """Stops the reader and closes the sockets (sends nothing: goodbye() is the polite end)."""
        self._closed.set()
        for sock in (self._sock, self._listener):
            if sock is None:
                continue
            try:
                if self.transport == "tcp" and sock is self._sock:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)
        for sock in (self._sock, self._listener):
            if sock is not None:
                sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _udp_socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


def _tcp_listener(host: str) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, 0))
    listener.listen(1)
    return listener


def _tcp_connect(host: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class BfcpClient(_Endpoint):
    """A floor participant (a room system's BFCP client) for one conference and user.

        client = BfcpClient.tcp("127.0.0.1", port, conference_id=1, user_id=2)
        client.hello()
        request = client.floor_request(1)
        client.wait_status(request, GRANTED)
        client.floor_release(request)
        client.goodbye(); client.close()

    Over UDP it acknowledges the server's FloorRequestStatus / FloorStatus, and answers a server's
    Goodbye with GoodbyeAck on any transport."""

    role = "client"

    def __init__(
        self,
        transport: str,
        conference_id: int,
        user_id: int,
        version: int,
        sock: socket.socket | None,
        listener: socket.socket | None = None,
        peer: tuple[str, int] | None = None,
        retransmit_interval: float = 0.5,
        retransmissions: int = 4,
    ) -> None:
        self.conference_id = conference_id
        self.user_id = user_id
        self.acks_sent = 0
        super().__init__(transport, version, sock, listener, peer, retransmit_interval, retransmissions)

    @classmethod
    def tcp(cls, host: str, port: int, conference_id: int, user_id: int, version: int = 1, timeout: float = 10) -> BfcpClient:
        """Connects to a floor control server (SDP setup:active on our side)."""
        return cls("tcp", conference_id, user_id, version, _tcp_connect(host, port, timeout), peer=(host, port))

    @classmethod
    def accept_tcp(cls, listen_host: str, conference_id: int, user_id: int, version: int = 1) -> BfcpClient:
        """Listens on `listen_host`:`.port` and takes the one connection the server makes (SDP
        setup:passive on our side); requests wait for it."""
        return cls("tcp", conference_id, user_id, version, None, listener=_tcp_listener(listen_host))

    @classmethod
    def udp(
        cls,
        host: str | None,
        port: int | None,
        conference_id: int,
        user_id: int,
        version: int = 2,
        bind: str = "127.0.0.1",
        retransmit_interval: float = 0.5,
        retransmissions: int = 4,
    ) -> BfcpClient:
        """A UDP socket on `bind`:`.port` sending to host:port (set `.peer` later if not known yet)."""
        peer = (host, port) if host is not None and port is not None else None
        return cls("udp", conference_id, user_id, version, _udp_socket(bind), None, peer, retransmit_interval, retransmissions)

    def _ids(self) -> tuple[int, int]:
        return self.conference_id, self.user_id

    def _handle(self, message: Decoded, address: tuple[str, int] | None) -> None:
        tid = message.transaction_id
        if message.primitive in (Primitive.FLOOR_REQUEST_STATUS, Primitive.FLOOR_STATUS) and not message.response:
            if self.transport == "udp":
                if tid == 0:
                    self.problems.append(f"server-initiated {message.name} over UDP with transaction id 0")
                    return
                ack = Primitive.FLOOR_REQUEST_STATUS_ACK if message.primitive == Primitive.FLOOR_REQUEST_STATUS else Primitive.FLOOR_STATUS_ACK
                self._answer(message, ack, (), address)
                with self._cond:
                    self.acks_sent += 1
            elif tid != 0:
                self.problems.append(f"{message.name} with transaction id {tid} over TCP that answers no request of ours")
        elif message.primitive == Primitive.GOODBYE and not message.response:
            self._answer(message, Primitive.GOODBYE_ACK, (), address)

    # -- the floor participant's requests

    def hello(self, timeout: float = 5) -> Decoded:
        """Hello; returns the HelloAck."""
        return self.request(Primitive.HELLO, (), timeout, expect=Primitive.HELLO_ACK)

    def floor_request(self, floor: int, *extra: Attribute, timeout: float = 5) -> int:
        """FloorRequest for `floor` (FLOOR-ID with M set, then `extra` attributes); returns the floor
        request id of the server's FloorRequestStatus (an Error fails the test)."""
        answer = self.request(Primitive.FLOOR_REQUEST, [floor_id(floor), *extra], timeout)
        if answer.primitive == Primitive.ERROR:
            raise AssertionError(f"FloorRequest for floor {floor} was refused: {answer.error()} ({answer.describe()})")
        assert answer.primitive == Primitive.FLOOR_REQUEST_STATUS, answer.describe()
        state = request_status(answer)
        assert state is not None, f"FloorRequestStatus without a request status: {answer.describe()}"
        return state[0]

    def wait_status(self, request_id: int, status: int, timeout: float = 10) -> Decoded:
        """The first FloorRequestStatus received (a response or the server's own) giving this request
        this status, whenever it came."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for message in self.messages:
                    if message.primitive == Primitive.FLOOR_REQUEST_STATUS and request_status(message) == (request_id, status):
                        return message
                left = deadline - time.monotonic()
                if left <= 0:
                    name = RequestStatus(status).name if status in RequestStatus._value2member_map_ else str(status)
                    raise AssertionError(
                        f"BFCP client: request {request_id} not {name} in {timeout} s (statuses seen: "
                        f"{self._statuses(request_id)}); received: {self._history()}"
                    )
                self._cond.wait(min(left, 0.5))

    def floor_release(self, request_id: int, timeout: float = 5) -> Decoded:
        """FloorRelease; returns the response (a FloorRequestStatus, Released, from a good server)."""
        return self.request(Primitive.FLOOR_RELEASE, [floor_request_id(request_id)], timeout)

    def floor_query(self, floor: int, timeout: float = 5) -> Decoded:
        """FloorQuery; returns the response (a FloorStatus)."""
        return self.request(Primitive.FLOOR_QUERY, [floor_id(floor)], timeout)

    def floor_request_query(self, request_id: int, timeout: float = 5) -> Decoded:
        return self.request(Primitive.FLOOR_REQUEST_QUERY, [floor_request_id(request_id)], timeout)

    def goodbye(self, timeout: float = 5) -> Decoded:
        """Goodbye; returns the GoodbyeAck."""
        return self.request(Primitive.GOODBYE, (), timeout, expect=Primitive.GOODBYE_ACK)


@dataclass
class FloorRequestRecord:
    """A floor request as the test server keeps it."""

    request_id: int
    floors: list[int]
    conference_id: int
    user_id: int
    status: int = PENDING


ALL_PRIMITIVES = tuple(int(p) for p in Primitive)
ALL_ATTRIBUTES = tuple(int(a) for a in AttributeType)


class BfcpServerPeer(_Endpoint):
    """A floor control server, for when the gateway is the floor participant (dial-out to an MCU that
    insists on being the server). Answers Hello (HelloAck with SUPPORTED-PRIMITIVES and
    -ATTRIBUTES), FloorRequest (FloorRequestStatus Pending, then with `auto_grant` its own
    FloorRequestStatus Granted), FloorRelease (Released), FloorRequestQuery, FloorQuery (FloorStatus),
    Goodbye (GoodbyeAck); anything else with Error Unknown Primitive. With `conference_id` set it
    answers other conferences with Error Conference does not Exist; with `floors` set, other floors
    with Invalid Floor ID. Over UDP its own messages are retransmitted until acknowledged and a
    retransmitted request gets the same answer again."""

    role = "server"

    def __init__(
        self,
        transport: str,
        version: int,
        sock: socket.socket | None,
        listener: socket.socket | None = None,
        peer: tuple[str, int] | None = None,
        conference_id: int | None = None,
        floors: Iterable[int] | None = None,
        auto_grant: bool = True,
        retransmit_interval: float = 0.5,
        retransmissions: int = 4,
    ) -> None:
        self.conference_id = conference_id
        self.floors = set(floors) if floors is not None else None
        self.auto_grant = auto_grant
        self.requests: dict[int, FloorRequestRecord] = {}
        self.acked: list[int] = []  # transaction ids of our own messages the client acknowledged
        self._next_request = 0
        self._answers: dict[tuple[int, int, int], bytes] = {}  # (user, transaction, primitive): our answer
        self._last_ids = (conference_id or 0, 0)
        super().__init__(transport, version, sock, listener, peer, retransmit_interval, retransmissions)

    @classmethod
    def tcp(
        cls,
        listen_host: str = "127.0.0.1",
        version: int = 1,
        conference_id: int | None = None,
        floors: Iterable[int] | None = None,
        auto_grant: bool = True,
    ) -> BfcpServerPeer:
        """Listens on `listen_host`:`.port` for the one connection a floor participant makes."""
        return cls("tcp", version, None, _tcp_listener(listen_host), None, conference_id, floors, auto_grant)

    @classmethod
    def connect_tcp(
        cls,
        host: str,
        port: int,
        version: int = 1,
        conference_id: int | None = None,
        floors: Iterable[int] | None = None,
        auto_grant: bool = True,
        timeout: float = 10,
    ) -> BfcpServerPeer:
        """Connects to the floor participant (SDP setup:active on the server's side)."""
        return cls("tcp", version, _tcp_connect(host, port, timeout), None, (host, port), conference_id, floors, auto_grant)

    @classmethod
    def udp(
        cls,
        listen_host: str = "127.0.0.1",
        peer: tuple[str, int] | None = None,
        version: int = 2,
        conference_id: int | None = None,
        floors: Iterable[int] | None = None,
        auto_grant: bool = True,
        retransmit_interval: float = 0.5,
        retransmissions: int = 4,
    ) -> BfcpServerPeer:
        """A UDP socket on `listen_host`:`.port`; answers go where requests came from, its own
        messages to `peer` (by default: where the last request came from)."""
        sock = _udp_socket(listen_host)
        return cls("udp", version, sock, None, peer, conference_id, floors, auto_grant, retransmit_interval, retransmissions)

    def _ids(self) -> tuple[int, int]:
        return self._last_ids

    def _answer(self, to: Decoded, primitive: int, attributes: Iterable[Attribute], address: tuple[str, int] | None) -> bytes:
        raw = super()._answer(to, primitive, attributes, address)
        if self.transport == "udp":
            with self._cond:
                self._answers[(to.user_id, to.transaction_id, to.primitive)] = raw
        return raw

    def _error(self, to: Decoded, code: ErrorCode, text: str, address: tuple[str, int] | None, details: bytes = b"") -> None:
        self._answer(to, Primitive.ERROR, [error_code(code, details), error_info(text)], address)

    def _handle(self, message: Decoded, address: tuple[str, int] | None) -> None:
        if message.response:
            return  # an acknowledgement or answer that matched nothing outstanding (a late duplicate)
        kind = message.primitive
        if kind in (Primitive.FLOOR_REQUEST_STATUS_ACK, Primitive.FLOOR_STATUS_ACK, Primitive.GOODBYE_ACK):
            if self.transport == "tcp":
                self.problems.append(f"{message.name} over TCP (acknowledgements are for UDP only)")
            return
        if self.transport == "udp":
            with self._cond:
                if address is not None:
                    self.peer = address
                again = self._answers.get((message.user_id, message.transaction_id, kind))
            if again is not None:
                self._send(again, address)  # a retransmitted request: the same answer
                return
        with self._cond:
            self._last_ids = (message.conference_id, message.user_id)
        if self.conference_id is not None and message.conference_id != self.conference_id:
            self._error(message, ErrorCode.CONFERENCE_DOES_NOT_EXIST, f"conference {message.conference_id} does not exist", address)
            return
        if kind == Primitive.HELLO:
            self._answer(message, Primitive.HELLO_ACK, [supported_primitives(ALL_PRIMITIVES), supported_attributes(ALL_ATTRIBUTES)], address)
        elif kind == Primitive.FLOOR_REQUEST:
            self._floor_request(message, address)
        elif kind in (Primitive.FLOOR_RELEASE, Primitive.FLOOR_REQUEST_QUERY):
            ident = message.find(AttributeType.FLOOR_REQUEST_ID)
            record = self.requests.get(cast(int, ident.value)) if ident else None
            if record is None:
                self._error(message, ErrorCode.FLOOR_REQUEST_ID_DOES_NOT_EXIST, "no such floor request", address)
                return
            if kind == Primitive.FLOOR_RELEASE:
                record.status = RELEASED
            self._answer(message, Primitive.FLOOR_REQUEST_STATUS, [self._information(record)], address)
        elif kind == Primitive.FLOOR_QUERY:
            floors = [cast(int, a.value) for a in message.find_all(AttributeType.FLOOR_ID)]
            self._answer(message, Primitive.FLOOR_STATUS, self._floor_status(floors[0] if floors else None), address)
        elif kind == Primitive.GOODBYE:
            self._answer(message, Primitive.GOODBYE_ACK, [], address)
        else:
            self._error(message, ErrorCode.UNKNOWN_PRIMITIVE, f"primitive {kind} not supported", address)

    def _floor_request(self, message: Decoded, address: tuple[str, int] | None) -> None:
        floors = [cast(int, a.value) for a in message.find_all(AttributeType.FLOOR_ID)]
        if not floors:
            self._error(message, ErrorCode.PARSE_ERROR, "FloorRequest without FLOOR-ID", address)
            return
        unknown = [f for f in floors if self.floors is not None and f not in self.floors]
        if unknown:
            self._error(message, ErrorCode.INVALID_FLOOR_ID, f"no floor {unknown[0]}", address)
            return
        with self._cond:
            self._next_request += 1
            record = FloorRequestRecord(self._next_request, floors, message.conference_id, message.user_id)
            self.requests[record.request_id] = record
        self._answer(message, Primitive.FLOOR_REQUEST_STATUS, [self._information(record)], address)
        if self.auto_grant:
            self.send_status(record.request_id, GRANTED)

    def _information(self, record: FloorRequestRecord, text: str | None = None) -> Attribute:
        return floor_request_info(record.request_id, record.floors, record.status, text)

    def _floor_status(self, floor: int | None) -> list[Attribute]:
        live = (PENDING, ACCEPTED, GRANTED)
        records = [r for r in self.requests.values() if r.status in live and (floor is None or floor in r.floors)]
        return ([floor_id(floor, mandatory=False)] if floor is not None else []) + [self._information(r) for r in records]

    def _own_message(self, primitive: int, conference_id: int, user_id: int, attributes: Sequence[Attribute]) -> int:
        """Sends a message of the server's own: transaction id 0 over TCP; over UDP a new one, sent
        again until acknowledged. Returns the transaction id."""
        if self.transport == "udp" and self.peer is None:
            raise AssertionError(f"BFCP server over UDP: no client address to send {_name(primitive)} to yet")
        tid = 0 if self.transport == "tcp" else self._new_tid()
        raw = encode(primitive, conference_id, tid, user_id, attributes, self.version)
        if tid:
            with self._cond:
                self._outstanding[tid] = _Outstanding(
                    raw, primitive, conference_id, user_id, self.peer, time.monotonic() + self.retransmit_interval
                )
        self._send(raw)
        return tid

    def send_status(self, request_id: int, status: int, text: str | None = None) -> int:
        """The server's own FloorRequestStatus giving request `request_id` `status` (STATUS-INFO
        `text` if given); returns its transaction id (0 over TCP)."""
        record = self.requests[request_id]
        record.status = status
        return self._own_message(Primitive.FLOOR_REQUEST_STATUS, record.conference_id, record.user_id, [self._information(record, text)])

    def grant(self, request_id: int) -> int:
        return self.send_status(request_id, GRANTED)

    def deny(self, request_id: int, text: str | None = None) -> int:
        return self.send_status(request_id, DENIED, text)

    def revoke(self, request_id: int, text: str | None = None) -> int:
        """Takes the floor back: the server's own FloorRequestStatus Revoked."""
        return self.send_status(request_id, REVOKED, text)

    def send_floor_status(self, floor: int) -> int:
        """The server's own FloorStatus for `floor` (to the last client's conference and user)."""
        conference_id, user_id = self._last_ids
        return self._own_message(Primitive.FLOOR_STATUS, conference_id, user_id, self._floor_status(floor))

    def goodbye(self, timeout: float = 5) -> Decoded:
        """The server's own Goodbye (a request: over TCP too it has a transaction id); returns the GoodbyeAck."""
        return self.request(Primitive.GOODBYE, (), timeout, expect=Primitive.GOODBYE_ACK)

    def wait_acked(self, transaction_id: int, timeout: float = 5) -> None:
        """(UDP) Returns once the client acknowledged our own message of this transaction id."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while transaction_id not in self._responses:
                left = deadline - time.monotonic()
                if left <= 0 or transaction_id in self._failed:
                    raise AssertionError(f"BFCP server: transaction {transaction_id} not acknowledged; received: {self._history()}")
                self._cond.wait(min(left, 0.5))

    def _take_response(self, message: Decoded) -> bool:
        taken = super()._take_response(message)
        if taken and message.primitive in (Primitive.FLOOR_REQUEST_STATUS_ACK, Primitive.FLOOR_STATUS_ACK):
            self.acked.append(message.transaction_id)
        return taken


# -- Wireshark's reading (tshark) -------------------------------------------------------------------------

def tshark_fields(pcap: Path, port: int, *fields: str, display_filter: str = "bfcp", transport: str = "tcp") -> list[list[str]]:
    """tshark's `-T fields` reading of the frames matching `display_filter`, `transport` port `port`
    decoded as BFCP: per frame, one string per field (all occurrences, comma separated)."""
    args = ["tshark", "-n", "-r", str(pcap), "-d", f"{transport}.port=={port},bfcp", "-Y", display_filter, "-T", "fields"]
    for name in fields:
        args += ["-e", name]
    done = subprocess.run([*args, "-E", "separator=|", "-E", "occurrence=a"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"tshark failed ({done.returncode}): {' '.join(args)}\n{done.stderr[-2000:]}")
    return [line.split("|") for line in done.stdout.splitlines() if line]


class TsharkBfcp(TypedDict):
    """One BFCP message as tshark read it."""

    frame: int
    version: int
    response: bool  # the R bit
    primitive: int
    conference_id: int
    transaction_id: int
    user_id: int
    fields: dict[str, list[str]]  # every bfcp.* field shown, all occurrences in order (attributes)
    malformed: bool
    problems: list[str]  # expert infos of severity warning and above


def tshark_bfcp(pcap: Path, port: int, transport: str = "tcp") -> list[TsharkBfcp]:
    """What tshark's BFCP dissector reads in a capture, port `port` decoded as BFCP (-d): per BFCP
    message the header's fields, every bfcp.* attribute field, malformed or not and its expert
    infos of severity warning and above (TCP's own too: they would mean a broken capture)."""
    args = [
        "tshark", "-n", "-r", str(pcap), "-d", f"{transport}.port=={port},bfcp", "-Y", "bfcp || _ws.malformed",
        "-T", "json", "-e", "frame.number", "-e", "_ws.malformed", "-e", "_ws.expert.severity", "-e", "_ws.expert.message",
    ]  # fmt: skip
    fields = [
        "bfcp.ver", "bfcp.hdr_r_bit", "bfcp.primitive", "bfcp.conference_id", "bfcp.transaction_id", "bfcp.user_id",
        "bfcp.payload_length", "bfcp.attribute_type", "bfcp.attribute_types_m_bit", "bfcp.attribute_length",
        "bfcp.beneficiary_id", "bfcp.floor_id", "bfcp.floorrequest_id", "bfcp.priority", "bfcp.request_status",
        "bfcp.queue_pos", "bfcp.error_code", "bfcp.error_info_text", "bfcp.part_prov_info_text", "bfcp.status_info_text",
        "bfcp.supp_attr", "bfcp.supp_primitive", "bfcp.user_disp_name", "bfcp.user_uri", "bfcp.req_by_i",
        "bfcp.padding", "bfcp.error_specific_details", "bfcp.attribute_length.too_small",
    ]  # fmt: skip
    for name in fields:
        args += ["-e", name]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"tshark failed ({done.returncode}): {' '.join(args)}\n{done.stderr[-2000:]}")
    rows: list[TsharkBfcp] = []
    for packet in json.loads(done.stdout or "[]"):
        layers: dict[str, list[str]] = packet["_source"]["layers"]

        def first(name: str, default: str = "0", layers: dict[str, list[str]] = layers) -> str:
            return (layers.get(name) or [default])[0]

        severities = [int(v, 0) for v in layers.get("_ws.expert.severity", [])]
        texts = layers.get("_ws.expert.message", [])
        problems = [f"{texts[i] if i < len(texts) else '?'} (severity {s:#x})" for i, s in enumerate(severities) if s >= WARNING]
        rows.append(
            TsharkBfcp(
                frame=int(first("frame.number")),
                version=int(first("bfcp.ver")),
                response=first("bfcp.hdr_r_bit", "0") in ("1", "True", "true"),
                primitive=int(first("bfcp.primitive")),
                conference_id=int(first("bfcp.conference_id")),
                transaction_id=int(first("bfcp.transaction_id")),
                user_id=int(first("bfcp.user_id")),
                fields={name: values for name, values in layers.items() if name.startswith("bfcp.")},
                malformed="_ws.malformed" in layers,
                problems=problems,
            )
        )
    return rows


def _attribute_types(attributes: Iterable[Attribute]) -> list[int]:
    """The attribute types depth first, as the dissector walks them."""
    found: list[int] = []
    for a in attributes:
        found.append(int(a.type))
        found += _attribute_types(a.children)
    return found


def as_version_1(raw: bytes) -> bytes:
    """A version 2 (UDP) message re-headed as version 1 (the R bit cleared, everything after the
    first octet as it was), for tshark 4.0, whose dissector reads version 1 only: the attributes,
    which are the same in both versions, are then read by it all the same."""
    return bytes([(1 << 5) | (raw[0] & 0x0F)]) + raw[1:] if raw else raw


def beneficiary_name(decoded: Decoded) -> str | None:
    """The USER-DISPLAY-NAME of the first FLOOR-REQUEST-INFORMATION's beneficiary, if any (who holds
    the floor, in a FloorStatus)."""
    information = decoded.find(AttributeType.FLOOR_REQUEST_INFORMATION)
    beneficiary = information.find(AttributeType.BENEFICIARY_INFORMATION) if information is not None else None
    name = beneficiary.find(AttributeType.USER_DISPLAY_NAME) if beneficiary is not None else None
    return str(name.value) if name is not None else None


def assert_tshark_reads(messages: Iterable[bytes | tuple[bool, bytes]], port: int = 5070, directory: Path | None = None) -> list[TsharkBfcp]:
    """Writes these messages (bytes: from the client, or (from_client, bytes): e.g. a peer's `wire`)
    as one TCP connection and asserts tshark reads each as we do: its header's version, R bit,
    primitive, conference, transaction and user ids, the same attribute types in the same order,
    nothing malformed and no expert warning. Returns tshark's reading. (Debian 12's tshark 4.0 knows
    BFCP over TCP: version 1 messages.)"""
    items = [(True, bytes(m)) if isinstance(m, bytes | bytearray) else m for m in messages]
    newer = [index for index, (_, raw) in enumerate(items) if raw[:1] and raw[0] >> 5 != 1]
    assert not newer, f"messages {newer} are not version 1: tshark 4.0 reads only BFCP over TCP (version 1)"
    handle, name = tempfile.mkstemp(suffix=".pcap", prefix="bfcp-", dir=directory)
    os.close(handle)
    pcap = Path(name)
    try:
        tcp_pcap(pcap, items, port)
        read = tshark_bfcp(pcap, port)
    finally:
        if directory is None:
            pcap.unlink(missing_ok=True)
    ours = [decode(raw) for _, raw in items]
    assert len(read) == len(ours), f"tshark read {len(read)} BFCP messages, we wrote {len(ours)}: {[r['primitive'] for r in read]}"
    for index, (mine, theirs) in enumerate(zip(ours, read, strict=True)):
        what = f"message {index} ({mine.describe()})"
        assert not theirs["malformed"] and not theirs["problems"], f"{what}: tshark: malformed {theirs['malformed']}, {theirs['problems']}"
        header = (theirs["version"], theirs["response"], theirs["primitive"], theirs["conference_id"], theirs["transaction_id"], theirs["user_id"])
        expected = (mine.version, mine.response, mine.primitive, mine.conference_id, mine.transaction_id, mine.user_id)
        assert header == expected, f"{what}: tshark read the header as {header}"
        types = [int(v) for v in theirs["fields"].get("bfcp.attribute_type", [])]
        assert types == _attribute_types(mine.attributes), f"{what}: tshark read attribute types {types}"
        assert "bfcp.attribute_length.too_small" not in theirs["fields"], f"{what}: tshark: an attribute length too small"
    return read
