"""Recordings' rules without a meeting's media: rooms that forbid them, meetings with nobody in
them, retention (file and entry go), recordings a killed gateway left unfinished, entries that
point outside the folder, and stream URLs (stream keys) that are never shown or echoed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config import GatewayConfig, RecordingConfig, RoomConfig
from gateway.control.broadcasts import Broadcasts
from gateway.control.store import Store
from gateway.rooms.directory import Directory
from gateway.rooms.errors import RoomError

KEY = "live_8c1e0f2a-secret-stream-key"


def broadcasts(tmp_path: Path, store: Store | None = None, **room: object) -> Broadcasts:
    config = GatewayConfig(rooms=[RoomConfig.model_validate({"id": "council", **room})])
    return Broadcasts(Directory(config), store or Store(None), RecordingConfig(folder=tmp_path, retention_days=30))


def entry(recording_id: str, file: str, started_at: float, ended_at: float | None) -> dict[str, object]:
    return {"id": recording_id, "room": "council", "file": file, "video": True, "started_at": started_at, "ended_at": ended_at}


def test_a_room_that_forbids_recording_or_streaming_refuses_both(tmp_path: Path) -> None:
    control = broadcasts(tmp_path, recording="forbidden", streaming="forbidden")
    for what in ("recording", "streaming"):
        with pytest.raises(RoomError) as refused:
            control.start("council", what, "test")  # type: ignore[arg-type]
        assert refused.value.code == f"{what}_forbidden"
    assert control.state("council") == {"recording": None, "streaming": None}


def test_an_empty_meeting_is_not_recorded_and_a_room_without_stream_url_not_streamed(tmp_path: Path) -> None:
    control = broadcasts(tmp_path)
    with pytest.raises(RoomError) as refused:
        control.start("council", "recording", "test")
    assert refused.value.code == "no_meeting"
    with pytest.raises(RoomError) as unknown:
        control.start("nowhere", "recording", "test")
    assert unknown.value.code == "unknown_room"
    assert list(tmp_path.iterdir()) == []  # (nothing was made)


def test_retention_deletes_old_recordings_file_and_entry_and_keeps_the_rest(tmp_path: Path) -> None:
    store = Store(None)
    control = broadcasts(tmp_path, store)
    (tmp_path / "council").mkdir()
    now = time.time()
    for name, ended in (("old", now - 31 * 86_400), ("recent", now - 29 * 86_400), ("running", None)):
        (tmp_path / "council" / f"{name}.mp4").write_bytes(b"x" * 10)
        store.add_recording(entry(name, f"council/{name}.mp4", now - 40 * 86_400, ended))
    assert control.prune() == 1
    assert sorted(r["id"] for r in control.recordings()) == ["recent", "running"]
    assert sorted(p.name for p in (tmp_path / "council").iterdir()) == ["recent.mp4", "running.mp4"]


def test_recordings_a_killed_gateway_left_unfinished_end_with_their_files_size(tmp_path: Path) -> None:
    store = Store(None)
    (tmp_path / "council").mkdir()
    (tmp_path / "council" / "cut.mp4").write_bytes(b"x" * 1234)
    store.add_recording(entry("cut", "council/cut.mp4", time.time() - 60, None))
    store.add_recording(entry("gone", "council/gone.mp4", time.time() - 60, None))
    control = broadcasts(tmp_path, store)
    cut, gone = control.recording("cut"), control.recording("gone")
    assert cut["ended_at"] is not None and cut["size"] == 1234 and cut["end_reason"] == "the gateway stopped"
    assert gone["ended_at"] == gone["started_at"] and gone["size"] == 0


def test_an_entry_that_points_outside_the_folder_is_neither_read_nor_deleted(tmp_path: Path) -> None:
    store = Store(None)
    folder = tmp_path / "recordings"
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    config = GatewayConfig(rooms=[RoomConfig(id="council")])
    control = Broadcasts(Directory(config), store, RecordingConfig(folder=folder))
    store.add_recording(entry("evil", "../precious.txt", time.time() - 99 * 86_400, time.time() - 99 * 86_400))
    with pytest.raises(RoomError) as refused:
        control.path_of(control.recording("evil"))
    assert refused.value.code == "unknown_recording"
    control.prune()
    assert outside.read_text() == "keep me"


def test_a_stream_url_is_masked_in_the_rooms_settings_and_never_echoed_by_its_error(tmp_path: Path) -> None:
    room = RoomConfig.model_validate({"id": "council", "stream_url": f"rtmp://stream.example.org/live/{KEY}"})
    assert KEY not in room.model_dump_json() and KEY not in repr(room)
    assert KEY in room.model_dump_json(context={"secrets": True})  # (the store keeps it)
    with pytest.raises(ValidationError) as invalid:
        RoomConfig.model_validate({"id": "council", "stream_url": f"http://stream.example.org/live/{KEY}"})
    assert "rtmp://" in str(invalid.value) and KEY not in str(invalid.value)


def test_the_folder_is_absolute_whatever_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    control = Broadcasts(Directory(GatewayConfig()), Store(None), RecordingConfig(folder=Path("var/recordings")))
    assert control.folder == tmp_path / "var" / "recordings"
