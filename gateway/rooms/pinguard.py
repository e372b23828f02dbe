"""Brute-force protection for PINs: too many wrong PINs from one source lock that source out.

Protocol-free: a source is whatever identifies the guesser (a browser's IP address, a caller's
number and address). Failures older than the window are forgotten; a locked-out source is refused
before its PIN is even compared, so it learns nothing more.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from gateway.rooms.errors import JoinRefused


class PinGuard:
    def __init__(
        self,
        max_failures: int = 5,
        window_s: float = 600.0,
        lockout_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_failures
        self._window = window_s
        self._lockout = lockout_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}

    def check(self, source: str) -> None:
        """Raises JoinRefused(locked_out) while the source is locked out."""
        until = self._locked_until.get(source)
        if until is None:
            return
        if self._clock() < until:
            raise JoinRefused("too many wrong PINs; try again later", "locked_out")
        del self._locked_until[source]

    def failed(self, source: str) -> bool:
        """Counts a wrong PIN; returns whether the source is now locked out."""
        now = self._clock()
        if len(self._failures) > 10_000:
            self.forget_expired()
        failures = self._failures.setdefault(source, deque())
        failures.append(now)
        while failures and now - failures[0] > self._window:
            failures.popleft()
        if len(failures) >= self._max:
            self._locked_until[source] = now + self._lockout
            del self._failures[source]
            return True
        return False

    def succeeded(self, source: str) -> None:
        self._failures.pop(source, None)

    def forget_expired(self) -> None:
        """Drops stale entries (call now and then so a scan from many addresses cannot grow memory)."""
        now = self._clock()
        for source in [s for s, f in self._failures.items() if not f or now - f[-1] > self._window]:
            del self._failures[source]
        for source in [s for s, until in self._locked_until.items() if until <= now]:
            del self._locked_until[source]
