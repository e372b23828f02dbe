"""The gateway and a gatekeeper (RAS, gateway/h323/ras.py), against a gatekeeper written in the
tests (tests/support/h323_peer.py, its own PER codec): registration with every room's id and
aliases and the configured prefixes (again at once when a room is added or removed), admission (ARQ) before a call is answered and disengage (DRQ)
when it ends, a dial-out to a number the gatekeeper finds (ARQ for an outgoing call, its ACF's
address called), a refused admission ending the call with a Q.931 cause, unregistration (URQ) when
the gateway stops, and every RAS message read by Wireshark with nothing malformed."""

from __future__ import annotations

from pathlib import Path

from tests.support.gateway import (
    TEST_CONFIG,
    logged,
    metric,
    participant,
    participants,
    start_gateway,
    stop_and_check,
    wait_until,
)
from tests.support.h323_peer import Gatekeeper, H323Peer, assert_tshark_reads
from tests.support.pcap import tshark_packets, udp_pcap


def config(gatekeeper: Gatekeeper) -> str:
    return TEST_CONFIG + (
        f"h323: {{port: 0, gatekeeper: {{address: '127.0.0.1:{gatekeeper.port}', ras_port: 0, time_to_live_s: 30,"
        " prefixes: ['4930']}, dial_out_allow: ['h323:4930123']}\n"
    )


def test_rooms_are_registered_calls_admitted_and_disengaged_and_the_gateway_unregisters(tmp_path: Path) -> None:
    gatekeeper = Gatekeeper()
    gateway = start_gateway(tmp_path, config(gatekeeper))
    caller = H323Peer(gateway.h323_port, name="Ratssaal")
    peers = [caller]
    try:
        wait_until(lambda: logged(gateway, "registered with the gatekeeper"), 15, what="the registration")
        assert metric(gateway, "gateway_h323_gatekeeper_registered") == 1
        assert {("h323-ID", "demo"), ("dialledDigits", "4711"), ("h323-ID", "secret")} <= set(gatekeeper.aliases), gatekeeper.aliases
        (rrq,) = [v for n, v in gatekeeper.received if n == "registrationRequest"][:1]
        prefixes = dict(rrq["terminalType"]["gateway"]["protocol"])["voice"]["supportedPrefixes"]
        assert prefixes == [{"prefix": ("dialledDigits", "4930")}] and rrq["timeToLive"] == 30
        # A room made (and removed) through the API: the gatekeeper hears its aliases at once.
        made = gateway.api("POST", "/api/rooms", json={"id": "annex", "name": "Annex", "host_pin": "1234", "aliases": ["4799"]})
        assert made.status_code == 201, made.text
        wait_until(lambda: ("dialledDigits", "4799") in gatekeeper.aliases, 10, what="the new room's alias registered")
        assert gateway.api("DELETE", "/api/rooms/annex").status_code == 204
        wait_until(lambda: ("h323-ID", "annex") not in gatekeeper.aliases and gatekeeper.aliases, 10, what="the room gone from the gatekeeper")
        caller.call("4711")
        (arq,) = [v for n, v in gatekeeper.received if n == "admissionRequest"]
        assert arq["answerCall"] is True and arq["endpointIdentifier"] == "EP-1"
        assert arq["destinationInfo"] == [("dialledDigits", "4711")] and arq["callIdentifier"]["guid"] == caller.guid
        caller.send_keys("#")
        wait_until(lambda: participant(gateway, "demo", "Ratssaal"), 20, what="the caller in the room")
        caller.hang_up()
        wait_until(lambda: "disengageRequest" in gatekeeper.names(), 15, what="the disengage")
        (drq,) = [v for n, v in gatekeeper.received if n == "disengageRequest"]
        assert drq["callIdentifier"]["guid"] == caller.guid and drq["answeredCall"] is True

        # A dial-out to a number: the gatekeeper says where it is (ARQ, answerCall false), then DRQ.
        callee = H323Peer(gateway.h323_port, name="Nebenstelle", tone_hz=880.0)
        peers.append(callee)
        gatekeeper.routes["4930123"] = ("127.0.0.1", callee.listen())
        placed = gateway.api("POST", "/api/rooms/demo/dial", json={"uri": "h323:4930123"})
        assert placed.status_code == 202, placed.text
        wait_until(lambda: participant(gateway, "demo", "4930123"), 20, what="the number called through the gatekeeper")
        outgoing = [v for n, v in gatekeeper.received if n == "admissionRequest"][-1]
        assert outgoing["answerCall"] is False and outgoing["destinationInfo"] == [("dialledDigits", "4930123")]
        assert callee.setup_in["destinationAddress"] == [("dialledDigits", "4930123")]
        assert callee.setup_in["callIdentifier"] == outgoing["callIdentifier"]
        callee.hang_up()
        wait_until(lambda: gatekeeper.names().count("disengageRequest") == 2, 15, what="the dial-out's disengage")
        assert_tshark_reads(callee, tmp_path)
        wait_until(lambda: not participants(gateway, "demo"), 15, what="the room empty")
    finally:
        for peer in peers:
            peer.close()
        stop_and_check(gateway)
    wait_until(lambda: "unregistrationRequest" in gatekeeper.names(), 5, what="the unregistration")
    gatekeeper.close()
    packets = tshark_packets(udp_pcap(tmp_path / "ras.pcap", gatekeeper.wire, 1719), "h225", ["h225.RasMessage"])
    assert len(packets) == len(gatekeeper.wire)
    assert not [p for p in packets if p.malformed or p.problems], [(p.frame, p.problems) for p in packets]


def test_a_call_the_gatekeeper_does_not_admit_is_released_with_a_cause(tmp_path: Path) -> None:
    gatekeeper = Gatekeeper(refuse=True)
    gateway = start_gateway(tmp_path, config(gatekeeper))
    caller = H323Peer(gateway.h323_port, name="Abgewiesen")
    try:
        wait_until(lambda: logged(gateway, "registered with the gatekeeper"), 15, what="the registration")
        caller.call("4711", connect=False)
        assert caller.released.wait(15), "the call was not released"
        assert caller.causes == [21] and not caller.connected.is_set()
        assert "admissionRequest" in gatekeeper.names() and "disengageRequest" not in gatekeeper.names()
        assert logged(gateway, "call refused by the gatekeeper", reason="requestDenied")
    finally:
        caller.close()
        stop_and_check(gateway)
        gatekeeper.close()
