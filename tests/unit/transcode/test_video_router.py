"""The video router: forwarding without decoding, keyframe handling, transcoding once per format."""

from __future__ import annotations

import asyncio
import dataclasses
import fractions
import functools

import av
import numpy as np
import pytest

from gateway.transcode.video import (
    EncodedVideoFrame,
    TranscodeDone,
    TranscodePool,
    Transcoder,
    UndecodableFrame,
    VideoRouter,
    VideoSourceId,
    is_keyframe,
    keyframe_size,
)

ANNA, BEN = VideoSourceId("anna"), VideoSourceId("ben")  # their main video
BROKEN, FINE = VideoSourceId("broken"), VideoSourceId("fine")


def frame(key: bool, codec: str = "VP8", ts: int = 0) -> EncodedVideoFrame:
    data = (b"\x00" if key else b"\x01") + b"payload"
    return EncodedVideoFrame(codec, data, ts, is_keyframe(codec, data))


class Receivers:
    def __init__(self) -> None:
        self.got: dict[str, list[tuple[VideoSourceId, EncodedVideoFrame]]] = {}

    def __call__(self, rid: str):  # type: ignore[no-untyped-def]
        self.got[rid] = []
        return lambda source, f: self.got[rid].append((source, f))


def test_forwards_the_same_frame_object_to_every_subscriber_after_a_keyframe() -> None:
    keyframe_requests: list[str] = []
    router = VideoRouter(clock=lambda: 0.0)
    rx = Receivers()
    router.add_source(ANNA, lambda: keyframe_requests.append("anna"))
    for rid in ("ben", "cem"):
        router.add_receiver(rid, ("VP8",), rx(rid))
        router.subscribe(rid, ANNA)
    assert keyframe_requests == ["anna", "anna"]  # each new subscriber asks for one
    delta, key, delta2 = frame(False), frame(True), frame(False)
    for f in (delta, key, delta2):
        router.on_frame(ANNA, f)
    for rid in ("ben", "cem"):
        assert [f for _, f in rx.got[rid]] == [key, delta2]  # nothing before the keyframe
    assert rx.got["ben"][0][1] is rx.got["cem"][0][1]  # one object, no copy, no decode


def test_subscribing_before_the_source_attaches_still_delivers() -> None:
    router = VideoRouter(clock=lambda: 0.0)
    rx = Receivers()
    router.add_receiver("anna", ("VP8",), rx("anna"))
    router.subscribe("anna", BEN)  # Ben's media is not attached yet
    requests: list[int] = []
    router.add_source(BEN, lambda: requests.append(1))
    assert requests == [1]
    router.on_frame(BEN, frame(True))
    assert len(rx.got["anna"]) == 1


def test_keyframe_requests_from_receivers_are_rate_limited() -> None:
    now = [0.0]
    requests: list[float] = []
    router = VideoRouter(keyframe_interval_s=0.5, clock=lambda: now[0])
    router.add_source(ANNA, lambda: requests.append(now[0]))
    for t in (0.0, 0.1, 0.2, 0.6, 0.7):
        now[0] = t
        router.request_keyframe(ANNA)
    assert requests == [0.0, 0.6]


def test_receiver_without_the_codec_gets_one_shared_transcode() -> None:
    calls: list[tuple[VideoSourceId, str]] = []
    router = VideoRouter(clock=lambda: 0.0, transcode=None)
    rx = Receivers()

    def transcode(source, codec, f, done):  # type: ignore[no-untyped-def]
        calls.append((source, codec))
        done([EncodedVideoFrame(codec, b"\x00h264", f.timestamp, True)])

    router = VideoRouter(clock=lambda: 0.0, transcode=transcode)
    router.add_source(ANNA, lambda: None)
    for rid in ("h1", "h2", "vp8"):
        router.add_receiver(rid, ("H264",) if rid != "vp8" else ("VP8",), rx(rid))
        router.subscribe(rid, ANNA)
    router.on_frame(ANNA, frame(True))
    assert calls == [(ANNA, "H264")]  # once for both H.264 receivers
    assert [f.codec for _, f in rx.got["h1"]] == ["H264"] and [f.codec for _, f in rx.got["h2"]] == ["H264"]
    assert [f.codec for _, f in rx.got["vp8"]] == ["VP8"]


