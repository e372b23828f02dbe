"""Opening hours of a room (a virtual citizen office): a weekly schedule, closed days, a time zone.

Pure functions of wall-clock time: `is_open(at)` and `next_opening(at)` take a Unix time, so tests
pass any instant, and daylight-saving changes are the time zone database's business.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway.config import OpeningHoursConfig

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LOOKAHEAD_DAYS = 366


def _parse(span: str) -> tuple[time, time | None]:
    """'08:00-12:00' -> (08:00, 12:00); an end of 24:00 is None (until midnight)."""
    start, end = span.split("-")
    return time.fromisoformat(start), None if end == "24:00" else time.fromisoformat(end)


class OpeningHours:
    def __init__(self, config: OpeningHoursConfig) -> None:
        self.config = config
        self.zone = ZoneInfo(config.timezone)
        self.closed: frozenset[date] = frozenset(config.closed)
        self.weekly: dict[int, list[tuple[time, time | None]]] = {
            _DAYS.index(day): sorted(_parse(span) for span in spans) for day, spans in config.weekly.items()
        }

    def _spans_on(self, day: date) -> list[tuple[datetime, datetime]]:
        """The day's open spans as aware datetimes (none on a closed day)."""
        if day in self.closed:
            return []
        spans = []
        for start, end in self.weekly.get(day.weekday(), []):
            begin = datetime.combine(day, start, self.zone)
            finish = (
                datetime.combine(day + timedelta(days=1), time(0), self.zone)
                if end is None
                else datetime.combine(day, end, self.zone)
            )
            spans.append((begin, finish))
        return spans

    def is_open(self, at: float) -> bool:
        now = datetime.fromtimestamp(at, self.zone)
        return any(begin <= now < finish for begin, finish in self._spans_on(now.date()))

    def next_opening(self, at: float) -> float | None:
        """When the room next opens (now, if open), or None when no opening is scheduled within a year."""
        now = datetime.fromtimestamp(at, self.zone)
        for offset in range(_LOOKAHEAD_DAYS):
            for begin, finish in self._spans_on(now.date() + timedelta(days=offset)):
                if finish > now:
                    return max(begin, now).timestamp()
        return None

    def public(self, at: float) -> dict[str, Any]:
        """What a page shows: the schedule, whether open now, and the next opening (ISO 8601, local)."""
        upcoming = self.next_opening(at)
        return {
            "timezone": self.config.timezone,
            "weekly": {day: self.config.weekly.get(day, []) for day in _DAYS},  # type: ignore[call-overload]
            "closed": [d.isoformat() for d in sorted(self.closed) if d >= datetime.fromtimestamp(at, self.zone).date()],
            "open_now": self.is_open(at),
            "next_opening": datetime.fromtimestamp(upcoming, self.zone).isoformat() if upcoming is not None else None,
        }
