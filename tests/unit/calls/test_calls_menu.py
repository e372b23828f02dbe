"""The voice menu (gateway.calls.menu), sans-IO: keys, time and the room's answers in, actions out."""

from __future__ import annotations

from gateway.calls.endings import Ending
from gateway.calls.menu import End, EntryFlow, FindRoom, Join, RoomInfo, Say, Stage, StopSaying
from gateway.calls.prompts import Prompt
from gateway.rooms.room import Room

SECRET = RoomInfo("secret", "de", host_pin=True, guest_pin=True)
DEMO = RoomInfo("demo", "en", host_pin=True, guest_pin=False)
OPEN = RoomInfo("open", "en", host_pin=False, guest_pin=False)


def keys(flow: EntryFlow, typed: str, now: float = 0.0) -> list[object]:
    actions: list[object] = []
    for key in typed:
        actions += flow.digit(key, now)
    return actions


def test_known_room_with_pins_asks_for_the_pin_in_the_rooms_language() -> None:
    flow = EntryFlow("en")
    assert flow.start(SECRET, 0.0) == [Say((Prompt.WELCOME, Prompt.ENTER_PIN), "de")]
    assert flow.stage is Stage.PIN
    assert keys(flow, "5555#") == [StopSaying(), Join("secret", "5555")]
    assert flow.stage is Stage.JOINING
    flow.joined()
    assert flow.stage is Stage.DONE and flow.deadline is None


def test_open_room_joins_at_once_and_host_pin_only_room_takes_a_bare_hash() -> None:
    assert EntryFlow("de").start(OPEN, 0.0) == [Say((Prompt.WELCOME,), "en"), Join("open", None)]
    flow = EntryFlow("de")
    assert flow.start(DEMO, 0.0) == [Say((Prompt.WELCOME, Prompt.ENTER_PIN_OPTIONAL), "en")]
    assert keys(flow, "#") == [StopSaying(), Join("demo", None)]


def test_the_entry_timeout_starts_when_the_prompt_ends_and_silence_joins_where_guests_need_no_pin() -> None:
    flow = EntryFlow("en", entry_timeout_s=10)
    flow.start(DEMO, 0.0)
    flow.prompt_finished(5.0)
    assert flow.deadline == 15.0
    assert flow.timeout(14.9) == []
    assert flow.timeout(15.0) == [Join("demo", None)]


def test_digits_end_by_timeout_as_well_as_by_hash() -> None:
    flow = EntryFlow("en", digit_timeout_s=3)
    flow.start(SECRET, 0.0)
    flow.prompt_finished(4.0)
    keys(flow, "12", now=5.0)
    assert flow.deadline == 8.0
    assert flow.timeout(8.0) == [Join("secret", "12")]


def test_wrong_pins_are_asked_again_then_end_with_a_neutral_ending() -> None:
    flow = EntryFlow("en", attempts=3)
    flow.start(SECRET, 0.0)
    for now in (1.0, 2.0):
        keys(flow, "1#")
        assert flow.wrong_pin(now) == [Say((Prompt.WRONG_PIN, Prompt.ENTER_PIN), "de")]
    keys(flow, "3#")
    assert flow.wrong_pin(3.0) == [End(Prompt.TOO_MANY_ATTEMPTS, "de", Ending.WRONG_PIN)]
    assert flow.digit("4", 4.0) == []  # over


def test_the_menu_asks_for_the_conference_number_and_gives_up_after_unknown_ones() -> None:
    flow = EntryFlow("de", attempts=2)
    assert flow.start(None, 0.0) == [Say((Prompt.WELCOME, Prompt.ENTER_CONFERENCE), "de")]
    assert keys(flow, "#") == [StopSaying(), Say((Prompt.ENTER_CONFERENCE,), "de")]  # empty: ask again
    assert keys(flow, "999#") == [StopSaying(), FindRoom("999")]
    assert flow.room_found(None, 1.0) == [Say((Prompt.UNKNOWN_CONFERENCE, Prompt.ENTER_CONFERENCE), "de")]
    assert keys(flow, "4711#") == [StopSaying(), FindRoom("4711")]
    assert flow.room_found(DEMO, 2.0) == [Say((Prompt.ENTER_PIN_OPTIONAL,), "en")]  # the room's language now
    flow = EntryFlow("de", attempts=2)
    flow.start(None, 0.0)
    for now in (1.0, 2.0):
        keys(flow, "1#")
        actions = flow.room_found(None, now)
    assert actions == [End(Prompt.TOO_MANY_ATTEMPTS, "de", Ending.ROOM_NOT_FOUND)]


def test_silence_repeats_the_question_then_ends_with_no_entry() -> None:
    flow = EntryFlow("en", attempts=2, entry_timeout_s=5)
    flow.start(SECRET, 0.0)
    flow.prompt_finished(3.0)
    assert flow.timeout(8.0) == [Say((Prompt.ENTER_PIN,), "de")]
    flow.prompt_finished(10.0)
    assert flow.timeout(15.0) == [End(Prompt.GOODBYE, "de", Ending.NO_ENTRY)]


def test_room_info_takes_the_rooms_language_or_the_default() -> None:
    assert RoomInfo.of(Room("a", host_pin="1"), "de") == RoomInfo("a", "de", host_pin=True, guest_pin=False)
    assert RoomInfo.of(Room("b", guest_pin="2", language="en"), "de") == RoomInfo("b", "en", False, True)
