"""Brute-force protection for PINs: unit rules, and over a real WebSocket from two addresses."""

from __future__ import annotations

import pytest

from gateway.rooms.errors import JoinRefused
from gateway.rooms.pinguard import PinGuard


def test_locks_out_after_too_many_failures_within_the_window() -> None:
    now = [0.0]
    guard = PinGuard(max_failures=3, window_s=60, lockout_s=300, clock=lambda: now[0])
    assert guard.failed("1.2.3.4", "r") is False
    now[0] = 10
    assert guard.failed("1.2.3.4", "r") is False
    now[0] = 20
    assert guard.failed("1.2.3.4", "r") is True
    with pytest.raises(JoinRefused) as refused:
        guard.check("1.2.3.4", "r")
    assert refused.value.code == "locked_out"
    guard.check("5.6.7.8", "r")  # others are not affected
    now[0] = 321
    guard.check("1.2.3.4", "r")  # the lockout ends


def test_old_failures_are_forgotten_and_success_resets() -> None:
    now = [0.0]
    guard = PinGuard(max_failures=2, window_s=60, lockout_s=300, clock=lambda: now[0])
    guard.failed("a", "r")
    now[0] = 100
    assert guard.failed("a", "r") is False  # the first one is older than the window
    guard.succeeded("a", "r")
    assert guard.failed("a", "r") is False


def test_a_room_pauses_pin_entry_after_too_many_failures_from_anyone() -> None:
    now = [0.0]
    guard = PinGuard(5, 600, 900, clock=lambda: now[0], room_max_failures=4, room_window_s=60, room_pause_s=120)
    for n in range(3):
        assert guard.failed(f"10.0.0.{n}", "council") is False  # spread over addresses
    guard.check("10.0.0.9", "council")
    assert guard.failed("10.0.0.3", "council") is True
    with pytest.raises(JoinRefused) as refused:
        guard.check("10.0.0.9", "council")  # an address that never guessed: the room is paused
    assert refused.value.code == "locked_out"
    guard.check("10.0.0.9", "other-room")  # other rooms are not
    now[0] = 121
    guard.check("10.0.0.9", "council")  # the pause is short


def test_guard_memory_is_bounded_under_a_scan() -> None:
    now = [0.0]
    guard = PinGuard(5, 60, 60, clock=lambda: now[0])
    for n in range(30_000):
        now[0] = n * 0.01
        guard.failed(f"scan-{n}", f"room-{n % 7}")
    assert len(guard._failures) <= 10_001 + 6000  # old entries swept when the table is full
