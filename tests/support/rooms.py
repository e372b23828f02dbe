"""Rooms in unit tests: a clock moved by hand, an event recorder, joining helpers and a meeting
of a host and two guests (the fixtures are in tests/unit/rooms/conftest.py)."""

from __future__ import annotations

from gateway.rooms import LegKind, Participant, Room, RoomEvent

HOST_PIN = "1234"
GUEST_PIN = "5678"
WALL_TIME = 1_700_000_000.0


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 500.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Events(list[RoomEvent]):
    """Every event a room emitted, in order."""

    def summary(self) -> list[tuple[str, str | None, str | None]]:
        return [(e.type, e.participant, e.by) for e in self]

    def types(self) -> list[str]:
        return [e.type for e in self]


def listen(room: Room, events: Events) -> Events:
    room.subscribe(events.append)
    return events


def join(room: Room, name: str, pin: str | None = None, kind: LegKind = LegKind.BROWSER) -> Participant:
    result = room.request_join(name, pin, kind)
    assert result.participant is not None, f"{name} was expected to enter the meeting directly"
    assert result.lobby_entry is None
    return result.participant


def wait(room: Room, name: str, pin: str | None = None, kind: LegKind = LegKind.BROWSER) -> str:
    result = room.request_join(name, pin, kind)
    assert result.lobby_entry is not None, f"{name} was expected to wait in the lobby"
    assert result.participant is None
    return result.lobby_entry.id


class Meeting:
    """A room with host PIN 1234 (no guest PIN), one host and two guests, and an event recorder
    that starts empty once they are in."""

    def __init__(self, room: Room, events: Events) -> None:
        self.room = room
        self.host = join(room, "Hanna", HOST_PIN)
        self.gil = join(room, "Gil")
        self.gus = join(room, "Gus")
        self.events = listen(room, events)
