"""Why a call or a browser session ended (or was never let in), as neutral codes.

Each protocol maps an Ending to its own terms in one table: `gateway/sip/endings.py` (a SIP status
and the Reason header's text), `gateway/webrtc/signalling.py` (the `ended` message's reason), later
a Q.931 cause for H.323. The values are the room's refusal codes (JoinRefused.code) and the reasons
a room hangs a leg up with (Leg.hang_up), so that those convert with `ending_for`.
"""

from __future__ import annotations

import enum

from gateway.calls.prompts import Prompt


class Ending(enum.StrEnum):
    ROOM_NOT_FOUND = "unknown_room"
    WRONG_PIN = "wrong_pin"  # (a phone: after the last attempt the menu allows)
    LOCKED_OUT = "locked_out"  # too many wrong PINs from the source, or for the room
    LOCKED = "locked"
    FULL = "full"
    DENIED_FROM_LOBBY = "denied"
    REMOVED = "removed"
    MEETING_ENDED = "meeting_ended"
    SHUTDOWN = "shutdown"  # the gateway stops
    OVERLOADED = "overloaded"  # admission control: no new participants for now
    OUTSIDE_HOURS = "closed"  # outside the room's opening hours
    RATE_LIMITED = "rate_limited"  # too many joins or calls from one address
    BAD_HOST_LINK = "bad_host_link"
    SIGN_IN_ENDED = "sign_in_ended"  # a browser joined with a sign-in that has ended (or never was)
    LEFT = "left"  # the participant left
    NO_ENTRY = "no_entry"  # nothing typed at the voice menu
    MEDIA_TIMEOUT = "media_timeout"  # no media from the caller: gone without a goodbye
    ADMITTED_BUT_GONE = "admitted_but_gone"  # admitted from the lobby, but no longer in the room
    INTERNAL_ERROR = "internal_error"


# What a caller hears before the call ends (callers with a voice: phones, room systems).
PROMPTS: dict[Ending, Prompt] = {
    Ending.ROOM_NOT_FOUND: Prompt.MEETING_ENDED,  # (the menu says "too many attempts" instead)
    Ending.WRONG_PIN: Prompt.TOO_MANY_ATTEMPTS,
    Ending.LOCKED_OUT: Prompt.TOO_MANY_ATTEMPTS,
    Ending.LOCKED: Prompt.MEETING_LOCKED,
    Ending.FULL: Prompt.MEETING_FULL,
    Ending.DENIED_FROM_LOBBY: Prompt.DENIED,
    Ending.REMOVED: Prompt.REMOVED,
    Ending.MEETING_ENDED: Prompt.MEETING_ENDED,
    Ending.SHUTDOWN: Prompt.SHUTTING_DOWN,
    Ending.OVERLOADED: Prompt.GOODBYE,
    Ending.OUTSIDE_HOURS: Prompt.CLOSED,
    Ending.RATE_LIMITED: Prompt.GOODBYE,
    Ending.BAD_HOST_LINK: Prompt.GOODBYE,
    Ending.SIGN_IN_ENDED: Prompt.GOODBYE,
    Ending.LEFT: Prompt.GOODBYE,
    Ending.NO_ENTRY: Prompt.GOODBYE,
    Ending.MEDIA_TIMEOUT: Prompt.GOODBYE,
    Ending.ADMITTED_BUT_GONE: Prompt.GOODBYE,
    Ending.INTERNAL_ERROR: Prompt.GOODBYE,
}


def ending_for(code: str, default: Ending = Ending.MEETING_ENDED) -> Ending:
    """The Ending of a room's code (a JoinRefused code, a hang-up reason); `default` for others."""
    try:
        return Ending(code)
    except ValueError:
        return default
