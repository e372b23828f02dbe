"""Trunks over TCP and TLS against Debian's kamailio (a registrar listening on TCP and TLS, taking
its clients' RFC 5923 aliases): the gateway opens the connection, registers over it (TLS: the
registrar's self-signed certificate checked against the trunk's tls_ca), keeps it with RFC 5626
CRLF pings, and the carrier's call to the registered contact comes back over that very connection
(the gateway has no TLS listener at all here, and accepts no connection) into the demo room. A
restarted registrar (the connection closed) or a frozen one (no pong) is noticed and registered
with again; a certificate that does not chain to tls_ca fails the REGISTER at once. An outbound proxy (a second kamailio, loose routing, Path) carries the REGISTERs, the
carrier's calls and a dial-out, each with our Route to it."""

from __future__ import annotations

import datetime
import os
import signal
import socket
import threading
import time
import types
from pathlib import Path

import pytest

from tests.e2e.test_trunks import PASSWORD, SIP_LINE, TRUNK_USER, participants, trunk_state
from tests.support.certificates import self_signed
from tests.support.gateway import TEST_CONFIG, RunningGateway, start_gateway, stop_and_check, wait_until
from tests.support.kamailio import DOMAIN, Kamailio, KamailioProxy
from tests.support.sipp import (
    Sipp,
    free_udp_port,
    sipp_uas,
    stop_uas,
    trace_messages,
    udp_port_bound,
)


def trunk_config(registrar: str, transport: str, extra: str = "", keepalive_s: int = 1) -> str:
    trunk = (
        f'{{id: carrier, registrar: "{registrar}", transport: {transport}, domain: {DOMAIN}, user: "{TRUNK_USER}", '
        f'password: "{PASSWORD}", expires_s: 60, keepalive_s: {keepalive_s}{extra}}}'
    )
    assert SIP_LINE in TEST_CONFIG
    return TEST_CONFIG.replace(SIP_LINE, SIP_LINE[:-1] + f", trunks: [{trunk}]}}")


def seconds(first: dict[str, object], then: dict[str, object]) -> float:
    """Between two log lines."""
    def at(line: dict[str, object]) -> float:
        return datetime.datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()

    return at(then) - at(first)


def answered(gateway: RunningGateway) -> int:
    return int(trunk_state(gateway)["keepalives_answered"])  # type: ignore[call-overload]


def call_through(kamailio: Kamailio, gateway: RunningGateway, directory: Path) -> None:
    """A carrier's call to the trunk's number through kamailio lands in demo, and ends well."""
    call = Sipp(types.SimpleNamespace(sip_port=kamailio.port), directory, "via_proxy_guest.xml", TRUNK_USER)  # type: ignore[arg-type]
    wait_until(lambda: any(p.get("kind") == "phone" for p in participants(gateway, "demo")), 20, what="the caller in demo")
    result = call.wait(60)
    assert result.returncode == 0, result.describe()


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_registered_over_a_connection_reached_over_it_and_registered_again_after_a_restart(transport: str, tmp_path: Path) -> None:
    tls = self_signed(tmp_path / "certificate") if transport == "tls" else None
    kamailio = Kamailio(tmp_path / "kamailio", {TRUNK_USER: PASSWORD}, tcp=True, tls=tls)
    kamailio.start()
    port = kamailio.tls_port if tls is not None else kamailio.port
    extra = f", tls_ca: {tls[0]}" if tls is not None else ""
    gateway = start_gateway(tmp_path, trunk_config(f"127.0.0.1:{port}", transport, extra))
    try:
        wait_until(lambda: trunk_state(gateway)["status"] == "registered", 15, what=f"the trunk registered over {transport}")
        state = trunk_state(gateway)
        assert (state["transport"], state["address"], state["last_status"]) == (transport, f"127.0.0.1:{port}", 200)
        # RFC 5626 CRLF pings every second, each answered by kamailio's pong (no OPTIONS over a connection)
        wait_until(lambda: answered(gateway) >= 2, 10, what="two CRLF keep-alives answered")
        assert kamailio.probe(TRUNK_USER) == 200  # the registrar reaches our contact (over our connection)

        call_through(kamailio, gateway, tmp_path / "call")
        calls = [line for line in gateway.log_lines() if line.get("event") == "call answered"]
        assert calls and calls[0]["transport"] == transport and calls[0].get("trunk") == "carrier", calls
        # ... over the connection the gateway opened: it accepted none (and has no TLS listener)
        assert not [line for line in gateway.log_lines() if line.get("event") == "SIP connection accepted"]
        opened = [line for line in gateway.log_lines() if line.get("event") == "SIP connection opened"]
        assert len(opened) == 1 and opened[0]["transport"] == transport, opened

        # the registrar restarts: the connection closes, the gateway tries to register again at once
        # (meeting no listener yet, a 503 at once, not after 32 s: then the backoff, 10 s, its second
        # step: the lost connection was the first failure), long before the refresh (30 s on)
        kamailio.stop()
        kamailio.start()
        wait_until(lambda: kamailio.probe(TRUNK_USER, timeout=0.5) == 200, 20, what="the binding back in the restarted kamailio")
        assert trunk_state(gateway)["status"] == "registered"
        lines = gateway.log_lines()
        ended = next(line for line in lines if line.get("event") == "SIP connection ended")
        lost = next(line for line in lines if line.get("event") == "trunk connection lost")
        again = [line for line in lines if line.get("event") in ("SIP connection failed", "SIP connection opened")][1]
        assert seconds(ended, again) < 1 and seconds(ended, lost) < 1, (ended, lost, again)
        assert len([line for line in lines if line.get("event") == "trunk registered"]) == 2  # (at the start, after the restart)
    finally:
        stop_and_check(gateway)
        kamailio.stop()
    assert PASSWORD not in gateway.log_path.read_text()


