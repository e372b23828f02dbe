"""RFC 3263 resolution (sip/dns.py) against a DNS made of dictionaries: IP literals, explicit ports,
the NAPTR -> SRV -> A chain, RFC 2782's order by priority and weight (a seeded random), failures
that come back as errors, never exceptions, the size limits, and the failover round."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from gateway.sip import dns as sipdns
from gateway.sip.dns import (
    DnsError,
    Naptr,
    Resolution,
    Srv,
    Target,
    TargetRound,
    naptr_choices,
    order_srv,
    resolve,
    valid_name,
)


class FakeDns:
    """`Lookup` from dictionaries; a value that is a DnsError is raised; every question is noted."""

    def __init__(
        self,
        naptr: dict[str, list[Naptr] | DnsError] | None = None,
        srv: dict[str, list[Srv] | DnsError] | None = None,
        a: dict[str, list[str] | DnsError] | None = None,
        delay_s: float = 0.0,
    ) -> None:
        self._naptr = naptr or {}
        self._srv = srv or {}
        self._a = a or {}
        self.delay_s = delay_s
        self.asked: list[tuple[str, str]] = []

    async def _answer(self, kind: str, table: dict[str, list[object] | DnsError], name: str) -> list[object]:  # type: ignore[type-arg]
        self.asked.append((kind, name))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        found = table.get(name, [])
        if isinstance(found, DnsError):
            raise found
        return list(found)

    async def naptr(self, name: str) -> list[Naptr]:
        return await self._answer("NAPTR", self._naptr, name)  # type: ignore[arg-type, return-value]

    async def srv(self, name: str) -> list[Srv]:
        return await self._answer("SRV", self._srv, name)  # type: ignore[arg-type, return-value]

    async def addresses(self, name: str) -> list[str]:
        return await self._answer("A", self._a, name)  # type: ignore[arg-type, return-value]


def shown(resolution: Resolution) -> list[str]:
    return [str(t) for t in resolution.targets]


TRUNK_SRV = {
    "_sip._udp.trunk.example": [
        Srv(20, 0, 5062, "backup.trunk.example."),
        Srv(10, 50, 5060, "primary.trunk.example."),
    ]
}
TRUNK_A = {"primary.trunk.example": ["192.0.2.2"], "backup.trunk.example": ["192.0.2.3"]}


# -- literals and explicit ports -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [("192.0.2.7", None, "192.0.2.7:5060"), ("192.0.2.7", 5070, "192.0.2.7:5070"), ("[2001:db8::1]", None, "[2001:db8::1]:5060"), ("2001:db8::1", 5080, "[2001:db8::1]:5080")],
)
async def test_an_ip_address_is_itself_without_any_lookup(host: str, port: int | None, expected: str) -> None:
    lookup = FakeDns()
    resolution = await resolve(host, port, lookup)
    assert shown(resolution) == [expected] and lookup.asked == []


async def test_a_name_with_a_port_is_only_its_addresses_no_naptr_or_srv() -> None:
    lookup = FakeDns(srv=TRUNK_SRV, a={"trunk.example": ["192.0.2.9", "192.0.2.10"]})
    resolution = await resolve("trunk.example", 5070, lookup)
    assert shown(resolution) == ["192.0.2.9:5070", "192.0.2.10:5070"]
    assert lookup.asked == [("A", "trunk.example")]


async def test_localhost_is_never_asked_of_naptr_or_srv() -> None:
    lookup = FakeDns(a={"localhost": ["127.0.0.1"]})
    assert shown(await resolve("localhost", None, lookup)) == ["127.0.0.1:5060"]
    assert lookup.asked == [("A", "localhost")]


# -- the chain -------------------------------------------------------------------------------------


async def test_naptr_then_srv_then_addresses_only_transports_we_can_use() -> None:
    lookup = FakeDns(
        naptr={
            "trunk.example": [
                Naptr(10, 10, "S", "SIPS+D2T", "", "_sips._tcp.trunk.example."),  # TLS first: not what a udp trunk asks for
                Naptr(20, 10, "S", "SIP+D2U", "", "_sip._udp.alt.trunk.example."),
                Naptr(20, 5, "A", "SIP+D2U", "", "direct.trunk.example."),  # (flags A: not followed)
            ]
        },
        srv={"_sip._udp.alt.trunk.example": TRUNK_SRV["_sip._udp.trunk.example"]},
        a=TRUNK_A,
    )
    resolution = await resolve("Trunk.Example.", None, lookup, rng=random.Random(1))
    assert shown(resolution) == ["192.0.2.2:5060", "192.0.2.3:5062"] and resolution.error == ""
    assert resolution.targets[0] == Target("udp", "192.0.2.2", 5060, "primary.trunk.example")
    assert lookup.asked[:2] == [("NAPTR", "trunk.example"), ("SRV", "_sip._udp.alt.trunk.example")]
    assert sorted(lookup.asked[2:]) == [("A", "backup.trunk.example"), ("A", "primary.trunk.example")]


async def test_without_naptr_the_srv_name_is_asked_directly() -> None:
    lookup = FakeDns(srv=TRUNK_SRV, a=TRUNK_A)
    assert shown(await resolve("trunk.example", None, lookup)) == ["192.0.2.2:5060", "192.0.2.3:5062"]
    assert lookup.asked[:2] == [("NAPTR", "trunk.example"), ("SRV", "_sip._udp.trunk.example")]


async def test_naptr_for_other_transports_only_falls_back_to_our_srv() -> None:
    lookup = FakeDns(naptr={"trunk.example": [Naptr(10, 10, "S", "SIP+D2T", "", "_sip._tcp.trunk.example.")]}, srv=TRUNK_SRV, a=TRUNK_A)
    assert shown(await resolve("trunk.example", None, lookup)) == ["192.0.2.2:5060", "192.0.2.3:5062"]
    assert ("SRV", "_sip._tcp.trunk.example") not in lookup.asked


async def test_without_srv_the_domains_addresses_on_5060() -> None:
    lookup = FakeDns(a={"pbx.example": ["192.0.2.20"]})
    assert shown(await resolve("pbx.example", None, lookup)) == ["192.0.2.20:5060"]
    assert [kind for kind, _ in lookup.asked] == ["NAPTR", "SRV", "A"]


async def test_a_target_without_addresses_is_skipped_the_others_kept() -> None:
    lookup = FakeDns(srv=TRUNK_SRV, a={"backup.trunk.example": ["192.0.2.3"], "primary.trunk.example": DnsError("timed out")})
    assert shown(await resolve("trunk.example", None, lookup)) == ["192.0.2.3:5062"]


async def test_a_naptr_failure_still_tries_srv() -> None:
    lookup = FakeDns(naptr={"trunk.example": DnsError("the DNS servers refused or failed the query")}, srv=TRUNK_SRV, a=TRUNK_A)
    assert shown(await resolve("trunk.example", None, lookup)) == ["192.0.2.2:5060", "192.0.2.3:5062"]


# -- failures --------------------------------------------------------------------------------------


async def test_a_name_that_does_not_exist_is_an_error_not_an_exception() -> None:
    resolution = await resolve("nowhere.example", None, FakeDns())
    assert resolution.targets == () and resolution.error == "nowhere.example: no address"


async def test_failing_servers_are_named_in_the_error() -> None:
    failing = DnsError("the DNS servers refused or failed the query")
    lookup = FakeDns(naptr={"x.example": failing}, srv={"_sip._udp.x.example": failing}, a={"x.example": failing})
    resolution = await resolve("x.example", None, lookup)
    assert resolution.targets == ()
    assert "NAPTR x.example: the DNS servers refused" in resolution.error and "SRV _sip._udp.x.example" in resolution.error
    assert "x.example: the DNS servers refused" in resolution.error.rpartition(";")[2]


async def test_a_server_that_does_not_answer_ends_the_chain_at_once() -> None:
    silent = DnsError("no answer within 5 s", timeout=True)
    lookup = FakeDns(naptr={"x.example": silent}, srv={"_sip._udp.x.example": silent}, a={"x.example": silent})
    resolution = await resolve("x.example", None, lookup)
    assert resolution.targets == () and resolution.error == "NAPTR x.example: no answer within 5 s"
    assert lookup.asked == [("NAPTR", "x.example")]  # (not 5 s more for each further question)
    lookup = FakeDns(srv={"_sip._udp.x.example": silent})
    resolution = await resolve("x.example", None, lookup)
    assert resolution.error == "SRV _sip._udp.x.example: no answer within 5 s" and len(lookup.asked) == 2


async def test_srv_target_dot_means_no_service_and_no_fallback_to_addresses() -> None:
    lookup = FakeDns(srv={"_sip._udp.x.example": [Srv(0, 0, 0, ".")]}, a={"x.example": ["192.0.2.1"]})
    resolution = await resolve("x.example", None, lookup)
    assert resolution.targets == () and "no SIP service" in resolution.error
    assert ("A", "x.example") not in lookup.asked


async def test_srv_targets_whose_addresses_all_fail_are_an_error() -> None:
    lookup = FakeDns(srv=TRUNK_SRV, a={"primary.trunk.example": DnsError("refused")})
    resolution = await resolve("trunk.example", None, lookup)
    assert resolution.targets == () and "no address for its targets" in resolution.error and "refused" in resolution.error


async def test_a_slow_dns_ends_in_an_error_within_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sipdns, "RESOLUTION_S", 0.05)
    resolution = await resolve("slow.example", None, FakeDns(delay_s=1.0))
    assert resolution.targets == () and "took longer than 0.05 s" in resolution.error


@pytest.mark.parametrize("host", ["", "a..b", "-x.example", "x" * 64 + ".example", "ex ample.com", "exämple.com", ("a." * 127) + "b", "x.example/evil"])
async def test_names_that_are_no_host_names_are_refused_unasked(host: str) -> None:
    lookup = FakeDns()
    resolution = await resolve(host, None, lookup)
    assert resolution.targets == () and "not a host name" in resolution.error and lookup.asked == []


def test_valid_names() -> None:
    assert valid_name("_sip._udp.trunk.example.") and valid_name("a-1.b") and valid_name("x" * 63 + ".example")
    assert not valid_name("x" * 64) and not valid_name(".") and not valid_name("a.-b")


# -- limits ----------------------------------------------------------------------------------------


async def test_at_most_16_records_4_addresses_per_name_and_16_targets() -> None:
    records = [Srv(i % 3, 10, 5060 + i, f"t{i}.example.") for i in range(100)]
    addresses: dict[str, list[str] | DnsError] = {f"t{i}.example": [f"10.0.{i}.{k}" for k in range(1, 11)] for i in range(100)}
    lookup = FakeDns(srv={"_sip._udp.big.example": records}, a=addresses)
    resolution = await resolve("big.example", None, lookup, rng=random.Random(3))
    assert len(resolution.targets) == sipdns.MAX_TARGETS
    assert len([kind for kind, _ in lookup.asked if kind == "A"]) <= sipdns.MAX_RECORDS  # only the records read
    per_name = Counter(t.name for t in resolution.targets)
    assert max(per_name.values()) <= sipdns.MAX_ADDRESSES
    assert {t.name for t in resolution.targets} <= {f"t{i}.example" for i in range(16)}


async def test_records_with_bad_names_ports_or_addresses_are_skipped() -> None:
    records = [Srv(10, 0, 0, "zero-port.example."), Srv(10, 0, 5060, "bad_name!.example."), Srv(20, 0, 5060, "ok.example.")]
    lookup = FakeDns(srv={"_sip._udp.x.example": records}, a={"ok.example": ["not-an-ip", "192.0.2.5", "192.0.2.5"]})
    assert shown(await resolve("x.example", None, lookup)) == ["192.0.2.5:5060"]


# -- RFC 2782's order ------------------------------------------------------------------------------


def test_srv_order_lowest_priority_first_weighted_within_a_priority() -> None:
    records = [Srv(20, 100, 5060, "c."), Srv(10, 90, 5060, "a."), Srv(10, 10, 5060, "b."), Srv(30, 0, 5060, "d.")]
    rng = random.Random(2026)
    firsts = Counter()
    for _ in range(4000):
        ordered = order_srv(records, rng)
        assert [r.target for r in ordered[2:]] == ["c.", "d."]  # priorities 20 and 30 after all of 10
        firsts[ordered[0].target] += 1
    assert 0.86 < firsts["a."] / 4000 < 0.94  # weight 90 of 100


def test_srv_order_is_repeatable_with_a_seed_and_zero_weights_are_picked_rarely() -> None:
    records = [Srv(10, 0, 5060, "zero."), Srv(10, 100, 5060, "heavy.")]
    assert order_srv(records, random.Random(7)) == order_srv(records, random.Random(7))
    rng = random.Random(8)
    zero_first = sum(order_srv(records, rng)[0].target == "zero." for _ in range(2000))
    assert 0 < zero_first < 60  # (1 in 101: only a random pick of exactly 0)


def test_naptr_choices_by_order_then_preference_only_ours() -> None:
    records = [
        Naptr(20, 1, "s", "SIP+D2U", "", "_sip._udp.late.example."),
        Naptr(10, 50, "S", "SIP+D2U", "", "_sip._udp.b.example."),
        Naptr(10, 20, "S", "sip+d2u", "", "_sip._udp.a.example."),
        Naptr(5, 1, "S", "SIP+D2T", "", "_sip._tcp.example."),
        Naptr(5, 1, "S", "SIP+D2U", "!^.*$!sip:x@y!", "."),  # regexp rewriting: not followed
        Naptr(5, 1, "S", "E2U+sip", "", "_sip._udp.enum.example."),
    ]
    assert naptr_choices(records, ["udp"]) == [
        ("udp", "_sip._udp.a.example"), ("udp", "_sip._udp.b.example"), ("udp", "_sip._udp.late.example")
    ]  # fmt: skip
    assert naptr_choices(records, ["tcp", "udp"])[0] == ("tcp", "_sip._tcp.example")


# -- the failover round ----------------------------------------------------------------------------


A, B, C = (Target("udp", f"192.0.2.{i}", 5060, f"t{i}") for i in (1, 2, 3))


def test_a_round_goes_through_the_targets_in_order_once() -> None:
    round_ = TargetRound([A, B, C])
    assert round_.current == A and round_.alternatives(A.peer_address) == 2
    assert round_.failed(A.peer_address) == B and round_.current == B
    assert round_.alternatives(B.peer_address) == 1
    assert round_.failed(B.peer_address) == C and round_.alternatives(C.peer_address) == 0
    assert round_.failed(C.peer_address) is None


def test_a_round_prefers_the_target_in_use_and_puts_a_silent_one_last() -> None:
    assert TargetRound([A, B, C], prefer=B.peer_address).targets == (B, A, C)
    assert TargetRound([A, B, C], avoid=A.peer_address).targets == (B, C, A)
    assert TargetRound([A, B, C], prefer=("198.51.100.1", 5060), avoid=("198.51.100.2", 5060)).targets == (A, B, C)
    # a silent A moved last; the REGISTER still out to it fails: B next, A is not tried twice
    round_ = TargetRound([A, B], avoid=A.peer_address)
    assert round_.alternatives(A.peer_address) == 1 and round_.failed(A.peer_address) == B
    assert round_.alternatives(B.peer_address) == 0
    with pytest.raises(ValueError):
        TargetRound([])
