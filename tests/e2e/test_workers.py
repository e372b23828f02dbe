"""Every core: `gateway run` with two workers. A browser host and a phone that landed on different
workers meet in one room (they hear each other, the host's mute applies on the other worker); the
browser's worker is killed with SIGKILL: the supervisor restarts it and says so (log, /api/node,
/metrics), the browser is back in the meeting within 5 s, and the phone on the other worker never
left and hears her again."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from websockets.sync.client import connect

from tests.support.baresip import Baresip, menu_speaking, recording_so_far, tone_level
from tests.support.browser import (
    content_frames,
    hears,
    in_meeting,
    participant_id,
    share_state,
    shows_content_first_and_large,
    tile_colours,
    video_frames_by_sender,
    write_solid_y4m,
)
from tests.support.gateway import (
    ADMIN_TOKEN,
    RunningGateway,
    logged,
    metric,
    next_message,
    participants,
    start_gateway,
    stop_and_check,
    wait_until,
)
from tests.support.video import colour_fraction, load_rgb

pytestmark = pytest.mark.xdist_group("serial")

CONFIG = f"""
server: {{host: 127.0.0.1, port: 0, workers: 2}}
admin: {{token: {ADMIN_TOKEN}}}
logging: {{level: debug, format: json}}
sip: {{host: 127.0.0.1, port: 0, language: en, digit_timeout_s: 2}}
storage: {{path: {{db}}}}
mqtt: {{enabled: false, node: box}}
admission: {{max_loop_lag_ms: 1000}}
rooms:
  - {{id: council, name: Council, host_pin: "1234"}}
  - {{id: office, name: Citizen office, host_pin: "1234", lobby: true}}
