"""Why a room refused something; each carries a stable machine-readable code for every protocol."""

from __future__ import annotations


class RoomError(Exception):
    code = "room_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class JoinRefused(RoomError):
    """Codes: wrong_pin, locked, full, ended, denied, closed (outside the opening hours)."""

    code = "join_refused"


class NotAllowed(RoomError):
    """The actor lacks the role, or a host forbade it (code self_unmute_forbidden)."""

    code = "not_allowed"


class UnknownParticipant(RoomError):
    code = "unknown_participant"


class DialOutRefused(RoomError):
    """A call the room will not place (no rule allows the destination, a bad address, no SIP)."""

    code = "dial_out_refused"
