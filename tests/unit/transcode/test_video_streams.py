"""Video sources keyed by (participant, stream): a leg's main video and its content are two
sources with their own keyframe paths; forwarding honours the H.264 profile a receiver agreed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from gateway.config import MediaConfig
from gateway.rooms.conference import Conference
from gateway.rooms.events import RoomEvent
from gateway.rooms.floor import Content
from gateway.rooms.leg import VideoStream
from gateway.rooms.participant import LegKind
from gateway.rooms.room import Room
from gateway.transcode.audio import AudioCodec, AudioFormat
from gateway.transcode.codecs import StreamKind, h264, vp8
from gateway.transcode.mixer import MixedFrame
from gateway.transcode.video import EncodedVideoFrame, TranscodeDone, VideoRouter, VideoSourceId

IDR = b"\x00\x00\x00\x01\x67sps\x00\x00\x00\x01\x65idr"
ANNA_MAIN, ANNA_CONTENT = VideoSourceId("anna", StreamKind.MAIN), VideoSourceId("anna", StreamKind.CONTENT)


def test_main_and_content_of_one_participant_are_two_sources() -> None:
    asked: list[str] = []
    got: list[tuple[VideoSourceId, EncodedVideoFrame]] = []
    router = VideoRouter(clock=lambda: 0.0)
    router.add_source(ANNA_MAIN, lambda: asked.append("camera"))
    router.add_source(ANNA_CONTENT, lambda: asked.append("slides"))
    router.add_receiver("ben", ("VP8",), lambda source, frame: got.append((source, frame)))
    router.subscribe("ben", ANNA_CONTENT)
    assert asked == ["slides"]  # only the stream subscribed to is asked
    router.subscribe("ben", VideoSourceId("ben"))  # (one's own: ignored)
    slides, camera = EncodedVideoFrame("VP8", b"\x00s", 0, True), EncodedVideoFrame("VP8", b"\x00c", 0, True)
    router.on_frame(ANNA_MAIN, camera)
    router.on_frame(ANNA_CONTENT, slides)
    assert got == [(ANNA_CONTENT, slides)]
    router.request_keyframe(ANNA_MAIN, force=True)
    assert asked == ["slides", "camera"]
    assert router.participant_stats("anna") == (2, 0) and router.source_stats(ANNA_CONTENT) == 1

    router.remove_sources("anna")  # media gone (a reconnect): Ben stays subscribed, waits for a keyframe
    assert router.sources_of("anna") == [] and router.subscriptions("ben") == {ANNA_CONTENT}
    router.add_source(ANNA_CONTENT, lambda: asked.append("slides again"))
    assert asked[-1] == "slides again"
    router.on_frame(ANNA_CONTENT, EncodedVideoFrame("VP8", b"\x01delta", 3000, False))
    assert len(got) == 1
    router.remove("anna")  # she left: every stream of hers goes, and the subscriptions to them
    assert router.sources_of("anna") == [] and router.subscriptions("ben") == set()


def test_h264_is_forwarded_only_to_receivers_that_decode_its_profile() -> None:
    transcodes: list[tuple[VideoSourceId, str]] = []

    def transcode(source: VideoSourceId, codec: str, frame: EncodedVideoFrame, done: TranscodeDone) -> None:
        transcodes.append((source, codec))
        done([EncodedVideoFrame(codec, b"\x00\x00\x01\x65baseline", frame.timestamp, True)])

    got: dict[str, list[EncodedVideoFrame]] = {"chrome": [], "room": [], "any": []}
    router = VideoRouter(clock=lambda: 0.0, transcode=transcode)
    router.add_source(ANNA_MAIN, lambda: None)
    receivers: dict[str, tuple[Any, ...]] = {
        "chrome": (vp8(96), h264(102, "42e01f")),  # constrained baseline 3.1
        "room": (h264(97, "640028"),),  # high 4.0
        "any": ("H264",),  # knows no profile
    }
    for rid, codecs in receivers.items():
        router.add_receiver(rid, codecs, lambda source, frame, rid=rid: got[rid].append(frame))
        router.subscribe(rid, ANNA_MAIN)
    high = EncodedVideoFrame("H264", IDR, 0, True, h264(97, "640028"))
    router.on_frame(ANNA_MAIN, high)
    assert got["room"] == [high] and got["any"] == [high]
    assert transcodes == [(ANNA_MAIN, "VP8")]  # Chrome prefers VP8: one transcode for it
    assert got["chrome"][0].codec == "VP8"
    cb = EncodedVideoFrame("H264", IDR, 3000, True, h264(97, "42e01f"))
    router.on_frame(ANNA_MAIN, cb)
    assert got["chrome"][-1] is cb and got["room"][-1] is cb and len(transcodes) == 1


class StreamLeg:
    """A leg with a main video and a content stream, as a SIP room system will have."""

    kind = LegKind.SIP_ROOM_SYSTEM
    audio_in_codec = AudioCodec.PCMA
    audio_out_format = AudioFormat(AudioCodec.PCMA)

    def __init__(self, pid: str) -> None:
        self.participant_id = pid
        self.asked: list[StreamKind] = []
        self.got: list[tuple[VideoSourceId, EncodedVideoFrame]] = []
        self.streams = {
            kind: VideoStream(kind, (h264(97),), lambda kind=kind: self.asked.append(kind))
            for kind in (StreamKind.MAIN, StreamKind.CONTENT)
        }

    @property
    def video_streams(self) -> Mapping[StreamKind, VideoStream]:
        return self.streams

    def send_audio(self, frame: MixedFrame) -> None:
        pass

    def send_video(self, source: VideoSourceId, frame: EncodedVideoFrame) -> None:
        self.got.append((source, frame))

    def on_room_event(self, event: RoomEvent) -> None:
        pass

    async def hang_up(self, reason: str) -> None:
        pass

    def media_counters(self) -> dict[str, Any]:
        return {}


async def test_the_conference_registers_each_stream_of_a_leg_as_its_own_source() -> None:
    room = Room("video-room")
    conference = Conference(room, MediaConfig())
    try:
        anna, ben = (room.request_join(name, None, LegKind.SIP_ROOM_SYSTEM).participant for name in ("Anna", "Ben"))
        assert anna is not None and ben is not None
        legs = StreamLeg(anna.id), StreamLeg(ben.id)
        del legs[1].streams[StreamKind.CONTENT]  # (Ben shows her content where he likes, as a browser does)
        for leg in legs:
            conference.attach(leg)
        main, content = VideoSourceId(anna.id, StreamKind.MAIN), VideoSourceId(anna.id, StreamKind.CONTENT)
        assert set(conference.video.sources_of(anna.id)) == {main, content}
        conference.set_video_subscriptions(ben.id, [content])
        assert legs[0].asked == [StreamKind.CONTENT]  # the keyframe request took the content's path
        frame = EncodedVideoFrame("H264", IDR, 0, True, h264(97))
        conference.push_video(anna.id, frame, StreamKind.MAIN)  # nobody watches her camera
        conference.push_video(anna.id, frame, StreamKind.CONTENT)  # she does not hold the floor: dropped
        assert legs[1].got == []
        room.start_presenting(anna.id, Content.SLIDES)
        conference.push_video(anna.id, frame, StreamKind.CONTENT)
        assert legs[1].got == [(content, frame)]
        room.start_presenting(ben.id, Content.SLIDES)  # Ben takes over: her slides stop reaching anyone
        conference.push_video(anna.id, frame, StreamKind.CONTENT)
        assert legs[1].got == [(content, frame)]
        view = conference.participant_view(anna.id)["media"]
        assert view["video_frames_in"] == 2
        assert conference.media_summary(anna.id)["video_codecs"] == "H264"
        conference.detach(anna.id)
        assert conference.video.sources_of(anna.id) == []
        assert conference.video.subscriptions(ben.id) == {content}  # she may come back
    finally:
        await conference.close()


class FakeCompositor:
    """Stands in for the compositor process: records what the conference shows it."""

    def __init__(self, **_kwargs: Any) -> None:
        self.scenes: list[tuple[list[str], str | None]] = []
        self.frames: list[str] = []
        self.outputs: list[tuple[str, Any]] = []
        self.epoch = 0.0

    def add_output(self, receiver: str, spec: Any, *_args: Any) -> None:
        self.outputs.append((receiver, spec))

    def remove_output(self, receiver: str) -> None:
        self.outputs = [(r, spec) for r, spec in self.outputs if r != receiver]

    def request_keyframe(self, _receiver: str) -> None:
        pass

    def set_scene(self, tiles: Any, _layout: Any, spotlight: str | None, _speaking: Any, exclude: str | None = None, notice: str | None = None) -> None:
        self.scenes.append(([t.participant for t in tiles], spotlight))

    def on_frame(self, name: str, _frame: EncodedVideoFrame) -> None:
        self.frames.append(name)

    def remove_source(self, _name: str) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_content_goes_to_content_lines_and_into_the_picture_of_room_systems_without_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anna presents: Ben's content line gets her content (Ben is a BFCP room system); Carl's room
    system has no content line, so his composed picture shows her content large (the spotlight's
    place) with the people in the strip; when she stops, both go back."""
    monkeypatch.setattr("gateway.rooms.conference.CompositorProcess", FakeCompositor)
    room = Room("content-room")
    conference = Conference(room, MediaConfig())
    try:
        anna, ben, carl = (room.request_join(name, None, LegKind.SIP_ROOM_SYSTEM).participant for name in ("Anna", "Ben", "Carl"))
        assert anna is not None and ben is not None and carl is not None
        legs = StreamLeg(anna.id), StreamLeg(ben.id), StreamLeg(carl.id)
        for leg in legs:
            leg.streams[StreamKind.MAIN].composed = True
        del legs[2].streams[StreamKind.CONTENT]  # Carl: no BFCP, no content line
        for leg in legs:
            conference.attach(leg)
        compositor = conference.compositor
        assert isinstance(compositor, FakeCompositor)
        content = VideoSourceId(anna.id, StreamKind.CONTENT)
        room.start_presenting(anna.id, Content.SLIDES)
        assert conference.video.subscriptions(ben.id + "#content") == {content}
        assert conference.video.subscriptions(anna.id + "#content") == set()  # (not her own)
        assert compositor.scenes[-1] == ([anna.id + "#content", anna.id, ben.id, carl.id], anna.id + "#content")
        frame = EncodedVideoFrame("H264", IDR, 0, True, h264(97))
        conference.push_video(anna.id, frame, StreamKind.CONTENT)
        assert legs[1].got == [(content, frame)] and legs[2].got == []
        assert compositor.frames == [anna.id + "#content"]
        room.stop_presenting(by=anna.id)
        assert conference.video.subscriptions(ben.id + "#content") == set()
        assert compositor.scenes[-1] == ([anna.id, ben.id, carl.id], None)
        conference.detach(carl.id)  # every composed leg has a content line now: content stays out of the picture
        room.start_presenting(anna.id, Content.SLIDES)
        assert compositor.scenes[-1][1] is None and content not in conference.video.subscriptions("#compositor")
    finally:
        await conference.close()
