"""SDP offer/answer for SIP legs (RFC 3264), on the SDP model of `sip/sdp.py`: an offer is answered
line by line, in its order, each m-line by the negotiator of its kind; what we decline gets port 0,
never the whole call. `MediaSession` keeps one call's side of it (our address and ports, session
version, the codecs in use, the offer we wait an answer for) for the SIP call layer.

Negotiators: audio takes the first usable audio line; video takes one usable main video line (when
the call layer gives it a port); content takes one content video line (RFC 4796 `a=content:slides`)
together with a BFCP line (RFC 8856) it can serve as floor control server, or declines both (when
the call layer gives it a content port and a BFCP socket); anything unknown is declined.

Audio rules (RFC 3264, RFC 4566, RFC 7587):
- the codec is chosen among the offered formats we support, in the offerer's order, or in our
  configured order when `prefer_ours`; its payload type and fmtp are echoed;
- telephone-event (RFC 4733) is taken at the chosen codec's clock rate, else at any offered rate
  (endpoints offer telephone-event/8000 beside Opus), and its events echoed;
- Opus is answered with our own fmtp (mono, in-band FEC): the offer's stereo wishes are not ours;
- the answer's direction mirrors the offer's (sendonly -> recvonly ...), narrowed by our own wish
  (e.g. inactive while a caller is on hold in the lobby);
- RTP/AVP, RTP/AVPF and their SRTP forms with SDES crypto (RFC 4568), answered in the offer's
  profile: the first offered suite we support is answered with a fresh key of ours; `rtcp` (RFC 3605) is read, `rtcp-mux` (RFC 5761) echoed;
- no usable audio at all is a 488;
- the connection address we send media to must be an IP literal: host names are not resolved
  (a DNS lookup per call, and an easy way to point our RTP elsewhere), 488.

Video rules (main video line; RFC 3264, RFC 6184, RFC 7741, RFC 4585 / 5104, RFC 3890):
- one main video line is taken, a usable one: port not 0, RTP/AVP, RTP/AVPF, RTP/SAVP or RTP/SAVPF
  (answered with the same profile; SAVP(F) with SDES as for audio), an IP literal to send to, and
  at least one format we take. Every other video line is declined with port 0, the call goes on
  (a video line never costs the call its audio). Dual offers (Polycom: the same video once with
  SRTP, once without) take the line whose security matches the audio line taken; with
  `require_srtp` only an SRTP line is usable;
- formats we take: H.264 packetization-mode 0 and 1 (any of the profiles `transcode/codecs.py`
  knows: constrained baseline, baseline, main, (constrained) high; any level) and VP8, each only
  when the caller's `video_codecs` has it (for H.264: in that packetization mode). Every acceptable
  format is answered, in the offerer's order, with its payload type; others are left out;
- H.264 answers echo profile-level-id, packetization-mode (RFC 6184 defaults 42000a and 0 when
  absent) and level-asymmetry-allowed when offered. The offer's other parameters (max-mbps,
  max-fs, max-br, ..., VP8's max-fr / max-fs) say what the remote can receive: they are kept in
  the choice's `StreamCodec.fmtp` (they bound what we send), never echoed;
- RTCP feedback: per payload type, ours (`VIDEO_FEEDBACK`) intersected with what the offer lists
  for it or for "*", written per payload type; whatever the profile (endpoints offer rtcp-fb on
  RTP/AVP too), so RTP/AVP without rtcp-fb agrees on none;
- bandwidth: the line's b=TIAS (else b=AS, else the session's) is the remote's limit, kept in
  each codec's `bandwidth_kbps`; we answer b=AS and b=TIAS with our own maximum;
- direction mirrored and narrowed as for audio; rtcp-mux echoed, else a=rtcp with our port + 1.

Nothing but SdpError leaves `answer`, `accept_answer`, `accept_video_answer`, `video_offered` or the
`MediaSession` methods.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway.bfcp import sdp as bfcp_sdp
from gateway.rtp.crypto import CRYPTO_SUITES, Crypto
from gateway.sip.message import ascii_int
from gateway.sip.sdp import (
    DIRECTIONS,
    PORT_DIGITS,
    Bandwidth,
    MediaDescription,
    RtpMap,
    SdpError,
    SessionDescription,
    media_address,
    parse,
    payload_type,
)
from gateway.transcode.audio import AudioCodec
from gateway.transcode.codecs import (
    DEFAULT_PROFILE_LEVEL_ID,
    StreamCodec,
    h264_profile_level,
    packetization_mode,
    parse_fmtp,
)

_TAG_DIGITS = 9  # an a=crypto tag
_EVENT_LIST = re.compile(r"[0-9,-]{1,64}")  # what we echo of a telephone-event fmtp

# The RTP names and clock rates on the wire (G.722's RTP clock is 8000 though it samples at 16 kHz).
RTP_NAMES: dict[AudioCodec, tuple[str, int]] = {
    AudioCodec.PCMU: ("PCMU", 8000),
    AudioCodec.PCMA: ("PCMA", 8000),
    AudioCodec.G722: ("G722", 8000),
    AudioCodec.OPUS: ("opus", 48000),
}
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int]] = {0: ("PCMU", 8000), 8: ("PCMA", 8000), 9: ("G722", 8000)}
# Our payload types when we make the offer (late offer, session refresh without SDP, dial-out).
OFFER_PAYLOAD_TYPES: dict[AudioCodec, int] = {
    AudioCodec.PCMU: 0,
    AudioCodec.PCMA: 8,
    AudioCodec.G722: 9,
    AudioCodec.OPUS: 111,
}
_OFFER_TELEPHONE_EVENT = {8000: 101, 48000: 110}

# -- video --
VIDEO_CLOCK_RATE = 90_000
# The RTCP feedback we take (RFC 4585 generic NACK and PLI, RFC 5104 FIR and TMMBR), in SDP's spelling.
VIDEO_FEEDBACK = ("nack", "nack pli", "ccm fir", "ccm tmmbr")
# The encoding names we take on a video line (case-insensitive, RFC 4855), as we spell them.
_VIDEO_NAMES = {"h264": "H264", "vp8": "VP8"}
# The RTP profiles an m-line may use (RFC 3551, 3711, 4585, 5124); the answer keeps the offer's.
_RTP_PROFILES = ("RTP/AVP", "RTP/AVPF", "RTP/SAVP", "RTP/SAVPF")
_PROFILE_LEVEL_ID = re.compile(r"[0-9A-Fa-f]{6}")
# Formats answered on one video line: real endpoints offer a handful (Cisco/Poly: 2-6 H.264
# variants); the cap keeps a hostile offer from making our answer larger than a datagram.
MAX_VIDEO_FORMATS = 16
DEFAULT_VIDEO_MAX_KBPS = 2048


@dataclass(frozen=True)
class AudioChoice:
    """What an answer agreed for the audio stream: what the RTP engine needs to run it."""

    codec: AudioCodec
    payload_type: int
    clock_rate: int
    fmtp: str | None
    telephone_event_pt: int | None
    direction: str  # ours, as answered
    remote_address: str
    remote_port: int
    remote_rtcp_port: int
    rtcp_mux: bool
    ptime_ms: int
    remote_crypto: Crypto | None
    local_crypto: Crypto | None

    @property
    def on_hold(self) -> bool:
        return self.direction in ("recvonly", "inactive")


@dataclass(frozen=True)
class VideoChoice:
    """What an answer agreed for the main video stream. `codecs` in answer order: codecs[0] is what
    we send; each codec's fmtp holds the remote's receive limits (max-mbps, max-fs ...), rtcp_fb
    the feedback agreed for it and bandwidth_kbps the remote's b=TIAS / b=AS, if any."""

    codecs: tuple[StreamCodec, ...]
    direction: str  # ours, as answered
    remote_address: str
    remote_port: int
    remote_rtcp_port: int
    rtcp_mux: bool
    remote_crypto: Crypto | None
    local_crypto: Crypto | None
    avpf: bool  # the line is RTP/AVPF or RTP/SAVPF

    @property
    def keyframe_by_rtcp(self) -> bool:
        """Whether keyframes can be asked for over RTCP (PLI or FIR agreed on any codec); else the
        call layer uses SIP INFO picture_fast_update."""
        return any(codec.feedback("nack pli") or codec.feedback("ccm fir") for codec in self.codecs)


