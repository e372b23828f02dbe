"""What carriers require of a SIP peer, with sipp as the carrier: reliable provisional answers
(RFC 3262, 100rel/PRACK) and session timers (RFC 4028), on calls the carrier places to the gateway
and on the gateway's dial-outs through it. Until these landed, such calls were refused 420.

sipp checks the messages (its exit code is 0 only when every step happened and every `ereg
check_it` matched); the tests check the gateway's side through its API and sipp's message trace.
Each test spends about 45 s waiting for the refresh half-way through the shortest interval RFC 4028
allows (90 s)."""

from __future__ import annotations

from pathlib import Path

from tests.support.gateway import (
    TEST_CONFIG,
    RunningGateway,
    participant,
    start_gateway,
    stop_and_check,
    wait_until,
)
from tests.support.sipp import (
    Sipp,
    free_udp_port,
    sipp_uas,
    stop_uas,
    trace_messages,
    uas_errors,
    udp_port_bound,
)

PASSWORD = "Carrier-Kennwort-5"  # the trunk's (a secret: never in the log)


def test_a_carriers_call_requiring_100rel_and_a_session_timer_is_taken_and_refreshed(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    """The carrier requires 100rel and asks the gateway to refresh (refresher=uas): a reliable 180,
    the 200 after the PRACK, the caller in the room, and an UPDATE refresh 45 s after the answer."""
    sipp = Sipp(gateway, tmp_path / "sipp", "carrier_100rel_timer.xml", "demo")
    wait_until(lambda: participant(gateway, "demo", "Carrier Test"), 15, what="the carrier's caller in demo")
    result = sipp.wait(90)
    assert result.returncode == 0, result.describe()
    messages = sipp.messages()
    starts = [m.start_line for m in messages if not m.sent]
    # the 180 came before the 200 to the INVITE, and the 200 to the INVITE after the PRACK's own 200
    ringing = next(i for i, m in enumerate(messages) if not m.sent and m.start_line.startswith("SIP/2.0 180"))
    prack_ok = next(i for i, m in enumerate(messages) if not m.sent and m.header("CSeq") == "2 PRACK")
    invite_ok = next(
        i for i, m in enumerate(messages) if not m.sent and m.start_line.startswith("SIP/2.0 200") and m.header("CSeq") == "1 INVITE"
    )
    assert ringing < prack_ok < invite_ok, starts
    assert not any(s.startswith("SIP/2.0 420") for s in starts)


def test_a_dial_out_answered_with_a_reliable_183_and_a_session_timer_is_pracked_and_refreshed(tmp_path: Path) -> None:
    """The carrier answers our dial-out with early media in a reliable 183 (PRACKed), then a 200
    that makes us the refresher and has no UPDATE: the gateway refreshes by re-INVITE with its
    SDP unchanged 45 s later; the call is still in the room after it and ends by the host."""
    carrier_port = free_udp_port()
    rule = r"sip:4712@127\.0\.0\.1:[0-9]+"
    config = TEST_CONFIG.replace("sip: {host: 127.0.0.1, port: 0,", f"sip: {{host: 127.0.0.1, port: 0, dial_out_allow: ['{rule}'],")
    gateway = start_gateway(tmp_path, config)
    directory = tmp_path / "carrier"
    carrier = sipp_uas(directory, carrier_port, "carrier_uas_100rel_timer.xml", timeout_s=120)
    try:
        wait_until(lambda: udp_port_bound(carrier_port), 10, what="the carrier listening")
        reply = gateway.api("POST", "/api/rooms/demo/dial", json={"uri": f"sip:4712@127.0.0.1:{carrier_port}"})
        assert reply.status_code == 202, reply.text
        wait_until(lambda: participant(gateway, "demo", "4712"), 20, what="the dialled carrier number in demo")

        def refreshed() -> bool:
            received = [m for m in trace_messages(directory / "messages.log") if not m.sent]
            return sum(m.start_line.startswith("INVITE") for m in received) >= 2

        wait_until(refreshed, 70, what="the gateway's refresh re-INVITE")
        wait_until(lambda: participant(gateway, "demo", "4712"), 5, what="the call still in demo after the refresh")
        assert gateway.api("POST", "/api/rooms/demo/end").status_code == 200
        assert carrier.wait(30) == 0, uas_errors(directory)
    finally:
        stop_and_check(gateway)
        stop_uas(carrier)
    received = [m for m in trace_messages(directory / "messages.log") if not m.sent]
    invites = [m for m in received if m.start_line.startswith("INVITE")]
    assert len(invites) == 2 and invites[1].body == invites[0].body  # our SDP offered again unchanged
    assert [m.header("RAck") for m in received if m.start_line.startswith("PRACK")] == ["1 1 INVITE"]


def test_a_dial_out_challenged_by_the_carrier_itself_with_401_is_answered_with_the_trunks_credentials(tmp_path: Path) -> None:
    """A carrier's SBC that challenges our INVITE with 401 (SHA-256, qop=auth) rather than a proxy's
    407: the INVITE comes again with Authorization answering exactly that challenge (sipp checks
    its fields), the call is answered, joins demo and ends by the host."""
    carrier_port = free_udp_port()
    trunk = f'{{id: carrier, registrar: "127.0.0.1:{carrier_port}", registers: false, user: "4711", password: "{PASSWORD}"}}'
    rule = r"sip:4712@127\.0\.0\.1:[0-9]+"
    config = TEST_CONFIG.replace(
        "sip: {host: 127.0.0.1, port: 0,", f"sip: {{host: 127.0.0.1, port: 0, dial_out_allow: ['{rule}'], trunks: [{trunk}],"
    )
    gateway = start_gateway(tmp_path, config)
    directory = tmp_path / "carrier"
    carrier = sipp_uas(directory, carrier_port, "carrier_uas_401.xml")
    try:
        wait_until(lambda: udp_port_bound(carrier_port), 10, what="the carrier listening")
        reply = gateway.api("POST", "/api/rooms/demo/dial", json={"uri": f"sip:4712@127.0.0.1:{carrier_port}"})
        assert reply.status_code == 202, reply.text
        wait_until(lambda: participant(gateway, "demo", "4712"), 20, what="the dialled number in demo")
        assert gateway.api("POST", "/api/rooms/demo/end").status_code == 200
        assert carrier.wait(30) == 0, uas_errors(directory)
    finally:
        stop_and_check(gateway)
        stop_uas(carrier)
    assert PASSWORD not in gateway.log_path.read_text()
