"""Unit tests of the operations core: opening hours, routing and the directory, the store, host
links, call-record CSV."""

from __future__ import annotations

import csv
import io
import sqlite3
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from gateway.config import (
    GatewayConfig,
    OpeningHoursConfig,
    RoomConfig,
    RoomSystemConfig,
    RoutingRuleConfig,
)
from gateway.control.auth import Authenticator, AuthError, HostLinks
from gateway.control.records import records_csv
from gateway.control.store import Store, StoreError
from gateway.rooms.directory import Conflict, Directory, NotFound
from gateway.rooms.errors import JoinRefused
from gateway.rooms.hours import OpeningHours
from gateway.rooms.participant import LegKind, Role
from gateway.sip.uri import sip_identity

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


def office() -> OpeningHours:
    return OpeningHours(
        OpeningHoursConfig(
            weekly={"mon": ["08:00-12:00", "14:00-16:00"], "fri": ["22:00-24:00"], "sat": ["00:00-02:00"]},
            closed=["2026-12-07"],
        )
    )


def test_opening_hours_spans_closed_days_and_the_next_opening() -> None:
    hours = office()
    assert not hours.is_open(at("2026-11-30T07:59:59"))
    assert hours.is_open(at("2026-11-30T08:00"))
    assert not hours.is_open(at("2026-11-30T12:00"))  # the end is exclusive
    assert hours.next_opening(at("2026-11-30T12:30")) == at("2026-11-30T14:00")
    # A closed Monday (a holiday): the next opening is Friday night, over midnight into Saturday.
    assert not hours.is_open(at("2026-12-07T09:00"))
    assert hours.next_opening(at("2026-12-07T09:00")) == at("2026-12-11T22:00")
    assert hours.is_open(at("2026-12-11T23:59")) and hours.is_open(at("2026-12-12T01:00"))
    public = hours.public(at("2026-11-30T12:30"))
    assert public["open_now"] is False and public["next_opening"] == "2026-11-30T14:00:00+01:00"
    assert public["weekly"]["tue"] == [] and public["closed"] == ["2026-12-07"]


def test_opening_hours_follow_daylight_saving_time() -> None:
    hours = OpeningHours(OpeningHoursConfig(weekly={"sun": ["08:00-09:00"]}))
    # 29 March 2026: clocks go from 02:00 to 03:00 in Berlin; 08:00 local is 06:00 UTC (summer time).
    assert hours.is_open(datetime(2026, 3, 29, 6, 30, tzinfo=ZoneInfo("UTC")).timestamp())
    assert not hours.is_open(datetime(2026, 3, 22, 6, 30, tzinfo=ZoneInfo("UTC")).timestamp())  # winter: 07:30


def test_opening_hours_never_open_and_bad_input() -> None:
    never = OpeningHours(OpeningHoursConfig())
    assert not never.is_open(at("2026-11-30T10:00")) and never.next_opening(at("2026-11-30T10:00")) is None
    for bad in ({"timezone": "Mars/Olympus"}, {"weekly": {"mon": ["12:00-08:00"]}}, {"weekly": {"mon": ["8-12"]}}, {"weekly": {"xyz": []}}):
        with pytest.raises(ValidationError):
            OpeningHoursConfig.model_validate(bad)


def test_guests_cannot_enter_a_closed_room_hosts_can() -> None:
    directory = Directory(GatewayConfig())
    spec = RoomConfig(id="office", host_pin="1234", opening_hours=OpeningHoursConfig())
    room = directory.add(spec, "api").room
    with pytest.raises(JoinRefused) as refused:
        room.request_join("Citizen", None, LegKind.BROWSER)
    assert refused.value.code == "closed"
    assert room.request_join("Clerk", "1234", LegKind.BROWSER).participant is not None
    assert room.request_join("Chair", None, LegKind.BROWSER, role=Role.HOST).participant is not None


def test_directory_clashes_updates_and_routing_rules() -> None:
    config = GatewayConfig(rooms=[RoomConfig(id="demo", aliases=["4711"])])
    directory = Directory(config)
    with pytest.raises(Conflict, match="alias '4711'"):
        directory.add(RoomConfig(id="other", aliases=["4711"]), "api")
    with pytest.raises(Conflict, match="configuration file"):
        directory.update(RoomConfig(id="demo"))
    directory.add(RoomConfig(id="room-42", aliases=["42"]), "api")
    directory.set_rules(
        [
            RoutingRuleConfig(id="a", pattern=r"8(\d{2})", room=r"room-\1"),
            RoutingRuleConfig(id="b", pattern=r"(?P<n>.+)\.board", room=r"\g<n>"),
        ]
    )
    assert directory.route("4711").room.id == "demo"  # type: ignore[union-attr]
    assert directory.route("842").room.id == "room-42"  # type: ignore[union-attr]
    assert directory.route("DEMO.board").room.id == "demo"  # type: ignore[union-attr]
    assert directory.route("899") is None  # the rule matches, but names no room
    # A live room keeps its participants when its settings change; aliases are re-indexed.
    room = directory.find("42").room  # type: ignore[union-attr]
    joined = room.request_join("Ann", None, LegKind.BROWSER).participant
    directory.update(RoomConfig(id="room-42", name="Forty-two", aliases=["4242"], lobby=True))
    assert directory.find("42") is None and directory.find("4242").room is room  # type: ignore[union-attr]
    assert joined is not None and joined.id in room.participants and room.lobby_enabled


