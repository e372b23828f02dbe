"""SDP offer/answer for SIP legs, sans-IO: parse an offer, choose what to answer, write the answer.

The gateway carries SIP media on its own RTP sockets and writes every SDP of its SIP legs here.
Rules (RFC 3264, RFC 4566, RFC 7587):
- the audio codec is chosen among the offered formats we support, in the offerer's order, or in
  our configured order when `prefer_ours`; its payload type and fmtp are echoed;
- telephone-event (RFC 4733) is taken at the chosen codec's clock rate, else at any offered rate
  (endpoints offer telephone-event/8000 beside Opus), and its events echoed;
- Opus is answered with our own fmtp (mono, in-band FEC): the offer's stereo wishes are not ours;
- the answer's direction mirrors the offer's (sendonly -> recvonly ...), narrowed by our own wish
  (e.g. inactive while a caller is on hold in the lobby);
- RTP/AVP and RTP/SAVP with SDES crypto (RFC 4568): the first offered suite we support is answered
  with a fresh key of ours; `rtcp` (RFC 3605) is read, `rtcp-mux` (RFC 5761) echoed;
- m-lines we do not take (video for now, BFCP, anything unknown) are answered with port 0, never
  rejecting the whole offer; no usable audio at all is a 488;
- the connection address we send media to must be an IP literal: host names are not resolved
  (a DNS lookup per call, and an easy way to point our RTP elsewhere), 488.

Offers come from the internet: parsing is linear in the text with the limits below, every number is
read with `ascii_int` (digits 0-9 only, a bounded count of them), and nothing but SdpError leaves
`parse`, `answer` or `accept_answer`.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import secrets
from dataclasses import dataclass, field

from gateway.rtp.crypto import CRYPTO_SUITES, Crypto
from gateway.sip.message import ascii_int
from gateway.transcode.audio import AudioCodec

# -- limits -------------------------------------------------------------------------------------------
# Lines of one SDP (blank ones not counted): a room system offering audio, video, content and BFCP
# with ICE candidates stays below 200.
MAX_SDP_LINES = 1024
# Characters of one line (a=fmtp of H.264 or a=crypto lines are a few hundred).
MAX_SDP_LINE_LENGTH = 4096
# m-lines of one offer: our answer repeats every one (declined ones with port 0) and must still fit
# a datagram; nobody offers more than a handful.
MAX_MEDIA = 32
# Digits of the numbers SDP carries: port 5, payload type 3, clock rate 6, ptime 3, crypto tag 9.
_PORT_DIGITS, _PT_DIGITS, _CLOCK_DIGITS, _PTIME_DIGITS, _TAG_DIGITS = 5, 3, 6, 3, 9
_EVENT_LIST = re.compile(r"[0-9,-]{1,64}")  # what we echo of a telephone-event fmtp

# The RTP names and clock rates on the wire (G.722's RTP clock is 8000 though it samples at 16 kHz).
RTP_NAMES: dict[AudioCodec, tuple[str, int]] = {
    AudioCodec.PCMU: ("PCMU", 8000),
    AudioCodec.PCMA: ("PCMA", 8000),
    AudioCodec.G722: ("G722", 8000),
    AudioCodec.OPUS: ("opus", 48000),
}
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int]] = {0: ("PCMU", 8000), 8: ("PCMA", 8000), 9: ("G722", 8000)}
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


class SdpError(Exception):
    """An offer we cannot use: `status` is the SIP answer (400 malformed, 488 not acceptable)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


Attributes = list[tuple[str, str | None]]


def _direction(attributes: Attributes) -> str:
    """The last direction attribute given, sendrecv when none is (RFC 3264 5.1)."""
    return next((key for key, _ in reversed(attributes) if key in DIRECTIONS), "sendrecv")


