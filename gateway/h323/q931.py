"""Q.931 messages over TPKT, as H.225.0 call signalling carries them (ITU-T Q.931 4, H.225.0 7,
RFC 1006): bytes to `Message` and back, sans-IO.

TPKT (RFC 1006) frames each message on the TCP connection:

    | version 3 | reserved 0 | length (16 bits, header included) | Q.931 message |

A Q.931 message is the protocol discriminator 0x08, the call reference (a length octet, then that
many octets; the first octet's top bit is the flag: set in messages from the side that did not
allocate the reference), the message type, and information elements: a single-octet element has
its top bit set (shift, sending complete ...); every other one is an identifier, a length octet
and its contents, except User-user (0x7E), whose length takes two octets in H.225.0 (7.2.2.20) and
whose contents start with protocol discriminator 0x05 (X.208/X.209 coded: the H.323-UserInformation
in PER, which is H.225.0's, not this module's).

Parsing is linear in the message and bounded (MAX_MESSAGE octets, MAX_ELEMENTS elements, a call
reference of at most 15 octets) and raises only Q931Error; `TpktReader` reassembles messages from
a byte stream, never buffering more than one message.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

PROTOCOL_DISCRIMINATOR = 0x08
TPKT_VERSION = 3
TPKT_HEADER = 4
MAX_MESSAGE = 65_535 - TPKT_HEADER  # (TPKT's length field counts its own header too)
MAX_ELEMENTS = 64
MAX_CALL_REFERENCE_OCTETS = 15
USER_USER_DISCRIMINATOR = 0x05  # X.208/X.209 coded user information (H.225.0 7.2.2.20)


class Q931Error(ValueError):
    """A message (or TPKT frame) we cannot read."""


class MessageType(enum.IntEnum):
    ALERTING = 0x01
    CALL_PROCEEDING = 0x02
    PROGRESS = 0x03
    SETUP = 0x05
    CONNECT = 0x07
    SETUP_ACKNOWLEDGE = 0x0D
    RELEASE_COMPLETE = 0x5A
    FACILITY = 0x62
    NOTIFY = 0x6E
    STATUS_ENQUIRY = 0x75
    INFORMATION = 0x7B
    STATUS = 0x7D


class Element(enum.IntEnum):
    """The information elements H.225.0 uses (variable length unless noted)."""

    SENDING_COMPLETE = 0xA1  # single octet
    BEARER_CAPABILITY = 0x04
    CAUSE = 0x08
    CALL_STATE = 0x14
    PROGRESS_INDICATOR = 0x1E
    NOTIFICATION_INDICATOR = 0x27
    DISPLAY = 0x28
    KEYPAD = 0x2C
    SIGNAL = 0x34
    CALLING_PARTY_NUMBER = 0x6C
    CALLED_PARTY_NUMBER = 0x70
    USER_USER = 0x7E


@dataclass(frozen=True)
class InformationElement:
    id: int  # an Element, or any other identifier (kept as it came)
    value: bytes = b""  # the contents (nothing for a single-octet element: its value is in `id`)

    @property
    def single_octet(self) -> bool:
        return self.id >= 0x80


@dataclass
class Message:
    type: int  # a MessageType, or an unknown one (kept: the call layer answers it with Status)
    call_reference: int
    from_destination: bool = False  # the flag: set in messages from the side that did not allocate it
    elements: list[InformationElement] = field(default_factory=list)
    reference_length: int = 2  # octets of the call reference (H.225.0: 2)

    def find(self, element: int) -> InformationElement | None:
        return next((e for e in self.elements if e.id == element), None)

    @property
    def user_user(self) -> bytes | None:
        """The H.323-UserInformation (PER) in the User-user element, without its discriminator."""
        found = self.find(Element.USER_USER)
        if found is None or not found.value or found.value[0] != USER_USER_DISCRIMINATOR:
            return None
        return found.value[1:]

    @property
    def cause(self) -> int | None:
        """The Cause element's cause value (Q.850), if any."""
        found = self.find(Element.CAUSE)
        if found is None:
            return None
        value = found.value
        at = 1 if value and value[0] & 0x80 else 2  # (octet 3a, the recommendation, when octet 3's top bit is clear)
        return value[at] & 0x7F if len(value) > at else None

    @property
    def display(self) -> str | None:
        found = self.find(Element.DISPLAY)
        return found.value.decode("latin-1") if found is not None else None

    @property
    def called_number(self) -> str | None:
        """The Called party number's digits (IA5), after its type and plan octet."""
        found = self.find(Element.CALLED_PARTY_NUMBER)
        if found is None or not found.value:
            return None
        return found.value[1:].decode("latin-1")


# -- building ---------------------------------------------------------------------------------------


def user_user(per: bytes) -> InformationElement:
    """The User-user element carrying an H.323-UserInformation (its PER encoding)."""
    return InformationElement(Element.USER_USER, bytes([USER_USER_DISCRIMINATOR]) + per)


def cause(value: int, location: int = 0) -> InformationElement:
    """A Cause element: ITU-T coding, `location` (0 user, 1 private network serving the local user
    ...), the Q.850 cause value."""
    return InformationElement(Element.CAUSE, bytes([0x80 | (location & 0x0F), 0x80 | (value & 0x7F)]))


def display(text: str) -> InformationElement:
    """A Display element (IA5; what cannot be written in it becomes '?', at most 82 characters)."""
    return InformationElement(Element.DISPLAY, text[:82].encode("ascii", "replace"))


