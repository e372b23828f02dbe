"""SIP content (slides) with its floor control, judged on the wire: sipp scenarios
(tests/sipp/bfcp_*.xml) offer a slides line (RFC 4796 `a=content:slides`) beside main video
together with a BFCP line (RFC 8856): a Cisco-style offer over TCP (`a=floorctrl:c-s`,
`a=setup:actpass`, a floorid naming the slides label), a client-only offer over UDP (BFCP version 2,
a slides line without a label), and content added by a re-INVITE, then removed by another while the
audio goes on. The gateway takes both lines as floor control server, or declines both.

sipp checks each answer (its exit code is 0 only when every step and every `ereg check_it` of the
scenario held); the tests read the same answers from sipp's trace line by line, check the
participant's media counters (a `video_content` line while the content is agreed, none after), and
talk BFCP to the port the answer names, as a room system would: a Hello with the answer's confid and
userid must be answered by a HelloAck (encoded and read by tests/support/bfcp_peer, written from
RFC 8855's message layouts independently of the gateway's BFCP modules), over TCP version 1 and UDP
version 2; the port stops listening when the content goes. They wait on state, never on fixed sleeps (sipp's pauses keep the calls up meanwhile).

One gateway serves the tests of this module (on each test worker): each test's call ends before the
next starts (the `demo` fixture waits for the room to empty), and each test fails on an error its
call made the gateway log.
"""

from __future__ import annotations

import errno
import random
import socket
from pathlib import Path
from typing import cast

from tests.support.bfcp_peer import AttributeType, BfcpClient, Decoded, Primitive, decode, encode
from tests.support.gateway import RunningGateway, gateway_per_module, logged, participant, wait_until
from tests.support.sdp_answers import MediaLine, grows, offered_port, sdp_answer
from tests.support.sipp import Sipp, free_udp_port

# -- one gateway for the module: `shared_gateway`, and `demo` for each test ------------------------

shared_gateway, demo = gateway_per_module("demo")


def media_port() -> int:
    """sipp's media ports: audio, main video and slides (+4), with their RTCP ports, free together."""
    return free_udp_port(span=6, even=True)


def with_content(gateway: RunningGateway, name: str) -> dict[str, object] | None:
    """The participant's media counters once they have a content (slides) line."""
    found = participant(gateway, "demo", name)
    media = found.get("media") if found else None
    return media if isinstance(media, dict) and "video_content" in media else None


def one(values: list[str], what: str) -> str:
    assert len(values) == 1, f"{what}: {values}"
    return values[0]


# -- BFCP as a room system speaks it (RFC 8855): tests/support/bfcp_peer, written from the RFC ---------


def check_hello_ack(reply: Decoded, version: int, conference_id: int, user_id: int) -> None:
    """A HelloAck in this version for this conference and user (the transaction id is matched by
    whoever read it), listing at least Hello, FloorRequest and FloorRelease as supported primitives
    and some supported attributes."""
    assert (reply.version, reply.primitive) == (version, Primitive.HELLO_ACK), reply.describe()
    assert (reply.conference_id, reply.user_id) == (conference_id, user_id), reply.describe()
    supported = reply.find(AttributeType.SUPPORTED_PRIMITIVES)
    primitives = set(cast(tuple[int, ...], supported.value)) if supported else set()
    assert {Primitive.HELLO, Primitive.FLOOR_REQUEST, Primitive.FLOOR_RELEASE} <= primitives, reply.describe()
    assert reply.find(AttributeType.SUPPORTED_ATTRIBUTES) is not None, reply.describe()


def tcp_hello(port: int, conference_id: int, user_id: int) -> Decoded:
    """Connects to the gateway's BFCP listener, says Hello (version 1) and reads the answer (the
    connection closed again after it)."""
    with BfcpClient.tcp("127.0.0.1", port, conference_id, user_id, version=1, timeout=5) as client:
        reply = client.hello()
        assert not client.problems, client.problems
    check_hello_ack(reply, 1, conference_id, user_id)
    return reply


def udp_hello(port: int, source_port: int, conference_id: int, user_id: int) -> Decoded:
    """Says Hello (version 2) over UDP from the port our SDP named (from another when something
    else holds it: the gateway answers where a request comes from, as behind a NAT), sent again
    after 500 ms unanswered (RFC 8855's T1), and reads the answer. (A raw socket, not BfcpClient:
    that one binds a port of its own choosing.)"""
    transaction_id = random.randrange(1, 65536)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", source_port))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.5)
        for _ in range(6):
            sock.sendto(encode(Primitive.HELLO, conference_id, transaction_id, user_id, version=2), ("127.0.0.1", port))
            try:
                data, source = sock.recvfrom(65536)
            except TimeoutError:
                continue
            assert source == ("127.0.0.1", port), source
            reply = decode(data)
            check_hello_ack(reply, 2, conference_id, user_id)
            assert reply.transaction_id == transaction_id, reply.describe()
            assert reply.response, "a version 2 response without the R bit"
            return reply
    raise AssertionError(f"no answer to a BFCP Hello over UDP to port {port}")


