"""H.323 URLs (RFC 3508, H.323 annex O): `h323:` [alias] [`@` host [`:` port]], the way the
directory names an H.323 room system and a dial-out names its callee.

- `h323:ratssaal@192.0.2.10` (or `:1720`): the room system at that address, asked for the alias;
- `h323:@192.0.2.10`: the address alone (a room system answers whatever alias is asked for);
- `h323:4930123` or `h323:ratssaal`: the alias alone, which only a gatekeeper can resolve.

The alias is percent-decoded (so that a rule written for `+` cannot be passed by `%2B`); digits
(and * # ,) become dialledDigits, anything else an h323-ID (h225.alias_of). Parameters are not
taken: no part of the URL may name anything but whom to call.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import unquote

from gateway.h323.h225 import Alias, alias_of
from gateway.rooms.errors import DialOutRefused
from gateway.rooms.identity import Identity, IdentityKind

DEFAULT_PORT = 1720
MAX_URL = 256
_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)$")


@dataclass(frozen=True)
class Target:
    """Whom a dial-out calls: `url` normalised (what dial-out rules see), the alias to ask for,
    the host and port to connect to (host None: the gatekeeper says where)."""

    url: str
    alias: Alias | None
    host: str | None
    port: int


def read(text: str) -> Target:
    """The target an h323: URL names; DialOutRefused (bad_uri) for anything else."""
    if len(text) > MAX_URL or any(ord(c) < 0x21 or ord(c) == 0x7F or c in '<>"?,;' for c in text):
        raise DialOutRefused("the address has characters an h323: URL to call may not have", "bad_uri")
    scheme, colon, rest = text.partition(":")
    if not colon or scheme.lower() != "h323":
        raise DialOutRefused("not an h323: URL", "bad_uri")
    user, at, hostport = rest.rpartition("@") if "@" in rest else (rest, "", "")
    alias_text = unquote(user)
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c == "@" for c in alias_text):
        raise DialOutRefused("the alias has characters an H.323 alias may not have", "bad_uri")
    host, port = None, DEFAULT_PORT
    if at:
        host, port = _host_port(hostport)
    if not alias_text and host is None:
        raise DialOutRefused("an h323: URL names an alias, a host or both", "bad_uri")
    alias = alias_of(alias_text) if alias_text else None
    shown_host = None if host is None else f"[{host}]" if ":" in host else host
    url = "h323:" + alias_text + (f"@{shown_host}:{port}" if shown_host is not None else "")
    return Target(url, alias, host, port)


def _host_port(text: str) -> tuple[str, int]:
    host, port_text = text, ""
    if text.startswith("["):
        host, _, after = text[1:].partition("]")
        if after and not after.startswith(":"):
            raise DialOutRefused("not a host and port", "bad_uri")
        port_text = after[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    if not host or not _HOST.match(host if not text.startswith("[") else f"[{host}]"):
        raise DialOutRefused("not a host name or address", "bad_uri")
    if text.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise DialOutRefused("not an IPv6 address", "bad_uri") from None
    port = DEFAULT_PORT
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise DialOutRefused("not a port", "bad_uri")
        port = int(port_text)
    return host.lower(), port


def h323_identity(text: str) -> Identity:
    """The identity an h323: URL names (the directory's reader for the h323 scheme); ValueError
    for anything else."""
    try:
        target = read(text)
    except DialOutRefused as exc:
        raise ValueError(str(exc)) from None
    return Identity(IdentityKind.H323_ALIAS, target.alias.value if target.alias else "", target.host, text)
