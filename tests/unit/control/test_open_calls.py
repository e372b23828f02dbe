"""Calls a node that died left open, without sockets: while a participant is in, the store keeps
their record so far; the record written when they leave ends it; a node that starts again turns
what is left into call records that end `node_failed` at its last sign of life, announced like any
other; an unusable entry is left alone (and logged), not a crash."""

from __future__ import annotations

from pathlib import Path

from gateway.config import GatewayConfig, RoomConfig
from gateway.control.records import NODE_FAILED, CallRecorder
from gateway.control.store import Store
from gateway.rooms.directory import Directory
from gateway.rooms.events import RoomEvent
from gateway.rooms.participant import LegKind


def record(participant: str, joined_at: float) -> dict[str, object]:
    return {
        "room": "north", "participant": participant, "name": participant.title(), "role": "guest", "kind": "phone",
        "direction": "in", "source": "192.0.2.7", "joined_at": joined_at, "broadcast": None,
    }  # fmt: skip


def test_open_calls_end_with_their_record_or_become_lost_ones(tmp_path: Path) -> None:
    store = Store(tmp_path / "gateway.sqlite")
    store.open_call(record("anna", 1000.0))
    store.open_call(record("bert", 1010.0))
    store.add_call_record({**record("anna", 1000.0), "left_at": 1050.0, "duration_s": 50.0, "end_reason": "left"})
    store.touch_open_calls(1100.0)
    store.close()

    again = Store(tmp_path / "gateway.sqlite")  # (the node, started again)
    (lost,) = again.settle_open_calls(NODE_FAILED)
    assert lost["participant"] == "bert" and lost["left_at"] == 1100.0 and lost["duration_s"] == 90.0
    records = {r["participant"]: r for r in again.call_records()}
    assert records["anna"]["end_reason"] == "left" and records["bert"]["end_reason"] == NODE_FAILED
    assert records["bert"]["audio_packets_in"] == 0 and again.settle_open_calls(NODE_FAILED) == []


def test_an_unusable_open_call_is_left_alone(tmp_path: Path) -> None:
    store = Store(tmp_path / "gateway.sqlite")
    store.open_call(record("anna", 1000.0))
    with store._tx() as db:
        db.execute("INSERT INTO open_calls (node, room, participant, data, seen_at) VALUES ('gateway', 'north', 'x', '{not json', 5)")
    settled = store.settle_open_calls(NODE_FAILED)
    assert [r["participant"] for r in settled] == ["anna"]
    assert len(store._query("SELECT * FROM open_calls")) == 1


async def test_the_recorder_keeps_open_calls_and_announces_the_lost_ones(tmp_path: Path) -> None:
    config = GatewayConfig(rooms=[RoomConfig(id="north")])
    store = Store(tmp_path / "gateway.sqlite")
    directory = Directory(config)
    recorder = CallRecorder(directory, store, 30)
    conference = directory.find("north")
    assert conference is not None
    anna = conference.room.request_join("Anna", None, LegKind.PHONE).participant
    assert anna is not None
    await recorder._opening[("north", anna.id)]
    assert [row["participant"] for row in store._query("SELECT participant FROM open_calls")] == [anna.id]
    store.close()  # (killed: nothing more is written)

    heard: list[RoomEvent] = []
    directory = Directory(config)
    directory.subscribe(heard.append)
    (lost,) = await CallRecorder(directory, Store(tmp_path / "gateway.sqlite"), 30).settle_lost_calls()
    assert lost["name"] == "Anna" and lost["end_reason"] == NODE_FAILED
    assert [e.type for e in heard] == ["call_record_written"] and heard[0].data["end_reason"] == NODE_FAILED