def tcp_listens(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        code = sock.connect_ex(("127.0.0.1", port))
    assert code in (0, errno.ECONNREFUSED), f"connecting to {port}: {errno.errorcode.get(code, code)}"
    return code == 0


def bfcp_ids(line: MediaLine) -> tuple[int, int]:
    confid = int(one(line.attribute("confid"), "a=confid"))
    userid = int(one(line.attribute("userid"), "a=userid"))
    assert 1 <= confid < 2**32 and 1 <= userid < 2**16, line
    return confid, userid


# -- sipp scenarios against the gateway ------------------------------------------------------------


def test_cisco_style_offer_takes_slides_and_bfcp_over_tcp_as_floor_control_server(demo: RunningGateway, tmp_path: Path) -> None:
    """bfcp_tcp_cs.xml: audio, main video (label 11), slides (label 12) and TCP/BFCP with
    floorctrl:c-s, setup:actpass and floorid:2 mstrm:12. The answer takes the four lines in order
    (sipp checks; read here too): the slides line with a=content:slides and label 12 echoed, the BFCP
    line as server (s-only), listening (passive, connection:new) on a port that accepts a BFCP
    client's connection and answers its Hello with the answer's confid and userid; floorid:2
    names label 12; bfcpver:1. While the call is up the participant has a content line in its
    counters; after the BYE the BFCP port no longer listens."""
    name = "Content TCP"
    sipp = Sipp(demo, tmp_path / "sipp", "bfcp_tcp_cs.xml", "demo", media_port=media_port())
    lines = sdp_answer(sipp, "1 INVITE")
    assert [(m.kind, m.proto, m.port != 0) for m in lines] == [
        ("audio", "RTP/AVP", True),
        ("video", "RTP/AVP", True),
        ("video", "RTP/AVP", True),
        ("application", "TCP/BFCP", True),
    ], lines
    _, main, slides, bfcp = lines
    assert main.attribute("content") == ["main"] and main.attribute("label") == ["11"], main
    assert slides.attribute("content") == ["slides"] and slides.attribute("label") == ["12"], slides
    assert slides.port not in (main.port, lines[0].port), lines
    assert bfcp.formats == ("*",), bfcp
    assert bfcp.attribute("floorctrl") == ["s-only"], bfcp
    assert bfcp.attribute("setup") == ["passive"] and bfcp.attribute("connection") == ["new"], bfcp
    assert bfcp.attribute("floorid") == ["2 mstrm:12"] and bfcp.attribute("bfcpver") == ["1"], bfcp
    confid, userid = bfcp_ids(bfcp)

    now = wait_until(lambda: with_content(demo, name), 15, what="the caller in demo with a content line")
    assert isinstance(now, dict) and "video_main" in now, now
    tcp_hello(bfcp.port, confid, userid)  # (one connection at a time: this one is the test of the listener)
    result = sipp.wait()
    assert result.returncode == 0, result.describe()
    wait_until(lambda: not tcp_listens(bfcp.port), 10, what="the BFCP port closed after the BYE")

    (agreed,) = logged(demo, "content agreed", sipp.call_id)
    assert (agreed["bfcp"], agreed["bfcp_version"], agreed["bfcp_connect"], agreed["floor"]) == ("tcp", 1, False, 2), agreed
    assert agreed["codec"] == "H264", agreed
    assert logged(demo, "BFCP connection accepted", sipp.call_id), "the gateway did not log our BFCP connection"


def test_client_only_offer_over_udp_is_answered_in_bfcp_version_2_with_a_label_of_ours(demo: RunningGateway, tmp_path: Path) -> None:
    """bfcp_udp_conly.xml: UDP/BFCP with floorctrl:c-only and bfcpver:2, a slides line without a
    label. The answer takes the four lines in order: the slides line labelled by the gateway
    (a=label:2), the BFCP line over UDP on the gateway's own UDP socket (s-only, confid, userid,
    floorid:1 mstrm:2, bfcpver:2, nothing of TCP's setup or connection). A Hello in version 2 from
    the BFCP port the offer named is answered by a HelloAck in version 2 with the R bit; the
    participant has a content line while the call is up."""
    name = "Content UDP"
    sipp = Sipp(demo, tmp_path / "sipp", "bfcp_udp_conly.xml", "demo", media_port=media_port())
    lines = sdp_answer(sipp, "1 INVITE")
    assert [(m.kind, m.proto, m.port != 0) for m in lines] == [
        ("audio", "RTP/AVP", True),
        ("video", "RTP/AVP", True),
        ("video", "RTP/AVP", True),
        ("application", "UDP/BFCP", True),
    ], lines
    _, main, slides, bfcp = lines
    assert main.attribute("content") == ["main"] and main.attribute("label") == [], main
    assert slides.attribute("content") == ["slides"] and slides.attribute("label") == ["2"], slides
    assert bfcp.formats == ("*",), bfcp
    assert bfcp.attribute("floorctrl") == ["s-only"], bfcp
    assert bfcp.attribute("floorid") == ["1 mstrm:2"] and bfcp.attribute("bfcpver") == ["2"], bfcp
    assert not bfcp.attribute("setup") and not bfcp.attribute("connection"), bfcp
    confid, userid = bfcp_ids(bfcp)

    now = wait_until(lambda: with_content(demo, name), 15, what="the caller in demo with a content line")
    assert isinstance(now, dict) and "video_main" in now, now
    udp_hello(bfcp.port, offered_port(sipp, "1 INVITE", "application"), confid, userid)
    result = sipp.wait()
    assert result.returncode == 0, result.describe()

    (agreed,) = logged(demo, "content agreed", sipp.call_id)
    assert (agreed["bfcp"], agreed["bfcp_version"], agreed["floor"]) == ("udp", 2, 1), agreed
    assert not logged(demo, "BFCP from an address the signalling did not name dropped", sipp.call_id)


def test_re_invites_add_then_remove_content_and_bfcp_while_the_audio_goes_on(demo: RunningGateway, tmp_path: Path) -> None:
    """bfcp_reinvite_add_remove.xml: a call with audio (A-law speech from sipp) and main video joins
    demo; a re-INVITE adds the slides line and TCP/BFCP (both answered with ports, the gateway as
    listening floor control server: sipp checks, the test reads them), another removes them (both
    answered at port 0, the main video kept). The participant's content line appears in its
    counters with the first and goes with the second; the BFCP port answers a Hello in between and
    stops listening with the removal; its audio RTP counters, in and out, rise before, between and
    after the re-INVITEs."""
    name = "Reinvite Content"
    sipp = Sipp(demo, tmp_path / "sipp", "bfcp_reinvite_add_remove.xml", "demo", media_port=media_port())
    first = sdp_answer(sipp, "1 INVITE")
    assert [(m.kind, m.port != 0) for m in first] == [("audio", True), ("video", True)], first
    wait_until(lambda: participant(demo, "demo", name), 15, what="the caller in demo")
    before = grows(demo, name, what="audio both ways before the re-INVITEs")
    assert "video_main" in before and "video_content" not in before, before

    added = sdp_answer(sipp, "3 INVITE")
    # (the gateway applies an offer before it answers: the 200 in sipp's trace means applied)
    assert [(m.kind, m.proto, m.port != 0) for m in added] == [
        ("audio", "RTP/AVP", True),
        ("video", "RTP/AVP", True),
        ("video", "RTP/AVP", True),
        ("application", "TCP/BFCP", True),
    ], added
    _, main, slides, bfcp = added
    assert main.port == first[1].port and main.attribute("content") == ["main"], (first, added)
    assert slides.attribute("content") == ["slides"] and slides.attribute("label") == ["12"], slides
    assert bfcp.attribute("floorctrl") == ["s-only"] and bfcp.attribute("setup") == ["passive"], bfcp
    assert bfcp.attribute("floorid") == ["2 mstrm:12"] and bfcp.attribute("bfcpver") == ["1"], bfcp
    confid, userid = bfcp_ids(bfcp)
    content = grows(demo, name, what="audio both ways with content added")
    assert "video_content" in content and "video_main" in content, content
    tcp_hello(bfcp.port, confid, userid)

    removed = sdp_answer(sipp, "4 INVITE")
    assert [(m.kind, m.port != 0) for m in removed] == [
        ("audio", True),
        ("video", True),
        ("video", False),
        ("application", False),
    ], removed
    assert removed[1].port == main.port, (added, removed)
    assert not removed[3].attribute("floorctrl") and not removed[3].attribute("confid"), removed[3]
    after = grows(demo, name, what="audio both ways with content removed")
    assert "video_content" not in after and "video_main" in after, after
    wait_until(lambda: not tcp_listens(bfcp.port), 5, what="the BFCP port closed with the content removed")
    result = sipp.wait()
    assert result.returncode == 0, result.describe()

    assert [line["bfcp"] for line in logged(demo, "content agreed", sipp.call_id)] == ["tcp"]
    assert len(logged(demo, "content removed", sipp.call_id)) == 1
    # the audio and the main video were never renegotiated away
    assert {line["codec"] for line in logged(demo, "media renegotiated", sipp.call_id)} <= {"pcma"}
    assert [line["codec"] for line in logged(demo, "video agreed", sipp.call_id)] == ["H264"]
    assert not logged(demo, "video removed", sipp.call_id)
