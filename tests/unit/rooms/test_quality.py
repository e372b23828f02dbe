"""Connection quality (rooms/quality.py): the grades and the meter's intervals, with and against
the figures people notice (loss of a few percent, jitter, round trip)."""

from __future__ import annotations

from gateway.rooms.quality import MIN_FRAMES, LinkSample, Quality, QualityMeter, grade


def test_the_worst_figure_decides_the_grade() -> None:
    assert grade(0.0, 5.0, 40.0) is Quality.GOOD
    assert grade(0.0, None, None) is Quality.GOOD
    assert grade(0.04, 5.0, 40.0) is Quality.FAIR
    assert grade(0.0, 60.0, 40.0) is Quality.FAIR
    assert grade(0.0, 5.0, 500.0) is Quality.FAIR
    assert grade(0.10, 5.0, 40.0) is Quality.POOR
    assert grade(0.04, 120.0, 40.0) is Quality.POOR
    assert grade(0.0, 5.0, 900.0) is Quality.POOR


class Feed:
    """Running totals as a leg's jitter buffer would count them, 100 frames (2 s) an interval."""

    def __init__(self) -> None:
        self.meter = QualityMeter()
        self.received = self.lost = 0

    def interval(self, lost: int = 0, frames: int = 100, **figures: float | None) -> Quality | None:
        self.received += frames - lost
        self.lost += lost
        measured = self.meter.update(LinkSample(self.received, self.lost, **figures))  # type: ignore[arg-type]
        return measured.quality if measured else None


def test_a_grade_worsens_at_once_and_recovers_only_when_it_holds() -> None:
    feed = Feed()
    assert feed.interval() is None  # (the first: no interval to compare with yet)
    assert feed.interval() is Quality.GOOD
    assert feed.interval() is None  # (unchanged: nothing to tell)
    assert feed.interval(lost=20) is Quality.POOR  # 20 % lost: at once
    assert feed.interval() is None  # one good interval is not enough
    assert feed.interval(lost=4) is Quality.FAIR  # better than poor for two intervals: the worse of them
    assert feed.interval() is None
    assert feed.interval(lost=30) is Quality.POOR
    assert feed.interval() is None
    assert feed.interval(lost=10) is None  # (poor again: it starts over)
    assert feed.interval() is None
    assert feed.interval() is Quality.GOOD


def test_the_far_ends_loss_and_round_trip_count_as_much_as_ours() -> None:
    feed = Feed()
    feed.interval()
    assert feed.interval(remote_loss=0.12) is Quality.POOR  # (what the far end does not get of the meeting)
    feed = Feed()
    feed.interval()
    assert feed.interval(rtt_ms=450.0, jitter_ms=3.0) is Quality.FAIR


def test_too_little_audio_or_counters_that_started_over_tell_nothing() -> None:
    feed = Feed()
    feed.interval()
    assert feed.interval(frames=MIN_FRAMES - 1, lost=MIN_FRAMES - 1) is None  # (a moment of audio, all lost)
    assert feed.meter.quality is None
    meter = QualityMeter()
    meter.update(LinkSample(1000, 0))
    assert meter.update(LinkSample(50, 40)) is None  # (the leg was attached anew: its counts restarted)
    measured = meter.update(LinkSample(140, 50))
    assert measured is not None and measured.quality is Quality.POOR and abs(measured.loss - 0.1) < 1e-9
