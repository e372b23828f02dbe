"""SQLite persistence: rooms, room systems, trunks and routing rules made through the API, call records,
and the gateway's own secrets (the key that signs host links).

Objects are kept as their validated JSON (the pydantic models of gateway.config), so a new optional
field never needs a migration; the schema version is SQLite's `user_version`. A row that no longer
validates is reported and left in place, never deleted: a newer or hand-edited database loses nothing.

One connection, serialised by a lock: admin changes are rare and take well under a millisecond;
call records are written from a worker thread (`add_call_record_async`) so a slow disk never delays
the media loop.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel, ValidationError

from gateway.config import RoomConfig, RoomSystemConfig, RoutingRuleConfig, TrunkConfig

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=BaseModel)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    id TEXT PRIMARY KEY, data TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS systems (
    id TEXT PRIMARY KEY, data TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS trunks (
    id TEXT PRIMARY KEY, data TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rules (
    id TEXT PRIMARY KEY, position INTEGER NOT NULL, data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS call_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room TEXT NOT NULL,
    participant TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    kind TEXT NOT NULL,
    direction TEXT NOT NULL,
    source TEXT,
    joined_at REAL NOT NULL,
    left_at REAL NOT NULL,
    duration_s REAL NOT NULL,
    end_reason TEXT NOT NULL,
    audio_codec TEXT,
    video_codecs TEXT,
    audio_packets_in INTEGER NOT NULL DEFAULT 0,
    audio_frames_lost INTEGER NOT NULL DEFAULT 0,
    loss_percent REAL NOT NULL DEFAULT 0,
    jitter_ms REAL,
    broadcast TEXT
);
CREATE INDEX IF NOT EXISTS call_records_room_joined ON call_records (room, joined_at);
CREATE INDEX IF NOT EXISTS call_records_joined ON call_records (joined_at);
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS recordings (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    file TEXT NOT NULL,
    video INTEGER NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    started_by TEXT,
    stopped_by TEXT,
    size INTEGER NOT NULL DEFAULT 0,
    end_reason TEXT
);
CREATE INDEX IF NOT EXISTS recordings_started ON recordings (started_at);
"""

CALL_RECORD_FIELDS = (
    "id",
    "room",
    "participant",
    "name",
    "role",
    "kind",
    "direction",
    "source",
    "joined_at",
    "left_at",
    "duration_s",
    "end_reason",
    "audio_codec",
    "video_codecs",
    "audio_packets_in",
    "audio_frames_lost",
    "loss_percent",
    "jitter_ms",
    "broadcast",  # recording, streaming (comma-separated): what ran while the participant was in
)


RECORDING_FIELDS = (
    "id",
    "room",
    "file",
    "video",
    "started_at",
    "ended_at",
    "started_by",
    "stopped_by",
    "size",
    "end_reason",
)


class StoreError(Exception):
    """The database cannot be opened or is from a newer gateway."""


