"""The rooms' unit tests' fixtures: a room factory on a fake clock, an event recorder, a meeting."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from gateway.rooms import Room
from tests.support.rooms import HOST_PIN, WALL_TIME, Events, FakeClock, Meeting


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_room(clock: FakeClock) -> Callable[..., Room]:
    def make(**options: Any) -> Room:
        ids = (f"p{n}" for n in itertools.count(1))
        options.setdefault("monotonic", clock)
        options.setdefault("wall_clock", lambda: WALL_TIME)
        options.setdefault("id_factory", lambda: next(ids))
        return Room("r1", "Room one", **options)

    return make


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def meeting(make_room: Callable[..., Room], events: Events) -> Meeting:
    return Meeting(make_room(host_pin=HOST_PIN), events)
