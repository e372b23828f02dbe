"""The wait in a room's lobby, for every protocol: what the room's events mean to one waiting entry.

`lobby_news` reads one RoomEvent for an entry (admitted, sent away, moved in the queue); a
LobbyWait subscribes to the room and hands the news to the protocol's leg, which says it in its
own terms (hold music and a prompt, a `lobby` message on the page). `ending_of` reads the events
that end someone's place (removed, denied, the meeting ended) for places kept for a reconnect too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.calls.endings import Ending, ending_for
from gateway.rooms.events import RoomEvent
from gateway.rooms.room import Room


@dataclass(frozen=True)
class LobbyAdmitted:
    """A host let the entry in (the room adds it as a participant right after this event)."""


@dataclass(frozen=True)
class LobbyEnded:
    ending: Ending


@dataclass(frozen=True)
class LobbyMoved:
    """The queue or the hosts present changed: the entry's position or wait may show differently."""


LobbyNews = LobbyAdmitted | LobbyEnded | LobbyMoved


def ending_of(event: RoomEvent, participant_id: str) -> Ending | None:
    """The Ending `event` means for the participant (or lobby entry) `participant_id`, if any."""
    if event.type == "participant_removed" and event.participant == participant_id:
        return Ending.REMOVED
    if event.type == "lobby_denied" and event.participant == participant_id:
        return Ending.DENIED_FROM_LOBBY
    if event.type == "meeting_ended" and participant_id in event.data.get("participants", []):
        return ending_for(str(event.data.get("reason", "meeting_ended")))
    return None


def lobby_news(event: RoomEvent, entry_id: str, room: Room) -> LobbyNews | None:
    if event.type == "lobby_admitted" and event.participant == entry_id:
        return LobbyAdmitted()
    ending = ending_of(event, entry_id)
    if ending is not None:
        return LobbyEnded(ending)
    if event.type in ("lobby_changed", "participant_joined", "participant_left") and entry_id in room.lobby:
        return LobbyMoved()
    return None


class LobbyWait:
    """Watches `room` for the lobby entry `entry_id` until admitted, sent away or stopped."""

    def __init__(self, room: Room, entry_id: str, on_news: Callable[[LobbyNews], None]) -> None:
        self.room = room
        self.entry_id = entry_id
        self._on_news = on_news
        self._unsubscribe: Callable[[], None] | None = room.subscribe(self._on_event)

    @property
    def waiting(self) -> bool:
        return self._unsubscribe is not None

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_event(self, event: RoomEvent) -> None:
        if self._unsubscribe is None:
            return
        news = lobby_news(event, self.entry_id, self.room)
        if news is None:
            return
        if not isinstance(news, LobbyMoved):
            self.stop()
        self._on_news(news)
