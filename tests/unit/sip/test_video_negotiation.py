"""SDP offer/answer of the main video line of SIP calls (sans-IO, sip/negotiation.py): H.264 modes 0
and 1 and VP8 in the offerer's order, RTP/AVP(F) and RTP/SAVP(F), RTCP feedback per payload type,
bandwidth, direction, dual (SRTP + plain) offers, content and unknown lines declined with port 0,
and our own video offer with its answer. The offers are shaped like what Cisco, Poly, Yealink,
Linphone and baresip endpoints send."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.sip.negotiation import (
    VIDEO_FEEDBACK,
    Answer,
    MediaPlan,
    MediaSession,
    VideoChoice,
    accept_video_answer,
    answer,
    offer,
    video_offered,
)
from gateway.sip.sdp import Bandwidth, SdpError, SessionDescription, parse
from gateway.transcode.audio import AudioCodec
from gateway.transcode.codecs import can_forward, h264, vp8

AUDIO = [AudioCodec.OPUS, AudioCodec.G722, AudioCodec.PCMA, AudioCodec.PCMU]
# What the gateway takes: H.264 non-interleaved (97) and single NAL unit (98), VP8 (96).
VIDEO = (h264(97), h264(98, packetization_mode=0), vp8(96))
KEY = base64.b64encode(bytes(range(30))).decode()  # 30 bytes of key and salt: 40 characters

# Cisco TelePresence / Webex room device: RTP/AVP with rtcp-fb anyway, H.264 in both modes with the
# receive limits, H.263 and H.261 beside, then content (slides) and BFCP.
CISCO_OFFER = """v=0
o=tandberg 0 1 IN IP4 192.0.2.20
s=-
c=IN IP4 192.0.2.20
b=AS:6000
t=0 0
m=audio 2326 RTP/AVP 100 9 8 0 102
b=TIAS:64000
a=rtpmap:100 MP4A-LATM/90000
a=fmtp:100 profile-level-id=24;object=23;bitrate=64000
a=rtpmap:9 G722/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:102 telephone-event/8000
a=fmtp:102 0-15
a=sendrecv
m=video 2328 RTP/AVP 97 126 34 31
b=TIAS:6000000
a=rtpmap:97 H264/90000
a=fmtp:97 packetization-mode=0;profile-level-id=42e016;max-mbps=245000;max-fs=8160;max-br=5000;max-smbps=245000;max-fps=6000
a=rtpmap:126 H264/90000
a=fmtp:126 packetization-mode=1;profile-level-id=42e016;max-mbps=245000;max-fs=8160;max-br=5000;max-smbps=245000;max-fps=6000
a=rtpmap:34 H263/90000
a=fmtp:34 CIF4=1;CIF=1;QCIF=1
a=rtpmap:31 H261/90000
a=fmtp:31 CIF=1;QCIF=1
a=rtcp-fb:* nack pli
a=rtcp-fb:* ccm fir
a=rtcp-fb:* ccm tmmbr
a=sendrecv
a=content:main
a=label:11
m=video 2330 RTP/AVP 97 126
b=TIAS:6000000
a=rtpmap:97 H264/90000
a=fmtp:97 packetization-mode=0;profile-level-id=42e016;max-mbps=245000;max-fs=8160
a=rtpmap:126 H264/90000
a=fmtp:126 packetization-mode=1;profile-level-id=42e016;max-mbps=245000;max-fs=8160
a=rtcp-fb:* nack pli
a=rtcp-fb:* ccm fir
a=sendrecv
a=content:slides
a=label:12
m=application 5070 TCP/BFCP *
a=setup:actpass
a=connection:new
a=floorctrl:c-s
a=confid:1
a=userid:3
a=floorid:2 mstrm:12
"""

# Poly Group Series with "SRTP: best effort": every stream offered twice, SRTP first.
POLY_DUAL_OFFER = f"""v=0
o=GroupSeries 1526992150 0 IN IP4 198.51.100.30
s=-
c=IN IP4 198.51.100.30
b=AS:2048
t=0 0
a=sendrecv
m=audio 49154 RTP/SAVP 115 9 0 8 101
a=rtpmap:115 G7221/32000
a=fmtp:115 bitrate=48000
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}
a=sendrecv
m=audio 49154 RTP/AVP 115 9 0 8 101
a=rtpmap:115 G7221/32000
a=fmtp:115 bitrate=48000
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
m=video 49156 RTP/SAVP 109 110 111 34
b=AS:1920
a=rtpmap:109 H264/90000
a=fmtp:109 profile-level-id=640020; max-mbps=108000; max-fs=3600; sar=13
a=rtpmap:110 H264/90000
a=fmtp:110 profile-level-id=428016; packetization-mode=1; max-mbps=108000; max-fs=3600; sar=13
a=rtpmap:111 H264/90000
a=fmtp:111 profile-level-id=428016; max-mbps=108000; max-fs=3600; sar=13
a=rtpmap:34 H263/90000
a=fmtp:34 CIF4=1;CIF=1;QCIF=1
a=rtcp-fb:* ccm fir
a=rtcp-fb:* ccm tmmbr
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}
a=sendrecv
a=content:main
a=label:2
m=video 49156 RTP/AVP 109 110 111 34
b=AS:1920
a=rtpmap:109 H264/90000
a=fmtp:109 profile-level-id=640020; max-mbps=108000; max-fs=3600; sar=13
a=rtpmap:110 H264/90000
a=fmtp:110 profile-level-id=428016; packetization-mode=1; max-mbps=108000; max-fs=3600; sar=13
a=rtpmap:111 H264/90000
a=fmtp:111 profile-level-id=428016; max-mbps=108000; max-fs=3600; sar=13
a=rtpmap:34 H263/90000
a=fmtp:34 CIF4=1;CIF=1;QCIF=1
a=rtcp-fb:* ccm fir
a=rtcp-fb:* ccm tmmbr
a=sendrecv
a=content:main
a=label:2
"""

# Linphone with AVPF on: VP8 and H.264 (no packetization-mode: mode 0), feedback per payload type.
# (Its audio line is RTP/AVP here: the audio negotiator takes RTP/AVP and RTP/SAVP only.)
LINPHONE_AVPF_OFFER = """v=0
o=alice 3066 1445 IN IP4 203.0.113.44
s=Talk
c=IN IP4 203.0.113.44
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
m=audio 7078 RTP/AVP 96 0 8 101
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:101 telephone-event/8000
a=rtcp-fb:* trr-int 5000
m=video 9078 RTP/AVPF 96 97
a=rtpmap:96 VP8/90000
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42801F
a=rtcp-fb:* trr-int 5000
a=rtcp-fb:96 nack pli
a=rtcp-fb:96 nack sli
a=rtcp-fb:96 ccm fir
a=rtcp-fb:97 nack pli
a=rtcp-fb:97 ccm fir
a=rtcp-fb:97 ccm tmmbr smaxpr=120
"""

# baresip 1.0 with avcodec: RTP/AVP, H.264 mode 0 only, feedback for every payload type.
BARESIP_OFFER = """v=0
o=- 1840374207 3154468281 IN IP4 198.51.100.61
s=-
c=IN IP4 198.51.100.61
t=0 0
a=tool:baresip 1.0.0
m=audio 10000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp-rsize
a=sendrecv
a=label:1
a=ssrc:1460223390 cname:8c2c1dbe-e5ac-4df4-9a9a-3a28bc71d1ba
a=mid:1
a=rtcp-mux
m=video 10004 RTP/AVP 96
b=AS:1100
a=rtpmap:96 H264/90000
a=fmtp:96 packetization-mode=0;profile-level-id=42e01f
a=rtcp-fb:* ccm fir
a=rtcp-fb:* nack
a=rtcp-fb:* nack pli
a=rtcp-rsize
a=sendrecv
a=label:2
a=ssrc:2612931297 cname:8c2c1dbe-e5ac-4df4-9a9a-3a28bc71d1ba
a=mid:2
a=rtcp-mux
"""

# Yealink desk video phone: RTP/AVP, no RTCP feedback at all.
YEALINK_OFFER = """v=0
o=- 20012 20012 IN IP4 192.0.2.77
s=SDP data
c=IN IP4 192.0.2.77
t=0 0
m=audio 11780 RTP/AVP 9 0 8 101
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
m=video 11784 RTP/AVP 99 100
a=rtpmap:99 H264/90000
a=fmtp:99 profile-level-id=42801F; packetization-mode=1; max-br=2048
a=rtpmap:100 H264/90000
a=fmtp:100 profile-level-id=42801F; max-br=2048
a=rtcp:11785
a=sendrecv
"""


def take(text: str, **kwargs: object) -> Answer:
    """Our answer, with a video port and our video codecs unless told otherwise; its SDP must parse
    again into the very description we wrote."""
    arguments: dict[str, object] = {
        "local_address": "203.0.113.5",
        "audio_port": 40000,
        "codecs": AUDIO,
        "session_id": 5,
        "video_port": 40002,
        "video_codecs": VIDEO,
    }
    arguments.update(kwargs)
    result = answer(parse(text), **arguments)  # type: ignore[arg-type]
    assert result.description is not None and parse(result.sdp) == result.description
    return result


def video_line_of(text: str, index: int) -> str:
    """The m-line of the index-th medium of an SDP text."""
    return [line for line in text.split("\r\n") if line.startswith("m=")][index]


def chosen(result: Answer) -> VideoChoice:
    assert result.video is not None
    return result.video


# -- profiles and RTCP feedback -------------------------------------------------------------------------


def test_avpf_offer_is_answered_avpf_with_the_feedback_we_share_per_payload_type() -> None:
    result = take(LINPHONE_AVPF_OFFER)
    video = chosen(result)
    assert video.avpf and video.local_crypto is None and video.remote_crypto is None
    assert [(c.name, c.payload_type) for c in video.codecs] == [("VP8", 96), ("H264", 97)]  # the offerer's order
    assert video.codecs[0].rtcp_fb == ("nack pli", "ccm fir")  # (nack sli and trr-int are not ours)
    assert video.codecs[1].rtcp_fb == ("nack pli", "ccm fir", "ccm tmmbr")  # (smaxpr= is a parameter)
    assert video.keyframe_by_rtcp
    # H.264 without packetization-mode is mode 0: our PT 98 takes it, echoed with the offer's PT 97.
    assert video.codecs[1].parameter("packetization-mode") == "0"
    assert video.codecs[1].parameter("profile-level-id") == "42801F"
    ours = result.description.media[1] if result.description else None
    assert ours is not None
    assert (ours.kind, ours.port, ours.proto, ours.formats) == ("video", 40002, "RTP/AVPF", ["96", "97"])
    assert ours.rtcp_fb == [
        ("96", "nack pli"), ("96", "ccm fir"), ("97", "nack pli"), ("97", "ccm fir"), ("97", "ccm tmmbr"),
    ]
    assert ours.fmtp == {97: "profile-level-id=42801F;packetization-mode=0"} and 96 not in ours.fmtp
    assert (video.remote_address, video.remote_port, video.remote_rtcp_port) == ("203.0.113.44", 9078, 9079)
    assert ours.rtcp == "40003" and not ours.rtcp_mux


def test_avp_offer_is_answered_avp_and_keeps_the_feedback_it_lists() -> None:
    """baresip offers rtcp-fb on RTP/AVP: the feedback is agreed all the same; rtcp-mux is echoed."""
    result = take(BARESIP_OFFER)
    video = chosen(result)
    assert not video.avpf
    assert [(c.name, c.payload_type, c.rtcp_fb) for c in video.codecs] == [
        ("H264", 96, ("nack", "nack pli", "ccm fir")),
    ]
    assert video.keyframe_by_rtcp and video.rtcp_mux and video.remote_rtcp_port == 10004
    assert video.codecs[0].bandwidth_kbps == 1100  # b=AS
    lines = result.sdp.split("\r\n")
    assert video_line_of(result.sdp, 1) == "m=video 40002 RTP/AVP 96"
    assert "a=fmtp:96 profile-level-id=42e01f;packetization-mode=0" in lines
    assert "a=rtcp-fb:96 nack" in lines and "a=rtcp-fb:96 ccm fir" in lines and "a=rtcp-fb:96 ccm tmmbr" not in lines
    assert "a=rtcp-mux" in lines and "a=rtcp:40003" not in lines
    assert "a=rtcp-fb:* ccm fir" not in lines  # (written per payload type)


def test_avp_offer_without_feedback_agrees_on_none_and_keyframes_go_by_sip_info() -> None:
    result = take(YEALINK_OFFER)
    video = chosen(result)
    assert [c.payload_type for c in video.codecs] == [99, 100]  # mode 1 then mode 0, as offered
    assert all(c.rtcp_fb == () for c in video.codecs) and not video.keyframe_by_rtcp
    assert not video.avpf and video.remote_rtcp_port == 11785  # (a=rtcp read)
    assert "a=rtcp-fb" not in result.sdp
    assert "a=fmtp:99 profile-level-id=42801F;packetization-mode=1" in result.sdp.split("\r\n")
    assert video.codecs[0].parameter("max-br") == "2048"  # the remote's limit, kept ...
    assert "max-br" not in result.sdp  # ... and not echoed


# -- several video lines ---------------------------------------------------------------------------------


def test_main_video_is_taken_and_content_and_bfcp_are_declined_with_port_0() -> None:
    result = take(CISCO_OFFER)
    video = chosen(result)
    ours = parse(result.sdp)
    assert [(m.kind, m.port, m.proto) for m in ours.media] == [
        ("audio", 40000, "RTP/AVP"),
        ("video", 40002, "RTP/AVP"),
        ("video", 0, "RTP/AVP"),  # content (slides): no content port given (test_content_negotiation)
        ("application", 0, "TCP/BFCP"),
    ]
    assert ours.media[2].formats == ["97"] and ours.media[3].formats == ["*"]
    main = ours.media[1]
    assert main.formats == ["97", "126"]  # H.263 and H.261 left out
    assert main.content == "main"
    assert main.fmtp == {
        97: "profile-level-id=42e016;packetization-mode=0",
        126: "profile-level-id=42e016;packetization-mode=1",
    }
    assert main.bandwidths == [Bandwidth("AS", 2048), Bandwidth("TIAS", 2048000)]
    assert [c.rtcp_fb for c in video.codecs] == [("nack pli", "ccm fir", "ccm tmmbr")] * 2
    assert [c.bandwidth_kbps for c in video.codecs] == [6000, 6000]  # b=TIAS:6000000 of the line
    assert video.codecs[0].parameter("max-mbps") == "245000" and video.codecs[0].parameter("max-fps") == "6000"
    assert (video.direction, video.remote_address, video.remote_port) == ("sendrecv", "192.0.2.20", 2328)
    assert result.audio.codec is AudioCodec.G722
    # what we would send (codecs[0]) is an H.264 stream a constrained baseline sender can feed
    assert can_forward(h264(0, "42e016", packetization_mode=0), video.codecs[0])


def test_a_second_main_video_line_is_declined() -> None:
    second = CISCO_OFFER.replace("a=content:slides\n", "")
    ours = parse(take(second).sdp)
    assert [m.port for m in ours.media] == [40000, 40002, 0, 0]


def test_dual_offer_takes_the_srtp_video_when_audio_took_srtp() -> None:
    result = take(POLY_DUAL_OFFER)
    video = chosen(result)
    ours = parse(result.sdp)
    assert [(m.kind, m.port, m.proto) for m in ours.media] == [
        ("audio", 40000, "RTP/SAVP"), ("audio", 0, "RTP/AVP"), ("video", 40002, "RTP/SAVP"), ("video", 0, "RTP/AVP"),
    ]
    assert video.remote_crypto is not None and video.remote_crypto.key_salt == bytes(range(30))
    assert video.local_crypto is not None and video.local_crypto.key_salt != bytes(range(30))
    assert video.local_crypto != result.audio.local_crypto  # a key of its own
    assert ours.media[2].crypto == [video.local_crypto.line()]
    # High profile mode 0, baseline mode 1, baseline mode 0 (no packetization-mode): all three, H.263 left out
    assert [(c.payload_type, c.parameter("profile-level-id"), c.parameter("packetization-mode")) for c in video.codecs] == [
        (109, "640020", "0"), (110, "428016", "1"), (111, "428016", "0"),
    ]
    assert video.codecs[0].parameter("sar") == "13"
    assert [c.bandwidth_kbps for c in video.codecs] == [1920] * 3  # b=AS of the line
    assert [c.rtcp_fb for c in video.codecs] == [("ccm fir", "ccm tmmbr")] * 3 and video.keyframe_by_rtcp


def test_dual_offer_takes_the_plain_video_when_audio_is_plain() -> None:
    plain_audio_first = POLY_DUAL_OFFER.replace("m=audio 49154 RTP/SAVP 115 9 0 8 101", "m=audio 49154 RTP/SAVP 115")
    result = take(plain_audio_first)
    assert result.audio.local_crypto is None
    assert [(m.port, m.proto) for m in parse(result.sdp).media] == [
        (0, "RTP/SAVP"), (40000, "RTP/AVP"), (0, "RTP/SAVP"), (40002, "RTP/AVP"),
    ]
    assert chosen(result).local_crypto is None


def test_required_srtp_declines_plain_video_and_keeps_the_call() -> None:
    plain_video = POLY_DUAL_OFFER.replace("m=video 49156 RTP/SAVP 109 110 111 34", "m=video 49156 RTP/SAVP 34")
    result = take(plain_video, require_srtp=True)
    assert result.video is None and result.audio.local_crypto is not None
    assert [m.port for m in parse(result.sdp).media] == [40000, 0, 0, 0]
    assert not video_offered(parse(plain_video), VIDEO, require_srtp=True)
    assert video_offered(parse(plain_video), VIDEO)
    with pytest.raises(SdpError, match="SRTP required") as refused:
        take(CISCO_OFFER, require_srtp=True)
    assert refused.value.status == 488


def test_srtp_video_without_a_suite_we_take_is_declined() -> None:
    no_suite = POLY_DUAL_OFFER.replace(f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\na=sendrecv\na=content", "a=content")
    result = take(no_suite)
    assert [(m.port, m.proto) for m in parse(result.sdp).media][2:] == [(0, "RTP/SAVP"), (40002, "RTP/AVP")]


# -- codecs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "video",
    [
        "m=video 5002 RTP/AVP 34 31\na=rtpmap:34 H263/90000\na=rtpmap:31 H261/90000\n",
        "m=video 5002 RTP/AVP 98\na=rtpmap:98 H265/90000\na=fmtp:98 profile-id=1;level-id=93\n",
        "m=video 5002 RTP/AVP 100\na=rtpmap:100 H264/90000\na=fmtp:100 packetization-mode=2;profile-level-id=42e01f\n",
        "m=video 5002 RTP/AVP 100\na=rtpmap:100 H264/90000\na=fmtp:100 profile-level-id=bogus1\n",
        "m=video 5002 RTP/AVP 100\na=rtpmap:100 H264/8000\n",
        "m=video 5002 RTP/AVP 100\n",  # (no rtpmap for a dynamic payload type)
        "m=video 5002 UDP/TLS/RTP/SAVPF 96\na=rtpmap:96 VP8/90000\n",  # DTLS-SRTP is not ours here
        "m=video 0 RTP/AVP 96\na=rtpmap:96 VP8/90000\n",  # the offerer turned it off
        "m=video 5002 RTP/AVP 96\nc=IN IP4 camera.example\na=rtpmap:96 VP8/90000\n",  # (host names are not resolved)
    ],
)
def test_a_video_line_we_cannot_take_is_declined_and_the_call_keeps_its_audio(video: str) -> None:
    text = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 5000 RTP/AVP 8\n" + video
    result = take(text)
    assert result.video is None and result.audio.codec is AudioCodec.PCMA
    ours = parse(result.sdp).media
    assert [(m.kind, m.port) for m in ours] == [("audio", 40000), ("video", 0)]
    assert ours[1].proto == parse(text).media[1].proto and ours[1].formats == parse(text).media[1].formats[:1]
    assert not video_offered(parse(text), VIDEO)


def test_unknown_codecs_are_left_out_and_h264_kept() -> None:
    mixed = (
        "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 5000 RTP/AVP 8\n"
        "m=video 5002 RTP/AVP 98 34 97 99\na=rtpmap:98 H265/90000\na=rtpmap:34 H263/90000\n"
        "a=rtpmap:97 H264/90000\na=fmtp:97 profile-level-id=4d0028;packetization-mode=1;level-asymmetry-allowed=1\n"
        "a=rtpmap:99 rtx/90000\na=fmtp:99 apt=97\n"
    )
    result = take(mixed)
    assert [(c.name, c.payload_type) for c in chosen(result).codecs] == [("H264", 97)]
    assert video_line_of(result.sdp, 1) == "m=video 40002 RTP/AVP 97"
    assert "a=fmtp:97 profile-level-id=4d0028;packetization-mode=1;level-asymmetry-allowed=1" in result.sdp
    assert "H265" not in result.sdp and "rtx" not in result.sdp
    assert video_offered(mixed, VIDEO)


def test_only_the_modes_and_codecs_the_caller_gives_are_taken() -> None:
    result = take(CISCO_OFFER, video_codecs=(h264(97),))  # mode 1 only
    assert [c.payload_type for c in chosen(result).codecs] == [126]
    assert take(LINPHONE_AVPF_OFFER, video_codecs=(vp8(100),)).video is not None
    assert take(CISCO_OFFER, video_codecs=(vp8(96),)).video is None  # (no VP8 offered)
    assert take(CISCO_OFFER, video_codecs=()).video is None


def test_absent_h264_parameters_mean_rfc_6184_defaults() -> None:
    bare = (
        "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 5000 RTP/AVP 8\n"
        "m=video 5002 RTP/AVP 109\na=rtpmap:109 h264/90000\n"
    )
    result = take(bare)
    codec = chosen(result).codecs[0]
    assert (codec.name, codec.parameter("profile-level-id"), codec.parameter("packetization-mode")) == ("H264", "42000a", "0")
    assert "a=fmtp:109 profile-level-id=42000a;packetization-mode=0" in result.sdp.split("\r\n")
    assert codec.bandwidth_kbps is None  # no b= anywhere


def test_only_printable_ascii_parameters_are_kept() -> None:
    text = YEALINK_OFFER.replace("max-br=2048\na=rtpmap:100", "max-br=2048; x-caf\u00e9=1; level-asymmetry-allowed=y\na=rtpmap:100")
    result = take(text)
    codec = chosen(result).codecs[0]
    assert codec.parameter("x-caf\u00e9") is None and codec.parameter("level-asymmetry-allowed") == "y"
    assert "level-asymmetry-allowed" not in result.sdp  # (not 0 or 1: not echoed)
    assert result.sdp.isascii()


# -- bandwidth and direction -----------------------------------------------------------------------------


def test_tias_wins_over_as_and_the_session_bandwidth_is_the_fallback() -> None:
    both = CISCO_OFFER.replace("b=TIAS:6000000\na=rtpmap:97", "b=AS:3000\nb=TIAS:1500000\na=rtpmap:97", 1)
    assert chosen(take(both)).codecs[0].bandwidth_kbps == 1500
    only_as = CISCO_OFFER.replace("b=TIAS:6000000\na=rtpmap:97", "b=AS:3000\na=rtpmap:97", 1)
    assert chosen(take(only_as)).codecs[0].bandwidth_kbps == 3000
    session_only = CISCO_OFFER.replace("b=TIAS:6000000\na=rtpmap:97", "a=rtpmap:97", 1)
    assert chosen(take(session_only)).codecs[0].bandwidth_kbps == 6000  # the session's b=AS:6000
    ours = take(CISCO_OFFER, video_max_kbps=768).description
    assert ours is not None and ours.media[1].bandwidths == [Bandwidth("AS", 768), Bandwidth("TIAS", 768000)]


@pytest.mark.parametrize(
    ("offered", "ours", "answered"),
    [
        ("sendonly", "sendrecv", "recvonly"),
        ("recvonly", "sendrecv", "sendonly"),
        ("inactive", "sendrecv", "inactive"),
        ("sendrecv", "recvonly", "recvonly"),
        ("sendonly", "sendonly", "inactive"),
    ],
)
def test_direction_mirrors_the_offer_narrowed_by_ours(offered: str, ours: str, answered: str) -> None:
    text = YEALINK_OFFER.replace("a=rtcp:11785\na=sendrecv", f"a=rtcp:11785\na={offered}")
    result = take(text, video_direction=ours)
    assert chosen(result).direction == answered
    assert parse(result.sdp).media[1].direction == answered
    assert result.audio.direction == "sendrecv"  # (the audio line has its own)


def test_a_session_level_direction_applies_to_video() -> None:
    held = POLY_DUAL_OFFER.replace("t=0 0\na=sendrecv", "t=0 0\na=sendonly").replace("a=sendrecv\na=content", "a=content")
    assert chosen(take(held)).direction == "recvonly"


def test_without_a_video_port_every_video_line_is_declined_as_before() -> None:
    result = take(CISCO_OFFER, video_port=None)
    assert result.video is None
    assert [m.port for m in parse(result.sdp).media] == [40000, 0, 0, 0]
    assert video_line_of(result.sdp, 1) == "m=video 0 RTP/AVP 97"


# -- our offer and its answer ----------------------------------------------------------------------------


def our_offer(**kwargs: object) -> str:
    arguments: dict[str, object] = {
        "local_address": "203.0.113.5",
        "audio_port": 40000,
        "codecs": AUDIO,
        "session_id": 9,
        "video_port": 40002,
        "video_codecs": (vp8(96), h264(97), h264(98, packetization_mode=0)),
    }
    arguments.update(kwargs)
    return offer(**arguments)  # type: ignore[arg-type]


def test_our_offer_has_a_video_line_with_feedback_and_bandwidth() -> None:
    text = our_offer(video_max_kbps=1024)
    lines = text.split("\r\n")
    assert [line for line in lines if line.startswith("m=")] == [
        "m=audio 40000 RTP/AVP 111 9 8 0 101 110",
        "m=video 40002 RTP/AVP 96 97 98",  # RTP/AVP (with rtcp-fb): endpoints decline RTP/AVPF offers
    ]
    video = parse(text).media[1]
    assert [str(video.rtpmap[pt]) for pt in (96, 97, 98)] == ["96 VP8/90000", "97 H264/90000", "98 H264/90000"]
    assert video.fmtp == {
        97: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        98: "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f",
    }
    assert video.rtcp_fb == [(pt, kind) for pt in ("96", "97", "98") for kind in VIDEO_FEEDBACK]
    assert video.rtcp == "40003" and video.direction == "sendrecv"
    assert video.bandwidths == [Bandwidth("AS", 1024), Bandwidth("TIAS", 1024000)]
    assert "m=video" not in our_offer(video_port=None) and "m=video" not in our_offer(video_codecs=())


def test_our_offer_answered_by_ourselves_round_trips() -> None:
    """The answering side is our own answer() (with mode 1 H.264 only); what it writes, our
    accept_video_answer reads back to the same agreement."""
    offered = (vp8(96), h264(97), h264(98, packetization_mode=0))
    theirs = answer(
        parse(our_offer(video_codecs=offered)), local_address="192.0.2.50", audio_port=6000, codecs=AUDIO,
        video_port=6002, video_codecs=(h264(100),), video_max_kbps=512,
    )
    assert theirs.video is not None and [c.payload_type for c in theirs.video.codecs] == [97]
    assert theirs.video.codecs[0].rtcp_fb == VIDEO_FEEDBACK and theirs.video.codecs[0].bandwidth_kbps == 2048
    ours = accept_video_answer(parse(theirs.sdp), offered, "sendrecv")
    assert ours is not None
    assert [(c.name, c.payload_type, c.rtcp_fb, c.bandwidth_kbps) for c in ours.codecs] == [
        ("H264", 97, VIDEO_FEEDBACK, 512),
    ]
    assert ours.codecs[0].parameter("profile-level-id") == "42e01f" and ours.keyframe_by_rtcp
    assert (ours.remote_address, ours.remote_port, ours.remote_rtcp_port, ours.avpf) == ("192.0.2.50", 6002, 6003, False)


def test_a_room_systems_answer_to_our_offer() -> None:
    offered = (vp8(96), h264(97), h264(98, packetization_mode=0))
    cisco_answer = parse(
        "v=0\r\no=tandberg 0 2 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nb=AS:1920\r\nt=0 0\r\n"
        "m=audio 2326 RTP/AVP 9 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        "m=video 2328 RTP/AVP 98 97\r\nb=TIAS:1920000\r\na=rtpmap:98 H264/90000\r\n"
        "a=fmtp:98 packetization-mode=0;profile-level-id=42e01f;max-mbps=108000;max-fs=3600\r\n"
        "a=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=0;profile-level-id=42e01f\r\n"
        "a=rtcp-fb:* nack pli\r\na=sendonly\r\n"
    )
    video = accept_video_answer(cisco_answer, offered, "sendrecv")
    assert video is not None
    # 97 answered in mode 0 is not what we offered at 97 (mode 1): left out
    assert [(c.payload_type, c.rtcp_fb, c.bandwidth_kbps) for c in video.codecs] == [(98, ("nack pli",), 1920)]
    assert video.codecs[0].parameter("max-fs") == "3600" and video.direction == "recvonly"
    declined = parse(str(cisco_answer).replace("m=video 2328", "m=video 0"))
    assert accept_video_answer(declined, offered) is None
    assert accept_video_answer(parse(str(cisco_answer).split("m=video")[0]), offered) is None
    no_fmtp = parse(str(cisco_answer).replace("a=fmtp:97 packetization-mode=0;profile-level-id=42e01f\r\n", ""))
    kept = accept_video_answer(no_fmtp, offered)  # no fmtp in the answer: ours stands
    assert kept is not None and [c.payload_type for c in kept.codecs] == [98, 97]


# -- one call's side -------------------------------------------------------------------------------------


def test_media_session_takes_video_once_the_plan_has_a_port() -> None:
    plan = MediaPlan("203.0.113.1", 30000, AUDIO, False, "gw", session_id=7, video_codecs=VIDEO)
    session = MediaSession(plan)
    first = session.answer(CISCO_OFFER)
    assert first.video is None and session.video_choice is None  # no video socket yet
    assert [m.port for m in parse(first.sdp).media][:2] == [30000, 0]
    session.plan = replace(session.plan, video_port=30002, video_max_kbps=1024)  # (the call layer opens one)
    again = session.answer(CISCO_OFFER)  # a re-INVITE
    assert again.video is not None and session.video_choice is again.video
    assert " 7 2 IN IP4 " in again.sdp and video_line_of(again.sdp, 1) == "m=video 30002 RTP/AVP 97 126"
    assert "b=AS:1024" in again.sdp


def test_media_session_offers_video_and_keeps_what_the_answer_agreed() -> None:
    plan = MediaPlan("203.0.113.1", 30000, AUDIO, False, "gw", session_id=7, video_port=30002, video_codecs=VIDEO)
    session = MediaSession(plan)
    ours = session.offer()
    assert video_line_of(ours, 1) == "m=video 30002 RTP/AVP 97 98 96"
    remote = answer(
        parse(ours), local_address="192.0.2.20", audio_port=2326, codecs=[AudioCodec.G722],
        video_port=2328, video_codecs=(vp8(100),), video_direction="sendonly",
    )
    audio = session.take_answer(remote.sdp)
    assert audio.codec is AudioCodec.G722 and not session.awaiting_answer
    video = session.video_choice
    assert video is not None and [(c.name, c.payload_type) for c in video.codecs] == [("VP8", 96)]
    assert video.direction == "recvonly"  # they only send
    # A later offer of ours without video (the plan dropped it): the agreed video is gone with it.
    session.plan = replace(session.plan, video_port=None)
    assert "m=video" not in session.offer()
    session.take_answer(remote.sdp)
    assert session.video_choice is None


def test_a_held_plan_holds_video_too() -> None:
    plan = MediaPlan("203.0.113.1", 30000, AUDIO, False, "gw", direction="inactive", video_port=30002, video_codecs=VIDEO)
    result = MediaSession(plan).answer(CISCO_OFFER)
    assert result.video is not None and result.video.direction == "inactive"
    assert parse(MediaSession(plan).offer()).media[1].direction == "inactive"


# -- hostile offers ----------------------------------------------------------------------------------------

VIDEO_LINES = [
    "m=video 5002 RTP/AVP 96 97 98", "m=video 5002 RTP/SAVPF 96", "m=video 0 RTP/AVPF 97", "m=video 5002 RTP/AVP 127",
    "m=video 5004 RTP/AVP 96\na=content:slides", "a=rtpmap:96 VP8/90000", "a=rtpmap:97 H264/90000",
    "a=rtpmap:98 h264/90000", "a=rtpmap:127 H264/90000", "a=fmtp:97 packetization-mode=1;profile-level-id=42e01f",
    "a=fmtp:98 profile-level-id=\u00b2\u00b2\u00b2\u00b2\u00b2\u00b2", "a=fmtp:97 packetization-mode=\u00b2",
    "a=fmtp:127 profile-level-id=64001f;max-mbps=\x00", "a=rtcp-fb:* nack pli", "a=rtcp-fb:97 ccm fir",
    "a=rtcp-fb:\u00b2 nack", "a=rtcp-fb:* ccm", "b=TIAS:0", "b=AS:99999999999", "b=TIAS:1", "a=sendonly", "a=rtcp-mux",
    "a=rtcp:\u00b2", "c=IN IP4 host.example", "c=IN IP6 192.0.2.1", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY,
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:!!", "a=content:main", "a=content:main,slides",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(VIDEO_LINES) | st.text(max_size=30).map(lambda value: "a=" + value), max_size=12),
    st.booleans(),
)
def test_any_video_offer_gets_an_answer_that_parses_or_only_sdp_error(lines: list[str], srtp: bool) -> None:
    """Starting from a usable video line, anything added: the answer parses, takes at most one
    video line, agrees with video_offered, and raises nothing but SdpError."""
    audio = f"m=audio 5000 RTP/SAVP 8\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}" if srtp else "m=audio 5000 RTP/AVP 8"
    video = "m=video 5002 RTP/AVP 96 97\na=rtpmap:96 VP8/90000"
    text = "\n".join(["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", audio, video, *lines])
    try:
        offered = parse(text)
    except SdpError:
        return
    try:
        result = answer(
            offered, local_address="192.0.2.9", audio_port=30000, codecs=AUDIO, video_port=30002,
            video_codecs=VIDEO, require_srtp=srtp,
        )
    except SdpError as exc:
        assert exc.status in (400, 488)
        return
    ours = parse(result.sdp)
    assert isinstance(ours, SessionDescription) and len(ours.media) == len(offered.media)
    taken = [m for m in ours.media if m.kind == "video" and m.port]
    assert len(taken) == (1 if result.video is not None else 0)
    assert all("\n".join(m.lines()).isascii() for m in taken)
    assert result.video is None or not srtp or result.video.local_crypto is not None
    assert video_offered(offered, VIDEO, require_srtp=srtp) == (result.video is not None)
    accept_video_answer(offered, VIDEO)


def test_audio_on_avpf_is_answered_in_its_profile() -> None:
    """Linphone and baresip with AVPF on offer audio as RTP/AVPF too: the call is answered, audio in
    the offer's profile (it used to be a 488 for the whole call)."""
    text = LINPHONE_AVPF_OFFER.replace("m=audio 7078 RTP/AVP", "m=audio 7078 RTP/AVPF")
    assert "m=audio 7078 RTP/AVPF" in text
    result = take(text)
    assert video_line_of(result.sdp, 0).startswith("m=audio 40000 RTP/AVPF ")
    assert chosen(result).avpf
