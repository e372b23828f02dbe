"""RFC 4475, the SIP torture test messages (all 49 of section 3, tests/data/rfc4475/), as the RFC
says each must be handled: the valid ones get a normal answer (never 400), the invalid ones 400 (505
for an unknown SIP version, 416 for a Request-URI scheme we do not serve, 420, 415, 406 ...) or
nothing when they are responses or no answer can be formed. First against the user agent core in
process (every answer it sends must parse again), then against the real gateway process over UDP and
over TCP, where after every message the next OPTIONS must be answered within 50 ms.

The gateway here runs without the voice menu, so an INVITE to an unknown number is refused 404 and
no call is left behind; INVITE refusals are acknowledged so nothing is retransmitted for long."""

from __future__ import annotations

import re
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.sip import message
from gateway.sip.sdp import AudioChoice
from gateway.sip.useragent import IncomingCall, Peer, UserAgent
from tests.conftest import TEST_CONFIG, RunningGateway, start_gateway, stop_and_check
from tests.sip_client import RawCaller, Response, parse_message

DATA = Path(__file__).parent / "data" / "rfc4475"
_HEX = re.compile(r"<hex>([0-9A-Fa-f]*)</hex>")
PROBE_BUDGET_S = 0.050  # the next OPTIONS is answered within this, after any torture message


def rfc4475_message(name: str) -> bytes:
    """The exact octets of one RFC 4475 message, from the RFC's notation (see the README there):
    lines end in CRLF, <allOneLine> blocks are one line, <hex> is octets."""
    lines = (DATA / f"{name}.txt").read_text(encoding="ascii").split("\n")
    assert lines.pop() == "", "a message file ends with a line end"
    out = b""
    index = 0
    while index < len(lines):
        if lines[index] == "<allOneLine>":
            end = lines.index("</allOneLine>", index)
            logical, index = "".join(lines[index + 1 : end]), end + 1
        else:
            logical, index = lines[index], index + 1
        position = 0
        for match in _HEX.finditer(logical):
            out += logical[position : match.start()].encode("ascii") + bytes.fromhex(match.group(1))
            position = match.end()
        out += logical[position:].encode("ascii") + b"\r\n"
    return out


NO_ANSWER = None
CLOSED = -1  # the gateway closes the TCP connection: the stream's framing is lost


@dataclass(frozen=True)
class Expected:
    section: str
    status: int | None  # the final answer over UDP; NO_ANSWER: none at all
    why: str
    tcp: int | None | str = "same"  # over TCP when it differs
    stream_usable: bool = True  # over TCP, whether the connection can carry the next request

    @property
    def tcp_status(self) -> int | None:
        return self.status if self.tcp == "same" else self.tcp  # type: ignore[return-value]


