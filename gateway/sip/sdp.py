"""SDP as a model (RFC 4566): text parsed to a `SessionDescription` of `MediaDescription`s and
written back from them. No negotiation here: `sip/negotiation.py` reads offers and builds answers
from these objects.

What is typed: per m-line its kind, port, proto and formats, the connection, bandwidths (b=), the
rtpmap, fmtp and rtcp-fb of each format, direction, content (RFC 4796), ptime, rtcp (RFC 3605),
rtcp-mux (RFC 5761) and crypto (RFC 4568, kept as text: the negotiator reads the suites it takes).
Every other attribute (BFCP's floorctrl, confid, userid, floorid, setup, connection, label, ICE
...) is kept generically, in order, and written back as it came. Parsing and writing again gives
equal objects (not always the same text: typed attributes are written in one canonical order).

SDP comes from the internet: parsing is linear in the text with the limits below, every number is
read with `ascii_int` (digits 0-9 only, a bounded count of them), and nothing but SdpError leaves
`parse`: an attribute whose value cannot be read as its type is kept generically, never an error.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from gateway.sip.message import ascii_int

# -- limits -------------------------------------------------------------------------------------------
# Lines of one SDP (blank ones not counted): a room system offering audio, video, content and BFCP
# with ICE candidates stays below 200.
MAX_SDP_LINES = 1024
# Characters of one line (a=fmtp of H.264 or a=crypto lines are a few hundred).
MAX_SDP_LINE_LENGTH = 4096
# m-lines of one offer: our answer repeats every one (declined ones with port 0) and must still fit
# a datagram; nobody offers more than a handful.
MAX_MEDIA = 32
# Digits of the numbers SDP carries: port 5, payload type 3, clock rate 6, ptime 3, channels 2,
# bandwidth 10.
PORT_DIGITS, PT_DIGITS, CLOCK_DIGITS, PTIME_DIGITS, CHANNEL_DIGITS, BANDWIDTH_DIGITS = 5, 3, 6, 3, 2, 10
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


class SdpError(Exception):
    """An SDP we cannot use: `status` is the SIP answer (400 malformed, 488 not acceptable)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


Attribute = tuple[str, str | None]  # a=<name>[:<value>]


def payload_type(text: str) -> int | None:
    """An RTP payload type (0-127, ASCII digits), None for anything else."""
    pt = ascii_int(text, PT_DIGITS)
    return pt if pt is not None and pt <= 127 else None


@dataclass(frozen=True)
class RtpMap:
    """a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]"""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    def __str__(self) -> str:
        channels = f"/{self.channels}" if self.channels is not None else ""
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{channels}"

    @classmethod
    def parse(cls, value: str) -> RtpMap | None:
        text, _, rest = value.partition(" ")
        name, _, clock_text = rest.partition("/")
        clock_part, _, channel_text = clock_text.partition("/")
        pt, clock = payload_type(text), ascii_int(clock_part, CLOCK_DIGITS)
        if pt is None or not clock or not name:
            return None
        channels = ascii_int(channel_text, CHANNEL_DIGITS) if channel_text else None
        return cls(pt, name, clock, channels)


@dataclass(frozen=True)
class Bandwidth:
    """b=<type>:<kbit/s or bit/s> (AS, CT, TIAS ...)."""

    type: str
    value: int

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"

    @classmethod
    def parse(cls, value: str) -> Bandwidth | None:
        kind, colon, number = value.partition(":")
        amount = ascii_int(number.strip(), BANDWIDTH_DIGITS)
        return cls(kind.strip(), amount) if colon and kind.strip() and amount is not None else None


def connection_address(connection: str | None, where: str) -> str | None:
    """The address of a c= value (`IN IP4 <address>[/ttl]`); SdpError(400) when malformed."""
    if connection is None:
        return None
    parts = connection.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(400, f"malformed c= line in {where}: {connection[:60]!r}")
    return parts[2].split("/")[0]


