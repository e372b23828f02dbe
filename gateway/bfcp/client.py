"""A BFCP floor participant (client) for one call whose far end insists on being the floor control
server (an MCU we dial, or one that calls in offering `s-only`), sans-IO like `FloorServer`
(RFC 8855 sections 8-10).

    client = FloorClient(conference_id, user_id, floor_id, version=1, transport="tcp")
    client.start(now)                 # connected: Hello, then a FloorQuery (to hear who presents)
    client.request(now) / client.release(now)   # someone of our room presents / stopped
    replies = client.receive(data)    # bytes in: what to send back at once (UDP acknowledgements)
    client.next_event()               # FloorGranted, FloorLost, FloorHeld, or None
    client.datagrams_to_send(now), client.get_timer(), client.handle_timer(now)

Our room's presenter reaches the MCU through its floor: when someone in our room presents the
gateway asks for the floor, and gives it back when they stop. The FloorQuery subscribes us to the
floor's status (FloorStatus), so we learn when one of the MCU's participants holds the floor
(`FloorHeld(by_other=True)`): the call layer then lets the MCU's leg present in our room.

Over UDP every request is sent again at T1 = 0.5 s, doubling, until its answer comes (at most
MAX_TRANSMISSIONS), and each status the server sends (a non-zero transaction id) is acknowledged
(FloorRequestStatusAck, FloorStatusAck). Over TCP what the server sends has transaction id 0.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

from gateway.bfcp.message import (
    Attribute,
    AttributeType,
    BfcpError,
    Message,
    Primitive,
    RequestStatus,
    parse,
    serialize,
)
from gateway.bfcp.server import MAX_TRANSMISSIONS, T1_S

_ENDED = {RequestStatus.DENIED, RequestStatus.CANCELLED, RequestStatus.RELEASED, RequestStatus.REVOKED}
_ACKS = {Primitive.FLOOR_REQUEST_STATUS: Primitive.FLOOR_REQUEST_STATUS_ACK, Primitive.FLOOR_STATUS: Primitive.FLOOR_STATUS_ACK}


@dataclass(frozen=True)
class FloorGranted:
    """The server gave us the floor: our room's content may go to the far end."""

    request_id: int


@dataclass(frozen=True)
class FloorLost:
    """Our request ended: denied, revoked (the far end's own presenter took over), released."""

    request_id: int
    status: RequestStatus


@dataclass(frozen=True)
class FloorHeld:
    """Who holds the floor changed: someone of the far end (`by_other`), or nobody / us."""

    by_other: bool


Event = FloorGranted | FloorLost | FloorHeld


@dataclass
class _Sent:
    primitive: Primitive
    data: bytes
    resend_at: float
    interval: float
    count: int = 1


def _status(info: Attribute) -> RequestStatus | None:
    """The overall status of a FLOOR-REQUEST-INFORMATION (else that of its first floor)."""
    for kind in (AttributeType.OVERALL_REQUEST_STATUS, AttributeType.FLOOR_REQUEST_STATUS):
        group = info.find(kind)
        found = group.find(AttributeType.REQUEST_STATUS) if group is not None else None
        if found is not None and isinstance(found.value, tuple):
            try:
                return RequestStatus(found.value[0])
            except ValueError:
                return None
    return None