# 404 means: accepted and routed, and refused by the gateway because no room has that number (the
# voice menu is off here); the user agent core itself sends 100 Trying and reports the call.
EXPECTED: dict[str, Expected] = {
    # 3.1.1 valid messages: a normal answer
    "wsinv": Expected("3.1.1.1", 481, "valid; its To has a tag, so it asks for a dialog we do not have"),
    "intmeth": Expected("3.1.1.2", 501, "valid; an unknown method: 501 Not Implemented"),
    "esc01": Expected("3.1.1.3", 404, "valid; the user is sips:user@example.com, no such room"),
    "escnull": Expected("3.1.1.4", 405, "valid; REGISTER: we are no registrar"),
    "esc02": Expected("3.1.1.5", 501, "valid; RE%47IST%45R is an unknown method (not REGISTER)"),
    "lwsdisp": Expected("3.1.1.6", 200, "valid OPTIONS"),
    "longreq": Expected("3.1.1.7", 404, "valid; 34 Vias, long values, no such room"),
    "dblreq": Expected(
        "3.1.1.8", 405, "valid REGISTER; the INVITE after it is noise in a datagram",
        tcp=404, stream_usable=False,  # on a stream it is a second request (then 3 octets of noise)
    ),
    "semiuri": Expected("3.1.1.9", 200, "valid OPTIONS"),
    "transports": Expected("3.1.1.10", 200, "valid OPTIONS"),
    "mpart01": Expected("3.1.1.11", 405, "valid; MESSAGE is not a method of ours"),
    "unreason": Expected("3.1.1.12", NO_ANSWER, "a valid response matching nothing: dropped"),
    "noreason": Expected("3.1.1.13", NO_ANSWER, "a valid response matching nothing: dropped"),
    # 3.1.2 invalid messages: 400 (or another error), or dropped
    "badinv01": Expected("3.1.2.1", 400, "empty Via and Contact parameters"),
    "clerr": Expected(
        "3.1.2.2", 400, "body shorter than Content-Length",
        tcp=NO_ANSWER, stream_usable=False,  # on a stream the rest may still come: it waits
    ),
    "ncl": Expected("3.1.2.3", 400, "negative Content-Length", tcp=CLOSED, stream_usable=False),
    "scalar02": Expected("3.1.2.4", 400, "CSeq above 2**31"),
    "scalarlg": Expected("3.1.2.5", NO_ANSWER, "a response matching nothing: dropped"),
    "quotbal": Expected("3.1.2.6", 400, "unterminated quote in To"),
    "ltgtruri": Expected("3.1.2.7", 400, "Request-URI in <>"),
    "lwsruri": Expected("3.1.2.8", 400, "blank inside the Request-URI"),
    "lwsstart": Expected("3.1.2.9", 400, "two spaces between request line elements (the RFC allows refusing)"),
    "trws": Expected("3.1.2.10", 400, "spaces after SIP/2.0 (the RFC allows refusing)"),
    "escruri": Expected("3.1.2.11", 400, "headers in the Request-URI (the RFC allows refusing)"),
    "baddate": Expected("3.1.2.12", 404, "Date is not read, so its time zone does not matter (as the RFC prefers)"),
    "regbadct": Expected("3.1.2.13", 400, "Contact URI with ? not in <>"),
    "badaspec": Expected("3.1.2.14", 400, "blanks inside <> in To"),
    "baddn": Expected("3.1.2.15", 400, "unquoted display names with commas"),
    "badvers": Expected("3.1.2.16", 505, "SIP/7.0"),
    "mismatch01": Expected("3.1.2.17", 400, "CSeq method differs from the request's"),
    "mismatch02": Expected("3.1.2.18", 400, "unknown method and CSeq mismatch (400 is allowed)"),
    "bigcode": Expected("3.1.2.19", NO_ANSWER, "response code 4294967301: dropped"),
    # 3.2 transaction layer
    "badbranch": Expected("3.2.1", 400, "branch is only the magic cookie (refused statelessly, as the RFC suggests)"),
    # 3.3 application layer
    "insuf": Expected("3.3.1", 400, "To, From and Call-ID missing; answered with what it has"),
    "unkscm": Expected("3.3.2", 416, "Request-URI scheme unknown"),
    "novelsc": Expected("3.3.3", 416, "Request-URI scheme soap.beep"),
    "unksm2": Expected("3.3.4", 405, "REGISTER; method inspection comes first (RFC 3261 8.2.1)"),
    "bext01": Expected("3.3.5", 420, "Require of extensions we lack (Proxy-Require is for proxies)"),
    "invut": Expected("3.3.6", 415, "an INVITE body we cannot read"),
    "regaut01": Expected("3.3.7", 405, "REGISTER"),
    "multi01": Expected("3.3.8", 400, "To, From, Call-ID and CSeq twice"),
    "mcl01": Expected("3.3.9", 400, "two Content-Lengths", tcp=CLOSED, stream_usable=False),
    "bcast": Expected("3.3.10", NO_ANSWER, "a response matching nothing: dropped"),
    "zeromf": Expected("3.3.11", 200, "Max-Forwards 0 at an endpoint: processed"),
    "cparam01": Expected("3.3.12", 405, "REGISTER"),
    "cparam02": Expected("3.3.13", 405, "REGISTER"),
    "regescrt": Expected("3.3.14", 405, "REGISTER"),
    "sdp01": Expected("3.3.15", 406, "Accept without application/sdp"),
    # 3.4 backward compatibility
    "inv2543": Expected(
        "3.4.1", 404, "an RFC 2543 INVITE is taken (no branch, no Max-Forwards, no Content-Length)",
        stream_usable=False,  # without Content-Length its SDP stays in the stream as noise
    ),
}


