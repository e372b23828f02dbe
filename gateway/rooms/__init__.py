"""The meeting domain, free of protocol code: rooms, participants, roles, mute policy, lobby, events."""

from gateway.rooms.errors import JoinRefused, NotAllowed, RoomError, UnknownParticipant
from gateway.rooms.events import RoomEvent
from gateway.rooms.participant import LegKind, Participant, Role
from gateway.rooms.room import JoinResult, LobbyEntry, Room

__all__ = [
    "JoinRefused",
    "JoinResult",
    "LegKind",
    "LobbyEntry",
    "NotAllowed",
    "Participant",
    "Role",
    "Room",
    "RoomError",
    "RoomEvent",
    "UnknownParticipant",
]
