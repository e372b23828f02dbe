"""Phone keys in the meeting, and what callers hear of the room's events, for every protocol.

PhoneKeys is sans-IO: fed the keys a caller presses (RFC 4733, SIP INFO, later H.245 user input),
it returns a KeyCommand when the last keys name one. `carry_out` does the command in the room for
the participant and returns the prompt that tells them what happened; `prompt_for_event` is the
prompt a room event deserves (a host muted you, ...). The protocol's call plays the prompts.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.calls.prompts import Prompt
from gateway.rooms.errors import RoomError
from gateway.rooms.events import RoomEvent
from gateway.rooms.participant import Participant
from gateway.rooms.room import Room


class KeyCommand(enum.StrEnum):
    SELF_MUTE = "self_mute"  # toggles one's own microphone
    HAND = "hand"  # raises or lowers the hand
    MUTE_ALL = "mute_all"  # hosts: mutes or unmutes all guests
    LOCK = "lock"  # hosts: locks or unlocks the meeting


class PhoneKeys:
    """`keys`: each command's key sequence (a star or hash and a digit, or a single key)."""

    def __init__(self, keys: Mapping[KeyCommand, str]) -> None:
        self.keys = dict(keys)
        self._longest = max((len(k) for k in self.keys.values()), default=1)
        self._pressed = ""

    def press(self, key: str) -> KeyCommand | None:
        self._pressed = (self._pressed + key)[-self._longest :]
        command = next((c for c, sequence in self.keys.items() if self._pressed.endswith(sequence)), None)
        if command is not None:
            self._pressed = ""
        return command


@dataclass(frozen=True)
class KeyAnswer:
    prompt: Prompt  # what the caller hears
    refused: str | None = None  # the room's code when it refused the command (for the log)


def carry_out(room: Room, participant_id: str, command: KeyCommand) -> KeyAnswer | None:
    """Does `command` for the participant and says how it went (None: not in the room)."""
    participant = room.participants.get(participant_id)
    if participant is None:
        return None
    try:
        return KeyAnswer(_carry_out(room, participant, command))
    except RoomError as exc:
        prompt = Prompt.HOST_MUTED_YOU if exc.code == "self_unmute_forbidden" else Prompt.NOT_ALLOWED
        return KeyAnswer(prompt, exc.code)


def _carry_out(room: Room, me: Participant, command: KeyCommand) -> Prompt:
    if command is KeyCommand.SELF_MUTE:
        if not me.audio_muted:
            room.set_self_muted(me.id, True)
            return Prompt.YOU_ARE_MUTED
        if me.host_muted and me.self_unmute_forbidden and not me.is_host:
            return Prompt.HOST_MUTED_YOU
        room.set_self_muted(me.id, False)
        return Prompt.YOU_ARE_UNMUTED
    if command is KeyCommand.HAND:
        room.set_hand(me.id, me.id, not me.hand_raised)
        return Prompt.HAND_RAISED if me.hand_raised else Prompt.HAND_LOWERED
    if not me.is_host:
        return Prompt.NOT_ALLOWED
    if command is KeyCommand.MUTE_ALL:
        if room.guests_muted_on_entry:
            room.allow_guests_to_unmute(me.id)
            for guest in [p for p in room.participants.values() if not p.is_host and p.host_muted]:
                room.unmute(me.id, guest.id)
            return Prompt.ALL_GUESTS_UNMUTED
        room.mute_all_guests(me.id)
        return Prompt.ALL_GUESTS_MUTED
    room.set_locked(me.id, not room.locked)
    return Prompt.MEETING_LOCKED if room.locked else Prompt.MEETING_UNLOCKED


# Everyone in the meeting is told when it starts or stops being recorded or streamed (recording
# policy, GDPR): callers hear it, as browsers see it.
_BROADCAST_PROMPTS = {
    "recording_started": Prompt.RECORDING,
    "recording_stopped": Prompt.RECORDING_STOPPED,
    "streaming_started": Prompt.STREAMING,
    "streaming_stopped": Prompt.STREAMING_STOPPED,
}


def prompt_for_event(event: RoomEvent, participant_id: str) -> Prompt | None:
    """What a caller hears of a change someone else made to them (their own changes are answered
    by carry_out), and that the meeting is now recorded or streamed, or no longer."""
    if event.type in _BROADCAST_PROMPTS:
        return _BROADCAST_PROMPTS[event.type]
    if event.participant != participant_id or event.by in (None, participant_id):
        return None
    if event.type == "muted" or (event.type == "mute_changed" and event.data.get("host_muted")):
        return Prompt.HOST_MUTED_YOU
    if event.type == "unmuted":
        return Prompt.YOU_ARE_UNMUTED
    if event.type == "self_unmute_allowed":
        return Prompt.UNMUTE_ALLOWED
    return None


def joined_prompts(room: Room, participant_id: str) -> tuple[Prompt, ...]:
    """What a caller hears on entering the meeting: joined, that the meeting is recorded or
    streamed if so, and that a host muted them if so."""
    participant = room.participants.get(participant_id)
    muted = (Prompt.HOST_MUTED_YOU,) if participant is not None and participant.host_muted else ()
    told = tuple(prompt for what, prompt in (("recording", Prompt.RECORDING), ("streaming", Prompt.STREAMING)) if what in room.broadcasting)
    return (Prompt.JOINED, *told, *muted)
