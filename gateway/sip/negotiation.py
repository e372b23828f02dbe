"""SDP offer/answer for SIP legs (RFC 3264), on the SDP model of `sip/sdp.py`: an offer is answered
line by line, in its order, each m-line by the negotiator of its kind; what we decline gets port 0,
never the whole call. `MediaSession` keeps one call's side of it (our address and port, session
version, the codec in use, the offer we wait an answer for) for the SIP call layer.

Negotiators: audio takes the first usable audio line; video (main), content video (RFC 4796
`a=content:slides`) and BFCP (RFC 4583 / 8856) lines are declined for now, as is anything unknown.

Audio rules (RFC 3264, RFC 4566, RFC 7587):
- the codec is chosen among the offered formats we support, in the offerer's order, or in our
  configured order when `prefer_ours`; its payload type and fmtp are echoed;
- telephone-event (RFC 4733) is taken at the chosen codec's clock rate, else at any offered rate
  (endpoints offer telephone-event/8000 beside Opus), and its events echoed;
- Opus is answered with our own fmtp (mono, in-band FEC): the offer's stereo wishes are not ours;
- the answer's direction mirrors the offer's (sendonly -> recvonly ...), narrowed by our own wish
  (e.g. inactive while a caller is on hold in the lobby);
- RTP/AVP and RTP/SAVP with SDES crypto (RFC 4568): the first offered suite we support is answered
  with a fresh key of ours; `rtcp` (RFC 3605) is read, `rtcp-mux` (RFC 5761) echoed;
- no usable audio at all is a 488;
- the connection address we send media to must be an IP literal: host names are not resolved
  (a DNS lookup per call, and an easy way to point our RTP elsewhere), 488.

Nothing but SdpError leaves `answer`, `accept_answer` or the `MediaSession` methods.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass, field
from typing import Protocol

from gateway.rtp.crypto import CRYPTO_SUITES, Crypto
from gateway.sip.message import ascii_int
from gateway.sip.sdp import (
    DIRECTIONS,
    PORT_DIGITS,
    MediaDescription,
    RtpMap,
    SdpError,
    SessionDescription,
    media_address,
    parse,
    payload_type,
)
from gateway.transcode.audio import AudioCodec

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
class Answer:
    sdp: str
    audio: AudioChoice
    description: SessionDescription | None = None


def media_role(m: MediaDescription) -> str:
    """What an m-line is for: audio, video (main), content (RFC 4796 slides), bfcp or other."""
    if m.kind == "audio":
        return "audio"
    if m.kind == "video":
        return "content" if "slides" in (m.content or "").split(",") else "video"
    if m.kind == "application" and m.proto.upper().endswith("BFCP"):
        return "bfcp"
    return "other"


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
    """For the kinds we do not take yet (video, content, BFCP, unknown): port 0."""

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
        if m.port == 0 or m.proto not in ("RTP/AVP", "RTP/SAVP"):
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
        if m.proto == "RTP/SAVP":
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
            "audio", self.port, "RTP/SAVP" if choice.local_crypto else "RTP/AVP", [str(pt) for pt in pts]
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
) -> Answer:
    """Answers an offer line by line, audio on (local_address, audio_port); raises SdpError(488)
    when there is no usable audio, SdpError(400) when the offer is malformed."""
    audio = AudioNegotiator(codecs, audio_port, prefer_ours, direction)
    declining = Declining()
    negotiators: dict[str, MediaNegotiator] = {"audio": audio}
    lines = [negotiators.get(media_role(m), declining).answer_line(m, offer, i) for i, m in enumerate(offer.media)]
    choice = audio.choice
    if choice is None:
        raise _no_audio(offer, codecs)
    sid = session_id if session_id is not None else secrets.randbelow(2**31)
    family = _family(local_address)
    description = SessionDescription(
        origin=f"{user_agent} {sid} {session_version} IN {family} {local_address}",
        connection=f"IN {family} {local_address}",
        media=lines,
    )
    return Answer(str(description), choice, description)


def offer(
    *,
    local_address: str,
    audio_port: int,
    codecs: list[AudioCodec],
    direction: str = "sendrecv",
    session_id: int,
    session_version: int = 1,
    user_agent: str = "gateway",
) -> str:
    """Our offer of one audio stream (RTP/AVP) with every codec we take, in our order, and
    telephone-events for each clock rate used."""
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
    description = SessionDescription(
        origin=f"{user_agent} {session_id} {session_version} IN {family} {local_address}",
        connection=f"IN {family} {local_address}",
        media=[audio],
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


class MediaSession:
    """One call's offer/answer state (RFC 3264 8): the session version goes up by one with each
    SDP we send; an offer of ours waits for its answer (in an ACK or a 2xx)."""

    def __init__(self, plan: MediaPlan) -> None:
        self.plan = plan
        self.version = 1
        self.codec_in_use: AudioCodec | None = None
        self.offered_codecs: list[AudioCodec] | None = None  # our offer awaits its answer
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
        )
        if plan.require_srtp and result.audio.local_crypto is None:
            raise SdpError(488, "SRTP required")
        self.version, self._sent = version, True  # (only once the answer exists: a refused offer changes nothing)
        self.codec_in_use = result.audio.codec
        self.offered_codecs = None
        return result

    def offer(self) -> str:
        """Our offer (late offer, re-INVITE without SDP, dial-out), the codec in use first."""
        plan = self.plan
        self.version += 1
        self._sent = True
        in_use = self.codec_in_use
        self.offered_codecs = sorted(plan.codecs, key=lambda codec: codec is not in_use)
        return offer(
            local_address=plan.local_address,
            audio_port=plan.audio_port,
            codecs=self.offered_codecs,
            direction=plan.direction,
            session_id=plan.session_id,
            session_version=self.version,
            user_agent=plan.user_agent,
        )

    @property
    def awaiting_answer(self) -> bool:
        return self.offered_codecs is not None

    def take_answer(self, answer_text: str) -> AudioChoice:
        """The answer to our offer (raises SdpError 400/488 when it cannot be used)."""
        codecs, self.offered_codecs = self.offered_codecs, None
        if codecs is None:
            raise SdpError(488, "an answer to no offer of ours")
        choice = accept_answer(parse(answer_text), codecs, self.plan.direction)
        self.codec_in_use = choice.codec
        return choice


__all__ = [
    "SdpError",
    "parse",
    "DIRECTIONS",
    "AudioChoice",
    "AudioNegotiator",
    "Answer",
    "Declining",
    "MediaNegotiator",
    "MediaPlan",
    "MediaSession",
    "accept_answer",
    "answer",
    "decline",
    "media_role",
    "narrow",
    "offer",
]