@dataclass
class Media:
    kind: str  # audio, video, application, ...
    port: int
    proto: str  # RTP/AVP, RTP/SAVP, UDP/BFCP, ...
    formats: list[str]
    connection: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)

    def values(self, name: str) -> list[str]:
        return [v or "" for k, v in self.attributes if k == name]

    def first(self, name: str) -> str | None:
        values = self.values(name)
        return values[0] if values else None

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self.attributes)

    @property
    def direction(self) -> str:
        return _direction(self.attributes)


@dataclass
class SessionDescription:
    origin: str
    session_name: str
    connection: str | None
    attributes: list[tuple[str, str | None]]
    media: list[Media]

    @property
    def direction(self) -> str:
        return _direction(self.attributes)


def _address(connection: str | None, where: str) -> str | None:
    if connection is None:
        return None
    parts = connection.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(400, f"malformed c= line in {where}: {connection[:60]!r}")
    return parts[2].split("/")[0]


def _media_address(m: Media, session: SessionDescription, index: int) -> str:
    """Where the media of an m-line goes: its c= or the session's, which must be an IP literal of
    the family it names (488 otherwise: we do not resolve host names)."""
    connection: str | None
    if m.connection is not None:
        connection, where = m.connection, f"m-line {index}"
    else:
        connection, where = session.connection, "the session"
    address = _address(connection, where)
    if address is None:
        raise SdpError(400, f"m-line {index} has no connection address (c=)")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise SdpError(488, f"the connection address in {where} is not an IP address: {address[:60]!r}") from None
    if (ip.version == 6) != ((connection or "").split()[1] == "IP6"):
        raise SdpError(488, f"the connection address in {where} is not of the family it names")
    return address


def parse(text: str) -> SessionDescription:
    """Parses SDP text; raises SdpError(400) naming the first problem."""
    if not text or not text.strip():
        raise SdpError(400, "empty SDP")
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) > MAX_SDP_LINES:
        raise SdpError(400, f"SDP has more than {MAX_SDP_LINES} lines")
    if lines[0].strip() != "v=0":
        raise SdpError(400, "SDP must start with v=0")
    origin = session_name = ""
    connection: str | None = None
    session_attrs: list[tuple[str, str | None]] = []
    media: list[Media] = []
    for number, line in enumerate(lines, 1):
        if len(line) > MAX_SDP_LINE_LENGTH:
            raise SdpError(400, f"SDP line {number} is longer than {MAX_SDP_LINE_LENGTH} characters")
        if len(line) < 2 or line[1] != "=":
            raise SdpError(400, f"SDP line {number} is not <type>=<value>: {line[:40]!r}")
        kind, value = line[0], line[2:].strip()
        if kind == "m":
            media.append(_media_line(number, value))
            if len(media) > MAX_MEDIA:
                raise SdpError(488, f"the offer has more than {MAX_MEDIA} m-lines")
        elif kind == "c":
            if media:
                media[-1].connection = value
            else:
                connection = value
        elif kind == "a":
            name, _, attr_value = value.partition(":")
            entry = (name, attr_value if _ else None)
            (media[-1].attributes if media else session_attrs).append(entry)
        elif kind == "o" and not media:
            origin = value
        elif kind == "s" and not media:
            session_name = value
    if not origin:
        raise SdpError(400, "SDP has no o= line")
    session = SessionDescription(origin, session_name, connection, session_attrs, media)
    _address(connection, "the session")
    for index, m in enumerate(media):
        _address(m.connection, f"m-line {index}")
        if m.port and m.kind in ("audio", "video") and m.connection is None and connection is None:
            raise SdpError(400, f"m-line {index} has no connection address (c=)")
    return session


def _media_line(number: int, value: str) -> Media:
    """m=<media> <port>[/<count>] <proto> <fmt> ...: an RTP m-line's formats are payload types
    (0-127, ASCII digits; RFC 4566 5.14), anything else is refused with 400."""
    parts = value.split()
    if len(parts) < 4:
        raise SdpError(400, f"malformed m= line {number}: {value[:60]!r}")
    port_text, _, count = parts[1].partition("/")
    port = ascii_int(port_text, _PORT_DIGITS)
    if port is None or (count and ascii_int(count, _PORT_DIGITS) is None):
        raise SdpError(400, f"m= line {number} has a bad port: {parts[1][:20]!r}")
    if port > 65535:
        raise SdpError(400, f"m= line {number} has a port out of range: {port}")
    if parts[2].upper().startswith("RTP/"):
        for fmt in parts[3:]:
            pt = ascii_int(fmt, _PT_DIGITS)
            if pt is None or pt > 127:
                raise SdpError(400, f"m= line {number} has a bad payload type: {fmt[:20]!r}")
    return Media(parts[0], port, parts[2], parts[3:])


