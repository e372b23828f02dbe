"""A trunk named by DNS (RFC 3263): dnsmasq serves NAPTR and SRV records for trunk.test whose two
targets are two kamailio registrars on 127.0.0.2 (priority 10) and 127.0.0.3 (priority 20). The
gateway registers with the first; when it stops answering, the unanswered keep-alive (64*T1)
sends the REGISTER to the second at once, and the API shows the trunk registered there; a call
the second relays is taken as the trunk's. Also: the resolver itself against dnsmasq, and a DNS
server that never answers is an error within the bound, not a hang."""

from __future__ import annotations

import asyncio
import socket
import time
import types
from pathlib import Path

from gateway.config import SipConfig
from gateway.sip import dns as sipdns
from gateway.sip.dns import SipResolver
from tests.e2e.test_trunks import PASSWORD, SIP_LINE, TRUNK_USER, participants, trunk_state
from tests.support.dnsmasq import Dnsmasq
from tests.support.gateway import TEST_CONFIG, start_gateway, stop_and_check, wait_until
from tests.support.kamailio import DOMAIN, Kamailio
from tests.support.sipp import Sipp

SRV = "_sip._udp.trunk.test"


def trunk_dns(directory: Path, primary_port: int, secondary_port: int) -> Dnsmasq:
    return Dnsmasq(
        directory,
        naptr=[("trunk.test", 10, 10, "S", "SIP+D2U", SRV), ("trunk.test", 5, 10, "S", "SIPS+D2T", "_sips._tcp.trunk.test")],
        srv=[(SRV, "primary.trunk.test", primary_port, 10, 50), (SRV, "secondary.trunk.test", secondary_port, 20, 50)],
        hosts={"primary.trunk.test": "127.0.0.2", "secondary.trunk.test": "127.0.0.3", "pbx.trunk.test": "127.0.0.4"},
    )


def test_the_resolver_against_dnsmasq_naptr_srv_a_and_failures(tmp_path: Path) -> None:
    dns = trunk_dns(tmp_path / "dns", 5062, 5064)
    dns.start()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a "DNS server" that never answers
    silent.bind(("127.0.0.1", 0))
    try:
        resolver = SipResolver(SipConfig(dns_servers=[dns.server]))  # type: ignore[call-arg]

        async def resolve_all() -> list[sipdns.Resolution]:
            return [
                await resolver.resolve("trunk.test", None),  # NAPTR (TLS skipped) -> SRV -> A
                await resolver.resolve("pbx.trunk.test", None),  # no NAPTR, no SRV: A on 5060
                await resolver.resolve("pbx.trunk.test", 5070),  # a port: A only
                await resolver.resolve("nowhere.trunk.test", None),  # NXDOMAIN
            ]

        trunk, pbx, pbx_port, nowhere = asyncio.run(resolve_all())
        assert [str(t) for t in trunk.targets] == ["127.0.0.2:5062", "127.0.0.3:5064"], trunk
        assert [str(t) for t in pbx.targets] == ["127.0.0.4:5060"] and [str(t) for t in pbx_port.targets] == ["127.0.0.4:5070"]
        assert nowhere.targets == () and "no address" in nowhere.error
        assert "query[NAPTR] trunk.test" in dns.log() and "query[SRV] _sip._udp.trunk.test" in dns.log()

        started = time.monotonic()
        mute = SipResolver(SipConfig(dns_servers=[f"127.0.0.1:{silent.getsockname()[1]}"]))  # type: ignore[call-arg]
        lost = asyncio.run(mute.resolve("trunk.test", None))
        assert lost.targets == () and lost.error == "NAPTR trunk.test: no answer within 5 s", lost
        assert time.monotonic() - started < sipdns.LOOKUP_LIFETIME_S + 1  # (the chain ends at the first silence)
    finally:
        silent.close()
        dns.stop()


def test_the_gateway_fails_over_to_the_secondary_srv_target_when_the_primary_stops_answering(tmp_path: Path) -> None:
    primary = Kamailio(tmp_path / "primary", {TRUNK_USER: PASSWORD}, host="127.0.0.2")
    secondary = Kamailio(tmp_path / "secondary", {TRUNK_USER: PASSWORD}, host="127.0.0.3")
    dns = trunk_dns(tmp_path / "dns", primary.port, secondary.port)
    primary_at, secondary_at = f"127.0.0.2:{primary.port}", f"127.0.0.3:{secondary.port}"
    dns.start()
    primary.start()
    secondary.start()
    # expires 300 (refreshed after 240 s: no refresh is out when the keep-alive finds the primary gone);
    # a keep-alive every second, so the primary's silence is noticed 64*T1 (32 s) after it stops
    trunk = (
        f'{{id: carrier, registrar: "trunk.test", domain: {DOMAIN}, user: "{TRUNK_USER}", password: "{PASSWORD}", '
        "expires_s: 300, keepalive_s: 1}"
    )
    config = TEST_CONFIG.replace(SIP_LINE, SIP_LINE[:-1] + f', dns_servers: ["{dns.server}"], trunks: [{trunk}]}}')
    assert config != TEST_CONFIG
    gateway = start_gateway(tmp_path, config)
    try:
        wait_until(lambda: trunk_state(gateway)["status"] == "registered", 15, what="the trunk registered")
        state = trunk_state(gateway)
        assert state["address"] == primary_at and state["targets"] == [primary_at, secondary_at], state
        assert primary.probe(TRUNK_USER) == 200 and secondary.probe(TRUNK_USER) == 404

        primary.stop()
        wait_until(
            lambda: (s := trunk_state(gateway))["status"] == "registered" and s["address"] == secondary_at,
            55, interval=0.5, what="the trunk registered through the secondary",
        )  # fmt: skip
        assert secondary.probe(TRUNK_USER) == 200
        assert trunk_state(gateway)["failures_in_a_row"] == 0  # (one target silent is no failure of the trunk)
        # the keep-alives go to the secondary now, and it answers them
        wait_until(lambda: int(trunk_state(gateway)["keepalives_answered"]) >= 1, 10, what="a keep-alive answered")  # type: ignore[call-overload]
        lines = gateway.log_lines()
        assert any(line.get("event") == "trunk registrar moved" and line.get("address") == secondary_at for line in lines)

        # a call the secondary relays comes from 127.0.0.3: the trunk's (an SRV target), routed as such
        call = Sipp(types.SimpleNamespace(sip_port=secondary.port), tmp_path / "call", "via_proxy_guest.xml", TRUNK_USER, host="127.0.0.3")  # type: ignore[arg-type]
        wait_until(lambda: any(p.get("kind") == "phone" for p in participants(gateway, "demo")), 20, what="the caller in demo")
        result = call.wait(60)
        assert result.returncode == 0, result.describe()
        answered = [line for line in gateway.log_lines() if line.get("event") == "call answered"]
        assert answered and answered[0].get("source") == "127.0.0.3" and answered[0].get("trunk") == "carrier", answered
    finally:
        stop_and_check(gateway)
        secondary.stop()
        primary.stop()
        dns.stop()
    assert PASSWORD not in gateway.log_path.read_text()
