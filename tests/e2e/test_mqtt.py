"""The MQTT bridge against a real mosquitto (started here, password file, anonymous refused) and the
real gateway process: presence with a last will, events of a browser and a SIP room system, commands
with and without the token, and a broker that goes away during a call."""

from __future__ import annotations

import asyncio
import getpass
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client.parser import text_string_to_metric_families

from tests.support.baresip import Baresip, free_port, menu_speaking
from tests.support.gateway import (
    ADMIN_TOKEN,
    TEST_CONFIG,
    RunningGateway,
    end_process,
    logged,
    mentions,
    start_gateway,
    stop_and_check,
    wait_until,
)

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
GATEWAY_USER, GATEWAY_PASSWORD = "gateway", "gateway-secret-pw"
CONTROLLER_USER, CONTROLLER_PASSWORD = "controller", "controller-secret-pw"
COMMAND_TOKEN = "mqtt-command-token-0123456789"
NODE = "testnode"
BASE = f"gateway/{NODE}"


class Mosquitto:
    """A broker of our own on a free port: users from a password file, no anonymous clients."""

    def __init__(self, directory: Path, persistence: bool = False) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = free_port()
        passwords = directory / "passwords"
        for n, (user, password) in enumerate(((GATEWAY_USER, GATEWAY_PASSWORD), (CONTROLLER_USER, CONTROLLER_PASSWORD))):
            subprocess.run(["mosquitto_passwd", *(["-c"] if n == 0 else []), "-b", str(passwords), user, password], check=True)
        passwords.chmod(0o600)
        self.config = directory / "mosquitto.conf"
        self.config.write_text(
            f"""listener {self.port} 127.0.0.1
allow_anonymous false
password_file {passwords}
persistence {"true" if persistence else "false"}
persistence_location {directory}/
log_dest stderr
log_type all
user {getpass.getuser()}
"""
        )
        self.log_path = directory / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT)
        wait_until(self._listening, 15, what="mosquitto listening")

    def _listening(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log_path.read_text()
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        end_process(self.process)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path / "mosquitto")
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


@dataclass
class Received:
    topic: str
    payload: Any  # JSON decoded
    retain: bool
    properties: Any
    at: float


class Client:
    """A controller or watcher on the broker (paho, MQTT v5, its own network thread)."""

    def __init__(
        self,
        port: int,
        subscribe: str | None = f"{BASE}/#",
        user: str | None = CONTROLLER_USER,
        password: str | None = CONTROLLER_PASSWORD,
        client_id: str = "",
        persistent: bool = False,
    ) -> None:
        self.messages: list[Received] = []
        self.connects: list[Any] = []
        self.subscribed = 0  # SUBACKs received
        self._lock = threading.Lock()
        self._subscribe = subscribe
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.reconnect_delay_set(0.1, 0.5)
        properties = None
        if persistent:  # the broker keeps our subscription and queues QoS 1 messages while we are away
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, keepalive=10, clean_start=not persistent, properties=properties)
        self.client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self.connects.append(reason_code)
        if not reason_code.is_failure and self._subscribe:
            client.subscribe(self._subscribe, qos=1)

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, reason_codes: Any, properties: Any) -> None:
        self.subscribed += 1

    def ready(self) -> Client:
        """Connected and subscribed (waits for the SUBACK)."""
        wait_until(lambda: self.connects and (self.subscribed or not self._subscribe), 15, what="MQTT client ready")
        return self

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            payload = json.loads(message.payload)
        except ValueError:
            payload = message.payload
        with self._lock:
            self.messages.append(Received(message.topic, payload, bool(message.retain), message.properties, time.time()))

    def received(self, topic: str | None = None, since: float = 0.0) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if (topic is None or m.topic == topic) and m.at >= since]

    def events(self, event_type: str, room: str = "demo", since: float = 0.0) -> list[dict[str, Any]]:
        return [m.payload for m in self.received(f"{BASE}/rooms/{room}/events/{event_type}", since)]

    def publish(self, topic: str, payload: bytes | str | dict[str, Any], properties: Any = None) -> None:
        body = json.dumps(payload) if isinstance(payload, dict) else payload
        self.client.publish(topic, body, qos=1, properties=properties).wait_for_publish(10)

    def command(self, body: bytes | str | dict[str, Any], room: str = "demo", properties: Any = None) -> None:
        self.publish(f"{BASE}/rooms/{room}/commands", body, properties)

    def reply(self, command_id: object, room: str = "demo", timeout: float = 20) -> dict[str, Any]:
        def answered() -> dict[str, Any] | None:
            for m in self.received(f"{BASE}/rooms/{room}/replies"):
                if isinstance(m.payload, dict) and m.payload.get("id") == command_id:
                    return m.payload
            return None

        return wait_until(answered, timeout, what=f"the reply to command {command_id!r}")  # type: ignore[return-value]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect_reason(port: int, user: str | None, password: str | None) -> Any:
    """The broker's answer to a connection with these credentials."""
    client = Client(port, subscribe=None, user=user, password=password)
    try:
        wait_until(lambda: client.connects, 10, what="CONNACK")
        return client.connects[0]
    finally:
        client.close()


