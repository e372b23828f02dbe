"""Recordings and live streams of meetings: who may start them, where the files go, what is kept.

A meeting is recorded to `recording.folder/<room>/` (fragmented MP4: H.264 and AAC, audio-only
for a room of phones) and streamed live to its room's `stream_url` (RTMP or RTMPS). Hosts on the
page, administrators through the API and MQTT start and stop them (`LiveControl` calls here);
a room set to `automatic` starts them when its first participant joins, and a room set to
`forbidden` never has them. Everyone is told while it runs: the room's `recording_started` /
`streaming_started` event drives the pages' indicator, the prompt to callers and MQTT.

Each recording is an entry in the store (room, file, start, end, who started and stopped it,
size, why it ended if it failed) and a file; administrators list, download and delete them, and
both are deleted `retention_days` after the recording ended. A recording that fails (the disk is
full, the folder is not writable) ends cleanly (the file plays up to its last fragment), is
logged as an error and counted (an alert), and the meeting goes on.

Stream URLs hold their stream key: they are never logged, never shown (the API masks them) and
never part of an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from gateway.config import RecordingConfig
from gateway.control.metrics import BroadcastCounters
from gateway.control.store import Store
from gateway.rooms.conference import Conference
from gateway.rooms.directory import Directory, NotFound
from gateway.rooms.errors import NotAllowed, RoomError
from gateway.rooms.events import RoomEvent

log = structlog.get_logger(__name__)

What = Literal["recording", "streaming"]
KINDS: dict[What, str] = {"recording": "mp4", "streaming": "flv"}
AUTOMATIC = "automatic"  # the actor of what a room's setting started
MEETING_ENDED = "meeting_ended"  # the stopper of what ended with its meeting
_DAY_S = 86_400.0


@dataclass
class _Running:
    what: What
    room: str
    by: str
    recording_id: str | None = None  # (a recording's entry in the store)
    stop_by: str | None = None  # who asked it to stop
    up: bool = False  # (a live stream: connected to its server now)
    connected_once: bool = False


class Broadcasts:
    def __init__(self, directory: Directory, store: Store, config: RecordingConfig) -> None:
        self.directory = directory
        self.store = store
        self.folder = config.folder.absolute()
        self.retention_s = config.retention_days * _DAY_S
        self._running: dict[tuple[str, What], _Running] = {}
        # What a room's automatic setting started in the meeting now: not again until it ends (a
        # host who stopped it meant it; one that failed is not retried with each newcomer)
        self._automatic: set[tuple[str, What]] = set()
        self.failures: dict[What, int] = {"recording": 0, "streaming": 0}
        self.interruptions: dict[str, int] = {}  # by room: live streams that lost their server
        self._unsubscribe = directory.subscribe(self._on_event)
        directory.attach_watchers.append(self._attached)
        self._settle_unfinished()

    # -- start and stop ---------------------------------------------------------------------------

    def start(self, room: str, what: What, actor: str, video: bool | None = None) -> dict[str, Any]:
        """Starts recording or streaming the meeting in `room`; the state of it (`state`)."""
        conference = self._conference(room)
        room_id = conference.room.id
        spec = self.directory.specs[room_id]
        if (spec.recording if what == "recording" else spec.streaming) == "forbidden":
            raise NotAllowed(f"{what} is forbidden in this room", f"{what}_forbidden")
        if (room_id, what) in self._running:
            raise RoomError(f"the meeting is {what} already", f"already_{what}")
        if not conference.legs:
            raise RoomError("nobody is in the meeting", "no_meeting")
        running = _Running(what, room_id, actor)
        if what == "recording":
            recording_id = secrets.token_hex(8)
            folder = self.folder / room_id
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                self._failed(running, exc.strerror or type(exc).__name__)
                raise RoomError(f"the recordings' folder cannot be made: {exc.strerror}", "recording_failed") from None
            name = f"{room_id}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{recording_id[:6]}.mp4"
            target = str(folder / name)
            running.recording_id = recording_id
        else:
            if spec.stream_url is None:
                raise RoomError("the room has no stream_url", "no_stream_url")
            target = spec.stream_url.get_secret_value()
        output = spec.broadcast_video
        try:
            with_video = conference.start_broadcast(
                what,
                target,
                KINDS[what],
                video=video,
                size=(output.width, output.height, output.fps, output.bitrate_kbps) if output is not None else None,
                on_started=lambda at: self._started(running, at),
                on_ended=lambda reason, written: self._ended(running, reason, written),
                on_interrupted=lambda reason: self._interrupted(running, reason),
            )
        except ValueError as exc:  # (never the target: a stream URL holds its key)
            raise RoomError(str(exc), "bad_request") from None
        self._running[(room_id, what)] = running
        if running.recording_id is not None:
            self.store.add_recording(
                {
                    "id": running.recording_id,
                    "room": room_id,
                    "file": str(Path(room_id) / Path(target).name),
                    "video": with_video,
                    "started_at": time.time(),
                    "started_by": actor,
                }
            )
        conference.room.set_broadcasting(what, True, actor, video=with_video)
        log.info(f"{what} started", room=room_id, actor=actor, video=with_video, recording=running.recording_id)
        return self.state(room_id)[what] or {}

    def stop(self, room: str, what: What, actor: str) -> bool:
        """Stops it (the file is complete shortly after); False when it was not running."""
        conference = self._conference(room)
        running = self._running.get((conference.room.id, what))
        if running is None:
            return False
        running.stop_by = actor
        conference.stop_broadcast(what)
        return True

    def state(self, room: str) -> dict[What, dict[str, Any] | None]:
        """What runs in the room now: since when, started by whom (recordings: the entry's id)."""
        conference = self._conference(room)
        out: dict[What, dict[str, Any] | None] = {}
        for what in KINDS:
            running = self._running.get((conference.room.id, what))
            since = conference.room.broadcasting.get(what)
            if running is None or since is None:
                out[what] = None
            elif what == "recording":
                out[what] = {"since": since, "started_by": running.by, "recording": running.recording_id}
            else:  # (connected: to its server now; else it reconnects)
                interruptions = self.interruptions.get(running.room, 0)
                out[what] = {"since": since, "started_by": running.by, "connected": running.up, "interruptions": interruptions}
        return out

    def _conference(self, room: str) -> Conference:
        found = self.directory.find(room)
        if found is None:
            raise NotFound(f"no room {room!r}", "unknown_room")
        return found

    def _ended(self, running: _Running, reason: str | None, size: int) -> None:
        """A recording or stream ended: stopped (reason None), or it failed."""
        if self._running.get((running.room, running.what)) is running:
            del self._running[(running.room, running.what)]
        stopped_by = running.stop_by or (MEETING_ENDED if reason is None else None)
        if reason is not None:
            self._failed(running, reason)
        else:
            log.info(f"{running.what} stopped", room=running.room, by=stopped_by, size=size)
        if running.recording_id is not None:
            try:
                self.store.update_recording(
                    running.recording_id, ended_at=time.time(), stopped_by=stopped_by, size=size, end_reason=reason
                )
            except Exception:
                log.exception("a recording's end could not be stored", room=running.room, recording=running.recording_id)
        conference = self.directory.conferences.get(running.room)
        if conference is not None:
            extra = {"reason": reason} if reason is not None else {}
            conference.room.set_broadcasting(running.what, False, stopped_by, **extra)

    def _started(self, running: _Running, at: float) -> None:
        """Its first picture or sound is written (a recording starts at a keyframe of the picture):
        the entry's start is that instant, the time 0 of its file."""
        if running.recording_id is not None:
            started = time.time() - (time.monotonic() - at)
            try:
                self.store.update_recording(running.recording_id, started_at=started)
            except Exception:
                log.exception("a recording's start could not be stored", room=running.room, recording=running.recording_id)

    def _interrupted(self, running: _Running, reason: str | None) -> None:
        """A live stream reached its server (reason None) or lost it; it reconnects by itself."""
        conference = self.directory.conferences.get(running.room)
        if reason is None:
            resumed, running.up = running.connected_once, True
            running.connected_once = True
            log.info("live stream resumed" if resumed else "live stream connected", room=running.room)
            if conference is not None:
                conference.room.set_streaming_up(True)
            return
        running.up = False
        self.interruptions[running.room] = self.interruptions.get(running.room, 0) + 1
        log.warning("live stream interrupted; reconnecting", room=running.room, reason=reason)
        if conference is not None:
            conference.room.set_streaming_up(False, reason)

    def counters(self) -> BroadcastCounters:
        return BroadcastCounters(
            recording=sorted(room for room, what in self._running if what == "recording"),
            streaming={r.room: r.up for r in self._running.values() if r.what == "streaming"},
            interruptions=dict(self.interruptions),
            failures={what: n for what, n in self.failures.items() if n},
        )

    def _failed(self, running: _Running, reason: str) -> None:
        self.failures[running.what] += 1
        log.error(f"{running.what} failed", room=running.room, reason=reason, recording=running.recording_id)

    def _attached(self, conference: Conference) -> None:
        """A room set to automatic starts recording (streaming) when its first leg joins the media."""
        room = conference.room.id
        spec = self.directory.specs.get(room)
        if spec is None:
            return
        settings: tuple[tuple[What, str], ...] = (("recording", spec.recording), ("streaming", spec.streaming))
        for what, setting in settings:
            if setting != "automatic" or (room, what) in self._running or (room, what) in self._automatic:
                continue
            if what == "streaming" and spec.stream_url is None:
                continue
            self._automatic.add((room, what))
            try:
                self.start(room, what, AUTOMATIC)
            except RoomError as exc:
                log.error(f"automatic {what} did not start", room=room, error=exc.code, reason=str(exc))

    def _on_event(self, event: RoomEvent) -> None:
        if event.type == "meeting_ended" or (event.type in ("participant_left", "participant_removed") and not self._in_meeting(event.room)):
            for what in KINDS:  # (the next meeting starts automatic ones afresh)
                self._automatic.discard((event.room, what))

    def _in_meeting(self, room: str) -> bool:
        conference = self.directory.conferences.get(room)
        return conference is not None and bool(conference.room.participants)

    # -- recordings ---------------------------------------------------------------------------------

    def recordings(self, room: str | None = None, limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
        return self.store.recordings(room, limit, offset)

    def recording(self, recording_id: str) -> dict[str, Any]:
        found = self.store.recording(recording_id)
        if found is None:
            raise NotFound(f"no recording {recording_id!r}", "unknown_recording")
        return found

    def path_of(self, recording: dict[str, Any]) -> Path:
        """The recording's file, inside the folder (an entry that points elsewhere is refused)."""
        path = (self.folder / str(recording["file"])).resolve()
        if not path.is_relative_to(self.folder.resolve()):
            raise NotFound("the recording's file is not in the recordings' folder", "unknown_recording")
        return path

    def delete(self, recording_id: str, actor: str) -> None:
        recording = self.recording(recording_id)
        if recording["ended_at"] is None:
            raise RoomError("the recording is running: stop it first", "recording_running")
        self._delete(recording)
        log.info("recording deleted", room=recording["room"], recording=recording_id, actor=actor)

    def _delete(self, recording: dict[str, Any]) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_of(recording).unlink()
        self.store.delete_recording(recording["id"])

    def prune(self) -> int:
        """Deletes recordings (file and entry) that ended more than retention_days ago."""
        old = self.store.recordings_ended_before(time.time() - self.retention_s)
        for recording in old:
            try:
                self._delete(recording)
            except (OSError, RoomError) as exc:
                log.error("an old recording could not be deleted", recording=recording["id"], error=str(exc))
        if old:
            log.info("old recordings deleted", count=len(old), older_than_days=self.retention_s / _DAY_S)
        return len(old)

    async def run_pruning(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.prune)
            except Exception:
                log.exception("pruning recordings failed")
            await asyncio.sleep(3600)

    def _settle_unfinished(self) -> None:
        """Recordings the last run of the gateway never finished (it was killed): they end now,
        with the size their file has (it plays up to its last fragment)."""
        for recording in self.store.unfinished_recordings():
            size, ended = 0, recording["started_at"]
            with contextlib.suppress(OSError, RoomError):
                stat = self.path_of(recording).stat()
                size, ended = stat.st_size, max(ended, stat.st_mtime)  # (its last write)
            self.store.update_recording(recording["id"], ended_at=ended, size=size, end_reason="the gateway stopped")
            log.warning("a recording the gateway did not finish was closed", recording=recording["id"], room=recording["room"])

    def close(self) -> None:
        self._unsubscribe()
        if self._attached in self.directory.attach_watchers:
            self.directory.attach_watchers.remove(self._attached)
