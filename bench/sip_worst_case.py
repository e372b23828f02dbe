"""SIP parser worst cases: the event-loop time one hostile message costs, by shape and size.

Each shape is a message built to make a naive parser backtrack, go quadratic or allocate: a long
header value of spaces (the To of 'a', 60,000 spaces and 'b' that once cost 10.5 s), many headers,
many Via values, deep '<' nesting, long quoted display names (also full of backslash pairs), many
commas in a list header, many parameters, folded lines, and SDP offers with many lines or many
attributes (sent as a re-INVITE in an established call, where the core reports the offer and the
SDP: the core passes the body through unread, and the call layer answers it with the SDP model,
`MediaSession.answer`, which is timed with it). Each is built at 1, 8 and 64 KB and handed to `UserAgent.receive` in process (the
sans-IO core the transports call on the event loop) as a fresh message each repetition; we report
the median and the worst time per message, and the time per KB, which stays flat when the cost is
linear. TCP framing is measured too: a 64 KB stream of messages fed one byte at a time.

The goal: under 5 ms per message at 64 KB, and linear in size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import print_table, write_results  # noqa: E402
from gateway.sip import message, sdp  # noqa: E402
from gateway.sip.negotiation import MediaPlan, MediaSession  # noqa: E402
from gateway.sip.useragent import IncomingCall, OfferReceived, Peer, UserAgent  # noqa: E402
from gateway.transcode.audio import AudioCodec  # noqa: E402

SIZES_KB = (1, 8, 64)
GOAL_MS_AT_64_KB = 5.0
PEER = Peer("udp", ("192.0.2.10", 5060))
PLAN = MediaPlan("203.0.113.1", 30000, [AudioCodec.OPUS, AudioCodec.PCMA, AudioCodec.PCMU], False, "gw", session_id=7)


def request(method: str, serial: int, extra: str = "", body: str = "", to_tag: str = "", cseq: int = 1) -> bytes:
    """A request with `extra` header lines (and a body), branch and Call-ID unique per `serial`."""
    tag = f";tag={to_tag}" if to_tag else ""
    head = (
        f"{method} sip:4711@gw.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{serial:012d}\r\n"
        f'Max-Forwards: 70\r\nFrom: "Anna" <sip:anna@pbx.example>;tag=caller1\r\n'
        f"To: <sip:4711@gw.example>{tag}\r\nCall-ID: call-{0 if to_tag else serial}@pbx.example\r\n"
        f"CSeq: {cseq} {method}\r\nContact: <sip:anna@192.0.2.10:5060>\r\n"
    )
    if extra:
        head += extra + "\r\n"
    if body:
        head += "Content-Type: application/sdp\r\n"
    return (head + f"Content-Length: {len(body.encode())}\r\n\r\n" + body).encode()


def fill(size: int, overhead: int, unit: str) -> str:
    """`unit` repeated to make a message of about `size` bytes, given the rest is `overhead`."""
    return unit * max(1, (size - overhead) // len(unit))


OFFER_HEAD = (
    "v=0\r\no=phone 42 2 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
)

# shape -> (what it is, kind, builder(size, serial) -> the header lines or SDP body)
Builder = Callable[[int, int], str]
SHAPES: dict[str, tuple[str, str, Builder]] = {
    "spaces": ("To of a, spaces and b", "header", lambda n, s: "Subject: x\r\nX-To: a" + fill(n, 300, " ") + "b"),
    "to_spaces": ("To: a<spaces>b (the 10.5 s one)", "to", lambda n, s: "a" + fill(n, 300, " ") + "b"),
    "headers": ("many header lines", "header", lambda n, s: "\r\n".join(f"X-{i}: y" for i in range(max(1, (n - 300) // 12)))),
    "vias": ("many Via values", "header", lambda n, s: "Via: " + ", ".join(["SIP/2.0/UDP h:5060;branch=z9hG4bKv"] * max(1, (n - 300) // 36))),
    "nesting": ("deep < nesting in To", "to", lambda n, s: fill(n, 300, "<") + "sip:a@b" + ">"),
    "quoted": ("long quoted display name", "to", lambda n, s: '"' + fill(n, 300, "x") + '" <sip:4711@gw.example>'),
    "backslashes": ("quoted name of backslash pairs", "to", lambda n, s: '"' + fill(n, 300, "\\\\") + '" <sip:4711@gw.example>'),
    "commas": ("many commas in Route", "header", lambda n, s: "Route: " + fill(n, 300, ",")),
    "params": ("many ;params in To", "to", lambda n, s: "<sip:4711@gw.example>" + fill(n, 320, ";p")),
    "folds": ("many folded lines", "header", lambda n, s: "Subject: a" + fill(n, 300, "\r\n b")),
    "sdp_lines": ("SDP, many short lines", "sdp", lambda n, s: OFFER_HEAD + fill(n, 600, "a=x\r\n")),
    "sdp_attributes": ("SDP, many 64-char attributes", "sdp", lambda n, s: OFFER_HEAD + fill(n, 600, "a=fmtp:96 " + "k" * 52 + "\r\n")),
}


def _connected_ua() -> tuple[UserAgent, MediaSession, str]:
    """A user agent with one answered and acknowledged call; (ua, the call's media session, our To tag)."""
    ua = UserAgent(local={"udp": ("198.51.100.1", 5060)})
    session = MediaSession(PLAN)
    offer = OFFER_HEAD.replace(" 2 IN", " 1 IN")
    ua.receive(request("INVITE", 0, body=offer), PEER, 0.0)
    incoming = [e for e in iter(ua.next_event, None) if isinstance(e, IncomingCall)][-1]
    ua.answer(incoming.call, session.answer(offer).sdp)
    ok = message.parse(ua.datagrams_to_send(0.0)[-1][0])
    tag = message.NameAddr.parse(ok.get("to") or "").tag
    ua.receive(request("ACK", 1, to_tag=tag), PEER, 0.0)
    ua.datagrams_to_send(0.0)
    while ua.next_event() is not None:
        pass
    return ua, session, tag


def handle(ua: UserAgent, session: MediaSession, data: bytes) -> list[bytes]:
    """What the adapter does with one datagram: the core's receive, the call layer's answer to an
    offer it reports (a refusal for an unusable one), and what is then sent."""
    ua.receive(data, PEER, 0.0)
    for event in iter(ua.next_event, None):
        if isinstance(event, OfferReceived):
            try:
                ua.accept_offer(event.call, session.answer(event.sdp).sdp)
            except sdp.SdpError as error:
                ua.refuse_offer(event.call, error.status, error.reason)
    return [datagram for datagram, _ in ua.datagrams_to_send(0.0)]


def build(kind: str, builder: Builder, size: int, serial: int, tag: str = "") -> bytes:
    if kind == "sdp":
        return request("INVITE", serial, body=builder(size, serial), to_tag=tag, cseq=2)
    if kind == "to":
        data = request("OPTIONS", serial)
        return data.replace(b"To: <sip:4711@gw.example>", b"To: " + builder(size, serial).encode(), 1)
    return request("OPTIONS", serial, extra=builder(size, serial))


def outcome(wire: list[bytes]) -> str:
    if not wire:
        return "dropped"
    answer = message.parse(wire[-1])
    return f"{answer.status}" + (f" {answer.reason[:38]}" if answer.status >= 300 else "")


def measure(shape: str, size_kb: int, repeat: int) -> dict[str, Any]:
    what, kind, builder = SHAPES[shape]
    size = min(size_kb * 1024, message.MAX_MESSAGE_BYTES - 100)
    times: list[float] = []
    result = ""
    length = 0
    shared = None if kind == "sdp" else _connected_ua()
    for serial in range(2, repeat + 2):
        ua, session, tag = _connected_ua() if shared is None else shared
        data = build(kind, builder, size, serial, tag)
        length = len(data)
        started = time.perf_counter_ns()
        wire = handle(ua, session, data)
        times.append((time.perf_counter_ns() - started) / 1e6)
        result = outcome(wire)
    median = statistics.median(times)
    return {
        "shape": shape,
        "what": what,
        "size_kb": size_kb,
        "bytes": length,
        "outcome": result,
        "median_ms": round(median, 4),
        "max_ms": round(max(times), 4),
        "us_per_kb": round(median * 1000 / (length / 1024), 2),
        "repeat": repeat,
    }


def framer_byte_by_byte(size_kb: int) -> dict[str, Any]:
    one = request("OPTIONS", 1)
    stream = one * max(1, size_kb * 1024 // len(one))
    framer = message.StreamFramer()
    started = time.perf_counter_ns()
    count = 0
    for index in range(len(stream)):
        count += len(framer.feed(stream[index : index + 1]))
    elapsed = (time.perf_counter_ns() - started) / 1e6
    assert count == len(stream) // len(one)
    return {
        "shape": "framer_bytewise",
        "what": "TCP stream fed 1 byte at a time",
        "size_kb": size_kb,
        "bytes": len(stream),
        "outcome": f"{count} messages",
        "median_ms": round(elapsed, 4),
        "max_ms": round(elapsed, 4),
        "us_per_kb": round(elapsed * 1000 / (len(stream) / 1024), 2),
        "repeat": 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=30, help="messages per shape and size")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    args = parser.parse_args()
    points = [measure(shape, size, args.repeat) for shape in args.shapes for size in SIZES_KB]
    points += [framer_byte_by_byte(size) for size in SIZES_KB]
    worst_64 = max(p["max_ms"] for p in points if p["size_kb"] == 64 and p["shape"] != "framer_bytewise")
    path = write_results(
        "sip_worst_case",
        {
            "points": points,
            "goal": {"ms_per_message_at_64_kb": GOAL_MS_AT_64_KB, "linear": True},
            "worst_ms_at_64_kb": worst_64,
            "limits": {
                "max_message_bytes": message.MAX_MESSAGE_BYTES,
                "max_headers": message.MAX_HEADERS,
                "max_header_lines": message.MAX_HEADER_LINES,
                "max_line_length": message.MAX_LINE_LENGTH,
                "max_list_values": message.MAX_LIST_VALUES,
                "max_sdp_lines": sdp.MAX_SDP_LINES,
                "max_sdp_line_length": sdp.MAX_SDP_LINE_LENGTH,
                "max_media": sdp.MAX_MEDIA,
            },
        },
    )
    print_table(
        ["shape", "KB", "bytes", "answer", "median ms", "max ms", "us/KB"],
        [[p["shape"], p["size_kb"], p["bytes"], p["outcome"], f"{p['median_ms']:.3f}", f"{p['max_ms']:.3f}", p["us_per_kb"]] for p in points],
    )
    verdict = "met" if worst_64 < GOAL_MS_AT_64_KB else "MISSED"
    print(f"\nworst message at 64 KB: {worst_64:.3f} ms (goal < {GOAL_MS_AT_64_KB} ms: {verdict}); results in {path}")


if __name__ == "__main__":
    main()
