"""The composed picture's layout and the spotlight, end to end against the real gateway process:
through the admin API and the CLI, over MQTT (a real mosquitto), over the signalling WebSocket (a
guest is refused), and on the meeting page in real headless Chromium (a host spotlights from the
participant list by keyboard; another browser shows that tile first, large and marked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_mqtt import BASE, COMMAND_TOKEN, Client, Mosquitto, metric, mqtt_config
from tests.support.api import API_CONFIG, OPERATOR_TOKEN
from tests.support.browser import in_meeting, join, participant_id
from tests.support.gateway import RunningGateway, start_gateway, stop_and_check, wait_until

# The WebSocket peers below never answer the media offer: keep their places while a test runs.
SLOW_NEGOTIATION = "webrtc: {negotiation_timeout_s: 300}\n"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[RunningGateway]:
    running = start_gateway(tmp_path, API_CONFIG + SLOW_NEGOTIATION)
    yield running
    stop_and_check(running)


class Peer:
    """A participant on the signalling WebSocket (no media): joins, sends, and reads what comes."""

    def __init__(self, gateway: RunningGateway, room: str, name: str, pin: str = "") -> None:
        from websockets.sync.client import connect

        self.ws = connect(gateway.ws_url, open_timeout=10).__enter__()  # (its own context manager; see close)
        self.ws.send(json.dumps({"type": "join", "room": room, "name": name, "pin": pin}))
        joined = self.next(lambda m: m["type"] in ("joined", "ended", "error"))
        assert joined["type"] == "joined", joined
        self.id: str = joined["you"]["id"]
        self.room: dict[str, Any] = joined["room"]

    def send(self, message: dict[str, Any]) -> None:
        self.ws.send(json.dumps(message))

    def next(self, wanted: Callable[[dict[str, Any]], bool], timeout: float = 15.0) -> dict[str, Any]:
        """The next message `wanted` accepts (the others are read past; `state` keeps self.room fresh)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message["type"] == "state":
                self.room = message["room"]
            if wanted(message):
                return message  # type: ignore[no-any-return]
        raise AssertionError("no such message in time")

    def state(self, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The room as the next `state` message that satisfies `wanted` shows it."""
        if wanted(self.room):
            return self.room
        return self.next(lambda m: m["type"] == "state" and wanted(m["room"]))["room"]

    def close(self) -> None:
        self.ws.close()


def picture(gateway: RunningGateway, room: str = "demo") -> dict[str, Any]:
    view = gateway.api("GET", f"/api/rooms/{room}").json()
    return view["picture"]  # type: ignore[no-any-return]


def spotlit(gateway: RunningGateway, room: str = "demo") -> list[str]:
    return [p["id"] for p in gateway.api("GET", f"/api/rooms/{room}/participants").json() if p["spotlight"]]


def run_cli(gateway: RunningGateway, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.upper().startswith("GATEWAY_")}
    environ.update({"GATEWAY_URL": gateway.base_url, "GATEWAY_TOKEN": OPERATOR_TOKEN})
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=60, env=environ)


# -- the admin API, the CLI and the WebSocket ---------------------------------------------------------


def test_api_cli_and_websocket_set_layout_and_spotlight(gateway: RunningGateway) -> None:
    host = Peer(gateway, "demo", "Hanna", pin="1234")
    guest = Peer(gateway, "demo", "Gustav")
    try:
        assert (host.room["layout"], host.room["spotlight"]) == ("speaker", None)
        assert picture(gateway) == {"layout": "speaker", "spotlight": None}

        # The API (an operator may): layout and spotlight, answered with the picture now.
        answer = gateway.api("PUT", "/api/rooms/demo/layout", token=OPERATOR_TOKEN, json={"layout": "grid"})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"layout": "grid", "spotlight": None}
        answer = gateway.api("PUT", "/api/rooms/demo/spotlight", token=OPERATOR_TOKEN, json={"participant": guest.id})
        assert answer.status_code == 200 and answer.json() == {"layout": "grid", "spotlight": guest.id}, answer.text
        # ... and the room's views show it: the room (its configured layout stays what it is), the
        # list of rooms, the participants, and every page's room state.
        room_view = gateway.api("GET", "/api/rooms/demo").json()
        assert room_view["picture"] == {"layout": "grid", "spotlight": guest.id} and room_view["layout"] == "speaker"
        listed = next(r for r in gateway.api("GET", "/api/rooms").json() if r["id"] == "demo")
        assert listed["picture"] == {"layout": "grid", "spotlight": guest.id}
        assert spotlit(gateway) == [guest.id]
        assert picture(gateway, "secret") == {"layout": "speaker", "spotlight": None}  # (each room its own)
        for peer in (host, guest):
            room = peer.state(lambda r: r["layout"] == "grid" and r["spotlight"] == guest.id)
            assert room["spotlight"] == guest.id

        # Refusals, with the API's error codes; nothing changes.
        refusals = [
            ("PUT", "/api/rooms/demo/spotlight", {"participant": "p-nobody"}, 404, "unknown_participant"),
            ("PUT", "/api/rooms/nowhere/spotlight", {"participant": None}, 404, "unknown_room"),
            ("PUT", "/api/rooms/nowhere/layout", {"layout": "grid"}, 404, "unknown_room"),
            ("PUT", "/api/rooms/demo/layout", {"layout": "mosaic"}, 422, None),
            ("PUT", "/api/rooms/demo/layout", {}, 422, None),
            ("PUT", "/api/rooms/demo/spotlight", {}, 422, None),  # null ends it; a missing key does not
            ("PUT", "/api/rooms/demo/spotlight", {"participant": guest.id, "more": 1}, 422, None),
        ]
        for method, path, body, status, code in refusals:
            refused = gateway.api(method, path, json=body)
            assert refused.status_code == status, (path, body, refused.text)
            if code is not None:
                assert refused.json()["error"] == code, refused.text
        assert gateway.api("PUT", "/api/rooms/demo/layout", token=None, json={"layout": "speaker"}).status_code == 401
        assert picture(gateway) == {"layout": "grid", "spotlight": guest.id}

        # A guest's page may do neither: the existing not-allowed error, and nothing changes.
        guest.send({"type": "spotlight", "participant": guest.id})
        error = guest.next(lambda m: m["type"] == "error")
        assert (error["code"], error["request"]) == ("not_allowed", "spotlight"), error
        guest.send({"type": "spotlight", "participant": None})
        assert guest.next(lambda m: m["type"] == "error")["code"] == "not_allowed"
        guest.send({"type": "set_layout", "layout": "speaker"})
        error = guest.next(lambda m: m["type"] == "error")
        assert (error["code"], error["request"]) == ("not_allowed", "set_layout"), error
        guest.send({"type": "spotlight"})  # malformed: said so, the socket stays
        assert guest.next(lambda m: m["type"] == "error")["code"] == "bad_message"
        assert picture(gateway) == {"layout": "grid", "spotlight": guest.id}

        # The host's page may: both pages follow.
        host.send({"type": "spotlight", "participant": host.id})
        host.send({"type": "set_layout", "layout": "speaker"})
        for peer in (host, guest):
            peer.state(lambda r: r["spotlight"] == host.id and r["layout"] == "speaker")
        host.send({"type": "spotlight", "participant": "p-nobody"})
        assert host.next(lambda m: m["type"] == "error")["code"] == "unknown_participant"

        # The CLI (operator token): the same, through the API.
        result = run_cli(gateway, "layout", "demo", "grid")
        assert result.returncode == 0 and result.stdout.strip() == "demo: room systems see the grid layout", result.stderr
        result = run_cli(gateway, "spotlight", "demo", guest.id)
        assert result.returncode == 0 and result.stdout.strip() == f"demo: spotlight on {guest.id}", result.stderr
        table = run_cli(gateway, "participants", "demo").stdout.splitlines()
        assert "SPOTLIGHT" in table[0].split()
        column = table[0].split().index("SPOTLIGHT")
        column -= 1  # (the title "NO SELF-UNMUTE" before it is two words, its values one)
        rows = {line.split()[0]: line.split() for line in table[1:]}
        assert rows[guest.id][column] == "yes" and rows[host.id][column] == "no", table
        result = run_cli(gateway, "spotlight", "demo", "--off")
        assert result.returncode == 0 and result.stdout.strip() == "demo: no spotlight", result.stderr
        refused_cli = run_cli(gateway, "spotlight", "demo")
        assert refused_cli.returncode != 0 and "either a participant or --off" in refused_cli.stderr
        refused_cli = run_cli(gateway, "spotlight", "demo", "p-nobody")
        assert refused_cli.returncode == 1 and "HTTP 404" in refused_cli.stderr
        assert picture(gateway) == {"layout": "grid", "spotlight": None}

        # The spotlight ends when its participant leaves; pages are told.
        assert gateway.api("PUT", "/api/rooms/demo/spotlight", json={"participant": guest.id}).status_code == 200
        host.state(lambda r: r["spotlight"] == guest.id)
        guest.send({"type": "leave"})
        guest.next(lambda m: m["type"] == "ended")
        assert host.state(lambda r: r["spotlight"] is None and len(r["participants"]) == 1)["layout"] == "grid"
        assert picture(gateway) == {"layout": "grid", "spotlight": None}

        # The end of the meeting brings back the room's configured layout.
        assert gateway.api("POST", "/api/rooms/demo/end").status_code == 200
        assert picture(gateway) == {"layout": "speaker", "spotlight": None}
    finally:
        host.close()
        guest.close()


# -- MQTT ---------------------------------------------------------------------------------------------


def test_mqtt_commands_set_layout_and_spotlight_and_the_events_go_out(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    watcher = Client(broker.port).ready()
    (tmp_path / "gw").mkdir()
    gateway = start_gateway(tmp_path / "gw", mqtt_config(broker) + SLOW_NEGOTIATION)
    host: Peer | None = None
    try:
        wait_until(lambda: metric(gateway, "gateway_mqtt_connected") == 1, 20, what="the gateway connected to the broker")
        host = Peer(gateway, "demo", "Hanna", pin="1234")

        # The token is checked as for every command; what a command needs is checked before it runs.
        watcher.command({"token": "wrong-token-wrong-token", "id": "l0", "command": "set_layout", "layout": "grid"})
        assert watcher.reply("l0")["error"] == "unauthorised"
        watcher.command({"token": COMMAND_TOKEN, "id": "l1", "command": "set_layout", "layout": "mosaic"})
        assert watcher.reply("l1")["error"] == "bad_request"
        watcher.command({"token": COMMAND_TOKEN, "id": "s0", "command": "spotlight"})
        assert watcher.reply("s0")["error"] == "bad_request"
        watcher.command({"token": COMMAND_TOKEN, "id": "s1", "command": "spotlight", "participant": "p-nobody"})
        assert watcher.reply("s1")["error"] == "unknown_participant"
        watcher.command({"token": COMMAND_TOKEN, "id": "s2", "command": "spotlight", "participant": None}, room="nowhere")
        assert watcher.reply("s2", room="nowhere")["error"] == "unknown_room"
        assert picture(gateway) == {"layout": "speaker", "spotlight": None}

        watcher.command({"token": COMMAND_TOKEN, "id": "l2", "command": "set_layout", "layout": "grid"})
        assert watcher.reply("l2") == {"id": "l2", "ok": True, "result": {"layout": "grid", "spotlight": None}}
        watcher.command({"token": COMMAND_TOKEN, "id": "s3", "command": "spotlight", "participant": host.id})
        assert watcher.reply("s3") == {"id": "s3", "ok": True, "result": {"layout": "grid", "spotlight": host.id}}
        assert picture(gateway) == {"layout": "grid", "spotlight": host.id}
        host.state(lambda r: r["layout"] == "grid" and r["spotlight"] == host.id)

        (layout_event,) = wait_until(lambda: watcher.events("layout_changed"), 20, what="the layout_changed event")  # type: ignore[misc]
        assert layout_event["data"] == {"layout": "grid"} and layout_event["by"] is None and layout_event["node"]
        (spot_event,) = wait_until(lambda: watcher.events("spotlight_changed"), 20, what="the spotlight_changed event")  # type: ignore[misc]
        assert spot_event["participant"] == host.id and spot_event["data"] == {"spotlight": host.id}
        assert spot_event["participant_name"] == "Hanna" and spot_event["participant_kind"] == "browser"

        watcher.command({"token": COMMAND_TOKEN, "id": "s4", "command": "spotlight", "participant": None})
        assert watcher.reply("s4")["result"] == {"layout": "grid", "spotlight": None}
        ended = wait_until(lambda: watcher.events("spotlight_changed")[1:], 20, what="the spotlight's end")
        assert ended[0]["participant"] is None and ended[0]["data"] == {"spotlight": None}  # type: ignore[index]
        # The same layout again changes nothing and says nothing.
        watcher.command({"token": COMMAND_TOKEN, "id": "l3", "command": "set_layout", "layout": "grid"})
        assert watcher.reply("l3")["ok"]
        assert len(watcher.events("layout_changed")) == 1
        assert all(m.topic.startswith(f"{BASE}/") for m in watcher.received())
    finally:
        try:
            if host is not None:
                host.close()
            stop_and_check(gateway)
        finally:
            watcher.close()
            broker.stop()


# -- the meeting page ---------------------------------------------------------------------------------

SPOTLIGHT_TILES_JS = """
() => [...document.querySelectorAll('#tiles .tile')].map((tile) => ({
  key: tile.dataset.key,
  name: tile.querySelector('.tile-name').textContent,
  spotlight: tile.classList.contains('spotlight'),
  badges: [...tile.querySelectorAll('.badges .badge')].map((b) => b.textContent.trim()),
  width: tile.getBoundingClientRect().width,
}))
"""


def tiles(page) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The page's video tiles in order: key (participant id, "self"), caption, marked, badges, width."""
    return list(page.evaluate(SPOTLIGHT_TILES_JS))


def shows_spotlight_first(page, key: str) -> bool:  # type: ignore[no-untyped-def]
    """The tile of `key` comes first, is marked (class and a "Spotlight" badge) and is the only one."""
    shown = tiles(page)
    if not shown or shown[0]["key"] != key or not shown[0]["spotlight"] or "Spotlight" not in shown[0]["badges"]:
        return False
    return not any(t["spotlight"] or "Spotlight" in t["badges"] for t in shown[1:])


def no_spotlight(page) -> bool:  # type: ignore[no-untyped-def]
    return not any(t["spotlight"] or "Spotlight" in t["badges"] for t in tiles(page))


@pytest.mark.browser
def test_a_host_spotlights_from_the_page_and_the_other_browser_shows_it(  # type: ignore[no-untyped-def]
    gateway: RunningGateway, open_participant
) -> None:
    anna = join(open_participant, gateway, "demo", "Anna", None, pin="1234")
    ben = join(open_participant, gateway, "demo", "Ben", None)
    for page in (anna, ben):
        page.set_viewport_size({"width": 1366, "height": 900})
        wait_until(lambda page=page: in_meeting(page), 40, what="in the meeting")
    ids = {"Anna": participant_id(anna), "Ben": participant_id(ben)}
    wait_until(lambda: len(tiles(anna)) == 2 and len(tiles(ben)) == 2, 20, what="two tiles on each page")
    assert no_spotlight(anna) and no_spotlight(ben)

    # The host, by keyboard: Ben into the spotlight from the participant list.
    anna.get_by_role("button", name="Spotlight Ben for everyone").press("Enter")
    wait_until(lambda: spotlit(gateway) == [ids["Ben"]], 10, what="Ben in the spotlight (API)")
    # Anna's page: Ben's tile first, marked, large; Ben's page: his own tile ("You").
    wait_until(lambda: shows_spotlight_first(anna, ids["Ben"]), 10, what="Anna's page shows Ben's tile first and marked")
    wait_until(lambda: shows_spotlight_first(ben, "self"), 10, what="Ben's page shows his own tile first and marked")
    first, other = tiles(anna)
    assert first["width"] > 1.5 * other["width"], f"the spotlight tile is not large: {tiles(anna)}"
    # The participant lists say who it is (a badge), and the host's action now ends it.
    for page in (anna, ben):
        row = page.locator("#participant-list li.participant", has=page.locator(".p-name", has_text="Ben"))
        wait_until(lambda row=row: "Spotlight" in row.locator(".badges").inner_text(), 10, what="Ben's list entry marked")
        anna_row = page.locator("#participant-list li.participant", has=page.locator(".p-name", has_text="Anna"))
        assert "Spotlight" not in anna_row.locator(".badges").inner_text()
    end_button = anna.get_by_role("button", name="End the spotlight on Ben")
    wait_until(lambda: end_button.count() == 1, 10, what="the host's button to end Ben's spotlight")
    assert anna.locator("#spotlight-hint").inner_text() == "Ben is in the spotlight: shown large for everyone."
    # A guest has no such controls.
    assert ben.get_by_role("button", name="Spotlight Anna for everyone").count() == 0
    assert ben.locator("#host-section").is_hidden()

    # The host spotlights herself (the chair): the other browser shows Anna's tile first.
    anna.get_by_role("button", name="Spotlight Anna for everyone").click()
    wait_until(lambda: shows_spotlight_first(ben, ids["Anna"]), 10, what="Ben's page shows Anna's tile first and marked")
    wait_until(lambda: shows_spotlight_first(anna, "self"), 10, what="Anna's page shows her own tile first")
    first, other = tiles(ben)
    assert first["name"] == "Anna" and first["width"] > 1.5 * other["width"], tiles(ben)

    # What room systems see: the host picks the grid, by keyboard.
    grid = anna.get_by_role("radio", name="Everyone the same size (grid)")
    assert anna.get_by_role("radio", name="Speaker large, the others below").is_checked()
    grid.focus()
    anna.keyboard.press("Space")
    wait_until(lambda: picture(gateway)["layout"] == "grid", 10, what="the grid layout (API)")
    wait_until(lambda: ben.evaluate("() => window.gatewayClient.room.layout") == "grid", 10, what="Ben's page told")
    assert grid.is_checked()

    # Looks right? The host's page with the new controls.
    anna.set_viewport_size({"width": 1366, "height": 1250})  # (the whole side panel: the list and the controls)
    anna.screenshot(path="/tmp/layout_page.png")
    ben.screenshot(path="/tmp/layout_page_guest.png")

    # A guest's page that sends the message anyway (a modified client) is refused; nothing changes.
    ben.evaluate("(id) => window.gatewayClient.send({type: 'spotlight', participant: id})", ids["Ben"])
    wait_until(
        lambda: (ben.evaluate("() => window.gatewayClient.lastError") or {}).get("request") == "spotlight",
        10,
        what="Ben's spotlight refused",
    )
    assert ben.evaluate("() => window.gatewayClient.lastError")["code"] == "not_allowed"
    assert picture(gateway) == {"layout": "grid", "spotlight": ids["Anna"]}
    assert shows_spotlight_first(ben, ids["Anna"])

    # Ending it from the host's controls: every page back to the usual tiles.
    anna.get_by_role("button", name="End spotlight", exact=True).click()
    wait_until(lambda: no_spotlight(anna) and no_spotlight(ben), 10, what="no spotlight on either page")
    assert picture(gateway)["spotlight"] is None
    assert [t["key"] for t in tiles(ben)] == ["self", ids["Anna"]]


def test_the_presentation_floor_through_the_api_and_the_room_state(gateway: RunningGateway) -> None:
    """The floor as far as it is reachable without a way to present yet (browser screen share and
    BFCP come next): a room's `presenters` setting, `presentation` in the room's view and in the
    state every page gets, and an operator's stop that finds nothing to stop."""
    made = gateway.api("POST", "/api/rooms", json={"id": "council", "host_pin": "2468", "presenters": "hosts"})
    assert made.status_code == 201, made.text
    view = gateway.api("GET", "/api/rooms/council").json()
    assert (view["presenters"], view["presentation"]) == ("hosts", None)
    host = Peer(gateway, "council", "Chair", pin="2468")
    try:
        assert (host.room["presenters"], host.room["presentation"]) == ("hosts", None)
        stopped = gateway.api("POST", "/api/rooms/council/presentation/stop", token=OPERATOR_TOKEN)
        assert stopped.status_code == 200 and stopped.json() == {"stopped": None}, stopped.text
        changed = gateway.api("PUT", "/api/rooms/council", json={"host_pin": "2468", "presenters": "everyone"})
        assert changed.status_code == 200, changed.text
        assert host.state(lambda room: room["presenters"] == "everyone")["presentation"] is None
        assert gateway.api("POST", "/api/rooms/nowhere/presentation/stop").status_code == 404
    finally:
        host.close()
