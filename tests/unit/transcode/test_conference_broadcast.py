"""The conference's broadcast, with the real compositor and broadcast processes: a room with a
room system is recorded with its composed picture (the room system no longer left out of it while
the recording runs) and its mix; a room of phones is recorded audio-only, without a compositor; a
recording ends with the meeting."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway.config import MediaConfig
from gateway.rooms import LegKind, Room
from gateway.rooms.conference import Conference
from tests.unit.transcode.test_broadcast import read
from tests.unit.transcode.test_compositor import until
from tests.unit.transcode.test_video_streams import StreamLeg

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


async def test_a_room_of_phones_is_recorded_audio_only_and_the_recording_ends_with_the_meeting(tmp_path: Path) -> None:
    room = Room("hotline")
    conference = Conference(room, SMALL)
    try:
        ida = room.request_join("Ida", None, LegKind.PHONE).participant
        assert ida is not None
        conference.attach(PhoneLeg(ida.id))
        ends = recording(conference, tmp_path / "hotline.mp4")
        assert conference.broadcast is not None and not conference.broadcast.video_enabled
        assert conference.compositor is None
        await until(lambda: bool(ends.started), 30)
        await asyncio.sleep(1)
        conference.detach(ida.id)  # the last one leaves: the meeting, and its recording, end
        await until(lambda: bool(ends.ended), 30)
        assert ends.ended[0][0] is None and conference.broadcast is None
    finally:
        await conference.close()
    info = read(tmp_path / "hotline.mp4")
    assert info["streams"] == ["audio"] and float(info["duration"]) >= 0.8  # type: ignore[arg-type]


async def test_a_target_refused_leaves_no_broadcast_behind(tmp_path: Path) -> None:
    room = Room("hotline")
    conference = Conference(room, SMALL)
    try:
        ida = room.request_join("Ida", None, LegKind.PHONE).participant
        assert ida is not None
        conference.attach(PhoneLeg(ida.id))
        try:
            recording(conference, Path("relative.mp4"))
        except ValueError as exc:
            assert "absolute path" in str(exc)
        else:
            raise AssertionError("a relative path was taken")
        assert conference.broadcast is None and conference.mixer.narrowband  # (the tap went too)
    finally:
        await conference.close()
