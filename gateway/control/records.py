"""Call records: who was in which room when, from where, how long, over which leg and codecs, with
packet loss and jitter. Written when a participant leaves, announced as a `call_record_written`
event (MQTT), queryable through the API and exportable as CSV.

While a participant is in, their record so far is kept in the store as an open call, and the store
hears every HEARTBEAT_S that the node is alive: the calls of a node that died (killed, its machine
gone) become records ending `node_failed` at its last sign of life when it starts again.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Iterable
from typing import Any

import structlog

from gateway.control.store import CALL_RECORD_FIELDS, Store
from gateway.rooms.directory import Directory
from gateway.rooms.events import RoomEvent

log = structlog.get_logger(__name__)

_ENDINGS = {"participant_left": "left", "participant_removed": "removed"}
_DAY_S = 86_400.0
HEARTBEAT_S = 10.0
NODE_FAILED = "node_failed"


class CallRecorder:
    def __init__(self, directory: Directory, store: Store, retention_days: int) -> None:
        self.directory = directory
        self.store = store
        self.retention_s = retention_days * _DAY_S
        self._open: dict[tuple[str, str], dict[str, Any]] = {}
        self._opening: dict[tuple[str, str], asyncio.Task[None]] = {}  # the open call being stored
        self._pending: set[asyncio.Task[None]] = set()
        self._unsubscribe = directory.subscribe(self._on_event)
        self.written = 0

    def _on_event(self, event: RoomEvent) -> None:
        if event.type == "participant_joined" and event.participant:
            conference = self.directory.conferences.get(event.room)
            participant = conference.room.participants.get(event.participant) if conference else None
            if conference is None or participant is None or participant.extra.get("via") is not None:
                return  # (another node's participant, shown here: that node keeps its record)
            self._open[(event.room, event.participant)] = {
                "room": event.room,
                "participant": participant.id,
                "name": participant.name,
                "role": participant.role.value,
                "kind": participant.kind.value,
                "direction": participant.extra.get("direction", "in"),
                "source": participant.source,
                "joined_at": participant.joined_at,
                "broadcast": set(conference.room.broadcasting),  # (recorded or streamed while in)
            }
            if self.store.persistent:  # (a node without a database keeps nothing after it)
                key = (event.room, event.participant)
                self._opening[key] = asyncio.get_running_loop().create_task(self._store_open(dict(self._open[key])))
        elif event.type in ("recording_started", "streaming_started"):
            what = event.type.partition("_")[0]
            for (room, _), record in self._open.items():
                if room == event.room:
                    record["broadcast"].add(what)
        elif event.type in _ENDINGS and event.participant:
            self._finish(event.room, event.participant, _ENDINGS[event.type], event.at)
        elif event.type == "meeting_ended":
            for pid in event.data.get("participants", []):  # (reason: meeting_ended, or shutdown)
                self._finish(event.room, pid, event.data.get("reason", "meeting_ended"), event.at)

    def _finish(self, room: str, pid: str, reason: str, at: float) -> None:
        record = self._open.pop((room, pid), None)
        if record is None:
            return  # someone who only waited in the lobby
        conference = self.directory.conferences.get(room)
        media = {}
        if conference is not None:
            media = conference.last_media.pop(pid, {}) or conference.media_summary(pid)
        record.update(media)
        record["left_at"] = at
        record["duration_s"] = round(max(0.0, at - record["joined_at"]), 3)
        record["end_reason"] = reason
        record["broadcast"] = ",".join(sorted(record["broadcast"])) or None
        task = asyncio.get_running_loop().create_task(self._write(record, self._opening.pop((room, pid), None)))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _store_open(self, record: dict[str, Any]) -> None:
        record["broadcast"] = ",".join(sorted(record["broadcast"])) or None
        try:
            await asyncio.to_thread(self.store.open_call, record)
        except Exception:
            log.exception("open call could not be stored", room=record["room"], participant=record["participant"])

    async def _write(self, record: dict[str, Any], opening: asyncio.Task[None] | None = None) -> None:
        if opening is not None:
            await opening  # (its open call first: the record's write ends it)
        try:
            record["id"] = await self.store.add_call_record_async(record)
        except Exception:
            log.exception("call record could not be written", room=record["room"], participant=record["participant"])
            return
        self.written += 1
        full = {field: record.get(field) for field in CALL_RECORD_FIELDS}
        self.directory.publish(RoomEvent("call_record_written", record["room"], record["participant"], data=full))

    def prune(self) -> int:
        removed = self.store.prune_call_records(time.time() - self.retention_s)
        if removed:
            log.info("old call records deleted", count=removed, older_than_days=self.retention_s / _DAY_S)
        return removed

    async def settle_lost_calls(self) -> list[dict[str, Any]]:
        """At start-up, before any call: the calls the node had when it last stopped without ending
        them (killed, its machine gone) become call records that end `node_failed` when it was last
        alive."""
        lost = await asyncio.to_thread(self.store.settle_open_calls, NODE_FAILED)
        if lost:
            log.warning("calls lost when the node last stopped", count=len(lost), rooms=sorted({r["room"] for r in lost}))
        for record in lost:
            full = {field: record.get(field) for field in CALL_RECORD_FIELDS}
            self.directory.publish(RoomEvent("call_record_written", record["room"], record["participant"], data=full))
        return lost

    async def run_heartbeat(self) -> None:
        """Tells the store every HEARTBEAT_S that the open calls still go on (when they were lost, if the node dies)."""
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            if self._open and self.store.persistent:
                try:
                    await asyncio.to_thread(self.store.touch_open_calls, time.time())
                except Exception:
                    log.exception("open calls could not be touched")

    async def run_pruning(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.prune)
            except Exception:
                log.exception("pruning call records failed")
            await asyncio.sleep(3600)

    async def close(self) -> None:
        """Writes the records of everyone still in a meeting (the gateway is stopping)."""
        self._unsubscribe()
        now = time.time()
        for room, pid in list(self._open):
            self._finish(room, pid, "gateway_stopped", now)
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


def _cell(value: Any) -> Any:
    """A name like `=HYPERLINK(...)` must stay text in a spreadsheet (CSV formula injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def records_csv(records: Iterable[dict[str, Any]]) -> str:
    """RFC 4180 CSV with a header; times as ISO 8601 UTC beside the Unix times."""
    out = io.StringIO()
    fields = [*CALL_RECORD_FIELDS, "joined_at_utc", "left_at_utc"]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\r\n")
    writer.writeheader()
    for record in records:
        row = dict(record)
        for key in ("joined_at", "left_at"):
            row[f"{key}_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record[key]))
        writer.writerow({key: _cell(value) for key, value in row.items()})
    return out.getvalue()