class Store:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        target = ":memory:"
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the directory of {path}: {exc.strerror}") from None
            target = str(path)
        try:
            self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{path}: the database is from a newer gateway (schema {version}, this one knows {SCHEMA_VERSION})"
                )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            # (columns added since schema 1: nullable, so a database made before gets them as they are)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(call_records)")}
            if "broadcast" not in columns:
                self._db.execute("ALTER TABLE call_records ADD COLUMN broadcast TEXT")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path or 'memory'}: not a usable SQLite database: {exc}") from None
        self._lock = threading.Lock()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- objects kept as JSON ---------------------------------------------------------------------

    def _load(self, table: str, model: type[M], order: str) -> list[M]:
        loaded = []
        for row in self._query(f"SELECT id, data FROM {table} ORDER BY {order}"):
            try:
                loaded.append(model.model_validate_json(row["data"]))
            except ValidationError as exc:
                log.error(
                    "stored entry is not valid and is not used (left in the database)",
                    table=table,
                    id=row["id"],
                    errors=[f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()],
                )
        return loaded

    def _save(self, table: str, item: BaseModel, item_id: str) -> None:
        now = time.time()
        with self._tx() as db:
            db.execute(
                f"INSERT INTO {table} (id, data, created_at, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
                # (secrets as they are: the API masks them, the database must keep them)
                (item_id, item.model_dump_json(exclude_none=True, context={"secrets": True}), now, now),
            )

    def _delete(self, table: str, item_id: str) -> bool:
        with self._tx() as db:
            return db.execute(f"DELETE FROM {table} WHERE id = ?", (item_id,)).rowcount > 0

    def rooms(self) -> list[RoomConfig]:
        return self._load("rooms", RoomConfig, "created_at, id")

    def save_room(self, room: RoomConfig) -> None:
        self._save("rooms", room, room.id)

    def delete_room(self, room_id: str) -> bool:
        return self._delete("rooms", room_id)

    def systems(self) -> list[RoomSystemConfig]:
        return self._load("systems", RoomSystemConfig, "created_at, id")

    def save_system(self, system: RoomSystemConfig) -> None:
        self._save("systems", system, system.id)

    def delete_system(self, system_id: str) -> bool:
        return self._delete("systems", system_id)

    def trunks(self) -> list[TrunkConfig]:
        return self._load("trunks", TrunkConfig, "created_at, id")

    def save_trunk(self, trunk: TrunkConfig) -> None:
        self._save("trunks", trunk, trunk.id)

    def delete_trunk(self, trunk_id: str) -> bool:
        return self._delete("trunks", trunk_id)

    def rules(self) -> list[RoutingRuleConfig]:
        return self._load("rules", RoutingRuleConfig, "position, id")

    def save_rules(self, rules: list[RoutingRuleConfig]) -> None:
        """Replaces the ordered list of rules at once (order matters)."""
        with self._tx() as db:
            db.execute("DELETE FROM rules")
            db.executemany(
                "INSERT INTO rules (id, position, data) VALUES (?, ?, ?)",
                [(rule.id, index, rule.model_dump_json()) for index, rule in enumerate(rules)],
            )

    # -- secrets ----------------------------------------------------------------------------------

    def secret(self, name: str, size: int = 32) -> bytes:
        """A random key made once and kept (host links stay valid across restarts)."""
        with self._tx() as db:
            row = db.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()
            if row is not None:
                return bytes(row["value"])
            value = secrets.token_bytes(size)
            db.execute("INSERT INTO secrets (name, value) VALUES (?, ?)", (name, value))
            return value

    # -- call records -----------------------------------------------------------------------------

    def add_call_record(self, record: dict[str, Any]) -> int:
        fields = [f for f in CALL_RECORD_FIELDS if f != "id"]
        # (a participant whose media never came has no media figures: zero, not a failed record)
        record = {**record, **{k: 0 for k in ("audio_packets_in", "audio_frames_lost", "loss_percent") if record.get(k) is None}}
        with self._tx() as db:
            cursor = db.execute(
                f"INSERT INTO call_records ({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))})",
                tuple(record.get(f) for f in fields),
            )
            return int(cursor.lastrowid or 0)

    async def add_call_record_async(self, record: dict[str, Any]) -> int:
        return await asyncio.to_thread(self.add_call_record, record)

    def call_records(
        self,
        room: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        where: list[str] = []
        args: list[Any] = []
        if room is not None:
            where.append("room = ?")
            args.append(room)
        if since is not None:
            where.append("joined_at >= ?")
            args.append(since)
        if until is not None:
            where.append("joined_at < ?")
            args.append(until)
        sql = f"SELECT {', '.join(CALL_RECORD_FIELDS)} FROM call_records"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY joined_at DESC, id DESC LIMIT ? OFFSET ?"
        return [dict(row) for row in self._query(sql, (*args, limit, offset))]

    def prune_call_records(self, older_than: float) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM call_records WHERE left_at < ?", (older_than,)).rowcount

    # -- recordings -------------------------------------------------------------------------------

    def add_recording(self, recording: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                f"INSERT INTO recordings ({', '.join(RECORDING_FIELDS)}) VALUES ({', '.join('?' * len(RECORDING_FIELDS))})",
                tuple({"size": 0, **recording}.get(f) for f in RECORDING_FIELDS),
            )

    def update_recording(self, recording_id: str, **fields: Any) -> None:
        unknown = set(fields) - set(RECORDING_FIELDS[1:])
        if unknown:
            raise ValueError(f"recordings have no {sorted(unknown)}")
        with self._tx() as db:
            db.execute(
                f"UPDATE recordings SET {', '.join(f'{name} = ?' for name in fields)} WHERE id = ?",
                (*fields.values(), recording_id),
            )

    def recordings(self, room: str | None = None, limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
        sql = f"SELECT {', '.join(RECORDING_FIELDS)} FROM recordings"
        args: tuple[Any, ...] = ()
        if room is not None:
            sql, args = sql + " WHERE room = ?", (room,)
        sql += " ORDER BY started_at DESC, id LIMIT ? OFFSET ?"
        return [_recording(row) for row in self._query(sql, (*args, limit, offset))]

    def recording(self, recording_id: str) -> dict[str, Any] | None:
        rows = self._query(f"SELECT {', '.join(RECORDING_FIELDS)} FROM recordings WHERE id = ?", (recording_id,))
        return _recording(rows[0]) if rows else None

    def delete_recording(self, recording_id: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM recordings WHERE id = ?", (recording_id,)).rowcount > 0

    def unfinished_recordings(self) -> list[dict[str, Any]]:
        """Recordings without an end (the gateway that made them was killed)."""
        rows = self._query(f"SELECT {', '.join(RECORDING_FIELDS)} FROM recordings WHERE ended_at IS NULL")
        return [_recording(row) for row in rows]

    def recordings_ended_before(self, at: float) -> list[dict[str, Any]]:
        rows = self._query(
            f"SELECT {', '.join(RECORDING_FIELDS)} FROM recordings WHERE ended_at IS NOT NULL AND ended_at < ?", (at,)
        )
        return [_recording(row) for row in rows]


def _recording(row: sqlite3.Row) -> dict[str, Any]:
    recording = dict(row)
    recording["video"] = bool(recording["video"])
    return recording