class FloorClient:
    def __init__(self, conference_id: int, user_id: int, floor_id: int, *, version: int = 1, transport: str = "tcp") -> None:
        self.conference_id = conference_id
        self.user_id = user_id
        self.floor_id = floor_id
        self.version = version
        self.transport = transport
        self.reliable = transport != "udp"
        self.request_id: int | None = None  # our floor request, once the server numbered it
        self.granted = False
        self.wanted = False  # our room presents: we want the floor
        self.held_by_other = False
        self._requesting = False  # a FloorRequest is out and unanswered
        self._transactions = itertools.count(1)
        self._sent: dict[int, _Sent] = {}  # our requests awaiting their answer
        self._outbox: list[bytes] = []
        self._events: deque[Event] = deque()
        self._now = 0.0  # the time we were last told

    # -- what the call layer asks -----------------------------------------------------------------

    def start(self, now: float) -> None:
        self._send(Primitive.HELLO, [], now)
        self._send(Primitive.FLOOR_QUERY, [Attribute(AttributeType.FLOOR_ID, self.floor_id, mandatory=True)], now)
        if self.wanted:
            self.request(now)

    def request(self, now: float) -> None:
        """Asks for the floor (nothing when we hold it or asked already)."""
        self.wanted = True
        if self.request_id is None and not self._requesting:
            self._requesting = True
            self._send(Primitive.FLOOR_REQUEST, [Attribute(AttributeType.FLOOR_ID, self.floor_id, mandatory=True)], now)

    def release(self, now: float) -> None:
        """Gives the floor back, or withdraws the request (once the server numbered it)."""
        self.wanted = False
        if self.request_id is not None:
            request_id, self.request_id, self.granted = self.request_id, None, False
            self._send(Primitive.FLOOR_RELEASE, [Attribute(AttributeType.FLOOR_REQUEST_ID, request_id, mandatory=True)], now)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self, now: float = 0.0) -> list[bytes]:
        out, self._outbox = self._outbox, []
        return out

    def get_timer(self) -> float | None:
        if self.reliable:
            return None
        return min((sent.resend_at for sent in self._sent.values()), default=None)

    def handle_timer(self, now: float) -> list[bytes]:
        due: list[bytes] = []
        for transaction_id, sent in list(self._sent.items()):
            if self.reliable or sent.resend_at > now:
                continue
            if sent.count >= MAX_TRANSMISSIONS:
                del self._sent[transaction_id]
                if sent.primitive is Primitive.FLOOR_REQUEST:
                    self._requesting = False
                continue
            sent.interval *= 2
            sent.resend_at, sent.count = now + sent.interval, sent.count + 1
            due.append(sent.data)
        return due

    # -- messages -----------------------------------------------------------------------------------

    def _send(self, primitive: Primitive, attributes: list[Attribute], now: float) -> None:
        self._now = now
        transaction_id = next(self._transactions) & 0xFFFF or next(self._transactions)
        data = serialize(Message(primitive, self.conference_id, transaction_id, self.user_id, attributes, self.version))
        self._sent[transaction_id] = _Sent(primitive, data, now + T1_S, T1_S)
        self._outbox.append(data)

    def receive(self, data: bytes, transport: str | None = None) -> list[bytes]:
        """One whole message from the server: what to send back at once (acknowledgements over UDP).
        What cannot be read is dropped (a client has no Error to answer a response with)."""
        try:
            message = parse(data, transport or self.transport)
        except BfcpError:
            return []
        if message.conference_id != self.conference_id or message.user_id != self.user_id:
            return []
        asked = self._sent.pop(message.transaction_id, None) if message.transaction_id else None
        replies: list[bytes] = []
        if asked is None and not self.reliable and message.transaction_id and message.primitive in _ACKS:
            ack = Message(_ACKS[message.primitive], self.conference_id, message.transaction_id, self.user_id, [], self.version, True)
            replies.append(serialize(ack))
        if message.primitive is Primitive.FLOOR_REQUEST_STATUS:
            self._request_status(message, asked)
        elif message.primitive is Primitive.FLOOR_STATUS:
            self._floor_status(message)
        elif message.primitive is Primitive.ERROR and asked is not None and asked.primitive is Primitive.FLOOR_REQUEST:
            self._requesting = False
        return replies

    def _request_status(self, message: Message, asked: _Sent | None) -> None:
        info = message.find(AttributeType.FLOOR_REQUEST_INFORMATION)
        if info is None or not isinstance(info.value, int):
            return
        status = _status(info)
        if asked is not None and asked.primitive is Primitive.FLOOR_REQUEST:
            self._requesting = False
            if status in _ENDED:
                self._events.append(FloorLost(info.value, status))
                return
            self.request_id = info.value
            if not self.wanted:  # (released while the request was on its way)
                self.release(self._now)
                return
        if info.value != self.request_id:
            return
        if status is RequestStatus.GRANTED and not self.granted:
            self.granted = True
            self._events.append(FloorGranted(info.value))
        elif status in _ENDED:
            self.request_id, self.granted = None, False
            self._events.append(FloorLost(info.value, status))

    def _floor_status(self, message: Message) -> None:
        holders = [
            info.value
            for info in message.all(AttributeType.FLOOR_REQUEST_INFORMATION)
            if _status(info) is RequestStatus.GRANTED
        ]
        by_other = any(holder != self.request_id for holder in holders)
        if by_other != self.held_by_other:
            self.held_by_other = by_other
            self._events.append(FloorHeld(by_other))
