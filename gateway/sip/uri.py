"""Reads SIP (and tel:) URIs into the directory's typed identities (gateway.rooms.identity)."""

from __future__ import annotations

from gateway.rooms.identity import Identity, IdentityKind

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
