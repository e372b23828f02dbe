"""SIP messages, sans-IO (RFC 3261 7, 20, 25): parse and serialize requests and responses, frame
them on stream transports, and read the parts the gateway needs (Via, name-addr and tags, the
alias dialled, the caller's name and number, SDP bodies, the digits of a SIP INFO).

Everything here reads untrusted bytes from the internet, so every parser runs in time linear in its
input with explicit size limits (below), and raises nothing but `SipMessageError`. Work is done with
str/bytes methods and regular expressions of a single character class under one quantifier (never
nested or adjacent unbounded quantifiers), so no input makes the engine backtrack; the few Python
loops are bounded by a limit, not by the input's size. RFC 4475 (the torture test messages) is the
test data (tests/test_sip_torture.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

DTMF_SIGNALS = "0123456789*#ABCD"

# -- limits -------------------------------------------------------------------------------------------
# A UDP datagram cannot be larger; a message on a stream is held to the same bound (the framer
# closes a connection whose message would exceed it).
MAX_MESSAGE_BYTES = 65_535
# Header fields of one message (a folded field counts once); real requests carry 10-30.
MAX_HEADERS = 256
# Physical lines of the header section, folded continuations included (bounds the line loop).
MAX_HEADER_LINES = 512
# Characters of one header field after unfolding: the longest RFC 4475 field (longreq) has ~400,
# Identity and long Record-Route sets stay far below; 8 KB is what common proxies allow.
MAX_LINE_LENGTH = 8_192
# Values of one list header (Via, Contact, Route, Record-Route) across all its fields: a request
# starts with Max-Forwards 70, so it cannot have passed more hops than that.
MAX_LIST_VALUES = 70
# Quote, bracket and backslash characters one list header value may hold before we stop splitting it
# (each of MAX_LIST_VALUES values has a quoted name and one <uri>: 4 each).
MAX_LIST_SPECIALS = 512
# Parameters of one Via or name-addr value (tag, branch, rport, received, expires, q ...).
MAX_PARAMS = 64
# Content-Length digits (leading zeros allowed); the value itself must fit the message.
MAX_LENGTH_DIGITS = 10
# CSeq numbers are below 2**31 (RFC 3261 8.1.1.5); RFC 4475 scalar02 sends one past 2**64.
MAX_CSEQ = 2**31 - 1

COMPACT_FORMS = {
    "f": "from", "t": "to", "i": "call-id", "v": "via", "m": "contact", "c": "content-type",
    "l": "content-length", "k": "supported", "e": "content-encoding", "s": "subject", "x": "session-expires",
}
_CANONICAL = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate", "max-forwards": "Max-Forwards",
    "content-type": "Content-Type", "content-length": "Content-Length", "record-route": "Record-Route",
    "user-agent": "User-Agent", "session-expires": "Session-Expires", "min-se": "Min-SE", "rseq": "RSeq", "rack": "RAck",
}
# Header fields that may appear once only (RFC 3261 7.3.1: only list headers may repeat); RFC 4475
# multi01 and mcl01 repeat them, and two Content-Lengths make framing ambiguous.
_SINGLE = ("to", "from", "call-id", "cseq", "max-forwards", "content-length", "content-type")

# Each of these is one character class under one quantifier, matched or searched in C.
_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_WS = re.compile(r"[ \t]*")
_HOST = re.compile(r"[A-Za-z0-9._-]+")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+")
_PARAM_VALUE = re.compile(r"[^;,\s\"<>]+")
_URI_TEXT = re.compile(r"[^\s<>\"]+")
_VERSION = re.compile(r"SIP/[0-9]{1,5}\.[0-9]{1,5}")
# An unquoted display name: tokens and blanks, and (liberally) any non-ASCII text.
_DISPLAY_TOKENS = re.compile(r"[A-Za-z0-9.!%*_+`'~ \t\x80-\U0010ffff-]*")
_LIST_SPECIALS = re.compile(r'[",<>\\]')
_PORT = re.compile(r"[0-9]*")


class SipMessageError(ValueError):
    """A message we cannot use; the text is the reason phrase of the answer, `status` its code
    (400, or 505 for a SIP version we do not speak, 513 for a message too large)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


