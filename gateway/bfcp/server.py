"""A BFCP floor control server for one room system's BFCP connection (RFC 8855 sections 8-13),
sans-IO: messages in, messages out, and events for the call layer, which asks the room's
presentation floor (rooms/floor.py) and says how it decided.

    server = FloorServer(conference_id, user_id, floor_id)
    replies = server.receive(data, transport)  # bytes in: the answers to send back (bytes)
    server.next_event()                        # FloorRequested, FloorReleased, or None
    server.granted(request_id) / server.denied(request_id, why) / server.revoked(request_id)
    server.datagrams_to_send(now)              # what the server itself sends (FloorRequestStatus ...)
    server.get_timer() / server.handle_timer(now)  # over UDP: resending what was not acknowledged

The gateway serves one floor per call (the content line's `floorid`), the room system is its one
user (`userid`), and the conference is the SDP's `confid`. A FloorRequest is answered at once with
Pending; the call layer decides (the room's policy, someone else presenting is taken over) and the
server sends Granted or Denied. When another participant takes the floor, `revoked` sends Revoked.
Hello gets HelloAck with what we support; Goodbye gets GoodbyeAck; a FloorQuery gets the floor's
status, and from then on a FloorStatus whenever it changes (RFC 8855 10.6 / 13.6): who holds it,
the room system itself or someone else of the room (`held_elsewhere(name)`: a browser or another
room system presents; shown as a request of ELSEWHERE_USER with that name as its beneficiary). Whatever we cannot take gets an Error with the RFC's code (an unknown primitive, an unknown
mandatory attribute, a wrong conference or user, an unknown floor or request).

Over TCP the transport is reliable: what the server starts carries transaction id 0 and is not
acknowledged (RFC 8855 8). Over UDP it carries a transaction id of its own and is sent again at
T1 = 0.5 s, doubling, until the client acknowledges it (FloorRequestStatusAck, FloorStatusAck) or
MAX_TRANSMISSIONS went out; a request the client sends again (its answer was lost) gets the answer
it got the first time, from a short cache, never a second floor request (RFC 8855 6.2).
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from typing import Any

from gateway.bfcp.message import (
    Attribute,
    AttributeType,
    BfcpError,
    ErrorCode,
    Message,
    Primitive,
    RequestStatus,
    parse,
    serialize,
)

MAX_REQUESTS = 4  # open floor requests of one user (one floor: more is a client that keeps asking)
T1_S = 0.5  # RFC 8855 8.3.1: the first retransmission over UDP, then doubling
MAX_TRANSMISSIONS = 4  # a message the client never acknowledges is given up after this many
ANSWER_CACHE = 16  # answers kept for requests a UDP client sends again
# Whoever else in the room presents, as FloorStatus shows them: one floor request and one user id
# that are never the room system's own (its requests count up from 1; its user id is the SDP's).
ELSEWHERE_REQUEST = 0xFFFF


@dataclass(frozen=True)
class FloorRequested:
    """The room system asks for the floor: grant (`granted`) or refuse (`denied`) request `request_id`."""

    request_id: int


@dataclass(frozen=True)
class FloorReleased:
    """The room system gave the floor back (or withdrew its request)."""

    request_id: int
    was_granted: bool


Event = FloorRequested | FloorReleased


class FloorServer:
    def __init__(self, conference_id: int, user_id: int, floor_id: int, *, version: int = 1, transport: str = "tcp") -> None:
        self.conference_id = conference_id
        self.user_id = user_id
        self.floor_id = floor_id
        self.version = version  # 1 over TCP/TLS, 2 over UDP
        self.transport = transport  # tcp | udp
        self.reliable = transport != "udp"
        self.requests: dict[int, RequestStatus] = {}  # floor request id -> where it stands
        self._request_ids = itertools.count(1)
        self._transaction_ids = itertools.count(1)  # for messages the server starts
        self._events: deque[Event] = deque()
        self._outbox: list[bytes] = []
        # UDP: what we sent and wait an acknowledgement for: transaction id -> [message, resend at, interval, sent]
        self._unacked: dict[int, list[Any]] = {}
        self._answers: dict[int, bytes] = {}  # UDP: transaction id -> our answer to the client's request
        self.watching = False  # the client asked for the floor's status (FloorQuery): it hears of changes
        self.elsewhere: str | None = None  # the name of whoever else in the room presents now

    # -- what the adapter asks --------------------------------------------------------------------

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self, now: float = 0.0) -> list[bytes]:
        """What the server itself sends (its decisions); over UDP each is resent until acknowledged."""
        out, self._outbox = self._outbox, []
        if not self.reliable:
            for data in out:
                transaction_id = int.from_bytes(data[8:10], "big")
                if transaction_id not in self._unacked:
                    self._unacked[transaction_id] = [data, now + T1_S, T1_S, 1]
        return out

    def get_timer(self) -> float | None:
        """When `handle_timer` must run next (None: nothing waits for an acknowledgement)."""
        return min((entry[1] for entry in self._unacked.values()), default=None)

    def handle_timer(self, now: float) -> list[bytes]:
        """The unacknowledged messages due again (over UDP), to send now."""
        due: list[bytes] = []
        for transaction_id, entry in list(self._unacked.items()):
            if entry[1] > now:
                continue
            if entry[3] >= MAX_TRANSMISSIONS:
                del self._unacked[transaction_id]  # (the client is gone or deaf: its call layer notices)
                continue
            entry[2] *= 2
            entry[1], entry[3] = now + entry[2], entry[3] + 1
            due.append(entry[0])
        return due

    @property
    def holder(self) -> int | None:
        """The request that holds the floor now (None: nobody here does)."""
        return next((rid for rid, status in self.requests.items() if status is RequestStatus.GRANTED), None)

    # -- the call layer's decisions ----------------------------------------------------------------

    def granted(self, request_id: int) -> None:
        self._decided(request_id, RequestStatus.GRANTED)

    def denied(self, request_id: int, why: str = "") -> None:
        self._decided(request_id, RequestStatus.DENIED, why)
        self.requests.pop(request_id, None)

    def revoked(self, request_id: int | None = None, why: str = "") -> None:
        """The floor went to someone else (or a host stopped the presentation)."""
        request_id = self.holder if request_id is None else request_id
        if request_id is None or self.requests.get(request_id) is not RequestStatus.GRANTED:
            return
        self._decided(request_id, RequestStatus.REVOKED, why)

    def held_elsewhere(self, name: str | None) -> None:
        """Someone else in the room presents now (their name), or nobody does (None)."""
        if name != self.elsewhere:
            self.elsewhere = name
            self._floor_changed()

    def _decided(self, request_id: int, status: RequestStatus, why: str = "") -> None:
        if request_id not in self.requests:
            return
        self.requests[request_id] = status
        message = self._status(Primitive.FLOOR_REQUEST_STATUS, self._own_transaction(), request_id, status, why)
        self._outbox.append(serialize(message))
        if status in (RequestStatus.GRANTED, RequestStatus.REVOKED):
            if status is RequestStatus.REVOKED:
                self.requests.pop(request_id, None)  # (before the status: it no longer holds the floor)
            self._floor_changed()

    def _own_transaction(self) -> int:
        """The transaction id of a message the server starts: 0 over TCP (nothing to acknowledge)."""
        return 0 if self.reliable else self._next_transaction_id()

    def _floor_changed(self) -> None:
        if self.watching:
            message = Message(
                Primitive.FLOOR_STATUS, self.conference_id, self._own_transaction(), self.user_id, self._floor_attributes(), self.version,
            )  # fmt: skip
            self._outbox.append(serialize(message))

    # -- messages in --------------------------------------------------------------------------------

    def _next_transaction_id(self) -> int:
        transaction_id = next(self._transaction_ids) & 0xFFFF
        return transaction_id or self._next_transaction_id()  # (0 means "no answer expected")

    def receive(self, data: bytes, transport: str | None = None) -> list[bytes]:
        """One whole message from the room system: the answers to send back (at most one)."""
        try:
            message = parse(data, transport or self.transport)
        except BfcpError as error:
            header = data[:12]
            if len(header) < 12:
                return []  # (no transaction to answer)
            return [self._error_for_header(header, error.code, str(error))]
        if message.primitive in (Primitive.FLOOR_REQUEST_STATUS_ACK, Primitive.FLOOR_STATUS_ACK):
            self._unacked.pop(message.transaction_id, None)
            return []
        if (message.response and message.version == 2) or message.transaction_id == 0:
            return []  # (a response to nothing we asked)
        if not self.reliable and message.transaction_id in self._answers:
            return [self._answers[message.transaction_id]]  # (sent again: our answer was lost)
        replies = self._answer(message)
        if not self.reliable and replies:
            self._answers[message.transaction_id] = replies[0]
            while len(self._answers) > ANSWER_CACHE:
                del self._answers[next(iter(self._answers))]
        return replies

    def _answer(self, message: Message) -> list[bytes]:
        if message.conference_id != self.conference_id:
            return [self._error(message, ErrorCode.CONFERENCE_DOES_NOT_EXIST, "no such conference")]
        if message.user_id != self.user_id:
            return [self._error(message, ErrorCode.USER_DOES_NOT_EXIST, "no such user")]
        primitive = message.primitive
        if primitive is Primitive.HELLO:
            return [self._reply(message, Primitive.HELLO_ACK, [
                Attribute(AttributeType.SUPPORTED_PRIMITIVES, [int(p) for p in _SUPPORTED]),
                Attribute(AttributeType.SUPPORTED_ATTRIBUTES, [int(a) for a in AttributeType]),
            ])]  # fmt: skip
        if primitive is Primitive.FLOOR_REQUEST:
            return [self._floor_request(message)]
        if primitive is Primitive.FLOOR_RELEASE:
            return [self._floor_release(message)]
        if primitive is Primitive.FLOOR_QUERY:
            return [self._floor_status(message)]
        if primitive is Primitive.FLOOR_REQUEST_QUERY:
            found = message.find(AttributeType.FLOOR_REQUEST_ID)
            request_id = found.value if found is not None else None
            if not isinstance(request_id, int) or request_id not in self.requests:
                return [self._error(message, ErrorCode.FLOOR_REQUEST_ID_DOES_NOT_EXIST, "no such floor request")]
            return [self._status_reply(message, request_id, self.requests[request_id])]
        if primitive is Primitive.GOODBYE:
            return [self._reply(message, Primitive.GOODBYE_ACK, [])]
        if primitive in (Primitive.HELLO_ACK, Primitive.GOODBYE_ACK, Primitive.FLOOR_REQUEST_STATUS_ACK, Primitive.FLOOR_STATUS_ACK):
            return []
        return [self._error(message, ErrorCode.UNKNOWN_PRIMITIVE, f"{primitive.name} is not taken here")]

    def _floor_request(self, message: Message) -> bytes:
        floors = [a.value for a in message.all(AttributeType.FLOOR_ID)]
        if not floors or any(floor != self.floor_id for floor in floors):
            return self._error(message, ErrorCode.INVALID_FLOOR_ID, f"the floor here is {self.floor_id}")
        if len(self.requests) >= MAX_REQUESTS:
            return self._error(message, ErrorCode.MAX_FLOOR_REQUESTS_REACHED, "too many floor requests")
        request_id = next(self._request_ids)
        self.requests[request_id] = RequestStatus.PENDING
        self._events.append(FloorRequested(request_id))
        return self._status_reply(message, request_id, RequestStatus.PENDING)

    def _floor_release(self, message: Message) -> bytes:
        found = message.find(AttributeType.FLOOR_REQUEST_ID)
        request_id = found.value if found is not None else None
        if not isinstance(request_id, int) or request_id not in self.requests:
            return self._error(message, ErrorCode.FLOOR_REQUEST_ID_DOES_NOT_EXIST, "no such floor request")
        was = self.requests.pop(request_id)
        released = RequestStatus.RELEASED if was is RequestStatus.GRANTED else RequestStatus.CANCELLED
        self._events.append(FloorReleased(request_id, was is RequestStatus.GRANTED))
        reply = self._status_reply(message, request_id, released)
        if was is RequestStatus.GRANTED:
            self._floor_changed()
        return reply

    def _floor_status(self, message: Message) -> bytes:
        floors = [a.value for a in message.all(AttributeType.FLOOR_ID)]
        if any(floor != self.floor_id for floor in floors):
            return self._error(message, ErrorCode.INVALID_FLOOR_ID, f"the floor here is {self.floor_id}")
        self.watching = bool(floors)  # (a FloorQuery without floors ends the subscription)
        return self._reply(message, Primitive.FLOOR_STATUS, self._floor_attributes())

    def _floor_attributes(self) -> list[Attribute]:
        attributes = [Attribute(AttributeType.FLOOR_ID, self.floor_id)]
        holder = self.holder
        if holder is not None:
            attributes.append(self._request_information(holder, RequestStatus.GRANTED, ""))
        elif self.elsewhere is not None:
            information = self._request_information(ELSEWHERE_REQUEST, RequestStatus.GRANTED, "")
            beneficiary = [Attribute(AttributeType.USER_DISPLAY_NAME, self.elsewhere[:64])] if self.elsewhere else []
            # (RFC 8855 5.2.15: BENEFICIARY-INFORMATION after the floor request statuses)
            information.children.append(Attribute(AttributeType.BENEFICIARY_INFORMATION, self._elsewhere_user(), beneficiary))
            attributes.append(information)
        return attributes

    def _elsewhere_user(self) -> int:
        return 1 if self.user_id != 1 else 2

    # -- messages out --------------------------------------------------------------------------------

    def _request_information(self, request_id: int, status: RequestStatus, why: str) -> Attribute:
        def status_of(kind: AttributeType, ident: int) -> Attribute:
            children = [Attribute(AttributeType.REQUEST_STATUS, (status, 0))]
            if why:
                children.append(Attribute(AttributeType.STATUS_INFO, why[:200]))
            return Attribute(kind, ident, children)

        return Attribute(AttributeType.FLOOR_REQUEST_INFORMATION, request_id, [
            status_of(AttributeType.OVERALL_REQUEST_STATUS, request_id),
            status_of(AttributeType.FLOOR_REQUEST_STATUS, self.floor_id),
        ])  # fmt: skip

    def _status(self, primitive: Primitive, transaction_id: int, request_id: int, status: RequestStatus, why: str) -> Message:
        return Message(
            primitive, self.conference_id, transaction_id, self.user_id,
            [self._request_information(request_id, status, why)], self.version,
        )  # fmt: skip

    def _status_reply(self, request: Message, request_id: int, status: RequestStatus) -> bytes:
        message = self._status(Primitive.FLOOR_REQUEST_STATUS, request.transaction_id, request_id, status, "")
        message.response = True
        return serialize(message)

    def _reply(self, request: Message, primitive: Primitive, attributes: list[Attribute]) -> bytes:
        return serialize(
            Message(primitive, request.conference_id, request.transaction_id, request.user_id, attributes, self.version, True)
        )

    def _error(self, request: Message, code: ErrorCode, why: str) -> bytes:
        return self._reply(request, Primitive.ERROR, _error_attributes(code, why))

    def _error_for_header(self, header: bytes, code: ErrorCode, why: str) -> bytes:
        conference_id = int.from_bytes(header[4:8], "big")
        transaction_id, user_id = int.from_bytes(header[8:10], "big"), int.from_bytes(header[10:12], "big")
        message = Message(Primitive.ERROR, conference_id, transaction_id, user_id, _error_attributes(code, why), self.version, True)
        return serialize(message)


_SUPPORTED = (
    Primitive.FLOOR_REQUEST,
    Primitive.FLOOR_RELEASE,
    Primitive.FLOOR_REQUEST_QUERY,
    Primitive.FLOOR_REQUEST_STATUS,
    Primitive.FLOOR_QUERY,
    Primitive.FLOOR_STATUS,
    Primitive.HELLO,
    Primitive.HELLO_ACK,
    Primitive.ERROR,
    Primitive.FLOOR_REQUEST_STATUS_ACK,
    Primitive.FLOOR_STATUS_ACK,
    Primitive.GOODBYE,
    Primitive.GOODBYE_ACK,
)


def _error_attributes(code: ErrorCode, why: str) -> list[Attribute]:
    return [
        Attribute(AttributeType.ERROR_CODE, (int(code), b""), mandatory=True),
        Attribute(AttributeType.ERROR_INFO, why[:200]),
    ]