def test_rules_refuse_bad_expressions_and_missing_groups() -> None:
    with pytest.raises(ValidationError, match="regular expression"):
        RoutingRuleConfig(id="a", pattern="8(", room="x")
    with pytest.raises(ValidationError, match="group '2'"):
        RoutingRuleConfig(id="a", pattern=r"8(\d)", room=r"room-\2")
    with pytest.raises(ValidationError, match="group 'x'"):
        RoutingRuleConfig(id="a", pattern=r"8(\d)", room=r"\g<x>")
    # Rules run on RE2 (linear time on the caller's alias): what it cannot run is refused when written.
    with pytest.raises(ValidationError, match="RE2"):
        RoutingRuleConfig(id="a", pattern=r"(\d)\1", room="x")
    with pytest.raises(ValidationError, match="RE2"):
        RoutingRuleConfig(id="a", pattern=r"(?!9)\d+", room="x")


async def test_removing_a_room_ends_its_meeting() -> None:
    directory = Directory(GatewayConfig())
    room = directory.add(RoomConfig(id="temp"), "api").room
    events = []
    directory.subscribe(events.append)
    room.request_join("Ann", None, LegKind.BROWSER)
    await directory.remove("temp")
    assert [e.type for e in events] == ["participant_joined", "meeting_ended"]
    assert directory.find("temp") is None
    with pytest.raises(NotFound):
        await directory.remove("temp")


def test_room_systems_are_recognised_by_user_and_host() -> None:
    directory = Directory(GatewayConfig(), identify=sip_identity)
    directory.set_systems([RoomSystemConfig(id="board", name="Board", uri="sip:Board@10.0.0.5:5060;transport=tcp")])
    assert directory.system_for("sip:board@10.0.0.5").id == "board"  # type: ignore[union-attr]
    assert directory.system_for("sips:BOARD@10.0.0.5:5061") is not None
    assert directory.system_for("sip:board@10.0.0.6") is None
    assert directory.system_addresses(directory.systems["board"]) == {"10.0.0.5"}  # an IP literal: no lookup


def test_store_keeps_everything_and_reports_rows_it_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / "db" / "gw.sqlite3"
    store = Store(path)
    store.save_room(RoomConfig(id="a", host_pin="1234", opening_hours=OpeningHoursConfig(weekly={"mon": ["08:00-12:00"]})))
    store.save_system(RoomSystemConfig(id="s", name="S", uri="sip:s@example.org"))
    store.save_rules([RoutingRuleConfig(id="r2", pattern="2", room="a"), RoutingRuleConfig(id="r1", pattern="1", room="a")])
    secret = store.secret("host-links")
    record = {"room": "a", "participant": "p1", "name": "=cmd", "role": "guest", "kind": "phone", "direction": "in",
              "source": "1.2.3.4", "joined_at": 1000.0, "left_at": 1060.0, "duration_s": 60.0, "end_reason": "left",
              "audio_codec": "PCMA", "video_codecs": "", "audio_packets_in": 3000, "audio_frames_lost": 3,
              "loss_percent": 0.1, "jitter_ms": 4.2}
    store.add_call_record(record)
    store.add_call_record({**record, "participant": "p2", "room": "b", "joined_at": 2000.0, "left_at": 2001.0})
    store.close()
    # A row from a newer or hand-edited database that no longer validates: reported, kept.
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO rooms VALUES ('bad', '{\"id\": \"BAD ID\"}', 0, 0)")

    again = Store(path)
    assert [r.id for r in again.rooms()] == ["a"]
    assert again.rooms()[0].opening_hours is not None
    assert [r.id for r in again.rules()] == ["r2", "r1"]  # order kept
    assert again.secret("host-links") == secret
    assert [r["participant"] for r in again.call_records()] == ["p2", "p1"]
    assert [r["participant"] for r in again.call_records(room="a")] == ["p1"]
    assert [r["participant"] for r in again.call_records(since=1500)] == ["p2"]
    assert again.prune_call_records(older_than=1500) == 1
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM rooms").fetchone()[0] == 2
    again.close()

    rows = list(csv.DictReader(io.StringIO(records_csv([record]))))
    assert rows[0]["name"] == "'=cmd"  # no formula in a spreadsheet
    assert rows[0]["joined_at_utc"] == "1970-01-01T00:16:40Z" and rows[0]["audio_codec"] == "PCMA"