def test_the_corpus_is_the_49_messages_of_rfc_4475() -> None:
    assert sorted(path.stem for path in DATA.glob("*.txt")) == sorted(EXPECTED) and len(EXPECTED) == 49
    for name in EXPECTED:
        data = rfc4475_message(name)
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(-?[0-9]+)", head)
        if length and name not in ("dblreq", "clerr", "ncl", "mcl01"):
            assert int(length.group(1)) == len(body), name  # the octets are the RFC's
    assert len(rfc4475_message("mpart01").partition(b"\r\n\r\n")[2]) == 553


# -- the user agent core, in process ------------------------------------------------------------------


@dataclass
class Events:
    calls: list[IncomingCall] = field(default_factory=list)

    def incoming(self, call: IncomingCall) -> None:
        self.calls.append(call)

    def media(self, call: int, choice: AudioChoice) -> None: ...
    def digit(self, call: int, digit: str, via: str) -> None: ...
    def confirmed(self, call: int) -> None: ...
    def disconnected(self, call: int, status: int, reason: str) -> None: ...


@pytest.mark.parametrize("name", list(EXPECTED))
def test_the_user_agent_core_answers_each_torture_message_as_the_rfc_says(name: str) -> None:
    sent: list[bytes] = []
    events = Events()
    ua = UserAgent(lambda data, peer: sent.append(data), events, lambda: 0.0, local={"udp": ("192.0.2.1", 5060)})
    ua.receive(rfc4475_message(name), Peer("udp", ("198.51.100.7", 5060)))
    answers = [message.parse(data) for data in sent]  # whatever goes out parses again
    expected = EXPECTED[name]
    if expected.status == 404:  # routed: the 404 is the gateway's, the core reports the call
        assert [a.status for a in answers] == [100] and len(events.calls) == 1
    elif expected.status is NO_ANSWER:
        assert answers == [] and events.calls == []
    else:
        assert [a.status for a in answers] == [expected.status], [a.reason for a in answers]
        assert events.calls == []
    for answer in answers:
        assert not answer.is_request and answer.all("via")


