"""Browsers behind Debian's nginx with the shipped configs/nginx-gateway.conf, in front of two gateway
nodes on one machine (127.0.0.2 and 127.0.0.3), phones behind kamailio: a room's browsers meet on
the room's node; that node is killed with SIGKILL, and within 5 s both browsers are back in the
meeting on the other node as their signed resume tokens say (the host a host, the guest the host
muted still muted, and not allowed to unmute), a new phone call lands there too and hears the host
but not the muted guest. A forged token makes no one a host. People waiting in a lobby come back
to another node in the order they came in."""

from __future__ import annotations

import json
import os
import signal
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
from websockets.sync.client import connect

from gateway.webrtc.resume import Place, ResumeTokens, _b64, _unb64
from tests.support.baresip import Baresip, free_port, menu_speaking, recording_so_far, tone_level
from tests.support.browser import in_meeting, participant_id
from tests.support.cluster import (
    CLUSTER_SECRET,
    COUNCIL,
    HOST_PIN,
    OFFICE,
    NginxFront,
    Node,
    home_and_other,
    where,
)
from tests.support.gateway import logged, next_message, participant, stop_and_check, wait_until
from tests.support.kamailio import KamailioDispatcher
from tests.support.sipp import free_udp_port

pytestmark = pytest.mark.xdist_group("serial")


