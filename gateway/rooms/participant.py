"""A participant of a room: identity, role and the state hosts and the participant control."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any


class Role(enum.StrEnum):
    HOST = "host"
    GUEST = "guest"


class LegKind(enum.StrEnum):
    BROWSER = "browser"
    SIP_ROOM_SYSTEM = "sip_room_system"
    PHONE = "phone"
    H323_ROOM_SYSTEM = "h323_room_system"


@dataclass
class Participant:
    id: str
    name: str
    role: Role
    kind: LegKind
    joined_at: float
    # Two mute sources, so a host can never open a microphone its owner closed.
    self_muted: bool = False
    host_muted: bool = False
    self_unmute_forbidden: bool = False
    hand_raised: bool = False
    video_off: bool = False
    speaking: bool = False
    connected: bool = True  # False while its connection is lost and its place is kept for a reconnect
    quality: str | None = None  # its connection: good, fair or poor (rooms/quality.py); None while unknown
    source: str | None = None  # where it came from (an address, a number): recognises a returner
    # A caller's whole number (E.164): for hosts and administrators only, never the room's view
    number: str | None = None
    # The room's own room system calling it, or one a host or administrator called in: may present
    # where only hosts and trusted room systems may
    trusted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def audio_muted(self) -> bool:
        """Whether the mixer must drop this participant's audio."""
        return self.self_muted or self.host_muted

    @property
    def is_host(self) -> bool:
        return self.role is Role.HOST

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "kind": self.kind.value,
            "muted": self.audio_muted,
            "self_muted": self.self_muted,
            "host_muted": self.host_muted,
            "self_unmute_forbidden": self.self_unmute_forbidden,
            "hand_raised": self.hand_raised,
            "video_off": self.video_off,
            "speaking": self.speaking,
            "connected": self.connected,
            "quality": self.quality,
            "joined_at": self.joined_at,
        }


@dataclass(frozen=True)
class MirrorState:
    """What another node of the cluster shows of a participant it serves (rooms' `add_mirror`)."""

    id: str
    name: str
    role: Role
    kind: LegKind
    joined_at: float
    self_muted: bool = False
    host_muted: bool = False
    self_unmute_forbidden: bool = False
    hand_raised: bool = False
    video_off: bool = False
    speaking: bool = False
    connected: bool = True
    quality: str | None = None

    @classmethod
    def of(cls, p: Participant) -> MirrorState:
        return cls(**{f.name: getattr(p, f.name) for f in dataclasses.fields(cls)})
