"""The meeting's chat in the room (gateway/rooms/chat.py, Room.send_chat/remove_chat/set_chat):
messages become events for everyone, cleaned of control characters and capped; hosts remove and
turn off (a host still speaks); a flood is refused; nothing outlives the meeting."""

from __future__ import annotations

import pytest

from gateway.rooms.chat import KEPT, MAX_TEXT, RATE, clean
from gateway.rooms.errors import NotAllowed
from gateway.rooms.events import RoomEvent
from gateway.rooms.participant import LegKind
from gateway.rooms.room import Room


def room_with_two() -> tuple[Room, str, str, list[RoomEvent]]:
    room = Room("demo", "Demo", host_pin="1234")
    events: list[RoomEvent] = []
    room.subscribe(events.append)
    host = room.request_join("Anna", "1234", LegKind.BROWSER).participant
    guest = room.request_join("Bert", None, LegKind.BROWSER).participant
    assert host is not None and guest is not None
    return room, host.id, guest.id, events


def test_a_message_goes_to_everyone_as_an_event_and_is_kept_for_late_joiners() -> None:
    room, host, guest, events = room_with_two()
    message = room.send_chat(guest, "  Aktenzeichen\x00 4711\x1b[31m  ")
    assert message.text == "Aktenzeichen 4711[31m" and message.name == "Bert" and not message.host
    (event,) = [e for e in events if e.type == "chat_message"]
    assert event.data["message"] == message.public() and event.participant == guest
    assert list(room.chat.messages) == [message]
    assert room.send_chat(host, "x" * (MAX_TEXT + 50)).text == "x" * MAX_TEXT


def test_hosts_remove_messages_and_turn_the_chat_off_for_guests() -> None:
    room, host, guest, events = room_with_two()
    message = room.send_chat(guest, "hallo")
    with pytest.raises(NotAllowed):
        room.remove_chat(guest, message.id)
    room.remove_chat(host, message.id)
    assert [e.data for e in events if e.type == "chat_removed"] == [{"id": message.id}] and not room.chat.messages
    with pytest.raises(NotAllowed):
        room.set_chat(guest, False)
    room.set_chat(host, False)
    assert room.public(False)["chat_enabled"] is False
    with pytest.raises(NotAllowed) as off:
        room.send_chat(guest, "trotzdem")
    assert off.value.code == "chat_off"
    assert room.send_chat(host, "Ansage").host  # (a host still may)


def test_empty_messages_and_floods_are_refused() -> None:
    room, _host, guest, _events = room_with_two()
    with pytest.raises(NotAllowed) as empty:
        room.send_chat(guest, " \x00\x07 ")
    assert empty.value.code == "chat_empty"
    for n in range(RATE):
        room.send_chat(guest, f"{n}")
    with pytest.raises(NotAllowed) as flood:
        room.send_chat(guest, "one more")
    assert flood.value.code == "rate_limited"


def test_nothing_outlives_the_meeting() -> None:
    room, host, guest, _events = room_with_two()
    room.send_chat(guest, "hallo")
    room.set_chat(host, False)
    room.leave(guest)
    assert room.chat.messages  # (the meeting goes on)
    room.leave(host)
    assert not room.chat.messages and room.chat.enabled  # (the last one left: the next meeting starts empty)
    room2, host2, guest2, _ = room_with_two()
    room2.send_chat(guest2, "hallo")
    room2.end(host2)
    assert not room2.chat.messages


def test_only_the_last_messages_are_kept() -> None:
    room, host, _guest, _events = room_with_two()
    room.chat._rate = type(room.chat._rate)(10_000)  # (no flood limit for this test)
    for n in range(KEPT + 5):
        room.send_chat(host, str(n))
    assert len(room.chat.messages) == KEPT and room.chat.messages[0].text == "5"


def test_clean_keeps_line_breaks_and_tabs() -> None:
    assert clean("a\n\tb\r\x85c") == "a\n\tbc"
