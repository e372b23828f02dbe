"""The neutral endings of gateway.calls in SIP's terms: a status and the text of the Reason header.

A call refused before it is answered gets the status as its final response (`reason` as the
phrase); an answered call hears the ending's prompt, then a BYE whose Reason header names the
status and the text (none for 200: all is well).
"""

from __future__ import annotations

from gateway.calls.endings import Ending

STATUS: dict[Ending, tuple[int, str]] = {
    Ending.ROOM_NOT_FOUND: (404, "Unknown conference"),
    Ending.WRONG_PIN: (403, "Wrong PIN"),
    Ending.LOCKED_OUT: (403, "Too many wrong PINs"),
    Ending.LOCKED: (403, "Meeting locked"),
    Ending.FULL: (486, "Meeting full"),
    Ending.DENIED_FROM_LOBBY: (403, "Not admitted"),
    Ending.REMOVED: (403, "Removed by the host"),
    Ending.MEETING_ENDED: (200, "Meeting ended"),
    Ending.SHUTDOWN: (503, "Gateway shutting down"),
    Ending.OVERLOADED: (503, "Service Unavailable (overloaded)"),
    Ending.OUTSIDE_HOURS: (480, "Closed (outside the opening hours)"),
    Ending.RATE_LIMITED: (486, "Busy Here (too many calls from your address)"),
    Ending.BAD_HOST_LINK: (403, "Host link not valid"),
    Ending.SIGN_IN_ENDED: (403, "Sign-in ended"),
    Ending.LEFT: (200, "Left"),
    Ending.NO_ENTRY: (408, "No entry"),
    Ending.MEDIA_TIMEOUT: (408, "Media timeout"),
    Ending.ADMITTED_BUT_GONE: (480, "Admitted but gone"),
    Ending.INTERNAL_ERROR: (500, "Server Internal Error"),
}


def sip_status(ending: Ending) -> tuple[int, str]:
    """(status, reason text) for `ending`."""
    return STATUS[ending]