"""


def node_state(gateway: RunningGateway) -> dict[str, object]:
    return dict(gateway.api("GET", "/api/node").json())


def workers_up(gateway: RunningGateway) -> bool:
    workers = node_state(gateway).get("workers") or []
    return len(workers) == 2 and all(w["alive"] for w in workers)  # type: ignore[index]


def served_by(gateway: RunningGateway, name: str) -> str | None:
    return next((str(p["node"]) for p in participants(gateway, "council") if p["name"] == name), None)


def heard_for(samples: np.ndarray, rate: int, tone: float) -> int:
    windows = [samples[i : i + rate // 2] for i in range(0, samples.size - rate // 2, rate // 4)]
    return sum(1 for w in windows if tone_level(w, rate, tone) > 30)


def test_two_workers_share_a_room_and_a_killed_worker_comes_back(open_participant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    gateway = start_gateway(tmp_path, CONFIG.replace("{db}", str(tmp_path / "gateway.sqlite")))
    phones: list[Baresip] = []
    try:
        wait_until(lambda: workers_up(gateway), 30, what="both workers up")
        hilde = open_participant(f"{gateway.base_url}/r/council?name=Hilde&pin=1234", 440.0)
        wait_until(lambda: in_meeting(hilde), 40, what="Hilde in the meeting")
        hilde_worker = wait_until(lambda: served_by(gateway, "Hilde"), 10, what="Hilde's worker")
        # Phones until one lands on the other worker (the kernel hashes each sender to a worker)
        phone = None
        for n in range(10):
            candidate = Baresip(tmp_path / f"phone{n}", tone_hz=1000, name=f"Phone{n}", codecs=("g711",))
            phones.append(candidate)
            candidate.start(dial=f"sip:council@127.0.0.1:{gateway.sip_port}")
            wait_until(candidate.established, 15, what=f"phone {n} established")
            wait_until(lambda c=candidate: menu_speaking(c), 15, what=f"phone {n} asked for a PIN")
            candidate.send_keys("#")
            worker = wait_until(lambda n=n: served_by(gateway, f"Phone{n}"), 15, what=f"phone {n} in the meeting")
            if worker != hilde_worker:
                phone = candidate
                break
            candidate.stop()  # (on Hilde's worker: its 1000 Hz would blur what crosses)
            wait_until(lambda n=n: served_by(gateway, f"Phone{n}") is None, 15, what=f"phone {n} gone")
        assert phone is not None, "ten phones all landed on one worker"
        name = phone._settings[1]
        print(json.dumps({"phones_until_the_other_worker": len(phones), "hilde": hilde_worker}))

        # One meeting across the workers: they hear each other
        wait_until(lambda: hears(hilde, 1000.0), 20, what="Hilde hearing the phone on the other worker")
        start = recording_so_far(phone)[0].size
        wait_until(lambda: heard_for(recording_so_far(phone)[0][start:], 8000, 440.0) >= 4, 20, interval=0.5, what="the phone hearing Hilde")

        # The host's mute applies on the phone's worker
        phone_id = next(str(p["id"]) for p in participants(gateway, "council") if p["name"] == name)
        hilde.evaluate("(id) => window.gatewayClient.send({type: 'mute', participant: id})", phone_id)
        wait_until(lambda: not hears(hilde, 1000.0), 10, what="the muted phone silent for Hilde")
        muted_at = hilde.evaluate("() => Date.now()")
        time.sleep(2.0)  # deliberate: silence is proven over time
        assert hilde.evaluate("(f) => window.__monitor.lastHeard[f] || 0", 1000.0) < muted_at, "the muted phone was heard"
        hilde.evaluate("(id) => window.gatewayClient.send({type: 'unmute', participant: id})", phone_id)
        wait_until(lambda: hears(hilde, 1000.0), 10, what="the phone heard again")

        # Hilde's worker is killed: the supervisor restarts it, and Hilde is back within 5 s
        workers = node_state(gateway)["workers"]
        index = int(str(hilde_worker).rsplit("-", 1)[1])
        victim = next(w for w in workers if w["index"] == index)  # type: ignore[union-attr]
        os.kill(int(victim["pid"]), signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(lambda: not in_meeting(hilde), 3.0, interval=0.05, what="Hilde's page noticing her worker gone")
        wait_until(lambda: in_meeting(hilde) and served_by(gateway, "Hilde") is not None, 5.0, what="Hilde back in the meeting")
        back_after = time.monotonic() - killed_at
        wait_until(lambda: workers_up(gateway), 15, what="the killed worker restarted")
        restarted = next(w for w in node_state(gateway)["workers"] if w["index"] == index)  # type: ignore[union-attr]
        assert restarted["restarts"] == 1 and restarted["pid"] != victim["pid"] and restarted["last_exit"] == "signal 9"
        assert logged(gateway, "worker died; restarting it", how="signal 9", worker=index)
        wait_until(lambda: metric(gateway, "gateway_worker_restarts_total", worker=str(index)) == 1, 10, what="the restart in /metrics")
        # The phone on the other worker never left, and hears Hilde again
        assert phone.established() and served_by(gateway, name) is not None
        start = recording_so_far(phone)[0].size
        wait_until(lambda: heard_for(recording_so_far(phone)[0][start:], 8000, 440.0) >= 4, 20, interval=0.5, what="the phone hearing Hilde again")
        print(json.dumps({"browser_back_after_s": round(back_after, 2)}))
    finally:
        for candidate in phones:
            candidate.stop()
        stop_and_check(gateway, expected_errors=("worker died; restarting it",))


SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "gateway.yaml"


def test_the_shipped_configuration_runs_a_worker_per_core(tmp_path: Path) -> None:
    """The Quickstart's `make run` (configs/gateway.yaml: workers auto) on free ports: one worker per
    core, each up with its own HTTP port, the meeting page served, and a phone's call answered."""
    env = {"GATEWAY_SERVER__PORT": "0", "GATEWAY_SIP__PORT": "0", "GATEWAY_H323__PORT": "0", "GATEWAY_STORAGE__PATH": str(tmp_path / "gw.sqlite3")}
    gateway = start_gateway(tmp_path, SHIPPED.read_text(), env=env, token="demo-admin-token-change-me")
    phone = Baresip(tmp_path / "phone", tone_hz=1000, name="Phone", codecs=("g711",))
    try:
        cores = os.cpu_count() or 1
        wait_until(lambda: len([w for w in node_state(gateway).get("workers") or [] if w["alive"]]) == cores, 30, what="a worker per core")  # type: ignore[union-attr]
        for worker in node_state(gateway)["workers"]:  # type: ignore[union-attr]
            assert gateway.api("GET", "/api/node", base_url=worker["url"]).status_code == 200
        assert "<html" in gateway.api("GET", "/r/demo").text.lower()
        phone.start(dial=f"sip:demo@127.0.0.1:{gateway.sip_port}")
        wait_until(phone.established, 15, what="the phone's call")
        wait_until(lambda: menu_speaking(phone), 15, what="the voice menu")
    finally:
        phone.stop()
        stop_and_check(gateway)


