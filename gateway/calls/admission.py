"""Who may come into a meeting, for every protocol: one Doorkeeper returns neutral outcomes.

The rules it applies live in the room (PINs and roles, lock, lobby, opening hours, size) and in the
PIN guard (brute-force lockout); the Doorkeeper asks them in the one order every protocol shares and
turns their answers into an outcome: Admitted, Waiting (in the lobby) or Refused with an Ending. It
also says no while the gateway is overloaded (admission control) and lets trusted participants
(a room's own room system, the callee of a dial-out) in past the lobby, the lock and the hours.
Each protocol says the outcome in its own terms and logs it with its own context.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.calls.endings import Ending, ending_for
from gateway.rooms.admission import Admission
from gateway.rooms.errors import DialOutRefused, JoinRefused
from gateway.rooms.participant import LegKind, Participant, Role
from gateway.rooms.pinguard import PinGuard
from gateway.rooms.ratelimit import RateLimit
from gateway.rooms.room import LobbyEntry, Room


@dataclass(frozen=True)
class Caller:
    """Someone asking to come in."""

    name: str
    kind: LegKind
    source: str  # where the join comes from (an address, a number): the room recognises returners by it
    guesser: str = ""  # who is guessing PINs, for the PIN guard; "" means `source`
    number: str | None = None  # a phone caller's whole number: hosts and administrators see it

    @property
    def guard_key(self) -> str:
        return self.guesser or self.source


@dataclass(frozen=True)
class Admitted:
    participant: Participant


@dataclass(frozen=True)
class Waiting:
    """In the room's lobby until a host admits or denies (see gateway.calls.lobby)."""

    entry: LobbyEntry


@dataclass(frozen=True)
class Refused:
    ending: Ending
    detail: str = ""  # for the log
    now_locked_out: bool = False  # a wrong PIN that locked the guesser (or the room) out


Outcome = Admitted | Waiting | Refused


def room_full(room: Room) -> bool:
    """As many connected participants as the room takes (places kept for a reconnect do not count)."""
    return sum(1 for p in room.participants.values() if p.connected) >= room.max_participants


class Doorkeeper:
    def __init__(self, pin_guard: PinGuard, admission: Callable[[], Admission | None] = lambda: None) -> None:
        """`admission`: the process's admission control, once the gateway has set it up."""
        self.pin_guard = pin_guard
        self._admission = admission

    def overloaded(self) -> Refused | None:
        """A refusal while the gateway takes no new participants (counted by the admission control,
        whose retry_after_s says when to try again)."""
        admission = self._admission()
        busy = admission.admit() if admission is not None else None
        return None if busy is None else Refused(Ending.OVERLOADED, busy)

    def before_answer(self, room: Room, caller: Caller, trusted: bool = False) -> Refused | None:
        """What a call can be refused for before it is answered and asked for anything: the
        guesser is locked out (LOCKED_OUT: best said in words once answered), the meeting is locked
        and has no host PIN that could open it (LOCKED), or it is full (FULL)."""
        locked_out = None
        if not trusted:
            try:
                self.pin_guard.check(caller.guard_key, room.id)
            except JoinRefused as exc:
                locked_out = Refused(Ending.LOCKED_OUT, str(exc))
            if locked_out is None and room.locked and not room.host_pin:
                return Refused(Ending.LOCKED, "the meeting is locked")
        if room_full(room):
            return Refused(Ending.FULL, "the meeting is full")
        return locked_out

    def join(self, room: Room, caller: Caller, pin: str | None, role: Role | None = None) -> Outcome:
        """Asks the room to let `caller` in with `pin`, or in `role` when the caller proved it
        otherwise (a signed host link): then no PIN is asked and the guard is not consulted.
        Guesses are counted per guesser and room, and only joins that carry a PIN are refused for
        a lockout: a shared address (town-hall Wi-Fi, carrier NAT) must not lock everyone out."""
        key = (caller.guard_key, room.id)
        try:
            if pin and role is None:
                self.pin_guard.check(*key)
            result = room.request_join(caller.name, pin, caller.kind, source=caller.source, role=role, number=caller.number)
        except JoinRefused as exc:
            if exc.code == "wrong_pin":
                return Refused(Ending.WRONG_PIN, str(exc), now_locked_out=self.pin_guard.failed(*key))
            return Refused(ending_for(exc.code, Ending.LOCKED), str(exc))
        if result.participant is not None and result.participant.is_host:
            self.pin_guard.succeeded(*key)  # only the host PIN clears: knowing the guest PIN must not help
        if result.lobby_entry is not None:
            return Waiting(result.lobby_entry)
        assert result.participant is not None
        return Admitted(result.participant)

    def let_in_trusted(self, room: Room, caller: Caller, direction: str = "in") -> Admitted | Refused:
        """Someone the room trusts (its own room system calling, the callee of a dial-out): a
        guest, past the lobby, the lock and the opening hours, still within the room's size."""
        try:
            return Admitted(
                room.add_invited(caller.name, caller.kind, source=caller.source, direction=direction, number=caller.number)
            )
        except JoinRefused as exc:
            return Refused(ending_for(exc.code, Ending.FULL), str(exc))


class DialOutLimits:
    """Dial-out costs money and can be abused (toll fraud): at most `per_actor` a minute by one
    actor and `total` a minute in all, whatever the protocol (the gateway gives SIP and H.323 one
    and the same)."""

    def __init__(self, per_actor: int, total: int) -> None:
        self._by_actor = RateLimit(per_actor)
        self._total = RateLimit(total)

    def take(self, actor: str) -> None:
        """Counts one dial-out by `actor`; DialOutRefused (rate_limited) when over either rate."""
        if self._total.full(None):
            raise DialOutRefused("too many dial-outs in the last minute", "rate_limited")
        if self._by_actor.full(actor):
            raise DialOutRefused("too many dial-outs by you in the last minute", "rate_limited")
        self._by_actor.add(actor)
        self._total.add(None)
