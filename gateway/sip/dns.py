"""Where to send a SIP request for a host (RFC 3263 section 4): an ordered list of targets
(transport, address, port) to try one after another.

An IP address, or a name with a port, is that address (a name: its A, or AAAA, records). Else the
domain's NAPTR records name the transports it offers (SIP+D2U, SIP+D2T, SIPS+D2T; only those we
can use are followed) and their SRV names; without NAPTR, `_sip._udp.<domain>` (and so on per
transport) is asked directly; the SRV records are ordered by RFC 2782 (lowest priority first,
within a priority a random order weighted by `weight`) and each target's addresses follow in that
order. Without SRV records: the domain's own addresses, port 5060 (5061 for TLS). A trunk asks for
its own transport (udp, tcp or tls: SIP+D2U, SIP+D2T or SIPS+D2T, `_sip._udp`, `_sip._tcp`, `_sips._tcp`).

The ordering is pure (`order_srv`, `naptr_choices`, `TargetRound`; a seeded `random.Random`
makes it repeatable); `resolve` walks the chain through a `Lookup`, which `DnsLookup` implements
with dnspython's asyncio resolver (it never blocks the loop). Everything is bounded: 2 s per query
and 5 s per lookup, 10 s for a whole resolution, at most 16 records read from an answer, 4
addresses per name, 16 targets. A name that does not resolve, a server that does not answer, is
a `Resolution` with no targets and an `error` saying why, never an exception; a server that does
not answer ends the chain there (each further question would wait as long). A server that
refuses or fails one question does not: the next step is tried.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from gateway.config import SipConfig

# NAPTR service -> our transport name (RFC 3263 4.1); SRV prefix and default port per transport
NAPTR_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}
SRV_PREFIX = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}
DEFAULT_PORT = {"udp": 5060, "tcp": 5060, "tls": 5061}

QUERY_TIMEOUT_S = 2.0  # one query to one server
LOOKUP_LIFETIME_S = 5.0  # one lookup, retries and servers included
RESOLUTION_S = 10.0  # the whole chain
MAX_RECORDS = 16  # read from one answer
MAX_ADDRESSES = 4  # per name
MAX_TARGETS = 16

_LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")
_RNG = random.Random()


class DnsError(Exception):
    """A lookup that failed (timeout, server failure, no server), as opposed to one that found no
    such records. `timeout`: no answer at all (then the next question would wait as long: the
    chain ends there)."""

    def __init__(self, reason: str, timeout: bool = False) -> None:
        super().__init__(reason)
        self.timeout = timeout


@dataclass(frozen=True)
class Target:
    """One place to send to."""

    transport: str  # udp, tcp, tls
    address: str  # an IP address
    port: int
    name: str  # the name it was found under (the SRV target, or the host itself)

    @property
    def peer_address(self) -> tuple[str, int]:
        return self.address, self.port

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str  # "." : the service is decidedly not offered (RFC 2782)


@dataclass(frozen=True)
class Naptr:
    order: int
    preference: int
    flags: str
    service: str
    regexp: str
    replacement: str


@dataclass(frozen=True)
class Resolution:
    targets: tuple[Target, ...]
    error: str = ""  # why there are none


class Lookup(Protocol):
    """The three questions RFC 3263 asks. Each returns [] when there are no such records (NXDOMAIN,
    no answer) and raises DnsError when it could not find out."""

    async def naptr(self, name: str) -> list[Naptr]: ...

    async def srv(self, name: str) -> list[Srv]: ...

    async def addresses(self, name: str) -> list[str]: ...


# -- the pure part ----------------------------------------------------------------------------------


def valid_name(name: str) -> bool:
    """A DNS name we are willing to look up: ASCII letters, digits, '-' and '_' in labels of 1..63,
    253 characters in all (a trailing dot allowed)."""
    name = name[:-1] if name.endswith(".") else name
    if not name or len(name) > 253 or not name.isascii():
        return False
    return all(_LABEL.match(label) for label in name.split("."))


def ip_literal(host: str) -> str | None:
    """The address when `host` is one (brackets around IPv6 allowed), else None."""
    try:
        return str(ipaddress.ip_address(host[1:-1] if host.startswith("[") and host.endswith("]") else host))
    except ValueError:
        return None


def order_srv(records: Sequence[Srv], rng: random.Random) -> list[Srv]:
    """RFC 2782's order: by priority, lowest first; within a priority, repeatedly a random pick
    weighted by `weight` (the zero-weight ones placed first, so they are picked only rarely)."""
    ordered: list[Srv] = []
    for priority in sorted({r.priority for r in records}):
        group = sorted((r for r in records if r.priority == priority), key=lambda r: r.weight != 0)
        while group:
            pick = rng.randint(0, sum(r.weight for r in group))
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running >= pick:
                    ordered.append(group.pop(index))
                    break
    return ordered


def naptr_choices(records: Sequence[Naptr], transports: Sequence[str]) -> list[tuple[str, str]]:
    """(transport, SRV name) of the NAPTR records we can follow, best first (order, then preference):
    terminal "S" records for a SIP service over one of `transports`, with a valid replacement."""
    usable = []
    for record in records:
        transport = NAPTR_SERVICES.get(record.service.upper())
        replacement = record.replacement.rstrip(".")
        if transport is None or transport not in transports or record.flags.lower() != "s" or record.regexp or not valid_name(replacement):
            continue
        usable.append((record.order, record.preference, transport, replacement.lower()))
    usable.sort(key=lambda r: (r[0], r[1]))
    return [(transport, name) for _, _, transport, name in usable]


class TargetRound:
    """One pass over a resolution's targets (RFC 3263 4.3): the one in use, and after a failure (no
    answer, 503) the next one not tried yet. `prefer` (the target in use: a refresh stays where it
    is) goes first, `avoid` (one that just went silent) last; both only when they are among them."""

    def __init__(
        self, targets: Sequence[Target], prefer: tuple[str, int] | None = None, avoid: tuple[str, int] | None = None
    ) -> None:
        if not targets:
            raise ValueError("a round needs a target")
        ordered = list(targets)
        if avoid is not None:
            ordered.sort(key=lambda t: t.peer_address == avoid)  # (stable: the others keep their order)
        if prefer is not None:
            ordered.sort(key=lambda t: t.peer_address != prefer)
        self.targets = tuple(ordered)
        self.current = self.targets[0]
        self.tried: set[tuple[str, int]] = set()  # failed in this round

    def alternatives(self, address: tuple[str, int]) -> int:
        """Targets still to try when the one at `address` fails."""
        return sum(1 for t in self.targets if t.peer_address != address and t.peer_address not in self.tried)

    def failed(self, address: tuple[str, int]) -> Target | None:
        """The target at `address` failed: the next one to use (now `current`), None when every one did."""
        self.tried.add(address)
        for target in self.targets:
            if target.peer_address not in self.tried:
                self.current = target
                return target
        return None


# -- the chain ---------------------------------------------------------------------------------------


async def resolve(
    host: str,
    port: int | None,
    lookup: Lookup,
    *,
    transports: Sequence[str] = ("udp",),
    rng: random.Random | None = None,
) -> Resolution:
    """The targets for `host` (with `port` when the URI names one), over the first of `transports`
    the domain offers. Never raises (but CancelledError)."""
    if not transports or any(t not in SRV_PREFIX for t in transports):
        return Resolution((), f"unknown transports {list(transports)}")
    try:
        async with asyncio.timeout(RESOLUTION_S):
            return await _resolve(host, port, lookup, transports, rng or _RNG)
    except TimeoutError:
        return Resolution((), f"{host}: DNS resolution took longer than {RESOLUTION_S:g} s")


async def _resolve(host: str, port: int | None, lookup: Lookup, transports: Sequence[str], rng: random.Random) -> Resolution:
    transport = transports[0]
    literal = ip_literal(host)
    if literal is not None:
        return Resolution((Target(transport, literal, port or DEFAULT_PORT[transport], literal),))
    name = host.rstrip(".").lower()
    if not valid_name(name):
        return Resolution((), f"not a host name: {host[:80]!r}")
    if port is not None or name == "localhost" or name.endswith(".localhost"):
        # RFC 3263 4.2: a port given means no SRV (and localhost is never asked of DNS: RFC 6761)
        return await _addresses_of(name, port or DEFAULT_PORT[transport], transport, lookup)
    errors: list[str] = []
    try:
        choices = naptr_choices((await lookup.naptr(name))[:MAX_RECORDS], transports)
    except DnsError as exc:
        if exc.timeout:
            return Resolution((), f"NAPTR {name}: {exc}")
        errors.append(f"NAPTR {name}: {exc}")
        choices = []
    if not choices:  # no NAPTR (or none we can use): SRV per transport, ours in our order
        choices = [(t, f"{SRV_PREFIX[t]}.{name}") for t in transports]
    for transport_of, srv_name in choices:
        try:
            records = (await lookup.srv(srv_name))[:MAX_RECORDS]
        except DnsError as exc:
            if exc.timeout:
                return Resolution((), "; ".join([*errors, f"SRV {srv_name}: {exc}"]))
            errors.append(f"SRV {srv_name}: {exc}")
            continue
        if not records:
            continue
        offered = [r for r in records if r.target.rstrip(".") and valid_name(r.target) and 0 < r.port <= 65535]
        if not offered:
            return Resolution((), f"{srv_name}: the domain offers no SIP service there (SRV target '.')")
        return await _srv_targets(srv_name, order_srv(offered, rng), transport_of, lookup)
    resolution = await _addresses_of(name, DEFAULT_PORT[transport], transport, lookup)
    if not resolution.targets and errors:
        return Resolution((), "; ".join([*errors, resolution.error]))
    return resolution


async def _addresses_of(name: str, port: int, transport: str, lookup: Lookup) -> Resolution:
    try:
        addresses = await lookup.addresses(name)
    except DnsError as exc:
        return Resolution((), f"{name}: {exc}")
    targets = _targets(name, addresses, port, transport)
    return Resolution(targets) if targets else Resolution((), f"{name}: no address")


async def _srv_targets(srv_name: str, ordered: list[Srv], transport: str, lookup: Lookup) -> Resolution:
    names = list(dict.fromkeys(r.target.rstrip(".").lower() for r in ordered))

    async def addresses(name: str) -> list[str] | DnsError:
        literal = ip_literal(name)  # (not per the RFC, but seen in the wild)
        if literal is not None:
            return [literal]
        try:
            return await lookup.addresses(name)
        except DnsError as exc:
            return exc

    found = dict(zip(names, await asyncio.gather(*(addresses(n) for n in names)), strict=True))
    targets: list[Target] = []
    for record in ordered:
        name = record.target.rstrip(".").lower()
        result = found[name]
        if not isinstance(result, DnsError):
            targets.extend(_targets(name, result, record.port, transport))
    first: dict[tuple[str, int], Target] = {}
    for target in targets:  # (an address under two records: once, where it came first)
        first.setdefault(target.peer_address, target)
    unique = tuple(first.values())
    if unique:
        return Resolution(unique[:MAX_TARGETS])
    failed = [f"{n}: {r}" for n, r in found.items() if isinstance(r, DnsError)]
    return Resolution((), f"{srv_name}: no address for its targets" + (f" ({'; '.join(failed)})" if failed else ""))


def _targets(name: str, addresses: Sequence[str], port: int, transport: str) -> tuple[Target, ...]:
    valid = [a for a in (ip_literal(a) for a in addresses[:MAX_ADDRESSES]) if a is not None]
    return tuple(Target(transport, address, port, name) for address in dict.fromkeys(valid))


# -- the lookups ------------------------------------------------------------------------------------


class DnsLookup:
    """`Lookup` with dnspython's asyncio resolver: the given servers, or the system's
    (/etc/resolv.conf). Addresses: A records (AAAA when `ipv6`); without servers of our own they come
    from the system's resolver instead (getaddrinfo, in the loop's thread pool), which reads /etc/hosts
    as every other program on the machine does."""

    def __init__(self, servers: Sequence[tuple[str, int]] = (), ipv6: bool = False) -> None:
        self.ipv6 = ipv6
        self._system_addresses = not servers
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._broken = ""
        try:
            self._resolver = dns.asyncresolver.Resolver(configure=not servers)
        except dns.exception.DNSException as exc:  # (no /etc/resolv.conf, or nothing in it)
            self._broken = f"no DNS configuration ({exc})"
            return
        if servers:
            self._resolver.nameservers = [dns.nameserver.Do53Nameserver(address, port) for address, port in servers]
        self._resolver.timeout = QUERY_TIMEOUT_S
        self._resolver.lifetime = LOOKUP_LIFETIME_S

    async def _query(self, name: str, rdtype: dns.rdatatype.RdataType) -> list[object]:
        if self._resolver is None:
            raise DnsError(self._broken)
        try:
            answer = await self._resolver.resolve(name + ".", rdtype, raise_on_no_answer=False, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.resolver.LifetimeTimeout:
            raise DnsError(f"no answer within {LOOKUP_LIFETIME_S:g} s", timeout=True) from None
        except dns.resolver.NoNameservers:
            raise DnsError("the DNS servers refused or failed the query") from None
        except dns.exception.DNSException as exc:
            raise DnsError(str(exc)[:200] or type(exc).__name__) from None
        return list(answer.rrset or ())[:MAX_RECORDS]

    async def naptr(self, name: str) -> list[Naptr]:
        records = []
        for record in await self._query(name, dns.rdatatype.NAPTR):
            records.append(
                Naptr(
                    record.order,  # type: ignore[attr-defined]
                    record.preference,  # type: ignore[attr-defined]
                    record.flags.decode("ascii", "replace"),  # type: ignore[attr-defined]
                    record.service.decode("ascii", "replace"),  # type: ignore[attr-defined]
                    record.regexp.decode("ascii", "replace"),  # type: ignore[attr-defined]
                    record.replacement.to_text(),  # type: ignore[attr-defined]
                )
            )
        return records

    async def srv(self, name: str) -> list[Srv]:
        return [
            Srv(r.priority, r.weight, r.port, r.target.to_text())  # type: ignore[attr-defined]
            for r in await self._query(name, dns.rdatatype.SRV)
        ]

    async def addresses(self, name: str) -> list[str]:
        if self._system_addresses:
            return await self._system(name)
        rdtype = dns.rdatatype.AAAA if self.ipv6 else dns.rdatatype.A
        return [r.address for r in await self._query(name, rdtype)]  # type: ignore[attr-defined]

    async def _system(self, name: str) -> list[str]:
        family = socket.AF_INET6 if self.ipv6 else socket.AF_INET
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(LOOKUP_LIFETIME_S):
                infos = await loop.getaddrinfo(name, None, family=family, type=socket.SOCK_DGRAM)
        except TimeoutError:
            raise DnsError(f"no answer within {LOOKUP_LIFETIME_S:g} s", timeout=True) from None
        except socket.gaierror as exc:
            if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
                return []
            raise DnsError(exc.strerror or str(exc)) from None
        except (OSError, UnicodeError) as exc:
            raise DnsError(str(exc)[:200]) from None
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


class SipResolver:
    """RFC 3263 for the SIP stack as configured: `sip.dns_servers` (none: the system's), addresses of
    the family SIP listens on (an IPv4 socket cannot send to an IPv6 address, nor the reverse)."""

    def __init__(self, config: SipConfig, rng: random.Random | None = None) -> None:
        literal = ip_literal(config.host)
        ipv6 = literal is not None and ipaddress.ip_address(literal).version == 6
        self.lookup: Lookup = DnsLookup(config.dns_server_addresses, ipv6=ipv6)
        self._rng = rng

    async def resolve(self, host: str, port: int | None, transports: Sequence[str] = ("udp",)) -> Resolution:
        return await resolve(host, port, self.lookup, transports=transports, rng=self._rng)
