"""One meeting across two nodes through the backplane (gateway/cluster/): a browser on node a
(127.0.0.2) and a phone (baresip) on node b (127.0.0.3) call the same room directly, as happens when
fronts send them apart. They hear each other; each node shows the other's participant; the host's
mute on node a silences the phone on the media of node b, and her allowing it again crosses too; a
forged backplane peer gets no link and no audio in. When node b is killed, its phone leaves node a's
meeting and the browser's meeting goes on."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.baresip import Baresip, free_port, menu_speaking, recording_so_far, tone_level
from tests.support.browser import hears, in_meeting
from tests.support.cluster import CLUSTER_SECRET, COUNCIL, HOST_PIN, Node
from tests.support.gateway import participant, stop_and_check, wait_until
from tests.support.sipp import free_udp_port

pytestmark = pytest.mark.xdist_group("serial")


def heard_for(samples: np.ndarray, rate: int, tone: float) -> int:
    """Half-second windows (a quarter second apart) that carry `tone` clearly."""
    windows = [samples[i : i + rate // 2] for i in range(0, samples.size - rate // 2, rate // 4)]
    return sum(1 for w in windows if tone_level(w, rate, tone) > 30)


def test_a_browser_and_a_phone_on_two_nodes_meet_and_the_hosts_mute_crosses(open_participant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sip_port, http_port, backplane_port = free_udp_port(), free_port(), free_udp_port()
    hosts = {"a": "127.0.0.2", "b": "127.0.0.3"}
    peers = tuple(f"{host}:{backplane_port}" for host in hosts.values())  # (each node's list names itself too)
    a, b = (Node(n, h, sip_port, tmp_path / n, http_port, backplane_port=backplane_port, peers=peers) for n, h in hosts.items())
    a.start()
    b.start()
    phone = Baresip(tmp_path / "phone", tone_hz=1000, name="Phone", codecs=("g711",))
    try:
        wait_until(lambda: a.linked_with() == {"b"} and b.linked_with() == {"a"}, 15, what="the nodes' backplane link")
        hilde = open_participant(f"{a.gateway.base_url}/r/{COUNCIL}?name=Hilde&pin={HOST_PIN}", 440.0)
        wait_until(lambda: in_meeting(hilde), 40, what="Hilde in the meeting on node a")
        phone.start(dial=f"sip:{COUNCIL}@{b.host}:{b.sip_port}")
        wait_until(phone.established, 15, what="the phone's call to node b")
        wait_until(lambda: menu_speaking(phone), 15, what="node b's voice menu asking for a PIN")
        phone.send_keys("#")
        wait_until(lambda: "Phone" in a.names_in(COUNCIL), 15, what="the phone (on node b) shown on node a")
        assert "Hilde" in b.names_in(COUNCIL)
        assert b.names_in(COUNCIL).count("Phone") == a.names_in(COUNCIL).count("Hilde") == 1

        # They hear each other across the nodes
        wait_until(lambda: hears(hilde, 1000.0), 20, what="Hilde (node a) hearing the phone (node b)")
        start = recording_so_far(phone)[0].size
        wait_until(lambda: heard_for(recording_so_far(phone)[0][start:], 8000, 440.0) >= 4, 20, interval=0.5, what="the phone hearing Hilde")

        # The host mutes the phone from her page on node a: node b enforces it on the phone's audio
        phone_id = str((participant(a.gateway, COUNCIL, "Phone") or {})["id"])
        hilde.evaluate("(id) => window.gatewayClient.send({type: 'mute', participant: id, forbid_self_unmute: true})", phone_id)
        wait_until(
            lambda: (participant(b.gateway, COUNCIL, "Phone") or {}).get("host_muted") is True, 10, what="the phone muted on node b"
        )
        served = participant(b.gateway, COUNCIL, "Phone") or {}
        assert served.get("self_unmute_forbidden") is True
        muted_at = hilde.evaluate("() => Date.now()")
        time.sleep(0.5)  # (what was on its way across when the mute came)
        wait_until(lambda: not hears(hilde, 1000.0), 5, what="the muted phone no longer heard on node a")
        time.sleep(2.0)  # deliberate: silence is proven over time
        last = hilde.evaluate("(f) => window.__monitor.lastHeard[f] || 0", 1000.0)
        assert last < muted_at + 600, "the phone was heard on node a after the host muted it on node a"
        counters = b.gateway.api("GET", f"/api/rooms/{COUNCIL}/participants").json()
        dropped = next(p for p in counters if p["name"] == "Phone")["media"]["audio_frames_dropped_muted"]
        assert dropped > 50, "node b's mixer did not drop the muted phone's audio"
        # The phone presses *6 to unmute itself: refused (the host forbade it), still silent
        phone.send_keys("*6")
        time.sleep(1.0)
        assert (participant(b.gateway, COUNCIL, "Phone") or {}).get("host_muted") is True

        # The host allows it again: heard again
        hilde.evaluate("(id) => window.gatewayClient.send({type: 'unmute', participant: id})", phone_id)
        wait_until(lambda: hears(hilde, 1000.0), 10, what="the phone heard again after the host's unmute")

        # A forged peer (no secret) gets no link, and media sent at the backplane's port is dropped
        with socket.create_connection((a.host, backplane_port), timeout=5) as forged:
            hello = json.dumps({"hello": 1, "node": "mallory", "nonce": "0" * 32}).encode()
            forged.sendall(struct.pack("!I", 32 + len(hello)) + bytes(32) + hello)
            forged.recv(4096)  # (the responder's hello: the attacker learns no proof it can use)
            proof = json.dumps({"hello": 3, "proof": "00" * 32}).encode()
            forged.sendall(struct.pack("!I", 32 + len(proof)) + bytes(32) + proof)
            forged.settimeout(5)
            assert forged.recv(4096) == b"", "the node kept a link that proved nothing"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for n in range(20):
                udp.sendto(bytes([0x80, 111]) + struct.pack("!HII", n, n * 960, 1234) + b"\xff" * 80, (a.host, backplane_port))
        wait_until(
            lambda: (a.gateway.api("GET", "/api/node").json()["backplane"]["datagrams_foreign"]) >= 20, 5, what="forged datagrams counted"
        )
        node_a = a.gateway.api("GET", "/api/node").json()["backplane"]
        assert node_a["links_refused"] == 0 and set(node_a["links"]) == {"b"}
        assert node_a["links"]["b"]["dropped_unauthentic"] == 0 and node_a["links"]["b"]["packets_in"] > 100
        for node in (a, b):
            assert CLUSTER_SECRET not in node.gateway.log_path.read_text()

        # Node b dies: its phone leaves node a's meeting, Hilde's goes on
        os.kill(b.gateway.process.pid, signal.SIGKILL)
        b.gateway.process.wait(5)
        killed_at = time.monotonic()
        wait_until(lambda: a.names_in(COUNCIL) == ["Hilde"], 10, what="the dead node's phone gone from node a")
        print(json.dumps({"phone_gone_from_node_a_after_s": round(time.monotonic() - killed_at, 2)}))
        assert in_meeting(hilde) and a.linked_with() == set()
        # The phone's call record is node b's to write (at its restart: node_failed), not node a's
        records = a.gateway.api("GET", "/api/call-records", params={"room": COUNCIL}).json()
        assert [r["name"] for r in records] == [], records
    finally:
        phone.stop()
        for node in (a, b):
            if node.alive():
                stop_and_check(node.gateway)