def _payload_type(text: str) -> int | None:
    pt = ascii_int(text, _PT_DIGITS)
    return pt if pt is not None and pt <= 127 else None


def _ptime(value: str | None) -> int:
    """a=ptime in ms when it is one we can packetise (10-120), else 20."""
    ptime = ascii_int(value or "", _PTIME_DIGITS)
    return ptime if ptime is not None and 10 <= ptime <= 120 else 20


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


def _rtpmaps(m: Media) -> dict[int, tuple[str, int, str | None]]:
    """payload type -> (encoding name, clock rate, fmtp) for every format of the m-line."""
    maps: dict[int, tuple[str, int, str | None]] = {}
    fmtps: dict[int, str] = {}
    for value in m.values("fmtp"):
        text, _, params = value.partition(" ")
        pt = _payload_type(text)
        if pt is not None:
            fmtps[pt] = params.strip()
    for value in m.values("rtpmap"):
        text, _, rest = value.partition(" ")
        name, _, clock_text = rest.partition("/")
        pt, clock = _payload_type(text), ascii_int(clock_text.split("/")[0], _CLOCK_DIGITS)
        if pt is not None and clock:
            maps[pt] = (name, clock, fmtps.get(pt))
    for fmt in m.formats:
        pt = _payload_type(fmt)
        if pt is not None and pt not in maps and pt in STATIC_PAYLOAD_TYPES:
            static_name, static_clock = STATIC_PAYLOAD_TYPES[pt]
            maps[pt] = (static_name, static_clock, fmtps.get(pt))
    return maps


def _rtcp_port(m: Media) -> int:
    """RFC 3605 a=rtcp when given, else the RTP port + 1."""
    words = (m.first("rtcp") or "").split()
    port = ascii_int(words[0], _PORT_DIGITS) if words else None
    return port if port is not None and 0 < port <= 65535 else m.port + 1


_REVERSE = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


