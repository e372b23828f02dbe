"""What the gateway reads from raw SIP messages that pjsua2 does not hand over parsed, sans-IO:
the request URI's user (the alias dialled), the caller's name and number, the SDP body, and the
digits of a SIP INFO (application/dtmf-relay and application/dtmf)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

DTMF_SIGNALS = "0123456789*#ABCD"
_COMPACT = {"f": "from", "c": "content-type", "l": "content-length", "v": "via", "t": "to", "i": "call-id"}
_NAME_ADDR = re.compile(r'^\s*(?:"((?:[^"\\]|\\.)*)"|([^<"]*?))\s*<([^>]*)>')


class SipMessageError(ValueError):
    """A message we cannot use; the text is the reason phrase of the 400 answer."""


@dataclass(frozen=True)
class Invite:
    user: str
    display_name: str
    from_user: str
    transport: str
    sdp: str | None


@dataclass(frozen=True)
class _Message:
    start_line: str
    headers: dict[str, list[str]]
    body: str

    def header(self, name: str) -> str | None:
        values = self.headers.get(name)
        return values[0] if values else None


def _split(text: str) -> _Message:
    head, separator, body = text.partition("\r\n\r\n")
    if not separator:
        head, separator, body = text.partition("\n\n")
    lines = head.replace("\r\n", "\n").split("\n")
    headers: dict[str, list[str]] = {}
    last: str | None = None
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and last is not None:  # folded header line
            headers[last][-1] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        if not colon:
            continue
        key = name.strip().lower()
        key = _COMPACT.get(key, key)
        headers.setdefault(key, []).append(value.strip())
        last = key
    return _Message(lines[0].strip(), headers, body)


def _uri_user(uri: str) -> str:
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


def _name_addr(value: str) -> tuple[str, str]:
    """(display name, URI) of a From/To header value."""
    match = _NAME_ADDR.match(value)
    if match:
        name = match.group(1) if match.group(1) is not None else (match.group(2) or "")
        return name.replace('\\"', '"').strip(), match.group(3)
    return "", value.split(";")[0].strip()


def sdp_body(text: str) -> str | None:
    """The SDP body of a message, or None when it carries none."""
    msg = _split(text)
    content_type = (msg.header("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/sdp" or not msg.body.strip():
        return None
    return msg.body


def parse_invite(text: str) -> Invite:
    msg = _split(text)
    parts = msg.start_line.split()
    if len(parts) != 3 or parts[0] != "INVITE" or not parts[2].startswith("SIP/"):
        raise SipMessageError("malformed request line")
    user = _uri_user(parts[1])
    from_value = msg.header("from")
    if from_value is None:
        raise SipMessageError("missing From header")
    display, from_uri = _name_addr(from_value)
    try:
        from_user = _uri_user(from_uri)
    except SipMessageError:
        from_user = ""
    via = msg.header("via") or ""
    transport = via.split()[0].rsplit("/", 1)[-1].lower() if via.split() else "udp"
    return Invite(user=user, display_name=display, from_user=from_user, transport=transport, sdp=sdp_body(text))


def info_digits(text: str) -> str | None:
    """The digits a SIP INFO carries: `Signal=5` (application/dtmf-relay) or a bare `5`
    (application/dtmf); None when the INFO is not about DTMF or names no valid key."""
    msg = _split(text)
    content_type = (msg.header("content-type") or "").split(";")[0].strip().lower()
    body = msg.body.strip()
    if content_type == "application/dtmf-relay":
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
    if content_type == "application/dtmf":
        return body.upper() if body and all(c in DTMF_SIGNALS for c in body.upper()) else None
    return None
