"""SDP offer/answer of content (RFC 4796 slides) and its BFCP stream (RFC 8856) for SIP room
systems (sans-IO, sip/negotiation.py): taken together as floor control server over TCP or UDP, or
both declined with port 0; labels, floor ids, setup roles and versions as room systems need them."""

from __future__ import annotations

import pytest

from gateway.sip.negotiation import BfcpPlan, MediaPlan, MediaSession, content_offered
from gateway.sip.sdp import parse
from tests.unit.sip.test_video_negotiation import AUDIO, CISCO_OFFER, VIDEO, take

TCP_PLAN = BfcpPlan(conference_id=90210, user_id=7, transport="tcp", port=40006)
UDP_PLAN = BfcpPlan(conference_id=90210, user_id=7, transport="udp", port=40008)


def attributes(text: str, index: int) -> list[str]:
    return [f"{k}:{v}" if v is not None else k for k, v in parse(text).media[index].attribute_lines()]


def with_bfcp(proto: str = "TCP/BFCP", extra: str = "a=setup:actpass\na=connection:new\na=floorctrl:c-s\na=floorid:2 mstrm:12\n") -> str:
    head, _, _bfcp = CISCO_OFFER.partition("m=application")
    return f"{head}m=application 5070 {proto} *\n{extra}"


def test_cisco_content_and_bfcp_over_tcp_are_answered_as_floor_control_server() -> None:
    result = take(CISCO_OFFER, content_port=40004, bfcp=TCP_PLAN)
    ours = parse(result.sdp)
    assert [(m.kind, m.port, m.proto) for m in ours.media] == [
        ("audio", 40000, "RTP/AVP"),
        ("video", 40002, "RTP/AVP"),
        ("video", 40004, "RTP/AVP"),
        ("application", 40006, "TCP/BFCP"),
    ]
    slides = ours.media[2]
    assert slides.content == "slides" and slides.values("label") == ["12"]
    assert slides.formats == ["97", "126"]
    assert attributes(result.sdp, 3) == [
        "floorctrl:s-only", "setup:passive", "connection:new", "confid:90210", "userid:7", "floorid:2 mstrm:12", "bfcpver:1",
    ]  # fmt: skip
    assert ours.media[1].values("label") == ["11"]  # (main keeps its label too)
    assert result.content is not None
    bfcp = result.content.bfcp
    assert (bfcp.transport, bfcp.version, bfcp.connect, bfcp.floor_id, bfcp.label) == ("tcp", 1, False, 2, "12")
    assert (bfcp.remote_address, bfcp.remote_port) == ("192.0.2.20", 5070)
    assert (result.content.video.remote_port, result.content.video.codecs[0].payload_type) == (2330, 97)
    assert content_offered(CISCO_OFFER, VIDEO) == "tcp"


def test_bfcp_over_udp_is_version_2_on_our_udp_socket() -> None:
    offer = with_bfcp("UDP/BFCP", "a=floorctrl:c-only\na=bfcpver:2\n")
    assert content_offered(offer, VIDEO) == "udp"
    result = take(offer, content_port=40004, bfcp=UDP_PLAN)
    ours = parse(result.sdp)
    assert (ours.media[3].port, ours.media[3].proto) == (40008, "UDP/BFCP")
    assert "setup:passive" not in attributes(result.sdp, 3) and "bfcpver:2" in attributes(result.sdp, 3)
    assert "floorid:1 mstrm:12" in attributes(result.sdp, 3)  # (no floorid offered: ours names the slides)
    assert result.content is not None and result.content.bfcp.version == 2


def test_a_room_system_that_listens_is_connected_to_from_port_9() -> None:
    result = take(with_bfcp(extra="a=setup:passive\na=floorctrl:c-only\n"), content_port=40004, bfcp=TCP_PLAN)
    assert parse(result.sdp).media[3].port == 9 and "setup:active" in attributes(result.sdp, 3)
    assert result.content is not None and result.content.bfcp.connect