def _narrow(offered: str, wanted: str) -> str:
    """Our direction: the mirror of the offered one, narrowed by what we want (e.g. on hold)."""
    mirrored = _REVERSE[offered]
    can_send = mirrored in ("sendrecv", "sendonly") and wanted in ("sendrecv", "sendonly")
    can_recv = mirrored in ("sendrecv", "recvonly") and wanted in ("sendrecv", "recvonly")
    return {(True, True): "sendrecv", (True, False): "sendonly", (False, True): "recvonly"}.get(
        (can_send, can_recv), "inactive"
    )


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
    """Answers an offer with one audio stream on (local_address, audio_port); raises SdpError(488)
    when there is nothing usable, SdpError(400) when the offer is malformed."""
    chosen_index: int | None = None
    choice: AudioChoice | None = None
    local_crypto: Crypto | None = None
    for index, m in enumerate(offer.media):
        if m.kind != "audio" or m.port == 0 or m.proto not in ("RTP/AVP", "RTP/SAVP") or choice is not None:
            continue
        maps = _rtpmaps(m)
        offered: list[tuple[int, AudioCodec]] = []
        for fmt in m.formats:
            format_pt = _payload_type(fmt)
            if format_pt is None or format_pt not in maps:
                continue
            name, clock, _fmtp = maps[format_pt]
            for codec in codecs:
                wire_name, wire_clock = RTP_NAMES[codec]
                if name.lower() == wire_name.lower() and clock == wire_clock:
                    offered.append((format_pt, codec))
        if not offered:
            continue
        if prefer_ours:
            offered.sort(key=lambda item: codecs.index(item[1]))
        pt, codec = offered[0]
        clock = maps[pt][1]
        events = [(p, rate) for p, (name, rate, _f) in maps.items() if name.lower() == "telephone-event"]
        telephone_event = next((p for p, rate in events if rate == clock), events[0][0] if events else None)
        event_clock = next((rate for p, rate in events if p == telephone_event), clock)
        remote_crypto = None
        if m.proto == "RTP/SAVP":
            remote_crypto = next((c for c in map(_parse_crypto, m.values("crypto")) if c is not None), None)
            if remote_crypto is None:
                continue  # SRTP offered with no suite we support: this m-line cannot be used
            local_crypto = Crypto(remote_crypto.tag, remote_crypto.suite, secrets.token_bytes(30))
        address = _media_address(m, offer, index)
        rtcp_port = _rtcp_port(m)
        # A media-level direction wins over the session-level one (RFC 3264 5.1).
        offered_direction = m.direction if any(m.has(d) for d in DIRECTIONS) else offer.direction
        fmtp = maps[pt][2]
        if fmtp is not None and not (fmtp.isascii() and fmtp.isprintable()):
            fmtp = None  # (the offer's fmtp is echoed into our SDP: printable ASCII only)
        choice = AudioChoice(
            codec=codec,
            payload_type=pt,
            clock_rate=clock,
            fmtp="useinbandfec=1" if codec is AudioCodec.OPUS else fmtp,
            telephone_event_pt=telephone_event,
            direction=_narrow(offered_direction, direction),
            remote_address=address,
            remote_port=m.port,
            remote_rtcp_port=m.port if m.has("rtcp-mux") else rtcp_port,
            rtcp_mux=m.has("rtcp-mux"),
            ptime_ms=_ptime(m.first("ptime")),
            remote_crypto=remote_crypto,
            local_crypto=local_crypto,
        )
        chosen_index = index
    if choice is None:
        if not any(m.kind == "audio" for m in offer.media):
            raise SdpError(488, "the offer has no audio stream")
        raise SdpError(488, "no common audio codec (we take " + ", ".join(RTP_NAMES[c][0] for c in codecs) + ")")

    sid = session_id if session_id is not None else secrets.randbelow(2**31)
    family = "IP6" if ":" in local_address else "IP4"
    lines = [
        "v=0",
        f"o={user_agent} {sid} {session_version} IN {family} {local_address}",
        "s=-",
        f"c=IN {family} {local_address}",
        "t=0 0",
    ]
    for index, m in enumerate(offer.media):
        if index != chosen_index:
            # Declined (RFC 3264 6): same media and protocol, port 0, a format of the offer's.
            lines.append(f"m={m.kind} 0 {m.proto} {m.formats[0] if m.formats else '0'}")
            continue
        formats = [choice.payload_type] + ([choice.telephone_event_pt] if choice.telephone_event_pt is not None else [])
        proto = "RTP/SAVP" if choice.local_crypto else "RTP/AVP"
        lines.append(f"m=audio {audio_port} {proto} {' '.join(map(str, formats))}")
        name, clock = RTP_NAMES[choice.codec]
        lines.append(f"a=rtpmap:{choice.payload_type} {name}/{clock}" + ("/2" if choice.codec is AudioCodec.OPUS else ""))
        if choice.fmtp:
            lines.append(f"a=fmtp:{choice.payload_type} {choice.fmtp}")
        if choice.telephone_event_pt is not None:
            lines.append(f"a=rtpmap:{choice.telephone_event_pt} telephone-event/{event_clock}")
            event_list = next(
                (v.partition(" ")[2] for v in m.values("fmtp") if v.partition(" ")[0] == str(choice.telephone_event_pt)),
                "",
            )
            events_text = event_list.strip()
            events_text = events_text if _EVENT_LIST.fullmatch(events_text) else "0-15"
            lines.append(f"a=fmtp:{choice.telephone_event_pt} {events_text}")
        lines.append(f"a=ptime:{choice.ptime_ms}")
        if choice.rtcp_mux:
            lines.append("a=rtcp-mux")
        else:
            lines.append(f"a=rtcp:{audio_port + 1}")
        if choice.local_crypto:
            lines.append(f"a=crypto:{choice.local_crypto.line()}")
        lines.append(f"a={choice.direction}")
    return Answer("\r\n".join(lines) + "\r\n", choice)