# Reason phrases of the answers a message can get before anything else reads it.
REASON_PHRASES = {
    400: "Bad Request", 416: "Unsupported URI Scheme", 505: "Version Not Supported", 513: "Message Too Large",
}


def accepts_sdp(accept: str) -> bool:
    """Whether an Accept header value admits application/sdp (or a wildcard covering it)."""
    for media_range in accept.split(","):
        kind = media_range.split(";")[0].strip(" \t").lower()
        if kind in ("application/sdp", "application/*", "*/*"):
            return True
    return False


def ascii_int(text: str, max_digits: int) -> int | None:
    """The value of 1..max_digits ASCII digits, else None. (str.isdigit() and int() also take '²',
    Arabic-Indic digits, signs, blanks and underscores: never trust them with network input.)"""
    if not 0 < len(text) <= max_digits or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def is_token(text: str) -> bool:
    return _TOKEN.fullmatch(text) is not None


def canonical(name: str) -> str:
    key = name.lower()
    return _CANONICAL.get(key) or "-".join(part.capitalize() for part in key.split("-"))


@dataclass
class SipMessage:
    """A request (method, uri) or a response (status, reason); headers keep their order."""

    method: str = ""
    uri: str = ""
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)  # (lower-case long name, value)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return bool(self.method)

    def get(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def all_raw(self, name: str) -> list[str]:
        """Every value of a header as it came (not split at commas)."""
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def all(self, name: str) -> list[str]:
        """Every value of a header, comma-separated lists split (outside quotes and <>); raises
        SipMessageError past MAX_LIST_VALUES values (parse has checked the ones a request uses)."""
        name = name.lower()
        values: list[str] = []
        for key, value in self.headers:
            if key == name:
                values += split_list(value)
                if len(values) > MAX_LIST_VALUES:
                    raise SipMessageError(f"more than {MAX_LIST_VALUES} {canonical(name)} values")
        return values

    def set(self, name: str, value: str) -> None:
        name = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k != name]
        self.headers.append((name, value))

    def add(self, name: str, value: str) -> None:
        self.headers.append((name.lower(), value))

    @property
    def call_id(self) -> str:
        return self.get("call-id") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        """(number, METHOD); the number is -1 when it is not 1-10 ASCII digits below 2**31."""
        parts = (self.get("cseq") or "").split(maxsplit=1)
        number = ascii_int(parts[0], MAX_LENGTH_DIGITS) if parts else None
        method = parts[1].strip().upper() if len(parts) > 1 else ""
        return (number if number is not None and number <= MAX_CSEQ else -1), method

    @property
    def top_via(self) -> Via:
        vias = self.all("via")
        if not vias:
            raise SipMessageError("missing Via header")
        return Via.parse(vias[0])

    @property
    def content_type(self) -> str:
        return (self.get("content-type") or "").split(";")[0].strip().lower()

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def serialize(self) -> bytes:
        reason = _one_line(self.reason)
        start = f"{self.method} {self.uri} SIP/2.0" if self.is_request else f"SIP/2.0 {self.status} {reason}"
        lines = [start]
        # (a CR or LF inside a value would end the header: never let one through, from anyone)
        lines += [f"{canonical(k)}: {_one_line(v)}" for k, v in self.headers if k != "content-length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


def _one_line(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ") if ("\r" in value or "\n" in value) else value


def split_list(value: str) -> list[str]:
    """The values of a comma-separated list header, split outside quotes and <>, each stripped (an
    empty value between two commas is kept, so the caller can refuse it)."""
    if '"' not in value and "<" not in value:  # the common case, all in C
        parts = [part.strip(" \t") for part in value.split(",")]
        if parts and not parts[-1]:
            parts.pop()
        if len(parts) > MAX_LIST_VALUES:
            raise SipMessageError(f"more than {MAX_LIST_VALUES} values in a list header")
        return parts
    parts = []
    start = depth = specials = 0
    quoted = False
    escaped_at = -1  # the position a backslash inside quotes escapes
    for match in _LIST_SPECIALS.finditer(value):  # only the special characters: bounded below
        specials += 1
        if specials > MAX_LIST_SPECIALS:
            raise SipMessageError("too many quotes or brackets in a list header")
        ch, at = match.group(), match.start()
        if at == escaped_at:
            continue
        if ch == "\\":
            if quoted:
                escaped_at = at + 1
        elif ch == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append(value[start:at].strip(" \t"))
            start = at + 1
            if len(parts) > MAX_LIST_VALUES:
                raise SipMessageError(f"more than {MAX_LIST_VALUES} values in a list header")
    last = value[start:].strip(" \t")
    if last:
        parts.append(last)
    return parts


def parse(data: bytes) -> SipMessage:
    """One whole message (a datagram, or what `StreamFramer` cut); raises SipMessageError, whose
    text says what is wrong (the reason phrase of our 400) and whose status is the answer's code.

    Requests are checked as far as the gateway relies on them: start line, header syntax, single
    headers not repeated, Content-Length, CSeq, Max-Forwards, every Via, From, To, Contact, Route
    and Record-Route value. Responses only as far as framing needs: what they carry is read by the
    user agent, which refuses what it cannot read."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipMessageError("message too large", 513)
    data = data.lstrip(b"\r\n")  # keep-alive CRLFs before a message
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        head, body = data[:end], data[end + 4 :]
    else:
        end = data.find(b"\n\n")
        head, body = (data[:end], data[end + 2 :]) if end >= 0 else (data, b"")
    if not head:
        raise SipMessageError("empty message")
    if head.count(b"\n") >= MAX_HEADER_LINES:
        raise SipMessageError("too many header lines")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipMessageError("headers are not UTF-8") from None
    lines = text.split("\n")
    message = SipMessage()
    _start_line(message, _strip_cr(lines[0]))
    _headers(message, lines)
    length = message.get("content-length")
    if length is not None:
        value = ascii_int(length, MAX_LENGTH_DIGITS)
        if value is None:
            raise SipMessageError("bad Content-Length")
        if value > len(body):
            raise SipMessageError("body shorter than Content-Length")
        body = body[:value]
    message.body = body
    if message.is_request:
        _check_request(message)
    return message


def _strip_cr(line: str) -> str:
    line = line[:-1] if line.endswith("\r") else line
    if "\r" in line:  # RFC 3261 7: lines end in CRLF; a CR alone is nowhere allowed in the header section
        raise SipMessageError("bare CR in the header section")
    return line


def _start_line(message: SipMessage, start: str) -> None:
    if len(start) > MAX_LINE_LENGTH:
        raise SipMessageError("start line too long")
    if start.startswith("SIP/"):
        version, _, rest = start.partition(" ")
        if version != "SIP/2.0":
            raise SipMessageError("SIP version not supported", 505)
        status, _, reason = rest.partition(" ")
        code = ascii_int(status, 3)
        if code is None or len(status) != 3 or not 100 <= code <= 699:
            raise SipMessageError("malformed status line")
        message.status, message.reason = code, reason
        return
    # Request-Line = Method SP Request-URI SP SIP-Version: one space each, nothing else (RFC 4475
    # lwsstart, trws and lwsruri are refused, which the RFC allows)
    parts = start.split(" ")
    if len(parts) != 3 or not is_token(parts[0]):
        raise SipMessageError("malformed request line")
    method, uri, version = parts
    if version != "SIP/2.0":
        if _VERSION.fullmatch(version):
            raise SipMessageError("SIP version not supported", 505)
        raise SipMessageError("malformed request line")
    scheme, colon, rest = uri.partition(":")
    if not colon or not rest or not _SCHEME.fullmatch(scheme) or not _URI_TEXT.fullmatch(uri):
        raise SipMessageError("malformed Request-URI")
    if scheme.lower() in ("sip", "sips"):
        hostpart = rest.rpartition("@")[2]
        if "?" in hostpart:  # RFC 4475 escruri: headers have no place in a Request-URI
            raise SipMessageError("headers in the Request-URI")
        if not hostpart.split(";")[0]:
            raise SipMessageError("malformed Request-URI")
    message.method, message.uri = method.upper(), uri


def _headers(message: SipMessage, lines: list[str]) -> None:
    key = ""
    pieces: list[str] = []
    size = 0
    seen: set[str] = set()
    for raw in lines[1:]:
        line = _strip_cr(raw)
        if line[:1] in (" ", "\t"):  # a folded continuation of the field before
            if not key:
                raise SipMessageError("malformed header line: continuation before any header")
            piece = line.strip(" \t")
            if piece:
                pieces.append(piece)
                size += len(piece) + 1
                if size > MAX_LINE_LENGTH:
                    raise SipMessageError("header line too long")
            continue
        if key:
            message.headers.append((key, " ".join(pieces)))
        if len(line) > MAX_LINE_LENGTH:
            raise SipMessageError("header line too long")
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not is_token(name):
            raise SipMessageError(f"malformed header line: {line[:40]!r}")
        key = name.lower()
        key = COMPACT_FORMS.get(key, key)
        if key in _SINGLE:
            if key in seen:
                raise SipMessageError(f"more than one {canonical(key)} header")
            seen.add(key)
        value = value.strip(" \t")
        pieces = [value] if value else []
        size = len(value)
        if len(message.headers) >= MAX_HEADERS:
            raise SipMessageError("too many header fields")
    if key:
        message.headers.append((key, " ".join(pieces)))


def _check_request(message: SipMessage) -> None:
    for required in ("via", "from", "to", "call-id", "cseq"):
        if not message.get(required):
            raise SipMessageError(f"missing {canonical(required)} header")
    number, method = message.cseq
    if number < 0 or method != message.method or len((message.get("cseq") or "").split()) != 2:
        raise SipMessageError("bad CSeq")
    max_forwards = message.get("max-forwards")
    if max_forwards is not None and ascii_int(max_forwards, MAX_LENGTH_DIGITS) is None:
        raise SipMessageError("bad Max-Forwards")
    vias = message.all("via")
    if not vias:
        raise SipMessageError("missing Via header")
    for via in vias:
        Via.parse(via)
    for name in ("from", "to"):
        try:
            NameAddr.parse(message.get(name) or "")
        except SipMessageError as exc:
            raise SipMessageError(f"malformed {canonical(name)} header ({exc})") from None
    for name in ("contact", "route", "record-route"):
        for value in message.all(name):
            if name == "contact" and value == "*":
                continue
            try:
                NameAddr.parse(value)
            except SipMessageError as exc:
                raise SipMessageError(f"malformed {canonical(name)} header ({exc})") from None


class StreamFramer:
    """Cuts a TCP/TLS byte stream into messages by Content-Length (RFC 3261 18.3).

    Linear in what it is fed however it is cut (byte by byte included): the search for the end of
    a header section resumes where it stopped, and consumed bytes leave the buffer once per feed.
    The buffer never holds more than MAX_MESSAGE_BYTES; a message (or header section) that would
    need more, or a Content-Length that is not a number, raises SipMessageError: the framing is
    lost, so the transport closes the connection (RFC 4475 ncl).

    Between messages, RFC 5626 4.4.1 keep-alives: a double CRLF is a ping, a single CRLF its pong;
    `take_keepalives()` says how many of each came. Each run of CRLFs counts as it comes (a pong is
    never held back waiting for more: pongs come one by one), so a ping cut between its two CRLFs
    (never seen: it is one 4-byte write) would count as two pongs; a CR cut from its LF is kept
    until the LF comes."""

    _CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:", re.I | re.M)
    _KEEPALIVE = re.compile(rb"[\r\n]*")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._start = 0  # where the message being received begins in the buffer
        self._scanned = 0  # the search for CRLFCRLF resumes here
        self._total: int | None = None  # the whole message's length, once its header section is in
        self._pings = 0
        self._pongs = 0

    def take_keepalives(self) -> tuple[int, int]:
        """(pings, pongs) received since the last call."""
        counts = self._pings, self._pongs
        self._pings = self._pongs = 0
        return counts

    def _keepalive(self, start: int, end: int) -> int:
        """The CR/LF run buffer[start:end] between messages: its CRLF pairs, two a ping, one a pong.
        Returns where it ends: a CR at the very end stays (its LF may come next)."""
        if end == len(self._buffer) and self._buffer[end - 1] == 0x0D:
            end -= 1
        pairs = bytes(self._buffer[start:end]).count(b"\r\n")
        self._pings += pairs // 2
        self._pongs += pairs % 2
        return end

    def feed(self, data: bytes) -> list[bytes]:
        messages: list[bytes] = []
        offset = 0
        while True:
            room = MAX_MESSAGE_BYTES - (len(self._buffer) - self._start)
            if offset < len(data) and room > 0:
                chunk = data[offset : offset + room]
                self._buffer += chunk
                offset += len(chunk)
            self._cut(messages)
            if self._start:  # drop what was consumed, once per round
                del self._buffer[: self._start]
                self._scanned -= self._start
                self._start = 0
            if len(self._buffer) >= MAX_MESSAGE_BYTES:
                raise SipMessageError("message or header section larger than 64 KB")
            if offset >= len(data):
                return messages

    def _cut(self, messages: list[bytes]) -> None:
        buffer = self._buffer
        while True:
            if self._total is None:
                if self._scanned <= self._start:  # at a message's beginning: skip keep-alive CRLFs
                    match = self._KEEPALIVE.match(buffer, self._start)
                    if match and match.end() > self._start:
                        self._start = self._scanned = self._keepalive(self._start, match.end())
                end = buffer.find(b"\r\n\r\n", self._scanned)
                if end < 0:
                    self._scanned = max(self._start, len(buffer) - 3)
                    return
                self._total = end + 4 - self._start + self._content_length(self._start, end)
                if self._total > MAX_MESSAGE_BYTES:
                    raise SipMessageError("message too large")
            if len(buffer) - self._start < self._total:
                return
            messages.append(bytes(buffer[self._start : self._start + self._total]))
            self._start += self._total
            self._scanned = self._start
            self._total = None

    def _content_length(self, start: int, end: int) -> int:
        lengths: set[int] = set()
        first = self._buffer.find(b"\r\n", start, end)  # header lines only, never the start line
        for match in self._CONTENT_LENGTH.finditer(self._buffer, end if first < 0 else first + 2, end):
            stop = self._buffer.find(b"\r\n", match.end(), end + 2)  # (the line before CRLFCRLF ends at `end`)
            stop = end if stop < 0 else stop
            text = bytes(self._buffer[match.end() : stop]).strip(b" \t").decode("latin-1")
            value = ascii_int(text, MAX_LENGTH_DIGITS)
            if value is None:
                raise SipMessageError("bad Content-Length")
            lengths.add(value)
        if len(lengths) > 1:
            raise SipMessageError("conflicting Content-Length headers")
        return lengths.pop() if lengths else 0


def _closing_quote(text: str, start: int) -> int:
    """The index of the quote closing the quoted string (RFC 3261 25.1) that opens at `start`, or -1
    when it is not closed or holds a line break. Linear and in C: escaped backslashes, then escaped
    quotes, are blanked (str.replace pairs from the left, as the grammar does), so find() sees only
    a quote that ends the string."""
    rest = text[start + 1 :]
    if "\\" in rest:
        rest = rest.replace("\\\\", "__").replace('\\"', "__")
    end = rest.find('"')
    if end < 0:
        return -1
    inner = rest[:end]
    return -1 if "\r" in inner or "\n" in inner else start + 1 + end


def _unquote(inner: str) -> str:
    """The text of a quoted string's inside: each quoted-pair \\x is x (inner holds no line break,
    so one can stand in for an escaped backslash while the others are dropped)."""
    if "\\" not in inner:
        return inner
    return inner.replace("\\\\", "\n").replace("\\", "").replace("\n", "\\")


def _skip(text: str, pos: int) -> int:
    """The position after the blanks (SP, HTAB) at `pos`."""
    blanks = _WS.match(text, pos)
    return blanks.end() if blanks else pos


def _scan_params(text: str, pos: int) -> list[tuple[str, str | None]]:
    """The `;name[=value]` parameters from `pos` to the end of `text` (blanks around ; and = allowed,
    a value a token, host or quoted string); raises SipMessageError on anything else."""
    params: list[tuple[str, str | None]] = []
    end = len(text)
    while True:
        pos = _skip(text, pos)
        if pos >= end:
            return params
        if text[pos] != ";":
            raise SipMessageError("malformed parameters")
        pos = _skip(text, pos + 1)
        name = _TOKEN.match(text, pos)
        if name is None:
            raise SipMessageError("empty or malformed parameter")
        pos = _skip(text, name.end())
        value: str | None = None
        if pos < end and text[pos] == "=":
            pos = _skip(text, pos + 1)
            if text.startswith('"', pos):
                close = _closing_quote(text, pos)
                if close < 0:
                    raise SipMessageError(f"parameter {name.group()!r} has an unterminated quoted value")
                value, pos = text[pos : close + 1], close + 1
            else:
                found = _PARAM_VALUE.match(text, pos)
                if found is None:
                    raise SipMessageError(f"parameter {name.group()!r} has no value")
                value, pos = found.group(), found.end()
        params.append((name.group(), value))
        if len(params) > MAX_PARAMS:
            raise SipMessageError("too many parameters")


@dataclass(frozen=True)
class Via:
    transport: str
    host: str
    port: int | None
    params: dict[str, str | None]

    @classmethod
    def parse(cls, value: str) -> Via:
        """One via-parm (RFC 3261 20.42): SIP / 2.0 / transport, blanks around the slashes allowed
        (RFC 4475 wsinv), sent-by, then parameters; raises SipMessageError."""
        text = value.strip(" \t")
        fields: list[str] = []
        pos = 0
        for index in range(3):
            if index:
                pos = _skip(text, pos)
                if not text.startswith("/", pos):
                    raise SipMessageError("malformed Via header")
                pos = _skip(text, pos + 1)
            token = _TOKEN.match(text, pos)
            if token is None:
                raise SipMessageError("malformed Via header")
            fields.append(token.group())
            pos = token.end()
        if fields[0].upper() != "SIP" or fields[1] != "2.0":
            raise SipMessageError("malformed Via header")
        blank = _skip(text, pos)
        if blank == pos:
            raise SipMessageError("malformed Via header")
        host, pos = _sent_by_host(text, blank)
        port: int | None = None
        after = _skip(text, pos)
        if text.startswith(":", after):
            digits = _PORT.match(text, _skip(text, after + 1))
            port = ascii_int(digits.group(), 5) if digits else None
            if digits is None or port is None or not 0 < port <= 65535:
                raise SipMessageError("malformed Via port")
            pos = digits.end()
        params: dict[str, str | None] = {}
        for name, param in _scan_params(text, pos):
            params[name.lower()] = param
        return cls(fields[2].upper(), host, port, params)

    def serialize(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items())
        return f"SIP/2.0/{self.transport} {host}{port}{params}"

    @property
    def branch(self) -> str:
        return self.params.get("branch") or ""


def _sent_by_host(text: str, pos: int) -> tuple[str, int]:
    if text.startswith("[", pos):
        close = text.find("]", pos)
        if close < 0 or not _IPV6.fullmatch(text, pos + 1, close):
            raise SipMessageError("malformed Via host")
        return text[pos + 1 : close], close + 1
    host = _HOST.match(text, pos)
    if host is None:
        raise SipMessageError("malformed Via host")
    return host.group(), host.end()


def _host_port(value: str) -> tuple[str, int | None]:
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = value.partition(":")
    if not host:
        raise SipMessageError("missing host")
    number = ascii_int(port, 5)
    return host, (number if number is not None and 0 < number <= 65535 else None)


@dataclass(frozen=True)
class NameAddr:
    display_name: str
    uri: str
    params: str  # ";tag=...;..." after the URI

    @classmethod
    def parse(cls, value: str) -> NameAddr:
        """A name-addr (`"Name" <uri>;params`, `Name <uri>`, `<uri>`) or addr-spec (`uri;params`),
        strictly enough for RFC 4475: an unterminated quote (quotbal), blanks inside <> (badaspec),
        separators in an unquoted name (baddn), an addr-spec with `?` or `,` (regbadct) or a URI
        without scheme are refused with SipMessageError. Linear: no backtracking anywhere."""
        text = value.strip(" \t")
        if not text:
            raise SipMessageError("empty address")
        if text.startswith('"'):
            close = _closing_quote(text, 0)
            if close < 0:
                raise SipMessageError("unterminated quoted display name")
            name = _unquote(text[1:close])
            less = _skip(text, close + 1)
            if not text.startswith("<", less):
                raise SipMessageError("a quoted display name must be followed by <uri>")
        else:
            less = text.find("<")
            if less < 0:  # addr-spec: the URI runs to the first ';', parameters after it
                semi = text.find(";")
                uri = (text if semi < 0 else text[:semi]).rstrip(" \t")
                _check_uri(uri)
                if "?" in uri or "," in uri:
                    raise SipMessageError("a URI with ? or , must be enclosed in <>")
                params = "" if semi < 0 else text[semi:]
                _scan_params(params, 0)
                return cls("", uri, params)
            if not _DISPLAY_TOKENS.fullmatch(text, 0, less):
                raise SipMessageError("display name with separators must be quoted")
            name = text[:less].strip(" \t")
        greater = text.find(">", less + 1)
        if greater < 0:
            raise SipMessageError("unterminated <uri>")
        uri = text[less + 1 : greater]
        _check_uri(uri)
        params = text[greater + 1 :].lstrip(" \t")
        _scan_params(params, 0)
        return cls(name, uri, params)

    def serialize(self) -> str:
        name = ""
        if self.display_name:
            name = '"' + self.display_name.replace("\\", "\\\\").replace('"', '\\"') + '" '
        return f"{name}<{self.uri}>{self.params}"

    def param(self, name: str) -> str | None:
        """A parameter's value ('' for a flag), None when absent or the parameters are malformed."""
        try:
            params = _scan_params(self.params, 0)
        except SipMessageError:
            return None
        name = name.lower()
        return next((value or "" for key, value in params if key.lower() == name), None)

    @property
    def tag(self) -> str:
        return self.param("tag") or ""


def _check_uri(uri: str) -> None:
    scheme, colon, rest = uri.partition(":")
    if not colon or not rest or not _SCHEME.fullmatch(scheme) or not _URI_TEXT.fullmatch(uri):
        raise SipMessageError("malformed URI")


def uri_user(uri: str) -> str:
    """The user part of a sip:/sips:/tel: URI, unescaped; '' when it has none."""
    uri = uri.strip()
    if uri.lower().startswith("tel:"):
        return unquote(uri[4:].split(";")[0])
    scheme, _, rest = uri.partition(":")
    if scheme.lower() not in ("sip", "sips"):
        raise SipMessageError(f"unsupported URI scheme {scheme[:20]!r}", 416)
    userinfo, at, _host = rest.rpartition("@")
    if not at:
        return ""
    return unquote(userinfo.split(":")[0].split(";")[0])


def uri_host_port(uri: str) -> tuple[str, int | None, str | None]:
    """(host, port, transport parameter) of a sip:/sips: URI."""
    _scheme, _, rest = uri.strip().partition(":")
    rest = rest.split("?")[0]
    hostpart = rest.rpartition("@")[2]
    host_port, *params = hostpart.split(";")
    host, port = _host_port(host_port)
    transport = next((p.split("=", 1)[1].lower() for p in params if p.lower().startswith("transport=")), None)
    return host, port, transport


@dataclass(frozen=True)
class Invite:
    user: str
    display_name: str
    from_user: str
    transport: str
    sdp: str | None
    from_uri: str = ""
    # the called party as other headers name it (calls over a trunk route by them): To's user,
    # P-Called-Party-ID's (RFC 3455) and the original called number of a forwarded call (the last
    # Diversion entry, RFC 5806); '' when absent or unreadable
    to_user: str = ""
    called_party: str = ""
    diverted_from: str = ""
    # caller privacy (RFC 3323 / 3325): the Privacy header's values (lower-case: "id", "user",
    # "header", "none") and the network-asserted caller (P-Asserted-Identity's user)
    privacy: tuple[str, ...] = ()
    asserted_user: str = ""


def _first_of(value: str | None) -> str | None:
    """The first entry of a list header value (P-Asserted-Identity may carry a sip: and a tel:)."""
    if not value:
        return None
    try:
        parts = split_list(value)
    except SipMessageError:
        return None
    return parts[0] if parts else None


def _user_of(value: str | None) -> str:
    """The user part of a name-addr header value; '' when there is none or it is malformed."""
    if not value:
        return ""
    try:
        return uri_user(NameAddr.parse(value).uri)
    except SipMessageError:
        return ""


def sdp_body(message: SipMessage) -> str | None:
    """The SDP body of a message, or None when it carries none."""
    if message.content_type != "application/sdp" or not message.body.strip():
        return None
    return message.text()


def parse_invite(message: SipMessage) -> Invite:
    user = uri_user(message.uri)
    caller = NameAddr.parse(message.get("from") or "")
    try:
        from_user = uri_user(caller.uri)
    except SipMessageError:
        from_user = ""
    try:
        diversions = message.all("diversion")
    except SipMessageError:
        diversions = []
    return Invite(
        user=user,
        display_name=caller.display_name,
        from_user=from_user,
        from_uri=caller.uri,
        transport=message.top_via.transport.lower(),
        sdp=sdp_body(message),
        to_user=_user_of(message.get("to")),
        called_party=_user_of(message.get("p-called-party-id")),
        diverted_from=_user_of(diversions[-1]) if diversions else "",
        privacy=tuple(
            token.strip().lower() for value in message.all_raw("privacy")[:4] for token in re.split(r"[;,]", value)[:8] if token.strip()
        ),
        asserted_user=_user_of(_first_of(message.get("p-asserted-identity"))),
    )


MEDIA_CONTROL = "application/media_control+xml"


def picture_fast_update(message: SipMessage) -> bool:
    """Whether a SIP INFO asks for a keyframe (RFC 5168: application/media_control+xml with
    `<picture_fast_update/>`). Read as text, not parsed as XML: the one element is all that counts,
    and no XML parser meets a body from the internet."""
    return message.content_type == MEDIA_CONTROL and "picture_fast_update" in message.text().lower()


def picture_fast_update_body(stream_id: str | None = None) -> str:
    """RFC 5168's request for a full picture, for our INFO toward a room system; with `stream_id`
    (the a=label of the line, RFC 5168's <stream_id>) for one stream, e.g. the slides."""
    stream = f"<stream_id>{stream_id}</stream_id>" if stream_id else ""
    return (
        '<?xml version="1.0" encoding="utf-8" ?>\r\n<media_control><vc_primitive><to_encoder>'
        f"<picture_fast_update/></to_encoder>{stream}</vc_primitive></media_control>\r\n"
    )


_STREAM_ID = re.compile(r"<stream_id>\s*([A-Za-z0-9._~+-]{1,32})\s*</stream_id>")


def fast_update_stream(message: SipMessage) -> str | None:
    """The <stream_id> of a picture_fast_update INFO (the a=label of the stream it asks for), if
    one; None means the main video."""
    found = _STREAM_ID.search(message.text()[:4096])
    return found.group(1) if found else None


def info_digits(message: SipMessage) -> str | None:
    """The digits a SIP INFO carries: `Signal=5` (application/dtmf-relay) or a bare `5`
    (application/dtmf); None when the INFO is not about DTMF or names no valid key."""
    body = message.text().strip()
    if message.content_type == "application/dtmf-relay":
        for line in body.replace("\r\n", "\n").split("\n"):
            key, _, value = line.partition("=")
            if key.strip().lower() == "signal":
                signal = value.strip().upper()
                if signal == "10":  # some phones send * and # as 10 and 11
                    signal = "*"
                elif signal == "11":
                    signal = "#"
                return signal if len(signal) == 1 and signal in DTMF_SIGNALS else None
        return None
    if message.content_type == "application/dtmf":
        return body.upper() if body and all(c in DTMF_SIGNALS for c in body.upper()) else None
    return None
