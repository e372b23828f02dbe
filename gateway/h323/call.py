"""One H.323 call's signalling channel (H.225.0 over TCP), sans-IO: bytes and time in, bytes and
events out, in the style of h11.

`CallChannel` is the Q.931 call state machine (Q.931 5, as H.225.0 7.3 narrows it) for one call on
one TCP connection (we never offer multipleCalls or maintainConnection): it reassembles TPKT
frames, reads each message (gateway/h323/h225.py), checks it against the call's state, and turns
it into events; the call layer calls its methods to answer, alert, connect, tunnel H.245 and
release, and takes the octets to send from `data_to_send()`.

The state table (Q.931 call states; our side's view):

    callee: NULL --Setup--> CALL_PRESENT --proceed()--> INCOMING_PROCEEDING --alert()--> CALL_RECEIVED
            (proceed and alert may be skipped) --connect()--> ACTIVE
    caller: NULL --setup()--> CALL_INITIATED --CallProceeding--> OUTGOING_PROCEEDING
            --Alerting--> CALL_DELIVERED --Connect--> ACTIVE (Alerting and Connect may come at once)
    either: --ReleaseComplete (sent or received), or a connection lost--> RELEASED

What else comes is answered as Q.931 says: Status Enquiry by a Status with our call state (cause 30);
an unknown message type by a Status with cause 97; a message that does not fit the state by a
Status with cause 101 (a Connect to the callee, a second Setup); Progress, Information, Notify,
Status and Facility are taken in any state after the Setup. A message with another call reference
gets ReleaseComplete with cause 81 (a Setup: cause 17, this connection carries one call). A Setup
whose user information cannot be read gets ReleaseComplete with cause 100; later messages that
cannot be read get a Status with cause 100 and are otherwise ignored. A stream that is not TPKT
ends the call (cause 100) and asks for the connection to be closed.

fastStart: the callee answers the caller's proposals in its first response that carries fastStart
and never again (H.225.0 8.1.7); a caller takes the first answer it receives. Tunnelling: on when
the Setup and the first response both set h245Tunnelling; each message we send says whether we
tunnel.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, replace

from gateway.h323 import h225, q931
from gateway.h323.h225 import H225Error, Signal

SETUP_TIMEOUT_S = 10.0  # T303, lengthened: no answer at all to our Setup (Q.931 says 4 s)


class CallState(enum.IntEnum):
    """Q.931 call states (the values are the Call state element's)."""

    NULL = 0
    CALL_INITIATED = 1
    OUTGOING_PROCEEDING = 3
    CALL_DELIVERED = 4
    CALL_PRESENT = 6
    CALL_RECEIVED = 7
    INCOMING_PROCEEDING = 9
    ACTIVE = 10
    RELEASED = 99  # (not a Q.931 state: the call is over, the connection may close)


class Cause(enum.IntEnum):
    """The Q.850 causes this module and the call layer write."""

    NORMAL = 16
    USER_BUSY = 17
    NO_USER_RESPONDING = 18
    NO_ANSWER = 19
    CALL_REJECTED = 21
    NUMBER_CHANGED = 22
    DESTINATION_OUT_OF_ORDER = 27
    INVALID_NUMBER = 28
    FACILITY_REJECTED = 29
    STATUS_ENQUIRY_RESPONSE = 30
    NORMAL_UNSPECIFIED = 31
    NO_CIRCUIT = 34
    TEMPORARY_FAILURE = 41
    CONGESTION = 42
    RESOURCE_UNAVAILABLE = 47
    NOT_AUTHORIZED = 57
    BEARER_NOT_AVAILABLE = 58
    SERVICE_NOT_AVAILABLE = 63
    INVALID_CALL_REFERENCE = 81
    INCOMPATIBLE_DESTINATION = 88
    INVALID_MESSAGE = 95
    MANDATORY_ELEMENT_MISSING = 96
    MESSAGE_TYPE_UNKNOWN = 97
    MESSAGE_NOT_COMPATIBLE = 101
    INVALID_ELEMENT_CONTENTS = 100
    TIMER_EXPIRY = 102
    PROTOCOL_ERROR = 111
    INTERWORKING = 127


# -- events ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetupReceived:
    signal: Signal


@dataclass(frozen=True)
class Progressed:
    """The callee's CallProceeding, Alerting or Progress (to the caller)."""

    signal: Signal


@dataclass(frozen=True)
class Connected:
    """The call is answered: the callee's Connect (to the caller)."""

    signal: Signal


@dataclass(frozen=True)
class FacilityReceived:
    signal: Signal


@dataclass(frozen=True)
class FastStartAnswered:
    """The callee's answer to our fastStart proposals (its OpenLogicalChannel PDUs), or refusal."""

    channels: tuple[bytes, ...]
    refused: bool = False


@dataclass(frozen=True)
class H245Received:
    """H.245 PDUs tunnelled in a message (h245Control), in the order they came."""

    pdus: tuple[bytes, ...]


@dataclass(frozen=True)
class Released:
    """The call is over: `by_peer` when the far end sent ReleaseComplete (or the connection was
    lost), else our own release; `cause` is Q.850's, `reason` H.225.0's ReleaseCompleteReason."""

    cause: int | None
    reason: str | None
    by_peer: bool


@dataclass(frozen=True)
class ProtocolProblem:
    """Something the far end got wrong, answered as Q.931 says: for the log (no secrets in it)."""

    what: str


Event = SetupReceived | Progressed | Connected | FacilityReceived | FastStartAnswered | H245Received | Released | ProtocolProblem

_TOLERATED = {"progress", "information", "notify", "status", "facility", "empty"}
_RESPONSES = {"callProceeding": CallState.OUTGOING_PROCEEDING, "alerting": CallState.CALL_DELIVERED,
              "connect": CallState.ACTIVE, "progress": None}  # fmt: skip
_ORDER = [CallState.CALL_INITIATED, CallState.OUTGOING_PROCEEDING, CallState.CALL_DELIVERED, CallState.ACTIVE]


class CallChannel:
    """The signalling of one call on one TCP connection. `tunnelling`: whether we offer (caller)
    or accept (callee) H.245 tunnelled in H.225.0 messages."""

    def __init__(self, *, tunnelling: bool = True) -> None:
        self.state = CallState.NULL
        self.outgoing = False
        self.call_reference = 0
        self.call_identifier = b""
        self.conference_id = b""
        self.peer_version = 0
        self.want_tunnelling = tunnelling
        self.tunnelling = False  # agreed: both sides said so
        self.fast_start_sent = False  # (callee: our answer went out; never again)
        self.fast_start_done = False  # (caller: the answer came, or fastStart is over)
        self.peer_h245_address: tuple[str, int] | None = None
        self.closed = False  # the connection should be closed once data_to_send() is out
        self._reader = q931.TpktReader()
        self._out = bytearray()
        self._deadline: float | None = None
        self._first_response = True  # (caller: the callee's first response decides tunnelling)

    # -- octets in and out ------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float = 0.0) -> list[Event]:
        """Octets from the TCP connection (b"" when it closed)."""
        if not data:
            self.closed = True
            if self.state not in (CallState.NULL, CallState.RELEASED):
                self.state = CallState.RELEASED
                return [Released(None, None, by_peer=True)]
            return []
        if self.closed:
            return []
        try:
            frames = self._reader.feed(data)
        except q931.Q931Error as exc:
            events: list[Event] = [ProtocolProblem(f"not TPKT: {exc}")]
            events += self._release_now(Cause.INVALID_MESSAGE, "undefinedReason")
            self.closed = True
            return events
        events = []
        for frame in frames:
            events += self._message(frame, now)
            if self.closed:
                break
        return events

    def data_to_send(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    @property
    def deadline(self) -> float | None:
        """When `timeout(now)` should be called (our Setup unanswered)."""
        return self._deadline

    def timeout(self, now: float) -> list[Event]:
        if self._deadline is None or now < self._deadline:
            return []
        self._deadline = None
        if self.state is CallState.CALL_INITIATED:
            return self._release_now(Cause.TIMER_EXPIRY, "unreachableDestination")
        return []

    # -- what the far end sent ------------------------------------------------------------------

    def _message(self, frame: bytes, now: float) -> list[Event]:
        try:
            message = q931.parse(frame)
        except q931.Q931Error as exc:
            return [ProtocolProblem(f"Q.931: {exc}")]
        if message.type not in h225.BODY_OF:
            self._status(Cause.MESSAGE_TYPE_UNKNOWN, message)
            return [ProtocolProblem(f"Q.931 message type 0x{message.type:02x} unknown")]
        if message.type == q931.MessageType.SETUP:
            return self._setup(message)
        if self.state is CallState.NULL or message.call_reference != self.call_reference:
            if self.state is not CallState.NULL and message.type != q931.MessageType.RELEASE_COMPLETE:
                self._send_raw(Signal("releaseComplete", call_reference=message.call_reference,
                                      from_destination=not message.from_destination, cause=Cause.INVALID_CALL_REFERENCE))  # fmt: skip
            return [ProtocolProblem(f"call reference {message.call_reference} is not this call's")]
        if message.type == q931.MessageType.STATUS_ENQUIRY:
            self._status(Cause.STATUS_ENQUIRY_RESPONSE, message)
            return []
        try:
            signal = h225.read(message)
        except H225Error as exc:
            if message.type == q931.MessageType.RELEASE_COMPLETE:  # (over all the same)
                return self._released_by_peer(Signal("releaseComplete", cause=message.cause))
            self._status(Cause.INVALID_ELEMENT_CONTENTS, message)
            return [ProtocolProblem(f"{q931.MessageType(message.type).name}: {exc}")]
        if signal.version:
            self.peer_version = signal.version
        events: list[Event] = []
        if signal.body == "releaseComplete":
            return self._tunnelled(signal) + self._released_by_peer(signal)
        if self.state is CallState.RELEASED:
            return []
        if signal.body in _RESPONSES and self.outgoing:
            events += self._response(signal, now)
        elif signal.body in _TOLERATED:
            if signal.h245_address is not None:
                self.peer_h245_address = signal.h245_address
            if signal.body == "facility":
                events.append(FacilityReceived(signal))
            if signal.fast_start or signal.fast_connect_refused:
                events += self._fast_start_answer(signal)
        else:  # (a Connect or Alerting to the callee, a CallProceeding to the caller's callee ...)
            self._status(Cause.MESSAGE_NOT_COMPATIBLE, message)
            events.append(ProtocolProblem(f"{signal.body} in state {self.state.name}"))
        return self._tunnelled(signal) + events

    def _setup(self, message: q931.Message) -> list[Event]:
        if self.state is not CallState.NULL:
            if message.call_reference == self.call_reference and not self.outgoing:
                self._status(Cause.MESSAGE_NOT_COMPATIBLE, message)
                return [ProtocolProblem("a second Setup for this call")]
            self._send_raw(Signal("releaseComplete", call_reference=message.call_reference,
                                  from_destination=True, release_reason="adaptiveBusy", cause=Cause.USER_BUSY))  # fmt: skip
            return [ProtocolProblem("a Setup for another call on this connection")]
        self.outgoing = False
        self.call_reference = message.call_reference
        try:
            signal = h225.read(message)
        except H225Error as exc:
            self.state = CallState.CALL_PRESENT
            return [ProtocolProblem(f"Setup: {exc}"), *self._release_now(Cause.INVALID_ELEMENT_CONTENTS, "undefinedReason")]
        self.state = CallState.CALL_PRESENT
        self.peer_version = signal.version
        # (a version 1 caller sends no callIdentifier: the call gets one of ours)
        self.call_identifier = signal.call_identifier or secrets.token_bytes(16)
        self.conference_id = signal.conference_id or secrets.token_bytes(16)
        self.tunnelling = self.want_tunnelling and signal.tunnelling
        self.peer_h245_address = signal.h245_address
        return [SetupReceived(signal), *self._tunnelled(signal)]

    def _response(self, signal: Signal, now: float) -> list[Event]:
        """The callee's CallProceeding, Alerting, Connect or Progress."""
        self._deadline = None
        if self._first_response:
            self._first_response = False
            self.tunnelling = self.tunnelling and signal.tunnelling
        if signal.h245_address is not None:
            self.peer_h245_address = signal.h245_address
        events: list[Event] = []
        if signal.fast_start or signal.fast_connect_refused:
            events += self._fast_start_answer(signal)
        target = _RESPONSES[signal.body]
        if target is not None and _ORDER.index(target) > _ORDER.index(self.state):
            self.state = target
        if signal.body == "connect":
            if not self.fast_start_done:
                self.fast_start_done = True  # (no fastStart in the Connect: it is over)
            if signal.conference_id is not None:
                self.conference_id = signal.conference_id
            events.append(Connected(signal))
        else:
            events.append(Progressed(signal))
        return events

    def _fast_start_answer(self, signal: Signal) -> list[Event]:
        if not self.outgoing or self.fast_start_done:
            return []  # (only the first answer counts)
        self.fast_start_done = True
        return [FastStartAnswered(signal.fast_start, refused=signal.fast_connect_refused and not signal.fast_start)]

    def _tunnelled(self, signal: Signal) -> list[Event]:
        return [H245Received(signal.h245_control)] if signal.h245_control else []

    def _released_by_peer(self, signal: Signal) -> list[Event]:
        if self.state is CallState.RELEASED:
            return []
        self.state = CallState.RELEASED
        self.closed = True
        self._deadline = None
        return [Released(signal.cause, signal.release_reason, by_peer=True)]

    # -- what we send ---------------------------------------------------------------------------

    def setup(self, signal: Signal, now: float = 0.0, elements: tuple[q931.InformationElement, ...] = ()) -> None:
        """Places the call: `signal` is our Setup (aliases, addresses, fastStart proposals); the call
        reference and identifiers are ours unless it names them."""
        if self.state is not CallState.NULL:
            raise RuntimeError("setup() on a call in progress")
        self.outgoing = True
        self.call_reference = signal.call_reference or 1 + secrets.randbelow(0x7FFF)
        self.call_identifier = signal.call_identifier or secrets.token_bytes(16)
        self.conference_id = signal.conference_id or secrets.token_bytes(16)
        self.tunnelling = self.want_tunnelling
        self.fast_start_done = not signal.fast_start
        self.state = CallState.CALL_INITIATED
        self._deadline = now + SETUP_TIMEOUT_S
        self._send(replace(signal, body="setup", tunnelling=self.tunnelling), elements)

    def proceed(self, **fields: object) -> None:
        """CallProceeding (fastStart, h245Address ... may go in `fields`)."""
        self._answer("callProceeding", CallState.INCOMING_PROCEEDING, fields)

    def alert(self, **fields: object) -> None:
        self._answer("alerting", CallState.CALL_RECEIVED, fields)

    def connect(self, **fields: object) -> None:
        self._answer("connect", CallState.ACTIVE, fields)

    def _answer(self, body: str, state: CallState, fields: dict[str, object]) -> None:
        if self.outgoing or self.state not in (CallState.CALL_PRESENT, CallState.INCOMING_PROCEEDING, CallState.CALL_RECEIVED):
            raise RuntimeError(f"{body} in state {self.state.name}")
        if fields.get("fast_start") or fields.get("fast_connect_refused"):
            if self.fast_start_sent:
                raise RuntimeError("fastStart was answered already")
            self.fast_start_sent = True
        if body == "connect" and not self.fast_start_sent:
            self.fast_start_sent = True  # (the Connect is the last chance: fastStart is over)
        if state > self.state or state is CallState.ACTIVE:
            self.state = state
        self._send(Signal(body, **fields))  # type: ignore[arg-type]

    def facility(self, reason: str, **fields: object) -> None:
        """A Facility (startH245 with our h245Address, ...)."""
        if self.state in (CallState.NULL, CallState.RELEASED):
            return
        self._send(Signal("facility", facility_reason=reason, **fields))  # type: ignore[arg-type]

    def send_h245(self, pdus: list[bytes]) -> None:
        """H.245 PDUs tunnelled in a Facility of their own (version 4 and later: an empty body)."""
        if not pdus or self.state in (CallState.NULL, CallState.RELEASED):
            return
        body = "empty" if self.peer_version >= 4 else "facility"
        self._send(Signal(body, facility_reason="undefinedReason" if body == "facility" else None, h245_control=tuple(pdus)))

    def release(self, cause: int = Cause.NORMAL, reason: str | None = None) -> list[Event]:
        """Ends the call with ReleaseComplete: `cause` (Q.850) and, when it says more than the
        cause, H.225.0's `reason`. Returns the Released event (nothing if it was over)."""
        if self.state in (CallState.NULL, CallState.RELEASED):
            return []
        return self._release_now(cause, reason)

    def _release_now(self, cause: int, reason: str | None) -> list[Event]:
        if self.state is not CallState.NULL:
            self._send(Signal("releaseComplete", release_reason=reason, cause=cause))
        self.state = CallState.RELEASED
        self.closed = True
        self._deadline = None
        return [Released(cause, reason, by_peer=False)]

    def _send(self, signal: Signal, elements: tuple[q931.InformationElement, ...] = ()) -> None:
        self._send_raw(
            replace(
                signal,
                call_reference=self.call_reference,
                from_destination=not self.outgoing,
                call_identifier=self.call_identifier,
                conference_id=signal.conference_id or self.conference_id,
                tunnelling=self.tunnelling if signal.body != "setup" else signal.tunnelling,
                vendor=signal.vendor or h225.GATEWAY_VENDOR,
            ),
            elements,
        )

    def _send_raw(self, signal: Signal, elements: tuple[q931.InformationElement, ...] = ()) -> None:
        if signal.body == "setup" and not elements:
            elements = (q931.BEARER_VIDEO,)
        self._out += q931.tpkt(q931.serialize(h225.write(signal, elements)))

    def _status(self, cause: int, about: q931.Message) -> None:
        """A Status naming `cause` and our call state, for the message `about`."""
        message = q931.Message(
            q931.MessageType.STATUS,
            about.call_reference,
            not about.from_destination,
            [q931.cause(cause), q931.InformationElement(q931.Element.CALL_STATE, bytes([0 if self.state is CallState.RELEASED else int(self.state)]))],
        )
        uuie = h225.write(Signal("status", call_identifier=self.call_identifier or bytes(16), tunnelling=self.tunnelling))
        message.elements.append(uuie.elements[-1])
        self._out += q931.tpkt(q931.serialize(message))
