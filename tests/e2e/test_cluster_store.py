"""Two gateway nodes sharing Debian's PostgreSQL (storage.url), phones behind kamailio: a room made
through one node's API is served by the other within seconds (PostgreSQL's LISTEN/NOTIFY), and so
are its changes, a routing rule and its deletion; a call to it lands through kamailio and its call
record is read from either node; a host link signed by one node lets a host in on the other; the
database's password shows nowhere (API, logs); a node killed while a call ran: its call record says
so when the node is back."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.support.baresip import Baresip, free_port, menu_speaking
from tests.support.cluster import Node, home_and_other
from tests.support.gateway import stop_and_check, wait_until
from tests.support.kamailio import KamailioDispatcher
from tests.support.postgres import PASSWORD, Postgres
from tests.support.sipp import free_udp_port

pytestmark = pytest.mark.xdist_group("serial")

HARBOUR = {"id": "harbour", "name": "Harbour office", "host_pin": "2468"}


def test_nodes_share_rooms_rules_records_and_keys_through_postgresql(tmp_path: Path) -> None:
    database = Postgres()
    database.start()
    sip_port, http_port = free_udp_port(), free_port()
    nodes = [
        Node(name, host, sip_port, tmp_path / name, http_port, storage_url=database.url)
        for name, host in (("a", "127.0.0.2"), ("b", "127.0.0.3"))
    ]
    front: KamailioDispatcher | None = None
    phone = Baresip(tmp_path / "phone", tone_hz=700.0, name="Phone", codecs=("g711",))
    later = Baresip(tmp_path / "later", tone_hz=900.0, name="Later", codecs=("g711",))
    try:
        for node in nodes:
            node.start()
        a, b = nodes
        front = KamailioDispatcher(tmp_path / "kamailio", [(n.host, n.sip_port) for n in nodes])
        front.start()

        # A room made on node a is served by node b, and so is its change; b's status names the
        # database without its password.
        assert a.gateway.api("POST", "/api/rooms", json=HARBOUR).status_code == 201
        wait_until(lambda: b.gateway.api("GET", "/api/rooms/harbour").status_code == 200, 10, what="node b serving the new room")
        assert b.gateway.api("PATCH", "/api/rooms/harbour", json={"name": "Harbour"}).status_code == 200
        wait_until(lambda: a.gateway.api("GET", "/api/rooms/harbour").json().get("name") == "Harbour", 10, what="node a taking b's change")
        status = b.gateway.api("GET", "/api/status").json()
        assert status["database"] == f"postgresql://127.0.0.1:{database.port}/gateway"
        rule = {"id": "harbour-number", "pattern": "0800(\\d+)", "room": "harbour"}
        assert a.gateway.api("POST", "/api/rules", json=rule).status_code == 201
        wait_until(lambda: [r["id"] for r in b.gateway.api("GET", "/api/rules").json()] == ["harbour-number"], 10, what="node b's rules")

        # A call to the room (by kamailio to either node) is in its meeting; its call record, once
        # it hung up, is read from both nodes.
        phone.start(dial=f"sip:harbour@127.0.0.1:{front.port}")
        wait_until(phone.established, 15, what="the phone's call")
        wait_until(lambda: menu_speaking(phone), 15, what="the voice menu asking the phone for a PIN")
        phone.send_keys("#")
        home, _ = home_and_other(nodes, "harbour", "Phone")
        phone.stop()
        for node in nodes:
            wait_until(
                lambda n=node: any(r["name"] == "Phone" for r in n.gateway.api("GET", "/api/call-records").json()),
                10,
                what=f"the phone's call record on node {node.name}",
            )

        # A host link signed by node a lets a host in on node b (one key, in the shared store).
        link = a.gateway.api("POST", "/api/rooms/harbour/host-link").json()
        token = link["path"].split("host=", 1)[1]
        with connect(b.gateway.ws_url, origin=b.gateway.base_url) as ws:
            ws.send(json.dumps({"type": "join", "room": "harbour", "name": "Hanna", "host": token}))
            while (joined := json.loads(ws.recv(timeout=10)))["type"] not in ("joined", "ended", "error"):
                pass
        assert joined["type"] == "joined" and joined["you"]["role"] == "host", joined

        # A node killed while a call runs on it: back, its call record says the call was lost.
        later.start(dial=f"sip:harbour@127.0.0.1:{front.port}")
        wait_until(later.established, 15, what="the later call")
        wait_until(lambda: menu_speaking(later), 15, what="the voice menu asking the later phone for a PIN")
        later.send_keys("#")
        wait_until(lambda: "Later" in home.names_in("harbour"), 20, what="the later call in the meeting on the room's node")
        # (its open call is written just after it joined, off the loop: a kill before that loses it)
        wait_until(lambda: open_calls(database.url, home.name) == 1, 10, what="the later call's open call in the store")
        os.kill(home.gateway.process.pid, signal.SIGKILL)
        home.gateway.process.wait(5)
        later.stop()
        home.start()
        lost = [r for r in home.gateway.api("GET", "/api/call-records").json() if r["name"] == "Later"]
        assert [r["end_reason"] for r in lost] == ["node_failed"]

        # The room deleted on one node is gone from the other.
        assert a.gateway.api("DELETE", "/api/rules/harbour-number").status_code == 204
        assert a.gateway.api("DELETE", "/api/rooms/harbour").status_code == 204
        wait_until(lambda: b.gateway.api("GET", "/api/rooms/harbour").status_code == 404, 10, what="node b dropping the room")
        for node in nodes:
            assert PASSWORD not in node.gateway.log_path.read_text()
    finally:
        phone.stop()
        later.stop()
        if front is not None:
            front.stop()
        for node in nodes:
            if node.alive():
                stop_and_check(node.gateway)
        database.stop()


def open_calls(url: str, node: str) -> int:
    """The calls the store holds open for a node (read straight from PostgreSQL)."""
    import psycopg

    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT count(*) FROM open_calls WHERE node = %s", (node,)).fetchone()
    return int(row[0]) if row else 0
