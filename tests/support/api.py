"""The admin API in tests: a configuration with two named tokens and roles, and joining a room over
the signalling WebSocket as a browser would."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.support.gateway import ADMIN_TOKEN, TEST_CONFIG, RunningGateway

OPERATOR_TOKEN = "test-operator-token-9876543210"

# Two named tokens with roles; the rooms are TEST_CONFIG's (demo with alias 4711, lobby, secret, small).
API_CONFIG = TEST_CONFIG.replace(
    f"admin: {{token: {ADMIN_TOKEN}}}",
    "admin:\n"
    "  tokens:\n"
    f"    - {{name: alice, token: {ADMIN_TOKEN}, role: admin}}\n"
    f"    - {{name: olga, token: {OPERATOR_TOKEN}, role: operator}}",
)
# SIP over UDP only: no test here places a call, and with port 0 the SIP TCP listener must take the
# port UDP was given, which an unrelated TCP connection may hold (a start-up failure seen under load).
API_CONFIG = API_CONFIG.replace("sip: {host: 127.0.0.1, port: 0,", "sip: {host: 127.0.0.1, port: 0, transports: [udp],")
assert API_CONFIG != TEST_CONFIG and "transports: [udp]" in API_CONFIG


def ws_join(gateway: RunningGateway, room: str, **fields: str) -> dict[str, Any]:
    """Joins over the signalling WebSocket as a browser would; the first message that decides."""
    from websockets.sync.client import connect

    with connect(gateway.ws_url, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "join", "room": room, "name": "Host by link", **fields}))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=20))
            if message["type"] in ("joined", "ended", "lobby", "error"):
                return message  # type: ignore[no-any-return]
    raise AssertionError("no answer to join")


