"""Two gateway nodes behind Debian's kamailio with the shipped configs/kamailio-dispatcher.cfg, on one
machine (127.0.0.2 and 127.0.0.3, the same SIP port): every call to a room lands on the room's node;
a drained node (`gateway drain`) takes no new call, which goes to the other node, while its meeting
carries on, and it is `drained` when that meeting ends; a node killed with SIGKILL: a new call to its
room is answered by the other node within 5 s; restarted, it takes its rooms' new calls again, and
the call records of the calls it lost say so."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.baresip import Baresip
from tests.support.cluster import ROOMS, Node, home_and_other, landed
from tests.support.gateway import metric, stop_and_check, wait_until
from tests.support.kamailio import KamailioDispatcher
from tests.support.sipp import free_udp_port

# (a node's gateway and kamailio's probes beside baresips: kept off the Chromium tests' worker)
pytestmark = pytest.mark.xdist_group("serial")


def two_nodes(tmp_path: Path) -> tuple[list[Node], KamailioDispatcher]:
    port = free_udp_port()
    nodes = [Node("a", "127.0.0.2", port, tmp_path / "a"), Node("b", "127.0.0.3", port, tmp_path / "b")]
    for node in nodes:
        node.start()
    front = KamailioDispatcher(tmp_path / "kamailio", [(n.host, n.sip_port) for n in nodes])
    front.start()
    return nodes, front


def phone(tmp_path: Path, name: str, tone_hz: float) -> Baresip:
    return Baresip(tmp_path / name, tone_hz=tone_hz, name=name, codecs=("g711",))


def call(front: KamailioDispatcher, caller: Baresip, room: str) -> None:
    caller.start(dial=f"sip:{room}@127.0.0.1:{front.port}")


@dataclass
class Cluster:
    nodes: list[Node]
    front: KamailioDispatcher
    phones: list[Baresip]  # Anna, Bert, Carl (and any a test adds)
    home: Node  # the node Anna's first call to room north landed on
    other: Node


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Two nodes behind kamailio, three phones, and Anna's call in room north on its node."""
    nodes, front = two_nodes(tmp_path)
    phones = [phone(tmp_path, name, tone) for name, tone in (("Anna", 440.0), ("Bert", 700.0), ("Carl", 1000.0))]
    try:
        call(front, phones[0], "north")
        home, other = home_and_other(nodes, "north", "Anna")
        yield Cluster(nodes, front, phones, home, other)
    finally:
        for caller in phones:
            caller.stop()
        front.stop()
        for node in nodes:
            if node.alive():
                stop_and_check(node.gateway)


def test_a_room_lands_on_its_node_and_a_draining_node_takes_no_new_call(cluster: Cluster, tmp_path: Path) -> None:
    nodes, front, phones, home, other = cluster.nodes, cluster.front, cluster.phones, cluster.home, cluster.other
    anna, bert, carl = phones
    # Every call to a room goes to the same node: the room's (Anna's call is there already).
    call(front, bert, "north")
    assert landed(nodes, "north", "Bert") == home.name
    # (the other rooms are spread: some of them are the other node's)
    assert any(route.split(": node ")[1].startswith(f"sip:{other.host}:") for route in _routes_for_rooms(front, tmp_path))

    # Drained from the CLI: no new call, the meeting carries on.
    drained = home.cli("drain", "--deadline", "600")
    assert drained.returncode == 0 and "draining" in drained.stdout, drained.stderr
    assert home.gateway.api("GET", "/readyz", token=None).status_code == 503
    assert metric(home.gateway, "gateway_node_draining") == 1
    call(front, carl, "north")
    assert landed(nodes, "north", "Carl") == other.name
    assert sorted(home.names_in("north")) == ["Anna", "Bert"] and anna.established() and bert.established()
    assert json.loads(home.cli("node", "--json").stdout)["state"] == "draining"

    # The meeting ends: the node is drained (what `gateway drain --wait` waits for).
    anna.stop()
    bert.stop()
    waited = home.cli("drain", "--wait", "--json")
    assert waited.returncode == 0 and json.loads(waited.stdout)["state"] == "drained", waited.stderr

    # Back in service: OPTIONS 200 again, so kamailio sends the room's calls to it again.
    assert json.loads(home.cli("drain", "--cancel", "--json").stdout)["state"] == "serving"
    assert home.gateway.api("GET", "/readyz", token=None).status_code == 200
    carl.stop()
    wait_until(lambda: not other.names_in("north"), 15, what="Carl gone")
    again = phone(tmp_path, "Dora", 550.0)
    phones.append(again)
    wait_until(lambda: _probed_back(front, home), 10, what="kamailio probing the node back")
    call(front, again, "north")
    assert landed(nodes, "north", "Dora") == home.name


def test_a_killed_node_s_rooms_are_answered_by_the_other_within_5_s(cluster: Cluster) -> None:
    nodes, front, home, other = cluster.nodes, cluster.front, cluster.home, cluster.other
    anna, bert, carl = cluster.phones
    os.kill(home.gateway.process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    home.gateway.process.wait(5)
    call(front, bert, "north")
    wait_until(lambda: "Bert" in other.names_in("north"), 5.0 - (time.monotonic() - killed_at), what="Bert answered by the other node")
    assert bert.established()

    # Restarted (same address and port): kamailio's probe brings it back, and a new meeting in
    # its room is its own again.
    anna.stop()
    home.start()
    bert.stop()
    wait_until(lambda: not other.names_in("north"), 15, what="Bert gone")
    wait_until(lambda: _probed_back(front, home), 10, what="kamailio probing the node back")
    call(front, carl, "north")
    assert landed(nodes, "north", "Carl") == home.name
    # Anna's call died with the node: its call record, written when it came back, says so.
    records = home.gateway.api("GET", "/api/call-records", params={"room": "north"}).json()
    (lost,) = [r for r in records if r["name"] == "Anna"]
    assert lost["end_reason"] == "node_failed" and 0 <= lost["duration_s"] <= time.time() - lost["joined_at"]


def _routes_for_rooms(front: KamailioDispatcher, tmp_path: Path) -> list[str]:
    """Calls to every room, hung up once routed: where kamailio sent each (its log)."""
    for room in ROOMS:
        prober = phone(tmp_path, f"probe-{room}", 300.0)
        call(front, prober, room)
        wait_until(lambda r=room: any(f" to {r}: node " in line for line in front.routed()), 15, what=f"a call to {room} routed")
        prober.stop()
    return [line for line in front.routed() if any(f" to {room}: node " in line for room in ROOMS)]


def _probed_back(front: KamailioDispatcher, node: Node) -> bool:
    return front.probe_state(node.host, node.sip_port) == "active"
