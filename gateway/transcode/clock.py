"""The media clock: calls a tick function every period on a monotonic schedule.

Deadlines are computed from the start time (start + k * period), never by adding sleeps, so
lateness in one tick does not accumulate into drift. A tick later than the tolerance is counted;
when the loop falls more than `max_catch_up` periods behind, the missed ticks are skipped (and
counted) instead of being fired in a burst.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)


@dataclass
class ClockStats:
    ticks: int = 0
    late_ticks: int = 0
    skipped_ticks: int = 0
    max_lateness_ms: float = 0.0
    tick_cpu_ms_total: float = 0.0

    @property
    def late_ratio(self) -> float:
        return self.late_ticks / self.ticks if self.ticks else 0.0


class MediaClock:
    def __init__(
        self,
        tick: Callable[[], object],
        period_s: float = 0.020,
        late_tolerance_s: float = 0.005,
        max_catch_up: int = 5,
        name: str = "media-clock",
        log_context: dict[str, str] | None = None,
        now: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        """`now` defaults to the event loop's monotonic clock; tests pass a virtual clock and sleep."""
        self._tick = tick
        self.period_s = period_s
        self._tolerance = late_tolerance_s
        self._max_catch_up = max_catch_up
        self._name = name
        self._log_context = log_context or {"clock": name}
        self._now = now
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        self.stats = ClockStats()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    def stop_now(self) -> None:
        """Stops ticking at once: a start() right after starts a fresh clock (the old task is only
        cancelled, never awaited, so there is no window in which a start is ignored)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        now = self._now or asyncio.get_running_loop().time
        start = now()
        k = 0
        while True:
            k += 1
            deadline = start + k * self.period_s
            delay = deadline - now()
            if delay > 0:
                await self._sleep(delay)
            lateness = now() - deadline
            if lateness > self._tolerance:
                self.stats.late_ticks += 1
                self.stats.max_lateness_ms = max(self.stats.max_lateness_ms, lateness * 1000)
                behind = int(lateness / self.period_s)
                if behind > self._max_catch_up:
                    k += behind
                    self.stats.skipped_ticks += behind
                    log.warning("media clock fell behind; skipping ticks", **self._log_context, skipped=behind)
            self.stats.ticks += 1
            began = time.thread_time()  # CPU time: what the tick costs, whatever else runs on the machine
            try:
                self._tick()
            except Exception:
                log.exception("media tick failed", **self._log_context)
            self.stats.tick_cpu_ms_total += (time.thread_time() - began) * 1000