@dataclass
class MediaDescription:
    """One m-line and what follows it up to the next."""

    kind: str  # audio, video, application, ...
    port: int
    proto: str  # RTP/AVP, RTP/SAVP, UDP/BFCP, TCP/BFCP, ...
    formats: list[str]
    port_count: int | None = None  # m=<kind> <port>/<count>
    connection: str | None = None  # the c= value, e.g. "IN IP4 192.0.2.1"
    bandwidths: list[Bandwidth] = field(default_factory=list)
    rtpmap: dict[int, RtpMap] = field(default_factory=dict)
    fmtp: dict[int, str] = field(default_factory=dict)
    rtcp_fb: list[tuple[str, str]] = field(default_factory=list)  # (payload type or *, feedback)
    direction: str | None = None  # None: not given on this m-line (the session's applies)
    content: str | None = None  # RFC 4796: main, slides, alt, speaker, sl
    ptime: int | None = None
    rtcp: str | None = None  # RFC 3605: "<port> [IN IP4 <address>]"
    rtcp_mux: bool = False
    crypto: list[str] = field(default_factory=list)  # RFC 4568 values, as written
    attributes: list[Attribute] = field(default_factory=list)  # everything else, in order

    @property
    def address(self) -> str | None:
        return connection_address(self.connection, "an m-line")

    def attribute_lines(self) -> list[Attribute]:
        """Every attribute of the m-line, typed ones first, as they are written."""
        out: list[Attribute] = []
        written: set[int] = set()
        for fmt in self.formats:
            pt = payload_type(fmt)
            if pt is not None and pt not in written:
                written.add(pt)
                out += self._format_attributes(pt)
        for pt in [*self.rtpmap, *self.fmtp]:
            if pt not in written:
                written.add(pt)
                out += self._format_attributes(pt)
        out += [("rtcp-fb", f"{fmt} {value}") for fmt, value in self.rtcp_fb]
        if self.ptime is not None:
            out.append(("ptime", str(self.ptime)))
        if self.rtcp is not None:
            out.append(("rtcp", self.rtcp))
        if self.rtcp_mux:
            out.append(("rtcp-mux", None))
        out += [("crypto", value) for value in self.crypto]
        if self.content is not None:
            out.append(("content", self.content))
        out += self.attributes
        if self.direction is not None:
            out.append((self.direction, None))
        return out

    def _format_attributes(self, pt: int) -> list[Attribute]:
        out: list[Attribute] = []
        if pt in self.rtpmap:
            out.append(("rtpmap", str(self.rtpmap[pt])))
        if pt in self.fmtp:
            out.append(("fmtp", f"{pt} {self.fmtp[pt]}" if self.fmtp[pt] else str(pt)))
        return out

    def values(self, name: str) -> list[str]:
        """The values of every attribute called `name` (typed or not), as written."""
        return [value or "" for key, value in self.attribute_lines() if key == name]

    def lines(self) -> list[str]:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        out = [f"m={self.kind} {port} {self.proto} {' '.join(self.formats)}"]
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out += [f"b={bandwidth}" for bandwidth in self.bandwidths]
        out += [f"a={key}" + (f":{value}" if value is not None else "") for key, value in self.attribute_lines()]
        return out

    def add_attribute(self, name: str, value: str | None) -> None:
        """Reads one a= line into the typed field it belongs to, or keeps it generically."""
        if name in DIRECTIONS:
            self.direction = name
        elif name == "rtpmap" and value is not None and (rtpmap := RtpMap.parse(value)) is not None:
            self.rtpmap[rtpmap.payload_type] = rtpmap
        elif name == "fmtp" and value is not None and (pt := payload_type(value.partition(" ")[0])) is not None:
            self.fmtp[pt] = value.partition(" ")[2].strip()
        elif name == "rtcp-fb" and value is not None and " " in value.strip():
            fmt, _, feedback = value.strip().partition(" ")
            self.rtcp_fb.append((fmt, feedback.strip()))
        elif name == "ptime" and self.ptime is None and (ptime := ascii_int(value or "", PTIME_DIGITS)) is not None:
            self.ptime = ptime
        elif name == "rtcp" and self.rtcp is None and value is not None:
            self.rtcp = value
        elif name == "rtcp-mux":
            self.rtcp_mux = True
        elif name == "crypto" and value is not None:
            self.crypto.append(value)
        elif name == "content" and self.content is None and value:
            self.content = value
        else:
            self.attributes.append((name, value))


