"""The conference's broadcast, with the real compositor and broadcast processes: a room with a
room system is recorded with its composed picture (the room system no longer left out of it while
the recording runs) and its mix; a room of phones is recorded audio-only, without a compositor; a
recording ends with the meeting."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.config import MediaConfig
from gateway.rooms import LegKind, Room
from gateway.rooms.conference import Conference
from gateway.rooms.floor import Content
from gateway.transcode.codecs import StreamKind
from gateway.transcode.video import VideoSourceId
from tests.unit.transcode.test_broadcast import read
from tests.unit.transcode.test_compositor import until
from tests.unit.transcode.test_video_streams import FakeCompositor, StreamLeg

SMALL = MediaConfig.model_validate({"composed": {"width": 320, "height": 180, "fps": 15, "bitrate_kbps": 300}})


class PhoneLeg(StreamLeg):
    """A phone: audio only."""

    kind = LegKind.PHONE

    def __init__(self, pid: str) -> None:
        super().__init__(pid)
        self.streams = {}


class Ends:
    def __init__(self) -> None:
        self.started: list[float] = []
        self.ended: list[tuple[str | None, int]] = []


def recording(conference: Conference, path: Path, **kwargs: Any) -> Ends:
    ends = Ends()
    conference.start_broadcast(
        "recording", str(path), "mp4", on_started=ends.started.append, on_ended=lambda r, n: ends.ended.append((r, n)), **kwargs
    )
    return ends


def excluded(conference: Conference) -> str | None:
    assert conference.compositor is not None and conference.compositor._scene is not None
    return conference.compositor._scene["exclude"]  # type: ignore[no-any-return]


async def test_a_room_with_a_room_system_is_recorded_with_its_composed_picture(tmp_path: Path) -> None:
    room = Room("council")
    conference = Conference(room, SMALL)
    try:
        anna = room.request_join("Anna", None, LegKind.SIP_ROOM_SYSTEM).participant
        assert anna is not None
        leg = StreamLeg(anna.id)
        leg.streams[next(iter(leg.streams))].composed = True
        conference.attach(leg)
        assert excluded(conference) == anna.id  # (alone, it does not see itself)
        ends = recording(conference, tmp_path / "council.mp4")
        assert conference.broadcast is not None and conference.broadcast.video_enabled
        assert excluded(conference) is None  # the recording shows everyone
        await until(lambda: bool(ends.started), 30)
        await asyncio.sleep(2)
        conference.stop_broadcast("recording")
        await until(lambda: bool(ends.ended), 30)
        assert ends.ended[0][0] is None and ends.ended[0][1] == (tmp_path / "council.mp4").stat().st_size
        assert conference.broadcast is None and conference.compositor is not None  # (the room system's stays)
        assert excluded(conference) == anna.id
    finally:
        await conference.close()
    info = read(tmp_path / "council.mp4")
    assert info["streams"] == ["audio", "video"] and info["video"] == ("h264", 320, 180)
    assert float(info["duration"]) >= 1.5 and int(info["pictures"]) >= 20  # type: ignore[arg-type, call-overload]


def phone_room() -> tuple[Conference, str]:
    """A room with one phone in its meeting."""
    room = Room("hotline")
    conference = Conference(room, SMALL)
    ida = room.request_join("Ida", None, LegKind.PHONE).participant
    assert ida is not None
    conference.attach(PhoneLeg(ida.id))
    return conference, ida.id


async def test_a_room_of_phones_is_recorded_audio_only_and_the_recording_ends_with_the_meeting(tmp_path: Path) -> None:
    conference, ida = phone_room()
    try:
        ends = recording(conference, tmp_path / "hotline.mp4")
        assert conference.broadcast is not None and not conference.broadcast.video_enabled
        assert conference.compositor is None
        await until(lambda: bool(ends.started), 30)
        await asyncio.sleep(1)
        conference.detach(ida)  # the last one leaves: the meeting, and its recording, end
        await until(lambda: bool(ends.ended), 30)
        assert ends.ended[0][0] is None and conference.broadcast is None
    finally:
        await conference.close()
    info = read(tmp_path / "hotline.mp4")
    assert info["streams"] == ["audio"] and float(info["duration"]) >= 0.8  # type: ignore[arg-type]


async def test_a_target_refused_leaves_no_broadcast_behind() -> None:
    conference, _ = phone_room()
    try:
        try:
            recording(conference, Path("relative.mp4"))
        except ValueError as exc:
            assert "absolute path" in str(exc)
        else:
            raise AssertionError("a relative path was taken")
        assert conference.broadcast is None and conference.mixer.narrowband  # (the tap went too)
    finally:
        await conference.close()


class FakeBroadcast:
    """Stands in for the broadcast process: targets, and the picture's frames it is handed."""

    def __init__(self, *, epoch: float, video: bool, **_kwargs: Any) -> None:
        self.video_enabled = video
        self._targets: dict[str, Any] = {}

    def add_target(self, name: str, url: str, kind: str, on_started: Any, on_ended: Any, on_interrupted: Any) -> None:
        self._targets[name] = on_ended

    def remove_target(self, name: str) -> None:
        on_ended = self._targets.pop(name)
        on_ended(None, 0)

    def targets(self) -> dict[str, Any]:
        return dict(self._targets)

    def video(self, _frame: Any) -> None:
        pass

    def audio(self, _pcm: Any) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_the_broadcast_shows_the_presentation_at_its_own_size_and_leaves_no_compositor_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A meeting of browsers only (no room system): while it is recorded, someone's presentation
    is in the recording's picture, large (the broadcast has no content line of its own), at the
    size the room's settings give it; when the recording ends, the compositor goes."""
    monkeypatch.setattr("gateway.rooms.conference.CompositorProcess", FakeCompositor)
    monkeypatch.setattr("gateway.rooms.conference.BroadcastProcess", FakeBroadcast)
    room = Room("council")
    conference = Conference(room, MediaConfig())
    try:
        anna = room.request_join("Anna", None, LegKind.BROWSER).participant
        assert anna is not None
        leg = StreamLeg(anna.id)
        leg.kind = LegKind.BROWSER
        conference.attach(leg)
        room.start_presenting(anna.id, Content.SCREEN)
        assert conference.compositor is None  # (nobody takes the composed picture yet)
        conference.start_broadcast("recording", "/tmp/x.mp4", "mp4", size=(640, 360, 15, 500))
        compositor = conference.compositor
        assert isinstance(compositor, FakeCompositor)
        assert compositor.scenes[-1] == ([anna.id + "#content", anna.id], anna.id + "#content")
        assert VideoSourceId(anna.id, StreamKind.CONTENT) in conference.video.subscriptions("#compositor")
        [(receiver, spec)] = compositor.outputs
        assert receiver == "#broadcast" and (spec.codec, spec.width, spec.height, spec.fps) == ("H264", 640, 360, 15)
        assert spec.bitrate_bps <= 500_000
        conference.stop_broadcast("recording")
        assert conference.broadcast is None and conference.compositor is None
    finally:
        await conference.close()
