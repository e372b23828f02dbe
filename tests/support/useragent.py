"""The SIP user agent core driven in tests: requests written as a peer would, a recorder of what it
sends and reports, and a fake clock stepped through its own timers."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.sip import message, sdp
from gateway.sip.useragent import IncomingCall, MediaPlan, Peer, UserAgent
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
    """A CallEvents that keeps what it is told, in order."""

    log: list[tuple[str, ...]] = field(default_factory=list)
    calls: list[IncomingCall] = field(default_factory=list)
    choices: list[sdp.AudioChoice] = field(default_factory=list)

    def incoming(self, call: IncomingCall) -> None:
        self.calls.append(call)
        self.log.append(("incoming", str(call.call)))

    def media(self, call: int, choice: sdp.AudioChoice) -> None:
        self.choices.append(choice)
        self.log.append(("media", str(call), choice.codec.value, choice.direction))

    def digit(self, call: int, digit: str, via: str) -> None:
        self.log.append(("digit", str(call), digit, via))

    def confirmed(self, call: int) -> None:
        self.log.append(("confirmed", str(call)))

    def disconnected(self, call: int, status: int, reason: str) -> None:
        self.log.append(("disconnected", str(call), str(status), reason))

    def named(self, kind: str) -> list[tuple[str, ...]]:
        return [entry for entry in self.log if entry[0] == kind]


class Harness:
    def __init__(self, max_calls: int = 1000) -> None:
        self.now = 0.0
        self.wire: list[tuple[float, bytes, Peer]] = []
        self.events = Recorder()
        self.ua = UserAgent(
            lambda data, peer: self.wire.append((self.now, data, peer)),
            self.events,
            lambda: self.now,
            local={"udp": ("198.51.100.1", 5060), "tcp": ("198.51.100.1", 5060)},
            max_calls=max_calls,
        )

    def feed(self, data: bytes, peer: Peer = UDP) -> list[message.SipMessage]:
        self.ua.receive(data, peer)
        return self.take()

    def take(self) -> list[message.SipMessage]:
        out = [message.parse(data) for _, data, _ in self.wire]
        self.wire.clear()
        return out

    def run_until(self, until: float) -> list[tuple[float, message.SipMessage]]:
        """Steps the clock from timer to timer up to `until`; what was sent, with when."""
        while (deadline := self.ua.next_deadline) is not None and deadline <= until:
            self.now = deadline
            self.ua.poll(deadline)
        self.now = until
        sent = [(at, message.parse(data)) for at, data, _ in self.wire]
        self.wire.clear()
        return sent

    def invite(
        self, body: str | None = None, peer: Peer = UDP, extra: tuple[str, ...] = ()
    ) -> tuple[int, message.SipMessage]:
        out = self.feed(request("INVITE", body=offer_sdp() if body is None else body, extra=extra), peer)
        assert [m.status for m in out] == [100]
        return self.events.calls[-1].call, out[0]

    def answer(self, call: int, late: bool = False) -> message.SipMessage:
        body = None
        if not late:
            offer = sdp.parse(self.events.calls[-1].offer or "")
            body = sdp.answer(
                offer, local_address="203.0.113.1", audio_port=30000, codecs=PLAN.codecs, session_id=7
            ).sdp
        self.ua.answer(call, 200, plan=PLAN, body=body)
        (ok,) = self.take()
        return ok

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