@dataclass(frozen=True)
class BfcpPlan:
    """Our side of a BFCP stream as floor control server: the conference and user ids our SDP
    gives the room system, the floor of its content line, and the socket the call layer opened
    for the transport the offer asked for (a TCP listener or a UDP socket)."""

    conference_id: int
    user_id: int
    transport: str  # tcp | udp
    port: int
    floor_id: int = 1


@dataclass(frozen=True)
class BfcpChoice:
    """What was agreed for the BFCP stream: how it runs and who is who on it."""

    transport: str  # tcp | udp
    version: int  # 1 or 2 (RFC 8855: UDP needs 2)
    connect: bool  # we open the TCP connection (the far end said it listens: a=setup:passive)
    remote_address: str
    remote_port: int
    conference_id: int
    user_id: int
    floor_id: int
    label: str  # the a=label of the content line the floor governs
    server: bool = True  # we are the floor control server (else its client: the far end is an MCU)


@dataclass(frozen=True)
class ContentChoice:
    """The content (slides) line and the BFCP stream that governs it: agreed together or not at all."""

    video: VideoChoice
    bfcp: BfcpChoice


@dataclass(frozen=True)
class Answer:
    sdp: str
    audio: AudioChoice
    description: SessionDescription | None = None
    video: VideoChoice | None = None
    content: ContentChoice | None = None


def media_role(m: MediaDescription) -> str:
    """What an m-line is for: audio, video (main), content (RFC 4796 slides), bfcp or other."""
    if m.kind == "audio":
        return "audio"
    if m.kind == "video":
        return "content" if "slides" in (m.content or "").split(",") else "video"
    if m.kind == "application" and m.proto.upper().endswith("BFCP"):
        return "bfcp"
    return "other"


_LABEL = re.compile(r"[A-Za-z0-9._~+-]{1,32}")


def stream_label(m: MediaDescription) -> str | None:
    """An m-line's a=label (RFC 4574), when it is a token we can echo, else None."""
    found = m.values("label")
    return found[0] if found and _LABEL.fullmatch(found[0]) else None