@pytest.mark.parametrize(
    ("offer", "why"),
    [
        (with_bfcp(extra="a=floorctrl:s-only\na=setup:actpass\n"), "a server that gives no conference and user ids"),
        (with_bfcp("TCP/TLS/BFCP"), "BFCP over TLS (no keys for it)"),
        (with_bfcp("UDP/BFCP", "a=bfcpver:1\n"), "version 1 over UDP"),
        (CISCO_OFFER.partition("m=application")[0], "content without BFCP"),
        (CISCO_OFFER.replace("a=content:slides\n", "a=content:alt\n"), "BFCP without a slides line"),
        (CISCO_OFFER.replace("m=application 5070", "m=application 0"), "BFCP declined by its offerer"),
    ],
)
def test_content_and_bfcp_are_declined_together(offer: str, why: str) -> None:
    result = take(offer, content_port=40004, bfcp=TCP_PLAN)
    ports = [m.port for m in parse(result.sdp).media]
    assert ports[0] and ports[1] and not any(ports[2:]), why
    assert result.content is None and result.video is not None, why


def test_without_our_content_port_or_bfcp_socket_content_is_declined() -> None:
    for kwargs in ({}, {"content_port": 40004}, {"bfcp": TCP_PLAN}):
        assert [m.port for m in parse(take(CISCO_OFFER, **kwargs).sdp).media] == [40000, 40002, 0, 0]


def test_the_udp_socket_does_not_serve_a_tcp_offer() -> None:
    assert take(CISCO_OFFER, content_port=40004, bfcp=UDP_PLAN).content is None


def test_a_slides_line_without_label_gets_ours_and_the_floor_names_it() -> None:
    offer = CISCO_OFFER.replace("a=label:12\n", "").replace("a=floorid:2 mstrm:12\n", "")
    result = take(offer, content_port=40004, bfcp=TCP_PLAN)
    assert parse(result.sdp).media[2].values("label") == ["2"]
    assert "floorid:1 mstrm:2" in attributes(result.sdp, 3)


def test_a_session_keeps_its_ids_and_drops_content_when_a_re_offer_leaves_it_out() -> None:
    session = MediaSession(
        MediaPlan("203.0.113.5", 40000, AUDIO, False, "gw", video_port=40002, video_codecs=VIDEO, content_port=40004, bfcp=TCP_PLAN)
    )
    first = session.answer(CISCO_OFFER)
    assert first.content is not None and session.content_choice == first.content
    again = session.answer(CISCO_OFFER.replace("o=tandberg 0 1", "o=tandberg 0 2"))
    assert again.content is not None and again.content.bfcp == first.content.bfcp
    gone = session.answer(CISCO_OFFER.replace("m=video 2330", "m=video 0"))
    assert gone.content is None and session.content_choice is None and gone.video is not None


def test_an_mcu_insisting_on_serving_makes_us_its_client_with_its_ids() -> None:
    offer = with_bfcp(extra="a=floorctrl:s-only\na=setup:actpass\na=confid:31\na=userid:4\na=floorid:2 mstrm:12\n")
    result = take(offer, content_port=40004, bfcp=TCP_PLAN)
    assert attributes(result.sdp, 3) == ["floorctrl:c-only", "setup:passive", "connection:new", "bfcpver:1"]
    assert result.content is not None
    bfcp = result.content.bfcp
    assert (bfcp.server, bfcp.conference_id, bfcp.user_id, bfcp.floor_id) == (False, 31, 4, 2)


def dialling() -> MediaSession:
    return MediaSession(
        MediaPlan("203.0.113.5", 40000, AUDIO, True, "gw", video_port=40002, video_codecs=VIDEO, content_port=40004, bfcp=TCP_PLAN)
    )


def answer_to_our_offer(floor: str, bfcp_port: int = 5070) -> str:
    return (
        "v=0\no=mcu 1 1 IN IP4 192.0.2.50\ns=-\nc=IN IP4 192.0.2.50\nt=0 0\n"
        "m=audio 3000 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n"
        "m=video 3002 RTP/AVP 97\na=rtpmap:97 H264/90000\na=fmtp:97 profile-level-id=42e01f;packetization-mode=1\na=content:main\n"
        "m=video 3004 RTP/AVP 97\na=rtpmap:97 H264/90000\na=fmtp:97 profile-level-id=42e01f;packetization-mode=1\na=content:slides\na=label:2\n"
        f"m=application {bfcp_port} TCP/BFCP *\n{floor}"
    )