def heard_for(samples: np.ndarray, rate: int, tone: float) -> int:
    """One-second windows (a quarter second apart) that carry `tone` clearly."""
    windows = [samples[i : i + rate] for i in range(0, samples.size - rate, rate // 4)]
    return sum(1 for w in windows if tone_level(w, rate, tone) > 30)


def test_browsers_resume_on_the_other_node_with_role_and_mute_after_a_kill(open_participant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sip_port, http_port = free_udp_port(), free_port()
    nodes = [Node(n, host, sip_port, tmp_path / n, http_port) for n, host in (("a", "127.0.0.2"), ("b", "127.0.0.3"))]
    for node in nodes:
        node.start()
    web = NginxFront(tmp_path / "nginx", nodes)
    web.start()
    sip = KamailioDispatcher(tmp_path / "kamailio", [(n.host, n.sip_port) for n in nodes])
    sip.start()
    phone = Baresip(tmp_path / "phone", tone_hz=1000, name="Phone", codecs=("g711",))
    try:
        hilde = open_participant(f"{web.url}/r/{COUNCIL}?name=Hilde&pin={HOST_PIN}", 440.0)
        gert = open_participant(f"{web.url}/r/{COUNCIL}?name=Gert", 660.0)
        wait_until(lambda: in_meeting(hilde) and in_meeting(gert), 40, what="both in the meeting")
        home, other = home_and_other(nodes, COUNCIL, "Hilde")
        assert where(nodes, COUNCIL, "Gert") == home.name  # (nginx: one room, one node)

        # The host mutes Gert and forbids him to unmute: his page gets a token that says so.
        before = gert.evaluate("() => window.gatewayClient.resume")
        muted = home.gateway.api(
            "POST", f"/api/rooms/{COUNCIL}/participants/{participant_id(gert)}/mute", json={"forbid_self_unmute": True}
        )
        assert muted.status_code == 200, muted.text
        wait_until(lambda: gert.evaluate("() => window.gatewayClient.resume") != before, 10, what="Gert's new token")

        os.kill(home.gateway.process.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        home.gateway.process.wait(5)

        def both_back() -> bool:
            return {"Hilde", "Gert"} <= set(other.names_in(COUNCIL)) and in_meeting(hilde) and in_meeting(gert)

        wait_until(both_back, 5.0, what="both browsers back in the meeting on the other node")
        back_after = time.monotonic() - killed_at
        assert back_after < 5.0
        hilde_there = participant(other.gateway, COUNCIL, "Hilde") or {}
        gert_there = participant(other.gateway, COUNCIL, "Gert") or {}
        assert hilde_there.get("role") == "host"
        assert gert_there.get("role") == "guest" and gert_there.get("host_muted") and gert_there.get("self_unmute_forbidden")
        # Gert tries to unmute himself: still refused on the new node.
        gert.evaluate("() => window.gatewayClient.send({type: 'mute_self', muted: false})")
        wait_until(lambda: (gert.evaluate("() => window.gatewayClient.lastError") or {}).get("code") == "self_unmute_forbidden", 10, what="Gert's unmute refused")

        # A new phone call to the room lands on the surviving node and hears the host, not Gert.
        phone.start(dial=f"sip:{COUNCIL}@127.0.0.1:{sip.port}")
        wait_until(phone.established, 15, what="the phone's call established")
        wait_until(lambda: menu_speaking(phone), 15, what="the voice menu asking the phone for a PIN")
        phone.send_keys("#")
        wait_until(lambda: "Phone" in other.names_in(COUNCIL), 15, what="the phone in the meeting on the surviving node")
        heard_from = recording_so_far(phone)[0].size
        wait_until(
            lambda: heard_for(recording_so_far(phone)[0][heard_from:], 8000, 440.0) >= 4, 20, interval=0.5, what="the phone hearing Hilde"
        )
        samples, rate = recording_so_far(phone)
        assert heard_for(samples[heard_from:], rate, 660.0) == 0, "the phone heard Gert, whom the host had muted"
        print(json.dumps({"browsers_back_after_s": round(back_after, 2)}))
    finally:
        phone.stop()
        sip.stop()
        web.stop()
        for node in nodes:
            if node.alive():
                stop_and_check(node.gateway)


def test_a_forged_foreign_or_spent_resume_token_lets_no_one_in(tmp_path: Path) -> None:
    """Through the real process: a join whose token was altered to say host, or signed by a key not
    the cluster's, counts for nothing (a guest, as any newcomer), and is logged without the token; the
    token of someone the host removed does not bring them back past the lock."""
    node = Node("a", "127.0.0.2", free_udp_port(), tmp_path / "a", free_port())
    gateway = node.start()
    stranger = ResumeTokens(b"not-the-cluster-secret-0123456789", 90.0).issue(
        Place(place="stranger-01", room=COUNCIL, name="Mallory", role="host", issued=time.time())
    )
    ours = ResumeTokens(CLUSTER_SECRET.encode(), 90.0)
    guest = ours.issue(Place(place="guest-place-1", room=COUNCIL, name="Mallory", role="guest", issued=time.time()))
    version, claims, signature = guest.split(".")
    as_host = f"{version}.{_b64(_unb64(claims).replace(b'guest', b'host'))}.{signature}"

    def answer(ws) -> dict[str, object]:  # type: ignore[no-untyped-def]
        while True:
            message = json.loads(ws.recv(timeout=10))
            if message["type"] in ("joined", "ended", "error"):
                return dict(message)

    def join_with(token: str) -> dict[str, object]:
        with connect(gateway.ws_url, origin=gateway.base_url) as ws:  # type: ignore[arg-type]
            ws.send(json.dumps({"type": "join", "room": COUNCIL, "name": "Mallory", "resume": token}))
            return answer(ws)

    try:
        for token in (stranger, as_host):
            joined = join_with(token)
            assert joined["type"] == "joined" and joined["you"]["role"] == "guest", joined  # type: ignore[index]
        assert len(logged(gateway, "resume token not valid: joining anew")) == 2
        lines = gateway.log_path.read_text()
        assert signature not in lines and stranger.split(".")[2] not in lines

        # Removed, with the meeting locked (its host stays): her own token does not bring her back.
        with (
            connect(gateway.ws_url, origin=gateway.base_url) as host,  # type: ignore[arg-type]
            connect(gateway.ws_url, origin=gateway.base_url) as ws,  # type: ignore[arg-type]
        ):
            host.send(json.dumps({"type": "join", "room": COUNCIL, "name": "Hanna", "pin": HOST_PIN}))
            assert answer(host)["type"] == "joined"
            ws.send(json.dumps({"type": "join", "room": COUNCIL, "name": "Eve"}))
            joined = answer(ws)
            assert joined["type"] == "joined", joined
            token, eve = str(joined["resume"]), joined["you"]["id"]  # type: ignore[index]
            assert gateway.api("POST", f"/api/rooms/{COUNCIL}/lock").status_code == 200
            assert gateway.api("DELETE", f"/api/rooms/{COUNCIL}/participants/{eve}").status_code == 204
            ended = answer(ws)
            assert ended["type"] == "ended" and ended["reason"] == "removed", ended
            back = join_with(token)
            assert back["type"] == "ended" and back["reason"] == "locked", back
    finally:
        stop_and_check(gateway)


def test_the_lobby_order_survives_a_killed_node(tmp_path: Path) -> None:
    """Three citizens wait in a lobby on node a; it is killed; they come back to node b (as their
    pages would, with their resume tokens) in another order, and wait in the order they came in."""
    sip_port, http_port = free_udp_port(), free_port()
    a, b = (Node(n, host, sip_port, tmp_path / n, http_port) for n, host in (("a", "127.0.0.2"), ("b", "127.0.0.3")))
    a.start()
    b.start()

    try:
        with ExitStack() as sockets:
            tokens = {}
            for name in ("Erste", "Zweite", "Dritte"):
                ws = sockets.enter_context(connect(a.gateway.ws_url, origin=a.gateway.base_url))  # type: ignore[arg-type]
                ws.send(json.dumps({"type": "join", "room": OFFICE, "name": name}))
                waiting = next_message(ws, ("lobby",))
                assert waiting["type"] == "lobby", waiting
                tokens[name] = str(waiting["resume"])
            os.kill(a.gateway.process.pid, signal.SIGKILL)
            a.gateway.process.wait(5)
            for name in ("Dritte", "Erste", "Zweite"):  # (not the order they came in)
                ws = sockets.enter_context(connect(b.gateway.ws_url, origin=b.gateway.base_url))  # type: ignore[arg-type]
                ws.send(json.dumps({"type": "join", "room": OFFICE, "name": name, "resume": tokens[name]}))
                assert next_message(ws, ("lobby",))["type"] == "lobby"
            lobby = b.gateway.api("GET", f"/api/rooms/{OFFICE}/lobby").json()
            assert [entry["name"] for entry in sorted(lobby, key=lambda e: e["position"])] == ["Erste", "Zweite", "Dritte"]
    finally:
        stop_and_check(b.gateway)