def test_the_valid_messages_read_as_the_rfc_says() -> None:
    wsinv = message.parse(rfc4475_message("wsinv"))
    assert [via.host for via in map(message.Via.parse, wsinv.all("via"))] == [
        "192.0.2.2", "spindle.example.com", "192.168.255.111",
    ]
    assert wsinv.top_via.branch == "390skdjuw" and wsinv.cseq == (9, "INVITE")
    assert message.NameAddr.parse(wsinv.get("from") or "").display_name == 'J Rosenberg \\"'
    assert message.NameAddr.parse(wsinv.get("to") or "").tag == "1918181833n"
    assert message.NameAddr.parse(wsinv.get("contact") or "").display_name == 'Quoted string ""'
    assert wsinv.get("newfangledheader") == "newfangled value continued newfangled value"
    assert wsinv.get("subject") == "" and len(wsinv.body) == 150
    intmeth = message.parse(rfc4475_message("intmeth"))
    assert intmeth.method == "!INTERESTING-METHOD0123456789_*+`.%INDEED'~"
    assert message.NameAddr.parse(intmeth.get("to") or "").display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert message.NameAddr.parse(intmeth.get("from") or "").tag == "_token~1'+`*%!-."
    assert message.uri_user(message.parse(rfc4475_message("esc01")).uri) == "sips:user@example.com"
    assert message.uri_user(message.parse(rfc4475_message("semiuri")).uri) == "user"
    escnull = message.parse(rfc4475_message("escnull"))
    assert [message.uri_user(message.NameAddr.parse(c).uri) for c in escnull.all("contact")] == ["\x00", "\x00\x00"]
    assert message.parse(rfc4475_message("esc02")).all("contact") == [
        "<sip:alias1@host1.example.com>", "<sip:alias3@host3.example.com>",
    ]
    assert message.NameAddr.parse(message.parse(rfc4475_message("lwsdisp")).get("from") or "").display_name == "caller"
    longreq = message.parse(rfc4475_message("longreq"))
    assert len(longreq.all("via")) == 34 and len(longreq.body) == 150
    dblreq = message.parse(rfc4475_message("dblreq"))
    assert dblreq.method == "REGISTER" and dblreq.body == b""
    assert [message.Via.parse(v).transport for v in message.parse(rfc4475_message("transports")).all("via")] == [
        "UDP", "SCTP", "TLS", "UNKNOWN", "TCP",
    ]
    mpart01 = message.parse(rfc4475_message("mpart01"))
    assert len(mpart01.body) == 553 and b"\x00" in mpart01.body
    unreason = message.parse(rfc4475_message("unreason"))
    assert unreason.status == 200 and unreason.reason.endswith("\u043f\u0440\u043e\u0441\u0442\u043e\u0435")
    noreason = message.parse(rfc4475_message("noreason"))
    assert (noreason.status, noreason.reason) == (100, "")
    for name in ("wsinv", "esc01", "longreq", "mpart01", "unreason"):
        parsed = message.parse(rfc4475_message(name))
        again = message.parse(parsed.serialize())
        assert (again.method, again.uri, again.status, again.reason, again.body) == (
            parsed.method, parsed.uri, parsed.status, parsed.reason, parsed.body,
        )


# -- the gateway process, over UDP and TCP -------------------------------------------------------------

MENU_OFF = TEST_CONFIG.replace("sip: {host: 127.0.0.1, port: 0,", "sip: {host: 127.0.0.1, port: 0, menu: false,")


