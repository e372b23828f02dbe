"""The wait in the lobby (gateway.calls.lobby): admitted, denied, the meeting ended, the queue moved."""

from __future__ import annotations

from gateway.calls.endings import Ending
from gateway.calls.lobby import LobbyAdmitted, LobbyEnded, LobbyMoved, LobbyNews, LobbyWait, ending_of
from gateway.rooms.events import RoomEvent
from gateway.rooms.participant import LegKind
from gateway.rooms.room import Room


def room_with_host() -> tuple[Room, str]:
    room = Room("r", host_pin="1", lobby=True)
    host = room.request_join("Host", "1", LegKind.BROWSER).participant
    assert host is not None
    return room, host.id


def wait(room: Room, name: str) -> tuple[LobbyWait, list[LobbyNews]]:
    entry = room.request_join(name, None, LegKind.PHONE).lobby_entry
    assert entry is not None
    news: list[LobbyNews] = []
    return LobbyWait(room, entry.id, news.append), news


def test_admitted_after_being_moved_up_the_queue() -> None:
    room, host = room_with_host()
    first, _ = wait(room, "first")
    second, news = wait(room, "second")
    room.deny(host, first.entry_id)
    assert news == [LobbyMoved()]
    room.admit(host, second.entry_id)
    assert news[1:] == [LobbyAdmitted()]
    assert not second.waiting  # no news after the end of the wait
    room.leave(second.entry_id)
    assert len(news) == 2


def test_denied_and_ended_meetings_end_the_wait_with_their_endings() -> None:
    room, host = room_with_host()
    denied, denied_news = wait(room, "a")
    room.deny(host, denied.entry_id)
    assert denied_news == [LobbyEnded(Ending.DENIED_FROM_LOBBY)]
    ended, ended_news = wait(room, "b")
    room.end(None, reason="shutdown")
    assert ended_news == [LobbyEnded(Ending.SHUTDOWN)]


def test_stop_unsubscribes() -> None:
    room, host = room_with_host()
    waiting, news = wait(room, "a")
    waiting.stop()
    room.admit(host, waiting.entry_id)
    assert news == []


def test_ending_of_reads_removals_denials_and_meeting_ends_for_one_participant() -> None:
    def event(type: str, participant: str | None = "p1", **data: object) -> RoomEvent:
        return RoomEvent(type=type, room="r", participant=participant, by=None, data=data, at=0.0)  # type: ignore[arg-type]

    assert ending_of(event("participant_removed"), "p1") is Ending.REMOVED
    assert ending_of(event("participant_removed"), "p2") is None
    assert ending_of(event("lobby_denied"), "p1") is Ending.DENIED_FROM_LOBBY
    assert ending_of(event("meeting_ended", None, participants=["p1"], reason="meeting_ended"), "p1") is Ending.MEETING_ENDED
    assert ending_of(event("meeting_ended", None, participants=["p2"]), "p1") is None
    assert ending_of(event("muted"), "p1") is None