def test_transcoder_turns_vp8_into_decodable_h264() -> None:
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 320, 240, "yuv420p"
    encoder.time_base = fractions.Fraction(1, 90_000)
    encoder.open()
    transcoder = Transcoder("H264", bitrate=300_000)
    out: list[EncodedVideoFrame] = []
    for i in range(5):
        picture = av.VideoFrame.from_ndarray(np.full((240, 320, 3), i * 40, dtype=np.uint8), format="rgb24")
        picture = picture.reformat(format="yuv420p")
        picture.pts = i * 3000
        for packet in encoder.encode(picture):
            data = bytes(packet)
            out += transcoder.transcode(EncodedVideoFrame("VP8", data, i * 3000, is_keyframe("VP8", data)))
    assert out and out[0].codec == "H264" and out[0].keyframe
    decoder = av.CodecContext.create("h264", "r")
    pictures = [p for f in out for p in decoder.decode(av.Packet(f.data))]
    assert pictures and (pictures[0].width, pictures[0].height) == (320, 240)


def test_a_shared_screen_larger_than_1080p_is_transcoded_to_fit_it_with_its_aspect() -> None:
    """Content (a presentation) gets the content profile: at most 1920x1080, the aspect kept."""
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 2560, 1600, "yuv420p"  # a 16:10 laptop screen
    encoder.time_base = fractions.Fraction(1, 90_000)
    encoder.options = {"deadline": "realtime", "cpu-used": "8"}
    encoder.open()
    transcoder = Transcoder("H264", content=True)
    noise = np.random.default_rng(7).integers(0, 256, (1600, 2560, 3), dtype=np.uint8)  # (a large picture)
    picture = av.VideoFrame.from_ndarray(noise, format="rgb24").reformat(format="yuv420p")
    picture.pts = 0
    out = [f for packet in encoder.encode(picture) for f in transcoder.transcode(EncodedVideoFrame("VP8", bytes(packet), 0, True))]
    decoder = av.CodecContext.create("h264", "r")
    (shown,) = [p for f in out for p in decoder.decode(av.Packet(f.data))]
    assert (shown.width, shown.height) == (1728, 1080)
    # every NAL unit fits one RTP packet: the output serves packetization-mode 0 receivers too
    nal_units = [unit for f in out for unit in f.data.split(b"\x00\x00\x01") if unit]
    assert sum(map(len, nal_units)) > 20_000 and max(len(unit) for unit in nal_units) <= 1104


def test_keyframe_detection() -> None:
    assert is_keyframe("VP8", b"\x10\x02") and not is_keyframe("VP8", b"\x11\x02")
    assert is_keyframe("H264", b"\x00\x00\x00\x01\x67sps\x00\x00\x01\x65idr")
    assert not is_keyframe("H264", b"\x00\x00\x00\x01\x41slice")
    assert not is_keyframe("VP8", b"")


# -- frames nobody can decode ---------------------------------------------------------------------


def vp8_frames(count: int, size: tuple[int, int] = (320, 240)) -> list[EncodedVideoFrame]:
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = size[0], size[1], "yuv420p"
    encoder.time_base = fractions.Fraction(1, 90_000)
    encoder.open()
    out = []
    for i in range(count):
        picture = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), (i * 40) % 256, dtype=np.uint8), format="rgb24")
        picture = picture.reformat(format="yuv420p")
        picture.pts = i * 3000
        for packet in encoder.encode(picture):
            data = bytes(packet)
            out.append(EncodedVideoFrame("VP8", data, i * 3000, is_keyframe("VP8", data)))
    return out