def called_party_number(digits: str) -> InformationElement:
    """A Called party number: type unknown, plan ISDN/E.164 (0x81), then the digits (IA5)."""
    return InformationElement(Element.CALLED_PARTY_NUMBER, b"\x81" + digits.encode("ascii", "replace"))


BEARER_VIDEO = InformationElement(Element.BEARER_CAPABILITY, bytes([0x88, 0x18, 0x86]))  # unrestricted digital, multirate, H.221
BEARER_SPEECH = InformationElement(Element.BEARER_CAPABILITY, bytes([0x80, 0x90, 0xA3]))  # speech, 64 kbit/s, A-law


# -- bytes to messages and back ------------------------------------------------------------------------


def serialize(message: Message) -> bytes:
    """The message's octets (without TPKT); Q931Error for what cannot be written."""
    length = message.reference_length
    if not 0 < length <= 4 or not 0 <= message.call_reference < 1 << (8 * length - 1):
        raise Q931Error(f"call reference {message.call_reference} does not fit {length} octets")
    reference = bytearray(message.call_reference.to_bytes(length, "big"))
    if message.from_destination:
        reference[0] |= 0x80
    out = bytearray([PROTOCOL_DISCRIMINATOR, length, *reference, message.type & 0x7F])
    for element in message.elements:
        if element.single_octet:
            out.append(element.id)
        elif element.id == Element.USER_USER:
            if len(element.value) > 0xFFFF:
                raise Q931Error("User-user information longer than 65535 octets")
            out += bytes([element.id]) + len(element.value).to_bytes(2, "big") + element.value
        else:
            if len(element.value) > 0xFF:
                raise Q931Error(f"information element 0x{element.id:02x} longer than 255 octets")
            out += bytes([element.id, len(element.value)]) + element.value
    if len(out) > MAX_MESSAGE:
        raise Q931Error(f"message of {len(out)} octets (at most {MAX_MESSAGE})")
    return bytes(out)


def parse(data: bytes) -> Message:
    """One message (without TPKT); Q931Error naming the first problem."""
    if len(data) > MAX_MESSAGE:
        raise Q931Error(f"message of {len(data)} octets (at most {MAX_MESSAGE})")
    if len(data) < 3:
        raise Q931Error("message shorter than its header")
    if data[0] != PROTOCOL_DISCRIMINATOR:
        raise Q931Error(f"protocol discriminator 0x{data[0]:02x} is not Q.931's (0x08)")
    length = data[1] & 0x0F
    if data[1] & 0xF0 or length > MAX_CALL_REFERENCE_OCTETS:
        raise Q931Error("malformed call reference length")
    at = 2 + length
    if len(data) < at + 1:
        raise Q931Error("message ends in its call reference")
    reference = bytearray(data[2:at])
    from_destination = bool(reference and reference[0] & 0x80)
    if reference:
        reference[0] &= 0x7F
    message_type = data[at]
    if message_type & 0x80:
        raise Q931Error("message type with its top bit set")
    at += 1
    elements: list[InformationElement] = []
    while at < len(data):
        if len(elements) == MAX_ELEMENTS:
            raise Q931Error(f"more than {MAX_ELEMENTS} information elements")
        identifier = data[at]
        if identifier & 0x80:
            elements.append(InformationElement(identifier))
            at += 1
            continue
        if identifier == Element.USER_USER:
            if at + 3 > len(data):
                raise Q931Error("User-user element ends in its length")
            size, at = int.from_bytes(data[at + 1 : at + 3], "big"), at + 3
        else:
            if at + 2 > len(data):
                raise Q931Error(f"information element 0x{identifier:02x} ends in its length")
            size, at = data[at + 1], at + 2
        if at + size > len(data):
            raise Q931Error(f"information element 0x{identifier:02x} longer than the message")
        elements.append(InformationElement(identifier, bytes(data[at : at + size])))
        at += size
    return Message(message_type, int.from_bytes(reference, "big") if reference else 0, from_destination, elements, length)


def tpkt(payload: bytes) -> bytes:
    """One TPKT frame (RFC 1006) around a message."""
    if len(payload) > MAX_MESSAGE:
        raise Q931Error(f"a TPKT frame holds at most {MAX_MESSAGE} octets")
    return bytes([TPKT_VERSION, 0]) + (len(payload) + TPKT_HEADER).to_bytes(2, "big") + payload


class TpktReader:
    """Whole messages out of a TCP byte stream: `feed(data)` returns the payloads completed;
    Q931Error for a frame that is not TPKT version 3 or is shorter than its header (the connection
    cannot be resynchronised: close it). Holds at most one message's octets."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        out: list[bytes] = []
        while len(self._buffer) >= TPKT_HEADER:
            if self._buffer[0] != TPKT_VERSION:
                raise Q931Error(f"TPKT version {self._buffer[0]} (3 expected)")
            length = int.from_bytes(self._buffer[2:4], "big")
            if length < TPKT_HEADER:
                raise Q931Error(f"TPKT length {length} shorter than its header")
            if len(self._buffer) < length:
                break
            out.append(bytes(self._buffer[TPKT_HEADER:length]))
            del self._buffer[:length]
        return out

    @property
    def pending(self) -> int:
        """Octets received of a message not complete yet."""
        return len(self._buffer)
