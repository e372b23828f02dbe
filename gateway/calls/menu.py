"""The voice menu a caller goes through before the meeting, sans-IO: conference number and PIN.

Keys, timeouts and answers from the room go in; actions come out (say prompts, look a room up, try
to join with a PIN, end the call with a neutral Ending). The protocol's call (SIP now, H.323 later)
runs the actions and owns the clock: it calls `timeout()` when `deadline` has passed. Keys pressed
while a prompt plays cut it short.

Entry ends with # or when no key follows for `digit_timeout_s`. A room with only a host PIN lets
guests in with a bare # (or no entry at all): they need no PIN there.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.calls.endings import Ending
from gateway.calls.prompts import Prompt
from gateway.rooms.room import Room


class Stage(enum.StrEnum):
    NEW = "new"
    CONFERENCE = "conference"  # asking for the conference number
    PIN = "pin"  # asking for the PIN
    JOINING = "joining"  # a Join is out: the room answers with joined() or wrong_pin()
    DONE = "done"


@dataclass(frozen=True)
class RoomInfo:
    room_id: str
    language: str
    host_pin: bool  # the room has a host PIN
    guest_pin: bool  # the room has a guest PIN

    @classmethod
    def of(cls, room: Room, default_language: str) -> RoomInfo:
        """What the menu needs to know of `room`; its prompts in the room's language, else the default."""
        return cls(room.id, room.language or default_language, bool(room.host_pin), bool(room.guest_pin))


@dataclass(frozen=True)
class Say:
    prompts: tuple[Prompt, ...]
    language: str


@dataclass(frozen=True)
class StopSaying:
    pass


@dataclass(frozen=True)
class FindRoom:
    number: str


@dataclass(frozen=True)
class Join:
    room_id: str
    pin: str | None


@dataclass(frozen=True)
class End:
    prompt: Prompt  # what the caller hears last
    language: str
    ending: Ending


Action = Say | StopSaying | FindRoom | Join | End


class EntryFlow:
    """One caller's way through the menu; `stage` says where it is, `deadline` when to call timeout()."""

    def __init__(
        self,
        language: str,
        attempts: int = 3,
        digit_timeout_s: float = 5.0,
        entry_timeout_s: float = 20.0,
    ) -> None:
        self.language = language
        self.attempts = attempts
        self.digit_timeout_s = digit_timeout_s
        self.entry_timeout_s = entry_timeout_s
        self.stage = Stage.NEW
        self.room: RoomInfo | None = None
        self.deadline: float | None = None
        self._digits = ""
        self._failures = 0
        self._silences = 0
        self._saying = False

    # -- inputs ---------------------------------------------------------------------------------

    def start(self, room: RoomInfo | None, now: float) -> list[Action]:
        """`room`: the room the dialled alias names, None to ask for the conference number."""
        if room is None:
            self.stage = Stage.CONFERENCE
            return self._ask((Prompt.WELCOME, Prompt.ENTER_CONFERENCE), now)
        return self._enter_room(room, now, welcome=True)

    def digit(self, key: str, now: float) -> list[Action]:
        if self.stage not in (Stage.CONFERENCE, Stage.PIN):
            return []
        actions: list[Action] = []
        if self._saying:
            self._saying = False
            actions.append(StopSaying())
        if key == "#":
            return actions + self._entered(now)
        self._digits += key
        self.deadline = now + self.digit_timeout_s
        return actions

    def prompt_finished(self, now: float) -> None:
        """The prompts of the last Say are over: the entry timeout starts now."""
        if self._saying:
            self._saying = False
            if not self._digits:
                self.deadline = now + self.entry_timeout_s

    def timeout(self, now: float) -> list[Action]:
        if self.deadline is None or now < self.deadline or self.stage not in (Stage.CONFERENCE, Stage.PIN):
            return []
        self.deadline = None
        if self._digits:
            return self._entered(now)
        if self.stage == Stage.PIN and self.room is not None and not self.room.guest_pin:
            return self._join(None)  # nothing typed where guests need no PIN: a guest
        self._silences += 1
        if self._silences >= self.attempts:
            return [self._end(Prompt.GOODBYE, Ending.NO_ENTRY)]
        prompt = Prompt.ENTER_CONFERENCE if self.stage == Stage.CONFERENCE else self._pin_prompt()
        return self._ask((prompt,), now)

    def room_found(self, room: RoomInfo | None, now: float) -> list[Action]:
        """The answer to FindRoom."""
        if self.stage != Stage.CONFERENCE:
            return []
        if room is None:
            self._failures += 1
            if self._failures >= self.attempts:
                return [self._end(Prompt.TOO_MANY_ATTEMPTS, Ending.ROOM_NOT_FOUND)]
            return self._ask((Prompt.UNKNOWN_CONFERENCE, Prompt.ENTER_CONFERENCE), now)
        self._failures = 0
        return self._enter_room(room, now, welcome=False)

    def wrong_pin(self, now: float) -> list[Action]:
        """The room refused the PIN of the last Join."""
        self._failures += 1
        if self._failures >= self.attempts:
            return [self._end(Prompt.TOO_MANY_ATTEMPTS, Ending.WRONG_PIN)]
        self.stage = Stage.PIN
        return self._ask((Prompt.WRONG_PIN, self._pin_prompt()), now)

    def joined(self) -> None:
        self.stage = Stage.DONE
        self.deadline = None

    # -- steps ----------------------------------------------------------------------------------

    def _enter_room(self, room: RoomInfo, now: float, welcome: bool) -> list[Action]:
        self.room = room
        self.language = room.language
        self._silences = 0
        if not room.host_pin and not room.guest_pin:
            return ([Say((Prompt.WELCOME,), self.language)] if welcome else []) + self._join(None)
        self.stage = Stage.PIN
        prompts = ((Prompt.WELCOME,) if welcome else ()) + (self._pin_prompt(),)
        return self._ask(prompts, now)

    def _pin_prompt(self) -> Prompt:
        assert self.room is not None
        return Prompt.ENTER_PIN if self.room.guest_pin else Prompt.ENTER_PIN_OPTIONAL

    def _ask(self, prompts: tuple[Prompt, ...], now: float) -> list[Action]:
        self._digits = ""
        self._saying = True
        self.deadline = now + self.entry_timeout_s + 60  # a safety net; prompt_finished sets the real one
        return [Say(prompts, self.language)]

    def _entered(self, now: float) -> list[Action]:
        digits, self._digits = self._digits, ""
        self.deadline = None
        if self.stage == Stage.CONFERENCE:
            if not digits:
                return self._ask((Prompt.ENTER_CONFERENCE,), now)
            return [FindRoom(digits)]
        return self._join(digits or None)

    def _join(self, pin: str | None) -> list[Action]:
        assert self.room is not None
        self.stage = Stage.JOINING
        self.deadline = None
        return [Join(self.room.room_id, pin)]

    def _end(self, prompt: Prompt, ending: Ending) -> End:
        self.stage = Stage.DONE
        self.deadline = None
        return End(prompt, self.language, ending)
