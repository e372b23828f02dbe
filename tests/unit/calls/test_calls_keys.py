"""Phone keys in the meeting (gateway.calls.keys) as neutral commands, and the prompts that answer."""

from __future__ import annotations

from gateway.calls.keys import KeyAnswer, KeyCommand, PhoneKeys, carry_out, joined_prompts, prompt_for_event
from gateway.calls.prompts import Prompt
from gateway.rooms.participant import LegKind
from gateway.rooms.room import Room

KEYS = {KeyCommand.SELF_MUTE: "*6", KeyCommand.HAND: "*1", KeyCommand.MUTE_ALL: "*5", KeyCommand.LOCK: "*7"}


def press(keys: PhoneKeys, typed: str) -> list[KeyCommand]:
    return [c for c in (keys.press(k) for k in typed) if c is not None]


def test_key_sequences_become_commands() -> None:
    keys = PhoneKeys(KEYS)
    assert press(keys, "*6") == [KeyCommand.SELF_MUTE]
    assert press(keys, "12*1*") == [KeyCommand.HAND]
    assert press(keys, "7") == [KeyCommand.LOCK]  # the star before still counts
    assert press(keys, "6") == []  # a bare 6 after a command is nothing
    assert press(PhoneKeys({KeyCommand.SELF_MUTE: "#", KeyCommand.HAND: "*1"}), "##") == [KeyCommand.SELF_MUTE] * 2


def in_room() -> tuple[Room, str, str]:
    room = Room("r", host_pin="1")
    host = room.request_join("Host", "1", LegKind.PHONE).participant
    guest = room.request_join("Guest", None, LegKind.PHONE).participant
    assert host is not None and guest is not None
    return room, host.id, guest.id


def test_self_mute_toggles_unless_a_host_forbade_it() -> None:
    room, host, guest = in_room()
    assert carry_out(room, guest, KeyCommand.SELF_MUTE) == KeyAnswer(Prompt.YOU_ARE_MUTED)
    assert room.participants[guest].self_muted
    assert carry_out(room, guest, KeyCommand.SELF_MUTE) == KeyAnswer(Prompt.YOU_ARE_UNMUTED)
    room.mute(host, guest, forbid_self_unmute=True)
    assert carry_out(room, guest, KeyCommand.SELF_MUTE) == KeyAnswer(Prompt.HOST_MUTED_YOU)
    assert room.participants[guest].audio_muted


def test_hand_for_everyone_mute_all_and_lock_for_hosts_only() -> None:
    room, host, guest = in_room()
    assert carry_out(room, guest, KeyCommand.HAND) == KeyAnswer(Prompt.HAND_RAISED)
    assert carry_out(room, guest, KeyCommand.HAND) == KeyAnswer(Prompt.HAND_LOWERED)
    assert carry_out(room, guest, KeyCommand.LOCK) == KeyAnswer(Prompt.NOT_ALLOWED)
    assert not room.locked
    assert carry_out(room, host, KeyCommand.LOCK) == KeyAnswer(Prompt.MEETING_LOCKED)
    assert carry_out(room, host, KeyCommand.LOCK) == KeyAnswer(Prompt.MEETING_UNLOCKED)
    assert carry_out(room, host, KeyCommand.MUTE_ALL) == KeyAnswer(Prompt.ALL_GUESTS_MUTED)
    assert room.participants[guest].host_muted
    assert carry_out(room, host, KeyCommand.MUTE_ALL) == KeyAnswer(Prompt.ALL_GUESTS_UNMUTED)
    assert not room.participants[guest].host_muted
    assert carry_out(room, "nobody", KeyCommand.HAND) is None


def test_what_callers_hear_of_others_changes_and_on_joining() -> None:
    room, host, guest = in_room()
    heard: list[Prompt | None] = []
    room.subscribe(lambda event: heard.append(prompt_for_event(event, guest)))
    room.mute(host, guest)
    room.unmute(host, guest)
    room.set_self_muted(guest, True)  # one's own change: nothing
    assert [p for p in heard if p is not None] == [Prompt.HOST_MUTED_YOU, Prompt.YOU_ARE_UNMUTED]
    assert joined_prompts(room, guest) == (Prompt.JOINED,)
    room.mute(host, guest)
    assert joined_prompts(room, guest) == (Prompt.JOINED, Prompt.HOST_MUTED_YOU)


def test_callers_are_told_when_the_meeting_is_recorded_or_streamed_and_on_joining_one_that_is() -> None:
    room, host, guest = in_room()
    heard: list[Prompt | None] = []
    room.subscribe(lambda event: heard.append(prompt_for_event(event, guest)))
    room.set_broadcasting("recording", True, "admin")
    room.set_broadcasting("streaming", True, "admin")
    assert joined_prompts(room, guest) == (Prompt.JOINED, Prompt.RECORDING, Prompt.STREAMING)
    room.set_broadcasting("recording", False, "admin")
    room.set_broadcasting("streaming", False, "admin")
    room.set_broadcasting("streaming", False, "admin")  # (not streamed: nothing to say)
    assert heard == [Prompt.RECORDING, Prompt.STREAMING, Prompt.RECORDING_STOPPED, Prompt.STREAMING_STOPPED]
    assert joined_prompts(room, guest) == (Prompt.JOINED,)
