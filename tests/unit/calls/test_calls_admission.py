"""The Doorkeeper (gateway.calls.admission): room, PIN and its guard, lock, lobby, hours, trust,
size and overload, as neutral outcomes."""

from __future__ import annotations

from typing import Any

from gateway.calls.admission import Admitted, Caller, Doorkeeper, Refused, Waiting
from gateway.calls.endings import Ending
from gateway.config import AdmissionConfig
from gateway.rooms.admission import Admission
from gateway.rooms.participant import LegKind, Role
from gateway.rooms.pinguard import PinGuard
from gateway.rooms.room import Room

PHONE = Caller("Anna", LegKind.PHONE, source="10.0.0.1")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Closed:
    def is_open(self, at: float) -> bool:
        return False

    def public(self, at: float) -> dict[str, Any]:
        return {}


def door(max_failures: int = 3) -> Doorkeeper:
    return Doorkeeper(PinGuard(max_failures, 600, 900, Clock()))


def test_pins_make_hosts_and_guests_and_a_wrong_pin_is_refused() -> None:
    room = Room("r", host_pin="1234", guest_pin="5555")
    keeper = door()
    host = keeper.join(room, PHONE, "1234")
    assert isinstance(host, Admitted) and host.participant.role is Role.HOST
    guest = keeper.join(room, Caller("Bo", LegKind.BROWSER, "10.0.0.2"), "5555")
    assert isinstance(guest, Admitted) and guest.participant.role is Role.GUEST
    assert keeper.join(room, PHONE, "0000") == Refused(Ending.WRONG_PIN, "wrong PIN", now_locked_out=False)


def test_a_guesser_is_locked_out_and_then_refused_before_the_pin_is_compared() -> None:
    room = Room("r", host_pin="1234")
    keeper = door(max_failures=2)
    first = keeper.join(room, PHONE, "1")
    second = keeper.join(room, PHONE, "2")
    assert isinstance(first, Refused) and not first.now_locked_out
    assert isinstance(second, Refused) and second.ending is Ending.WRONG_PIN and second.now_locked_out
    refused = keeper.join(room, PHONE, "1234")  # even the right PIN
    assert isinstance(refused, Refused) and refused.ending is Ending.LOCKED_OUT
    # another address is not affected, nor is a join that carries no PIN (a shared address)
    assert isinstance(keeper.join(room, Caller("Bo", LegKind.PHONE, "10.0.0.9"), "1234"), Admitted)
    assert isinstance(keeper.join(room, PHONE, None), Admitted)
    # before answering a call, the lockout is known too
    assert keeper.before_answer(room, PHONE) == refused


def test_the_guesser_can_differ_from_the_source() -> None:
    """Trunk callers share the carrier's address: their number is the guesser."""
    room = Room("r", host_pin="1234")
    keeper = door(max_failures=1)
    trunk_caller = Caller("A", LegKind.PHONE, source="192.0.2.1", guesser="number:+4930111")
    assert isinstance(keeper.join(room, trunk_caller, "9"), Refused)
    other = Caller("B", LegKind.PHONE, source="192.0.2.1", guesser="number:+4930222")
    assert isinstance(keeper.join(room, other, "1234"), Admitted)


def test_a_proven_role_skips_the_pin_and_the_guard() -> None:
    room = Room("r", host_pin="1234")
    keeper = door(max_failures=1)
    keeper.join(room, PHONE, "9")  # locked out now
    outcome = keeper.join(room, PHONE, "", role=Role.HOST)
    assert isinstance(outcome, Admitted) and outcome.participant.is_host


def test_lock_lobby_hours_and_size() -> None:
    keeper = door()
    assert keeper.join(Room("l", locked=True), PHONE, None) == Refused(Ending.LOCKED, "the meeting is locked")
    waiting = keeper.join(Room("w", lobby=True), PHONE, None)
    assert isinstance(waiting, Waiting) and waiting.entry.name == "Anna"
    closed = keeper.join(Room("c", opening_hours=Closed()), PHONE, None)
    assert isinstance(closed, Refused) and closed.ending is Ending.OUTSIDE_HOURS
    small = Room("s", max_participants=1)
    assert isinstance(keeper.join(small, PHONE, None), Admitted)
    full = keeper.join(small, PHONE, None)
    assert isinstance(full, Refused) and full.ending is Ending.FULL


def test_before_answer_refuses_what_no_pin_could_change() -> None:
    keeper = door()
    assert keeper.before_answer(Room("open"), PHONE) is None
    assert keeper.before_answer(Room("l", locked=True), PHONE) == Refused(Ending.LOCKED, "the meeting is locked")
    assert keeper.before_answer(Room("l", locked=True, host_pin="1"), PHONE) is None  # a host may open it
    small = Room("s", max_participants=1)
    keeper.join(small, PHONE, None)
    refused = keeper.before_answer(small, PHONE)
    assert isinstance(refused, Refused) and refused.ending is Ending.FULL


def test_trusted_systems_come_in_past_lobby_lock_and_hours_but_not_past_the_size() -> None:
    keeper = door()
    room = Room("r", lobby=True, locked=True, host_pin="1", guest_pin="2", opening_hours=Closed(), max_participants=1)
    assert keeper.before_answer(room, PHONE, trusted=True) is None
    outcome = keeper.let_in_trusted(room, PHONE)
    assert isinstance(outcome, Admitted) and outcome.participant.role is Role.GUEST
    assert outcome.participant.extra["direction"] == "in"
    assert keeper.before_answer(room, PHONE, trusted=True) == Refused(Ending.FULL, "the meeting is full")
    refused = keeper.let_in_trusted(room, PHONE, direction="out")
    assert isinstance(refused, Refused) and refused.ending is Ending.FULL


def test_an_overloaded_gateway_refuses_with_a_retry_time() -> None:
    admission = Admission(AdmissionConfig(), loop_lag_s=lambda: 10.0, cpu_time=lambda: 0.0, clock=Clock())
    keeper = Doorkeeper(PinGuard(), lambda: admission)
    assert keeper.overloaded() is None
    admission.sample()  # a loop 10 s late
    refused = keeper.overloaded()
    assert isinstance(refused, Refused) and refused.ending is Ending.OVERLOADED
    assert refused.detail.startswith("event loop") and admission.refused == 1
    assert Doorkeeper(PinGuard()).overloaded() is None  # no admission control set up
