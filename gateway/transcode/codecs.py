"""What a media stream carries, without any protocol: stream kinds and negotiated codec descriptors.

A `StreamCodec` is one codec as an offer/answer (SDP, H.245, WebRTC) agreed it: name, payload
type, clock rate, channels, format parameters (for H.264 profile-level-id, packetization-mode,
level-asymmetry-allowed), RTCP feedback kinds and bandwidth. Protocol packages translate their own
descriptions into it; the video router and the RTP engine read it. Audio keeps
`gateway.transcode.audio.AudioCodec` (what the mixer decodes and encodes); `audio_codec()` relates
a descriptor to it.

`can_forward(sender, receiver)` tells whether a receiver can take a sender's frames as they are
(RFC 6184 8.1 for H.264: profile, level and packetization mode), so the router forwards without a
transcode only when the receiver can really decode what it gets.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.transcode.audio import AudioCodec


class StreamKind(enum.StrEnum):
    """Which of a leg's streams: its audio, its main video (camera, people) or its content (slides,
    RFC 4796 `a=content:slides`, BFCP/H.239 presentation)."""

    AUDIO = "audio"
    MAIN = "main"
    CONTENT = "content"

    @property
    def is_video(self) -> bool:
        return self is not StreamKind.AUDIO


@dataclass(frozen=True, slots=True)
class StreamCodec:
    """One negotiated codec of a stream. `fmtp` keeps the parameters in the order given (keys
    lower-cased); `rtcp_fb` the feedback kinds as SDP writes them ("nack", "nack pli", "ccm fir",
    "goog-remb"); `bandwidth_kbps` the agreed limit (b=AS / b=TIAS / H.245 maxBitRate), if any."""

    name: str  # "H264", "VP8", "opus", "PCMU", "telephone-event": as the protocol spells it
    payload_type: int
    clock_rate: int
    channels: int = 1
    fmtp: tuple[tuple[str, str], ...] = ()
    rtcp_fb: tuple[str, ...] = ()
    bandwidth_kbps: int | None = None

    def parameter(self, key: str) -> str | None:
        key = key.lower()
        for k, v in self.fmtp:
            if k == key:
                return v
        return None

    @property
    def fmtp_line(self) -> str:
        """The parameters as SDP's a=fmtp writes them ("" when there are none)."""
        return ";".join(f"{k}={v}" for k, v in self.fmtp)

    def feedback(self, kind: str) -> bool:
        """Whether this RTCP feedback kind ("nack pli", "ccm fir", ...) was agreed."""
        return kind.lower() in self.rtcp_fb


def parse_fmtp(line: str) -> tuple[tuple[str, str], ...]:
    """`profile-level-id=42e01f;packetization-mode=1` as StreamCodec.fmtp (keys lower-cased; a
    parameter without '=' keeps an empty value)."""
    out: list[tuple[str, str]] = []
    for part in line.split(";"):
        part = part.strip()
        if not part:
            continue
        key, _, value = part.partition("=")
        out.append((key.strip().lower(), value.strip()))
    return tuple(out)


def fmtp_of(parameters: Iterable[tuple[str, object]]) -> tuple[tuple[str, str], ...]:
    """Parameters from a mapping's items (aiortc's `parameters`, H.245 fields) as StreamCodec.fmtp."""
    return tuple((str(k).lower(), str(v)) for k, v in parameters)


def h264(
    payload_type: int,
    profile_level_id: str = "42e01f",
    packetization_mode: int = 1,
    level_asymmetry_allowed: bool = True,
    rtcp_fb: tuple[str, ...] = ("nack", "nack pli", "ccm fir"),
    bandwidth_kbps: int | None = None,
) -> StreamCodec:
    """An H.264 descriptor (constrained baseline, level 3.1, non-interleaved mode by default)."""
    fmtp = (
        ("level-asymmetry-allowed", "1" if level_asymmetry_allowed else "0"),
        ("packetization-mode", str(packetization_mode)),
        ("profile-level-id", profile_level_id.lower()),
    )
    return StreamCodec("H264", payload_type, 90_000, fmtp=fmtp, rtcp_fb=rtcp_fb, bandwidth_kbps=bandwidth_kbps)


def vp8(payload_type: int, rtcp_fb: tuple[str, ...] = ("nack", "nack pli", "ccm fir")) -> StreamCodec:
    return StreamCodec("VP8", payload_type, 90_000, rtcp_fb=rtcp_fb)


_AUDIO_NAMES = {"opus": AudioCodec.OPUS, "pcmu": AudioCodec.PCMU, "pcma": AudioCodec.PCMA, "g722": AudioCodec.G722}


def audio_codec(codec: StreamCodec) -> AudioCodec | None:
    """The mixer's codec for an audio descriptor, None for anything the mixer does not speak."""
    return _AUDIO_NAMES.get(codec.name.lower())


# -- H.264 profiles and levels (RFC 6184 8.1, as WebRTC's h264_profile_level_id reads them) ---------


class H264Profile(enum.StrEnum):
    CONSTRAINED_BASELINE = "constrained-baseline"
    BASELINE = "baseline"
    MAIN = "main"
    CONSTRAINED_HIGH = "constrained-high"
    HIGH = "high"