@dataclass
class SessionDescription:
    origin: str  # the o= value
    session_name: str = "-"
    connection: str | None = None
    bandwidths: list[Bandwidth] = field(default_factory=list)
    timing: str = "0 0"
    direction: str | None = None  # None: not given at session level (sendrecv)
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)

    @property
    def address(self) -> str | None:
        return connection_address(self.connection, "the session")

    def __str__(self) -> str:
        lines = ["v=0", f"o={self.origin}", f"s={self.session_name or '-'}"]
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines += [f"b={bandwidth}" for bandwidth in self.bandwidths]
        lines.append(f"t={self.timing}")
        attributes = [*self.attributes, *([(self.direction, None)] if self.direction is not None else [])]
        lines += [f"a={key}" + (f":{value}" if value is not None else "") for key, value in attributes]
        for media in self.media:
            lines += media.lines()
        return "\r\n".join(lines) + "\r\n"


def parse(text: str) -> SessionDescription:
    """Parses SDP text; raises SdpError(400) naming the first problem (488 for too many m-lines)."""
    if not text or not text.strip():
        raise SdpError(400, "empty SDP")
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) > MAX_SDP_LINES:
        raise SdpError(400, f"SDP has more than {MAX_SDP_LINES} lines")
    if lines[0].strip() != "v=0":
        raise SdpError(400, "SDP must start with v=0")
    session = SessionDescription(origin="", session_name="")
    timing: str | None = None
    media = session.media
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
                session.connection = value
        elif kind == "b":
            bandwidth = Bandwidth.parse(value)
            if bandwidth is not None:
                (media[-1].bandwidths if media else session.bandwidths).append(bandwidth)
        elif kind == "a":
            name, colon, attr_value = value.partition(":")
            if media:
                media[-1].add_attribute(name, attr_value if colon else None)
            elif name in DIRECTIONS:
                session.direction = name
            else:
                session.attributes.append((name, attr_value if colon else None))
        elif kind == "o" and not media:
            session.origin = value
        elif kind == "s" and not media:
            session.session_name = value
        elif kind == "t" and not media and timing is None:
            timing = value
    if not session.origin:
        raise SdpError(400, "SDP has no o= line")
    session.timing = timing or "0 0"
    connection_address(session.connection, "the session")
    for index, m in enumerate(media):
        connection_address(m.connection, f"m-line {index}")
        if m.port and m.kind in ("audio", "video") and m.connection is None and session.connection is None:
            raise SdpError(400, f"m-line {index} has no connection address (c=)")
    return session


def _media_line(number: int, value: str) -> MediaDescription:
    """m=<media> <port>[/<count>] <proto> <fmt> ...: an RTP m-line's formats are payload types
    (0-127, ASCII digits; RFC 4566 5.14), anything else is refused with 400."""
    parts = value.split()
    if len(parts) < 4:
        raise SdpError(400, f"malformed m= line {number}: {value[:60]!r}")
    port_text, slash, count_text = parts[1].partition("/")
    port = ascii_int(port_text, PORT_DIGITS)
    count = ascii_int(count_text, PORT_DIGITS) if slash else None
    if port is None or (slash and count is None):
        raise SdpError(400, f"m= line {number} has a bad port: {parts[1][:20]!r}")
    if port > 65535:
        raise SdpError(400, f"m= line {number} has a port out of range: {port}")
    if parts[2].upper().startswith("RTP/"):
        for fmt in parts[3:]:
            if payload_type(fmt) is None:
                raise SdpError(400, f"m= line {number} has a bad payload type: {fmt[:20]!r}")
    return MediaDescription(parts[0], port, parts[2], parts[3:], port_count=count)


def media_address(m: MediaDescription, session: SessionDescription, index: int) -> str:
    """Where the media of an m-line goes: its c= or the session's, which must be an IP literal of
    the family it names (488 otherwise: we do not resolve host names)."""
    connection: str | None
    if m.connection is not None:
        connection, where = m.connection, f"m-line {index}"
    else:
        connection, where = session.connection, "the session"
    address = connection_address(connection, where)
    if address is None:
        raise SdpError(400, f"m-line {index} has no connection address (c=)")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise SdpError(488, f"the connection address in {where} is not an IP address: {address[:60]!r}") from None
    if (ip.version == 6) != ((connection or "").split()[1] == "IP6"):
        raise SdpError(488, f"the connection address in {where} is not of the family it names")
    return address
