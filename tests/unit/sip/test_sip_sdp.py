"""SDP offer/answer for SIP legs (sans-IO, sip/negotiation.py): codec choice, telephone-event,
direction, SRTP, m-lines."""

from __future__ import annotations

import base64

import pytest

from gateway.sip.negotiation import answer
from gateway.sip.sdp import SdpError, parse
from gateway.transcode.audio import AudioCodec

ALL = [AudioCodec.OPUS, AudioCodec.G722, AudioCodec.PCMA, AudioCodec.PCMU]

# Shaped like a Cisco room system's INVITE: audio with several codecs and DTMF, H.264 video, BFCP.
ROOM_SYSTEM_OFFER = """v=0
o=tandberg 1 2 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
b=AS:2048
t=0 0
m=audio 51000 RTP/AVP 9 0 8 101
b=TIAS:64000
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
m=video 51002 RTP/AVP 97
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42e016;max-mbps=108000
m=application 5070 UDP/BFCP *
a=floorctrl:c-s
"""

PHONE_OFFER = """v=0
o=- 42 42 IN IP4 198.51.100.7
s=call
c=IN IP4 198.51.100.7
t=0 0
m=audio 4000 RTP/AVP 8 0 96
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-16
a=ptime:20
"""


def test_room_system_gets_wideband_audio_dtmf_and_declined_video_and_bfcp() -> None:
    result = answer(parse(ROOM_SYSTEM_OFFER), local_address="203.0.113.5", audio_port=40000, codecs=ALL, session_id=7)
    audio = result.audio
    assert (audio.codec, audio.payload_type, audio.clock_rate) == (AudioCodec.G722, 9, 8000)
    assert audio.telephone_event_pt == 101
    assert (audio.remote_address, audio.remote_port, audio.remote_rtcp_port) == ("192.0.2.10", 51000, 51001)
    lines = result.sdp.split("\r\n")
    assert result.sdp.endswith("\r\n")
    assert "m=audio 40000 RTP/AVP 9 101" in lines
    assert "a=rtpmap:9 G722/8000" in lines and "a=rtpmap:101 telephone-event/8000" in lines
    assert "a=fmtp:101 0-15" in lines
    assert "m=video 0 RTP/AVP 97" in lines  # declined, not rejected
    assert "m=application 0 UDP/BFCP *" in lines
    assert [line.split()[0] for line in lines if line.startswith("m=")] == ["m=audio", "m=video", "m=application"]
    assert "c=IN IP4 203.0.113.5" in lines and "a=sendrecv" in lines
    reparsed = parse(result.sdp)
    assert [m.port for m in reparsed.media] == [40000, 0, 0]


def test_offerers_order_wins_unless_we_prefer_ours() -> None:
    offer = parse(PHONE_OFFER)
    assert answer(offer, local_address="203.0.113.5", audio_port=4, codecs=ALL).audio.codec is AudioCodec.PCMA
    ours = answer(offer, local_address="203.0.113.5", audio_port=4, codecs=[AudioCodec.PCMU, AudioCodec.PCMA], prefer_ours=True)
    assert ours.audio.codec is AudioCodec.PCMU and ours.audio.payload_type == 0
    assert "a=fmtp:96 0-16" in ours.sdp  # the offered events are echoed


def test_opus_keeps_its_payload_type_with_our_fmtp_and_48k_telephone_event() -> None:
    offer = parse(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        "m=audio 6000 RTP/AVP 111 9 110 101\r\na=rtpmap:111 opus/48000/2\r\n"
        "a=fmtp:111 minptime=10;useinbandfec=1;stereo=1;sprop-stereo=1\r\na=rtpmap:110 telephone-event/48000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
    )
    result = answer(offer, local_address="203.0.113.5", audio_port=4000, codecs=ALL)
    assert (result.audio.codec, result.audio.payload_type, result.audio.telephone_event_pt) == (AudioCodec.OPUS, 111, 110)
    # RFC 7587: the fmtp says what we want to receive: mono with FEC, not the offerer's stereo
    assert "a=rtpmap:111 opus/48000/2" in result.sdp and "a=fmtp:111 useinbandfec=1\r\n" in result.sdp
    assert "telephone-event/48000" in result.sdp and "telephone-event/8000" not in result.sdp


