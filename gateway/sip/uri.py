"""Reads SIP (and tel:) URIs: into the directory's typed identities (gateway.rooms.identity), and a
dial-out destination checked and normalised before any dial-out rule sees it."""

from __future__ import annotations

from gateway.rooms.errors import DialOutRefused
from gateway.rooms.identity import Identity, IdentityKind
from gateway.sip import message

SCHEMES = ("sip", "sips", "tel")


def user_host(uri: str) -> tuple[str, str]:
    """(user, host) of a SIP URI: no scheme, port, parameters or headers; IPv6 brackets removed.
    Lenient: it never raises (a From header is whatever the caller wrote)."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    rest = rest.split(";", 1)[0].split("?", 1)[0]
    user, _, host = rest.rpartition("@")
    return user, (host[1:].split("]", 1)[0] if host.startswith("[") else host.split(":", 1)[0])


def sip_identity(uri: str) -> Identity:
    """The identity a sip:/sips: URI names (a tel: URI names an E.164 number, dialled through a
    trunk); ValueError for any other scheme."""
    scheme = uri.partition(":")[0].strip().lower()
    if scheme == "tel":
        number = uri.strip()[4:].split(";", 1)[0]
        return Identity(IdentityKind.E164, number, None, uri)
    if scheme not in ("sip", "sips"):
        raise ValueError(f"not a SIP URI: {uri[:40]!r}")
    user, host = user_host(uri)
    return Identity(IdentityKind.SIP_URI, user, host, uri)


def dial_target(uri: str) -> tuple[str, str, int | None, str]:
    """A dial-out URI checked and normalised before any rule sees it: no control characters, spaces
    or header parts, a sip: URI over UDP, scheme and host lower-case, the user part percent-decoded
    (so that `%2B` cannot sneak past a rule written for `+`). Returns (uri, host, port, user)."""
    if len(uri) > 256 or any(ord(c) < 0x21 or ord(c) == 0x7F or c in '<>"?,' for c in uri):
        raise DialOutRefused("the address has characters a SIP URI to call may not have", "bad_uri")
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() != "sip":
        raise DialOutRefused("dial-out takes sip: URIs", "bad_uri")
    try:
        host, port, transport = message.uri_host_port(uri)
        user = message.uri_user(uri)
    except message.SipMessageError as exc:
        raise DialOutRefused(f"not a SIP URI: {exc}", "bad_uri") from None
    if transport not in (None, "udp"):
        raise DialOutRefused("dial-out goes over UDP for now", "bad_uri")
    if any(ord(c) < 0x21 or ord(c) == 0x7F or c in '<>"?,@:;' for c in user) or not host or "@" not in rest:
        raise DialOutRefused("the address has characters a SIP URI to call may not have", "bad_uri")
    params = rest.partition(";")[2]
    if params and any(p.split("=")[0].lower() not in ("transport", "user") for p in params.split(";")):
        raise DialOutRefused("only the transport and user parameters may follow the address", "bad_uri")
    shown_host = f"[{host}]" if ":" in host else host.lower()
    normal = f"sip:{user}@{shown_host}" + (f":{port}" if port else "") + (f";{params.lower()}" if params else "")
    return normal, host.lower(), port, user
