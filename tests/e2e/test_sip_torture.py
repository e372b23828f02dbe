"""RFC 4475, the SIP torture test messages (all 49 of section 3, tests/data/rfc4475/), sent to the real
gateway process over UDP and over TCP, where after every message the next OPTIONS must be answered
within 50 ms. (Against the user agent core in process: tests/unit/sip/test_rfc4475.py.)

The gateway here runs without the voice menu, so an INVITE to an unknown number is refused 404 and
no call is left behind; INVITE refusals are acknowledged so nothing is retransmitted for long."""

from __future__ import annotations

import re
import secrets
import socket
import time
from collections.abc import Iterator

import pytest

from gateway.sip import message
from tests.support.gateway import TEST_CONFIG, RunningGateway, start_gateway, stop_and_check
from tests.support.rfc4475 import CLOSED, EXPECTED, rfc4475_message
from tests.support.sip_client import RawCaller, Response, parse_message

PROBE_BUDGET_S = 0.050  # the next OPTIONS is answered within this, after any torture message

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
            assert finals == [401, 404], finals
        else:
            assert finals == ([] if wanted is None else [wanted]), (
                f"{name} ({expected.section}, {expected.why}): {[(a.status, a.reason) for a in answers]}"
            )
    assert latency is not None and latency < PROBE_BUDGET_S, f"the OPTIONS after {name} took {latency} s"