def test_a_host_on_one_worker_admits_and_denies_citizens_waiting_on_the_other(tmp_path: Path) -> None:
    """The lobby across workers: citizens wait on worker 1 (its own port), the host is on worker 0;
    worker 0's API lists them in the order they came, and its admit and deny reach worker 1."""
    gateway = start_gateway(tmp_path, CONFIG.replace("{db}", str(tmp_path / "gateway.sqlite")))

    try:
        wait_until(lambda: workers_up(gateway), 30, what="both workers up")
        urls = {w["index"]: str(w["url"]) for w in node_state(gateway)["workers"]}  # type: ignore[union-attr]
        ws_url = {i: url.replace("http", "ws", 1) + "/ws" for i, url in urls.items()}
        with (
            connect(ws_url[0], origin=urls[0]) as host,  # type: ignore[arg-type]
            connect(ws_url[1], origin=urls[1]) as erste,  # type: ignore[arg-type]
            connect(ws_url[1], origin=urls[1]) as zweite,  # type: ignore[arg-type]
        ):
            host.send(json.dumps({"type": "join", "room": "office", "name": "Hanna", "pin": "1234"}))
            assert next_message(host, ("joined",))["type"] == "joined"
            for ws, name in ((erste, "Erste"), (zweite, "Zweite")):
                ws.send(json.dumps({"type": "join", "room": "office", "name": name}))
                assert next_message(ws, ("lobby",))["type"] == "lobby"

            def lobby() -> list[dict[str, object]]:
                entries = gateway.api("GET", "/api/rooms/office/lobby", base_url=urls[0]).json()
                return sorted(entries, key=lambda e: e["position"])

            wait_until(lambda: [e["name"] for e in lobby()] == ["Erste", "Zweite"], 10, what="worker 0 listing worker 1's lobby")
            first, second = (str(e["id"]) for e in lobby())
            assert gateway.api("POST", f"/api/rooms/office/lobby/{first}/admit", base_url=urls[0]).status_code == 200
            assert next_message(erste, ("joined",))["type"] == "joined"
            assert gateway.api("POST", f"/api/rooms/office/lobby/{second}/deny", base_url=urls[0]).status_code == 204
            denied = next_message(zweite, ("joined",))
            assert denied["type"] == "ended" and denied["reason"] == "denied", denied
            served = {str(p["name"]): p["node"] for p in gateway.api("GET", "/api/rooms/office/participants", base_url=urls[0]).json()}
            assert served == {"Hanna": "box-0", "Erste": "box-1"}, served
    finally:
        stop_and_check(gateway)


