"""Gateway nodes on one machine for the cluster tests: each its own process on its own loopback
address (127.0.0.2, 127.0.0.3 ...) with the same SIP port, as two machines would be, and where a
room's participants are now."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.gateway import ADMIN_TOKEN, RunningGateway, participants, start_gateway

ROOMS = ("north", "south", "east", "west")

NODE_CONFIG = """
server: {{host: {host}, port: 0}}
admin: {{token: {token}}}
logging: {{level: debug, format: json}}
sip: {{host: {host}, port: {sip_port}, language: en, digit_timeout_s: 2}}
h323: {{enabled: false}}
storage: {{path: null}}
admission: {{max_loop_lag_ms: 1000, retry_after_s: 5}}
rooms:
{rooms}
"""


@dataclass
class Node:
    name: str
    host: str
    sip_port: int
    directory: Path
    running: RunningGateway | None = None

    def start(self) -> RunningGateway:
        rooms = "\n".join(f"  - {{id: {room}, name: {room.title()}}}" for room in ROOMS)
        self.directory.mkdir(parents=True, exist_ok=True)
        config = NODE_CONFIG.format(host=self.host, token=ADMIN_TOKEN, sip_port=self.sip_port, rooms=rooms)
        self.running = start_gateway(self.directory, config)
        return self.running

    @property
    def gateway(self) -> RunningGateway:
        assert self.running is not None, f"node {self.name} is not running"
        return self.running

    def alive(self) -> bool:
        return self.running is not None and self.running.process.poll() is None

    def names_in(self, room: str) -> list[str]:
        """Who is in the room's meeting on this node."""
        return [str(p["name"]) for p in participants(self.gateway, room)] if self.alive() else []

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`gateway <args>` against this node's API (the token from GATEWAY_TOKEN, as documented)."""
        return subprocess.run(
            [sys.executable, "-m", "gateway", *args, "--url", self.gateway.base_url],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "GATEWAY_TOKEN": ADMIN_TOKEN},
        )


def where(nodes: list[Node], room: str, name: str) -> str | None:
    """The node whose meeting in `room` has a participant of this name."""
    return next((node.name for node in nodes if name in node.names_in(room)), None)
