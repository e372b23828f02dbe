"""SDP as a model (sip/sdp.py): parsed to objects and written back from them, equal after a round
trip; and offers answered line by line (sip/negotiation.py), in the offer's order, with port 0 for
what we decline (video, content video, BFCP for now)."""

from __future__ import annotations

import pytest

from gateway.sip.negotiation import MediaPlan, MediaSession, answer, check_offer, media_role
from gateway.sip.sdp import Bandwidth, MediaDescription, RtpMap, SdpError, SessionDescription, parse
from gateway.transcode.audio import AudioCodec

ALL = [AudioCodec.OPUS, AudioCodec.G722, AudioCodec.PCMA, AudioCodec.PCMU]

# A room system's offer with audio, main video, content video (RFC 4796) and BFCP (RFC 4583).
CONTENT_OFFER = """v=0
o=roomsystem 7 1 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
b=AS:4096
t=0 0
m=audio 50000 RTP/AVP 9 8 101
b=TIAS:64000
a=rtpmap:9 G722/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
m=video 50002 RTP/AVP 97 126
b=TIAS:2000000
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42e01f;packetization-mode=1;max-mbps=108000
a=rtpmap:126 H264/90000
a=fmtp:126 profile-level-id=42e01f;packetization-mode=0
a=rtcp-fb:* nack pli
a=rtcp-fb:97 ccm fir
a=content:main
a=label:11
a=sendrecv
m=video 50004 RTP/AVP 97
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42e01f;packetization-mode=1
a=content:slides
a=label:12
a=sendrecv
m=application 50006 TCP/BFCP *
a=setup:actpass
a=connection:new
a=floorctrl:c-s
a=confid:1
a=userid:2
a=floorid:2 mstrm:12
"""


def test_parse_reads_media_lines_into_objects() -> None:
    session = parse(CONTENT_OFFER)
    assert session.origin == "roomsystem 7 1 IN IP4 192.0.2.10" and session.connection == "IN IP4 192.0.2.10"
    assert session.bandwidths == [Bandwidth("AS", 4096)] and session.address == "192.0.2.10"
    audio, main, slides, bfcp = session.media
    assert (audio.kind, audio.port, audio.proto, audio.formats) == ("audio", 50000, "RTP/AVP", ["9", "8", "101"])
    assert audio.rtpmap[9] == RtpMap(9, "G722", 8000) and audio.fmtp == {101: "0-15"}
    assert audio.direction == "sendrecv" and audio.bandwidths == [Bandwidth("TIAS", 64000)]
    assert main.rtpmap[97].encoding == "H264" and "packetization-mode=1" in main.fmtp[97]
    assert main.rtcp_fb == [("*", "nack pli"), ("97", "ccm fir")]
    assert (main.content, slides.content) == ("main", "slides")
    assert main.attributes == [("label", "11")]
    assert (bfcp.kind, bfcp.proto, bfcp.formats) == ("application", "TCP/BFCP", ["*"])
    assert bfcp.attributes == [  # BFCP's attributes kept generically, in order
        ("setup", "actpass"), ("connection", "new"), ("floorctrl", "c-s"), ("confid", "1"), ("userid", "2"),
        ("floorid", "2 mstrm:12"),
    ]
    assert [media_role(m) for m in session.media] == ["audio", "video", "content", "bfcp"]


@pytest.mark.parametrize(
    "text",
    [
        CONTENT_OFFER,
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=call\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\na=sendonly\r\n"
        "m=audio 4000/2 RTP/SAVP 0 96\r\na=rtpmap:96 telephone-event/8000\r\na=ptime:30\r\n"
        "a=rtcp:4711 IN IP4 192.0.2.1\r\na=rtcp-mux\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc\r\n"
        "a=ice-ufrag:x\r\n",
        "v=0\no=- 1 1 IN IP6 2001:db8::1\ns=-\nc=IN IP6 2001:db8::1\nt=0 0\nm=audio 5004 RTP/AVP 111\n"
        "a=rtpmap:111 opus/48000/2\na=fmtp:111 useinbandfec=1\nm=video 0 RTP/AVP 96\n",
    ],
)
def test_write_then_parse_gives_the_same_objects(text: str) -> None:
    session = parse(text)
    written = str(session)
    assert written.endswith("\r\n") and "\n\n" not in written
    again = parse(written)
    assert again == session
    assert str(again) == written  # and writing is stable


def test_written_from_objects() -> None:
    audio = MediaDescription("audio", 30000, "RTP/AVP", ["0", "101"], direction="recvonly", ptime=20, rtcp="30001")
    audio.rtpmap[0] = RtpMap(0, "PCMU", 8000)
    audio.rtpmap[101] = RtpMap(101, "telephone-event", 8000)
    audio.fmtp[101] = "0-15"
    video = MediaDescription("video", 0, "RTP/AVP", ["97"])
    session = SessionDescription(origin="gw 1 1 IN IP4 203.0.113.1", connection="IN IP4 203.0.113.1", media=[audio, video])
    assert str(session).split("\r\n") == [
        "v=0", "o=gw 1 1 IN IP4 203.0.113.1", "s=-", "c=IN IP4 203.0.113.1", "t=0 0",
        "m=audio 30000 RTP/AVP 0 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15", "a=ptime:20", "a=rtcp:30001", "a=recvonly", "m=video 0 RTP/AVP 97", "",
    ]