def test_browsers_on_two_workers_see_each_others_camera(open_participant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Video across the backplane: Anna on worker 0 and Ben on worker 1 (each through its worker's
    own port), each camera a solid colour; each page shows the other's colour in the tile with the
    other's name, and the frames crossed the link between the workers."""
    gateway = start_gateway(tmp_path, CONFIG.replace("{db}", str(tmp_path / "gateway.sqlite")))
    colours = {"Anna": (220, 30, 30), "Ben": (30, 200, 30)}
    try:
        wait_until(lambda: workers_up(gateway), 30, what="both workers up")
        urls = {w["index"]: str(w["url"]) for w in node_state(gateway)["workers"]}  # type: ignore[union-attr]
        pages = {}
        for index, (name, rgb) in enumerate(colours.items()):
            clip = write_solid_y4m(tmp_path / f"{name}.y4m", rgb)
            pin = "&pin=1234" if name == "Anna" else ""
            pages[name] = open_participant(f"{urls[index]}/r/council?name={name}{pin}", None, video_file=clip)
        for name, page in pages.items():
            wait_until(lambda page=page: in_meeting(page), 40, what=f"{name} in the meeting")
        assert {p["name"]: p["node"] for p in participants(gateway, "council")} == {"Anna": "box-0", "Ben": "box-1"}

        def colour_of(page, other: str) -> list[int] | None:  # type: ignore[no-untyped-def]
            tile = tile_colours(page).get(other)
            return tile["rgb"] if tile else None  # type: ignore[return-value]

        def near(rgb: list[int] | None, want: tuple[int, int, int]) -> bool:
            return rgb is not None and sum((a - b) ** 2 for a, b in zip(rgb, want, strict=True)) ** 0.5 <= 60

        for name, other in (("Anna", "Ben"), ("Ben", "Anna")):
            page = pages[name]
            wait_until(lambda page=page, other=other: near(colour_of(page, other), colours[other]), 30,
                       what=f"{name}'s page showing {other}'s camera from the other worker")  # fmt: skip
            print(name, "sees", other, colour_of(page, other))
        links = {
            index: gateway.api("GET", "/api/node", base_url=url).json()["backplane"]["links"]
            for index, url in urls.items()
        }
        for index, state in links.items():
            (link,) = state.values()
            assert link["video_frames_out"] > 0 and link["video_frames_in"] > 0 and link["video_frames_lost"] == 0, (index, link)
        print(json.dumps({i: {k: v for k, v in next(iter(s.values())).items() if k.startswith("video")} for i, s in links.items()}))

        # Ben's chat message reaches Anna's page on the other worker
        from tests.e2e.test_chat import chat

        pages["Ben"].evaluate("() => window.gatewayClient.ws.send(JSON.stringify({type: 'chat', text: 'Guten Morgen'}))")
        wait_until(lambda: [(m["name"], m["text"]) for m in chat(pages["Anna"])] == [("Ben", "Guten Morgen")], 10,
                   what="Ben's chat message on Anna's page (the other worker)")  # fmt: skip

        # Ben (worker 1) shares his screen: Anna's page (worker 0) shows it first and large, and
        # worker 0's API shows him presenting; Anna, a host, stops it from her worker
        ids = {name: participant_id(page) for name, page in pages.items()}
        pages["Ben"].set_viewport_size({"width": 1366, "height": 900})
        pages["Anna"].set_viewport_size({"width": 1366, "height": 900})
        pages["Ben"].get_by_role("button", name="Share screen", exact=True).click()

        def presenting(index: int) -> object:
            shown = gateway.api("GET", "/api/rooms/council", base_url=urls[index]).json()["presentation"]
            return shown and shown["presenter"]

        wait_until(lambda: presenting(0) == ids["Ben"], 15, what="worker 0 showing Ben presenting")
        wait_until(lambda: shows_content_first_and_large(pages["Anna"], ids["Ben"], "Ben"), 30,
                   what="Anna's page showing Ben's screen (the other worker) first and large")  # fmt: skip
        wait_until(lambda: content_frames(pages["Anna"], ids["Ben"]) > 10, 20, what="Anna decoding Ben's screen")
        pages["Anna"].evaluate("(id) => window.gatewayClient.send({type: 'stop_presentation', participant: id})", ids["Ben"])
        wait_until(lambda: presenting(1) is None and presenting(0) is None, 10, what="the presentation ended on both workers")
        wait_until(lambda: share_state(pages["Ben"])["sharing"] is False, 10, what="Ben's page told his share was stopped")

        # A room system (H.264, one composed picture) on whichever worker took its call: its
        # picture shows the camera of the browser on the other worker, and that browser decodes its camera
        system = Baresip(tmp_path / "room-system", tone_hz=1000, name="Room", video="clip", video_codecs=("H264",))
        try:
            system.start(dial=f"sip:council@127.0.0.1:{gateway.sip_port}")
            wait_until(system.established, 20, what="the room system's call established")
            wait_until(lambda: menu_speaking(system), 15, what="the room system asked for a PIN")
            system.send_keys("#")
            worker = wait_until(lambda: served_by(gateway, "Room"), 20, what="the room system in the meeting")
            far = "Anna" if worker == "box-1" else "Ben"
            room_id = next(str(p["id"]) for p in participants(gateway, "council") if p["name"] == "Room")
            wait_until(system.receiving_video, 20, what="the room system decoding its composed picture")
            colour = "red" if far == "Anna" else "green"
            wait_until(lambda: colour_fraction(load_rgb(system.snapshot()), colour) > 0.03, 30,
                       what=f"{far}'s camera (the other worker) in the room system's picture")  # fmt: skip
            wait_until(lambda: video_frames_by_sender(pages[far]).get(room_id, 0) >= 10, 30,
                       what=f"{far} decoding the room system's camera from the other worker")  # fmt: skip
            print(json.dumps({"room_system_on": worker, "far": far, colour: colour_fraction(load_rgb(system.snapshot()), colour)}))
        finally:
            system.stop()

        # Ben's worker is killed: he comes back (on the restarted worker, his page's port) and Anna
        # sees his camera again, and he hers
        victim = next(w for w in node_state(gateway)["workers"] if w["index"] == 1)  # type: ignore[union-attr]
        os.kill(int(victim["pid"]), signal.SIGKILL)
        wait_until(lambda: not in_meeting(pages["Ben"]), 5, interval=0.05, what="Ben's page noticing his worker gone")
        wait_until(lambda: near(colour_of(pages["Anna"], "Ben"), colours["Ben"]) is False, 10, what="Ben's camera gone from Anna's page")
        wait_until(lambda: in_meeting(pages["Ben"]) and served_by(gateway, "Ben") is not None, 15, what="Ben back in the meeting")
        for name, other in (("Anna", "Ben"), ("Ben", "Anna")):
            wait_until(lambda page=pages[name], other=other: near(colour_of(page, other), colours[other]), 30,
                       what=f"{name}'s page showing {other}'s camera again after the restart")  # fmt: skip
    finally:
        stop_and_check(gateway, expected_errors=("worker died; restarting it",))


def test_each_worker_dials_out_and_the_answers_find_it(tmp_path: Path) -> None:
    """All workers send and receive SIP on one UDP port, and the kernel gives every datagram from a
    sender to one worker. A room system is called from worker 0, then from worker 1: its answers all
    reach one worker, which hands those for the other's call over the backplane (the branch and tag
    say whose), so both calls are set up, carried and hung up. A room system registered with one
    worker is called from both (the worker it registered with told the other)."""
    rule = r"sip:[A-Za-z0-9]+@127\.0\.0\.1:\d+"
    config = CONFIG.replace("{db}", str(tmp_path / "gateway.sqlite")).replace(
        "sip: {host: 127.0.0.1, port: 0,", f"sip: {{host: 127.0.0.1, port: 0, dial_out_allow: ['{rule}'],"
    )
    gateway = start_gateway(tmp_path, config)
    password = "Ratssaal-Kennwort-42"
    system = Baresip(tmp_path / "board-room", tone_hz=1000, name="Board room")
    registered = Baresip(
        tmp_path / "chamber", tone_hz=500, name="Chamber", register=(f"sip:chamber@127.0.0.1:{gateway.sip_port}", password)
    )
    try:
        wait_until(lambda: workers_up(gateway), 30, what="both workers up")
        urls = {w["index"]: str(w["url"]) for w in node_state(gateway)["workers"]}  # type: ignore[union-attr]
        entry = {"id": "chamber", "name": "Chamber", "uri": "sip:chamber@127.0.0.1", "password": password}
        assert gateway.api("POST", "/api/systems", json=entry, base_url=urls[0]).status_code == 201

        def registration(index: int) -> dict[str, object]:
            states = gateway.api("GET", "/api/registrations", base_url=urls[index]).json()
            return next((s for s in states if s["system"] == "chamber"), {})

        wait_until(lambda: registration(1).get("registered") is False, 10, what="worker 1 knowing the entry")
        system.start()  # (answers calls itself)
        registered.start()
        for index in urls:
            wait_until(lambda index=index: registration(index).get("registered"), 20, what=f"the chamber registered (worker {index}'s view)")
        assert registration(0)["address"] == registration(1)["address"] == f"127.0.0.1:{registered.sip_port}"

        def dialled() -> list[dict[str, object]]:
            return [p for p in participants(gateway, "council") if p["kind"] == "sip_room_system"]

        for device, callee in ((system, {"uri": f"sip:A@127.0.0.1:{system.sip_port}"}), (registered, {"system": "chamber"})):
            for index, url in urls.items():
                placed = gateway.api("POST", "/api/rooms/council/dial", json=callee, base_url=url)
                assert placed.status_code == 202, placed.text
                wait_until(lambda d=device, n=index + 1: d.log().count("Call established") == n, 20, what=f"{callee}: the call from worker {index} answered")
                member = wait_until(lambda: dialled() or None, 15, what=f"{callee} in the room (worker {index})")[0]  # type: ignore[index]
                assert member["node"] == f"box-{index}", member
                removed = gateway.api("DELETE", f"/api/rooms/council/participants/{member['id']}", base_url=url)
                assert removed.status_code == 204, removed.text
                wait_until(lambda: not dialled(), 15, what=f"{callee}: the call from worker {index} hung up")
                wait_until(lambda d=device, n=index + 1: d.log().count("terminated (duration") == n, 15,
                           what=f"{callee}: the callee saw the call from worker {index} end")  # fmt: skip
        handed = {i: gateway.api("GET", "/api/node", base_url=url).json()["backplane"]["sip_handed"] for i, url in urls.items()}
        taken = {i: gateway.api("GET", "/api/node", base_url=url).json()["backplane"]["sip_taken"] for i, url in urls.items()}
        print(json.dumps({"sip_handed": handed, "sip_taken": taken}))
        assert sum(handed.values()) >= 4 and sum(taken.values()) == sum(handed.values()), (handed, taken)
    finally:
        system.stop()
        registered.stop()
        stop_and_check(gateway)


def test_the_workers_speak_on_mqtt_as_one_node(tmp_path: Path) -> None:
    """With a real mosquitto: each worker says its presence under the machine's node, a command to
    the node is carried out once (one worker takes it) whichever worker serves the room's people,
    and every event of the meeting is published once: a participant's by the worker serving it, a
    room-wide one (the lock) by the room's hub."""
    from tests.e2e.test_mqtt import BASE, COMMAND_TOKEN, Client, Mosquitto, mqtt_config

    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    mqtt = mqtt_config(broker).split("\nmqtt:", 1)[1]
    config = CONFIG.replace("{db}", str(tmp_path / "gateway.sqlite")).replace("mqtt: {enabled: false, node: box}\n", "")
    gateway = start_gateway(tmp_path, config + "mqtt:" + mqtt)
    watcher = Client(broker.port).ready()
    try:
        wait_until(lambda: workers_up(gateway), 30, what="both workers up")
        for index in (0, 1):
            wait_until(lambda index=index: any(m.payload.get("state") == "online" for m in watcher.received(f"{BASE}/workers/{index}/status")),
                       20, what=f"worker {index} online")  # fmt: skip
        urls = {w["index"]: str(w["url"]) for w in node_state(gateway)["workers"]}  # type: ignore[union-attr]
        ws_url = {i: url.replace("http", "ws", 1) + "/ws" for i, url in urls.items()}
        with (
            connect(ws_url[0], origin=urls[0]) as hanna,  # type: ignore[arg-type]
            connect(ws_url[1], origin=urls[1]) as erste,  # type: ignore[arg-type]
        ):
            hanna.send(json.dumps({"type": "join", "room": "council", "name": "Hanna", "pin": "1234"}))
            assert next_message(hanna, ("joined",))["type"] == "joined"
            erste.send(json.dumps({"type": "join", "room": "council", "name": "Erste"}))
            assert next_message(erste, ("joined",))["type"] == "joined"
            wait_until(lambda: len(watcher.events("participant_joined", room="council")) >= 2, 15, what="both joins published")
            for index in (0, 1):  # (both workers show both: the one serving each publishes it)
                wait_until(lambda index=index: len(gateway.api("GET", "/api/rooms/council/participants", base_url=urls[index]).json()) == 2,
                           10, what=f"worker {index} showing both")  # fmt: skip
            def locked() -> list[bool]:
                return [gateway.api("GET", "/api/rooms/council", base_url=urls[i]).json()["live"]["locked"] for i in (0, 1)]

            for n in range(3):  # (whichever worker takes a command, both follow)
                watcher.command({"token": COMMAND_TOKEN, "id": f"lock-{n}", "command": "lock" if n % 2 == 0 else "unlock"}, room="council")
                assert watcher.reply(f"lock-{n}", room="council")["ok"] is True
                wait_until(lambda n=n: locked() == [n % 2 == 0] * 2, 10, what=f"both workers following command {n}")
            wait_until(lambda: len(watcher.events("room_unlocked", room="council")) >= 1 and len(watcher.events("room_locked", room="council")) >= 2,
                       15, what="the lock events published")  # fmt: skip
            time.sleep(1.0)  # deliberate: a second copy of an event would come within this
            joined = sorted(e["participant_name"] for e in watcher.events("participant_joined", room="council"))
            replies = watcher.received(f"{BASE}/rooms/council/replies")
            counts = {
                "joined": joined,
                "room_locked": len(watcher.events("room_locked", room="council")),
                "room_unlocked": len(watcher.events("room_unlocked", room="council")),
                "replies": len(replies),
            }
            print(json.dumps(counts))
            assert counts == {"joined": ["Erste", "Hanna"], "room_locked": 2, "room_unlocked": 1, "replies": 3}, counts
    finally:
        watcher.close()
        stop_and_check(gateway)
        broker.stop()


def test_forged_sip_naming_a_worker_changes_nothing(tmp_path: Path) -> None:
    """The worker marks in branches and tags are public: a scanner can forge them. Answers and
    in-dialog requests naming a worker (one that exists, this one, or none) are handed over at
    most once, find no transaction or dialog there, and change nothing; both workers stay up, log
    no error, and still answer."""
    import socket as sockets

    gateway = start_gateway(tmp_path, CONFIG.replace("{db}", str(tmp_path / "gateway.sqlite")))
    try:
        wait_until(lambda: workers_up(gateway), 30, what="both workers up")
        urls = {w["index"]: str(w["url"]) for w in node_state(gateway)["workers"]}  # type: ignore[union-attr]
        port = gateway.sip_port

        def message(start: str, branch: str, to_tag: str, method: str = "INVITE") -> bytes:
            return (
                f"{start}\r\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch={branch}\r\nFrom: <sip:x@127.0.0.1>;tag=f1\r\n"
                f"To: <sip:council@127.0.0.1>;tag={to_tag}\r\nCall-ID: forged-{branch}@x\r\nCSeq: 1 {method}\r\n"
                "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ).encode()

        forged = []
        for worker in ("0", "1", "7", "999", "1234567"):
            forged.append(message("SIP/2.0 200 OK", f"z9hG4bKw{worker}xdeadbeef", f"w{worker}xab"))
            forged.append(message(f"BYE sip:council@127.0.0.1:{port} SIP/2.0", f"z9hG4bKforged{worker}", f"w{worker}xab", "BYE"))
        answers = []
        with sockets.socket(sockets.AF_INET, sockets.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.settimeout(2.0)
            for data in forged * 3:
                s.sendto(data, ("127.0.0.1", port))
            options = message(f"OPTIONS sip:council@127.0.0.1:{port} SIP/2.0", "z9hG4bKprobe1", "", "OPTIONS")
            s.sendto(options.replace(b";tag=\r\n", b"\r\n"), ("127.0.0.1", port))
            with contextlib.suppress(TimeoutError):
                while True:
                    answers.append(s.recv(65535).split(b"\r\n", 1)[0].decode())
        print(json.dumps({"answers": answers}))
        assert "SIP/2.0 200 OK" in answers, answers  # (the probe: the worker it reached still answers)
        assert all(a.startswith("SIP/2.0 481") or a == "SIP/2.0 200 OK" for a in answers), answers  # (no dialog)
        assert workers_up(gateway)
        for url in urls.values():
            state = gateway.api("GET", "/api/node", base_url=url).json()["backplane"]
            assert state["sip_refused"] == 0 and state["sip_taken"] <= 2 * 3 * 2, state  # (handed at most once each)
    finally:
        stop_and_check(gateway)
