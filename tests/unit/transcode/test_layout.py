"""Geometry of the composed picture and the speaker hold: pure functions, no codecs."""

from __future__ import annotations

import itertools
import math

import pytest

from gateway.transcode.layout import MAX_GRID, MAX_STRIP, Layout, Rect, SpeakerHold, arrange

CANVASES = [(1280, 720), (1920, 1080), (960, 540), (640, 360), (320, 180), (160, 90)]


def people(n: int) -> list[str]:
    return [f"p{i}" for i in range(n)]


def check_sane(tiles: list[tuple[str, Rect]], width: int, height: int) -> None:
    for _, rect in tiles:
        assert rect.inside(width, height), rect
        assert rect.w > 0 and rect.h > 0
        assert all(v % 2 == 0 for v in (rect.x, rect.y, rect.w, rect.h)), rect
    for (_, a), (_, b) in itertools.combinations(tiles, 2):
        assert not a.overlaps(b), (a, b)
    assert len({pid for pid, _ in tiles}) == len(tiles)


@pytest.mark.parametrize("width,height", CANVASES)
@pytest.mark.parametrize("n", range(0, 20))
def test_every_arrangement_stays_inside_the_canvas_without_overlap_on_even_numbers(
    width: int, height: int, n: int
) -> None:
    for layout in Layout:
        tiles = arrange(layout, people(n), "p1" if n > 1 else None, width, height)
        check_sane(tiles, width, height)


def test_speaker_is_large_on_top_and_the_others_in_a_centred_strip_below() -> None:
    tiles = dict(arrange(Layout.SPEAKER, people(4), "p2", 1280, 720))
    large = tiles.pop("p2")
    assert large == Rect(160, 0, 960, 540)  # 16:9 over the top three quarters, centred
    assert list(tiles) == ["p0", "p1", "p3"]  # the others in the room's order
    for rect in tiles.values():
        assert rect.y >= large.bottom
        assert rect.area * 4 < large.area
        assert abs(rect.w / rect.h - 16 / 9) < 0.05
        assert rect.h == next(iter(tiles.values())).h
    left = min(r.x for r in tiles.values())
    right = 1280 - max(r.right for r in tiles.values())
    assert abs(left - right) <= 2


def test_speaker_defaults_to_the_first_and_a_lone_participant_fills_the_picture() -> None:
    assert arrange(Layout.SPEAKER, ["solo"], None, 1280, 720) == [("solo", Rect(0, 0, 1280, 720))]
    assert arrange(Layout.SPEAKER, ["solo"], "gone", 1280, 720) == [("solo", Rect(0, 0, 1280, 720))]
    tiles = arrange(Layout.SPEAKER, ["a", "b"], None, 1280, 720)
    assert tiles[0][0] == "a" and tiles[0][1].area > tiles[1][1].area
    assert arrange(Layout.GRID, [], None, 1280, 720) == []


def test_speaker_strip_holds_at_most_max_strip_and_always_the_large_one() -> None:
    tiles = arrange(Layout.SPEAKER, people(12), "p11", 1280, 720)
    names = [pid for pid, _ in tiles]
    assert names[0] == "p11"
    assert names[1:] == people(MAX_STRIP)
    assert len(tiles) == MAX_STRIP + 1


@pytest.mark.parametrize(
    "n,columns,rows",
    [(1, 1, 1), (2, 2, 1), (3, 2, 2), (4, 2, 2), (5, 3, 2), (6, 3, 2), (7, 3, 3), (9, 3, 3), (10, 4, 3), (16, 4, 4)],
)
def test_grid_has_ceil_sqrt_columns_and_equal_16_9_tiles(n: int, columns: int, rows: int) -> None:
    tiles = arrange(Layout.GRID, people(n), None, 1280, 720)
    assert [pid for pid, _ in tiles] == people(n)
    rects = [r for _, r in tiles]
    assert len({r.y for r in rects}) == rows
    assert max(sum(1 for r in rects if r.y == y) for y in {r.y for r in rects}) == columns
    assert len({(r.w, r.h) for r in rects}) == 1
    assert abs(rects[0].w / rects[0].h - 16 / 9) < 0.05
    assert columns == math.ceil(math.sqrt(n))
    # the grid is centred, its last row too
    last_row = [r for r in rects if r.y == max(r.y for r in rects)]
    left, right = min(r.x for r in last_row), 1280 - max(r.right for r in last_row)
    assert abs(left - right) <= 2


def test_grid_shows_at_most_sixteen_and_keeps_the_large_one() -> None:
    tiles = arrange(Layout.GRID, people(25), "p20", 1280, 720)
    names = [pid for pid, _ in tiles]
    assert len(names) == MAX_GRID == 16
    assert "p20" in names
    assert names[:15] == people(15)


def test_a_participant_listed_twice_gets_one_tile() -> None:
    tiles = arrange(Layout.GRID, ["a", "b", "a"], None, 1280, 720)
    assert [pid for pid, _ in tiles] == ["a", "b"]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_speaker_hold_keeps_the_shown_speaker_for_the_hold_time() -> None:
    clock = Clock()
    hold = SpeakerHold(2.0, clock)
    hold.present(["a", "b", "c"])
    assert hold.current() == "a"  # nobody talked yet: the first
    hold.speaking("b", True)
    assert hold.current() == "a"  # "a" has been shown for no time at all
    clock.now += 2.0
    assert hold.current() == "b"
    hold.speaking("b", False)
    hold.speaking("c", True)
    clock.now += 1.0
    assert hold.current() == "b"  # within the hold: no flicker
    hold.speaking("c", False)
    hold.speaking("a", True)
    clock.now += 0.5
    assert hold.current() == "b"
    clock.now += 0.6  # 2.1 s since "b" came: the one who started talking last takes over
    assert hold.current() == "a"


def test_speaker_hold_keeps_a_speaker_who_goes_on_talking_and_the_last_one_when_all_are_silent() -> None:
    clock = Clock()
    hold = SpeakerHold(1.0, clock)
    hold.present(["a", "b"])
    hold.speaking("b", True)
    assert hold.current() == "b"  # the first choice is immediate
    hold.speaking("a", True)
    clock.now += 5
    assert hold.current() == "b"  # still talking: stays
    hold.speaking("b", False)
    assert hold.current() == "a"
    hold.speaking("a", False)
    clock.now += 5
    assert hold.current() == "a"  # silence: the last speaker stays


def test_speaker_hold_replaces_a_leaver_at_once() -> None:
    clock = Clock()
    hold = SpeakerHold(2.0, clock)
    hold.present(["a", "b", "c"])
    hold.speaking("c", True)
    assert hold.current() == "c"
    hold.speaking("b", True)
    hold.speaking("b", False)  # b spoke last but stopped
    hold.present(["a", "b"])  # c left, within the hold
    assert hold.current() == "b"  # whoever spoke last, at once
    hold.present(["a"])
    assert hold.current() == "a"
    hold.present([])
    assert hold.current() is None
    assert hold.last_spoke("c") is None


def test_speaker_hold_takes_a_talker_when_the_shown_one_leaves() -> None:
    clock = Clock()
    hold = SpeakerHold(2.0, clock)
    hold.present(["a", "b", "c"])
    assert hold.current() == "a"
    hold.speaking("c", True)
    hold.present(["b", "c"])
    assert hold.current() == "c"
