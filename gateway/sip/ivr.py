"""The voice menu a caller goes through before the meeting, sans-IO: conference number and PIN.

Keys, timeouts and answers from the room go in; actions come out (say prompts, look a room up, try
to join with a PIN, end the call). The SIP call runs the actions and owns the clock: it calls
`timeout()` when `deadline` has passed. Keys pressed while a prompt plays cut it short.

Entry ends with # or when no key follows for `digit_timeout_s`. A room with only a host PIN lets
guests in with a bare # (or no entry at all): they need no PIN there.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.sip.prompts import Prompt


@dataclass(frozen=True)
class RoomInfo:
    room_id: str
    language: str
    host_pin: bool  # the room has a host PIN
    guest_pin: bool  # the room has a guest PIN


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
    prompt: Prompt
    language: str
    status: int  # the SIP cause for the Reason header: 403 wrong PIN, 404 unknown conference ...
    reason: str


Action = Say | StopSaying | FindRoom | Join | End


class EntryFlow:
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
        self.stage = "new"  # new -> conference -> pin -> joining -> done
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
            self.stage = "conference"
            return self._ask((Prompt.WELCOME, Prompt.ENTER_CONFERENCE), now)
        return self._enter_room(room, now, welcome=True)

    def digit(self, key: str, now: float) -> list[Action]:
        if self.stage not in ("conference", "pin"):
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
        if self.deadline is None or now < self.deadline or self.stage not in ("conference", "pin"):
            return []
        self.deadline = None
        if self._digits:
            return self._entered(now)
        if self.stage == "pin" and self.room is not None and not self.room.guest_pin:
            return self._join(None)  # nothing typed where guests need no PIN: a guest
        self._silences += 1
        if self._silences >= self.attempts:
            return [self._end(Prompt.GOODBYE, 408, "No entry")]
        prompt = Prompt.ENTER_CONFERENCE if self.stage == "conference" else self._pin_prompt()
        return self._ask((prompt,), now)

    def room_found(self, room: RoomInfo | None, now: float) -> list[Action]:
        """The answer to FindRoom."""
        if self.stage != "conference":
            return []
        if room is None:
            self._failures += 1
            if self._failures >= self.attempts:
                return [self._end(Prompt.TOO_MANY_ATTEMPTS, 404, "Unknown conference")]
            return self._ask((Prompt.UNKNOWN_CONFERENCE, Prompt.ENTER_CONFERENCE), now)
        self._failures = 0
        return self._enter_room(room, now, welcome=False)

    def wrong_pin(self, now: float) -> list[Action]:
        """The room refused the PIN of the last Join."""
        self._failures += 1
        if self._failures >= self.attempts:
            return [self._end(Prompt.TOO_MANY_ATTEMPTS, 403, "Wrong PIN")]
        self.stage = "pin"
        return self._ask((Prompt.WRONG_PIN, self._pin_prompt()), now)

    def joined(self) -> None:
        self.stage = "done"
        self.deadline = None

    # -- steps ----------------------------------------------------------------------------------

    def _enter_room(self, room: RoomInfo, now: float, welcome: bool) -> list[Action]:
        self.room = room
        self.language = room.language
        self._silences = 0
        if not room.host_pin and not room.guest_pin:
            return ([Say((Prompt.WELCOME,), self.language)] if welcome else []) + self._join(None)
        self.stage = "pin"
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
        if self.stage == "conference":
            if not digits:
                return self._ask((Prompt.ENTER_CONFERENCE,), now)
            return [FindRoom(digits)]
        return self._join(digits or None)

    def _join(self, pin: str | None) -> list[Action]:
        assert self.room is not None
        self.stage = "joining"
        self.deadline = None
        return [Join(self.room.room_id, pin)]

    def _end(self, prompt: Prompt, status: int, reason: str) -> End:
        self.stage = "done"
        self.deadline = None
        return End(prompt, self.language, status, reason)
