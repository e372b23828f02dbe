"""BFCP in SDP (RFC 8856, which obsoletes RFC 4583): reading a room system's offered BFCP stream and
writing the gateway's answer, on plain values (the m-line's proto and its attributes), so this
stays free of the SIP package that will call it.

An offer says how BFCP runs (`TCP/BFCP`, `TCP/TLS/BFCP`, `UDP/BFCP`), which roles the offerer can
take (`a=floorctrl:c-only s-only c-s`), over TCP who connects (`a=setup`, RFC 4145) and the BFCP
versions it speaks (`a=bfcpver`). The floor control server gives `a=confid`, `a=userid` and, per
floor, `a=floorid:<id> mstrm:<label>` naming the `a=label` of the content line it governs.

The gateway answers as floor control server (`s-only`) whenever the offerer can be a client; an
offer that insists on being server (s-only: an MCU) is declined until the gateway can be a client.
Over TCP the gateway listens (`setup:passive`) unless the offer only listens itself (`passive`: we
connect, `active`).
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOS = {"TCP/BFCP": "tcp", "TCP/TLS/BFCP": "tls", "UDP/BFCP": "udp", "UDP/TLS/BFCP": "dtls"}
ROLES = ("c-only", "s-only", "c-s")
MAX_FLOORS = 8


class BfcpSdpError(ValueError):
    """An offered BFCP stream that cannot be read (the call layer declines the m-line)."""


@dataclass(frozen=True)
class BfcpOffer:
    transport: str  # tcp, tls, udp, dtls
    roles: frozenset[str]  # what the offerer can be: c-only, s-only, c-s
    setup: str | None  # TCP: active, passive, actpass, holdconn (None: not given, RFC 4145 says active)
    versions: tuple[int, ...]  # a=bfcpver (RFC 8856; none given: version 1 over TCP, 2 over UDP)
    conference_id: int | None  # given when the offerer is the server
    user_id: int | None
    floors: dict[int, tuple[str, ...]]  # floor id -> labels of the media streams it governs


@dataclass(frozen=True)
class BfcpAnswer:
    role: str  # s-only: the gateway is the floor control server
    setup: str | None  # TCP: passive (we listen) or active (we connect)
    version: int
    conference_id: int
    user_id: int
    floor_id: int
    content_label: str  # the a=label of our content line, which the floor governs

    def attributes(self) -> list[tuple[str, str | None]]:
        """The answer's a= lines, in RFC 8856's terms."""
        out: list[tuple[str, str | None]] = [("floorctrl", self.role)]
        if self.setup is not None:
            out += [("setup", self.setup), ("connection", "new")]
        out += [
            ("confid", str(self.conference_id)),
            ("userid", str(self.user_id)),
            ("floorid", f"{self.floor_id} mstrm:{self.content_label}"),
            ("bfcpver", str(self.version)),
        ]
        return out


def read_offer(proto: str, attributes: list[tuple[str, str | None]]) -> BfcpOffer:
    """The offered BFCP stream; BfcpSdpError for one we cannot read or use at all."""
    transport = PROTOS.get(proto.upper())
    if transport is None:
        raise BfcpSdpError(f"unknown BFCP transport {proto[:30]!r}")
    values: dict[str, list[str]] = {}
    for name, value in attributes:
        values.setdefault(name.lower(), []).append((value or "").strip())
    roles = frozenset(role for value in values.get("floorctrl", []) for role in value.split() if role in ROLES)
    if not roles:
        roles = frozenset({"c-only"})  # (RFC 8856 7: no floorctrl: the offerer is a client)
    setup = _first(values, "setup")
    if setup is not None and setup not in ("active", "passive", "actpass", "holdconn"):
        raise BfcpSdpError(f"a=setup:{setup[:20]}")
    versions = tuple(
        int(v) for value in values.get("bfcpver", []) for v in value.split() if v.isascii() and v.isdigit() and len(v) < 3
    )
    floors: dict[int, tuple[str, ...]] = {}
    for value in values.get("floorid", [])[:MAX_FLOORS]:
        head, *streams = value.split()
        labels = tuple(s.partition(":")[2] for s in streams if s.lower().startswith(("mstrm:", "m-stream:")))
        if head.isascii() and head.isdigit() and 0 < int(head) < 65536:
            floors[int(head)] = labels
    return BfcpOffer(
        transport=transport,
        roles=roles,
        setup=setup,
        versions=versions,
        conference_id=_number(_first(values, "confid"), 2**32 - 1),
        user_id=_number(_first(values, "userid"), 65535),
        floors=floors,
    )


def answer(offer: BfcpOffer, *, conference_id: int, user_id: int, floor_id: int, content_label: str) -> BfcpAnswer | None:
    """The gateway's answer as floor control server; None when it must decline the stream (the
    offerer can only be server, BFCP over DTLS, or no version in common)."""
    if offer.roles == frozenset({"s-only"}) or offer.transport == "dtls":
        return None
    ours = (2,) if offer.transport == "udp" else (1, 2)  # (version 1 is TCP's; UDP needs 2, RFC 8855)
    common = [v for v in (offer.versions or ((2,) if offer.transport == "udp" else (1,))) if v in ours]
    if not common:
        return None
    setup = None
    if offer.transport in ("tcp", "tls"):
        setup = "active" if offer.setup == "passive" else "passive"
    return BfcpAnswer("s-only", setup, max(common), conference_id, user_id, floor_id, content_label)


def _first(values: dict[str, list[str]], name: str) -> str | None:
    found = values.get(name)
    return found[0] if found else None


def _number(text: str | None, highest: int) -> int | None:
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > 10:
        return None
    value = int(text)
    return value if 0 < value <= highest else None