def _family(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _formats(m: MediaDescription) -> dict[int, tuple[str, int, str | None]]:
    """payload type -> (encoding name, clock rate, fmtp) for every format of the m-line."""
    maps = {pt: (rtpmap.encoding, rtpmap.clock_rate, m.fmtp.get(pt)) for pt, rtpmap in m.rtpmap.items()}
    for fmt in m.formats:
        pt = payload_type(fmt)
        if pt is not None and pt not in maps and pt in STATIC_PAYLOAD_TYPES:
            static_name, static_clock = STATIC_PAYLOAD_TYPES[pt]
            maps[pt] = (static_name, static_clock, m.fmtp.get(pt))
    return maps


def _ptime(value: int | None) -> int:
    """a=ptime in ms when it is one we can packetise (10-120), else 20."""
    return value if value is not None and 10 <= value <= 120 else 20


def _rtcp_port(m: MediaDescription) -> int:
    """RFC 3605 a=rtcp when given, else the RTP port + 1."""
    words = (m.rtcp or "").split()
    port = ascii_int(words[0], PORT_DIGITS) if words else None
    return port if port is not None and 0 < port <= 65535 else m.port + 1


def _parse_crypto(value: str) -> Crypto | None:
    parts = value.split()
    if len(parts) < 3 or parts[1] not in CRYPTO_SUITES or not parts[2].startswith("inline:"):
        return None
    key_b64 = parts[2][len("inline:") :].split("|")[0]
    tag = ascii_int(parts[0], _TAG_DIGITS)
    try:
        key_salt = base64.b64decode(key_b64, validate=True)
    except ValueError:  # (binascii.Error is one)
        return None
    return Crypto(tag, parts[1], key_salt) if tag is not None and len(key_salt) == 30 else None


_REVERSE = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


def narrow(offered: str, wanted: str) -> str:
    """Our direction: the mirror of the offered one, narrowed by what we want (e.g. on hold)."""
    mirrored = _REVERSE[offered]
    can_send = mirrored in ("sendrecv", "sendonly") and wanted in ("sendrecv", "sendonly")
    can_recv = mirrored in ("sendrecv", "recvonly") and wanted in ("sendrecv", "recvonly")
    return {(True, True): "sendrecv", (True, False): "sendonly", (False, True): "recvonly"}.get(
        (can_send, can_recv), "inactive"
    )


def _offered_direction(m: MediaDescription, session: SessionDescription) -> str:
    # A media-level direction wins over the session-level one (RFC 3264 5.1).
    return m.direction or session.direction or "sendrecv"


def decline(m: MediaDescription) -> MediaDescription:
    """RFC 3264 6: a declined stream is answered with the same media and protocol, port 0 and a
    format of the offer's."""
    return MediaDescription(m.kind, 0, m.proto, [m.formats[0] if m.formats else "0"])


class MediaNegotiator(Protocol):
    """Answers the m-lines of one kind: the answer's line for an offered one."""

    def answer_line(self, m: MediaDescription, offer: SessionDescription, index: int) -> MediaDescription: ...


class Declining:
    """For the kinds we do not take (yet): content video, BFCP, unknown, and main video on a call
    without a video port: port 0."""

    def answer_line(self, m: MediaDescription, offer: SessionDescription, index: int) -> MediaDescription:
        return decline(m)


class AudioNegotiator:
    """The first usable audio line is taken (its choice kept in `choice`); others are declined."""

    def __init__(self, codecs: list[AudioCodec], port: int, prefer_ours: bool, direction: str) -> None:
        self.codecs = codecs
        self.port = port
        self.prefer_ours = prefer_ours
        self.direction = direction
        self.choice: AudioChoice | None = None

    def answer_line(self, m: MediaDescription, offer: SessionDescription, index: int) -> MediaDescription:
        if self.choice is not None:
            return decline(m)
        choice = self._choose(m, offer, index)
        if choice is None:
            return decline(m)
        self.choice = choice
        return self._line(m, choice)

    def _choose(self, m: MediaDescription, offer: SessionDescription, index: int) -> AudioChoice | None:
        if m.port == 0 or m.proto not in _RTP_PROFILES:
            return None
        maps = _formats(m)
        codecs = self.codecs
        offered: list[tuple[int, AudioCodec]] = []
        for fmt in m.formats:
            format_pt = payload_type(fmt)
            if format_pt is None or format_pt not in maps:
                continue
            name, clock, _fmtp = maps[format_pt]
            for codec in codecs:
                wire_name, wire_clock = RTP_NAMES[codec]
                if name.lower() == wire_name.lower() and clock == wire_clock:
                    offered.append((format_pt, codec))
        if not offered:
            return None
        if self.prefer_ours:
            offered.sort(key=lambda item: codecs.index(item[1]))
        pt, codec = offered[0]
        clock = maps[pt][1]
        events = [(p, rate) for p, (name, rate, _f) in maps.items() if name.lower() == "telephone-event"]
        telephone_event = next((p for p, rate in events if rate == clock), events[0][0] if events else None)
        remote_crypto = local_crypto = None
        if m.proto.startswith("RTP/SAVP"):
            remote_crypto = next((c for c in map(_parse_crypto, m.crypto) if c is not None), None)
            if remote_crypto is None:
                return None  # SRTP offered with no suite we support: this m-line cannot be used
            local_crypto = Crypto(remote_crypto.tag, remote_crypto.suite, secrets.token_bytes(30))
        address = media_address(m, offer, index)
        fmtp = maps[pt][2]
        if fmtp is not None and not (fmtp.isascii() and fmtp.isprintable()):
            fmtp = None  # (the offer's fmtp is echoed into our SDP: printable ASCII only)
        return AudioChoice(
            codec=codec,
            payload_type=pt,
            clock_rate=clock,
            fmtp="useinbandfec=1" if codec is AudioCodec.OPUS else fmtp,
            telephone_event_pt=telephone_event,
            direction=narrow(_offered_direction(m, offer), self.direction),
            remote_address=address,
            remote_port=m.port,
            remote_rtcp_port=m.port if m.rtcp_mux else _rtcp_port(m),
            rtcp_mux=m.rtcp_mux,
            ptime_ms=_ptime(m.ptime),
            remote_crypto=remote_crypto,
            local_crypto=local_crypto,
        )

    def _line(self, offered: MediaDescription, choice: AudioChoice) -> MediaDescription:
        pts = [choice.payload_type] + ([choice.telephone_event_pt] if choice.telephone_event_pt is not None else [])
        line = MediaDescription(
            "audio", self.port, offered.proto, [str(pt) for pt in pts]
        )
        name, clock = RTP_NAMES[choice.codec]
        opus = choice.codec is AudioCodec.OPUS
        line.rtpmap[choice.payload_type] = RtpMap(choice.payload_type, name, clock, 2 if opus else None)
        if choice.fmtp:
            line.fmtp[choice.payload_type] = choice.fmtp
        if choice.telephone_event_pt is not None:
            event_pt = choice.telephone_event_pt
            event_clock = offered.rtpmap[event_pt].clock_rate if event_pt in offered.rtpmap else choice.clock_rate
            line.rtpmap[event_pt] = RtpMap(event_pt, "telephone-event", event_clock)
            events_text = offered.fmtp.get(event_pt, "").strip()
            line.fmtp[event_pt] = events_text if _EVENT_LIST.fullmatch(events_text) else "0-15"
        line.ptime = choice.ptime_ms
        if choice.rtcp_mux:
            line.rtcp_mux = True
        else:
            line.rtcp = str(self.port + 1)
        if choice.local_crypto:
            line.crypto.append(choice.local_crypto.line())
        line.direction = choice.direction
        return line


def _printable(text: str) -> bool:
    return text.isascii() and text.isprintable()


def _video_format(pt: int, rtpmap: RtpMap, fmtp: str | None) -> StreamCodec | None:
    """One offered (or answered) video format as a StreamCodec, when it is H.264 (packetization mode
    0 or 1, a profile we know) or VP8 at 90 kHz; None for anything else. Parameters that are not
    printable ASCII are dropped; H.264's profile-level-id and packetization-mode are filled in with
    RFC 6184's defaults when absent."""
    name = _VIDEO_NAMES.get(rtpmap.encoding.lower())
    if name is None or rtpmap.clock_rate != VIDEO_CLOCK_RATE:
        return None
    parameters = tuple((k, v) for k, v in parse_fmtp(fmtp or "") if k and _printable(k) and _printable(v))
    if name == "VP8":
        return StreamCodec(name, pt, VIDEO_CLOCK_RATE, fmtp=parameters)
    keys = {k for k, _v in parameters}
    defaults = (("profile-level-id", DEFAULT_PROFILE_LEVEL_ID), ("packetization-mode", "0"))
    codec = StreamCodec(
        name, pt, VIDEO_CLOCK_RATE, fmtp=parameters + tuple(item for item in defaults if item[0] not in keys)
    )
    profile_level_id, mode = codec.parameter("profile-level-id") or "", codec.parameter("packetization-mode")
    if not _PROFILE_LEVEL_ID.fullmatch(profile_level_id) or mode not in ("0", "1"):
        return None  # (mode 2, interleaved, is not ours)
    level = h264_profile_level(codec)
    return codec if level is not None and level.profile is not None else None


def _takes(codecs: Sequence[StreamCodec], offered: StreamCodec) -> bool:
    """Whether one of our codecs takes an offered format (H.264: in the same packetization mode)."""
    for codec in codecs:
        if codec.name.upper() != offered.name:
            continue
        if offered.name != "H264" or packetization_mode(codec) == packetization_mode(offered):
            return True
    return False


def _echoed_fmtp(codec: StreamCodec) -> str | None:
    """What our answer says back for a format: H.264's profile-level-id, packetization-mode and
    level-asymmetry-allowed (when offered), nothing else (the remote's receive limits are not ours)."""
    if codec.name != "H264":
        return None
    echoed = [(k, codec.parameter(k)) for k in ("profile-level-id", "packetization-mode")]
    asymmetry = codec.parameter("level-asymmetry-allowed")
    if asymmetry in ("0", "1"):
        echoed.append(("level-asymmetry-allowed", asymmetry))
    return ";".join(f"{k}={v}" for k, v in echoed if v is not None)


def _feedback_key(value: str) -> str:
    """An rtcp-fb value as we compare it: lower case, single blanks, a ccm kind without its
    parameters ("ccm tmmbr smaxpr=120" is "ccm tmmbr")."""
    words = value.lower().split()
    return " ".join(words[:2] if words[:1] == ["ccm"] else words)


def _agreed_feedback(m: MediaDescription, pt: int) -> tuple[str, ...]:
    """Our feedback kinds that the m-line lists for this payload type or for "*"."""
    listed = {_feedback_key(value) for fmt, value in m.rtcp_fb if fmt == "*" or payload_type(fmt) == pt}
    return tuple(kind for kind in VIDEO_FEEDBACK if kind in listed)


def _bandwidth_kbps(m: MediaDescription, session: SessionDescription) -> int | None:
    """The remote's limit: the m-line's b=TIAS (bit/s) or b=AS (kbit/s), TIAS first, else the
    session's. A zero says nothing we could send by, and is taken as no limit."""
    for bandwidths in (m.bandwidths, session.bandwidths):
        by_type = {b.type.upper(): b.value for b in reversed(bandwidths)}  # (the first of a type wins)
        if by_type.get("TIAS"):
            return max(1, by_type["TIAS"] // 1000)
        if by_type.get("AS"):
            return by_type["AS"]
    return None


def _video_line_codecs(m: MediaDescription, ours: Sequence[StreamCodec]) -> list[StreamCodec]:
    """The formats of a video line we take, in its order, each with its agreed feedback."""
    out: list[StreamCodec] = []
    seen: set[int] = set()
    for fmt in m.formats:
        pt = payload_type(fmt)
        if pt is None or pt in seen or pt not in m.rtpmap:
            continue
        seen.add(pt)
        codec = _video_format(pt, m.rtpmap[pt], m.fmtp.get(pt))
        if codec is not None and _takes(ours, codec):
            out.append(StreamCodec(codec.name, pt, codec.clock_rate, fmtp=codec.fmtp, rtcp_fb=_agreed_feedback(m, pt)))
            if len(out) == MAX_VIDEO_FORMATS:
                break
    return out


def _video_choice(
    m: MediaDescription,
    session: SessionDescription,
    codecs: Sequence[StreamCodec],
    address: str,
    wanted_direction: str,
    remote_crypto: Crypto | None,
    local_crypto: Crypto | None,
) -> VideoChoice:
    """What was agreed for a video line (in an answer of ours or to our offer): its codecs with the
    line's bandwidth, our direction, where its RTP and RTCP go."""
    bandwidth = _bandwidth_kbps(m, session)
    return VideoChoice(
        codecs=tuple(
            StreamCodec(c.name, c.payload_type, c.clock_rate, fmtp=c.fmtp, rtcp_fb=c.rtcp_fb, bandwidth_kbps=bandwidth)
            for c in codecs
        ),
        direction=narrow(_offered_direction(m, session), wanted_direction),
        remote_address=address,
        remote_port=m.port,
        remote_rtcp_port=m.port if m.rtcp_mux else _rtcp_port(m),
        rtcp_mux=m.rtcp_mux,
        remote_crypto=remote_crypto,
        local_crypto=local_crypto,
        avpf=m.proto.endswith("AVPF"),
    )


class VideoNegotiator:
    """The main video line: one usable line is taken (its choice kept in `choice`), every other main
    video line is declined. Which one is decided on the first line asked about, over the whole
    offer: with a dual offer (SRTP and plain), the line whose security is `prefer_srtp`, else the
    first usable one; with `require_srtp` only SRTP lines are usable."""

    def __init__(
        self,
        codecs: Sequence[StreamCodec],
        port: int,
        direction: str = "sendrecv",
        max_kbps: int = DEFAULT_VIDEO_MAX_KBPS,
        *,
        require_srtp: bool = False,
        prefer_srtp: bool = False,
        role: str = "video",
    ) -> None:
        self.codecs = tuple(codecs)
        self.port = port
        self.role = role  # video (main) or content: which m-lines it takes
        self.direction = direction
        self.max_kbps = max_kbps
        self.require_srtp = require_srtp
        self.prefer_srtp = prefer_srtp
        self.choice: VideoChoice | None = None
        self._taken: int | None = None  # the index of the m-line taken
        self._decided_for: SessionDescription | None = None

    def select(self, offer: SessionDescription) -> VideoChoice | None:
        """Decides which main video line of the offer we take (kept for answer_line)."""
        usable: list[tuple[int, VideoChoice]] = []
        for index, m in enumerate(offer.media):
            if media_role(m) == self.role and (choice := self._choose(m, offer, index)) is not None:
                if not self.require_srtp or choice.local_crypto is not None:
                    usable.append((index, choice))
        matching = [item for item in usable if (item[1].local_crypto is not None) == self.prefer_srtp]
        taken = (matching or usable)[:1]
        self._taken, self.choice = taken[0] if taken else (None, None)
        self._decided_for = offer
        return self.choice

    def answer_line(self, m: MediaDescription, offer: SessionDescription, index: int) -> MediaDescription:
        if self._decided_for is not offer:
            self.select(offer)
        if self.choice is None or index != self._taken:
            return decline(m)
        return self._line(m, self.choice)

    def _choose(self, m: MediaDescription, offer: SessionDescription, index: int) -> VideoChoice | None:
        if m.port == 0 or m.proto not in _RTP_PROFILES:
            return None
        codecs = _video_line_codecs(m, self.codecs)
        if not codecs:
            return None
        remote_crypto = local_crypto = None
        if m.proto.startswith("RTP/SAVP"):
            remote_crypto = next((c for c in map(_parse_crypto, m.crypto) if c is not None), None)
            if remote_crypto is None:
                return None  # SRTP offered with no suite we support
            local_crypto = Crypto(remote_crypto.tag, remote_crypto.suite, secrets.token_bytes(30))
        try:
            address = media_address(m, offer, index)
        except SdpError:
            return None  # (a host name, a wrong family: this line only, the call keeps its audio)
        return _video_choice(m, offer, codecs, address, self.direction, remote_crypto, local_crypto)

    def _line(self, offered: MediaDescription, choice: VideoChoice) -> MediaDescription:
        line = MediaDescription("video", self.port, offered.proto, [str(c.payload_type) for c in choice.codecs])
        line.bandwidths = [Bandwidth("AS", self.max_kbps), Bandwidth("TIAS", self.max_kbps * 1000)]
        for codec in choice.codecs:
            pt = codec.payload_type
            line.rtpmap[pt] = RtpMap(pt, codec.name, codec.clock_rate)
            fmtp = _echoed_fmtp(codec)
            if fmtp:
                line.fmtp[pt] = fmtp
            line.rtcp_fb += [(str(pt), kind) for kind in codec.rtcp_fb]
        if choice.rtcp_mux:
            line.rtcp_mux = True
        else:
            line.rtcp = str(self.port + 1)
        if choice.local_crypto:
            line.crypto.append(choice.local_crypto.line())
        if self.role == "content":
            line.content = "slides"
        elif "main" in (offered.content or "").split(","):
            line.content = "main"  # (RFC 4796: with BFCP, room systems tell main from slides by it)
        label = stream_label(offered)
        if label is not None:
            line.attributes.append(("label", label))  # (RFC 4574: BFCP's floorid names the line by it)
        line.direction = choice.direction
        return line


def video_offered(
    offer: str | SessionDescription, video_codecs: Sequence[StreamCodec], require_srtp: bool = False
) -> bool:
    """Whether `answer` would take a main video line of this offer (asked before answering, so that
    the call layer opens video sockets only then). SdpError(400) for a malformed text."""
    if isinstance(offer, str):
        offer = parse(offer)
    return VideoNegotiator(video_codecs, 0, require_srtp=require_srtp).select(offer) is not None


# -- content (slides) and BFCP --------------------------------------------------------------------

DEFAULT_CONTENT_LABEL = "2"  # our content line's a=label when the offer's has none we can echo
MAIN_LABEL = "1"  # our main video line's a=label in an offer with content
_BFCP_TRANSPORTS = ("tcp", "udp")  # (TCP/TLS/BFCP and DTLS are declined: no key material for them yet)


def _bfcp_line(
    m: MediaDescription, offer: SessionDescription, index: int, plan: BfcpPlan | None, label: str
) -> tuple[bfcp_sdp.BfcpAnswer, BfcpChoice] | None:
    """Our answer to one offered BFCP line, as floor control server (or as client when the offerer
    insists on serving), when we can take it (the transport of `plan`, a role, version and address
    we take); `plan` None: only whether we could."""
    if m.port == 0:
        return None
    try:
        offered = bfcp_sdp.read_offer(m.proto, m.attributes)
        address = media_address(m, offer, index)
    except (bfcp_sdp.BfcpSdpError, SdpError):
        return None
    if offered.transport not in _BFCP_TRANSPORTS or (plan is not None and offered.transport != plan.transport):
        return None
    floor_id = next((floor for floor, labels in offered.floors.items() if label in labels), None)
    if floor_id is None:
        floor_id = next(iter(offered.floors), plan.floor_id if plan is not None else 1)
    ours = plan or BfcpPlan(1, 1, offered.transport, 9)
    answered = bfcp_sdp.answer(offered, conference_id=ours.conference_id, user_id=ours.user_id, floor_id=floor_id, content_label=label)
    if answered is None:
        return None
    return answered, _bfcp_choice(answered, offered.transport, address, m.port)


def _bfcp_choice(answered: bfcp_sdp.BfcpAnswer, transport: str, address: str, port: int) -> BfcpChoice:
    return BfcpChoice(
        transport=transport,
        version=answered.version,
        connect=answered.setup == "active",
        remote_address=address,
        remote_port=port,
        conference_id=answered.conference_id,
        user_id=answered.user_id,
        floor_id=answered.floor_id,
        label=answered.content_label,
        server=answered.role == "s-only",
    )


class ContentNegotiator:
    """The content line (RFC 4796 `a=content:slides`) and the BFCP line that governs it (RFC 8856),
    taken together or both declined: content without floor control would be a second camera nobody
    can switch off, and a BFCP stream without content has nothing to govern. Room systems without
    them get content in their main picture instead.

    The content line is chosen like the main video line (one usable line, the same codecs and
    security rules), the BFCP line is the first we can take over the transport of our plan (TCP or
    UDP): as floor control server, or as client of an offerer that insists on serving (an MCU). Our content line echoes the offer's a=label (or says
    DEFAULT_CONTENT_LABEL) and our floorid names it; the floor is the offer's floorid for that
    label when it gave one."""

    def __init__(
        self,
        codecs: Sequence[StreamCodec],
        port: int,
        bfcp: BfcpPlan | None,
        direction: str = "sendrecv",
        max_kbps: int = DEFAULT_VIDEO_MAX_KBPS,
        *,
        require_srtp: bool = False,
        prefer_srtp: bool = False,
    ) -> None:
        self.video = VideoNegotiator(
            codecs, port, direction, max_kbps, require_srtp=require_srtp, prefer_srtp=prefer_srtp, role="content"
        )
        self.bfcp = bfcp
        self.choice: ContentChoice | None = None
        self._bfcp_index: int | None = None
        self._bfcp_answer: bfcp_sdp.BfcpAnswer | None = None
        self._decided_for: SessionDescription | None = None

    def select(self, offer: SessionDescription) -> ContentChoice | None:
        self.choice, self._bfcp_index, self._bfcp_answer = None, None, None
        self._decided_for = offer
        video = self.video.select(offer)
        taken = self.video._taken
        if video is None or taken is None:
            return None
        label = stream_label(offer.media[taken]) or _free_label(offer)
        for index, m in enumerate(offer.media):
            if media_role(m) == "bfcp" and (found := _bfcp_line(m, offer, index, self.bfcp, label)) is not None:
                self._bfcp_index, (self._bfcp_answer, bfcp) = index, found
                self.choice = ContentChoice(video, bfcp)
                return self.choice
        self.video.choice = self.video._taken = None  # (no floor control: the content line goes too)
        return None

    def answer_line(self, m: MediaDescription, offer: SessionDescription, index: int) -> MediaDescription:
        if self._decided_for is not offer:
            self.select(offer)
        if media_role(m) == "content":
            line = self.video.answer_line(m, offer, index)
            if line.port and not stream_label(m) and self.choice is not None:
                line.attributes.append(("label", self.choice.bfcp.label))
            return line
        if self.choice is None or index != self._bfcp_index or self._bfcp_answer is None or self.bfcp is None:
            return decline(m)
        bfcp = self.choice.bfcp
        line = MediaDescription("application", 9 if bfcp.connect else self.bfcp.port, m.proto, ["*"])
        line.attributes = self._bfcp_answer.attributes()
        return line


def _free_label(offer: SessionDescription) -> str:
    """A label for our slides line that no line of the offer uses (RFC 4574: unique in the session)."""
    used = {value for m in offer.media for value in m.values("label")}
    return next(str(n) for n in itertools.count(int(DEFAULT_CONTENT_LABEL)) if str(n) not in used)


def content_offered(
    offer: str | SessionDescription, video_codecs: Sequence[StreamCodec], require_srtp: bool = False
) -> str | None:
    """The BFCP transport (tcp or udp) the call layer must open for this offer's content, when
    `answer` would take a content line and its BFCP line; None when it would decline them.
    SdpError(400) for a malformed text."""
    if isinstance(offer, str):
        offer = parse(offer)
    choice = ContentNegotiator(video_codecs, 0, None, require_srtp=require_srtp).select(offer)
    return choice.bfcp.transport if choice is not None else None


def _no_audio(offer: SessionDescription, codecs: list[AudioCodec]) -> SdpError:
    if not any(m.kind == "audio" for m in offer.media):
        return SdpError(488, "the offer has no audio stream")
    return SdpError(488, "no common audio codec (we take " + ", ".join(RTP_NAMES[c][0] for c in codecs) + ")")


def check_offer(offer: str | SessionDescription, codecs: list[AudioCodec], *, require_srtp: bool = False) -> AudioChoice:
    """Whether an offer can be answered, asked before anything is set up for the call (its RTP
    port): the audio line we would take, or SdpError (400 malformed; 488 no usable audio, or SRTP
    required and not offered). A parsed offer is not parsed again."""
    if isinstance(offer, str):
        offer = parse(offer)
    audio = AudioNegotiator(codecs, 0, False, "sendrecv")
    for index, m in enumerate(offer.media):
        if media_role(m) == "audio" and (choice := audio._choose(m, offer, index)) is not None:
            if require_srtp and choice.local_crypto is None:
                raise SdpError(488, "SRTP required")
            return choice
    raise _no_audio(offer, codecs)


def answer(
    offer: SessionDescription,
    *,
    local_address: str,
    audio_port: int,
    codecs: list[AudioCodec],
    prefer_ours: bool = False,
    direction: str = "sendrecv",
    session_id: int | None = None,
    session_version: int = 1,
    user_agent: str = "gateway",
    video_port: int | None = None,
    video_codecs: Sequence[StreamCodec] = (),
    video_direction: str = "sendrecv",
    video_max_kbps: int = DEFAULT_VIDEO_MAX_KBPS,
    require_srtp: bool = False,
    content_port: int | None = None,
    bfcp: BfcpPlan | None = None,
) -> Answer:
    """Answers an offer line by line, audio on (local_address, audio_port), main video on
    (local_address, video_port) when a port is given (None: every video line is declined), content
    on content_port with its BFCP stream on `bfcp` when both are given (else content and BFCP lines
    are declined); raises SdpError(488) when there is no usable audio (or, with `require_srtp`, no
    SRTP audio), SdpError(400) when the offer is malformed. A video, content or BFCP line never
    fails the call: it is declined."""
    audio = AudioNegotiator(codecs, audio_port, prefer_ours, direction)
    lines: dict[int, MediaDescription] = {}
    for i, m in enumerate(offer.media):  # audio first: the video line's security follows it
        if media_role(m) == "audio":
            lines[i] = audio.answer_line(m, offer, i)
    choice = audio.choice
    if choice is None:
        raise _no_audio(offer, codecs)
    if require_srtp and choice.local_crypto is None:
        raise SdpError(488, "SRTP required")
    declining = Declining()
    negotiators: dict[str, MediaNegotiator] = {}
    video: VideoNegotiator | None = None
    if video_port is not None:
        video = VideoNegotiator(
            video_codecs,
            video_port,
            video_direction,
            video_max_kbps,
            require_srtp=require_srtp,
            prefer_srtp=choice.local_crypto is not None,
        )
        negotiators["video"] = video
    content: ContentNegotiator | None = None
    if content_port is not None and bfcp is not None:
        content = ContentNegotiator(
            video_codecs,
            content_port,
            bfcp,
            video_direction,
            video_max_kbps,
            require_srtp=require_srtp,
            prefer_srtp=choice.local_crypto is not None,
        )
        negotiators["content"] = negotiators["bfcp"] = content
    for i, m in enumerate(offer.media):
        if i not in lines:
            lines[i] = negotiators.get(media_role(m), declining).answer_line(m, offer, i)
    sid = session_id if session_id is not None else secrets.randbelow(2**31)
    family = _family(local_address)
    description = SessionDescription(
        origin=f"{user_agent} {sid} {session_version} IN {family} {local_address}",
        connection=f"IN {family} {local_address}",
        media=[lines[i] for i in range(len(offer.media))],
    )
    return Answer(
        str(description),
        choice,
        description,
        video.choice if video is not None else None,
        content.choice if content is not None else None,
    )


def _video_offer_line(port: int, codecs: Sequence[StreamCodec], max_kbps: int, direction: str) -> MediaDescription:
    pts: list[int] = []
    line = MediaDescription("video", port, "RTP/AVP", [])
    for codec in codecs:
        pt = codec.payload_type
        if pt in pts:
            continue  # (one format per payload type: the first given)
        pts.append(pt)
        line.rtpmap[pt] = RtpMap(pt, codec.name, codec.clock_rate)
        if codec.fmtp:
            line.fmtp[pt] = codec.fmtp_line
        line.rtcp_fb += [(str(pt), kind) for kind in VIDEO_FEEDBACK]
    line.formats = [str(pt) for pt in pts]
    line.bandwidths = [Bandwidth("AS", max_kbps), Bandwidth("TIAS", max_kbps * 1000)]
    line.rtcp, line.direction = str(port + 1), direction
    return line


def offer(
    *,
    local_address: str,
    audio_port: int,
    codecs: list[AudioCodec],
    direction: str = "sendrecv",
    session_id: int,
    session_version: int = 1,
    user_agent: str = "gateway",
    video_port: int | None = None,
    video_codecs: Sequence[StreamCodec] = (),
    video_max_kbps: int = DEFAULT_VIDEO_MAX_KBPS,
    video_direction: str | None = None,
    content_port: int | None = None,
    bfcp: BfcpPlan | None = None,
    content_label: str = DEFAULT_CONTENT_LABEL,
) -> str:
    """Our offer of one audio stream (RTP/AVP) with every codec we take, in our order, and
    telephone-events for each clock rate used; then, when `video_port` is given (and there are
    video codecs), one main video line with `video_codecs` in their order and payload types, their
    rtpmap / fmtp, rtcp-fb per payload type (nack, nack pli, ccm fir, ccm tmmbr), a=rtcp and our
    b=AS / b=TIAS. Its direction is `video_direction`, by default the audio's.

    The video line is offered as RTP/AVP, not RTP/AVPF, with the rtcp-fb attributes all the same:
    many SIP endpoints know only RTP/AVP and decline an AVPF line, while those that do feedback use
    it on an AVP line (the "implicit AVPF" of RFC 5124's time and of Cisco / Poly endpoints); one
    that does not ignores the attributes, and then keyframes go by SIP INFO.

    With a content port and a BFCP plan beside video, content is offered too: the main line says
    a=content:main and a=label:1, a slides line (the video codecs, a=label:2) follows, and a BFCP
    line over the plan's transport offering either role (RFC 8856: c-s, over TCP actpass, our ids);
    the answer decides."""
    family = _family(local_address)
    pts = [OFFER_PAYLOAD_TYPES[c] for c in codecs]
    clocks = sorted({RTP_NAMES[c][1] for c in codecs})
    events = [_OFFER_TELEPHONE_EVENT[clock] for clock in clocks]
    audio = MediaDescription("audio", audio_port, "RTP/AVP", [str(pt) for pt in pts + events])
    for codec, pt in zip(codecs, pts, strict=True):
        name, clock = RTP_NAMES[codec]
        audio.rtpmap[pt] = RtpMap(pt, name, clock, 2 if codec is AudioCodec.OPUS else None)
        if codec is AudioCodec.OPUS:
            audio.fmtp[pt] = "useinbandfec=1"
    for clock, pt in zip(clocks, events, strict=True):
        audio.rtpmap[pt] = RtpMap(pt, "telephone-event", clock)
        audio.fmtp[pt] = "0-15"
    audio.ptime, audio.rtcp, audio.direction = 20, str(audio_port + 1), direction
    media = [audio]
    if video_port is not None and video_codecs:
        main = _video_offer_line(video_port, video_codecs, video_max_kbps, video_direction or direction)
        media.append(main)
        if content_port is not None and bfcp is not None:
            main.content = "main"
            main.attributes.append(("label", MAIN_LABEL if content_label != MAIN_LABEL else "0"))
            slides = _video_offer_line(content_port, video_codecs, video_max_kbps, video_direction or direction)
            slides.content = "slides"
            slides.attributes.append(("label", content_label))
            floor = MediaDescription("application", bfcp.port, "TCP/BFCP" if bfcp.transport == "tcp" else "UDP/BFCP", ["*"])
            floor.attributes = bfcp_sdp.offer_attributes(
                bfcp.conference_id, bfcp.user_id, bfcp.floor_id, content_label, bfcp.transport
            )
            media += [slides, floor]
    description = SessionDescription(
        origin=f"{user_agent} {session_id} {session_version} IN {family} {local_address}",
        connection=f"IN {family} {local_address}",
        media=media,
    )
    return str(description)


def accept_answer(answer_sdp: SessionDescription, codecs: list[AudioCodec], direction: str = "sendrecv") -> AudioChoice:
    """What the remote answered to our `offer(codecs=...)`: raises SdpError(488) when it took
    nothing of ours."""
    by_pt = {OFFER_PAYLOAD_TYPES[c]: c for c in codecs}
    for index, m in enumerate(answer_sdp.media):
        if m.kind != "audio" or m.port == 0 or m.proto != "RTP/AVP":
            continue
        maps = _formats(m)
        for fmt in m.formats:
            pt = payload_type(fmt)
            if pt is None:
                continue
            name, clock, fmtp = maps.get(pt, ("", 0, None))
            codec = by_pt.get(pt)
            if codec is None or RTP_NAMES[codec][0].lower() != name.lower() or RTP_NAMES[codec][1] != clock:
                continue
            telephone_event = next(
                (p for p, (n, rate, _f) in maps.items() if n.lower() == "telephone-event" and rate == clock), None
            )
            address = media_address(m, answer_sdp, index)
            return AudioChoice(
                codec=codec,
                payload_type=pt,
                clock_rate=clock,
                fmtp=fmtp,
                telephone_event_pt=telephone_event,
                direction=narrow(_offered_direction(m, answer_sdp), direction),
                remote_address=address,
                remote_port=m.port,
                remote_rtcp_port=m.port if m.rtcp_mux else _rtcp_port(m),
                rtcp_mux=m.rtcp_mux,
                ptime_ms=_ptime(m.ptime),
                remote_crypto=None,
                local_crypto=None,
            )
    raise SdpError(488, "the answer takes none of the offered audio codecs")


def accept_video_answer(
    answer_sdp: SessionDescription, offered_codecs: Sequence[StreamCodec], direction: str = "sendrecv", role: str = "video"
) -> VideoChoice | None:
    """What the remote answered to the video line of our `offer(video_codecs=...)`: None when it
    declined it (port 0), left it out, or took none of our formats. An answered H.264 format must
    keep our packetization mode; its fmtp (the remote's receive limits) is read into the codec, or
    ours is kept when the answer gives none for it."""
    ours: dict[int, StreamCodec] = {}
    for offered_codec in offered_codecs:
        ours.setdefault(offered_codec.payload_type, offered_codec)
    for index, m in enumerate(answer_sdp.media):
        if media_role(m) != role or m.port == 0 or m.proto not in ("RTP/AVP", "RTP/AVPF"):
            continue
        codecs: list[StreamCodec] = []
        seen: set[int] = set()
        for fmt in m.formats:
            pt = payload_type(fmt)
            if pt is None or pt in seen or pt not in ours:
                continue
            seen.add(pt)
            offered = ours[pt]
            rtpmap = m.rtpmap.get(pt, RtpMap(pt, offered.name, offered.clock_rate))
            fmtp = m.fmtp.get(pt, offered.fmtp_line)
            codec = _video_format(pt, rtpmap, fmtp)
            if codec is None or codec.name != offered.name.upper() or not _takes([offered], codec):
                continue
            codecs.append(StreamCodec(codec.name, pt, codec.clock_rate, fmtp=codec.fmtp, rtcp_fb=_agreed_feedback(m, pt)))
            if len(codecs) == MAX_VIDEO_FORMATS:
                break
        if not codecs:
            return None
        try:
            address = media_address(m, answer_sdp, index)
        except SdpError:
            return None
        return _video_choice(m, answer_sdp, codecs, address, direction, None, None)
    return None


def accept_content_answer(
    answer_sdp: SessionDescription,
    offered_codecs: Sequence[StreamCodec],
    bfcp: BfcpPlan,
    direction: str = "sendrecv",
    label: str = DEFAULT_CONTENT_LABEL,
) -> ContentChoice | None:
    """What the remote answered to the slides and BFCP lines of our offer: both taken (the slides
    with one of our formats, the BFCP line with a role, RFC 8856) or None."""
    video = accept_video_answer(answer_sdp, offered_codecs, direction, role="content")
    if video is None:
        return None
    for index, m in enumerate(answer_sdp.media):
        if media_role(m) != "bfcp" or m.port == 0:
            continue
        answered = bfcp_sdp.read_answer(
            m.proto,
            m.attributes,
            conference_id=bfcp.conference_id,
            user_id=bfcp.user_id,
            floor_id=bfcp.floor_id,
            content_label=label,
        )
        try:
            address = media_address(m, answer_sdp, index)
        except SdpError:
            return None
        if answered is None:
            return None
        transport = "udp" if m.proto.upper() == "UDP/BFCP" else "tcp"
        return ContentChoice(video, _bfcp_choice(answered, transport, address, m.port))
    return None


# -- one call's side ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaPlan:
    """What our SDP says about our side of a call."""

    local_address: str
    audio_port: int
    codecs: list[AudioCodec]
    prefer_ours: bool
    user_agent: str
    session_id: int = field(default_factory=lambda: secrets.randbelow(2**31))
    direction: str = "sendrecv"
    require_srtp: bool = False  # sip.srtp required (or the room system's): offers without SDES get 488
    # Main video: None while the call has no video sockets (every video line declined, none
    # offered). The call layer opens them later with `session.plan = replace(session.plan, ...)`.
    video_port: int | None = None
    video_codecs: tuple[StreamCodec, ...] = ()
    video_max_kbps: int = DEFAULT_VIDEO_MAX_KBPS
    video_direction: str | None = None  # None: the same as `direction` (a lobby hold holds video too)
    # Content (slides) and its floor control: None while the call has no content socket or BFCP
    # socket (content and BFCP lines declined); opened by the call layer like video.
    content_port: int | None = None
    bfcp: BfcpPlan | None = None

    @property
    def our_video_direction(self) -> str:
        return self.video_direction or self.direction


class MediaSession:
    """One call's offer/answer state (RFC 3264 8): the session version goes up by one with each
    SDP we send; an offer of ours waits for its answer (in an ACK or a 2xx). `plan` is read afresh
    at each offer and answer, so the call layer may replace it (`dataclasses.replace`) between
    them, e.g. to add a video port for a re-INVITE that brings video."""

    def __init__(self, plan: MediaPlan) -> None:
        self.plan = plan
        self.version = 1
        self.codec_in_use: AudioCodec | None = None
        self.offered_codecs: list[AudioCodec] | None = None  # our offer awaits its answer
        self.offered_video_codecs: tuple[StreamCodec, ...] | None = None  # ... with this video line
        self.video_choice: VideoChoice | None = None  # the main video agreed last (None: no video)
        self.content_choice: ContentChoice | None = None  # the content and BFCP agreed last
        self.offered_content = False  # our offer awaiting its answer has slides and BFCP lines
        self._offered_label = DEFAULT_CONTENT_LABEL  # ... whose slides line has this a=label
        self._offered_bfcp: BfcpPlan | None = None  # ... and this BFCP stream
        self._sent = False  # an SDP of ours went out (the next one is a version up)

    def answer(self, offer_text: str | SessionDescription) -> Answer:
        """Our answer to an offer (raises SdpError: 400 malformed, 488 not acceptable). The first
        answer of a call is version 1, each later SDP one more."""
        plan = self.plan
        version = self.version + 1 if self._sent else self.version
        result = answer(
            parse(offer_text) if isinstance(offer_text, str) else offer_text,
            local_address=plan.local_address,
            audio_port=plan.audio_port,
            codecs=plan.codecs,
            prefer_ours=plan.prefer_ours,
            direction=plan.direction,
            session_id=plan.session_id,
            session_version=version,
            user_agent=plan.user_agent,
            video_port=plan.video_port,
            video_codecs=plan.video_codecs,
            video_direction=plan.our_video_direction,
            video_max_kbps=plan.video_max_kbps,
            require_srtp=plan.require_srtp,
            content_port=plan.content_port,
            bfcp=plan.bfcp,
        )
        if plan.require_srtp and result.audio.local_crypto is None:
            raise SdpError(488, "SRTP required")
        self.version, self._sent = version, True  # (only once the answer exists: a refused offer changes nothing)
        self.codec_in_use = result.audio.codec
        self.video_choice = result.video
        self.content_choice = result.content
        self.offered_codecs = self.offered_video_codecs = None
        self.offered_content = False
        return result

    def offer(self) -> str:
        """Our offer (late offer, re-INVITE without SDP, dial-out), the codec in use first; with a
        video line when the plan has a video port and codecs."""
        plan = self.plan
        self.version += 1
        self._sent = True
        in_use = self.codec_in_use
        self.offered_codecs = sorted(plan.codecs, key=lambda codec: codec is not in_use)
        with_video = plan.video_port is not None and bool(plan.video_codecs)
        self.offered_video_codecs = tuple(plan.video_codecs) if with_video else None
        with_content = with_video and plan.content_port is not None and plan.bfcp is not None
        self.offered_content = with_content
        # A re-offer keeps what the call agreed for its content: the slides' label and the floor
        # (a new floor would start the floor control over, and revoke a presentation under way).
        agreed = self.content_choice.bfcp if self.content_choice is not None else None
        bfcp = plan.bfcp
        if agreed is not None and bfcp is not None:
            bfcp = dataclasses.replace(bfcp, floor_id=agreed.floor_id)
        self._offered_label = agreed.label if agreed is not None else DEFAULT_CONTENT_LABEL
        self._offered_bfcp = bfcp if with_content else None
        return offer(
            local_address=plan.local_address,
            audio_port=plan.audio_port,
            codecs=self.offered_codecs,
            direction=plan.direction,
            session_id=plan.session_id,
            session_version=self.version,
            user_agent=plan.user_agent,
            video_port=plan.video_port if with_video else None,
            video_codecs=plan.video_codecs,
            video_max_kbps=plan.video_max_kbps,
            video_direction=plan.our_video_direction,
            content_port=plan.content_port if with_content else None,
            bfcp=bfcp if with_content else None,
            content_label=self._offered_label,
        )

    @property
    def awaiting_answer(self) -> bool:
        return self.offered_codecs is not None

    def take_answer(self, answer_text: str) -> AudioChoice:
        """The answer to our offer (raises SdpError 400/488 when its audio cannot be used); the
        main video it agreed, if any, goes to `video_choice`."""
        codecs, self.offered_codecs = self.offered_codecs, None
        video_codecs, self.offered_video_codecs = self.offered_video_codecs, None
        if codecs is None:
            raise SdpError(488, "an answer to no offer of ours")
        description = parse(answer_text)
        choice = accept_answer(description, codecs, self.plan.direction)
        self.codec_in_use = choice.codec
        self.video_choice = (
            accept_video_answer(description, video_codecs, self.plan.our_video_direction) if video_codecs else None
        )
        offered_content, self.offered_content = self.offered_content, False
        bfcp = self._offered_bfcp
        self.content_choice = (
            accept_content_answer(description, video_codecs, bfcp, self.plan.our_video_direction, self._offered_label)
            if offered_content and video_codecs and bfcp is not None
            else None
        )
        return choice


__all__ = [
    "SdpError",
    "parse",
    "DIRECTIONS",
    "AudioChoice",
    "AudioNegotiator",
    "Answer",
    "BfcpChoice",
    "BfcpPlan",
    "ContentChoice",
    "ContentNegotiator",
    "content_offered",
    "stream_label",
    "Declining",
    "VideoChoice",
    "VideoNegotiator",
    "VIDEO_FEEDBACK",
    "MediaNegotiator",
    "MediaPlan",
    "MediaSession",
    "accept_answer",
    "accept_content_answer",
    "accept_video_answer",
    "answer",
    "decline",
    "media_role",
    "narrow",
    "offer",
    "video_offered",
]
