"""The composed picture's layout and the spotlight: the room's rules (gateway/rooms/room.py: who may
choose, when the spotlight ends, what a meeting's end restores, one event per change), and how each
control surface takes them (LiveControl, MQTT commands, the browser's WebSocket messages)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from gateway.config import GatewayConfig
from gateway.control.live import LiveControl
from gateway.control.mqtt import (
    PUBLISHED_EVENTS,
    CommandRequest,
    Refusal,
    event_payload,
    execute,
    parse_command,
)
from gateway.rooms import LegKind, NotAllowed, Participant, Room, RoomEvent, UnknownParticipant
from gateway.rooms.directory import Directory, NotFound
from gateway.rooms.errors import RoomError
from gateway.transcode.layout import Layout
from gateway.webrtc import signalling as sig

HOST_PIN = "1234"
TOKEN = "command-token-0123456789"


# -- helpers --------------------------------------------------------------------------------------


def make_room(**options: Any) -> Room:
    ids = (f"p{n}" for n in itertools.count(1))
    return Room("r1", "Room one", host_pin=HOST_PIN, id_factory=lambda: next(ids), wall_clock=lambda: 1.0, **options)


def join(room: Room, name: str, pin: str | None = None) -> Participant:
    result = room.request_join(name, pin, LegKind.BROWSER)
    assert result.participant is not None
    return result.participant


class Meeting:
    """A room with a host (Hanna) and two guests (Gustav, Greta), and every event from then on."""

    def __init__(self, **options: Any) -> None:
        self.room = make_room(**options)
        self.host = join(self.room, "Hanna", HOST_PIN)
        self.guest = join(self.room, "Gustav")
        self.other = join(self.room, "Greta")
        self.events: list[RoomEvent] = []
        self.room.subscribe(self.events.append)

    def of(self, *types: str) -> list[tuple[str, str | None, str | None, dict[str, Any]]]:
        return [(e.type, e.participant, e.by, e.data) for e in self.events if e.type in types]


@pytest.fixture
def meeting() -> Meeting:
    return Meeting()


# -- layout ---------------------------------------------------------------------------------------


def test_a_new_room_has_its_configured_layout_and_no_spotlight() -> None:
    assert make_room().layout is Layout.SPEAKER
    room = make_room(layout=Layout.GRID)
    assert room.layout is Layout.GRID and room.spotlight is None
    view = room.public(for_host=False)
    assert (view["layout"], view["spotlight"]) == ("grid", None)


def test_a_host_changes_the_layout_with_one_event_and_none_when_unchanged(meeting: Meeting) -> None:
    version = meeting.room.version
    meeting.room.set_layout(meeting.host.id, Layout.GRID)
    assert meeting.room.layout is Layout.GRID
    assert meeting.of("layout_changed") == [("layout_changed", None, meeting.host.id, {"layout": "grid"})]
    assert meeting.room.version == version + 1  # (cached views of the room are renewed)
    meeting.room.set_layout(meeting.host.id, Layout.GRID)
    meeting.room.set_layout(meeting.host.id, "grid")  # type: ignore[arg-type]  # (the value a protocol carries)
    assert len(meeting.of("layout_changed")) == 1
    assert meeting.room.public(for_host=False)["layout"] == "grid"


def test_the_administrator_changes_the_layout(meeting: Meeting) -> None:
    meeting.room.set_layout(None, Layout.GRID)
    assert meeting.of("layout_changed") == [("layout_changed", None, None, {"layout": "grid"})]


def test_a_guest_may_not_change_the_layout(meeting: Meeting) -> None:
    with pytest.raises(NotAllowed):
        meeting.room.set_layout(meeting.guest.id, Layout.GRID)
    with pytest.raises(NotAllowed):  # nor someone who is not (or no longer) in the room
        meeting.room.set_layout("p-gone", Layout.GRID)
    assert meeting.room.layout is Layout.SPEAKER and not meeting.events


def test_an_unknown_layout_is_refused(meeting: Meeting) -> None:
    with pytest.raises(ValueError):
        meeting.room.set_layout(meeting.host.id, "mosaic")  # type: ignore[arg-type]
    assert meeting.room.layout is Layout.SPEAKER and not meeting.events


# -- spotlight ------------------------------------------------------------------------------------


def test_a_host_puts_a_participant_in_the_spotlight_and_ends_it(meeting: Meeting) -> None:
    room, host, guest = meeting.room, meeting.host, meeting.guest
    room.set_spotlight(host.id, guest.id)
    assert room.spotlight == guest.id and room.public(for_host=False)["spotlight"] == guest.id
    room.set_spotlight(host.id, guest.id)  # unchanged: no event
    room.set_spotlight(host.id, host.id)  # a host may put themselves in it (the chair)
    room.set_spotlight(host.id, None)
    room.set_spotlight(host.id, None)  # unchanged: no event
    assert room.spotlight is None
    assert meeting.of("spotlight_changed") == [
        ("spotlight_changed", guest.id, host.id, {"spotlight": guest.id}),
        ("spotlight_changed", host.id, host.id, {"spotlight": host.id}),
        ("spotlight_changed", None, host.id, {"spotlight": None}),
    ]


def test_a_guest_may_not_spotlight_anyone_or_end_the_spotlight(meeting: Meeting) -> None:
    room = meeting.room
    with pytest.raises(NotAllowed):
        room.set_spotlight(meeting.guest.id, meeting.guest.id)
    room.set_spotlight(meeting.host.id, meeting.other.id)
    with pytest.raises(NotAllowed):
        room.set_spotlight(meeting.guest.id, None)
    assert room.spotlight == meeting.other.id and len(meeting.of("spotlight_changed")) == 1


def test_an_unknown_participant_is_refused_and_the_spotlight_stays(meeting: Meeting) -> None:
    room = meeting.room
    room.set_spotlight(None, meeting.guest.id)
    with pytest.raises(UnknownParticipant):
        room.set_spotlight(meeting.host.id, "p-nobody")
    assert room.spotlight == meeting.guest.id and len(meeting.of("spotlight_changed")) == 1


def test_someone_waiting_in_the_lobby_cannot_be_spotlighted() -> None:
    room = make_room(lobby=True)
    host = join(room, "Hanna", HOST_PIN)
    waiting = room.request_join("Walter", None, LegKind.BROWSER).lobby_entry
    assert waiting is not None
    with pytest.raises(UnknownParticipant):
        room.set_spotlight(host.id, waiting.id)
    assert room.spotlight is None


def test_the_spotlight_ends_when_its_participant_leaves(meeting: Meeting) -> None:
    room = meeting.room
    room.set_spotlight(meeting.host.id, meeting.guest.id)
    room.leave(meeting.other.id)  # someone else leaving changes nothing
    assert room.spotlight == meeting.guest.id
    room.leave(meeting.guest.id)
    assert room.spotlight is None
    assert meeting.of("participant_left", "spotlight_changed")[-2:] == [
        ("participant_left", meeting.guest.id, None, {}),
        ("spotlight_changed", None, None, {"spotlight": None}),
    ]
    assert len(meeting.of("spotlight_changed")) == 2


def test_the_spotlight_ends_when_its_participant_is_removed(meeting: Meeting) -> None:
    room = meeting.room
    room.set_spotlight(meeting.host.id, meeting.guest.id)
    room.remove(meeting.host.id, meeting.guest.id)
    assert room.spotlight is None
    assert [e[0] for e in meeting.of("participant_removed", "spotlight_changed")] == [
        "spotlight_changed",
        "participant_removed",
        "spotlight_changed",
    ]
    assert meeting.of("spotlight_changed")[-1] == ("spotlight_changed", None, None, {"spotlight": None})


def test_a_lost_connection_keeps_the_spotlight(meeting: Meeting) -> None:
    """A participant whose place is kept for a reconnect is still there: so is their spotlight."""
    room = meeting.room
    room.set_spotlight(meeting.host.id, meeting.guest.id)
    room.set_connected(meeting.guest.id, False)
    assert room.spotlight == meeting.guest.id


def test_the_end_of_the_meeting_restores_the_configured_layout_and_ends_the_spotlight() -> None:
    meeting = Meeting(layout=Layout.GRID)
    room = meeting.room
    room.set_layout(meeting.host.id, Layout.SPEAKER)
    room.set_spotlight(meeting.host.id, meeting.guest.id)
    room.end(meeting.host.id)
    assert room.layout is Layout.GRID and room.spotlight is None
    assert room.public(for_host=True)["layout"] == "grid"
    # The next meeting starts from the configuration.
    host = join(room, "Hanna", HOST_PIN)
    assert room.layout is Layout.GRID and room.spotlight is None
    room.set_layout(host.id, Layout.SPEAKER)
    assert room.layout is Layout.SPEAKER


def test_a_guest_may_not_end_the_meeting_to_reset_the_picture(meeting: Meeting) -> None:
    meeting.room.set_layout(meeting.host.id, Layout.GRID)
    with pytest.raises(NotAllowed):
        meeting.room.end(meeting.guest.id)
    assert meeting.room.layout is Layout.GRID


def test_the_last_one_leaving_restores_the_configured_layout(meeting: Meeting) -> None:
    room = meeting.room
    room.set_layout(meeting.host.id, Layout.GRID)
    room.set_spotlight(meeting.host.id, meeting.host.id)
    for p in (meeting.guest, meeting.other, meeting.host):
        room.leave(p.id)
    assert room.layout is Layout.SPEAKER and room.spotlight is None


def test_a_new_configured_layout_applies_to_a_live_room_at_once(meeting: Meeting) -> None:
    room = meeting.room

    def reconfigure(layout: Layout) -> None:
        room.reconfigure(
            name=None, host_pin=HOST_PIN, guest_pin=None, lobby=False, locked=False, max_participants=100,
            aliases=[], language=None, opening_hours=None, layout=layout,
        )

    reconfigure(Layout.GRID)
    assert room.layout is Layout.GRID
    assert meeting.of("layout_changed") == [("layout_changed", None, None, {"layout": "grid"})]
    reconfigure(Layout.GRID)  # the same settings again: nothing new
    assert len(meeting.of("layout_changed")) == 1


# -- LiveControl: the one place REST, MQTT and the CLI go through -----------------------------------


def live_control() -> tuple[LiveControl, Room, Participant]:
    config = GatewayConfig.model_validate(
        {"rooms": [{"id": "demo", "host_pin": HOST_PIN, "layout": "grid"}], "storage": {"path": None}}
    )
    directory = Directory(config)
    room = directory.conferences["demo"].room
    return LiveControl(directory, None), room, join(room, "Anna")


def test_live_control_sets_layout_and_spotlight_as_the_administrator() -> None:
    control, room, anna = live_control()
    assert room.layout is Layout.GRID  # the room's configuration
    events: list[RoomEvent] = []
    room.subscribe(events.append)
    assert control.set_layout("demo", "speaker", "ops") == {"layout": "speaker", "spotlight": None}
    assert control.spotlight("demo", anna.id, "ops") == {"layout": "speaker", "spotlight": anna.id}
    assert control.spotlight("demo", None, "ops") == {"layout": "speaker", "spotlight": None}
    assert [(e.type, e.by) for e in events] == [("layout_changed", None), ("spotlight_changed", None), ("spotlight_changed", None)]


def test_live_control_refuses_with_the_existing_error_codes() -> None:
    control, room, _anna = live_control()
    with pytest.raises(NotFound) as unknown_room:
        control.set_layout("nowhere", "grid", "ops")
    assert unknown_room.value.code == "unknown_room"
    with pytest.raises(NotFound):
        control.spotlight("nowhere", None, "ops")
    with pytest.raises(UnknownParticipant) as unknown:
        control.spotlight("demo", "p-nobody", "ops")
    assert unknown.value.code == "unknown_participant"
    with pytest.raises(RoomError) as bad:
        control.set_layout("demo", "mosaic", "ops")
    assert bad.value.code == "bad_request" and "speaker" in str(bad.value)
    assert room.layout is Layout.GRID and room.spotlight is None


# -- MQTT -----------------------------------------------------------------------------------------


def command(**fields: Any) -> CommandRequest | Refusal:
    import json

    return parse_command(json.dumps({"token": TOKEN, "id": "c", **fields}).encode(), TOKEN)


def test_mqtt_takes_set_layout_and_spotlight_with_what_they_need() -> None:
    assert isinstance(command(command="set_layout", layout="grid"), CommandRequest)
    assert isinstance(command(command="spotlight", participant="p1"), CommandRequest)
    assert isinstance(command(command="spotlight", participant=None), CommandRequest)  # ends it
    for refused in (
        command(command="set_layout"),
        command(command="set_layout", layout="mosaic"),
        command(command="spotlight"),  # forgot the participant: must not end a spotlight
    ):
        assert isinstance(refused, Refusal) and refused.error == "bad_request", refused
    wrong_token = parse_command(b'{"token": "wrong-token-wrong-token", "command": "spotlight", "participant": null}', TOKEN)
    assert isinstance(wrong_token, Refusal) and wrong_token.error == "unauthorised"


async def test_mqtt_commands_change_the_picture_and_answer_room_errors() -> None:
    control, room, anna = live_control()

    async def run(**fields: Any) -> dict[str, Any]:
        request = command(**fields)
        assert isinstance(request, CommandRequest), request
        return await execute(request, "demo", control)

    assert await run(command="set_layout", layout="speaker") == {"id": "c", "ok": True, "result": {"layout": "speaker", "spotlight": None}}
    assert (await run(command="spotlight", participant=anna.id))["result"] == {"layout": "speaker", "spotlight": anna.id}
    assert room.spotlight == anna.id
    assert (await run(command="spotlight", participant="p-nobody"))["error"] == "unknown_participant"
    assert room.spotlight == anna.id
    assert (await run(command="spotlight", participant=None))["result"]["spotlight"] is None
    request = command(command="set_layout", layout="grid")
    assert isinstance(request, CommandRequest)
    assert (await execute(request, "nowhere", control))["error"] == "unknown_room"


def test_mqtt_publishes_layout_and_spotlight_events() -> None:
    assert {"layout_changed", "spotlight_changed"} <= PUBLISHED_EVENTS
    event = RoomEvent("spotlight_changed", "demo", "p1", None, {"spotlight": "p1"}, 5.0)
    payload = event_payload(event, None, "n1")
    assert payload is not None and payload["data"] == {"spotlight": "p1"} and payload["participant"] == "p1"


# -- the browser's WebSocket messages ---------------------------------------------------------------


def test_websocket_messages_for_layout_and_spotlight() -> None:
    layout = sig.parse_client_message('{"type": "set_layout", "layout": "grid"}')
    assert isinstance(layout, sig.SetLayout) and layout.layout == "grid"
    spotlight = sig.parse_client_message('{"type": "spotlight", "participant": "p1"}')
    assert isinstance(spotlight, sig.Spotlight) and spotlight.participant == "p1"
    ended = sig.parse_client_message('{"type": "spotlight", "participant": null}')
    assert isinstance(ended, sig.Spotlight) and ended.participant is None
    for bad in (
        '{"type": "set_layout", "layout": "mosaic"}',
        '{"type": "set_layout"}',
        '{"type": "spotlight"}',
        '{"type": "spotlight", "participant": 7}',
        '{"type": "spotlight", "participant": ""}',
        '{"type": "spotlight", "participant": "p1", "extra": true}',
    ):
        with pytest.raises(sig.BadMessage):
            sig.parse_client_message(bad)