def test_transcoder_rejects_a_garbage_frame_then_skips_to_the_next_keyframe() -> None:
    good = vp8_frames(4)
    assert good[0].keyframe and not good[1].keyframe
    transcoder = Transcoder("H264", bitrate=300_000)
    assert transcoder.transcode(good[1]) == []  # the middle of a stream: wait for a keyframe
    assert transcoder.transcode(good[0])
    for broken in (EncodedVideoFrame("VP8", b"\x00" + b"\xff" * 40, 3000, True), EncodedVideoFrame("VP8", b"", 3000, False)):
        with pytest.raises(UndecodableFrame):
            transcoder.transcode(broken)
    assert transcoder.transcode(good[2]) == []  # references the decoder no longer has
    assert transcoder.transcode(good[0])  # a keyframe starts it afresh


def test_an_undecodable_frame_is_counted_and_a_keyframe_asked_for_and_nobody_else_notices() -> None:
    """A fake transcode that fails for one source: its frames are counted as undecodable and a
    keyframe is requested of it (rate-limited); another source's transcoded frames flow on. An
    empty frame is dropped before any receiver gets it."""
    now = [0.0]
    requests: list[VideoSourceId] = []

    def transcode(source, codec, f, done):  # type: ignore[no-untyped-def]
        if source == BROKEN:
            done.failed()
        else:
            done([EncodedVideoFrame(codec, b"\x00\x00\x01\x65idr", f.timestamp, True)])

    router = VideoRouter(keyframe_interval_s=0.5, clock=lambda: now[0], transcode=transcode)
    rx = Receivers()
    for source in (BROKEN, FINE):
        router.add_source(source, lambda source=source: requests.append(source))  # type: ignore[misc]
    router.add_receiver("h264", ("H264",), rx("h264"))
    router.add_receiver("vp8", ("VP8",), rx("vp8"))
    for source in (BROKEN, FINE):
        router.subscribe("h264", source)
        router.subscribe("vp8", source)
    now[0] = 1.0
    requests.clear()
    for i in range(8):
        now[0] = 1.0 + i * 0.1
        router.on_frame(BROKEN, frame(True))
        router.on_frame(FINE, frame(True))
    assert router.source_undecodable(BROKEN) == 8 and router.source_undecodable(FINE) == 0
    assert requests == [BROKEN, BROKEN]  # at 1.0 and 1.5: rate-limited
    assert sum(1 for source, _ in rx.got["h264"] if source == FINE) == 8
    assert not [f for source, f in rx.got["h264"] if source == BROKEN]
    assert len(rx.got["vp8"]) == 16  # forwarding is untouched by the transcoder's troubles
    router.on_frame(FINE, EncodedVideoFrame("VP8", b"", 0, False))
    assert len(rx.got["vp8"]) == 16 and router.source_undecodable(FINE) == 1


async def test_the_transcode_pool_reports_a_broken_stream_while_another_flows() -> None:
    """Two sources on their own transcoders: every frame of one is garbage (reported as failed on
    the loop), the other's frames come out transcoded all the same."""
    loop = asyncio.get_running_loop()
    pool = TranscodePool(loop)
    got: dict[str, list[EncodedVideoFrame]] = {"a": [], "b": []}
    failures = {"a": 0, "b": 0}
    settled = asyncio.Event()

    def check() -> None:
        if failures["a"] >= 6 and len(got["b"]) >= 6:
            settled.set()

    def delivered(source: str, frames: list[EncodedVideoFrame]) -> None:
        got[source].extend(frames)
        check()

    def failed(source: str) -> None:
        failures[source] += 1
        check()

    try:
        for i, f in enumerate(vp8_frames(6)):
            broken = EncodedVideoFrame("VP8", b"\x00" + bytes([i]) * 50, f.timestamp, True)
            for source, sent in (("a", broken), ("b", f)):
                done = TranscodeDone(functools.partial(delivered, source), functools.partial(failed, source))
                pool(VideoSourceId(source), "H264", sent, done)
        await asyncio.wait_for(settled.wait(), 10)
        assert failures == {"a": 6, "b": 0}
        assert got["b"][0].keyframe
    finally:
        pool.close()


