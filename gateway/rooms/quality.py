"""How good a participant's connection is, in three grades people understand: good, fair, poor.

Protocol-free. The conference measures every participant the same way, whatever it came in on:
the audio it receives from them (the mixer's jitter buffer: frames that came too late or never,
and the interarrival jitter) and, where the leg knows it, what the far end reports about the
audio it receives from us (RTCP receiver reports: fraction lost, and the round trip they give).

A grade worsens at once (people should learn it while it matters) and improves only after it has
been better for `RECOVER_AFTER` intervals in a row (a connection that wavers must not make the
indicator flicker).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Quality(enum.StrEnum):
    GOOD = "good"
    FAIR = "fair"
    POOR = "poor"


_ORDER = {Quality.GOOD: 0, Quality.FAIR: 1, Quality.POOR: 2}

# (fair from, poor from). Audio loss above a few percent is audible; above ~8 % speech breaks up.
# Jitter is the smoothed interarrival jitter; RTT the round trip (conversation suffers past ~400 ms).
LOSS = (0.03, 0.08)
JITTER_MS = (50.0, 100.0)
RTT_MS = (400.0, 800.0)
MIN_FRAMES = 25  # an interval with fewer expected frames (0.5 s of audio) says nothing
RECOVER_AFTER = 2


@dataclass(frozen=True)
class LinkSample:
    """What is known about a participant's connection at one moment. `received` and `lost` are
    running totals of audio frames (the interval's share is worked out by the meter); the rest are
    current values, None where unknown."""

    received: int
    lost: int
    jitter_ms: float | None = None
    remote_loss: float | None = None  # 0..1: the far end's share of our audio it did not get
    rtt_ms: float | None = None


@dataclass(frozen=True)
class Measured:
    """One interval's verdict: the grade shown, and the figures it came from."""

    quality: Quality
    loss: float  # 0..1, the worse of the two directions
    jitter_ms: float | None
    rtt_ms: float | None


def _grade(value: float | None, limits: tuple[float, float]) -> Quality:
    if value is None or value < limits[0]:
        return Quality.GOOD
    return Quality.FAIR if value < limits[1] else Quality.POOR


def grade(loss: float, jitter_ms: float | None, rtt_ms: float | None) -> Quality:
    """The worst of the three figures' grades."""
    grades = (_grade(loss, LOSS), _grade(jitter_ms, JITTER_MS), _grade(rtt_ms, RTT_MS))
    return max(grades, key=_ORDER.__getitem__)


class QualityMeter:
    """One participant's: `update` once per interval with the running totals."""

    def __init__(self) -> None:
        self.quality: Quality | None = None  # None until an interval had enough audio to tell
        self._last: LinkSample | None = None
        self._better: Quality | None = None
        self._better_for = 0

    def update(self, sample: LinkSample) -> Measured | None:
        """The interval's verdict when the shown grade changes, else None."""
        last, self._last = self._last, sample
        if last is None or sample.received < last.received or sample.lost < last.lost:
            return None  # (the first interval, or the counters started over)
        received, lost = sample.received - last.received, sample.lost - last.lost
        if received + lost < MIN_FRAMES:
            return None  # (muted without sending, on hold, or just joined: nothing to judge)
        loss = max(lost / (received + lost), sample.remote_loss or 0.0)
        now = grade(loss, sample.jitter_ms, sample.rtt_ms)
        measured = Measured(now, loss, sample.jitter_ms, sample.rtt_ms)
        shown = self.quality
        if shown is None or _ORDER[now] > _ORDER[shown]:
            return self._show(measured)
        if now == shown:
            self._better, self._better_for = None, 0
            return None
        # Better than shown: only once it has held for RECOVER_AFTER intervals (at the worst of them).
        if self._better is None or _ORDER[now] > _ORDER[self._better]:
            self._better = now
        self._better_for += 1
        if self._better_for < RECOVER_AFTER:
            return None
        return self._show(Measured(self._better, loss, sample.jitter_ms, sample.rtt_ms))

    def _show(self, measured: Measured) -> Measured:
        self.quality = measured.quality
        self._better, self._better_for = None, 0
        return measured
