"""The room's presentation floor (rooms/floor.py): one presenter at a time, taking over, a host's
stop, the room's policy on who may present, and the floor's end when the presenter goes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.rooms import LegKind, NotAllowed, Room
from gateway.rooms.floor import Content, Presenters
from tests.support.rooms import HOST_PIN, WALL_TIME, Events, Meeting, join, listen


def floor_events(events: Events) -> list[tuple[str, str | None, str | None, str | None]]:
    return [(e.type, e.participant, e.by, e.data.get("reason")) for e in events if e.type.startswith("presentation")]


def test_a_presenter_takes_the_floor_and_the_room_shows_it(meeting: Meeting) -> None:
    room, gil = meeting.room, meeting.gil
    presentation = room.start_presenting(gil.id)
    assert (presentation.presenter, presentation.content, presentation.since) == (gil.id, Content.SCREEN, WALL_TIME)
    assert room.public(for_host=False)["presentation"] == {"presenter": gil.id, "since": WALL_TIME, "content": "screen"}
    assert floor_events(meeting.events) == [("presentation_started", gil.id, gil.id, None)]
    assert room.start_presenting(gil.id) == presentation and len(meeting.events) == 1  # (again: nothing new)


def test_a_new_presenter_takes_over_and_the_previous_one_is_told(meeting: Meeting) -> None:
    room, gil, gus = meeting.room, meeting.gil, meeting.gus
    room.start_presenting(gil.id)
    room.start_presenting(gus.id, Content.SLIDES)
    assert room.presentation is not None and room.presentation.presenter == gus.id
    assert floor_events(meeting.events) == [
        ("presentation_started", gil.id, gil.id, None),
        ("presentation_stopped", gil.id, gus.id, "taken_over"),
        ("presentation_started", gus.id, gus.id, None),
    ]


def test_the_presenter_or_a_host_stops_it_and_a_guest_may_not(meeting: Meeting) -> None:
    room, host, gil, gus = meeting.room, meeting.host, meeting.gil, meeting.gus
    room.start_presenting(gil.id)
    with pytest.raises(NotAllowed):
        room.stop_presenting(gus.id)
    room.stop_presenting(host.id)
    room.start_presenting(gil.id)
    room.stop_presenting(gil.id)
    room.start_presenting(gil.id)
    room.stop_presenting(None)  # (an operator, through the API or MQTT)
    room.stop_presenting(host.id)  # (nothing to stop: nothing happens)
    reasons = [r for kind, _, _, r in floor_events(meeting.events) if kind == "presentation_stopped"]
    assert reasons == ["stopped_by_host", "stopped", "stopped_by_operator"] and room.presentation is None


def test_stopping_one_presenters_presentation_leaves_anothers(meeting: Meeting) -> None:
    room, gil, gus = meeting.room, meeting.gil, meeting.gus
    room.start_presenting(gus.id)
    room.stop_presenting(gil.id, participant_id=gil.id)  # (gil's screen share ended late: gus keeps the floor)
    assert room.presentation is not None and room.presentation.presenter == gus.id


@pytest.mark.parametrize("how", ["leaves", "is removed", "meeting ends"])
def test_the_floor_ends_with_its_presenter(meeting: Meeting, how: str) -> None:
    room, host, gil = meeting.room, meeting.host, meeting.gil
    room.start_presenting(gil.id)
    if how == "leaves":
        room.leave(gil.id)
    elif how == "is removed":
        room.remove(host.id, gil.id)
    else:
        room.end(host.id)
    assert room.presentation is None and room.public(for_host=True)["presentation"] is None
    expected = {"leaves": "left", "is removed": "left", "meeting ends": "meeting_ended"}[how]
    assert floor_events(meeting.events)[-1] == ("presentation_stopped", gil.id, host.id if how == "meeting ends" else None, expected)


def test_where_only_hosts_present_guests_may_not_but_trusted_room_systems_may(make_room: Callable[..., Room]) -> None:
    room = make_room(host_pin=HOST_PIN, presenters=Presenters.HOSTS)
    events = listen(room, Events())
    host, guest = join(room, "Hanna", HOST_PIN), join(room, "Gil")
    chamber = room.add_invited("Council chamber", LegKind.SIP_ROOM_SYSTEM, direction="in")
    with pytest.raises(NotAllowed):
        room.start_presenting(guest.id)
    room.start_presenting(chamber.id, Content.SLIDES)
    room.start_presenting(host.id)
    assert room.presentation is not None and room.presentation.presenter == host.id
    assert room.public(for_host=False)["presenters"] == "hosts"
    assert [e.type for e in events if e.type.startswith("presentation")] == [
        "presentation_started", "presentation_stopped", "presentation_started",
    ]  # fmt: skip


def test_a_policy_that_changes_ends_a_presentation_it_no_longer_allows(make_room: Callable[..., Room]) -> None:
    room = make_room(host_pin=HOST_PIN)
    guest = join(room, "Gil")
    room.start_presenting(guest.id)
    events = listen(room, Events())
    room.reconfigure(
        name=None, host_pin=HOST_PIN, guest_pin=None, lobby=False, locked=False, max_participants=100, aliases=[],
        language=None, opening_hours=None, presenters=Presenters.HOSTS,
    )  # fmt: skip
    assert room.presentation is None
    assert [e.type for e in events] == ["presenters_changed", "presentation_stopped"]
    assert floor_events(events) == [("presentation_stopped", guest.id, None, "not_allowed")]