def test_a_registrar_whose_certificate_does_not_chain_to_tls_ca_is_refused_at_once(tmp_path: Path) -> None:
    """The trunk trusts another CA than the one that signed the registrar's certificate: the TLS
    handshake fails, which is the REGISTER's failure at once (a 503 naming the certificate), not
    after 32 s of silence; nothing is sent in the clear."""
    tls = self_signed(tmp_path / "certificate")
    other, _ = self_signed(tmp_path / "other")
    kamailio = Kamailio(tmp_path / "kamailio", {TRUNK_USER: PASSWORD}, tls=tls)
    kamailio.start()
    gateway = start_gateway(tmp_path, trunk_config(f"127.0.0.1:{kamailio.tls_port}", "tls", f", tls_ca: {other}"))
    try:
        state = wait_until(lambda: (s := trunk_state(gateway))["status"] == "failing" and s, 10, what="the trunk failing")
        assert isinstance(state, dict) and state["last_status"] == 503, state
        assert "certificate not accepted" in str(state["reason"]), state
        failed = [line for line in gateway.log_lines() if line.get("event") == "SIP connection failed"]
        assert failed and failed[0]["transport"] == "tls" and "certificate" in str(failed[0]["reason"])
        assert kamailio.probe(TRUNK_USER) == 404
    finally:
        stop_and_check(gateway)
        kamailio.stop()


