"""Codec descriptors: fmtp parameters, H.264 profiles and levels, and whether a receiver takes a
sender's stream as it is (RFC 6184 8.1)."""

from __future__ import annotations

import pytest

from gateway.transcode.audio import AudioCodec
from gateway.transcode.codecs import (
    H264Profile,
    StreamCodec,
    StreamKind,
    audio_codec,
    can_forward,
    codec_names,
    forwardable_to,
    h264,
    h264_profile_level,
    parse_fmtp,
    vp8,
)


def test_fmtp_is_parsed_and_written_back_in_order() -> None:
    fmtp = parse_fmtp("profile-level-id=42E01F; packetization-mode=1;Level-Asymmetry-Allowed=1")
    codec = StreamCodec("H264", 97, 90_000, fmtp=fmtp, rtcp_fb=("nack", "nack pli"), bandwidth_kbps=2048)
    assert codec.parameter("PROFILE-LEVEL-ID") == "42E01F" and codec.parameter("packetization-mode") == "1"
    assert codec.parameter("max-fs") is None
    assert codec.fmtp_line == "profile-level-id=42E01F;packetization-mode=1;level-asymmetry-allowed=1"
    assert codec.feedback("NACK PLI") and not codec.feedback("ccm fir")


@pytest.mark.parametrize(
    ("profile_level_id", "profile", "level"),
    [
        ("42e01f", H264Profile.CONSTRAINED_BASELINE, 310),
        ("42c01e", H264Profile.CONSTRAINED_BASELINE, 300),
        ("4d801f", H264Profile.CONSTRAINED_BASELINE, 310),  # main with constraint_set0: the CB subset
        ("42001f", H264Profile.BASELINE, 310),
        ("42801f", H264Profile.BASELINE, 310),
        ("4d0028", H264Profile.MAIN, 400),
        ("640c1f", H264Profile.CONSTRAINED_HIGH, 310),
        ("640028", H264Profile.HIGH, 400),
        ("42100b", H264Profile.BASELINE, 9),  # level 1b
    ],
)
def test_h264_profile_and_level(profile_level_id: str, profile: H264Profile, level: int) -> None:
    parsed = h264_profile_level(h264(96, profile_level_id))
    assert parsed is not None and (parsed.profile, parsed.level) == (profile, level)


def test_an_absent_profile_level_id_is_baseline_level_1_and_garbage_is_nothing() -> None:
    absent = h264_profile_level(StreamCodec("H264", 96, 90_000))
    assert absent is not None and (absent.profile, absent.level) == (H264Profile.BASELINE, 100)
    assert h264_profile_level(h264(96, "zz")) is None and h264_profile_level(h264(96, "nothex")) is None


def test_a_receiver_takes_h264_it_can_decode_at_its_level_in_a_packetization_mode_it_can_take() -> None:
    chrome_cb = h264(102, "42e01f")
    room_system_high = h264(97, "640028")
    room_system_cb = h264(97, "42e01f")
    assert can_forward(room_system_cb, chrome_cb)
    assert not can_forward(room_system_high, chrome_cb)  # a CB decoder cannot decode High
    assert can_forward(chrome_cb, room_system_high)  # a High decoder decodes CB
    assert not can_forward(h264(97, "42e028"), chrome_cb)  # level 4.0 into a 3.1 receiver
    assert can_forward(h264(97, "42e01e"), chrome_cb)  # 3.0 into 3.1
    assert not can_forward(h264(97, "42001f"), chrome_cb)  # baseline may use what CB leaves out
    # repacketized per receiver: mode 0 into mode 1 is fine, mode 1 into mode 0 may not fit a packet
    assert can_forward(h264(97, "42e01f", packetization_mode=0), chrome_cb)
    assert not can_forward(chrome_cb, h264(97, "42e01f", packetization_mode=0))
    assert can_forward(h264(98, "42e01f", packetization_mode=0), h264(97, "42e01f", packetization_mode=0))
    assert not can_forward(chrome_cb, vp8(96)) and can_forward(vp8(96), vp8(100))
    # a bare name knows no profile: the name is enough
    assert can_forward(room_system_high, "H264") and can_forward("h264", chrome_cb) and not can_forward("VP8", "H264")
    assert forwardable_to(room_system_high, (vp8(96), chrome_cb, h264(103, "640c1f"), h264(104, "640032")))
    assert not forwardable_to(room_system_high, (vp8(96), chrome_cb, h264(104, "64001f")))  # High, but 3.1


def test_names_kinds_and_audio() -> None:
    assert codec_names((vp8(96), h264(97), h264(98, "42001f"), "h264")) == ("VP8", "H264")
    assert audio_codec(StreamCodec("PCMA", 8, 8000)) is AudioCodec.PCMA
    assert audio_codec(StreamCodec("opus", 111, 48_000, 2)) is AudioCodec.OPUS
    assert audio_codec(StreamCodec("telephone-event", 101, 8000)) is None
    assert StreamKind.CONTENT.is_video and StreamKind.MAIN.is_video and not StreamKind.AUDIO.is_video