def test_telephone_event_at_another_clock_is_taken_when_none_matches() -> None:
    """baresip and others offer telephone-event/8000 beside Opus: DTMF must still work."""
    offer = parse(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        "m=audio 6000 RTP/AVP 96 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    result = answer(offer, local_address="203.0.113.5", audio_port=4000, codecs=ALL)
    assert result.audio.telephone_event_pt == 101 and "a=rtpmap:101 telephone-event/8000" in result.sdp


@pytest.mark.parametrize(
    ("offered", "wanted", "answered", "on_hold"),
    [
        ("sendrecv", "sendrecv", "sendrecv", False),
        ("sendonly", "sendrecv", "recvonly", True),  # the caller puts us on hold
        ("recvonly", "sendrecv", "sendonly", False),
        ("inactive", "sendrecv", "inactive", True),
        ("sendrecv", "recvonly", "recvonly", True),  # we hold (e.g. the lobby before a prompt)
    ],
)
def test_direction_mirrors_the_offer(offered: str, wanted: str, answered: str, on_hold: bool) -> None:
    result = answer(parse(PHONE_OFFER + f"a={offered}\n"), local_address="203.0.113.5", audio_port=4, codecs=ALL, direction=wanted)
    assert result.audio.direction == answered and f"a={answered}" in result.sdp
    assert result.audio.on_hold is on_hold


def test_session_level_direction_applies_when_the_media_has_none() -> None:
    offer = PHONE_OFFER.replace("t=0 0\n", "t=0 0\na=sendonly\n")
    assert answer(parse(offer), local_address="203.0.113.5", audio_port=4, codecs=ALL).audio.direction == "recvonly"


def test_srtp_sdes_is_answered_with_a_fresh_key_and_rtcp_mux_echoed() -> None:
    key = base64.b64encode(bytes(range(30))).decode()
    offer = PHONE_OFFER.replace("RTP/AVP", "RTP/SAVP") + (
        "a=crypto:1 AES_CM_256_HMAC_SHA1_80 inline:AAAA\n"  # a suite we do not take
        f"a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^31\na=rtcp-mux\n"
    )
    result = answer(parse(offer), local_address="203.0.113.5", audio_port=4000, codecs=ALL)
    assert result.audio.remote_crypto is not None and result.audio.remote_crypto.key_salt == bytes(range(30))
    local = result.audio.local_crypto
    assert local is not None and local.tag == 2 and local.suite == "AES_CM_128_HMAC_SHA1_80"
    assert len(local.key_salt) == 30 and local.key_salt != bytes(range(30))
    assert "m=audio 4000 RTP/SAVP 8 96" in result.sdp and f"a=crypto:{local.line()}" in result.sdp
    assert result.audio.rtcp_mux and "a=rtcp-mux" in result.sdp and result.audio.remote_rtcp_port == 4000


def test_rtcp_attribute_gives_the_remote_rtcp_port() -> None:
    result = answer(parse(PHONE_OFFER + "a=rtcp:4711 IN IP4 198.51.100.7\n"), local_address="h", audio_port=4, codecs=ALL)
    assert result.audio.remote_rtcp_port == 4711


def test_static_payload_types_need_no_rtpmap() -> None:
    offer = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 5004 RTP/AVP 0\n"
    result = answer(parse(offer), local_address="203.0.113.5", audio_port=4, codecs=ALL)
    assert (result.audio.codec, result.audio.telephone_event_pt) == (AudioCodec.PCMU, None)


@pytest.mark.parametrize(
    ("sdp", "status", "words"),
    [
        ("", 400, "empty"),
        ("x=1\n", 400, "v=0"),
        ("v=0\ns=-\n", 400, "o= line"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio abc RTP/AVP 0\n", 400, "bad port"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio 99999 RTP/AVP 0\nc=IN IP4 h\n", 400, "out of range"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio 5000\n", 400, "malformed m= line"),
        ("v=0\no=- 1 1 IN IP4 h\nc=IN FOO h\nm=audio 5000 RTP/AVP 0\n", 400, "c= line"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio 5000 RTP/AVP 0\n", 400, "connection address"),
        ("v=0\no=- 1 1 IN IP4 h\nnot a line\n", 400, "<type>=<value>"),
    ],
)
def test_malformed_offers_are_400_with_a_reason(sdp: str, status: int, words: str) -> None:
    with pytest.raises(SdpError) as error:
        answer(parse(sdp), local_address="h", audio_port=4, codecs=ALL)
    assert error.value.status == status and words in error.value.reason


def test_no_common_codec_or_no_audio_is_488() -> None:
    g729_only = PHONE_OFFER.replace("m=audio 4000 RTP/AVP 8 0 96", "m=audio 4000 RTP/AVP 18").replace(
        "a=rtpmap:96", "a=rtpmap:18 G729/8000\na=x-old:96"
    )
    with pytest.raises(SdpError) as error:
        answer(parse(g729_only), local_address="h", audio_port=4, codecs=ALL)
    assert error.value.status == 488 and "no common audio codec" in error.value.reason
    video_only = "v=0\no=- 1 1 IN IP4 h\nc=IN IP4 h\nt=0 0\nm=video 5000 RTP/AVP 97\na=rtpmap:97 H264/90000\n"
    with pytest.raises(SdpError) as error:
        answer(parse(video_only), local_address="h", audio_port=4, codecs=ALL)
    assert error.value.status == 488 and "no audio" in error.value.reason
    srtp_unknown_suite = PHONE_OFFER.replace("RTP/AVP", "RTP/SAVP") + "a=crypto:1 F8_128_HMAC_SHA1_80 inline:AAAA\n"
    with pytest.raises(SdpError) as error:
        answer(parse(srtp_unknown_suite), local_address="h", audio_port=4, codecs=ALL)
    assert error.value.status == 488
