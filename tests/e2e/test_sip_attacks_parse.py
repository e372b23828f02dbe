"""Attacks on the SIP parsers through the real gateway process (issue 9): datagrams shaped to make a
backtracking or quadratic parser spend seconds (one such OPTIONS, a To of 'a', 60,000 spaces and
'b', once delayed the next answer by 10.5 s), a TCP peer that sends a header section without end,
and an INVITE whose SDP has a character that only looks like a digit. The next request must be
answered at once, the stream cut off at 64 KB with a log line, the INVITE refused with 400/488."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import TEST_CONFIG, RunningGateway, start_gateway, stop_and_check, wait_until
from tests.support.sip_client import RawCaller, sdp_offer


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    running = start_gateway(tmp_path_factory.mktemp("parse_attacks"), TEST_CONFIG)
    yield running
    stop_and_check(running)


def options(header: str, port: int) -> bytes:
    """An OPTIONS from 127.0.0.1:port, with one extra (hostile) header line."""
    return (
        f"OPTIONS sip:gateway@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{time.monotonic_ns()}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nCall-ID: {time.monotonic_ns()}@attack\r\n"
        f"CSeq: 1 OPTIONS\r\n{header}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


# Each about 60 KB, in one datagram: the shapes that cost a naive parser time or memory.
SHAPES = {
    "To of a, 60,000 spaces and b": "To: a" + " " * 60_000 + "b",
    "To of 60,000 spaces in a quoted name": 'To: "' + " " * 60_000 + '" <sip:a@b>',
    "To of 30,000 backslash pairs": 'To: "' + "\\\\" * 30_000 + '" <sip:a@b>',
    "To of 60,000 <": "To: " + "<" * 60_000,
    "To of 60,000 quotes": "To: " + '"' * 60_000,
    "Route of 60,000 commas": "To: <sip:gw@127.0.0.1>\r\nRoute: " + "," * 60_000,
    "Via of 4,000 values": "To: <sip:gw@127.0.0.1>\r\nVia: " + ", ".join(["SIP/2.0/UDP h"] * 4_000),
    "5,000 header lines": "To: <sip:gw@127.0.0.1>\r\n" + "\r\n".join(f"X-{n}: yyy" for n in range(5_000)),
    "15,000 folded lines": "To: <sip:gw@127.0.0.1>\r\nSubject: a" + "\r\n b" * 15_000,
    "60,000 semicolons in To": "To: <sip:gw@127.0.0.1>" + ";" * 60_000,
}


def test_60_kb_hostile_headers_never_delay_the_next_options(gateway: RunningGateway) -> None:
    caller = RawCaller(gateway.sip_port)
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attacker.bind(("127.0.0.1", 0))
    attacker.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    try:
        caller.options(timeout=5)  # (the gateway is up and warm)
        port = attacker.getsockname()[1]
        for what, header in SHAPES.items():
            datagram = options(header, port)
            assert 50_000 < len(datagram) <= 65_507, what
            for _ in range(5):  # five in a row, then the next OPTIONS
                attacker.sendto(datagram, ("127.0.0.1", gateway.sip_port))
            latency = caller.options(timeout=5)
            assert latency < 0.1, f"after five datagrams of {what}, the next OPTIONS took {latency * 1000:.0f} ms"
    finally:
        attacker.close()
        caller.close()
    refused = [line for line in gateway.log_lines() if line.get("event") == "malformed SIP message"]
    assert any("too long" in str(line.get("reason")) for line in refused)


def test_a_header_section_without_end_on_tcp_is_cut_off_at_64_kb_with_a_log_line(gateway: RunningGateway) -> None:
    connection = socket.create_connection(("127.0.0.1", gateway.sip_port), timeout=5)
    sent = 0
    closed = False
    try:
        connection.sendall(b"OPTIONS sip:gateway@127.0.0.1 SIP/2.0\r\n")
        line = b"X-Endless: " + b"a" * 1000 + b"\r\n"
        while sent < 1_000_000 and not closed:
            try:
                connection.sendall(line)
                sent += len(line)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            if sent > 70_000:
                connection.settimeout(0.05)
                try:
                    closed = closed or connection.recv(100) == b""
                except TimeoutError:
                    pass
                except ConnectionResetError:
                    closed = True
    finally:
        connection.close()
    assert closed and sent < 200_000, f"still open after {sent} bytes"
    wait_until(
        lambda: [line for line in gateway.log_lines() if line.get("event") == "SIP stream closed: unframeable data"],
        5,
        what="the log line of the closed stream",
    )
    caller = RawCaller(gateway.sip_port)
    try:
        assert caller.options(timeout=5) < 0.1
    finally:
        caller.close()


def test_an_invite_whose_sdp_has_a_digit_lookalike_or_a_host_name_is_refused(gateway: RunningGateway) -> None:
    caller = RawCaller(gateway.sip_port)
    try:
        superscript = sdp_offer("127.0.0.1", caller.rtp_port).replace("RTP/AVP 0 8 101", "RTP/AVP 0 \u00b2")
        _, answer = caller.call("demo", superscript)
        assert answer.status == 400 and "payload type" in answer.reason, (answer.status, answer.reason)
        host_name = sdp_offer("127.0.0.1", caller.rtp_port).replace("c=IN IP4 127.0.0.1", "c=IN IP4 victim.example")
        _, answer = caller.call("demo", host_name)
        assert answer.status == 488 and "not an IP address" in answer.reason, (answer.status, answer.reason)
        assert caller.options(timeout=5) < 0.1
    finally:
        caller.close()
    assert "Traceback" not in Path(gateway.log_path).read_text()
