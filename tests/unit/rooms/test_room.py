"""The room's rules (gateway/rooms): PINs, lock, capacity, lobby, roles, mute policy, hands, events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.rooms import (
    JoinRefused,
    LegKind,
    NotAllowed,
    Role,
    Room,
    RoomEvent,
    UnknownParticipant,
)
from gateway.rooms.room import new_participant_id
from tests.support.rooms import GUEST_PIN, HOST_PIN, WALL_TIME, Events, FakeClock, Meeting, join, listen, wait

# -- PINs -----------------------------------------------------------------------------------------


def test_host_pin_makes_a_host(make_room: Callable[..., Room]) -> None:
    room = make_room(host_pin=HOST_PIN, guest_pin=GUEST_PIN)
    p = join(room, "Hanna", HOST_PIN)
    assert p.role is Role.HOST and p.is_host
    assert room.participants == {p.id: p}


def test_guest_pin_makes_a_guest_not_a_host(make_room: Callable[..., Room]) -> None:
    room = make_room(host_pin=HOST_PIN, guest_pin=GUEST_PIN)
    p = join(room, "Gil", GUEST_PIN)
    assert p.role is Role.GUEST and not p.is_host


def test_surrounding_whitespace_in_a_typed_pin_is_ignored(make_room: Callable[..., Room]) -> None:
    room = make_room(host_pin=HOST_PIN, guest_pin=GUEST_PIN)
    assert join(room, "Hanna", f" {HOST_PIN}\n").is_host
    assert not join(room, "Gil", f"\t{GUEST_PIN} ").is_host


@pytest.mark.parametrize("pin", [None, "", "  "])
def test_no_pin_needed_when_the_room_has_no_guest_pin(make_room: Callable[..., Room], pin: str | None) -> None:
    assert join(make_room(host_pin=HOST_PIN), "Gil", pin).role is Role.GUEST
    assert join(make_room(), "Gus", pin).role is Role.GUEST


@pytest.mark.parametrize(
    ("host_pin", "guest_pin", "typed"),
    [
        (HOST_PIN, GUEST_PIN, "0000"),  # neither PIN
        (HOST_PIN, GUEST_PIN, None),  # the room has a guest PIN: no PIN is not enough
        (HOST_PIN, GUEST_PIN, ""),
        (HOST_PIN, GUEST_PIN, "123"),  # a prefix of the host PIN
        (HOST_PIN, GUEST_PIN, "12345"),  # the host PIN and more
        (HOST_PIN, None, "0000"),  # only a host PIN, and a PIN that is not it
        (HOST_PIN, None, GUEST_PIN),
        (None, GUEST_PIN, HOST_PIN),  # only a guest PIN
        (None, None, "1234"),  # no PINs at all, yet one was typed
    ],
)
def test_a_wrong_pin_is_refused(
    make_room: Callable[..., Room], events: Events, host_pin: str | None, guest_pin: str | None, typed: str | None
) -> None:
    room = make_room(host_pin=host_pin, guest_pin=guest_pin, lobby=True)
    listen(room, events)
    with pytest.raises(JoinRefused) as refused:
        room.request_join("Mallory", typed, LegKind.PHONE)
    assert refused.value.code == "wrong_pin"
    assert room.participants == {} and room.lobby == {}
    assert events == []


def test_role_for_pin_without_joining(make_room: Callable[..., Room]) -> None:
    room = make_room(host_pin=HOST_PIN, guest_pin=GUEST_PIN)
    assert room.role_for_pin(HOST_PIN) is Role.HOST
    assert room.role_for_pin(GUEST_PIN) is Role.GUEST
    with pytest.raises(JoinRefused):
        room.role_for_pin("9999")
    assert room.participants == {}


# -- joining and leaving --------------------------------------------------------------------------


def test_join_emits_participant_joined_with_role_and_kind(make_room: Callable[..., Room], events: Events) -> None:
    room = make_room(host_pin=HOST_PIN)
    listen(room, events)
    p = join(room, "Sam", kind=LegKind.SIP_ROOM_SYSTEM)
    assert p.kind is LegKind.SIP_ROOM_SYSTEM and p.name == "Sam" and p.joined_at == WALL_TIME
    [event] = events
    assert (event.type, event.room, event.participant, event.by) == ("participant_joined", "r1", p.id, None)
    assert event.data == {"name": "Sam", "role": "guest", "kind": "sip_room_system"}
    assert event.at == WALL_TIME


def test_each_participant_gets_its_own_id(make_room: Callable[..., Room]) -> None:
    room = make_room(id_factory=new_participant_id)  # the real id factory
    ids = {join(room, f"guest {n}").id for n in range(20)}
    assert len(ids) == 20


def test_leave_emits_participant_left(meeting: Meeting) -> None:
    meeting.room.leave(meeting.gil.id)
    assert meeting.gil.id not in meeting.room.participants
    assert meeting.events.summary() == [("participant_left", meeting.gil.id, None)]


def test_leaving_twice_or_unknown_emits_nothing(meeting: Meeting) -> None:
    meeting.room.leave(meeting.gil.id)
    meeting.events.clear()
    meeting.room.leave(meeting.gil.id)
    meeting.room.leave("nobody")
    assert meeting.events == []
    assert set(meeting.room.participants) == {meeting.host.id, meeting.gus.id}


# -- lock -----------------------------------------------------------------------------------------


def test_locked_room_refuses_guests_but_lets_hosts_in(meeting: Meeting) -> None:
    room = meeting.room
    room.set_locked(meeting.host.id, True)
    with pytest.raises(JoinRefused) as refused:
        room.request_join("Late guest", None, LegKind.BROWSER)
    assert refused.value.code == "locked"
    second_host = join(room, "Second host", HOST_PIN)
    assert second_host.is_host
    assert len(room.participants) == 4


def test_lock_and_unlock_emit_events_and_repeats_emit_nothing(meeting: Meeting) -> None:
    room, host = meeting.room, meeting.host.id
    room.set_locked(host, True)
    room.set_locked(host, True)
    assert room.locked
    room.set_locked(host, False)
    room.set_locked(host, False)
    assert not room.locked
    assert meeting.events.summary() == [("room_locked", None, host), ("room_unlocked", None, host)]


def test_the_admin_may_lock(meeting: Meeting) -> None:
    meeting.room.set_locked(None, True)
    assert meeting.room.locked
    assert meeting.events.summary() == [("room_locked", None, None)]


def test_a_guest_may_not_lock(meeting: Meeting) -> None:
    with pytest.raises(NotAllowed) as refused:
        meeting.room.set_locked(meeting.gil.id, True)
    assert refused.value.code == "not_allowed"
    assert not meeting.room.locked
    assert meeting.events == []


def test_a_locked_room_unlocks_when_the_last_participant_leaves(meeting: Meeting) -> None:
    room = meeting.room
    room.set_locked(meeting.host.id, True)
    room.leave(meeting.gil.id)
    room.leave(meeting.host.id)
    assert room.locked, "still locked while someone is in the meeting"
    meeting.events.clear()
    room.leave(meeting.gus.id)
    assert not room.locked
    assert meeting.events.summary() == [("participant_left", meeting.gus.id, None), ("room_unlocked", None, None)]
    assert join(room, "Next meeting's guest").role is Role.GUEST


def test_a_room_locked_by_config_stays_locked_when_emptied(make_room: Callable[..., Room], events: Events) -> None:
    room = make_room(host_pin=HOST_PIN, locked=True)
    with pytest.raises(JoinRefused):
        room.request_join("Gil", None, LegKind.BROWSER)
    host = join(room, "Hanna", HOST_PIN)
    listen(room, events)
    room.leave(host.id)
    assert room.locked
    assert events.types() == ["participant_left"]


def test_a_room_locked_by_config_locks_again_for_the_next_meeting(make_room: Callable[..., Room], events: Events) -> None:
    room = make_room(host_pin=HOST_PIN, locked=True)
    host = join(room, "Hanna", HOST_PIN)
    room.set_locked(host.id, False)
    guest = join(room, "Gil")
    listen(room, events)
    room.leave(guest.id)
    room.leave(host.id)
    assert room.locked
    assert events.summary()[-1] == ("room_locked", None, None)


def test_a_waiting_guest_leaving_does_not_unlock_an_empty_room(make_room: Callable[..., Room]) -> None:
    room = make_room(lobby=True)
    entry = wait(room, "Gil")
    room.set_locked(None, True)  # the admin locks the room before anyone is in the meeting
    room.leave(entry)
    room.leave("unknown")
    assert room.locked


def test_the_admin_removing_the_last_participant_unlocks(meeting: Meeting) -> None:
    room = meeting.room
    room.set_locked(None, True)
    for p in (meeting.gil, meeting.gus, meeting.host):
        room.remove(None, p.id)
    assert not room.locked
    assert meeting.events.types()[-1] == "room_unlocked"


# -- capacity -------------------------------------------------------------------------------------


def test_a_full_room_refuses_guests_and_hosts(make_room: Callable[..., Room], events: Events) -> None:
    room = make_room(host_pin=HOST_PIN, max_participants=2)
    join(room, "Hanna", HOST_PIN)
    gil = join(room, "Gil")
    listen(room, events)
    for pin in (None, HOST_PIN):
        with pytest.raises(JoinRefused) as refused:
            room.request_join("One too many", pin, LegKind.PHONE)
        assert refused.value.code == "full"
    assert len(room.participants) == 2
    assert events == []
    room.leave(gil.id)
    assert join(room, "Now there is room").role is Role.GUEST


# -- lobby ----------------------------------------------------------------------------------------


@pytest.fixture
def lobby_room(make_room: Callable[..., Room]) -> Room:
    return make_room(host_pin=HOST_PIN, lobby=True, default_lobby_wait_s=60.0)


def test_guests_wait_in_the_lobby(lobby_room: Room, events: Events) -> None:
    listen(lobby_room, events)
    result = lobby_room.request_join("Gil", None, LegKind.PHONE)
    assert result.participant is None
    entry = result.lobby_entry
    assert entry is not None
    assert (entry.name, entry.kind) == ("Gil", LegKind.PHONE)
    assert lobby_room.participants == {}
    assert list(lobby_room.lobby) == [entry.id]
    [event] = events
    assert (event.type, event.participant, event.by) == ("lobby_changed", entry.id, None)
    assert event.data == {"waiting": 1, "name": "Gil"}


def test_hosts_skip_the_lobby(lobby_room: Room) -> None:
    host = join(lobby_room, "Hanna", HOST_PIN)
    assert host.is_host and lobby_room.lobby == {}


def test_a_locked_room_refuses_guests_instead_of_queueing_them(lobby_room: Room) -> None:
    lobby_room.set_locked(None, True)
    with pytest.raises(JoinRefused) as refused:
        lobby_room.request_join("Gil", None, LegKind.BROWSER)
    assert refused.value.code == "locked"
    assert lobby_room.lobby == {}


def test_queue_position_and_default_wait_before_any_decision(lobby_room: Room, clock: FakeClock) -> None:
    a = wait(lobby_room, "A")
    clock.advance(5)
    b = wait(lobby_room, "B")
    c = wait(lobby_room, "C")
    # A has already waited 5 s of its 60: the estimate counts down.
    assert [lobby_room.lobby_position(x) for x in (a, b, c)] == [(1, 55.0), (2, 115.0), (3, 175.0)]
    assert [(e["id"], e["name"], e["position"], e["estimated_wait_s"]) for e in lobby_room.lobby_public()] == [
        (a, "A", 1, 55),
        (b, "B", 2, 115),
        (c, "C", 3, 175),
    ]
    assert lobby_room.lobby_public()[0]["kind"] == "browser"


def test_wait_estimate_is_learned_from_the_hosts_decisions(lobby_room: Room, clock: FakeClock) -> None:
    host = join(lobby_room, "Hanna", HOST_PIN).id
    a = wait(lobby_room, "A")
    clock.advance(10)
    b = wait(lobby_room, "B")
    c = wait(lobby_room, "C")
    clock.advance(20)
    lobby_room.admit(host, a)  # 30 s after A arrived: the first sample
    assert lobby_room.lobby_position(b) == (1, 30.0)
    assert lobby_room.lobby_position(c) == (2, 60.0)
    clock.advance(20)
    lobby_room.deny(host, b)  # 20 s after the previous decision: smoothed 0.7 * 30 + 0.3 * 20
    position, estimate = lobby_room.lobby_position(c)
    assert position == 1
    assert estimate == pytest.approx(27.0)
    assert lobby_room.lobby_public()[0]["estimated_wait_s"] == 27


def test_time_with_nobody_waiting_does_not_count_as_decision_time(lobby_room: Room, clock: FakeClock) -> None:
    host = join(lobby_room, "Hanna", HOST_PIN).id
    a = wait(lobby_room, "A")
    clock.advance(10)
    lobby_room.admit(host, a)
    clock.advance(1000)  # an empty lobby for a long while
    b = wait(lobby_room, "B")
    c = wait(lobby_room, "C")
    clock.advance(20)
    lobby_room.admit(host, b)
    assert lobby_room.lobby_position(c) == (1, pytest.approx(0.7 * 10 + 0.3 * 20))


def test_an_instant_decision_counts_as_at_least_one_second(lobby_room: Room) -> None:
    a = wait(lobby_room, "A")
    b = wait(lobby_room, "B")
    lobby_room.deny(None, a)
    assert lobby_room.lobby_position(b) == (1, 1.0)


def test_admit_turns_the_entry_into_a_guest_with_the_same_id(lobby_room: Room, events: Events) -> None:
    host = join(lobby_room, "Hanna", HOST_PIN).id
    entry = wait(lobby_room, "Gil", kind=LegKind.H323_ROOM_SYSTEM)
    listen(lobby_room, events)
    p = lobby_room.admit(host, entry)
    assert p.id == entry
    assert (p.name, p.role, p.kind) == ("Gil", Role.GUEST, LegKind.H323_ROOM_SYSTEM)
    assert lobby_room.participants[entry] is p
    assert lobby_room.lobby == {}
    assert events.summary() == [
        ("lobby_admitted", entry, host),
        ("lobby_changed", entry, host),
        ("participant_joined", entry, None),
    ]
    assert events[1].data == {"waiting": 0}


def test_deny_removes_the_entry_without_a_participant(lobby_room: Room, events: Events) -> None:
    host = join(lobby_room, "Hanna", HOST_PIN).id
    denied = wait(lobby_room, "Gil")
    other = wait(lobby_room, "Gus")
    listen(lobby_room, events)
    lobby_room.deny(host, denied)
    assert denied not in lobby_room.lobby and denied not in lobby_room.participants
    assert lobby_room.lobby_position(other) == (1, pytest.approx(1.0))
    assert events.summary() == [("lobby_denied", denied, host), ("lobby_changed", denied, host)]
    assert events[0].data == {"name": "Gil"} and events[1].data == {"waiting": 1}


def test_the_admin_may_admit_and_deny(lobby_room: Room) -> None:
    a, b = wait(lobby_room, "A"), wait(lobby_room, "B")
    assert lobby_room.admit(None, a).id == a
    lobby_room.deny(None, b)
    assert lobby_room.lobby == {} and list(lobby_room.participants) == [a]


def test_a_waiting_guest_leaving_moves_the_queue_up(lobby_room: Room, events: Events) -> None:
    a, b = wait(lobby_room, "A"), wait(lobby_room, "B")
    listen(lobby_room, events)
    lobby_room.leave(a)
    assert list(lobby_room.lobby) == [b]
    assert lobby_room.lobby_position(b)[0] == 1
    assert events.summary() == [("lobby_changed", a, None)]
    assert events[0].data == {"waiting": 1, "left": True}
    with pytest.raises(UnknownParticipant):
        lobby_room.lobby_position(a)


@pytest.mark.parametrize("decide", ["admit", "deny"])
def test_only_hosts_decide_on_the_lobby(lobby_room: Room, events: Events, decide: str) -> None:
    join(lobby_room, "Hanna", HOST_PIN)
    lobby_room.lobby_enabled = False
    guest = join(lobby_room, "Gil").id
    lobby_room.lobby_enabled = True
    waiting = wait(lobby_room, "Gus")
    listen(lobby_room, events)
    for actor in (guest, waiting, "stranger"):
        with pytest.raises(NotAllowed):
            getattr(lobby_room, decide)(actor, waiting)
    assert list(lobby_room.lobby) == [waiting]
    assert waiting not in lobby_room.participants
    assert events == []


def test_a_guest_trying_to_admit_into_a_full_room_is_not_allowed(make_room: Callable[..., Room]) -> None:
    room = make_room(host_pin=HOST_PIN, max_participants=1)
    guest = join(room, "Gil")
    room.lobby_enabled = True
    waiting = wait(room, "Gus")
    with pytest.raises(NotAllowed):
        room.admit(guest.id, waiting)


def test_admitting_into_a_full_room_is_refused_and_the_guest_keeps_waiting(
    make_room: Callable[..., Room], events: Events
) -> None:
    room = make_room(host_pin=HOST_PIN, lobby=True, max_participants=1)
    host = join(room, "Hanna", HOST_PIN).id
    entry = wait(room, "Gil")
    listen(room, events)
    with pytest.raises(JoinRefused) as refused:
        room.admit(host, entry)
    assert refused.value.code == "full"
    assert list(room.lobby) == [entry]
    assert events == []


def test_deciding_on_someone_not_waiting(lobby_room: Room) -> None:
    host = join(lobby_room, "Hanna", HOST_PIN).id
    with pytest.raises(UnknownParticipant):
        lobby_room.admit(host, "nobody")
    with pytest.raises(UnknownParticipant):
        lobby_room.deny(host, host)  # in the meeting, not in the lobby


def test_only_hosts_see_the_lobby(lobby_room: Room) -> None:
    wait(lobby_room, "Gil")
    for_host, for_guest = lobby_room.public(for_host=True), lobby_room.public(for_host=False)
    assert [e["name"] for e in for_host["lobby"]] == ["Gil"]
    assert for_guest["lobby"] == []
    assert for_host["lobby_waiting"] == for_guest["lobby_waiting"] == 1
    assert for_host["lobby_enabled"] is True


def test_a_callers_whole_number_is_for_hosts_in_the_lobby_and_in_the_meeting(lobby_room: Room) -> None:
    """A phone caller's number (E.164) is shown to hosts, waiting and once admitted; the room's
    own view (every participant's) never carries it."""
    host = join(lobby_room, "Hanna", HOST_PIN).id
    entry = lobby_room.request_join("+49170•••••67", None, LegKind.PHONE, source="number:+4917012345667", number="+4917012345667").lobby_entry
    assert entry is not None
    assert lobby_room.public(for_host=True)["lobby"][0]["number"] == "+4917012345667"
    caller = lobby_room.admit(host, entry.id)
    for_host, for_room = lobby_room.public(for_host=True), lobby_room.public(for_host=False)
    assert {p["id"]: p.get("number") for p in for_host["participants"]} == {host: None, caller.id: "+4917012345667"}
    assert all("number" not in p for p in for_room["participants"]) and "+4917012345667" not in str(for_room)


# -- remove and end -------------------------------------------------------------------------------


def test_a_host_removes_a_participant(meeting: Meeting) -> None:
    meeting.room.remove(meeting.host.id, meeting.gil.id)
    assert meeting.gil.id not in meeting.room.participants
    assert meeting.events.summary() == [("participant_removed", meeting.gil.id, meeting.host.id)]


def test_removing_someone_not_there(meeting: Meeting) -> None:
    with pytest.raises(UnknownParticipant) as error:
        meeting.room.remove(meeting.host.id, "nobody")
    assert error.value.code == "unknown_participant"
    assert meeting.events == []


def test_end_sends_everyone_and_the_lobby_away(make_room: Callable[..., Room], events: Events) -> None:
    room = make_room(host_pin=HOST_PIN, lobby=True)
    host = join(room, "Hanna", HOST_PIN).id
    guest = wait(room, "Gil")
    room.admit(host, guest)
    waiting = wait(room, "Gus")
    room.set_locked(host, True)
    listen(room, events)
    ended = room.end(host)
    assert sorted(ended) == sorted([host, guest, waiting])
    assert room.participants == {} and room.lobby == {}
    assert not room.locked
    [event] = events
    assert (event.type, event.participant, event.by) == ("meeting_ended", None, host)
    assert sorted(event.data["participants"]) == sorted(ended)
    # the room serves the next meeting
    assert join(room, "Hanna again", HOST_PIN).is_host
    assert wait(room, "New guest") in room.lobby


def test_the_admin_may_end_a_meeting(meeting: Meeting) -> None:
    ended = meeting.room.end(None)
    assert set(ended) == {meeting.host.id, meeting.gil.id, meeting.gus.id}
    assert meeting.events.summary() == [("meeting_ended", None, None)]


def test_end_keeps_a_lock_from_the_config(make_room: Callable[..., Room]) -> None:
    room = make_room(host_pin=HOST_PIN, locked=True)
    host = join(room, "Hanna", HOST_PIN).id
    room.set_locked(host, False)
    room.end(host)
    assert room.locked


# -- mute -----------------------------------------------------------------------------------------


def test_self_mute_and_unmute(meeting: Meeting) -> None:
    room, gil = meeting.room, meeting.gil
    room.set_self_muted(gil.id, True)
    assert gil.self_muted and gil.audio_muted and not gil.host_muted
    room.set_self_muted(gil.id, True)  # no change
    room.set_self_muted(gil.id, False)
    assert not gil.audio_muted
    room.set_self_muted(gil.id, False)  # no change
    assert meeting.events.summary() == [("muted", gil.id, gil.id), ("unmuted", gil.id, gil.id)]


def test_a_host_mutes_one_participant(meeting: Meeting) -> None:
    room, gil, gus = meeting.room, meeting.gil, meeting.gus
    room.mute(meeting.host.id, gil.id)
    assert gil.host_muted and gil.audio_muted and not gil.self_muted and not gil.self_unmute_forbidden
    assert not gus.audio_muted
    room.mute(meeting.host.id, gil.id)  # already muted by the host
    assert meeting.events.summary() == [("muted", gil.id, meeting.host.id)]


def test_unmuting_oneself_lifts_a_host_mute_unless_forbidden(meeting: Meeting) -> None:
    room, gil = meeting.room, meeting.gil
    room.mute(meeting.host.id, gil.id)
    meeting.events.clear()
    room.set_self_muted(gil.id, False)
    assert not gil.host_muted and not gil.audio_muted
    assert meeting.events.summary() == [("unmuted", gil.id, gil.id)]


def test_muted_and_forbidden_participant_cannot_unmute(meeting: Meeting) -> None:
    room, gil = meeting.room, meeting.gil
    room.mute(meeting.host.id, gil.id, forbid_self_unmute=True)
    assert gil.self_unmute_forbidden
    assert meeting.events.summary() == [
        ("self_unmute_forbidden", gil.id, meeting.host.id),
        ("muted", gil.id, meeting.host.id),
    ]
    meeting.events.clear()
    with pytest.raises(NotAllowed) as refused:
        room.set_self_muted(gil.id, False)
    assert refused.value.code == "self_unmute_forbidden"
    assert gil.audio_muted and gil.host_muted and gil.self_unmute_forbidden
    assert meeting.events == []


def test_forbid_and_allow_self_unmute(meeting: Meeting) -> None:
    room, host, gil = meeting.room, meeting.host.id, meeting.gil
    room.mute(host, gil.id)
    room.set_self_unmute_forbidden(host, gil.id, True)
    room.set_self_unmute_forbidden(host, gil.id, True)  # no change
    with pytest.raises(NotAllowed):
        room.set_self_muted(gil.id, False)
    room.set_self_unmute_forbidden(host, gil.id, False)
    room.set_self_unmute_forbidden(host, gil.id, False)  # no change
    assert gil.host_muted, "allowing self-unmute does not unmute"
    room.set_self_muted(gil.id, False)
    assert not gil.audio_muted
    assert meeting.events.summary() == [
        ("muted", gil.id, host),
        ("self_unmute_forbidden", gil.id, host),
        ("self_unmute_allowed", gil.id, host),
        ("unmuted", gil.id, gil.id),
    ]


def test_a_forbidden_participant_may_still_mute_themselves(meeting: Meeting) -> None:
    room, gil = meeting.room, meeting.gil
    room.mute(meeting.host.id, gil.id, forbid_self_unmute=True)
    meeting.events.clear()
    room.set_self_muted(gil.id, True)
    assert gil.self_muted and gil.audio_muted
    assert "unmuted" not in meeting.events.types()


def test_host_unmute_lifts_the_host_mute_and_the_ban(meeting: Meeting) -> None:
    room, host, gil = meeting.room, meeting.host.id, meeting.gil
    room.mute(host, gil.id, forbid_self_unmute=True)
    meeting.events.clear()
    room.unmute(host, gil.id)
    assert not gil.audio_muted and not gil.host_muted and not gil.self_unmute_forbidden
    assert meeting.events.summary() == [("self_unmute_allowed", gil.id, host), ("unmuted", gil.id, host)]


def test_host_unmute_never_lifts_a_self_mute(meeting: Meeting) -> None:
    room, host, gil = meeting.room, meeting.host.id, meeting.gil
    room.set_self_muted(gil.id, True)
    room.mute(host, gil.id, forbid_self_unmute=True)
    meeting.events.clear()
    room.unmute(host, gil.id)
    assert gil.self_muted and gil.audio_muted
    assert not gil.host_muted and not gil.self_unmute_forbidden
    assert "unmuted" not in meeting.events.types()
    room.set_self_muted(gil.id, False)  # the ban is gone: the participant may unmute
    assert not gil.audio_muted


def test_host_unmute_of_someone_unmuted_emits_nothing(meeting: Meeting) -> None:
    meeting.room.unmute(meeting.host.id, meeting.gil.id)
    assert meeting.events == []


def test_mute_all_guests_leaves_hosts_alone(meeting: Meeting) -> None:
    room, host = meeting.room, meeting.host
    cohost = join(room, "Second host", HOST_PIN)
    meeting.events.clear()
    muted = room.mute_all_guests(host.id)
    assert sorted(muted) == sorted([meeting.gil.id, meeting.gus.id])
    assert meeting.gil.host_muted and meeting.gus.host_muted
    assert not host.audio_muted and not cohost.audio_muted
    assert not meeting.gil.self_unmute_forbidden
    assert sorted(meeting.events.summary(), key=str) == sorted(
        [("mute_policy_changed", None, host.id), ("muted", meeting.gil.id, host.id), ("muted", meeting.gus.id, host.id)],
        key=str,
    )


def test_mute_all_guests_can_forbid_self_unmute(meeting: Meeting) -> None:
    room = meeting.room
    room.mute_all_guests(None, forbid_self_unmute=True)
    for guest in (meeting.gil, meeting.gus):
        assert guest.host_muted and guest.self_unmute_forbidden
        with pytest.raises(NotAllowed):
            room.set_self_muted(guest.id, False)
    assert not meeting.host.self_unmute_forbidden
    assert meeting.events.types().count("self_unmute_forbidden") == 2


def test_hosts_can_always_unmute_themselves(meeting: Meeting) -> None:
    room, host = meeting.room, meeting.host
    cohost = join(room, "Second host", HOST_PIN)
    room.mute(host.id, cohost.id, forbid_self_unmute=True)
    assert cohost.host_muted and not cohost.self_unmute_forbidden
    with pytest.raises(NotAllowed):
        room.set_self_unmute_forbidden(host.id, cohost.id, True)
    assert not cohost.self_unmute_forbidden
    room.set_self_muted(cohost.id, False)
    assert not cohost.audio_muted


def test_mute_state_shows_in_the_public_view(meeting: Meeting) -> None:
    meeting.room.mute(meeting.host.id, meeting.gil.id, forbid_self_unmute=True)
    view = meeting.gil.public()
    assert (view["muted"], view["host_muted"], view["self_muted"], view["self_unmute_forbidden"]) == (
        True,
        True,
        False,
        True,
    )
    roster = {p["id"]: p for p in meeting.room.public(for_host=False)["participants"]}
    assert roster[meeting.gil.id]["muted"] and not roster[meeting.gus.id]["muted"]


def test_muting_someone_unknown(meeting: Meeting) -> None:
    with pytest.raises(UnknownParticipant):
        meeting.room.mute(meeting.host.id, "nobody")
    with pytest.raises(UnknownParticipant):
        meeting.room.set_self_muted("nobody", True)


# -- what guests may not do -----------------------------------------------------------------------

HOST_ACTIONS: dict[str, Callable[[Room, str, str], Any]] = {
    "mute": lambda room, by, target: room.mute(by, target),
    "unmute": lambda room, by, target: room.unmute(by, target),
    "forbid": lambda room, by, target: room.set_self_unmute_forbidden(by, target, True),
    "allow": lambda room, by, target: room.set_self_unmute_forbidden(by, target, False),
    "mute_all": lambda room, by, target: room.mute_all_guests(by),
    "remove": lambda room, by, target: room.remove(by, target),
    "lock": lambda room, by, target: room.set_locked(by, True),
    "end": lambda room, by, target: room.end(by),
    "lower_hand": lambda room, by, target: room.set_hand(by, target, False),
}


@pytest.mark.parametrize("action", HOST_ACTIONS.values(), ids=HOST_ACTIONS.keys())
@pytest.mark.parametrize("actor", ["guest", "stranger"])
def test_guests_may_not_use_host_actions(meeting: Meeting, action: Callable[..., Any], actor: str) -> None:
    room = meeting.room
    room.mute(meeting.host.id, meeting.gus.id, forbid_self_unmute=True)  # so unmute/allow would change something
    room.set_hand(meeting.gus.id, meeting.gus.id, True)  # so lowering would change something
    meeting.events.clear()
    before = room.public(for_host=True)
    by = meeting.gil.id if actor == "guest" else "stranger"
    with pytest.raises(NotAllowed) as refused:
        action(room, by, meeting.gus.id)
    assert refused.value.code == "not_allowed"
    assert room.public(for_host=True) == before
    assert meeting.events == []


# -- hands ----------------------------------------------------------------------------------------


def test_raise_and_lower_your_own_hand(meeting: Meeting) -> None:
    room, gil = meeting.room, meeting.gil
    room.set_hand(gil.id, gil.id, True)
    room.set_hand(gil.id, gil.id, True)  # no change
    assert gil.hand_raised
    room.set_hand(gil.id, gil.id, False)
    room.set_hand(gil.id, gil.id, False)  # no change
    assert not gil.hand_raised
    assert meeting.events.summary() == [("hand_raised", gil.id, gil.id), ("hand_lowered", gil.id, gil.id)]


@pytest.mark.parametrize("lowered_by", ["host", "admin"])
def test_a_host_may_lower_someone_elses_hand(meeting: Meeting, lowered_by: str) -> None:
    room, gil = meeting.room, meeting.gil
    room.set_hand(gil.id, gil.id, True)
    meeting.events.clear()
    by = meeting.host.id if lowered_by == "host" else None
    room.set_hand(by, gil.id, False)
    assert not gil.hand_raised
    assert meeting.events.summary() == [("hand_lowered", gil.id, by)]


@pytest.mark.parametrize("raiser", ["host", "guest", "admin"])
def test_nobody_raises_someone_elses_hand(meeting: Meeting, raiser: str) -> None:
    by = {"host": meeting.host.id, "guest": meeting.gus.id, "admin": None}[raiser]
    with pytest.raises(NotAllowed):
        meeting.room.set_hand(by, meeting.gil.id, True)
    assert not meeting.gil.hand_raised
    assert meeting.events == []


# -- video and speaking ---------------------------------------------------------------------------


def test_video_off_and_speaking_emit_only_on_change(meeting: Meeting) -> None:
    room, gil = meeting.room, meeting.gil
    room.set_video_off(gil.id, True)
    room.set_video_off(gil.id, True)
    room.set_speaking(gil.id, True)
    room.set_speaking(gil.id, True)
    room.set_speaking(gil.id, False)
    room.set_speaking("gone", True)  # the mixer may report someone who just left
    assert gil.video_off and not gil.speaking
    assert meeting.events.summary() == [
        ("video_changed", gil.id, gil.id),
        ("speaking_started", gil.id, None),
        ("speaking_stopped", gil.id, None),
    ]
    assert meeting.events[0].data == {"video_off": True}


# -- events plumbing ------------------------------------------------------------------------------


def test_unsubscribe_stops_events(make_room: Callable[..., Room], events: Events) -> None:
    room = make_room()
    other: list[RoomEvent] = []
    unsubscribe = room.subscribe(events.append)
    room.subscribe(other.append)
    join(room, "A")
    unsubscribe()
    unsubscribe()  # twice is harmless
    join(room, "B")
    assert len(events) == 1 and len(other) == 2


def test_event_as_dict(meeting: Meeting) -> None:
    meeting.room.mute(meeting.host.id, meeting.gil.id)
    assert meeting.events[0].as_dict() == {
        "type": "muted",
        "room": "r1",
        "participant": meeting.gil.id,
        "by": meeting.host.id,
        "data": {"self_muted": False, "host_muted": True},
        "at": WALL_TIME,
    }


def test_a_change_of_who_holds_the_mute_is_an_event_too(meeting: Meeting) -> None:
    """The host's view must never go stale: flag changes that keep the participant muted still show."""
    room, gil, host = meeting.room, meeting.gil, meeting.host
    room.set_self_muted(gil.id, True)
    meeting.events.clear()
    room.mute(host.id, gil.id)  # already silent by their own choice; now the host holds it too
    assert [(e.type, e.by, e.data) for e in meeting.events] == [
        ("mute_changed", host.id, {"self_muted": True, "host_muted": True})
    ]
    meeting.events.clear()
    room.unmute(host.id, gil.id)  # the host lets go; the guest's own mute stays
    assert [(e.type, e.data) for e in meeting.events] == [("mute_changed", {"self_muted": True, "host_muted": False})]
    assert gil.audio_muted


def test_mute_all_guests_also_mutes_guests_who_join_later_until_allowed(meeting: Meeting) -> None:
    room, host = meeting.room, meeting.host
    room.mute_all_guests(host.id, forbid_self_unmute=True)
    late = join(room, "Late guest")
    assert late.host_muted and late.self_unmute_forbidden
    late_host = join(room, "Late host", HOST_PIN)
    assert not late_host.audio_muted
    assert room.public(True)["guests_muted_on_entry"] and not room.public(True)["guests_may_unmute"]
    room.allow_guests_to_unmute(host.id)
    assert not late.self_unmute_forbidden and late.host_muted  # allowed, not forced open
    room.set_self_muted(late.id, False)
    assert not late.audio_muted
    assert not join(room, "Later still").audio_muted


def test_a_host_mute_survives_leaving_and_coming_back(meeting: Meeting) -> None:
    room, host = meeting.room, meeting.host
    guest = room.request_join("Mallory", None, LegKind.BROWSER, source="10.0.0.7").participant
    assert guest is not None
    room.mute(host.id, guest.id, forbid_self_unmute=True)
    room.leave(guest.id)
    back = room.request_join("mallory ", None, LegKind.BROWSER, source="10.0.0.7").participant
    assert back is not None and back.host_muted and back.self_unmute_forbidden
    elsewhere = room.request_join("Mallory", None, LegKind.BROWSER, source="10.0.0.8").participant
    assert elsewhere is not None and not elsewhere.audio_muted
    room.end(host.id)  # a new meeting forgets it
    fresh = room.request_join("Mallory", None, LegKind.BROWSER, source="10.0.0.7").participant
    assert fresh is not None and not fresh.audio_muted


def test_places_kept_for_reconnects_never_lock_a_host_out() -> None:
    room = Room("r", host_pin=HOST_PIN, max_participants=2)
    a = room.request_join("A", None, LegKind.BROWSER).participant
    b = room.request_join("B", None, LegKind.BROWSER).participant
    assert a is not None and b is not None
    room.set_connected(a.id, False)
    room.set_connected(b.id, False)
    assert room.request_join("Host", HOST_PIN, LegKind.BROWSER).participant is not None


def test_the_waiting_room_has_a_cap() -> None:
    room = Room("r", lobby=True)
    room.max_lobby = 3
    for i in range(3):
        room.request_join(f"G{i}", None, LegKind.BROWSER)
    with pytest.raises(JoinRefused) as refused:
        room.request_join("G4", None, LegKind.BROWSER)
    assert refused.value.code == "full"


def test_recording_and_streaming_are_told_once_each_way_and_a_streams_outage_when_it_changes(meeting: Meeting) -> None:
    room, events = meeting.room, meeting.events
    room.set_streaming_up(False, "gone")  # (not streamed: nothing to say)
    room.set_broadcasting("recording", True, "admin", video=True)
    room.set_broadcasting("recording", True, "admin")  # (already: nothing new)
    room.set_broadcasting("streaming", True, meeting.host.id)
    room.set_streaming_up(True)  # (connected at first: nothing new)
    room.set_streaming_up(False, "Connection refused")
    room.set_streaming_up(False, "Connection refused")  # (still down: said once)
    assert room.public(False)["streaming_interrupted"] is True
    room.set_streaming_up(True)
    room.set_broadcasting("streaming", False, meeting.host.id)
    room.set_broadcasting("recording", False, None, reason="No space left on device")
    assert events.summary() == [
        ("recording_started", None, "admin"),
        ("streaming_started", None, meeting.host.id),
        ("streaming_interrupted", None, None),
        ("streaming_resumed", None, None),
        ("streaming_stopped", None, meeting.host.id),
        ("recording_stopped", None, None),
    ]
    assert events[0].data == {"video": True} and events[-1].data == {"reason": "No space left on device"}
    public = room.public(True)
    assert public["broadcasting"] == {} and public["streaming_interrupted"] is False
    assert public["may_broadcast"] == {"recording": True, "streaming": False} and room.public(False)["may_broadcast"] == {}


def test_waiting_people_back_from_another_node_keep_their_order_whatever_order_they_come_back_in(make_room, clock) -> None:  # type: ignore[no-untyped-def]
    """After a failover, the lobby's queue is rebuilt by how long each had waited (their tokens say),
    not by who reconnected first; and a full lobby stays full."""
    from gateway.rooms.participant import LegKind

    room = make_room(lobby=True)
    room.max_lobby = 3
    late = room.add_waiting_resumed("Late", LegKind.BROWSER, None, waiting_since=WALL_TIME - 10.0)
    first = room.add_waiting_resumed("First", LegKind.BROWSER, None, waiting_since=WALL_TIME - 300.0)
    middle = room.add_waiting_resumed("Middle", LegKind.BROWSER, None, waiting_since=WALL_TIME - 120.0)
    assert [room.lobby_position(e.id)[0] for e in (first, middle, late)] == [1, 2, 3]
    assert room.waiting_since(first.id) == pytest.approx(WALL_TIME - 300.0)
    with pytest.raises(JoinRefused):
        room.add_waiting_resumed("One more", LegKind.BROWSER, None, waiting_since=WALL_TIME - 500.0)
