"""The SIP user agent core driven in tests: requests written as a peer would, a fake clock stepped
through the core's own timers, and a stand-in for the SIP call layer that pulls from the core after
every call into it (as the asyncio adapter does), answers offers with `sip/negotiation.py` and
records what happened."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.sip import message
from gateway.sip.negotiation import AudioChoice, MediaPlan, MediaSession
from gateway.sip.sdp import SdpError
from gateway.sip.useragent import (
    AnswerReceived,
    CallConfirmed,
    CallEnded,
    DigitReceived,
    Event,
    IncomingCall,
    KeyframeRequested,
    OfferReceived,
    OfferRequested,
    Peer,
    UserAgent,
)
from gateway.transcode.audio import AudioCodec

UDP = Peer("udp", ("192.0.2.10", 5060))
TCP = Peer("tcp", ("192.0.2.10", 50123), 1)
PLAN = MediaPlan(
    "203.0.113.1", 30000, [AudioCodec.OPUS, AudioCodec.PCMA, AudioCodec.PCMU], False, "gw", session_id=7
)
RTPMAPS = {"0": "PCMU/8000", "8": "PCMA/8000", "3": "GSM/8000", "101": "telephone-event/8000"}


def offer_sdp(formats: str = "0 8 101", direction: str = "sendrecv", version: int = 1) -> str:
    lines = ["v=0", f"o=phone 42 {version} IN IP4 192.0.2.10", "s=-", "c=IN IP4 192.0.2.10", "t=0 0"]
    lines.append(f"m=audio 40000 RTP/AVP {formats}")
    lines += [f"a=rtpmap:{pt} {RTPMAPS[pt]}" for pt in formats.split()]
    return "\r\n".join([*lines, f"a={direction}"]) + "\r\n"


def request(
    method: str,
    *,
    branch: str = "z9hG4bKinv1",
    cseq: int = 1,
    to_tag: str = "",
    body: str = "",
    content_type: str = "application/sdp",
    extra: tuple[str, ...] = (),
    uri: str = "sip:4711@gw.example",
    via: str = "SIP/2.0/UDP 192.0.2.10:5060",
    cseq_method: str | None = None,
    call_id: str = "call-1@pbx.example",
) -> bytes:
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: {via};branch={branch}",
        "Max-Forwards: 70",
        'From: "Anna Example" <sip:+4930123@pbx.example>;tag=caller1',
        "To: <sip:4711@gw.example>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        "Contact: <sip:anna@192.0.2.10:5060>",
        *extra,
    ]
    if body:
        lines.append(f"Content-Type: {content_type}")
    return ("\r\n".join(lines) + f"\r\nContent-Length: {len(body.encode())}\r\n\r\n" + body).encode()


@dataclass
class Recorder:
    """What the core reported, in order, as the call layer saw it (media: what it applied)."""

    log: list[tuple[str, ...]] = field(default_factory=list)
    calls: list[IncomingCall] = field(default_factory=list)
    choices: list[AudioChoice] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)  # every event, as it came

    def media(self, call: int, choice: AudioChoice) -> None:
        self.choices.append(choice)
        self.log.append(("media", str(call), choice.codec.value, choice.direction))

    def named(self, kind: str) -> list[tuple[str, ...]]:
        return [entry for entry in self.log if entry[0] == kind]


class Harness:
    """A user agent, a fake clock, and the call layer's part of offer/answer (`MediaSession`s)."""

    def __init__(self, max_calls: int = 1000, auto_answer_offers: bool = True) -> None:
        self.now = 0.0
        self.wire: list[tuple[float, bytes, Peer]] = []
        self.events = Recorder()
        self.sessions: dict[int, MediaSession] = {}
        self.auto_answer_offers = auto_answer_offers  # (False: re-offers wait, for state tests)
        self.ua = UserAgent(
            local={"udp": ("198.51.100.1", 5060), "tcp": ("198.51.100.1", 5060)},
            max_calls=max_calls,
        )

    # -- pulling, as the adapter does ---------------------------------------------------------------

    def pump(self) -> None:
        while True:
            self.wire += [(self.now, data, peer) for data, peer in self.ua.datagrams_to_send(self.now)]
            event = self.ua.next_event()
            if event is None:
                return
            self.events.events.append(event)
            self._handle(event)

    def _handle(self, event: Event) -> None:
        log = self.events.log
        if isinstance(event, IncomingCall):
            self.events.calls.append(event)
            log.append(("incoming", str(event.call)))
        elif isinstance(event, DigitReceived):
            log.append(("digit", str(event.call), event.digit, event.via))
        elif isinstance(event, KeyframeRequested):
            log.append(("keyframe", str(event.call)) + ((event.stream_id,) if event.stream_id else ()))
        elif isinstance(event, CallConfirmed):
            log.append(("confirmed", str(event.call)))
        elif isinstance(event, CallEnded):
            log.append(("disconnected", str(event.call), str(event.status), event.reason))
        elif not self.auto_answer_offers:
            return
        elif isinstance(event, OfferReceived):
            session = self.sessions.get(event.call)
            if session is None:
                self.ua.refuse_offer(event.call, 491, "Request Pending")
                return
            try:
                answer = session.answer(event.sdp)
            except SdpError:
                self.ua.refuse_offer(event.call, 488, "Not Acceptable Here")
                return
            self.events.media(event.call, answer.audio)
            self.ua.accept_offer(event.call, answer.sdp)
        elif isinstance(event, OfferRequested):
            self.ua.accept_offer(event.call, self.sessions[event.call].offer())
        elif isinstance(event, AnswerReceived):
            session = self.sessions[event.call]
            try:
                choice = session.take_answer(event.sdp)
            except SdpError as exc:
                self.ua.hang_up(event.call, (488, exc.reason))
                return
            self.events.media(event.call, choice)

    # -- input and time -----------------------------------------------------------------------------

    def feed(self, data: bytes, peer: Peer = UDP) -> list[message.SipMessage]:
        self.ua.receive(data, peer, self.now)
        self.pump()
        return self.take()

    def take(self) -> list[message.SipMessage]:
        self.pump()
        out = [message.parse(data) for _, data, _ in self.wire]
        self.wire.clear()
        return out

    def run_until(self, until: float) -> list[tuple[float, message.SipMessage]]:
        """Steps the clock from timer to timer up to `until`; what was sent, with when."""
        self.pump()
        while (deadline := self.ua.get_timer()) is not None and deadline <= until:
            self.now = max(self.now, deadline)
            self.ua.handle_timer(self.now)
            self.pump()
        self.now = until
        self.ua.handle_timer(until)  # (the core's clock is at `until` too)
        self.pump()
        sent = [(at, message.parse(data)) for at, data, _ in self.wire]
        self.wire.clear()
        return sent

    # -- commands, as the SIP call layer gives them -------------------------------------------------

    def invite(
        self, body: str | None = None, peer: Peer = UDP, extra: tuple[str, ...] = ()
    ) -> tuple[int, message.SipMessage]:
        out = self.feed(request("INVITE", body=offer_sdp() if body is None else body, extra=extra), peer)
        assert [m.status for m in out] == [100]
        return self.events.calls[-1].call, out[0]

    def answer_call(self, call: int, plan: MediaPlan = PLAN) -> None:
        """What SipCall does: our answer to the INVITE's offer, or our offer for a late one."""
        session = self.sessions[call] = MediaSession(plan)
        offer = next((c.offer for c in self.events.calls if c.call == call), None)
        if offer is not None:
            self.ua.answer(call, session.answer(offer).sdp)
        else:
            self.ua.answer(call, session.offer())
        self.pump()

    def answer(self, call: int, late: bool = False) -> message.SipMessage:
        if late:
            assert self.events.calls[-1].offer is None
        self.answer_call(call)
        (ok,) = self.take()
        return ok

    def reject(self, call: int, status: int, reason: str | None = None, retry_after_s: int | None = None) -> None:
        self.ua.reject(call, status, reason, retry_after_s)
        self.pump()

    def hang_up(self, call: int, cause: tuple[int, str] | None = None) -> None:
        self.ua.hang_up(call, cause)
        self.pump()

    def dial(self, target: str, peer: Peer, plan: MediaPlan = PLAN, display_name: str = "") -> int:
        session = MediaSession(plan)
        call = self.ua.invite(target, peer, session.offer(), display_name)
        self.sessions[call] = session
        self.pump()
        return call

    def connect(self, peer: Peer = UDP, extra: tuple[str, ...] = ()) -> tuple[int, str]:
        """An answered, acknowledged call: (call number, our To tag)."""
        call, _ = self.invite(peer=peer, extra=extra)
        tag = message.NameAddr.parse(self.answer(call).get("to") or "").tag
        assert self.feed(request("ACK", branch="z9hG4bKack1", to_tag=tag), peer) == []
        return call, tag


def statuses(messages: list[message.SipMessage]) -> list[int]:
    return [m.status for m in messages]


def to_tag(msg: message.SipMessage) -> str:
    return message.NameAddr.parse(msg.get("to") or "").tag


# -- a new call -----------------------------------------------------------------------------------




def response_to(
    sent: message.SipMessage,
    status: int,
    reason: str,
    to_tag: str = "callee1",
    body: str = "",
    extra: tuple[str, ...] = (),
) -> bytes:
    """The far end's answer to a request of ours (our INVITE, or one in the dialog: its To tag kept)."""
    to = sent.get("to") or ""
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"Via: {via}" for via in sent.all("via")]
    lines += [
        f"From: {sent.get('from')}",
        "To: " + to + (f";tag={to_tag}" if status > 100 and not message.NameAddr.parse(to).tag else ""),
        f"Call-ID: {sent.call_id}",
        f"CSeq: {sent.get('cseq')}",
        "Contact: <sip:room@192.0.2.20:5070>",
        "Record-Route: <sip:proxy1.example;lr>, <sip:proxy2.example;lr>",
        *extra,
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    return ("\r\n".join(lines) + f"\r\nContent-Length: {len(body.encode())}\r\n\r\n" + body).encode()
