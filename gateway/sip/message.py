"""SIP messages, sans-IO (RFC 3261 7, 20, 25): parse and serialize requests and responses, frame
them on stream transports, and read the parts the gateway needs (Via, name-addr and tags, the
alias dialled, the caller's name and number, SDP bodies, the digits of a SIP INFO)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

DTMF_SIGNALS = "0123456789*#ABCD"
MAX_MESSAGE_BYTES = 65_535
COMPACT_FORMS = {
    "f": "from", "t": "to", "i": "call-id", "v": "via", "m": "contact", "c": "content-type",
    "l": "content-length", "k": "supported", "e": "content-encoding", "s": "subject", "x": "session-expires",
}
_CANONICAL = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate", "max-forwards": "Max-Forwards",
    "content-type": "Content-Type", "content-length": "Content-Length", "record-route": "Record-Route",
    "user-agent": "User-Agent", "session-expires": "Session-Expires", "min-se": "Min-SE",
}
_NAME_ADDR = re.compile(r'^\s*(?:"((?:[^"\\]|\\.)*)"|([^<"]*?))\s*<([^>]*)>(.*)$', re.S)
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")


class SipMessageError(ValueError):
    """A message we cannot use; the text is the reason phrase of the 400 answer."""


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

    def all(self, name: str) -> list[str]:
        """Every value of a header, comma-separated lists split (outside quotes and <>)."""
        name = name.lower()
        values: list[str] = []
        for key, value in self.headers:
            if key == name:
                values += split_list(value)
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
        number, _, method = (self.get("cseq") or "").strip().partition(" ")
        return (int(number) if number.isdigit() else -1), method.strip().upper()

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
    parts: list[str] = []
    current: list[str] = []
    depth, quoted, escaped = 0, False, False
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and not quoted and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def parse(data: bytes) -> SipMessage:
    """One whole message (a datagram, or what `StreamFramer` cut); raises SipMessageError."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipMessageError("message too large")
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:
        head, separator, body = data.partition(b"\n\n")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipMessageError("headers are not UTF-8") from None
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[0].strip():  # keep-alive CRLFs before a message
        lines.pop(0)
    if not lines:
        raise SipMessageError("empty message")
    message = SipMessage()
    start = lines[0].strip()
    if start.startswith("SIP/2.0 "):
        _, status, *reason = start.split(" ", 2)
        if not (status.isdigit() and len(status) == 3):
            raise SipMessageError("malformed status line")
        message.status, message.reason = int(status), (reason[0] if reason else "")
    else:
        parts = start.split(" ")
        if len(parts) != 3 or parts[2] != "SIP/2.0" or not _TOKEN.match(parts[0]):
            raise SipMessageError("malformed request line")
        message.method, message.uri = parts[0].upper(), parts[1]
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and message.headers:  # folded header line
            key, value = message.headers[-1]
            message.headers[-1] = (key, value + " " + line.strip())
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise SipMessageError(f"malformed header line: {line[:40]!r}")
        key = name.strip().lower()
        message.headers.append((COMPACT_FORMS.get(key, key), value.strip()))
    length = message.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise SipMessageError("bad Content-Length")
        if int(length) > len(body):
            raise SipMessageError("body shorter than Content-Length")
        body = body[: int(length)]
    message.body = body
    if message.is_request:
        for required in ("via", "from", "to", "call-id", "cseq"):
            if message.get(required) is None:
                raise SipMessageError(f"missing {canonical(required)} header")
        if message.cseq[0] < 0 or message.cseq[1] != message.method:
            raise SipMessageError("bad CSeq")
    return message


class StreamFramer:
    """Cuts a TCP/TLS byte stream into messages by Content-Length (RFC 3261 18.3)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        messages: list[bytes] = []
        while True:
            self._buffer = self._buffer.lstrip(b"\r\n")  # keep-alives (RFC 5626 double CRLF)
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_MESSAGE_BYTES:
                    raise SipMessageError("header section too large")
                return messages
            head = self._buffer[:end].decode("utf-8", "replace")
            match = re.search(r"^(?:content-length|l)[ \t]*:[ \t]*(\d+)", head, re.I | re.M)
            length = int(match.group(1)) if match else 0
            if length > MAX_MESSAGE_BYTES:
                raise SipMessageError("message too large")
            total = end + 4 + length
            if len(self._buffer) < total:
                return messages
            messages.append(self._buffer[:total])
            self._buffer = self._buffer[total:]


@dataclass(frozen=True)
class Via:
    transport: str
    host: str
    port: int | None
    params: dict[str, str | None]

    @classmethod
    def parse(cls, value: str) -> Via:
        protocol, _, rest = value.strip().partition(" ")
        pieces = protocol.split("/")
        if len(pieces) != 3 or pieces[0].upper() != "SIP":
            raise SipMessageError("malformed Via header")
        sent_by, *params = rest.strip().split(";")
        host, port = _host_port(sent_by.strip())
        parsed: dict[str, str | None] = {}
        for param in params:
            key, eq, val = param.strip().partition("=")
            parsed[key.lower()] = val if eq else None
        return cls(pieces[2].upper(), host, port, parsed)

    @property
    def branch(self) -> str:
        return self.params.get("branch") or ""


def _host_port(value: str) -> tuple[str, int | None]:
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = value.partition(":")
    if not host:
        raise SipMessageError("missing host")
    return host, (int(port) if port.isdigit() else None)


@dataclass(frozen=True)
class NameAddr:
    display_name: str
    uri: str
    params: str  # ";tag=...;..." after the URI

    @classmethod
    def parse(cls, value: str) -> NameAddr:
        match = _NAME_ADDR.match(value)
        if match:
            name = match.group(1) if match.group(1) is not None else (match.group(2) or "")
            return cls(name.replace('\\"', '"').strip(), match.group(3).strip(), match.group(4).strip())
        uri, _, params = value.strip().partition(";")
        return cls("", uri.strip(), (";" + params) if params else "")

    @property
    def tag(self) -> str:
        for param in self.params.split(";"):
            key, _, val = param.strip().partition("=")
            if key.lower() == "tag":
                return val
        return ""


def uri_user(uri: str) -> str:
    """The user part of a sip:/sips:/tel: URI, unescaped; '' when it has none."""
    uri = uri.strip()
    if uri.lower().startswith("tel:"):
        return unquote(uri[4:].split(";")[0])
    scheme, _, rest = uri.partition(":")
    if scheme.lower() not in ("sip", "sips"):
        raise SipMessageError(f"unsupported URI scheme {scheme!r}")
    userinfo, at, _host = rest.partition("@")
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
    return Invite(
        user=user,
        display_name=caller.display_name,
        from_user=from_user,
        from_uri=caller.uri,
        transport=message.top_via.transport.lower(),
        sdp=sdp_body(message),
    )


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