def test_a_subscription_may_take_other_codecs_than_its_receiver_and_the_sources_codec_is_told() -> None:
    """A browser takes VP8 and H.264, but each of its slots sends one codec: an H.264 source shown
    in a VP8 slot is transcoded (once, for every such subscription), in an H.264 slot forwarded."""
    router = VideoRouter(clock=lambda: 0.0, transcode=lambda source, codec, f, done: asked.append(codec))
    asked: list[str] = []
    told: list[VideoSourceId] = []
    router.source_codec_changed = told.append
    rx = Receivers()
    router.add_source(ANNA, lambda: None)
    router.add_receiver("ben", ("VP8", "H264"), rx("ben"))
    router.add_receiver("cem", ("VP8", "H264"), rx("cem"))
    router.subscribe("ben", ANNA, ("H264",))
    router.subscribe("cem", ANNA, ("VP8",))
    key = EncodedVideoFrame("H264", b"\x00\x00\x00\x01\x65xx", 0, True)
    router.on_frame(ANNA, key)
    assert [f for _, f in rx.got["ben"]] == [key] and rx.got["cem"] == [] and asked == ["VP8"]
    assert told == [ANNA] and router.source_codec(ANNA) == "H264"
    router.on_frame(ANNA, key)
    assert told == [ANNA]  # told once, until the codec changes
    router.subscribe("cem", ANNA)  # back to what the receiver takes as a whole
    router.on_frame(ANNA, key)
    assert len(rx.got["cem"]) == 1 and asked == ["VP8", "VP8"]


def layered(layer: int, key: bool, size: int = 100) -> EncodedVideoFrame:
    data = (b"\x00" if key else b"\x01") + bytes(size)
    return EncodedVideoFrame("VP8", data, 0, is_keyframe("VP8", data), layer=layer)


def test_simulcast_each_receiver_gets_the_layer_it_wants_switching_at_keyframes() -> None:
    now = [0.0]
    requests: list[str] = []
    router = VideoRouter(clock=lambda: now[0], keyframe_interval_s=0.0)
    rx = Receivers()
    router.add_source(ANNA, lambda: requests.append("anna"))
    for rid in ("ben", "cem"):
        router.add_receiver(rid, ("VP8",), rx(rid))
        router.subscribe(rid, ANNA)
    router.want_layer("cem", ANNA, 0)  # (a squeezed connection)

    def both(key: bool) -> None:
        now[0] += 0.033
        router.on_frame(ANNA, layered(0, key, 100))
        router.on_frame(ANNA, layered(1, key, 400))

    for key in (True, False, False):
        both(key)
    # The best there is (the very first frame, before the router knew of a second layer, went as it came)
    assert [f.layer for _, f in rx.got["ben"]] == [0, 1, 1, 1]
    assert [f.layer for _, f in rx.got["cem"]] == [0, 0, 0]  # (no keyframe lost to the switch)
    assert router.layer_of("ben", ANNA) == 1 and router.layer_of("cem", ANNA) == 0

    # Cem may have the better layer again: it keeps the lower one until the better one's keyframe.
    requests.clear()
    router.want_layer("cem", ANNA, None)
    assert requests == ["anna"]
    both(False)
    assert [f.layer for _, f in rx.got["cem"]][-1] == 0
    both(True)
    assert [f.layer for _, f in rx.got["cem"]][-2:] == [0, 1]
    assert router.layer_of("cem", ANNA) == 1

    # The browser pauses its upper layer (its uplink is short): everyone falls back to the lower one.
    for _ in range(40):
        now[0] += 0.033
        router.on_frame(ANNA, layered(0, len(requests) % 10 == 0))
        requests.append("tick")
    assert rx.got["ben"][-1][1].layer == 0 and router.layer_of("ben", ANNA) == 0
    # Each layer's rate is measured (bit/s).
    assert set(router.layer_bps(ANNA)) <= {0, 1} and router.layer_bps(ANNA)[0] > 0


