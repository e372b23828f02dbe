"""Gateway nodes on one machine for the cluster tests: each its own process on its own loopback
address (127.0.0.2, 127.0.0.3 ...) with the same SIP and HTTP ports, as two machines would be, and
where a room's participants are now; Debian's nginx in front of them for browsers, with the shipped
configs/nginx-gateway.conf."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.baresip import free_port
from tests.support.gateway import (
    ADMIN_TOKEN,
    RunningGateway,
    end_process,
    participants,
    start_gateway,
    wait_until,
)
from tests.support.nginx_rtmp import start_nginx, temp_paths

ROOMS = ("north", "south", "east", "west")  # (no PIN: calls go straight in)
COUNCIL = "council"  # with a host PIN
OFFICE = "office"  # with a host PIN and a lobby
HOST_PIN = "1234"
CLUSTER_SECRET = "cluster-test-secret-0123456789abcdef"
NGINX_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "nginx-gateway.conf"

NODE_CONFIG = """
server: {{host: {host}, port: {http_port}, trusted_proxies: ["127.0.0.1"]}}
admin: {{token: {token}}}
logging: {{level: debug, format: json}}
sip: {{host: {host}, port: {sip_port}, language: en, digit_timeout_s: 2}}
h323: {{enabled: false}}
storage: {storage}
mqtt: {{enabled: false, node: {name}}}
admission: {{max_loop_lag_ms: 1000, retry_after_s: 5}}
cluster: {{secret: {secret}{backplane}}}
rooms:
{rooms}
"""


@dataclass
class Node:
    name: str
    host: str
    sip_port: int
    directory: Path
    http_port: int = 0
    storage_url: str | None = None  # the cluster's PostgreSQL; None: SQLite in the node's folder
    backplane_port: int = 0  # the backplane on this node's host at this port (TCP and UDP); 0: off
    peers: tuple[str, ...] = ()  # the other nodes' backplanes (host:port)
    running: RunningGateway | None = None

    def start(self) -> RunningGateway:
        rooms = "\n".join(f"  - {{id: {room}, name: {room.title()}}}" for room in ROOMS)
        rooms += f'\n  - {{id: {COUNCIL}, name: Council, host_pin: "{HOST_PIN}"}}'
        rooms += f'\n  - {{id: {OFFICE}, name: Citizen office, host_pin: "{HOST_PIN}", lobby: true}}'
        self.directory.mkdir(parents=True, exist_ok=True)
        config = NODE_CONFIG.format(
            host=self.host, token=ADMIN_TOKEN, sip_port=self.sip_port, http_port=self.http_port, rooms=rooms,
            secret=CLUSTER_SECRET, name=self.name,
            backplane=f", backplane: '{self.host}:{self.backplane_port}', peers: {list(self.peers)}" if self.backplane_port else "",
            storage=f'{{url: "{self.storage_url}"}}' if self.storage_url else f"{{path: {self.directory}/gateway.sqlite}}",
        )  # fmt: skip
        self.running = start_gateway(self.directory, config)
        return self.running

    @property
    def gateway(self) -> RunningGateway:
        assert self.running is not None, f"node {self.name} is not running"
        return self.running

    def alive(self) -> bool:
        return self.running is not None and self.running.process.poll() is None

    def linked_with(self) -> set[str]:
        """The nodes this node's backplane has a link with now (its API)."""
        backplane = self.gateway.api("GET", "/api/node").json().get("backplane") or {}
        return set(backplane.get("links", {}))

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


def home_and_other(nodes: list[Node], room: str, name: str, timeout: float = 20.0) -> tuple[Node, Node]:
    """Of two nodes: the one whose meeting in `room` the participant of this name landed in (waited
    for), and the other."""
    home = next(node for node in nodes if node.name == landed(nodes, room, name, timeout))
    return home, next(node for node in nodes if node is not home)


def landed(nodes: list[Node], room: str, name: str, timeout: float = 20.0) -> str:
    """The name of the node the participant of this name landed on in `room` (waited for)."""
    return str(wait_until(lambda: where(nodes, room, name), timeout, what=f"{name} in {room} on a node"))


def where(nodes: list[Node], room: str, name: str) -> str | None:
    """The node whose meeting in `room` has a participant of this name."""
    return next((node.name for node in nodes if name in node.names_in(room)), None)


class _Front:
    """A front for browsers in front of the test's nodes, on a loopback port: its folder, its
    process, and whether it answers (the nodes' /healthz through it)."""

    name = "front"

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> subprocess.Popen[bytes]:
        raise NotImplementedError

    def start(self) -> None:
        self.process = self._run()
        wait_until(self._answers, 10, what=f"{self.name} in front of the nodes")

    def _answers(self) -> bool:
        assert self.process is not None and self.process.poll() is None, f"{self.name} ended (see {self.directory})"
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        end_process(self.process)
        self.process = None


class NginxFront(_Front):
    """The shipped configs/nginx-gateway.conf with the test's nodes and a loopback port, nothing else
    changed, in nginx's http block; in the foreground under the test's directory."""

    name = "nginx"

    def __init__(self, directory: Path, nodes: list[Node]) -> None:
        super().__init__(directory)
        shipped = NGINX_CONFIG.read_text()
        servers = "".join(f"    server {n.host}:{n.http_port} max_fails=1 fail_timeout=10s;\n" for n in nodes)
        site, count = re.subn(r"(?m)^    server 192\.0\.2\.\d+:8080 [^\n]*\n", "", shipped)
        assert count == 2, "the shipped nginx config's example nodes changed"
        site = site.replace("    hash $gateway_room consistent;\n", "    hash $gateway_room consistent;\n" + servers)
        site = site.replace("    listen 80;", f"    listen 127.0.0.1:{self.port};")
        (directory / "gateway.conf").write_text(site)
        temp = temp_paths(directory)
        (directory / "nginx.conf").write_text(
            f"""daemon off;
master_process off;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} info;
events {{ worker_connections 256; }}
http {{
  access_log {directory / "access.log"};
  {temp}
  include {directory / "gateway.conf"};
}}
"""
        )

    def _run(self) -> subprocess.Popen[bytes]:
        return start_nginx(self.directory)


HAPROXY = "/usr/sbin/haproxy"
HAPROXY_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "haproxy-gateway.cfg"


class HaproxyFront(_Front):
    """The shipped configs/haproxy-gateway.cfg with the test's nodes and a loopback port, nothing else
    changed; in the foreground under the test's directory (its log in haproxy.log there)."""

    name = "haproxy"

    def __init__(self, directory: Path, nodes: list[Node]) -> None:
        super().__init__(directory)
        shipped = HAPROXY_CONFIG.read_text()
        servers = "".join(f"    server {n.name} {n.host}:{n.http_port}\n" for n in nodes)
        config, count = re.subn(r"(?m)^    server node\d 192\.0\.2\.\d+:8080\n", "", shipped)
        assert count == 2, "the shipped haproxy config's example nodes changed"
        config = config.rstrip("\n") + "\n" + servers
        config = config.replace("    bind :80\n", f"    bind 127.0.0.1:{self.port}\n")
        self.config = directory / "haproxy.cfg"
        self.config.write_text(config)

    def _run(self) -> subprocess.Popen[bytes]:
        log = (self.directory / "haproxy.log").open("ab")
        return subprocess.Popen([HAPROXY, "-db", "-f", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
