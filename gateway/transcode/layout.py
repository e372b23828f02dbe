"""Layouts of the composed picture that room systems (legs that take one video stream) receive.

Protocol-free and pure. `Layout` names the arrangement a room uses; `arrange` gives the geometry of
an arrangement (which participant's tile goes where on a canvas of a given size); `SpeakerHold`
turns the mixer's speaker detection into the one participant shown large, without flicker.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass


class Layout(enum.StrEnum):
    """SPEAKER: the active speaker (or the spotlighted participant) large, a strip of the others
    below. GRID: everyone in equal tiles."""

    SPEAKER = "speaker"
    GRID = "grid"


MAX_STRIP = 5  # tiles in the strip below the speaker
MAX_GRID = 16  # 4x4


@dataclass(frozen=True, slots=True)
class Rect:
    """A tile's place on the canvas in pixels. `arrange` gives even numbers only, so that a tile
    starts and ends on a chroma sample of a yuv420p picture."""

    x: int
    y: int
    w: int
    h: int

    @property
    def right(self) -> int:
        return self.x + self.w

    @property
    def bottom(self) -> int:
        return self.y + self.h

    @property
    def area(self) -> int:
        return self.w * self.h

    def overlaps(self, other: Rect) -> bool:
        return (
            self.x < other.right and other.x < self.right and self.y < other.bottom and other.y < self.bottom
        )

    def inside(self, width: int, height: int) -> bool:
        return self.x >= 0 and self.y >= 0 and self.right <= width and self.bottom <= height


def _even(value: float) -> int:
    """Down to an even number, at least 2."""
    return max(2, int(value) & ~1)


def _fit_16_9(max_w: float, max_h: float) -> tuple[int, int]:
    """The largest even 16:9 size inside max_w x max_h."""
    w = _even(min(max_w, max_h * 16 / 9))
    return w, _even(min(max_h, w * 9 / 16))


def _row(count: int, tile_w: int, gap: int, width: int) -> list[int]:
    """The x of each of `count` tiles centred in a row of `width`."""
    total = count * tile_w + (count - 1) * gap
    x0 = max(0, (width - total) // 2) & ~1
    return [x0 + i * (tile_w + gap) for i in range(count)]


def arrange(
    layout: Layout,
    participants: Sequence[str],
    large: str | None,
    width: int,
    height: int,
    *,
    max_strip: int = MAX_STRIP,
    max_grid: int = MAX_GRID,
) -> list[tuple[str, Rect]]:
    """Where each participant's tile goes on a width x height canvas, in drawing order.

    `participants` are the candidates in the order their tiles are shown; when there are more than
    fit (max_strip besides the large one, max_grid in a grid), the first ones are shown, and always
    `large`. SPEAKER: `large` (or, when None or absent, the first) in a 16:9 area over the top three
    quarters, the others in 16:9 tiles centred in a strip below; a lone participant fills the
    picture. GRID: ceil(sqrt(n)) columns, as many rows as needed, equal 16:9 tiles, the grid and its
    last row centred. Every number is even; tiles lie inside the canvas and never overlap.
    """
    width, height = _even(width), _even(height)
    people = list(dict.fromkeys(participants))  # (a participant once, whatever the caller passed)
    if not people:
        return []
    if large not in people:
        large = None
    gap = _even(max(2, height // 90))
    if layout is Layout.GRID:
        shown = people[:max_grid]
        if large is not None and large not in shown:
            shown[-1] = large
        n = len(shown)
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        tile_w, tile_h = _fit_16_9((width - (cols + 1) * gap) / cols, (height - (rows + 1) * gap) / rows)
        total_h = rows * tile_h + (rows - 1) * gap
        y0 = max(0, (height - total_h) // 2) & ~1
        out: list[tuple[str, Rect]] = []
        for r in range(rows):
            in_row = shown[r * cols : (r + 1) * cols]
            for pid, x in zip(in_row, _row(len(in_row), tile_w, gap, width), strict=True):
                out.append((pid, Rect(x, y0 + r * (tile_h + gap), tile_w, tile_h)))
        return out
    large = large if large is not None else people[0]
    others = [p for p in people if p != large][:max_strip]
    if not others:
        return [(large, Rect(0, 0, width, height))]
    strip_h = _even(height / 4)
    big_h = height - strip_h
    big_w, big_h = _fit_16_9(width, big_h)
    out = [(large, Rect(((width - big_w) // 2) & ~1, 0, big_w, big_h))]
    k = len(others)
    tile_w, tile_h = _fit_16_9((width - (k + 1) * gap) / k, strip_h - gap)
    y = height - strip_h + (((strip_h - tile_h) // 2) & ~1)
    for pid, x in zip(others, _row(k, tile_w, gap, width), strict=True):
        out.append((pid, Rect(x, y, tile_w, tile_h)))
    return out


class SpeakerHold:
    """Who is shown as the active speaker, following the mixer's speaker detection with a hold:
    once someone is shown, the picture changes to another speaker only after hold_s, so that
    people talking over each other do not make it flicker. While the current speaker keeps
    talking, they stay; when they fall silent and another talks, the one who started talking most
    recently takes over; when nobody talks, the last speaker stays. A participant who leaves is
    replaced at once (by whoever talks, else whoever spoke last, else the first present).

    Pure and single-threaded: the caller serialises calls (the compositor does under its lock)."""

    def __init__(self, hold_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.hold_s = hold_s
        self._clock = clock
        self._present: list[str] = []
        self._present_set: set[str] = set()
        self._talking: dict[str, float] = {}  # participant -> when they started talking
        self._last_spoke: dict[str, float] = {}
        self._current: str | None = None
        self._since = 0.0

    def present(self, participants: Iterable[str]) -> None:
        """Who can be shown, in the room's order."""
        self._present = list(dict.fromkeys(participants))
        self._present_set = set(self._present)
        for gone in [p for p in self._talking if p not in self._present_set]:
            del self._talking[gone]
        for gone in [p for p in self._last_spoke if p not in self._present_set]:
            del self._last_spoke[gone]

    def speaking(self, participant: str, speaking: bool) -> None:
        now = self._clock()
        if speaking:
            self._talking.setdefault(participant, now)
        else:
            self._talking.pop(participant, None)
        self._last_spoke[participant] = now

    def last_spoke(self, participant: str) -> float | None:
        """When the participant last started or stopped talking (None: not since they came)."""
        if participant in self._talking:
            return self._clock()  # (talking now)
        return self._last_spoke.get(participant)

    def _newest_talker(self) -> str | None:
        talkers = [(t, p) for p, t in self._talking.items() if p in self._present_set]
        return max(talkers)[1] if talkers else None

    def current(self) -> str | None:
        now = self._clock()
        if self._current not in self._present_set:
            spoke = [(t, p) for p, t in self._last_spoke.items() if p in self._present_set]
            fallback = max(spoke)[1] if spoke else (self._present[0] if self._present else None)
            self._current = self._newest_talker() or fallback
            self._since = now
            return self._current
        if self._current in self._talking or now - self._since < self.hold_s:
            return self._current
        newest = self._newest_talker()
        if newest is not None and newest != self._current:
            self._current, self._since = newest, now
        return self._current
