"""The sliding-window rate limit shared by joins, dial-outs and key presses."""

from __future__ import annotations

from gateway.rooms.ratelimit import RateLimit


def test_a_key_gets_its_limit_per_window_and_the_window_slides() -> None:
    now = [0.0]
    limit = RateLimit(2, 1.0, clock=lambda: now[0])
    assert [limit.allow("a") for _ in range(3)] == [True, True, False]
    assert limit.allow("b")  # keys are apart
    now[0] = 0.99
    assert limit.full("a")
    now[0] = 1.0
    assert not limit.full("a") and limit.allow("a")


def test_full_counts_nothing_and_quiet_keys_are_forgotten() -> None:
    now = [0.0]
    limit = RateLimit(1, 60.0, clock=lambda: now[0])
    assert not limit.full("x") and not limit.full("x")  # asking is free
    for n in range(500):
        limit.add(n)
    now[0] = 61.0
    assert limit.allow("y")
    assert len(limit._events) == 1