def test_a_register_whose_connection_closes_unanswered_fails_at_once(tmp_path: Path) -> None:
    """The registrar takes the connection, reads the REGISTER and closes without an answer (as a
    registrar going down does): the REGISTER fails at once (503, the connection closed), not at
    Timer F 32 s later, and the trunk tries again after its backoff."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    registers: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                registers.append(connection.recv(65536))

    threading.Thread(target=serve, daemon=True).start()
    gateway = start_gateway(tmp_path, trunk_config(f"127.0.0.1:{port}", "tcp"))
    try:
        state = wait_until(lambda: (s := trunk_state(gateway))["status"] == "failing" and s, 5, what="the REGISTER failed at once")
        assert isinstance(state, dict) and state["last_status"] == 503 and "closed" in str(state["reason"]), state
        assert registers and registers[0].startswith(b"REGISTER ")
    finally:
        stop_and_check(gateway)
        listener.close()


def test_a_frozen_registrar_is_noticed_by_the_missing_pong_and_registered_with_again(tmp_path: Path) -> None:
    """kamailio stopped (SIGSTOP): the connection stays open but no pong comes; 10 s after the ping
    the flow has failed (RFC 5626), the gateway drops that connection and registers again on a
    new one, which the thawed kamailio answers."""
    kamailio = Kamailio(tmp_path / "kamailio", {TRUNK_USER: PASSWORD}, tcp=True)
    kamailio.start()
    gateway = start_gateway(tmp_path, trunk_config(f"127.0.0.1:{kamailio.port}", "tcp"))
    assert kamailio.process is not None
    try:
        wait_until(lambda: trunk_state(gateway)["status"] == "registered", 15, what="the trunk registered over tcp")
        wait_until(lambda: answered(gateway) >= 1, 10, what="a CRLF keep-alive answered")
        os.killpg(kamailio.process.pid, signal.SIGSTOP)
        frozen = time.monotonic()
        try:
            wait_until(lambda: trunk_state(gateway)["status"] == "failing", 20, what="the missing pong noticed")
            noticed = time.monotonic() - frozen
            state = trunk_state(gateway)
            assert state["last_status"] == 408 and "no pong" in str(state["reason"]), state
            assert 9 < noticed < 14, f"noticed after {noticed:.1f} s (ping every 1 s, pong due within 10 s)"
        finally:
            os.killpg(kamailio.process.pid, signal.SIGCONT)
        wait_until(lambda: trunk_state(gateway)["status"] == "registered", 15, what="registered again")
        opened = [line for line in gateway.log_lines() if line.get("event") == "SIP connection opened"]
        assert len(opened) == 2, opened  # (a new connection: the silent one was closed)
        assert kamailio.probe(TRUNK_USER) == 200
    finally:
        stop_and_check(gateway)
        kamailio.stop()


def test_an_outbound_proxy_carries_the_registers_the_carriers_calls_and_a_dial_out(tmp_path: Path) -> None:
    """The trunk's next hop is a second kamailio (TCP) in front of the registrar: our REGISTERs and our
    dial-out go to it with Route: <sip:proxy;transport=tcp;lr> and the registrar's Request-URI
    (sip:kamailio.test) or the callee's; the proxy puts itself on the binding's Path, so the
    carrier's call comes back through it and over our connection to it."""
    callee_port = free_udp_port()
    registrar = Kamailio(tmp_path / "registrar", {TRUNK_USER: PASSWORD}, static_routes={"4712": callee_port})
    registrar.start()
    proxy = KamailioProxy(tmp_path / "proxy", registrar)
    proxy.start()
    rule = r"sip:4712@127\.0\.0\.1:[0-9]+"
    config = trunk_config(f"127.0.0.1:{registrar.port}", "tcp", f', outbound_proxy: "127.0.0.1:{proxy.port}"').replace(
        "trunks: [", f"dial_out_allow: ['{rule}'], trunks: [", 1
    )
    gateway = start_gateway(tmp_path, config)
    callee = sipp_uas(tmp_path / "callee", callee_port)
    route = f"route=[<sip:127.0.0.1:{proxy.port};transport=tcp;lr>] proto=tcp"
    try:
        wait_until(lambda: trunk_state(gateway)["status"] == "registered", 15, what="the trunk registered through the proxy")
        state = trunk_state(gateway)
        assert state["outbound_proxy"] == f"127.0.0.1:{proxy.port}" and state["address"] == f"127.0.0.1:{proxy.port}"
        registers = [line for line in proxy.proxied() if line.startswith("REGISTER ")]
        assert registers and all(line == f"REGISTER sip:{DOMAIN} {route}" for line in registers), registers
        assert registrar.probe(TRUNK_USER) == 200  # registrar -> (Path) proxy -> our connection

        call_through(registrar, gateway, tmp_path / "call")
        assert not [line for line in gateway.log_lines() if line.get("event") == "SIP connection accepted"]
        assert any(line.startswith(f"INVITE sip:{TRUNK_USER}@127.0.0.1:") for line in proxy.proxied())  # (through it)

        wait_until(lambda: participants(gateway, "demo") == [], 15, what="the caller gone")
        wait_until(lambda: udp_port_bound(callee_port), 10, what="the callee listening")
        reply = gateway.api("POST", "/api/rooms/demo/dial", json={"uri": f"sip:4712@127.0.0.1:{registrar.port}"})
        assert reply.status_code == 202, reply.text
        wait_until(lambda: any(p.get("kind") == "phone" for p in participants(gateway, "demo")), 20, what="the callee in demo")
        invites = [line for line in proxy.proxied() if line.startswith("INVITE sip:4712@")]
        # the first INVITE, and the one answering the registrar's 407, both to the proxy with our Route
        assert len(invites) == 2 and all(line == f"INVITE sip:4712@127.0.0.1:{registrar.port} {route}" for line in invites), invites
        received = [m for m in trace_messages(tmp_path / "callee" / "messages.log") if not m.sent and m.start_line.startswith("INVITE")]
        assert received and received[0].header("CSeq") == "2 INVITE"
        assert gateway.api("POST", "/api/rooms/demo/end").status_code == 200
        assert callee.wait(20) == 0, "the callee's call did not end by a BYE"
    finally:
        stop_and_check(gateway)
        stop_uas(callee)
        proxy.stop()
        registrar.stop()
    assert PASSWORD not in gateway.log_path.read_text()
