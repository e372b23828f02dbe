"""Room events: every state change becomes one, for web clients, legs and (later) MQTT."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

EventType = Literal[
    "participant_joined",
    "participant_left",
    "participant_removed",
    "muted",
    "unmuted",
    "mute_changed",
    "self_unmute_forbidden",
    "self_unmute_allowed",
    "mute_policy_changed",
    "hand_raised",
    "hand_lowered",
    "video_changed",
    "connection_changed",
    "lobby_changed",
    "lobby_admitted",
    "lobby_denied",
    "room_locked",
    "room_unlocked",
    "meeting_ended",
    "speaking_started",
    "speaking_stopped",
    "quality_changed",  # a participant's connection got better or worse (data: quality, loss_percent, jitter_ms, rtt_ms)
    "layout_changed",  # the composed picture's arrangement (data: layout)
    "spotlight_changed",  # a host showed someone large for everyone (participant; None: ended)
    "presentation_started",  # the participant took the presentation floor (data: content, since)
    "presentation_stopped",  # the participant's presentation ended (data: reason, rooms/floor.py)
    "presenters_changed",  # who may present (data: presenters: everyone or hosts)
    "chat_message",  # a chat message to everyone in the meeting (data: message; browsers only, never published)
    "chat_removed",  # a host removed a chat message (data: id)
    "chat_changed",  # a host turned the chat on or off (data: enabled)
    "recording_started",  # the meeting is recorded from now on (by: who started it)
    "recording_stopped",  # ... no longer (by: who stopped it; data: reason when it failed)
    "streaming_started",  # the meeting is streamed live from now on
    "streaming_stopped",  # ... no longer (data: reason when it failed)
    "streaming_interrupted",  # the live stream lost its server and reconnects (data: reason)
    "streaming_resumed",  # ... it is back
    "call_record_written",  # the gateway's own: a participant's call record was stored
]


@dataclass(frozen=True)
class RoomEvent:
    type: EventType
    room: str
    participant: str | None = None
    by: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "room": self.room,
            "participant": self.participant,
            "by": self.by,
            "data": self.data,
            "at": self.at,
        }