def test_dial_out_offers_slides_and_bfcp_in_either_role() -> None:
    session = dialling()
    ours = parse(session.offer())
    assert [(m.kind, m.port, m.proto, m.content) for m in ours.media] == [
        ("audio", 40000, "RTP/AVP", None),
        ("video", 40002, "RTP/AVP", "main"),
        ("video", 40004, "RTP/AVP", "slides"),
        ("application", 40006, "TCP/BFCP", None),
    ]
    assert ours.media[1].values("label") == ["1"] and ours.media[2].values("label") == ["2"]
    assert ours.media[3].attributes == [
        ("floorctrl", "c-s"), ("setup", "actpass"), ("connection", "new"), ("confid", "90210"), ("userid", "7"),
        ("floorid", "1 mstrm:2"), ("bfcpver", "1 2"),
    ]  # fmt: skip


def test_an_answer_as_client_makes_us_server_and_an_mcus_answer_makes_us_its_client() -> None:
    session = dialling()
    session.offer()
    session.take_answer(answer_to_our_offer("a=floorctrl:c-only\na=setup:active\n"))
    assert session.content_choice is not None
    bfcp = session.content_choice.bfcp
    assert (bfcp.server, bfcp.connect, bfcp.conference_id, bfcp.user_id, bfcp.floor_id) == (True, False, 90210, 7, 1)
    assert session.content_choice.video.remote_port == 3004
    session.offer()
    session.take_answer(answer_to_our_offer("a=floorctrl:s-only\na=setup:passive\na=confid:55\na=userid:9\na=floorid:3 mstrm:2\n"))
    assert session.content_choice is not None
    bfcp = session.content_choice.bfcp
    assert (bfcp.server, bfcp.connect, bfcp.conference_id, bfcp.user_id, bfcp.floor_id) == (False, True, 55, 9, 3)
    assert (bfcp.remote_address, bfcp.remote_port) == ("192.0.2.50", 5070)
    session.offer()
    session.take_answer(answer_to_our_offer("a=floorctrl:c-only\n", bfcp_port=0))  # (BFCP declined: no content)
    assert session.content_choice is None


def test_our_label_for_an_unlabelled_slides_line_is_one_the_offer_does_not_use() -> None:
    offer = CISCO_OFFER.replace("a=label:11\n", "a=label:2\n").replace("a=label:12\n", "").replace("a=floorid:2 mstrm:12\n", "")
    result = take(offer, content_port=40004, bfcp=TCP_PLAN)
    ours = parse(result.sdp)
    assert ours.media[1].values("label") == ["2"] and ours.media[2].values("label") == ["3"]
    assert "floorid:1 mstrm:3" in attributes(result.sdp, 3)


def test_a_re_offer_keeps_the_agreed_label_floor_and_transport() -> None:
    """A re-INVITE without SDP from a room system that shares over UDP: our offer keeps its slides
    label, its floor and UDP (a new floor would start floor control over, revoking a presentation)."""
    session = MediaSession(
        MediaPlan("203.0.113.5", 40000, AUDIO, False, "gw", video_port=40002, video_codecs=VIDEO, content_port=40004, bfcp=UDP_PLAN)
    )
    first = session.answer(with_bfcp("UDP/BFCP", "a=floorctrl:c-only\na=bfcpver:2\na=floorid:5 mstrm:12\n"))
    assert first.content is not None and (first.content.bfcp.floor_id, first.content.bfcp.label) == (5, "12")
    ours = parse(session.offer())
    assert [m.proto for m in ours.media][3] == "UDP/BFCP" and ours.media[2].values("label") == ["12"]
    assert ("floorid", "5 mstrm:12") in ours.media[3].attributes and ("setup", "actpass") not in ours.media[3].attributes
    answer_text = (
        "v=0\no=cisco 1 2 IN IP4 192.0.2.20\ns=-\nc=IN IP4 192.0.2.20\nt=0 0\n"
        "m=audio 2326 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n"
        "m=video 2328 RTP/AVP 97\na=rtpmap:97 H264/90000\na=fmtp:97 profile-level-id=42e01f;packetization-mode=1\n"
        "m=video 2330 RTP/AVP 97\na=rtpmap:97 H264/90000\na=fmtp:97 profile-level-id=42e01f;packetization-mode=1\na=content:slides\n"
        "m=application 5070 UDP/BFCP *\na=floorctrl:c-only\na=bfcpver:2\n"
    )
    session.take_answer(answer_text)
    assert session.content_choice is not None and session.content_choice.bfcp == first.content.bfcp
