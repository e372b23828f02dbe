"""The right participant in each video slot: what a page shows under a participant's name is that
participant's camera.

Chromium's fake camera sends the same test pattern from every browser, so frame counts cannot tell
who is in a slot. Here each browser's camera plays a Y4M file of its own solid colour; each page's
tiles are read back as pixels (the tile's <video> drawn into a canvas) and matched against the colour
of the participant whose name the tile carries.

With as many slots as others (two), every slot carries a VP8 camera: each slot sends whichever
codec a frame is in, so nothing is transcoded (aiortc alone would send every slot's first codec,
and the gateway used to alternate VP8 and H.264 between slots, transcoding the second VP8 camera).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.browser import (
    in_meeting,
    inbound_video,
    join,
    participant_id,
    tile_colours,
    write_solid_y4m,
)
from tests.support.gateway import (
    TEST_CONFIG,
    RunningGateway,
    metric,
    start_gateway,
    stop_and_check,
    wait_until,
)

pytestmark = pytest.mark.browser

COLOURS: dict[str, tuple[int, int, int]] = {"Anna": (220, 30, 30), "Ben": (30, 200, 30), "Cem": (30, 30, 220)}
MATCH = 60  # largest distance (RGB, Euclidean) from a sender's colour still counted as its picture


def distance(a: object, b: tuple[int, int, int]) -> float:
    return float(sum((float(x) - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5)  # type: ignore[call-overload]


def shown(page) -> dict[str, list[int] | None]:  # type: ignore[no-untyped-def]
    """The mean colour each tile of the page shows, by the tile's caption (None: no live video)."""
    return {name: (tile["rgb"] if tile else None) for name, tile in tile_colours(page).items()}  # type: ignore[misc]


def whose(rgb: list[int] | None) -> str | None:
    """The participant whose colour this is, if any is close enough."""
    if rgb is None:
        return None
    name = min(COLOURS, key=lambda n: distance(rgb, COLOURS[n]))
    return name if distance(rgb, COLOURS[name]) <= MATCH else None


@pytest.fixture(params=[None, 2], ids=["default-slots", "two-slots"])
def slots_gateway(request, tmp_path: Path):  # type: ignore[no-untyped-def]
    config = TEST_CONFIG + (f"webrtc: {{video_slots: {request.param}}}\n" if request.param else "")
    running = start_gateway(tmp_path, config)
    yield running
    stop_and_check(running)


def test_each_tile_shows_the_camera_of_the_participant_it_names(
    slots_gateway: RunningGateway, open_participant, tmp_path: Path
) -> None:
    gateway = slots_gateway
    pages = {}
    for name, rgb in COLOURS.items():
        clip = write_solid_y4m(tmp_path / f"{name}.y4m", rgb)
        pages[name] = join(open_participant, gateway, "demo", name, None, pin="1234" if name == "Anna" else "", video_file=clip)
    for name, page in pages.items():
        wait_until(lambda page=page: in_meeting(page), 30, what=f"{name} in the meeting")
    ids = {name: participant_id(page) for name, page in pages.items()}

    expected = dict(COLOURS)  # (swap two entries here to see the test fail on mixed-up slots)
    for name, page in pages.items():
        others = [other for other in pages if other != name]
        # Every tile with live video shows a picture someone sent; wait for all the others' pictures.
        wait_until(
            lambda page=page, others=others: all(whose(shown(page).get(o)) is not None for o in others),
            30,
            what=f"{name}'s page shows live video in the tiles of {others}",
        )
        # The picture stays the same over a second (and keeps being the right one), not a passing frame.
        for _ in range(3):
            tiles = tile_colours(page)
            seen = {caption: whose(tile["rgb"]) if tile else None for caption, tile in tiles.items()}
            assert seen.get("You") == name, f"{name}'s own tile shows {seen.get('You')}'s camera: {tiles}"
            for other in others:
                tile = tiles.get(other)
                assert tile is not None, f"{name}'s page has no live video in {other}'s tile: {tiles}"
                assert tile["key"] == ids[other], f"{name}'s tile captioned {other} belongs to {tile['key']}, not {ids[other]}"
                rgb = tile["rgb"]
                assert distance(rgb, COLOURS[name]) > MATCH, f"{name}'s own camera {rgb} is shown in {other}'s tile"
                assert distance(rgb, expected[other]) <= MATCH, (
                    f"{name}'s tile for {other} shows {rgb} ({whose(rgb)}'s camera), expected {other}'s {expected[other]}"
                )
            time.sleep(0.5)  # deliberate: the same picture must still be there half a second later
        print(name, "sees", {caption: tile["rgb"] if tile else None for caption, tile in tiles.items()})
    # Every camera went to every page as it came: VP8, whatever slot it is in.
    assert metric(gateway, "gateway_video_frames_forwarded", room="demo") > 0
    assert metric(gateway, "gateway_video_transcoder_decodes", room="demo") == 0
    for name, page in pages.items():
        codecs = [video["mime"] for video in inbound_video(page).values() if video["frames"]]
        assert codecs and set(codecs) == {"video/VP8"}, f"{name}'s slots decode {codecs}"