def retained_status(port: int) -> dict[str, Any]:
    """What a newcomer learns of the node: the retained status message."""
    client = Client(port, subscribe=f"{BASE}/status").ready()
    try:
        found = wait_until(lambda: [m for m in client.received(f"{BASE}/status") if m.retain], 10, what="retained status")
        return found[-1].payload  # type: ignore[index,no-any-return]
    finally:
        client.close()


def mqtt_config(broker: Mosquitto, queue_max: int = 1000) -> str:
    return TEST_CONFIG + f"""
mqtt:
  enabled: true
  host: 127.0.0.1
  port: {broker.port}
  username: {GATEWAY_USER}
  password: {GATEWAY_PASSWORD}
  node: {NODE}
  command_token: {COMMAND_TOKEN}
  queue_max: {queue_max}
  keepalive_s: 5
  reconnect_min_s: 0.2
  reconnect_max_s: 1.0
"""


def fresh(directory: Path) -> Path:
    directory.mkdir(parents=True)
    return directory


def metrics(gateway: RunningGateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(gateway.base_url + "/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    assert answer.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def metric(gateway: RunningGateway, name: str, **labels: str) -> float | None:
    return metrics(gateway).get((name, tuple(sorted(labels.items()))))




def test_the_broker_refuses_anonymous_and_wrong_credentials(broker: Mosquitto) -> None:
    assert connect_reason(broker.port, None, None).is_failure
    assert connect_reason(broker.port, CONTROLLER_USER, "wrong").is_failure
    assert not connect_reason(broker.port, CONTROLLER_USER, CONTROLLER_PASSWORD).is_failure


@pytest.fixture
def controller(broker: Mosquitto) -> Iterator[Client]:
    client = Client(broker.port).ready()
    yield client
    client.close()


def test_presence_commands_refusals_and_last_will(broker: Mosquitto, controller: Client, tmp_path: Path) -> None:
    gateway = start_gateway(fresh(tmp_path / "gw1"), mqtt_config(broker))
    try:
        wait_until(lambda: metric(gateway, "gateway_mqtt_connected") == 1, 20, what="the gateway connected to the broker")
        online = retained_status(broker.port)
        assert online["state"] == "online" and online["node"] == NODE and online["version"] and online["started"] > 0
        assert gateway.api("GET", "/api/status").json()["mqtt"]["connected"] is True

        def locked() -> bool:
            return bool(gateway.api("GET", "/api/rooms/demo").json()["live"]["locked"])

        # Refused: wrong token, no token, not JSON, unknown command, missing participant. No effect.
        controller.command({"token": "wrong-token-wrong-token", "id": "bad-1", "command": "lock"})
        assert controller.reply("bad-1") == {"id": "bad-1", "ok": False, "error": "unauthorised", "reason": "missing or wrong token"}
        controller.command({"id": "bad-2", "command": "lock"})
        assert controller.reply("bad-2")["error"] == "unauthorised"
        controller.command(b"{this is not json")
        assert controller.reply(None)["error"] == "bad_request"
        controller.command({"token": COMMAND_TOKEN, "id": "bad-3", "command": "self-destruct"})
        assert controller.reply("bad-3")["error"] == "unknown_command"
        controller.command({"token": COMMAND_TOKEN, "id": "bad-4", "command": "mute", "participant": "nobody"})
        assert controller.reply("bad-4")["error"] == "unknown_participant"
        controller.command({"token": COMMAND_TOKEN, "id": "bad-5", "command": "lock"}, room="no-such-room")
        assert controller.reply("bad-5", room="no-such-room")["error"] == "unknown_room"
        assert not locked() and not controller.events("room_locked")

        # Accepted: lock with an MQTT v5 response topic and correlation data, answered there.
        answers = Client(broker.port, subscribe="controller/answers").ready()
        request = Properties(PacketTypes.PUBLISH)
        request.ResponseTopic = "controller/answers"
        request.CorrelationData = b"corr-42"
        controller.command({"token": COMMAND_TOKEN, "id": "ok-1", "command": "lock"}, properties=request)
        (answer,) = wait_until(lambda: answers.received("controller/answers"), 20, what="the answer on the response topic")
        assert answer.payload == {"id": "ok-1", "ok": True, "result": {"locked": True}}
        assert answer.properties.CorrelationData == b"corr-42"
        assert locked()
        (event,) = wait_until(lambda: controller.events("room_locked"), 20, what="the room_locked event")
        assert event["room"] == "demo" and event["node"] == NODE and event["type"] == "room_locked"
        controller.command({"token": COMMAND_TOKEN, "id": "ok-2", "command": "unlock"})
        assert controller.reply("ok-2") == {"id": "ok-2", "ok": True, "result": {"locked": False}}
        assert not locked()
        answers.close()

        # Each refusal is logged with its reason; the token (right or wrong) never is.
        refused = logged(gateway, "mqtt command refused")
        assert {line["error"] for line in refused} == {"unauthorised", "bad_request", "unknown_command"}
        log_text = gateway.log_path.read_text()
        assert COMMAND_TOKEN not in log_text and "wrong-token-wrong-token" not in log_text and GATEWAY_PASSWORD not in log_text
        assert metric(gateway, "gateway_mqtt_commands_total", result="accepted") == 2
        assert metric(gateway, "gateway_mqtt_commands_total", result="refused") == 6
    finally:
        stop_and_check(gateway)

    # A clean shutdown says so (retained), and a new start says online again.
    offline = retained_status(broker.port)
    assert offline["state"] == "offline" and offline["clean"] is True
    second = start_gateway(fresh(tmp_path / "gw2"), mqtt_config(broker))
    try:
        wait_until(lambda: retained_status(broker.port)["state"] == "online", 20, what="online again")
        # Killed without a word: the broker publishes the last will, retained.
        second.process.send_signal(signal.SIGKILL)
        second.process.wait(10)
        wait_until(lambda: retained_status(broker.port)["state"] == "offline", 20, what="the last will")
        will = retained_status(broker.port)
        assert will["clean"] is False and will["node"] == NODE
    finally:
        stop_and_check(second, expected_exit=-signal.SIGKILL)  # (killed above on purpose)


# -- with media: a browser and a SIP room system -----------------------------------------------------

def join_browser(open_participant: Any, gateway: RunningGateway, name: str, tone: float) -> Any:
    from tests.support.browser import in_meeting, join

    page = join(open_participant, gateway, "demo", name, tone, pin="1234")
    wait_until(lambda: in_meeting(page), 40, what=f"{name} in the meeting")
    return page


def participants(gateway: RunningGateway) -> list[dict[str, Any]]:
    return list(gateway.api("GET", "/api/rooms/demo/participants").json())


def join_room_system(gateway: RunningGateway, tmp_path: Path) -> tuple[Baresip, dict[str, Any]]:
    system = Baresip(tmp_path / "baresip", tone_hz=1000, name="Room 123")
    try:
        system.start(dial=f"sip:demo@127.0.0.1:{gateway.sip_port}", seconds=300)
    except AssertionError:  # Baresip.start waits 10 s for the control port: not always enough under load
        assert system.process is not None and system.process.poll() is None, system.log()
        wait_until(system._ctrl_ready, 30, what="baresip's control port (slow start)")
    wait_until(system.established, 20, what="baresip's call established")
    wait_until(lambda: metric(gateway, "gateway_sip_calls_active") == 1, 10, what="the gateway holding the call")
    # The voice menu takes keys once it talks (from the ACK on; a key before would find no menu).
    wait_until(lambda: menu_speaking(system), 15, what="the voice menu speaking to the room system")
    system.send_keys("#")  # a guest: the demo room has only a host PIN

    def member() -> dict[str, Any] | None:
        return next((p for p in participants(gateway) if p["kind"] == "sip_room_system"), None)

    return system, wait_until(member, 20, what="baresip in the room")  # type: ignore[return-value]


def by_participant(events: list[dict[str, Any]], participant: str) -> list[dict[str, Any]]:
    return [e for e in events if e["participant"] == participant]


@pytest.mark.browser
def test_events_of_a_browser_and_a_sip_room_system_and_a_mute_by_command(
    broker: Mosquitto, open_participant: Any, tmp_path: Path
) -> None:
    watcher = Client(broker.port)
    watcher.ready()
    gateway = start_gateway(fresh(tmp_path / "gw"), mqtt_config(broker))
    system: Baresip | None = None
    try:
        wait_until(lambda: metric(gateway, "gateway_mqtt_connected") == 1, 20, what="the gateway connected")
        join_browser(open_participant, gateway, "Anna", 440)
        (anna,) = [p for p in participants(gateway) if p["kind"] == "browser"]
        joined = wait_until(lambda: by_participant(watcher.events("participant_joined"), anna["id"]), 20, what="Anna's join event")
        assert joined[0]["participant_name"] == "Anna" and joined[0]["participant_kind"] == "browser"  # type: ignore[index]
        assert joined[0]["data"]["role"] == "host"  # type: ignore[index]

        system, member = join_room_system(gateway, tmp_path)
        (event,) = wait_until(lambda: by_participant(watcher.events("participant_joined"), member["id"]), 20, what="baresip's join event")  # type: ignore[misc]
        assert event["participant_name"] == "Room 123" and event["participant_kind"] == "sip_room_system"
        wait_until(lambda: by_participant(watcher.events("speaking_started"), member["id"]), 20, what="baresip speaking")

        # Without the token nothing happens; with it the room system is muted.
        watcher.command({"token": "not-the-token-at-all", "id": "m0", "command": "mute", "participant": member["id"]})
        assert watcher.reply("m0")["error"] == "unauthorised"
        watcher.command({"token": COMMAND_TOKEN, "id": "m1", "command": "mute", "participant": member["id"], "forbid_self_unmute": True})
        reply = watcher.reply("m1")
        assert reply["ok"] and reply["result"]["host_muted"] and reply["result"]["self_unmute_forbidden"]
        (muted_event,) = wait_until(lambda: by_participant(watcher.events("muted"), member["id"]), 20, what="baresip's muted event")  # type: ignore[misc]
        assert muted_event["participant_name"] == "Room 123" and muted_event["data"]["host_muted"] is True
        view = next(p for p in participants(gateway) if p["id"] == member["id"])
        assert view["muted"] and view["host_muted"] and view["self_unmute_forbidden"]
        # m0 came first and did nothing: exactly one muted event for it.
        assert len(by_participant(watcher.events("muted"), member["id"])) == 1
        # The mixer drops its audio now.
        wait_until(
            lambda: next(p for p in participants(gateway) if p["id"] == member["id"])["media"]["audio_frames_dropped_muted"] > 10,
            10,
            what="the muted room system's audio dropped",
        )

        # Muted through the admin API: the browser's muted event.
        assert gateway.api("POST", f"/api/rooms/demo/participants/{anna['id']}/mute").status_code == 200
        (anna_muted,) = wait_until(lambda: by_participant(watcher.events("muted"), anna["id"]), 20, what="Anna's muted event")  # type: ignore[misc]
        assert anna_muted["participant_name"] == "Anna" and anna_muted["participant_kind"] == "browser"

        # The room system hangs up: its left event still carries its name.
        system.stop()
        (left,) = wait_until(lambda: by_participant(watcher.events("participant_left"), member["id"]), 20, what="baresip's left event")  # type: ignore[misc]
        assert left["participant_name"] == "Room 123" and left["participant_kind"] == "sip_room_system"
        # No event carries a PIN.
        assert not any(mentions(m.payload, "1234") for m in watcher.received() if "/events/" in m.topic)
    finally:
        try:
            if system is not None:
                system.stop()
            stop_and_check(gateway)
        finally:
            watcher.close()


@pytest.mark.browser
def test_the_broker_going_away_loses_no_call_and_the_gateway_reconnects(open_participant: Any, tmp_path: Path) -> None:
    from tests.support.browser import assert_silent_but_alive, hears

    # Persistent broker and watcher session: what the gateway sends after the restart reaches the
    # watcher whichever of the two reconnects first.
    broker = Mosquitto(tmp_path / "mosquitto", persistence=True)
    broker.start()
    watcher = Client(broker.port, client_id="watcher-1", persistent=True)
    watcher.ready()
    gateway = start_gateway(fresh(tmp_path / "gw"), mqtt_config(broker, queue_max=3))
    system: Baresip | None = None
    try:
        wait_until(lambda: metric(gateway, "gateway_mqtt_connected") == 1, 20, what="the gateway connected")
        anna = join_browser(open_participant, gateway, "Anna", 440)
        system, member = join_room_system(gateway, tmp_path)
        wait_until(lambda: hears(anna, 1000), 20, what="Anna hears the room system")
        wait_until(lambda: by_participant(watcher.events("participant_joined"), member["id"]), 20, what="join event")

        broker.stop()
        outage = time.time()
        wait_until(lambda: metric(gateway, "gateway_mqtt_connected") == 0, 30, what="the gateway noticing the broker gone")
        # Eight events while the broker is away; three fit in the queue.
        for n in range(4):
            assert gateway.api("POST", "/api/rooms/demo/lock").json() == {"locked": True}, n
            assert gateway.api("POST", "/api/rooms/demo/unlock").json() == {"locked": False}, n
        wait_until(lambda: (metric(gateway, "gateway_mqtt_events_dropped_total") or 0) >= 5, 10, what="dropped events counted")
        # Several reconnect attempts (0.2 .. 1 s apart) fail meanwhile: the loss and two more.
        wait_until(
            lambda: any(int(str(line.get("attempt", 0))) >= 3 for line in logged(gateway, "mqtt broker unreachable")),
            15,
            what="reconnect attempts failing during the outage",
        )
        # The call goes on: both still in the meeting, the browser still hears the room system.
        assert {p["id"] for p in participants(gateway)} >= {member["id"]} and len(participants(gateway)) == 2
        wait_until(lambda: hears(anna, 1000), 10, what="Anna still hearing the room system during the outage")
        assert system.process is not None and system.process.poll() is None and "terminated" not in system.log()
        assert gateway.process.poll() is None

        restarted = time.time()
        broker.start()
        wait_until(lambda: metric(gateway, "gateway_mqtt_connected") == 1, 30, what="the gateway reconnected")
        assert (metric(gateway, "gateway_mqtt_reconnects_total") or 0) >= 1
        # Presence back online (a fresh message, not the retained one from before the outage).
        wait_until(
            lambda: [m for m in watcher.received(f"{BASE}/status", since=restarted) if m.payload["state"] == "online" and m.payload["at"] >= restarted],
            30,
            what="online again after the restart",
        )
        # The newest queued events arrive: the last unlock; the oldest were dropped, as counted.
        dropped = metric(gateway, "gateway_mqtt_events_dropped_total")
        assert dropped is not None and dropped >= 5
        wait_until(lambda: watcher.events("room_unlocked", since=outage), 30, what="the queued unlock delivered")
        during = watcher.events("room_locked", since=outage) + watcher.events("room_unlocked", since=outage)
        assert 1 <= len(during) <= 3, during
        # (logged when the connection is back, before anything queued is sent: the unlock above came after it)
        (summary,) = logged(gateway, "mqtt events dropped while the broker was away")
        assert summary["dropped"] == dropped and summary["level"] == "warning"
        assert len(logged(gateway, "mqtt queue full: dropping the oldest events until the broker is back")) == 1

        # Later events arrive as usual, and the call is still up.
        since = time.time()
        watcher.command({"token": COMMAND_TOKEN, "id": "after", "command": "mute", "participant": member["id"]})
        assert watcher.reply("after")["ok"]
        wait_until(lambda: by_participant(watcher.events("muted", since=since), member["id"]), 20, what="a muted event after the outage")
        assert len(participants(gateway)) == 2 and system.process.poll() is None
        wait_until(lambda: not hears(anna, 1000), 10, what="the muted room system silent")
        assert_silent_but_alive(anna, 1000, 1.0, what="the muted room system")
    finally:
        try:
            if system is not None:
                system.stop()
            stop_and_check(gateway)
        finally:
            watcher.close()
            broker.stop()


def test_mqtt_is_off_unless_enabled(tmp_path: Path) -> None:
    gateway = start_gateway(fresh(tmp_path / "gw"), TEST_CONFIG)
    try:
        assert gateway.api("GET", "/api/status").json()["mqtt"] == {"enabled": False}
        assert metric(gateway, "gateway_mqtt_connected") is None
        assert not [line for line in gateway.log_lines() if str(line.get("event", "")).startswith("mqtt")]
    finally:
        stop_and_check(gateway)


# -- the bridge in-process: broker restarts while events stream ------------------------------------


def test_the_bridge_rides_out_broker_restarts_while_events_stream(tmp_path: Path) -> None:
    # Its own event loop in its own thread: Playwright's sync API (module fixture) may hold this one.
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(bridge_through_broker_restarts(tmp_path))
        except BaseException as exc:  # handed to the test thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="bridge-test")
    thread.start()
    thread.join(300)
    assert not thread.is_alive(), "the in-process bridge test hung"
    if failure:
        raise failure[0]


async def bridge_through_broker_restarts(tmp_path: Path) -> None:
    from gateway.config import GatewayConfig
    from gateway.control.live import LiveControl
    from gateway.control.mqtt import MqttBridge
    from gateway.rooms.directory import Directory

    broker = Mosquitto(tmp_path / "mosquitto", persistence=True)
    broker.start()
    watcher = Client(broker.port, client_id="watcher-2", persistent=True).ready()
    config = GatewayConfig.model_validate(
        {
            "rooms": [{"id": "demo", "host_pin": "1234"}],
            "storage": {"path": None},
            "mqtt": {
                "enabled": True, "port": broker.port, "username": GATEWAY_USER, "password": GATEWAY_PASSWORD,
                "node": NODE, "command_token": COMMAND_TOKEN, "queue_max": 10_000,
                "reconnect_min_s": 0.05, "reconnect_max_s": 0.2,
            },
        }
    )
    directory = Directory(config)
    bridge = MqttBridge(config.mqtt, directory, LiveControl(directory))
    room = directory.conferences["demo"].room
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))

    async def until(condition: Any, what: str, limit_s: float = 30) -> None:
        deadline = time.monotonic() + limit_s
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.02)

    bridge.start()
    try:
        await until(lambda: bridge.stats.connected, "connected")
        sent = 0
        for cycle in range(4):
            for _ in range(60):  # lock/unlock, some while the broker goes down
                room.set_locked(None, not room.locked)
                sent += 1
                await asyncio.sleep(0.003)
                if _ == 30:
                    stopping = asyncio.create_task(asyncio.to_thread(broker.stop))
            await stopping
            await until(lambda: not bridge.stats.connected, "the loss noticed")
            await asyncio.to_thread(broker.start)
            await until(lambda n=cycle + 1: bridge.stats.connected and bridge.stats.reconnects == n, f"reconnection {cycle + 1}")
        await until(lambda: bridge.stats.published >= sent and len(bridge.outbox) == 0, "every event published")
        # Nothing dropped (the queue was big enough); every event reached the watcher's session at
        # least once (QoS 1: a batch in flight at a loss is sent again), the newest among them.
        assert bridge.outbox.dropped_total == 0

        def lock_events() -> list[Received]:
            return [m for m in watcher.received() if "/events/room_" in m.topic]

        # (distinct events, by their own time: a batch sent again after a loss repeats some, and
        # repeats must not stand in for the last events before they come)
        await until(lambda: len({m.payload["at"] for m in lock_events()}) >= sent, "all events received")
        # (By the event's own time, not by arrival: a broker restarting with persistence delivers
        # the messages it still held for the watcher after newer ones; QoS 1 keeps no order there.)
        newest = max(lock_events(), key=lambda m: m.payload["at"])
        assert newest.topic.endswith("room_locked" if room.locked else "room_unlocked")
    finally:
        try:
            await bridge.stop()
        finally:
            watcher.close()
            broker.stop()
            loop.set_exception_handler(None)
    assert not loop_errors, loop_errors
    assert json.loads(json.dumps(bridge.state()))["reconnects"] == 4
