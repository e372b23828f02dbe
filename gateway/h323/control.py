"""H.245 control of one H.323 call, sans-IO: PDUs and time in, PDUs and events out, whether the
PDUs travel tunnelled in H.225.0 messages or on a separate TCP connection (the adapter decides;
this core sees neither).

Procedures (H.245 8 and annex C, the parts H.323 endpoints use):

- Capability exchange: `start()` sends our TerminalCapabilitySet; the far end's is acknowledged
  (CapabilitiesReceived) or, unreadable, rejected. T101: no Ack in TIMEOUT_S fails the procedure.
- Master/slave determination (terminalType, then the status determination numbers modulo 2^24),
  three-way: whoever receives an Ack to its own request answers it with an Ack; an Ack after we
  acknowledged theirs ends the procedure with nothing further. Identical numbers: a new number,
  at most three times. T106 as T101.
- Logical channels: the far end's OpenLogicalChannel becomes ChannelOffered; the call layer answers
  with `accept_channel` (our RTP/RTCP address in the Ack) or `reject_channel`. Ours go out with
  `open_channel` and come back as ChannelEstablished (where to send) or ChannelRefused. Numbers are
  per opener: the far end's channel 1 and ours 1 are different channels. CloseLogicalChannel both
  ways; channels agreed by fastStart are adopted (`adopt`).
- Commands and indications: videoFastUpdatePicture (KeyframeRequested, `ask_keyframe`),
  flowControlCommand (BitrateLimited), userInputIndication (UserInput; alphanumeric and signal),
  roundTripDelay (answered; ours measured), endSessionCommand (SessionEnded, answered once), H.239's
  generic messages (H239Message, and `send_h239`). A request we do not know gets
  functionNotUnderstood; anything unreadable is a ControlProblem for the log, never an exception.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, replace
from typing import Any

from gateway.h323 import h245
from gateway.h323.h245 import Capabilities, Channel, Codec, H245Error, MediaKind, Session

TIMEOUT_S = 30.0  # T101/T103/T106: an unanswered request fails its procedure
MSD_RETRIES = 3
MAX_CHANNELS = 16  # channels the far end may have open (audio, video, content, data ...)


# -- events ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CapabilitiesReceived:
    capabilities: Capabilities


@dataclass(frozen=True)
class MasterSlaveDetermined:
    master: bool  # we are the master


@dataclass(frozen=True)
class ChannelOffered:
    """The far end opens a channel to send us media: accept or reject it."""

    channel: Channel


@dataclass(frozen=True)
class ChannelEstablished:
    """Our channel is acknowledged: send RTP to `media`, RTCP to `control`."""

    channel: Channel
    media: tuple[str, int] | None
    control: tuple[str, int] | None


@dataclass(frozen=True)
class ChannelRefused:
    channel: Channel
    cause: str


@dataclass(frozen=True)
class ChannelClosed:
    """The far end closed a channel it sent on (`incoming`), or one of ours it received."""

    number: int
    incoming: bool


@dataclass(frozen=True)
class KeyframeRequested:
    number: int  # our channel the far end wants a picture on


@dataclass(frozen=True)
class BitrateLimited:
    number: int  # our channel
    bitrate: int | None  # bit/s; None: no restriction


@dataclass(frozen=True)
class UserInput:
    keys: str


@dataclass(frozen=True)
class RoundTrip:
    seconds: float


@dataclass(frozen=True)
class SessionEnded:
    pass


@dataclass(frozen=True)
class H239Message:
    kind: str  # request, response, command, indication
    sub_message: int
    parameters: dict[int, tuple[str, Any]]


@dataclass(frozen=True)
class ProcedureFailed:
    what: str  # capability exchange, master/slave determination, opening channel N


@dataclass(frozen=True)
class ControlProblem:
    what: str  # for the log


Event = (
    CapabilitiesReceived | MasterSlaveDetermined | ChannelOffered | ChannelEstablished | ChannelRefused | ChannelClosed
    | KeyframeRequested | BitrateLimited | UserInput | RoundTrip | SessionEnded | H239Message | ProcedureFailed | ControlProblem
)  # fmt: skip


class _Msd(enum.Enum):
    IDLE = "idle"
    SENT = "sent"  # our request out, nothing back yet
    ACKED_THEIRS = "acked theirs"  # we answered their request; their Ack to ours (or to our Ack) pending
    DONE = "done"
    FAILED = "failed"


class H245Control:
    def __init__(self, ours: Capabilities, *, terminal_type: int = h245.TERMINAL_TYPE_MCU) -> None:
        self.ours = ours
        self.terminal_type = terminal_type
        self.theirs: Capabilities | None = None
        self.master: bool | None = None
        self.outgoing: dict[int, Channel] = {}  # ours: number -> channel (acknowledged or not)
        self.established: set[int] = set()
        self.incoming: dict[int, Channel] = {}  # the far end's, once we accepted them
        self._offered: dict[int, Channel] = {}  # the far end's, awaiting accept/reject
        self._out: list[bytes] = []
        self._tcs_sequence = 0
        self._tcs_deadline: float | None = None
        self._msd = _Msd.IDLE
        self._msd_number = secrets.randbelow(1 << 24)
        self._msd_retries = 0
        self._msd_deadline: float | None = None
        self._channel_deadlines: dict[int, float] = {}
        self._next_channel = 1
        self._rtd_sequence = 0
        self._rtd_sent: dict[int, float] = {}
        self.ended = False  # we sent endSessionCommand
        self.started = False

    # -- PDUs in and out --------------------------------------------------------------------------

    def pdus_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def start(self, now: float) -> None:
        """Our capabilities and master/slave determination (once)."""
        if self.started:
            return
        self.started = True
        self._tcs_sequence = 1
        self._out.append(h245.terminal_capability_set(self._tcs_sequence, self.ours))
        self._tcs_deadline = now + TIMEOUT_S
        if self._msd is _Msd.IDLE:
            self._send_msd(now)

    def receive(self, pdu: bytes, now: float) -> list[Event]:
        try:
            kind, name, value = h245.read(pdu)
        except H245Error as exc:
            return [ControlProblem(f"H.245 PDU unreadable: {exc}")]
        try:
            handler = getattr(self, f"_on_{name}", None)
            if handler is None:
                return self._unknown(kind, name, value)
            events: list[Event] = handler(value, now)
            return events
        except (KeyError, TypeError, ValueError, IndexError, H245Error) as exc:
            return [ControlProblem(f"{name}: {type(exc).__name__}: {exc}")]

    def _unknown(self, kind: str, name: str, value: Any) -> list[Event]:
        if kind == "request":
            try:
                self._out.append(h245.function_not_understood(kind, name, value))
            except H245Error:
                pass
        return [ControlProblem(f"{kind} {name} not handled")]

    @property
    def deadline(self) -> float | None:
        deadlines = [d for d in (self._tcs_deadline, self._msd_deadline, *self._channel_deadlines.values()) if d is not None]
        return min(deadlines) if deadlines else None

    def timeout(self, now: float) -> list[Event]:
        events: list[Event] = []
        if self._tcs_deadline is not None and now >= self._tcs_deadline:
            self._tcs_deadline = None
            events.append(ProcedureFailed("capability exchange"))
        if self._msd_deadline is not None and now >= self._msd_deadline:
            self._msd_deadline = None
            self._msd = _Msd.FAILED
            events.append(ProcedureFailed("master/slave determination"))
        for number, deadline in list(self._channel_deadlines.items()):
            if now >= deadline:
                del self._channel_deadlines[number]
                channel = self.outgoing.pop(number, None)
                if channel is not None:
                    events.append(ChannelRefused(channel, "no answer"))
        return events

    # -- capability exchange --------------------------------------------------------------------

    def _on_terminalCapabilitySet(self, value: Any, now: float) -> list[Event]:
        sequence = value["sequenceNumber"]
        try:
            theirs = h245.read_capabilities(value)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            self._out.append(h245.terminal_capability_set_reject(sequence))
            return [ControlProblem(f"terminal capability set unreadable: {type(exc).__name__}")]
        self.theirs = theirs
        self._out.append(h245.terminal_capability_set_ack(sequence))
        return [CapabilitiesReceived(theirs)]

    def _on_terminalCapabilitySetAck(self, value: Any, now: float) -> list[Event]:
        if value["sequenceNumber"] == self._tcs_sequence:
            self._tcs_deadline = None
        return []

    def _on_terminalCapabilitySetReject(self, value: Any, now: float) -> list[Event]:
        self._tcs_deadline = None
        return [ProcedureFailed("capability exchange (rejected)")]

    def _on_terminalCapabilitySetRelease(self, value: Any, now: float) -> list[Event]:
        return []

    # -- master/slave determination ---------------------------------------------------------------

    def _send_msd(self, now: float) -> None:
        self._out.append(h245.master_slave_determination(self._msd_number, self.terminal_type))
        self._msd = _Msd.SENT
        self._msd_deadline = now + TIMEOUT_S

    def _decide(self, terminal_type: int, number: int) -> bool | None:
        """Whether we are master against (terminal_type, number); None: indeterminate."""
        if terminal_type != self.terminal_type:
            return self.terminal_type > terminal_type
        difference = (number - self._msd_number) & 0xFFFFFF
        if difference in (0, 0x800000):
            return None
        return difference < 0x800000

    def _on_masterSlaveDetermination(self, value: Any, now: float) -> list[Event]:
        master = self._decide(value["terminalType"], value["statusDeterminationNumber"])
        if master is None:
            if self._msd is _Msd.SENT and self._msd_retries < MSD_RETRIES:
                self._msd_retries += 1
                self._msd_number = secrets.randbelow(1 << 24)
                self._send_msd(now)
                return []
            self._out.append(h245.master_slave_reject())
            return [ControlProblem("master/slave determination: identical numbers")]
        self.master = master
        self._out.append(h245.master_slave_ack(peer_is_master=not master))
        self._msd = _Msd.ACKED_THEIRS
        self._msd_deadline = now + TIMEOUT_S
        return []

    def _on_masterSlaveDeterminationAck(self, value: Any, now: float) -> list[Event]:
        we_are_master = value["decision"][0] == "master"  # (the decision names the recipient's role)
        if self._msd is _Msd.SENT:
            # They answered our request without one of their own: answer their Ack (the third step).
            self.master = we_are_master
            self._out.append(h245.master_slave_ack(peer_is_master=not we_are_master))
        elif self._msd is not _Msd.ACKED_THEIRS:
            return []  # (a late or repeated Ack: nothing further)
        elif self.master != we_are_master:
            self._msd = _Msd.FAILED
            self._msd_deadline = None
            return [ProcedureFailed("master/slave determination (the two sides disagree)")]
        self._msd = _Msd.DONE
        self._msd_deadline = None
        assert self.master is not None
        return [MasterSlaveDetermined(self.master)]

    def _on_masterSlaveDeterminationReject(self, value: Any, now: float) -> list[Event]:
        if self._msd_retries < MSD_RETRIES:
            self._msd_retries += 1
            self._msd_number = secrets.randbelow(1 << 24)
            self._send_msd(now)
            return []
        self._msd = _Msd.FAILED
        self._msd_deadline = None
        return [ProcedureFailed("master/slave determination (rejected)")]

    def _on_masterSlaveDeterminationRelease(self, value: Any, now: float) -> list[Event]:
        return []

    # -- logical channels -----------------------------------------------------------------------

    def _on_openLogicalChannel(self, value: Any, now: float) -> list[Event]:
        number = value["forwardLogicalChannelNumber"]
        try:
            channel = h245.read_channel(value)
        except H245Error as exc:
            self._out.append(h245.open_logical_channel_reject(number, "dataTypeNotSupported"))
            return [ControlProblem(f"channel {number} refused: {exc}")]
        if channel.reverse:  # (bidirectional channels are T.120's: not ours)
            self._out.append(h245.open_logical_channel_reject(number, "unsuitableReverseParameters"))
            return [ControlProblem(f"channel {number} refused: bidirectional")]
        if len(self.incoming) + len(self._offered) >= MAX_CHANNELS and number not in self.incoming:
            self._out.append(h245.open_logical_channel_reject(number, "insufficientBandwidth"))
            return [ControlProblem(f"channel {number} refused: too many channels")]
        if channel.session == 0 and self.master:  # (the slave asks the master to assign a session)
            session = {MediaKind.AUDIO: Session.AUDIO, MediaKind.VIDEO: Session.VIDEO, MediaKind.CONTENT: Session.CONTENT}
            channel = replace(channel, session=session[channel.kind])
        self._offered[number] = channel
        return [ChannelOffered(channel)]

    def accept_channel(self, channel: Channel, media: tuple[str, int], control: tuple[str, int]) -> None:
        """Acknowledge the far end's channel: its RTP goes to `media`, our RTCP is `control`."""
        self._offered.pop(channel.number, None)
        self.incoming[channel.number] = channel
        self._out.append(h245.channel_ack(channel, media, control))

    def reject_channel(self, channel: Channel, cause: str = "dataTypeNotSupported") -> None:
        self._offered.pop(channel.number, None)
        self._out.append(h245.open_logical_channel_reject(channel.number, cause))

    def open_channel(self, session: int, codec: Codec, control: tuple[str, int], payload_type: int | None, now: float) -> Channel:
        """Opens a channel we send `codec` on; ChannelEstablished says where to."""
        number = self._allocate()
        channel = Channel(number, session, codec, control=control, payload_type=payload_type)
        self.outgoing[number] = channel
        self._channel_deadlines[number] = now + TIMEOUT_S
        self._out.append(h245.open_logical_channel(channel))
        return channel

    def _allocate(self) -> int:
        while self._next_channel in self.outgoing:
            self._next_channel += 1
        number, self._next_channel = self._next_channel, self._next_channel + 1
        return number

    def adopt(self, outgoing: list[Channel], incoming: list[Channel]) -> None:
        """Channels agreed by fastStart: ours (we send) and the far end's (we receive)."""
        for channel in outgoing:
            self.outgoing[channel.number] = channel
            self.established.add(channel.number)
            self._next_channel = max(self._next_channel, channel.number + 1)
        for channel in incoming:
            self.incoming[channel.number] = channel

    def _on_openLogicalChannelAck(self, value: Any, now: float) -> list[Event]:
        ack = h245.read_channel_ack(value)
        channel = self.outgoing.get(ack.number)
        if channel is None or ack.number in self.established:
            return [ControlProblem(f"ack for channel {ack.number}, which we did not open")]
        self._channel_deadlines.pop(ack.number, None)
        if ack.media is None:
            self.outgoing.pop(ack.number)
            self._out.append(h245.close_logical_channel(ack.number))
            return [ChannelRefused(channel, "no media address in the ack")]
        if ack.session and ack.session != channel.session:
            channel = self.outgoing[ack.number] = replace(channel, session=ack.session)  # (the master assigned it)
        self.established.add(ack.number)
        return [ChannelEstablished(channel, ack.media, ack.control)]

    def _on_openLogicalChannelReject(self, value: Any, now: float) -> list[Event]:
        number = value["forwardLogicalChannelNumber"]
        self._channel_deadlines.pop(number, None)
        channel = self.outgoing.pop(number, None)
        return [ChannelRefused(channel, value["cause"][0])] if channel is not None else []

    def _on_openLogicalChannelConfirm(self, value: Any, now: float) -> list[Event]:
        return []

    def close_channel(self, number: int) -> None:
        if self.outgoing.pop(number, None) is not None:
            self.established.discard(number)
            self._channel_deadlines.pop(number, None)
            self._out.append(h245.close_logical_channel(number))

    def _on_closeLogicalChannel(self, value: Any, now: float) -> list[Event]:
        number = value["forwardLogicalChannelNumber"]
        self._out.append(h245.close_logical_channel_ack(number))
        self._offered.pop(number, None)
        if self.incoming.pop(number, None) is None:
            return []
        return [ChannelClosed(number, incoming=True)]

    def _on_closeLogicalChannelAck(self, value: Any, now: float) -> list[Event]:
        return []

    def _on_requestChannelClose(self, value: Any, now: float) -> list[Event]:
        """The far end no longer wants one of our channels: it is closed."""
        number = value["forwardLogicalChannelNumber"]
        self._out.append(h245.message("response", "requestChannelCloseAck", {"forwardLogicalChannelNumber": number}))
        if number not in self.outgoing:
            return []
        self.close_channel(number)
        return [ChannelClosed(number, incoming=False)]

    # -- commands and indications ---------------------------------------------------------------

    def _on_miscellaneousCommand(self, value: Any, now: float) -> list[Event]:
        if value["type"][0] in ("videoFastUpdatePicture", "videoFastUpdateGOB", "videoFastUpdateMB", "lostPicture"):
            return [KeyframeRequested(value["logicalChannelNumber"])]
        return []

    def ask_keyframe(self, number: int) -> None:
        """videoFastUpdatePicture on the far end's channel `number` (the one we receive)."""
        self._out.append(h245.video_fast_update(number))

    def _on_flowControlCommand(self, value: Any, now: float) -> list[Event]:
        scope, restriction = value["scope"], value["restriction"]
        if scope[0] != "logicalChannelNumber":
            return []
        bitrate = restriction[1] * 100 if restriction[0] == "maximumBitRate" else None
        return [BitrateLimited(scope[1], bitrate)]

    def limit(self, number: int, bitrate: int | None) -> None:
        """Asks the far end to send at most `bitrate` bit/s on its channel `number`."""
        self._out.append(h245.flow_control(number, bitrate))

    def _on_userInput(self, value: Any, now: float) -> list[Event]:
        keys = h245.read_user_input(value)
        return [UserInput(keys)] if keys else []

    def send_user_input(self, keys: str) -> None:
        self._out.append(h245.user_input(keys))

    def _on_roundTripDelayRequest(self, value: Any, now: float) -> list[Event]:
        self._out.append(h245.round_trip_delay_response(value["sequenceNumber"]))
        return []

    def measure_round_trip(self, now: float) -> None:
        self._rtd_sequence = (self._rtd_sequence + 1) % 256
        self._rtd_sent = {self._rtd_sequence: now}
        self._out.append(h245.round_trip_delay_request(self._rtd_sequence))

    def _on_roundTripDelayResponse(self, value: Any, now: float) -> list[Event]:
        sent = self._rtd_sent.pop(value["sequenceNumber"], None)
        return [RoundTrip(now - sent)] if sent is not None else []

    def _on_endSessionCommand(self, value: Any, now: float) -> list[Event]:
        self.end_session()
        return [SessionEnded()]

    def end_session(self) -> None:
        """endSessionCommand (once): H.245 is over, the call is released next."""
        if not self.ended:
            self.ended = True
            self._out.append(h245.end_session())

    def _on_functionNotUnderstood(self, value: Any, now: float) -> list[Event]:
        return [ControlProblem(f"the far end did not understand our {value[0]} {value[1][0]}")]

    def _on_miscellaneousIndication(self, value: Any, now: float) -> list[Event]:
        return []

    def _generic(self, kind: str, value: Any) -> list[Event]:
        oid, sub_message, parameters = h245.read_generic(value)
        if oid != h245.H239_MESSAGE or sub_message is None:
            return [ControlProblem(f"generic {kind} {oid} not handled")]
        return [H239Message(kind, sub_message, parameters)]

    def _on_genericRequest(self, value: Any, now: float) -> list[Event]:
        return self._generic("request", value)

    def _on_genericResponse(self, value: Any, now: float) -> list[Event]:
        return self._generic("response", value)

    def _on_genericCommand(self, value: Any, now: float) -> list[Event]:
        return self._generic("command", value)

    def _on_genericIndication(self, value: Any, now: float) -> list[Event]:
        return self._generic("indication", value)

    def send_h239(self, kind: str, sub_message: int, parameters: list[tuple[int, tuple[str, Any]]]) -> None:
        self._out.append(h245.generic_message(kind, sub_message, parameters))