def test_a_sender_without_simulcast_is_forwarded_as_before() -> None:
    router = VideoRouter(clock=lambda: 0.0)
    rx = Receivers()
    router.add_source(ANNA, lambda: None)
    router.add_receiver("ben", ("VP8",), rx("ben"))
    router.subscribe("ben", ANNA)
    router.want_layer("ben", ANNA, 0)
    for key in (True, False):
        router.on_frame(ANNA, layered(0, key))
    assert len(rx.got["ben"]) == 2 and router.layer_of("ben", ANNA) == 0


def test_keyframe_size_reads_a_vp8_key_frame_header() -> None:
    key, delta = vp8_frames(2, (320, 180))
    assert keyframe_size("VP8", key.data) == (320, 180)
    assert keyframe_size("VP8", delta.data) is None  # (a delta frame has no size)
    assert keyframe_size("VP8", b"\x00\x00\x00\x9d\x01") is None  # cut short
    assert keyframe_size("VP8", b"\x00" * 12) is None  # no start code
    assert keyframe_size("H264", b"\x00\x00\x01\x67" + bytes(10)) is None  # (not parsed)


def test_a_picture_shown_small_gets_the_lowest_layer_large_enough_for_it() -> None:
    """The room's composed picture shows a camera in its strip: it decodes the small layer."""
    now = [0.0]
    router = VideoRouter(clock=lambda: now[0], keyframe_interval_s=0.0)
    rx = Receivers()
    requests: list[str] = []
    router.add_source(ANNA, lambda: requests.append("anna"))
    for rid in ("#compositor", "ben"):
        router.add_receiver(rid, ("VP8",), rx(rid))
        router.subscribe(rid, ANNA)

    def layer(frames: list[EncodedVideoFrame], n: int) -> list[EncodedVideoFrame]:
        return [dataclasses.replace(f, layer=n) for f in frames]

    small, large = layer(vp8_frames(3, (160, 90)), 0), layer(vp8_frames(3, (320, 180)), 1)

    def send(lows: list[EncodedVideoFrame], highs: list[EncodedVideoFrame]) -> None:
        for low, high in zip(lows, highs, strict=True):
            now[0] += 0.033
            router.on_frame(ANNA, low)
            router.on_frame(ANNA, high)

    router.shown_size("#compositor", ANNA, (152, 86))  # a strip tile: the 160x90 layer covers it
    send(small, large)
    send(small, large)  # (the layers' sizes are known from the first keyframes: the switch is at the next)
    assert router.layer_of("#compositor", ANNA) == 0
    assert router.layer_of("ben", ANNA) == 1  # (no size told: the best there is)
    assert [f.layer for _, f in rx.got["#compositor"]][-3:] == [0, 0, 0]
    assert router.frames_below_top("#compositor") >= 3 and router.frames_below_top("ben") == 0

    requests.clear()
    router.shown_size("#compositor", ANNA, (300, 168))  # made large: too big for the small layer
    send(small[1:], large[1:])  # (no keyframe: the switch asks for one)
    assert requests and router.layer_of("#compositor", ANNA) == 0
    send(small, large)
    assert router.layer_of("#compositor", ANNA) == 1

    # The lower layer grows (the browser has the CPU again): it covers the tile now.
    send(layer(vp8_frames(3, (320, 180)), 0), large)
    send(layer(vp8_frames(3, (320, 180)), 0), large)
    assert router.layer_of("#compositor", ANNA) == 0
    # A bandwidth limit and a size: the lower of the two wins.
    router.shown_size("#compositor", ANNA, (640, 360))
    router.want_layer("#compositor", ANNA, 0)
    send(small, large)
    assert router.layer_of("#compositor", ANNA) == 0

    # Anna leaves: nothing of her stays in the other receivers' choices.
    router.want_layer("#compositor", ANNA, None)
    router.shown_size("#compositor", ANNA, (152, 86))
    router.remove("anna")
    assert router.layer_of("#compositor", ANNA) is None
    router.add_source(ANNA, lambda: None)
    router.subscribe("#compositor", ANNA)
    send(small, large)
    assert router.layer_of("#compositor", ANNA) == 1