# Our payload types when we make the offer (late offer, session refresh without SDP).
OFFER_PAYLOAD_TYPES: dict[AudioCodec, int] = {
    AudioCodec.PCMU: 0,
    AudioCodec.PCMA: 8,
    AudioCodec.G722: 9,
    AudioCodec.OPUS: 111,
}
_OFFER_TELEPHONE_EVENT = {8000: 101, 48000: 110}


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
    family = "IP6" if ":" in local_address else "IP4"
    pts = [OFFER_PAYLOAD_TYPES[c] for c in codecs]
    clocks = sorted({RTP_NAMES[c][1] for c in codecs})
    events = [_OFFER_TELEPHONE_EVENT[clock] for clock in clocks]
    lines = [
        "v=0",
        f"o={user_agent} {session_id} {session_version} IN {family} {local_address}",
        "s=-",
        f"c=IN {family} {local_address}",
        "t=0 0",
        f"m=audio {audio_port} RTP/AVP {' '.join(map(str, pts + events))}",
    ]
    for codec, pt in zip(codecs, pts, strict=True):
        name, clock = RTP_NAMES[codec]
        lines.append(f"a=rtpmap:{pt} {name}/{clock}" + ("/2" if codec is AudioCodec.OPUS else ""))
        if codec is AudioCodec.OPUS:
            lines.append(f"a=fmtp:{pt} useinbandfec=1")
    for clock, pt in zip(clocks, events, strict=True):
        lines += [f"a=rtpmap:{pt} telephone-event/{clock}", f"a=fmtp:{pt} 0-15"]
    lines += ["a=ptime:20", f"a=rtcp:{audio_port + 1}", f"a={direction}"]
    return "\r\n".join(lines) + "\r\n"


def accept_answer(answer_sdp: SessionDescription, codecs: list[AudioCodec], direction: str = "sendrecv") -> AudioChoice:
    """What the remote answered to our `offer(codecs=...)`: raises SdpError(488) when it took
    nothing of ours."""
    by_pt = {OFFER_PAYLOAD_TYPES[c]: c for c in codecs}
    for index, m in enumerate(answer_sdp.media):
        if m.kind != "audio" or m.port == 0 or m.proto != "RTP/AVP":
            continue
        maps = _rtpmaps(m)
        for fmt in m.formats:
            answered_pt = _payload_type(fmt)
            if answered_pt is None:
                continue
            pt = answered_pt
            name, clock, fmtp = maps.get(pt, ("", 0, None))
            codec = by_pt.get(pt)
            if codec is None or RTP_NAMES[codec][0].lower() != name.lower() or RTP_NAMES[codec][1] != clock:
                continue
            telephone_event = next(
                (p for p, (n, rate, _f) in maps.items() if n.lower() == "telephone-event" and rate == clock), None
            )
            rtcp_port = _rtcp_port(m)
            answered = m.direction if any(m.has(d) for d in DIRECTIONS) else answer_sdp.direction
            address = _media_address(m, answer_sdp, index)
            return AudioChoice(
                codec=codec,
                payload_type=pt,
                clock_rate=clock,
                fmtp=fmtp,
                telephone_event_pt=telephone_event,
                direction=_narrow(answered, direction),
                remote_address=address,
                remote_port=m.port,
                remote_rtcp_port=m.port if m.has("rtcp-mux") else rtcp_port,
                rtcp_mux=m.has("rtcp-mux"),
                ptime_ms=_ptime(m.first("ptime")),
                remote_crypto=None,
                local_crypto=None,
            )
    raise SdpError(488, "the answer takes none of the offered audio codecs")