def test_unreadable_attribute_values_are_kept_not_refused() -> None:
    """Only SdpError leaves parse, and an attribute whose value is not its type is no error."""
    text = "v=0\no=- 1 1 IN IP4 h\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4 RTP/AVP 0\na=rtpmap:x PCMU\na=fmtp:300 y\nb=AS:lots\n"
    m = parse(text).media[0]
    assert m.rtpmap == {} and m.fmtp == {} and m.bandwidths == []
    assert m.attributes == [("rtpmap", "x PCMU"), ("fmtp", "300 y")]


def test_limits_still_hold() -> None:
    many = "v=0\no=- 1 1 IN IP4 h\n" + "m=application 9 UDP/BFCP *\n" * 33
    with pytest.raises(SdpError) as error:
        parse(many)
    assert error.value.status == 488
    with pytest.raises(SdpError) as error:
        parse("v=0\no=- 1 1 IN IP4 h\n" + "a=x\n" * 1100)
    assert error.value.status == 400 and "lines" in error.value.reason


# -- answered line by line ---------------------------------------------------------------------------------


def test_audio_two_videos_and_bfcp_are_answered_line_by_line_in_order() -> None:
    result = answer(parse(CONTENT_OFFER), local_address="203.0.113.5", audio_port=40000, codecs=ALL, session_id=3)
    ours = parse(result.sdp)
    assert [(m.kind, m.port, m.proto) for m in ours.media] == [
        ("audio", 40000, "RTP/AVP"),
        ("video", 0, "RTP/AVP"),  # main video: declined for now
        ("video", 0, "RTP/AVP"),  # content (slides): declined for now
        ("application", 0, "TCP/BFCP"),  # BFCP: declined for now
    ]
    assert [m.formats for m in ours.media[1:]] == [["97"], ["97"], ["*"]]
    assert result.audio.codec is AudioCodec.G722 and result.audio.telephone_event_pt == 101
    assert ours.media[0].direction == "sendrecv" and ours.media[0].rtpmap[9] == RtpMap(9, "G722", 8000)
    assert result.description is not None and str(result.description) == result.sdp


def test_a_second_audio_line_is_declined_and_an_unusable_first_one_too() -> None:
    offer = CONTENT_OFFER.replace("m=audio 50000 RTP/AVP 9 8 101", "m=audio 50000 RTP/AVP 18\na=rtpmap:18 G729/8000")
    offer = offer.replace("m=application", "m=audio 50010 RTP/AVP 0\nm=audio 50012 RTP/AVP 8\nm=application")
    ours = parse(answer(parse(offer), local_address="203.0.113.5", audio_port=4, codecs=ALL).sdp)
    assert [(m.kind, m.port) for m in ours.media] == [
        ("audio", 0), ("video", 0), ("video", 0), ("audio", 4), ("audio", 0), ("application", 0),
    ]


def test_media_session_keeps_versions_and_the_codec_in_use() -> None:
    plan = MediaPlan("203.0.113.1", 30000, [AudioCodec.OPUS, AudioCodec.PCMA, AudioCodec.PCMU], False, "gw", session_id=7)
    session = MediaSession(plan)
    first = session.answer(CONTENT_OFFER)
    assert " 7 1 IN IP4 " in first.sdp and session.codec_in_use is AudioCodec.PCMA
    with pytest.raises(SdpError):
        session.answer(CONTENT_OFFER.replace("9 8 101", "101"))  # refused: nothing changes
    ours = session.offer()  # (a re-INVITE without SDP)
    assert " 7 2 IN IP4 " in ours and parse(ours).media[0].formats[0] == "8"  # the codec in use first
    assert session.awaiting_answer
    choice = session.take_answer(CONTENT_OFFER.replace("9 8 101", "0 101"))
    assert choice.codec is AudioCodec.PCMU and not session.awaiting_answer


def test_an_offer_is_checked_before_anything_is_set_up_for_it() -> None:
    """check_offer says what answer() would take or refuse, without writing an answer."""
    assert check_offer(CONTENT_OFFER, ALL).codec is AudioCodec.G722
    assert check_offer(CONTENT_OFFER, [AudioCodec.PCMU, AudioCodec.PCMA]).codec is AudioCodec.PCMA
    no_common = CONTENT_OFFER.replace("m=audio 50000 RTP/AVP 9 8 101", "m=audio 50000 RTP/AVP 18\na=rtpmap:18 G729/8000")
    with pytest.raises(SdpError) as refused:
        check_offer(no_common, ALL)
    assert refused.value.status == 488 and "no common audio codec" in refused.value.reason
    only_video = CONTENT_OFFER[: CONTENT_OFFER.index("m=audio")] + CONTENT_OFFER[CONTENT_OFFER.index("m=video") :]
    with pytest.raises(SdpError, match="no audio stream"):
        check_offer(only_video, ALL)
    with pytest.raises(SdpError, match="SRTP required") as plain:
        check_offer(CONTENT_OFFER, ALL, require_srtp=True)
    assert plain.value.status == 488
    secured = CONTENT_OFFER.replace("m=audio 50000 RTP/AVP", "m=audio 50000 RTP/SAVP").replace(
        "a=fmtp:101 0-15\n", "a=fmtp:101 0-15\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + "A" * 40 + "\n", 1
    )
    assert check_offer(secured, ALL, require_srtp=True).remote_crypto is not None
    with pytest.raises(SdpError) as malformed:
        check_offer("v=0\nnonsense", ALL)
    assert malformed.value.status == 400
