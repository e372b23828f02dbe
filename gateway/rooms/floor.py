"""The room's presentation floor, protocol-free: who presents (shows content: a screen, slides),
since when, and who may. One presenter at a time; whoever starts presenting takes the floor from
whoever had it (that one is told: `presentation_stopped` with reason `taken_over`); a host stops
any presentation. BFCP (room systems) and the browsers' screen sharing are ways to ask for it.

Who may present is the room's `presenters` policy: everyone, or hosts and trusted room systems
only (a council session: the chair's laptop and the chamber's own system, not a caller).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Presenters(enum.StrEnum):
    EVERYONE = "everyone"
    HOSTS = "hosts"  # hosts, and trusted room systems (the room's own, or one a host invited)


class Content(enum.StrEnum):
    SCREEN = "screen"  # a browser's shared screen or window
    SLIDES = "slides"  # a room system's content line (RFC 4796 a=content:slides)


class StopReason(enum.StrEnum):
    STOPPED = "stopped"  # the presenter stopped
    TAKEN_OVER = "taken_over"  # another participant started presenting
    STOPPED_BY_HOST = "stopped_by_host"
    STOPPED_BY_OPERATOR = "stopped_by_operator"  # the API or MQTT (an administrator, an operator)
    LEFT = "left"  # the presenter left or was removed
    NOT_ALLOWED = "not_allowed"  # the room's policy changed: the presenter may no longer present
    MEETING_ENDED = "meeting_ended"


@dataclass(frozen=True)
class Presentation:
    presenter: str  # participant id
    since: float  # wall clock
    content: Content

    def public(self) -> dict[str, Any]:
        return {"presenter": self.presenter, "since": self.since, "content": self.content.value}