def test_a_database_of_the_first_schema_gets_the_new_column_and_keeps_its_records(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # (call_records as schema 1 made it, before `broadcast`)
        db.execute(
            "CREATE TABLE call_records (id INTEGER PRIMARY KEY AUTOINCREMENT, room TEXT NOT NULL, participant TEXT NOT NULL, "
            "name TEXT NOT NULL, role TEXT NOT NULL, kind TEXT NOT NULL, direction TEXT NOT NULL, source TEXT, "
            "joined_at REAL NOT NULL, left_at REAL NOT NULL, duration_s REAL NOT NULL, end_reason TEXT NOT NULL, "
            "audio_codec TEXT, video_codecs TEXT, audio_packets_in INTEGER NOT NULL DEFAULT 0, "
            "audio_frames_lost INTEGER NOT NULL DEFAULT 0, loss_percent REAL NOT NULL DEFAULT 0, jitter_ms REAL)"
        )
        db.execute(
            "INSERT INTO call_records (room, participant, name, role, kind, direction, joined_at, left_at, duration_s, "
            "end_reason) VALUES ('a', 'p1', 'Ida', 'guest', 'phone', 'in', 1, 2, 1, 'left')"
        )
        db.execute("PRAGMA user_version=1")
    store = Store(path)
    [old] = store.call_records()
    assert old["participant"] == "p1" and old["broadcast"] is None
    store.add_call_record({**old, "id": None, "participant": "p2", "broadcast": "recording"})
    assert sorted((r["participant"], r["broadcast"] or "") for r in store.call_records()) == [("p1", ""), ("p2", "recording")]
    store.close()


async def test_a_call_record_says_whether_the_meeting_was_recorded_or_streamed_while_one_was_in_it() -> None:
    from gateway.control.records import CallRecorder

    directory = Directory(GatewayConfig(rooms=[RoomConfig(id="council")]))
    store = Store(None)
    recorder = CallRecorder(directory, store, 30)
    room = directory.conferences["council"].room
    early = room.request_join("Early", None, LegKind.PHONE).participant
    room.set_broadcasting("streaming", True, "admin")
    late = room.request_join("Late", None, LegKind.PHONE).participant
    never = room.request_join("Never", None, LegKind.PHONE).participant
    assert early is not None and late is not None and never is not None
    room.leave(never.id)  # (before the recording: it was streamed while Never was in)
    room.set_broadcasting("recording", True, "admin")
    room.leave(early.id)
    room.leave(late.id)
    await recorder.close()
    by_name = {r["name"]: r["broadcast"] for r in store.call_records()}
    assert by_name == {"Early": "recording,streaming", "Late": "recording,streaming", "Never": "streaming"}


def test_store_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        Store(garbage)
    newer = tmp_path / "newer.sqlite3"
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(StoreError, match="newer gateway"):
        Store(newer)


def test_processes_opening_a_new_store_at_once_all_start(tmp_path: Path) -> None:
    """The workers of one machine open the same new SQLite file at the same moment: each waits its
    turn to make the schema (a worker used to exit with "database is locked" and be restarted)."""
    import subprocess
    import sys
    import time

    path = tmp_path / "shared.sqlite"
    script = (
        "import sys, time; from gateway.control.store import Store; "
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); Store(__import__('pathlib').Path(sys.argv[1])); print('ok')"
    )
    start = str(time.time() + 1.5)  # (all of them past their imports, then at once)
    runs = [subprocess.Popen([sys.executable, "-c", script, str(path), start], stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(6)]
    results = [run.communicate(timeout=60) for run in runs]
    assert [run.returncode for run in runs] == [0] * 6, [err.decode()[-300:] for _, err in results]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_tokens_roles_and_host_links() -> None:
    from gateway.config import AdminConfig

    auth = Authenticator(
        AdminConfig(token="a" * 20, tokens=[{"name": "desk", "token": "o" * 20, "role": "operator"}])  # type: ignore[list-item]
    )
    assert auth.authenticate("Bearer " + "a" * 20).role == "admin"
    operator = auth.authenticate("bearer " + "o" * 20)
    assert operator.name == "desk" and operator.role == "operator"
    with pytest.raises(AuthError) as forbidden:
        auth.require(operator, "admin")
    assert forbidden.value.status == 403
    for header in ("", "Bearer", "Basic abc", "Bearer wrong-token-xxxxxxxx"):
        with pytest.raises(AuthError) as refused:
            auth.authenticate(header)
        assert refused.value.status == 401
    with pytest.raises(ValidationError, match="same"):
        AdminConfig(token="a" * 20, tokens=[{"name": "x", "token": "a" * 20}])  # type: ignore[list-item]

    links = HostLinks(b"k" * 32)
    token, expires = links.issue("demo", "1234", 3600, now=1000)
    assert expires == 4600 and links.verify(token, "demo", "1234", now=2000)
    assert not links.verify(token, "demo", "1234", now=4601)  # expired
    assert not links.verify(token, "other", "1234", now=2000)  # another room
    assert not links.verify(token, "demo", "9999", now=2000)  # the host PIN changed
    assert not links.verify("9" * 13 + ".x", "demo", "1234", now=2000)
    assert not links.verify("\u00b22.abc", "demo", "1234", now=2000)  # a digit to isdigit(), not to int()
    assert not HostLinks(b"j" * 32).verify(token, "demo", "1234", now=2000)  # another gateway's key