# (profile_idc, mask of profile-iop bits that matter, their value) -> profile, first match wins
_PROFILE_PATTERNS: tuple[tuple[int, int, int, H264Profile], ...] = (
    (0x42, 0x4F, 0x40, H264Profile.CONSTRAINED_BASELINE),
    (0x4D, 0x8F, 0x80, H264Profile.CONSTRAINED_BASELINE),
    (0x58, 0xCF, 0xC0, H264Profile.CONSTRAINED_BASELINE),
    (0x42, 0x4F, 0x00, H264Profile.BASELINE),
    (0x58, 0xCF, 0x80, H264Profile.BASELINE),
    (0x4D, 0xAF, 0x00, H264Profile.MAIN),
    (0x64, 0xFF, 0x00, H264Profile.HIGH),
    (0x64, 0xFF, 0x0C, H264Profile.CONSTRAINED_HIGH),
)
# What a decoder of a profile also decodes: constrained baseline is the common subset.
_DECODES: dict[H264Profile, frozenset[H264Profile]] = {
    H264Profile.CONSTRAINED_BASELINE: frozenset({H264Profile.CONSTRAINED_BASELINE}),
    H264Profile.BASELINE: frozenset({H264Profile.BASELINE, H264Profile.CONSTRAINED_BASELINE}),
    H264Profile.MAIN: frozenset({H264Profile.MAIN, H264Profile.CONSTRAINED_BASELINE}),
    H264Profile.CONSTRAINED_HIGH: frozenset(
        {H264Profile.CONSTRAINED_HIGH, H264Profile.MAIN, H264Profile.CONSTRAINED_BASELINE}
    ),
    H264Profile.HIGH: frozenset(
        {H264Profile.HIGH, H264Profile.CONSTRAINED_HIGH, H264Profile.MAIN, H264Profile.CONSTRAINED_BASELINE}
    ),
}
DEFAULT_PROFILE_LEVEL_ID = "42000a"  # RFC 6184 8.1: baseline, level 1.0, when the parameter is absent


@dataclass(frozen=True, slots=True)
class H264ProfileLevel:
    profile: H264Profile | None  # None: a profile we do not know (then only the same id matches)
    profile_idc: int
    profile_iop: int
    level: int  # level_idc x 10, with level 1b as 9 (so that levels order as numbers)


def h264_profile_level(codec: StreamCodec) -> H264ProfileLevel | None:
    """The profile and level of an H.264 descriptor; None when its profile-level-id is not 6 hex digits."""
    text = codec.parameter("profile-level-id") or DEFAULT_PROFILE_LEVEL_ID
    if len(text) != 6:
        return None
    try:
        value = int(text, 16)
    except ValueError:
        return None
    idc, iop, level_idc = value >> 16, (value >> 8) & 0xFF, value & 0xFF
    profile = next((p for i, mask, bits, p in _PROFILE_PATTERNS if i == idc and iop & mask == bits), None)
    # Level 1b: level_idc 11 with constraint_set3 in the baseline family and main (RFC 6184 8.1)
    level = 9 if level_idc == 11 and iop & 0x10 and idc in (0x42, 0x4D, 0x58) else level_idc * 10
    return H264ProfileLevel(profile, idc, iop, level)


def packetization_mode(codec: StreamCodec) -> int:
    mode = codec.parameter("packetization-mode")
    return int(mode) if mode in ("0", "1", "2") else 0


def can_forward(sender: StreamCodec | str, receiver: StreamCodec | str) -> bool:
    """Whether a receiver that agreed on `receiver` can take frames of a stream negotiated as
    `sender` as they are. A bare name on either side says nothing more than the codec: same name
    is enough. For H.264 the receiver must decode the sender's profile at the sender's level. Frames
    are depacketized and packetized again for each receiver, so the sender's packetization mode
    matters only toward a receiver of mode 0 (one NAL unit per packet): a non-interleaved (mode 1)
    stream may hold NAL units no single packet can carry, a mode 0 stream never does."""
    sender_name = sender if isinstance(sender, str) else sender.name
    receiver_name = receiver if isinstance(receiver, str) else receiver.name
    if sender_name.upper() != receiver_name.upper():
        return False
    if isinstance(sender, str) or isinstance(receiver, str) or sender_name.upper() != "H264":
        return True
    if packetization_mode(receiver) == 0 and packetization_mode(sender) != 0:
        return False
    sent, taken = h264_profile_level(sender), h264_profile_level(receiver)
    if sent is None or taken is None:
        return False
    if sent.profile is None or taken.profile is None:
        same = (sent.profile_idc, sent.profile_iop) == (taken.profile_idc, taken.profile_iop)
    else:
        same = sent.profile in _DECODES[taken.profile]
    return same and sent.level <= taken.level


def forwardable_to(sender: StreamCodec | str, receiver_codecs: Sequence[StreamCodec | str]) -> bool:
    """Whether any of the receiver's agreed codecs takes the sender's frames as they are."""
    return any(can_forward(sender, codec) for codec in receiver_codecs)


def codec_names(codecs: Iterable[StreamCodec | str]) -> tuple[str, ...]:
    """The distinct names (upper case), in order: ("VP8", "H264")."""
    return tuple(dict.fromkeys((c if isinstance(c, str) else c.name).upper() for c in codecs))
