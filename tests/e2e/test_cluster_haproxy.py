"""Browsers behind Debian's haproxy with the shipped configs/haproxy-gateway.cfg, in front of two
gateway nodes on one machine (127.0.0.2 and 127.0.0.3): a room's meeting WebSockets go to the
room's node (a consistent hash of the room); that node is drained, haproxy's check of /readyz takes
it out within about a second, and the next browser of the room goes to the other node and is let
in, while the meeting already on the draining node carries on."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.support.baresip import free_port
from tests.support.cluster import HaproxyFront, Node, where
from tests.support.gateway import next_message, stop_and_check, wait_until
from tests.support.sipp import free_udp_port

pytestmark = pytest.mark.xdist_group("serial")


def test_haproxy_sends_a_rooms_browsers_to_its_node_and_takes_a_draining_node_out(tmp_path: Path) -> None:
    sip_port, http_port = free_udp_port(), free_port()
    nodes = [Node(name, host, sip_port, tmp_path / name, http_port) for name, host in (("a", "127.0.0.2"), ("b", "127.0.0.3"))]
    front = HaproxyFront(tmp_path / "haproxy", nodes)
    with ExitStack() as stack:
        for node in nodes:
            node.start()
            stack.callback(stop_and_check, node.gateway)
        front.start()
        stack.callback(front.stop)

        def join(name: str) -> tuple[ClientConnection, dict[str, object]]:
            ws = stack.enter_context(connect(f"ws://127.0.0.1:{front.port}/ws?room=north", origin=front.url))  # type: ignore[arg-type]
            ws.send(json.dumps({"type": "join", "room": "north", "name": name}))
            return ws, next_message(ws, ("joined", "ended", "error"))

        anna, answer = join("Anna")
        assert answer["type"] == "joined", answer
        home_name = wait_until(lambda: where(nodes, "north", "Anna"), 10, what="Anna on a node")
        home = next(n for n in nodes if n.name == home_name)
        other = next(n for n in nodes if n is not home)
        _, answer = join("Ben")
        assert answer["type"] == "joined" and wait_until(lambda: where(nodes, "north", "Ben"), 10, what="Ben on a node") == home.name
        assert httpx.get(f"{front.url}/r/north", timeout=5).status_code == 200

        drained = home.cli("drain", "--deadline", "600")
        assert drained.returncode == 0, drained.stderr
        assert httpx.get(f"{home.gateway.base_url}/readyz", timeout=5).status_code == 503
        taken_out = time.monotonic()
        # haproxy's next check takes it out; until then a browser sent there would be turned away
        # ("busy"), so the test waits for haproxy's own word: its log says the node went DOWN
        wait_until(lambda: f"gateway_nodes/{home.name} is DOWN" in (front.directory / "haproxy.log").read_text(), 10,
                   what="haproxy taking the draining node out")  # fmt: skip
        print(json.dumps({"taken_out_after_s": round(time.monotonic() - taken_out, 2)}))
        _, answer = join("Carl")
        assert answer["type"] == "joined", answer  # (let in on the other node, not "busy")
        assert wait_until(lambda: where(nodes, "north", "Carl"), 10, what="Carl on a node") == other.name
        # The meeting on the draining node carries on: Anna's WebSocket is open, she is still there
        assert sorted(home.names_in("north")) == ["Anna", "Ben"]
        anna.send(json.dumps({"type": "hand", "raised": True}))
        wait_until(lambda: any(p["hand_raised"] for p in home.gateway.api("GET", "/api/rooms/north/participants").json()), 10,
                   what="Anna's hand raised on the draining node")  # fmt: skip
