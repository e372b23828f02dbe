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
    role: str  # s-only: the gateway is the floor control server; c-only: its client
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
        if self.role == "s-only":  # (the ids are the server's to give, RFC 8856 5)
            out += [
                ("confid", str(self.conference_id)),
                ("userid", str(self.user_id)),
                ("floorid", f"{self.floor_id} mstrm:{self.content_label}"),
            ]
        out.append(("bfcpver", str(self.version)))
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
    """The gateway's answer: as floor control server with the ids given, or as client with the
    offer's when the offerer can only be server; None when it must decline the stream (BFCP over
    DTLS, no version in common, a server offer without its ids)."""
    if offer.transport == "dtls":
        return None
    common = _common_versions(offer.transport, offer.versions)
    if not common:
        return None
    setup = None
    if offer.transport in ("tcp", "tls"):
        setup = "active" if offer.setup == "passive" else "passive"
    if offer.roles == frozenset({"s-only"}):
        if offer.conference_id is None or offer.user_id is None:
            return None
        floor = next((f for f, labels in offer.floors.items() if content_label in labels), next(iter(offer.floors), floor_id))
        return BfcpAnswer("c-only", setup, max(common), offer.conference_id, offer.user_id, floor, content_label)
    return BfcpAnswer("s-only", setup, max(common), conference_id, user_id, floor_id, content_label)


def _common_versions(transport: str, offered: tuple[int, ...]) -> list[int]:
    ours = (2,) if transport == "udp" else (1, 2)  # (version 1 is TCP's; UDP needs 2, RFC 8855)
    return [v for v in (offered or ((2,) if transport == "udp" else (1,))) if v in ours]


def offer_attributes(
    conference_id: int, user_id: int, floor_id: int, content_label: str, transport: str = "tcp"
) -> list[tuple[str, str | None]]:
    """Our offer of a BFCP stream (dial-out over TCP; a re-offer keeps the call's transport):
    either role, over TCP either side connects (the existing connection kept), our ids."""
    out: list[tuple[str, str | None]] = [("floorctrl", "c-s")]
    if transport == "tcp":
        out += [("setup", "actpass"), ("connection", "new")]
    out += [
        ("confid", str(conference_id)),
        ("userid", str(user_id)),
        ("floorid", f"{floor_id} mstrm:{content_label}"),
        ("bfcpver", "1 2" if transport == "tcp" else "2"),
    ]
    return out


def read_answer(
    proto: str, attributes: list[tuple[str, str | None]], *, conference_id: int, user_id: int, floor_id: int, content_label: str
) -> BfcpAnswer | None:
    """What the far end answered to `offer_attributes`: the role the gateway takes (s-only: server
    with our ids; c-only: client with the answerer's), who connects (`setup`: ours, the mirror of
    theirs), the version; None when the answer cannot be used (a role that is not one, a server
    answer without its ids, no common version)."""
    try:
        answered = read_offer(proto, attributes)
    except BfcpSdpError:
        return None
    if answered.transport not in ("tcp", "udp") or len(answered.roles) != 1:
        return None
    common = _common_versions(answered.transport, answered.versions)
    if not common:
        return None
    setup = None
    if answered.transport == "tcp":
        setup = "active" if answered.setup == "passive" else "passive"  # (theirs says who connects)
    if answered.roles == frozenset({"c-only"}):
        return BfcpAnswer("s-only", setup, max(common), conference_id, user_id, floor_id, content_label)
    if answered.roles == frozenset({"s-only"}) and answered.conference_id is not None and answered.user_id is not None:
        floor = next((f for f, labels in answered.floors.items() if content_label in labels), next(iter(answered.floors), floor_id))
        return BfcpAnswer("c-only", setup, max(common), answered.conference_id, answered.user_id, floor, content_label)
    return None


def _first(values: dict[str, list[str]], name: str) -> str | None:
    found = values.get(name)
    return found[0] if found else None


def _number(text: str | None, highest: int) -> int | None:
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > 10:
        return None
    value = int(text)
    return value if 0 < value <= highest else None
