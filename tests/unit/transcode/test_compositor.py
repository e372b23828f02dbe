"""The composed picture for room systems: output formats from negotiated codecs, and the compositor
end to end on a real event loop (real VP8 cameras in, real H.264/VP8 out, decoded and looked at)."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import av
import numpy as np
import pytest

from gateway.transcode.codecs import StreamCodec, h264, parse_fmtp, vp8
from gateway.transcode.compositor import (
    Compositor,
    OutputSpec,
    Tile,
    clean_name,
    initials,
    size_for_bandwidth,
    text_mask,
)
from gateway.transcode.layout import Layout, Rect, arrange
from gateway.transcode.video import EncodedVideoFrame, nal_units

GREEN, RED, BLUE = (0, 200, 0), (200, 0, 0), (0, 0, 200)


# -- output formats --------------------------------------------------------------------------------


def h264_with(fmtp: str, bandwidth_kbps: int | None = None) -> StreamCodec:
    return StreamCodec("H264", 96, 90_000, fmtp=parse_fmtp(fmtp), bandwidth_kbps=bandwidth_kbps)


def test_default_output_is_720p30_at_one_and_a_half_megabits() -> None:
    spec = OutputSpec.for_codec(h264(96))  # 42e01f: constrained baseline, level 3.1
    assert (spec.codec, spec.width, spec.height, spec.fps) == ("H264", 1280, 720, 30)
    assert spec.bitrate_bps == 1_500_000
    assert spec.profile_level_id == "42e01f" and spec.packetization_mode == 1


@pytest.mark.parametrize(
    "fmtp,expected",
    [
        ("profile-level-id=42e01e", (640, 360, 30)),  # 3.0: 1620 MBs; 960x540 needs 2040
        ("profile-level-id=42e01f", (1280, 720, 30)),  # 3.1: 3600 MBs, 108000 MB/s
        ("profile-level-id=42e016", (640, 360, 15)),  # 2.2: 1620 MBs but 20250 MB/s
        ("profile-level-id=42e00c", (320, 180, 25)),  # 1.2: 396 MBs, 6000 MB/s
        ("profile-level-id=42e00a", (160, 90, 15)),  # 1.0: 99 MBs
        ("profile-level-id=42f00b", (160, 90, 15)),  # 1b
        ("packetization-mode=1", (160, 90, 15)),  # no profile-level-id: 42000a (RFC 6184)
        ("profile-level-id=640c1f", (1280, 720, 30)),  # constrained high 3.1
        ("profile-level-id=42e028", (1280, 720, 30)),  # 4.0: 1080 is never above the default
        ("profile-level-id=42e01f;max-fs=1620", (640, 360, 30)),
        ("profile-level-id=42e01e;max-fs=3600;max-mbps=108000", (1280, 720, 30)),
        ("profile-level-id=42e01f;max-mbps=54000", (1280, 720, 15)),
        ("profile-level-id=42e01f;max-fps=25", (1280, 720, 25)),
    ],
)
def test_h264_level_and_fmtp_limits_pick_size_and_rate(fmtp: str, expected: tuple[int, int, int]) -> None:
    spec = OutputSpec.for_codec(h264_with(fmtp))
    assert (spec.width, spec.height, spec.fps) == expected


def test_1080p_only_when_asked_for_and_the_level_allows() -> None:
    codec = h264_with("profile-level-id=640028")  # high 4.0: 8192 MBs, 245760 MB/s
    spec = OutputSpec.for_codec(codec, width=1920, height=1080)
    assert (spec.width, spec.height, spec.fps) == (1920, 1080, 30)
    assert spec.bitrate_bps > 2_000_000
    level31 = OutputSpec.for_codec(h264(96), width=1920, height=1080)
    assert (level31.width, level31.height) == (1280, 720)


@pytest.mark.parametrize(
    "kbps,size",
    [(4000, (1280, 720)), (1000, (1280, 720)), (800, (960, 540)), (599, (640, 360)), (384, (480, 270)), (128, (320, 180))],
)
def test_bandwidth_picks_a_smaller_size_and_caps_the_bitrate(kbps: int, size: tuple[int, int]) -> None:
    spec = OutputSpec.for_codec(h264(96, bandwidth_kbps=kbps))
    assert (spec.width, spec.height) == size
    assert spec.bitrate_bps <= kbps * 1000
    assert spec.bitrate_bps <= 1_500_000
    assert OutputSpec.for_codec(h264(96), max_kbps=kbps) == spec  # the same through max_kbps


def test_max_br_caps_the_bitrate() -> None:
    spec = OutputSpec.for_codec(h264_with("profile-level-id=42e01f;max-br=500"))
    assert spec.bitrate_bps == 500_000
    low_level = OutputSpec.for_codec(h264_with("profile-level-id=42e00c"))  # 1.2: 384 kbit/s
    assert low_level.bitrate_bps <= 384_000


def test_vp8_honours_max_fs_and_max_fr() -> None:
    assert OutputSpec.for_codec(vp8(97)) == OutputSpec("VP8", None, 1, 1280, 720, 30, 1_500_000)
    codec = StreamCodec("VP8", 97, 90_000, fmtp=parse_fmtp("max-fs=920;max-fr=15"))
    spec = OutputSpec.for_codec(codec)
    assert (spec.width, spec.height, spec.fps) == (640, 360, 15)


def test_specs_are_equal_when_their_outputs_are_and_keep_the_receivers_profile() -> None:
    a = OutputSpec.for_codec(h264(96, "42e01f"))
    b = OutputSpec.for_codec(h264(111, "42e01f"))
    assert a == b and hash(a) == hash(b)
    assert OutputSpec.for_codec(h264(96, "640c1f")) != a  # another profile: another output
    mode0 = OutputSpec.for_codec(h264(96, packetization_mode=0))
    assert mode0.packetization_mode == 0 and mode0 != a
    assert a.with_bitrate(800_000).bitrate_bps == 800_000 and a.with_bitrate(800_000) != a
    assert "1280x720@30" in a.key


def test_unsupported_outputs_are_refused() -> None:
    with pytest.raises(ValueError):
        OutputSpec.for_codec(StreamCodec("opus", 111, 48_000, 2))
    with pytest.raises(ValueError):
        OutputSpec.for_codec(h264(96, packetization_mode=2))
    with pytest.raises(ValueError):
        OutputSpec("H264", "42e01f", 1, 1279, 720)


def test_size_for_bandwidth_never_exceeds_the_spec() -> None:
    assert size_for_bandwidth(10_000, 640, 360) == (640, 360)
    assert size_for_bandwidth(300, 1280, 720) == (480, 270)
    assert size_for_bandwidth(0, 1280, 720) == (320, 180)


def test_names_are_cleaned_cut_and_rendered_whatever_they_hold() -> None:
    assert clean_name("  Anna\n\t Ärger\u200b ") == "Anna Ärger"
    assert initials("anna  maria ärger") == "AM"
    for name in ("Zoë", "李小龙", "محمد", "😀" * 50, "\x00\x1b[31m", "A" * 10_000, ""):
        mask = text_mask(name, 16, 120)
        assert mask.dtype == np.uint8 and mask.ndim == 2 and mask.shape[1] <= 120
    assert text_mask("Ben", 16, 200).max() > 200  # something is drawn
    long = text_mask("Bartholomew Maximilian Featherstonehaugh", 16, 80)
    assert long.shape[1] <= 80


# -- the compositor end to end ---------------------------------------------------------------------


def camera_frame(rgb: tuple[int, int, int], width: int = 1280, height: int = 720) -> EncodedVideoFrame:
    """One VP8 keyframe of a solid colour (every frame a camera sends here is this keyframe)."""
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = fractions.Fraction(1, 90_000)
    encoder.framerate = fractions.Fraction(30, 1)
    encoder.bit_rate = 500_000
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    encoder.open()
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = rgb
    picture = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
    picture.pts = 0
    packets = list(encoder.encode(picture)) + list(encoder.encode(None))
    data = bytes(packets[0])
    return EncodedVideoFrame("VP8", data, 0, True)


@dataclass
class Received:
    frames: list[EncodedVideoFrame] = field(default_factory=list)

    def __call__(self, frame: EncodedVideoFrame) -> None:
        self.frames.append(frame)

    def pictures(self, codec: str = "H264") -> list[np.ndarray]:
        decoder = av.CodecContext.create("h264" if codec == "H264" else "vp8", "r")
        out = []
        for frame in self.frames:
            out += [p.to_ndarray(format="rgb24") for p in decoder.decode(av.Packet(frame.data))]
        return out

    def last_picture(self, codec: str = "H264") -> np.ndarray:
        # (decoding the last frames from the newest keyframe on is enough)
        keys = [i for i, f in enumerate(self.frames) if f.keyframe]
        tail = Received(self.frames[keys[-1] :])
        return tail.pictures(codec)[-1]


def colour_of(picture: np.ndarray, rect: Rect) -> np.ndarray:
    """The mean colour of the upper middle of a tile (away from the label and the border)."""
    x0, x1 = rect.x + rect.w // 4, rect.x + 3 * rect.w // 4
    y0, y1 = rect.y + rect.h // 8, rect.y + rect.h // 2
    mean: np.ndarray = picture[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)
    return mean


def looks(picture: np.ndarray, rect: Rect, rgb: tuple[int, int, int]) -> bool:
    return bool(np.abs(colour_of(picture, rect) - np.array(rgb)).max() < 40)


async def until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


class Room:
    """A compositor with cameras that send ~30 frames a second."""

    def __init__(self, compositor: Compositor) -> None:
        self.compositor = compositor
        self.cameras: dict[str, EncodedVideoFrame] = {}
        self.keyframe_requests: list[str] = []
        compositor.on_keyframe_needed = self.keyframe_requests.append

    async def send(self) -> None:
        while True:
            for participant, frame in list(self.cameras.items()):
                self.compositor.on_frame(participant, frame)
            await asyncio.sleep(1 / 30)


@contextlib.asynccontextmanager
async def room(**kwargs: object) -> AsyncIterator[Room]:
    compositor = Compositor(asyncio.get_running_loop(), **kwargs)  # type: ignore[arg-type]
    the_room = Room(compositor)
    sender = asyncio.create_task(the_room.send())
    try:
        yield the_room
    finally:
        sender.cancel()
        await compositor.close()


H264_720P = OutputSpec.for_codec(h264(96))


def tiles(*people: str, without_video: tuple[str, ...] = ()) -> list[Tile]:
    return [Tile(p, f"Person {p.upper()}", p not in without_video) for p in people]


async def test_the_picture_shows_each_camera_in_its_tile_and_follows_layout_and_spotlight() -> None:
    async with room() as r:
        c = r.compositor
        r.cameras = {"a": camera_frame(GREEN), "b": camera_frame(RED), "c": camera_frame(BLUE)}
        c.set_scene(tiles("a", "b", "c"), Layout.SPEAKER, None, {"a"})
        got = Received()
        c.add_output("rs1", H264_720P, got)

        speaker = dict(arrange(Layout.SPEAKER, ["a", "b", "c"], "a", 1280, 720))

        def shows(place: dict[str, Rect], colours: dict[str, tuple[int, int, int]]) -> bool:
            if not got.frames:
                return False
            picture = got.last_picture()
            return all(looks(picture, place[p], rgb) for p, rgb in colours.items())

        await until(lambda: shows(speaker, {"a": GREEN, "b": RED, "c": BLUE}))
        assert got.frames[0].keyframe
        assert got.last_picture().shape == (720, 1280, 3)

        c.set_scene(tiles("a", "b", "c"), Layout.GRID, None, {"a"})
        grid = dict(arrange(Layout.GRID, ["a", "b", "c"], None, 1280, 720))
        await until(lambda: shows(grid, {"a": GREEN, "b": RED, "c": BLUE}))

        # the spotlight wins over the speaker, in a grid room too
        c.set_scene(tiles("a", "b", "c"), Layout.GRID, "c", {"a"})
        spotlit = dict(arrange(Layout.SPEAKER, ["a", "b", "c"], "c", 1280, 720))
        await until(lambda: shows(spotlit, {"c": BLUE, "a": GREEN, "b": RED}))

        # someone leaves: the picture no longer has a tile for them
        c.set_scene(tiles("a", "c"), Layout.SPEAKER, None, {"a"})
        c.remove_source("b")
        pair = dict(arrange(Layout.SPEAKER, ["a", "c"], "a", 1280, 720))
        await until(lambda: shows(pair, {"a": GREEN, "c": BLUE}))
        picture = got.last_picture()
        assert not any(looks(picture, rect, RED) for rect in pair.values())
        stats = c.stats
        assert stats["decodes"]["a"] > 0 and stats["compositions"] > 0
        assert stats["encodes"] == {H264_720P.key: stats["encodes"][H264_720P.key]}


async def test_a_participant_without_video_gets_a_grey_name_tile_and_the_speaker_a_border() -> None:
    async with room() as r:
        c = r.compositor
        r.cameras = {"a": camera_frame(GREEN)}
        c.set_scene(tiles("a", "b", without_video=("b",)), Layout.GRID, None, {"a"})
        got = Received()
        c.add_output("rs1", H264_720P, got)
        grid = dict(arrange(Layout.GRID, ["a", "b"], None, 1280, 720))
        await until(lambda: bool(got.frames) and looks(got.last_picture(), grid["a"], GREEN))
        picture = got.last_picture()
        b = grid["b"]
        corner = picture[b.y + 8 : b.y + 40, b.x + 8 : b.x + 60].reshape(-1, 3).mean(axis=0)
        assert 25 < corner.mean() < 70 and np.ptp(corner) < 15  # dark grey
        middle = picture[b.y + b.h // 2 - 20 : b.y + b.h // 2 + 20, b.x : b.right]
        assert middle.max() > 180  # the name, large and light, in the middle
        a = grid["a"]
        border = picture[a.y + 1 : a.y + 3, a.x + a.w // 3 : a.x + 2 * a.w // 3].reshape(-1, 3).mean(axis=0)
        assert border[0] > 180 and border[1] > 130 and border[2] < 80  # amber: "a" is talking
        c.set_scene(tiles("a", "b", without_video=("b",)), Layout.GRID, None, ())  # silence: no border
        await until(lambda: looks(got.last_picture(), Rect(a.x, a.y, a.w, 8), GREEN))
        picture = got.last_picture()
        label = picture[a.bottom - 12 : a.bottom - 2, a.x + 1 : a.x + 5].reshape(-1, 3).mean(axis=0)
        assert label[1] < 120  # the dark bar behind the name over the green picture
        assert picture[a.bottom - 40 : a.bottom, a.x : a.x + 200].max() > 200  # and the name on it


async def test_a_recorded_or_streamed_meeting_is_marked_at_the_top_right_of_the_picture() -> None:
    """Everyone is told: room systems see a red mark with white text while the meeting is
    recorded or streamed (and the recording and the stream carry it themselves)."""
    async with room() as r:
        c = r.compositor
        r.cameras = {"a": camera_frame(GREEN)}
        got = Received()
        c.add_output("rs1", H264_720P, got)
        c.set_scene(tiles("a"), Layout.SPEAKER, None, (), notice="● REC  ● LIVE")
        corner = Rect(1280 - 240, 20, 220, 36)  # (the mark: its red, and its letters in white)

        def red_mark() -> bool:
            picture = got.last_picture()
            region = picture[corner.y : corner.bottom, corner.x : corner.right].reshape(-1, 3)
            reddish = (region[:, 0] > 150) & (region[:, 1] < 80) & (region[:, 2] < 80)
            white = region.min(axis=1) > 200
            return bool(reddish.mean() > 0.3 and white.mean() > 0.05)

        await until(lambda: bool(got.frames) and red_mark())
        c.set_scene(tiles("a"), Layout.SPEAKER, None, ())  # no longer: the camera shows there again
        await until(lambda: looks(got.last_picture(), corner, GREEN) and not red_mark())


async def test_equal_specs_share_one_encoder_and_another_size_gets_its_own() -> None:
    async with room() as r:
        c = r.compositor
        r.cameras = {"a": camera_frame(GREEN)}
        c.set_scene(tiles("a"), Layout.SPEAKER, None, ())
        first, second, small = Received(), Received(), Received()
        c.add_output("rs1", H264_720P, first)
        c.add_output("rs2", OutputSpec.for_codec(h264(100)), second)  # another payload type, same output
        await until(lambda: len(first.frames) >= 5 and len(second.frames) >= 5)
        assert c.stats["encoders"] == 1 and c.stats["outputs"] == 1
        assert len(c.stats["encodes"]) == 1
        shared = {id(f) for f in first.frames} & {id(f) for f in second.frames}
        assert shared  # the very same encoded frames
        assert second.frames[0].keyframe  # the newcomer starts at an IDR

        low = OutputSpec.for_codec(h264(96), max_kbps=500)
        assert (low.width, low.height) == (640, 360)
        c.add_output("rs3", low, small)
        await until(lambda: len(small.frames) >= 3)
        assert c.stats["encoders"] == 2 and len(c.stats["encodes"]) == 2
        assert c.counters()["encoders"] == 2 and c.counters()["encodes"] == sum(c.stats["encodes"].values())
        assert small.last_picture().shape == (360, 640, 3)
        assert looks(small.last_picture(), Rect(0, 0, 640, 360), GREEN)

        c.remove_output("rs1")
        c.remove_output("rs3")
        await until(lambda: c.stats["outputs"] == 1)
        count = len(second.frames)
        await until(lambda: len(second.frames) > count + 2)  # the remaining receiver goes on


async def test_a_keyframe_request_gives_an_idr_with_sps_and_pps_in_front() -> None:
    async with room() as r:
        c = r.compositor
        r.cameras = {"a": camera_frame(GREEN)}
        c.set_scene(tiles("a"), Layout.SPEAKER, None, ())
        got = Received()
        c.add_output("rs1", H264_720P, got)
        await until(lambda: len(got.frames) >= 25)  # past the first IDR's rate limit
        mark = len(got.frames)
        assert not any(f.keyframe for f in got.frames[mark - 5 :])  # (P frames by now)
        c.request_keyframe("rs1")
        await until(lambda: any(f.keyframe for f in got.frames[mark:]))
        for frame in got.frames:
            types = [u[0] & 0x1F for u in nal_units(frame.data)]
            assert 5 in types or 1 in types
            if 5 in types:
                assert frame.keyframe
                idr = types.index(5)
                assert 7 in types[:idr] and 8 in types[:idr]
        assert len(got.pictures()) == len(got.frames)  # everything decodes


async def test_keyframe_requests_are_rate_limited_per_encoder() -> None:
    async with room() as r:
        c = r.compositor
        r.cameras = {"a": camera_frame(GREEN)}
        c.set_scene(tiles("a"), Layout.SPEAKER, None, ())
        got = Received()
        c.add_output("rs1", H264_720P, got)
        await until(lambda: len(got.frames) >= 2)
        for _ in range(10):  # a burst of PLIs right after the first IDR
            c.request_keyframe("rs1")
            await asyncio.sleep(0.01)
        await until(lambda: len(got.frames) >= 30)
        keys = [f.timestamp for f in got.frames if f.keyframe]
        assert len(keys) == 2  # the first, then one for the whole burst
        assert (keys[1] - keys[0]) / 90_000 >= 0.45


async def test_packetization_mode_0_keeps_every_nal_unit_in_one_packet() -> None:
    noisy = np.random.default_rng(1).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 1280, 720, "yuv420p"
    encoder.time_base, encoder.bit_rate = fractions.Fraction(1, 90_000), 4_000_000
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    picture = av.VideoFrame.from_ndarray(noisy, format="rgb24").reformat(format="yuv420p")
    picture.pts = 0
    data = b"".join(bytes(p) for p in encoder.encode(picture))
    async with room() as r:
        c = r.compositor
        r.cameras = {"a": EncodedVideoFrame("VP8", data, 0, True)}  # a hard picture: big frames
        c.set_scene(tiles("a"), Layout.SPEAKER, None, ())
        got = Received()
        spec = OutputSpec.for_codec(h264(96, packetization_mode=0))
        c.add_output("rs1", spec, got)
        await until(lambda: len(got.frames) >= 10 and c.stats["decodes"].get("a", 0) > 0)
        await until(lambda: sum(len(f.data) for f in got.frames[-3:]) > 3 * 3000)  # the noise is there
        sizes = [len(u) for f in got.frames for u in nal_units(f.data)]
        assert max(sizes) <= 1200
        assert len(sizes) > 2 * len(got.frames)  # pictures were sliced
        for frame in got.frames:
            types = [u[0] & 0x1F for u in nal_units(frame.data)]
            if 5 in types:
                assert 7 in types[: types.index(5)] and 8 in types[: types.index(5)]
        assert got.pictures()


async def test_a_garbage_camera_does_not_stop_the_others() -> None:
    async with room() as r:
        c = r.compositor
        r.cameras = {"a": camera_frame(GREEN), "b": camera_frame(RED)}
        c.set_scene(tiles("a", "b"), Layout.GRID, None, ())
        got = Received()
        c.add_output("rs1", H264_720P, got)
        grid = dict(arrange(Layout.GRID, ["a", "b"], None, 1280, 720))
        await until(lambda: bool(got.frames) and looks(got.last_picture(), grid["b"], RED))
        r.cameras["b"] = EncodedVideoFrame("VP8", b"\x00\x9d\x01\x2a" + bytes(range(256)) * 8, 0, True)
        await until(lambda: c.stats["decode_errors"] > 3)
        r.cameras["c"] = EncodedVideoFrame("H264", b"", 0, False)  # empty frames of someone else
        count = len(got.frames)
        await until(lambda: len(got.frames) > count + 10)
        assert looks(got.last_picture(), grid["a"], GREEN)
        assert "b" in r.keyframe_requests
        assert c.stats["decode_errors"] < 30 * 5  # (counted, not a storm of work)
        r.cameras["b"] = camera_frame(RED)  # it recovers at its next keyframe
        await until(lambda: looks(got.last_picture(), grid["b"], RED))


async def test_a_failing_receiver_does_not_cost_the_others() -> None:
    async with room() as r:
        c = r.compositor
        r.cameras = {"a": camera_frame(GREEN)}
        c.set_scene(tiles("a"), Layout.SPEAKER, None, ())

        def broken(frame: EncodedVideoFrame) -> None:
            raise OSError("socket gone")

        got = Received()
        c.add_output("broken", H264_720P, broken)
        c.add_output("fine", H264_720P, got)
        await until(lambda: len(got.frames) >= 5)


async def test_vp8_output() -> None:
    async with room() as r:
        c = r.compositor
        r.cameras = {"a": camera_frame(RED)}
        c.set_scene(tiles("a"), Layout.SPEAKER, None, ())
        got = Received()
        c.add_output("rs1", OutputSpec.for_codec(vp8(97)), got)
        await until(lambda: len(got.frames) >= 3 and looks(got.last_picture("VP8"), Rect(0, 0, 1280, 720), RED))
        assert got.frames[0].keyframe and got.frames[0].codec == "VP8"
        c.request_keyframe("rs1")
        mark = len(got.frames)
        await until(lambda: any(f.keyframe for f in got.frames[mark:]))


async def test_a_bitrate_limit_lowers_the_output_of_that_group() -> None:
    async with room() as r:
        c = r.compositor
        r.cameras = {"a": camera_frame(GREEN)}
        c.set_scene(tiles("a"), Layout.SPEAKER, None, ())
        one, other = Received(), Received()
        c.add_output("rs1", H264_720P, one)
        c.add_output("rs2", H264_720P, other)
        await until(lambda: len(one.frames) >= 3)
        c.set_bitrate("rs2", 300_000)  # TMMBR/REMB of one receiver: the shared encode fits it
        mark = len(one.frames)
        await until(lambda: any(f.keyframe for f in one.frames[mark:]) and len(one.frames) > mark + 3)
        await until(lambda: one.last_picture().shape == (270, 480, 3))
        assert c.stats["encoders"] == 1
        c.remove_output("rs2")  # the limited one leaves: the group keeps its size until it recovers
        assert one.last_picture().shape == (270, 480, 3)


async def test_only_shown_cameras_are_decoded() -> None:
    async with room() as r:
        c = r.compositor
        people = [f"p{i}" for i in range(8)]
        r.cameras = {p: camera_frame(GREEN, 320, 180) for p in people}
        told: list[dict[str, tuple[int, int]]] = []
        c.on_tiles = told.append
        c.set_scene(tiles(*people), Layout.SPEAKER, None, {"p7"})
        got = Received()
        c.add_output("rs1", H264_720P, got)
        arrangement = arrange(Layout.SPEAKER, people, "p7", 1280, 720)
        shown = {pid for pid, _ in arrangement}
        # the speaker and the first five in the strip; p5 and p6 are not shown, not decoded
        assert shown == {"p7", "p0", "p1", "p2", "p3", "p4"}
        await until(lambda: all(c.stats["decodes"].get(p, 0) > 2 for p in shown))
        decodes = c.stats["decodes"]
        assert all(decodes.get(p, 0) > 0 for p in shown)
        assert decodes.get("p5", 0) == 0 and decodes.get("p6", 0) == 0
        assert c.stats["frames_dropped"] > 0
        # The room is told each shown camera's tile size (a strip tile is small: its camera's small
        # simulcast layer will do), once per arrangement.
        assert told == [{pid: (rect.w, rect.h) for pid, rect in arrangement}]
        assert told[0]["p7"][0] > 2 * told[0]["p0"][0]
        c.set_scene(tiles(*people), Layout.GRID, None, {"p7"})
        grid = arrange(Layout.GRID, people, None, 1280, 720)
        await until(lambda: len(told) == 2)
        assert told[1] == {pid: (rect.w, rect.h) for pid, rect in grid}


async def test_lower_rates_drop_frames_evenly() -> None:
    loop = asyncio.get_running_loop()
    compositor = Compositor(loop)
    compositor._start = lambda: None  # type: ignore[method-assign]  # (driven tick by tick below)
    try:
        compositor.set_scene(tiles("a", without_video=("a",)), Layout.SPEAKER, None, ())
        full, half = Received(), Received()
        compositor.add_output("full", OutputSpec("H264", "42e01f", 1, 640, 360, 30, 500_000), full)
        compositor.add_output("half", OutputSpec("H264", "42e01f", 1, 640, 360, 15, 500_000), half)
        for n in range(30):
            compositor._tick(n / 30, 1 / 30)
        await asyncio.sleep(0.05)  # (the frames reach the loop)
        assert len(full.frames) == 30 and len(half.frames) == 15
        steps = {b.timestamp - a.timestamp for a, b in zip(half.frames, half.frames[1:], strict=False)}
        assert steps == {6000}  # every other composition: 15 fps at 90 kHz
        assert compositor.stats["compositions"] == 1  # nothing changed: composed once
    finally:
        await compositor.close()


async def test_no_outputs_no_work_and_close_is_clean() -> None:
    async with room() as r:
        c = r.compositor
        r.cameras = {"a": camera_frame(GREEN)}
        c.set_scene(tiles("a"), Layout.SPEAKER, None, ())
        await asyncio.sleep(0.2)
        assert c.stats["compositions"] == 0 and c.stats["decodes"].get("a", 0) == 0
    c.on_frame("a", r.cameras["a"])  # after close: ignored
    c.add_output("late", H264_720P, Received())
    assert c.stats["outputs"] == 0