@pytest.fixture(scope="module")
def menu_off(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    running = start_gateway(tmp_path_factory.mktemp("torture"), MENU_OFF)
    yield running
    stop_and_check(running)


@pytest.fixture(scope="module")
def prober(menu_off: RunningGateway) -> Iterator[RawCaller]:
    caller = RawCaller(menu_off.sip_port)
    yield caller
    caller.close()


def _ack(request: bytes, answer: Response) -> bytes:
    """The ACK of a refused INVITE (same branch), so the gateway stops retransmitting its answer."""
    invite = message.parse(request)
    ack = message.SipMessage(method="ACK", uri=invite.uri)
    ack.add("via", invite.all("via")[0])
    ack.add("max-forwards", "70")
    ack.add("from", invite.get("from") or "")
    ack.add("to", answer.header("to"))
    ack.add("call-id", invite.call_id)
    ack.add("cseq", f"{invite.cseq[0]} ACK")
    return ack.serialize()


def _finals(answers: list[Response]) -> list[int]:
    return [answer.status for answer in answers if answer.status >= 200]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_torture_message_over_udp_then_the_next_options_in_50_ms(
    name: str, menu_off: RunningGateway, prober: RawCaller
) -> None:
    expected = EXPECTED[name]
    data = rfc4475_message(name)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # its own port: RFC 4475 reuses branches
        sock.bind(("127.0.0.1", 0))
        sock.sendto(data, ("127.0.0.1", menu_off.sip_port))
        latency = prober.options()  # sent right behind it, on the same gateway socket
        answers: list[Response] = []
        deadline = time.monotonic() + (5.0 if expected.status is not None else 0.3)
        while time.monotonic() < deadline and not _finals(answers):
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                reply = parse_message(sock.recv(70_000))
            except TimeoutError:
                break
            assert isinstance(reply, Response)
            answers.append(reply)
        if answers and answers[-1].status >= 300 and answers[-1].cseq_method == "INVITE":
            try:  # (a refusal from a transaction is retransmitted until acknowledged)
                sock.sendto(_ack(data, answers[-1]), ("127.0.0.1", menu_off.sip_port))
            except message.SipMessageError:
                pass  # (a request we could not parse was answered without a transaction)
    assert _finals(answers) == ([] if expected.status is None else [expected.status]), (
        f"{name} ({expected.section}, {expected.why}): {[(a.status, a.reason) for a in answers]}"
    )
    assert latency < PROBE_BUDGET_S, f"the OPTIONS after {name} took {latency * 1000:.1f} ms"


class _Stream:
    """A TCP connection to the gateway that reads whole SIP messages (by Content-Length)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buffer = b""
        self.local = self.sock.getsockname()

    def close(self) -> None:
        self.sock.close()

    def options(self) -> bytes:
        host, port = self.local
        call_id = secrets.token_hex(8)
        self.sock.sendall(
            (
                f"OPTIONS sip:gateway@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {host}:{port};branch=z9hG4bK{secrets.token_hex(6)}\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:probe@{host}>;tag={secrets.token_hex(4)}\r\nTo: <sip:gateway@127.0.0.1>\r\n"
                f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        )
        return call_id.encode()

    def read(self, timeout: float) -> Response | None | int:
        """The next message; None on timeout, CLOSED when the gateway closed the connection."""
        deadline = time.monotonic() + timeout
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end >= 0:
                length = re.search(rb"(?im)^content-length[ \t]*:[ \t]*([0-9]+)", self.buffer[:head_end])
                total = head_end + 4 + (int(length.group(1)) if length else 0)
                if len(self.buffer) >= total:
                    data, self.buffer = self.buffer[:total], self.buffer[total:]
                    reply = parse_message(data)
                    assert isinstance(reply, Response)
                    return reply
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            except ConnectionResetError:
                return CLOSED
            if not chunk:
                return CLOSED
            self.buffer += chunk


def _probe_tcp(port: int) -> float:
    """An OPTIONS on a new connection: the seconds until its 200."""
    probe = _Stream(port)
    try:
        started = time.monotonic()
        call_id = probe.options()
        reply = probe.read(2.0)
        assert isinstance(reply, Response) and reply.header("call-id").encode() == call_id, reply
        assert reply.status == 200
        return time.monotonic() - started
    finally:
        probe.close()


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_torture_message_over_tcp_then_the_next_options_in_50_ms(name: str, menu_off: RunningGateway) -> None:
    expected = EXPECTED[name]
    stream = _Stream(menu_off.sip_port)
    try:
        stream.sock.sendall(rfc4475_message(name))
        answers: list[Response] = []
        closed = False
        latency: float | None = None
        if expected.stream_usable:
            started = time.monotonic()
            call_id = stream.options()
        wanted = expected.tcp_status
        deadline = time.monotonic() + (5.0 if wanted not in (None, CLOSED) or expected.stream_usable else 0.5)
        while time.monotonic() < deadline:
            reply = stream.read(max(0.01, deadline - time.monotonic()))
            if reply is None:
                break
            if reply == CLOSED:
                closed = True
                break
            assert isinstance(reply, Response)
            if expected.stream_usable and reply.header("call-id").encode() == call_id:
                latency = time.monotonic() - started
            else:
                answers.append(reply)
            if (latency is not None or not expected.stream_usable) and (wanted in (None, CLOSED) or wanted in _finals(answers)):
                break
        if not expected.stream_usable:
            latency = _probe_tcp(menu_off.sip_port)
    finally:
        stream.close()
    if wanted == CLOSED:
        assert closed and _finals(answers) == [], f"{name}: the connection stays open ({answers})"
        assert any(line.get("event") == "SIP stream closed: unframeable data" for line in menu_off.log_lines())
    else:
        finals = _finals(answers)
        if name == "dblreq":  # two requests on a stream
            assert finals == [405, 404], finals
        else:
            assert finals == ([] if wanted is None else [wanted]), (
                f"{name} ({expected.section}, {expected.why}): {[(a.status, a.reason) for a in answers]}"
            )
    assert latency is not None and latency < PROBE_BUDGET_S, f"the OPTIONS after {name} took {latency} s"
