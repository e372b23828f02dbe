"""SIP over TCP and, when a certificate is configured, TLS: a room system (baresip) calls and joins."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.baresip import Baresip, menu_speaking
from tests.support.gateway import (
    TEST_CONFIG,
    RunningGateway,
    participants,
    start_gateway,
    stop_and_check,
    wait_until,
)
from tests.support.sipp import sip_calls_active


def test_a_room_system_calls_over_tls_and_joins(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    config = TEST_CONFIG.replace(
        "sip: {host: 127.0.0.1, port: 0,", f"sip: {{host: 127.0.0.1, port: 0, tls: {{cert: {cert}, key: {key}, port: 0}},"
    )
    gateway = start_gateway(tmp_path, config)
    try:
        started = next(line for line in gateway.log_lines() if line.get("event") == "gateway started")
        tls_port = started["sip"]["tls"]  # type: ignore[index]
        system = Baresip(tmp_path / "baresip", tone_hz=1000, extra_config=f"sip_cafile {cert}")
        system.start(dial=f"sip:demo@127.0.0.1:{tls_port};transport=tls")
        try:
            wait_until(system.established, 15, what="the TLS call established")
            wait_until(lambda: menu_speaking(system), 15, what="the voice menu speaking")
            system.send_keys("#")
            (member,) = wait_until(lambda: participants(gateway, "demo"), 15, what="the room system in demo")  # type: ignore[misc]
            assert member["kind"] == "sip_room_system", member
            # (which transport carried the call the gateway says only in its log)
            answered = [line for line in gateway.log_lines() if line.get("event") == "call answered"]
            assert answered and answered[0]["transport"] == "tls"
        finally:
            system.stop()
    finally:
        stop_and_check(gateway)


def test_a_room_system_calls_over_tcp_and_joins(gateway: RunningGateway, tmp_path: Path) -> None:
    """UDP and TCP share the configured port."""
    system = Baresip(tmp_path / "baresip", tone_hz=1000)
    system.start(dial=f"sip:4711@127.0.0.1:{gateway.sip_port};transport=tcp")
    try:
        wait_until(system.established, 15, what="the TCP call established")
        wait_until(lambda: menu_speaking(system), 15, what="the voice menu speaking")
        system.send_keys("#")
        wait_until(lambda: participants(gateway, "demo"), 15, what="the room system in demo (called by its alias 4711)")
        # (which transport carried the call the gateway says only in its log)
        answered = [line for line in gateway.log_lines() if line.get("event") == "call answered"]
        assert answered and answered[0]["transport"] == "tcp"
    finally:
        system.stop()
    wait_until(lambda: sip_calls_active(gateway) == 0, 10, what="the call ended in the gateway (no SIP call held)")
    assert participants(gateway, "demo") == []
