"""What a leg sends instead of the mix: prompts, hold music, or encoded silence when nothing plays.

Protocol-free and clock-free: the leg asks `next_frame()` once per 20 ms frame (from the mixer's
tick, or from its own clock while no mixer drives it) and sends what it gets. Frames are payloads
already encoded in the leg's output format. A prompt's `done` callback runs once, when its last
frame was taken or when it is replaced or stopped, through `defer` (the leg's event loop), never
from inside the caller's frame.
"""

from __future__ import annotations

from collections.abc import Callable

Defer = Callable[[Callable[[], None]], object]


class PromptPlayer:
    def __init__(self, defer: Defer, on_change: Callable[[], None] = lambda: None) -> None:
        """`defer(callback)` runs a finished prompt's callback later (e.g. loop.call_soon);
        `on_change()` is told whenever there is something new to send (a leg's clock wakes)."""
        self._defer = defer
        self._on_change = on_change
        self._frames: list[bytes] = []
        self._at = 0
        self._loop = False
        self._done: Callable[[], None] | None = None
        self.idle: bytes | None = None  # sent on the leg's own clock when nothing plays

    def play(self, frames: list[bytes], *, loop: bool = False, done: Callable[[], None] | None = None) -> None:
        """Plays these frames from now on (in place of the mix); the prompt playing so far is done."""
        previous = self._done
        self._frames, self._at, self._loop, self._done = frames, 0, loop, done
        self._on_change()
        if previous is not None:
            previous()

    def stop(self) -> None:
        self.play([])

    def set_idle(self, payload: bytes | None) -> None:
        """What to send on the leg's own clock when nothing plays (encoded silence), None for nothing."""
        self.idle = payload
        self._on_change()

    @property
    def playing(self) -> bool:
        return self._at < len(self._frames)

    def next_frame(self) -> bytes | None:
        """The prompt's next frame, or None when no prompt plays (then the mix or `idle` goes out)."""
        if self._at >= len(self._frames):
            return None
        payload = self._frames[self._at]
        self._at += 1
        if self._at >= len(self._frames):
            if self._loop:
                self._at = 0
            else:
                done, self._done = self._done, None
                if done is not None:
                    self._defer(done)
        return payload

    def close(self) -> None:
        """The leg ends: whoever waits for the prompt is told now."""
        done, self._done = self._done, None
        self._frames = []
        self._at = 0
        if done is not None:
            done()
