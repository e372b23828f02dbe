"""The MQTT bridge's pure parts, without a broker: topics, event payloads (no secrets), the bounded
outbox, command checking and execution against a real room, presence payloads, reconnect backoff."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.config import GatewayConfig, MqttConfig
from gateway.control.broadcasts import Broadcasts
from gateway.control.live import LiveControl
from gateway.control.metrics import LoopLag, MqttCounters, build_registry
from gateway.control.mqtt import (
    Backoff,
    CommandRequest,
    Outbox,
    Outgoing,
    ParticipantNames,
    Refusal,
    Topics,
    Who,
    event_payload,
    execute,
    parse_command,
    scrub,
    status_payload,
)
from gateway.control.store import Store
from gateway.rooms.directory import Directory
from gateway.rooms.events import RoomEvent
from gateway.rooms.participant import LegKind

TOKEN = "command-token-0123456789"


def test_topics() -> None:
    topics = Topics("site/a", "node1")
    assert topics.status == "site/a/node1/status"
    assert topics.event("demo", "muted") == "site/a/node1/rooms/demo/events/muted"
    assert topics.replies("demo") == "site/a/node1/rooms/demo/replies"
    assert topics.commands_filter == "site/a/node1/rooms/+/commands"
    assert topics.command_room("site/a/node1/rooms/demo/commands") == "demo"
    assert topics.command_room("site/a/node1/rooms/demo/replies") is None
    assert topics.command_room("site/a/node2/rooms/demo/commands") is None
    assert topics.command_room("site/a/node1/rooms//commands") is None


def test_a_worker_speaks_as_its_machine_with_its_own_presence_and_a_share_of_the_commands() -> None:
    topics = Topics("site/a", "box", worker=1)
    assert topics.event("demo", "muted") == "site/a/box/rooms/demo/events/muted"
    assert topics.replies("demo") == "site/a/box/rooms/demo/replies"
    assert topics.status == "site/a/box/workers/1/status"
    # (each command to one worker of the machine: an MQTT shared subscription)
    assert topics.commands_filter == "$share/gateway-site_a_box/site/a/box/rooms/+/commands"
    assert topics.command_room("site/a/box/rooms/demo/commands") == "demo"


def test_a_response_topic_is_honoured_only_outside_the_gateways_namespace() -> None:
    topics = Topics("gateway", "n1")
    assert topics.reply_topic("demo", "controller/7/answers") == "controller/7/answers"
    assert topics.reply_topic("demo", None) == "gateway/n1/rooms/demo/replies"
    # Spoofing our own events, another node's status, or wildcards: answered on the replies topic.
    for bad in ("gateway/n1/rooms/demo/events/muted", "gateway/n2/status", "a/+/b", "a/#", ""):
        assert topics.reply_topic("demo", bad) == "gateway/n1/rooms/demo/replies"


def test_scrub_removes_pins_and_tokens_at_any_depth() -> None:
    record = {
        "room": "demo",
        "host_pin": "1234",
        "pins": ["1"],
        "nested": {"guest_pin": "5555", "command_token": "x", "api_tokens": [1], "name": "Anna"},
        "list": [{"password": "p", "ok": 1}],
        "pinned": True,  # not a PIN
        "spin": 3,
    }
    assert scrub(record) == {"room": "demo", "nested": {"name": "Anna"}, "list": [{"ok": 1}], "pinned": True, "spin": 3}
    assert "1234" not in json.dumps(scrub(record))


def test_event_payload_has_the_event_the_node_and_who() -> None:
    event = RoomEvent("muted", "demo", "p1", by=None, data={"self_muted": False, "host_muted": True}, at=12.5)
    payload = event_payload(event, Who("Anna", "browser"), "n1")
    assert payload == {
        "type": "muted",
        "room": "demo",
        "participant": "p1",
        "by": None,
        "data": {"self_muted": False, "host_muted": True},
        "at": 12.5,
        "node": "n1",
        "participant_name": "Anna",
        "participant_kind": "browser",
    }
    # UI details are not published.
    assert event_payload(RoomEvent("video_changed", "demo", "p1"), None, "n1") is None
    assert event_payload(RoomEvent("connection_changed", "demo", "p1"), None, "n1") is None
    record = RoomEvent("call_record_written", "demo", "p1", data={"duration_s": 3, "pin": "1234"})
    published = event_payload(record, None, "n1")
    assert published is not None and published["data"] == {"duration_s": 3}
    # Recorded and streamed: told to the outside world too (who started it, why it ended)
    for kind in ("recording_started", "recording_stopped", "streaming_started", "streaming_stopped", "streaming_interrupted", "streaming_resumed"):
        told = event_payload(RoomEvent(kind, "demo", None, by="admin", data={"reason": "x"}), None, "n1")  # type: ignore[arg-type]
        assert told is not None and told["type"] == kind and told["by"] == "admin" and told["data"] == {"reason": "x"}


def test_participant_names_outlive_the_participant_for_its_left_event_only() -> None:
    names = ParticipantNames()
    names.note("demo", "p1", Who("Anna", "browser"))
    names.note("demo", "p2", Who("Room 1", "sip_room_system"))
    names.note("other", "p3", Who("Ben", "phone"))
    names.note("demo", "w1", Who("Waiting", "phone"))
    names.after(RoomEvent("lobby_changed", "demo", "w1", data={"waiting": 1, "name": "Waiting"}))
    assert names.get("demo", "w1") is not None  # still waiting
    names.after(RoomEvent("lobby_changed", "demo", "w1", data={"waiting": 0, "left": True}))
    assert names.get("demo", "w1") is None
    assert names.get("demo", "p1") == Who("Anna", "browser")
    names.after(RoomEvent("participant_left", "demo", "p1"))
    assert names.get("demo", "p1") is None
    names.after(RoomEvent("meeting_ended", "demo", None, data={"participants": ["p2"]}))
    assert names.get("demo", "p2") is None and names.get("other", "p3") is not None
    assert len(names) == 1


def item(n: int) -> Outgoing:
    return Outgoing(f"t/{n}", str(n).encode())


def test_outbox_keeps_the_newest_and_counts_what_it_drops() -> None:
    box = Outbox(3)
    assert [box.push(item(n)) for n in range(5)] == [False, False, False, True, True]
    assert box.dropped_total == 2 and box.dropped_since_connected == 2 and len(box) == 3
    batch = box.take(2)
    assert [i.topic for i in batch] == ["t/2", "t/3"]
    box.push(item(5))
    box.put_back(batch)  # failed to publish: back in front, in order; the oldest go when over the limit
    assert [i.topic for i in box.take(10)] == ["t/3", "t/4", "t/5"]
    assert box.dropped_total == 3 and len(box) == 0


def test_commands_need_json_the_token_and_a_known_command() -> None:
    def refusal(payload: Any, token: str | None = TOKEN, enabled: bool = True) -> Refusal:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        result = parse_command(raw, token, enabled)
        assert isinstance(result, Refusal), result
        return result

    assert refusal(b"{not json").error == "bad_request"
    assert refusal(b"\xff\xfe").error == "bad_request"
    assert refusal([1, 2]).error == "bad_request"
    assert refusal(b"x" * 20000).error == "bad_request"
    wrong = refusal({"token": "nope", "id": "c1", "command": "mute", "participant": "p"})
    assert (wrong.id, wrong.error) == ("c1", "unauthorised") and "nope" not in wrong.reason
    assert refusal({"id": 7, "command": "mute", "participant": "p"}).reply() == {
        "id": 7, "ok": False, "error": "unauthorised", "reason": "missing or wrong token"
    }
    assert refusal({"token": 123456789012345678, "command": "lock"}).error == "unauthorised"
    # Without a configured token (or broker credentials), nothing is taken, even with some token.
    assert refusal({"token": TOKEN, "command": "lock"}, token=None).error == "commands_disabled"
    assert refusal({"token": TOKEN, "command": "lock"}, enabled=False).error == "commands_disabled"
    # The token is checked before anything else is answered in detail.
    assert refusal({"token": "x", "command": "explode"}).error == "unauthorised"
    assert refusal({"token": TOKEN, "id": "c2", "command": "explode"}).error == "unknown_command"
    assert refusal({"token": TOKEN, "command": "mute"}).error == "bad_request"  # whom?
    typo = refusal({"token": TOKEN, "command": "mute", "participant_id": "p"})
    assert typo.error == "bad_request" and "participant_id" in typo.reason
    assert refusal({"token": TOKEN, "command": "mute", "participant": "p", "forbid_self_unmute": "maybe"}).error == "bad_request"

    ok = parse_command(json.dumps({"token": TOKEN, "id": "c3", "command": "mute", "participant": "p", "forbid_self_unmute": True}).encode(), TOKEN)
    assert isinstance(ok, CommandRequest) and ok.forbid_self_unmute and ok.id == "c3"


def directory_with_anna() -> tuple[LiveControl, str]:
    config = GatewayConfig.model_validate({"rooms": [{"id": "demo", "host_pin": "1234"}], "storage": {"path": None}})
    directory = Directory(config)
    anna = directory.conferences["demo"].room.request_join("Anna", None, LegKind.BROWSER).participant
    assert anna is not None
    return LiveControl(directory, None), anna.id


async def run(control: LiveControl, **fields: Any) -> dict[str, Any]:
    request = CommandRequest.model_validate({"token": TOKEN, "id": "x", **fields})
    return await execute(request, "demo", control)


async def test_execute_carries_out_commands_and_answers_room_errors_with_their_code() -> None:
    control, anna = directory_with_anna()
    room = control.directory.conferences["demo"].room
    reply = await run(control, command="mute", participant=anna, forbid_self_unmute=True)
    assert reply["ok"] and reply["id"] == "x" and reply["result"]["host_muted"] and reply["result"]["name"] == "Anna"
    assert room.get(anna).self_unmute_forbidden
    assert (await run(control, command="unmute", participant=anna))["result"]["muted"] is False
    assert await run(control, command="lock") == {"id": "x", "ok": True, "result": {"locked": True}}
    assert room.locked
    assert (await run(control, command="unlock"))["result"] == {"locked": False}

    missing = await run(control, command="mute", participant="nobody")
    assert missing["ok"] is False and missing["error"] == "unknown_participant" and missing["reason"]
    request = CommandRequest.model_validate({"token": TOKEN, "id": 1, "command": "lock"})
    assert (await execute(request, "no-such-room", control))["error"] == "unknown_room"
    assert (await run(control, command="admit", participant="nobody"))["error"] == "unknown_participant"
    assert (await run(control, command="dial", uri="sip:a@b"))["error"] == "sip_disabled"
    room.start_presenting(anna)
    stopped = (await run(control, command="stop_presentation"))["result"]["stopped"]
    assert stopped["presenter"] == anna and stopped["content"] == "screen" and room.presentation is None
    assert (await run(control, command="stop_presentation"))["result"] == {"stopped": None}
    assert (await run(control, command="remove", participant=anna))["result"] == {"removed": anna}
    assert anna not in room.participants


async def test_recording_commands_reach_the_rooms_rules(tmp_path: Path) -> None:
    """start_recording and the others go through the same control as the API: a room that forbids
    it refuses with its code, an empty meeting is not recorded, stopping what does not run says so,
    and a gateway without recordings says that."""
    config = GatewayConfig.model_validate(
        {"rooms": [{"id": "demo", "recording": "forbidden"}], "storage": {"path": None}, "recording": {"folder": str(tmp_path)}}
    )
    directory = Directory(config)
    control = LiveControl(directory, None, Broadcasts(directory, Store(None), config.recording))
    assert (await run(control, command="start_recording"))["error"] == "recording_forbidden"
    assert (await run(control, command="start_streaming"))["error"] == "no_meeting"
    assert (await run(control, command="stop_recording"))["result"] == {"stopped": False}
    assert (await run(control, command="stop_streaming"))["result"] == {"stopped": False}
    without, _ = directory_with_anna()
    assert (await run(without, command="start_recording"))["error"] == "broadcasts_disabled"


def test_status_payloads() -> None:
    online = json.loads(status_payload("online", "n1", 100.0))
    assert online["state"] == "online" and online["node"] == "n1" and online["started"] == 100.0
    assert online["version"] and "clean" not in online
    assert json.loads(status_payload("offline", "n1", 100.0, clean=False))["clean"] is False


def test_backoff_doubles_up_to_the_maximum_and_resets() -> None:
    backoff = Backoff(0.5, 4.0, rng=lambda: 0.0)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next() == 0.5
    jittered = Backoff(1.0, 8.0, rng=lambda: 1.0)
    assert jittered.next() == pytest.approx(0.8)  # at most 20 % earlier, never later than the maximum


def test_config_defaults_keep_mqtt_off() -> None:
    assert MqttConfig().enabled is False
    with pytest.raises(ValueError):
        MqttConfig(reconnect_min_s=5, reconnect_max_s=1)


def test_metrics_show_the_bridge_state_and_stay_optional() -> None:
    from prometheus_client import generate_latest

    config = GatewayConfig.model_validate({"rooms": [{"id": "demo"}], "storage": {"path": None}})
    directory = Directory(config)
    without = generate_latest(build_registry(directory, None, LoopLag())).decode()
    assert "gateway_mqtt" not in without
    counters = MqttCounters(connected=True, published=7, dropped=3, queued=1, reconnects=2, commands={"accepted": 4, "refused": 5})
    text = generate_latest(build_registry(directory, None, LoopLag(), lambda: counters)).decode()
    for line in (
        "gateway_mqtt_connected 1.0",
        "gateway_mqtt_events_published_total 7.0",
        "gateway_mqtt_events_dropped_total 3.0",
        "gateway_mqtt_events_queued 1.0",
        "gateway_mqtt_reconnects_total 2.0",
        'gateway_mqtt_commands_total{result="accepted"} 4.0',
        'gateway_mqtt_commands_total{result="refused"} 5.0',
    ):
        assert line in text.splitlines(), line
