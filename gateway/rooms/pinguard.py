"""Brute-force protection for PINs: too many wrong PINs from one source lock that source out of that
room, and too many wrong PINs for one room from anyone pause PIN entry for that room a little while.

Protocol-free: a source is whatever identifies the guesser (a browser's IP address behind the
configured proxies, a caller's address, or a trunk caller's number). Failures older than the
window are forgotten; a locked-out source is refused before its PIN is even compared, so it learns
nothing more. The room-wide pause (Pexip blocks a room after 20 wrong PINs in 10 minutes) stops a
guesser who spreads guesses over many addresses; it is kept short, so that one attacker cannot keep
a room's real callers out for long, and hosts coming with a signed host link are not affected
(they give no PIN).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import structlog

from gateway.config import SecurityConfig
from gateway.rooms.errors import JoinRefused

log = structlog.get_logger(__name__)

_MAX_TRACKED = 10_000


class PinGuard:
    def __init__(
        self,
        max_failures: int = 5,
        window_s: float = 600.0,
        lockout_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        room_max_failures: int = 20,
        room_window_s: float = 600.0,
        room_pause_s: float = 120.0,
    ) -> None:
        self._max = max_failures
        self._window = window_s
        self._lockout = lockout_s
        self._room_max = room_max_failures
        self._room_window = room_window_s
        self._room_pause = room_pause_s
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._locked_until: dict[tuple[str, str], float] = {}
        self._room_failures: dict[str, deque[float]] = {}
        self._room_paused_until: dict[str, float] = {}

    @classmethod
    def from_config(cls, security: SecurityConfig) -> PinGuard:
        """The guard the security settings describe (the process has one, shared by every kind of leg)."""
        return cls(
            security.pin_max_failures,
            security.pin_failure_window_s,
            security.pin_lockout_s,
            room_max_failures=security.room_pin_max_failures,
            room_window_s=security.room_pin_window_s,
            room_pause_s=security.room_pin_pause_s,
        )

    def check(self, source: str, room: str) -> None:
        """Raises JoinRefused(locked_out) while the source is locked out of the room, or the room
        takes no PINs for now."""
        now = self._clock()
        until = self._locked_until.get((source, room))
        if until is not None:
            if now < until:
                raise JoinRefused("too many wrong PINs; try again later", "locked_out")
            del self._locked_until[(source, room)]
        paused = self._room_paused_until.get(room)
        if paused is not None:
            if now < paused:
                raise JoinRefused("too many wrong PINs for this room; try again in a few minutes", "locked_out")
            del self._room_paused_until[room]

    def failed(self, source: str, room: str) -> bool:
        """Counts a wrong PIN; returns whether the source (or the whole room) is now locked out."""
        now = self._clock()
        if len(self._failures) > _MAX_TRACKED or len(self._room_failures) > _MAX_TRACKED:
            self.forget_expired()
        failures = self._failures.setdefault((source, room), deque())
        _count(failures, now, self._window)
        room_failures = self._room_failures.setdefault(room, deque())
        _count(room_failures, now, self._room_window)
        locked = False
        if len(failures) >= self._max:
            self._locked_until[(source, room)] = now + self._lockout
            del self._failures[(source, room)]
            locked = True
        if len(room_failures) >= self._room_max:
            log.warning("too many wrong PINs for one room: PIN entry paused", room=room, pause_s=self._room_pause)
            self._room_paused_until[room] = now + self._room_pause
            del self._room_failures[room]
            locked = True
        return locked

    def succeeded(self, source: str, room: str) -> None:
        self._failures.pop((source, room), None)

    def forget_expired(self) -> None:
        """Drops stale entries (so that a scan from many addresses cannot grow memory)."""
        now = self._clock()
        for key in [k for k, f in self._failures.items() if not f or now - f[-1] > self._window]:
            del self._failures[key]
        for key in [k for k, until in self._locked_until.items() if until <= now]:
            del self._locked_until[key]
        for room in [r for r, f in self._room_failures.items() if not f or now - f[-1] > self._room_window]:
            del self._room_failures[room]
        for room in [r for r, until in self._room_paused_until.items() if until <= now]:
            del self._room_paused_until[room]


def _count(failures: deque[float], now: float, window: float) -> None:
    failures.append(now)
    while failures and now - failures[0] > window:
        failures.popleft()
