"""The adaptive jitter buffer and the media clock (on virtual time: no sleeping, no flakiness)."""

from __future__ import annotations

import asyncio
import random

import pytest

from gateway.transcode.clock import ClockDriver, MediaClock
from gateway.transcode.jitter import LOSS, AudioJitterBuffer, BufferedFrame


def payloads(frames: list[object]) -> list[object]:
    return [f.payload if isinstance(f, BufferedFrame) else f for f in frames]


def test_reorders_and_reports_losses() -> None:
    jb = AudioJitterBuffer(20, min_delay_ms=40, max_delay_ms=200)
    for seq in (10, 12, 11, 14):  # 13 never arrives
        jb.put(seq, bytes([seq]), None, seq * 0.02)
    out = payloads([jb.pop() for _ in range(5)])
    assert out[:5] == [bytes([10]), bytes([11]), bytes([12]), LOSS, bytes([14])]
    assert jb.lost == 1



def test_counts_what_the_network_lost_by_sequence_number() -> None:
    jb = AudioJitterBuffer(20)
    for seq in (65530, 65531, 65534, 65533, 1, 2, 20000, 20001, 20003):
        jb.observe(seq, 0.0)  # 65532 and 65535, 0, 20002 lost; 65533 came late; then the sender started over
    assert (jb.received, jb.missing) == (9, 4)
    assert len(jb._frames) == 0  # (observed only: nothing buffered)
    jb.put(20005, b"x", None, 0.1)
    assert (jb.received, jb.missing) == (10, 5)

def test_waits_for_its_target_delay_before_playing() -> None:
    jb = AudioJitterBuffer(20, min_delay_ms=60, max_delay_ms=200)
    jb.put(1, b"a", None, 0.0)
    assert jb.pop() is None
    jb.put(2, b"b", None, 0.02)
    assert jb.pop() is None
    jb.put(3, b"c", None, 0.04)
    assert payloads([jb.pop()]) == [b"a"]


def test_late_packets_are_dropped_and_counted() -> None:
    jb = AudioJitterBuffer(20, min_delay_ms=20)
    jb.put(1, b"a", None, 0.0)
    jb.put(3, b"c", None, 0.04)
    assert payloads([jb.pop(), jb.pop()]) == [b"a", LOSS]
    jb.put(2, b"b", None, 0.1)  # its slot was already played
    assert jb.late == 1
    assert payloads([jb.pop()]) == [b"c"]


def test_sequence_numbers_wrap() -> None:
    jb = AudioJitterBuffer(20, min_delay_ms=20)
    seqs = [65534, 65535, 0, 1, 2]
    out = []
    for i, seq in enumerate(seqs):
        jb.put(seq, str(seq).encode(), None, i * 0.02)
        out.append(jb.pop())
    assert payloads(out) == [str(s).encode() for s in seqs]
    assert jb.lost == 0 and jb.late == 0


def test_delay_adapts_to_jitter_within_bounds() -> None:
    steady = AudioJitterBuffer(20, min_delay_ms=20, max_delay_ms=200)
    jittery = AudioJitterBuffer(20, min_delay_ms=20, max_delay_ms=200)
    rng = random.Random(1)
    for seq in range(500):
        steady.put(seq, b"x", None, seq * 0.02)
        jittery.put(seq, b"x", None, seq * 0.02 + rng.uniform(0, 0.06))
    assert steady.target_frames == 1
    assert 3 <= jittery.target_frames <= 10
    assert jittery.jitter_ms > 10


def test_catches_up_when_too_much_is_buffered() -> None:
    jb = AudioJitterBuffer(20, min_delay_ms=20, max_delay_ms=200)
    for seq in range(20):  # a burst of 400 ms arriving at once
        jb.put(seq, b"x", None, 0.0)
    for _ in range(10):
        jb.pop()
    assert jb.dropped_to_catch_up > 0
    assert jb.depth <= jb.target_frames + 3


class VirtualTime:
    """A clock and sleep for MediaClock: sleeping advances time, with random scheduler lateness."""

    def __init__(self, lateness_s: float) -> None:
        self.now = 1000.0
        self._rng = random.Random(7)
        self._lateness = lateness_s

    def time(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.now += delay + self._rng.uniform(0, self._lateness)
        await asyncio.sleep(0)


async def test_media_clock_does_not_drift_over_a_long_run() -> None:
    vt = VirtualTime(lateness_s=0.004)
    fired: list[float] = []
    n = 30_000  # ten minutes of 20 ms ticks

    def tick() -> None:
        fired.append(vt.now)
        vt.now += 0.002  # each tick costs 2 ms of CPU
        if len(fired) == n:
            raise asyncio.CancelledError

    clock = MediaClock(tick, period_s=0.020, late_tolerance_s=0.005, now=vt.time, sleep=vt.sleep)
    start = vt.now
    try:
        await clock._run()
    except asyncio.CancelledError:
        pass
    assert len(fired) == n
    # Tick k fires at start + k * 20 ms plus at most the scheduler's lateness: never accumulated.
    worst = max(t - (start + (k + 1) * 0.020) for k, t in enumerate(fired))
    assert 0 <= worst < 0.0045
    assert clock.stats.late_ticks == 0
    assert clock.stats.skipped_ticks == 0


async def test_media_clock_counts_late_ticks_and_skips_instead_of_bursting() -> None:
    vt = VirtualTime(lateness_s=0.0)
    fired: list[float] = []

    def tick() -> None:
        fired.append(vt.now)
        if len(fired) == 10:
            vt.now += 0.5  # the loop was blocked for half a second
        if len(fired) == 40:
            raise asyncio.CancelledError

    clock = MediaClock(tick, period_s=0.020, late_tolerance_s=0.005, max_catch_up=5, now=vt.time, sleep=vt.sleep)
    try:
        await clock._run()
    except asyncio.CancelledError:
        pass
    assert clock.stats.late_ticks == 1
    assert clock.stats.skipped_ticks >= 20
    gaps = [b - a for a, b in zip(fired[11:], fired[12:], strict=False)]
    assert min(gaps) >= 0.019  # no burst of catch-up ticks


async def test_rooms_on_one_driver_tick_in_turn_on_one_grid() -> None:
    """One timer for every room: each round ticks every clock once, in the order they started; a
    round started late counts as late for each room in it; a stopped room drops out."""
    vt = VirtualTime(lateness_s=0.0)
    order: list[tuple[str, float]] = []
    driver = ClockDriver(period_s=0.020, now=vt.time, sleep=vt.sleep)

    def make(name: str) -> MediaClock:
        def tick() -> None:
            order.append((name, vt.now))
            vt.now += 0.001  # each room's tick costs 1 ms
            if name == "b" and len(order) == 6:
                vt.now += 0.030  # the loop stalls once: the next round starts late

        return MediaClock(tick, period_s=0.020, late_tolerance_s=0.005, now=vt.time, sleep=vt.sleep, driver=driver)

    a, b = make("a"), make("b")
    a.start()
    b.start()
    assert a.running and b.running
    for _ in range(200):
        await asyncio.sleep(0)
        if len(order) >= 10:
            break
    b.stop_now()
    assert not b.running and a.running
    names = [name for name, _ in order[:10]]
    assert names == ["a", "b"] * 5
    # Rooms of one round start within the previous rooms' CPU time of the grid point.
    first_round = [t for _, t in order[:2]]
    assert first_round[1] - first_round[0] == pytest.approx(0.001)
    assert a.stats.late_ticks == 1 and b.stats.late_ticks == 1
    a.stop_now()
    assert not a.running
