"""Admission control: while the process is overloaded (its event loop runs late, or it uses more of
its core than configured), new participants are refused so that meetings in progress keep their
audio; so they are while the node drains for a restart (gateway/control/node.py). Protocol-free: each protocol says "no" in its own terms (SIP 503 with Retry-After, a message
on the meeting page).

LiveKit's SIP bridge refuses new calls past 0.9 of its CPU; the same idea, measured on the event
loop's own thread (the one core a process's media depends on; codec threads are not counted) and
smoothed over a few seconds, so that one slow moment (a garbage collection, a burst of joins) does
not turn people away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from gateway.config import AdmissionConfig

log = structlog.get_logger(__name__)

_SAMPLE_S = 0.5
_SMOOTHING = 0.3  # weight of a new sample: a time constant of about 1.5 s
_CLEAR_AFTER = 4  # samples below the limits (2 s) before new participants are taken again


class Admission:
    def __init__(
        self,
        config: AdmissionConfig,
        loop_lag_s: Callable[[], float],
        cpu_time: Callable[[], float] = time.thread_time,  # (sampled on the loop's thread)
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._lag = loop_lag_s
        self._cpu_time = cpu_time
        self._clock = clock
        self._last: tuple[float, float] | None = None
        self._good_samples = _CLEAR_AFTER
        self.reason: str | None = None  # why new participants are refused now for load; None: they are taken
        self.draining: str | None = None  # set while the node drains (gateway/control/node.py)
        self.cpu_share = 0.0  # smoothed
        self.lag_ms = 0.0  # smoothed
        self.refused = 0

    def sample(self) -> None:
        """Measures once (call every half second)."""
        now, cpu = self._clock(), self._cpu_time()
        if self._last is not None and now > self._last[0]:
            share = (cpu - self._last[1]) / (now - self._last[0])
            self.cpu_share += _SMOOTHING * (share - self.cpu_share)
        self._last = (now, cpu)
        self.lag_ms += _SMOOTHING * (self._lag() * 1000 - self.lag_ms)
        reason = None
        if self.lag_ms > self.config.max_loop_lag_ms:
            reason = f"event loop {self.lag_ms:.0f} ms late"
        elif self.cpu_share > self.config.max_cpu:
            reason = f"CPU at {self.cpu_share:.0%} of a core"
        if reason is not None:
            if self.reason is None:
                log.warning("overloaded: new participants are refused", why=reason)
            self.reason, self._good_samples = reason, 0
        elif self.reason is not None:
            self._good_samples += 1
            if self._good_samples >= _CLEAR_AFTER:
                log.info("load back to normal: new participants are taken again")
                self.reason = None

    @property
    def refusing(self) -> str | None:
        """Why new participants are refused now (draining, or overloaded); None when they are taken."""
        return self.draining or self.reason

    def admit(self) -> str | None:
        """None when a new participant may come in; otherwise why not (counted)."""
        refusing = self.refusing
        if refusing is not None:
            self.refused += 1
        return refusing

    @property
    def retry_after_s(self) -> int:
        return self.config.retry_after_s

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(_SAMPLE_S)
