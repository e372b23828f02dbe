"""The neutral endings of gateway.calls in H.323's terms: a Q.850 cause in the ReleaseComplete's
Cause element, H.225.0's ReleaseCompleteReason where it says more, and a text for the log.

A call refused before it is answered gets its ReleaseComplete at once; an answered call hears the
ending's prompt, then endSessionCommand (H.245) and the ReleaseComplete.
"""

from __future__ import annotations

from gateway.calls.endings import Ending
from gateway.h323.call import Cause

# ending: (cause, ReleaseCompleteReason or None, text)
CAUSES: dict[Ending, tuple[int, str | None, str]] = {
    Ending.ROOM_NOT_FOUND: (1, "unreachableDestination", "Unknown conference"),  # unallocated number
    Ending.WRONG_PIN: (Cause.CALL_REJECTED, "destinationRejection", "Wrong PIN"),
    Ending.LOCKED_OUT: (Cause.CALL_REJECTED, "securityDenied", "Too many wrong PINs"),
    Ending.LOCKED: (Cause.CALL_REJECTED, "destinationRejection", "Meeting locked"),
    Ending.FULL: (Cause.USER_BUSY, "inConf", "Meeting full"),
    Ending.DENIED_FROM_LOBBY: (Cause.CALL_REJECTED, "destinationRejection", "Not admitted"),
    Ending.REMOVED: (Cause.CALL_REJECTED, "destinationRejection", "Removed by the host"),
    Ending.MEETING_ENDED: (Cause.NORMAL, None, "Meeting ended"),
    Ending.SHUTDOWN: (Cause.TEMPORARY_FAILURE, "gatewayResources", "Gateway shutting down"),
    Ending.OVERLOADED: (Cause.CONGESTION, "gatewayResources", "Overloaded"),
    Ending.OUTSIDE_HOURS: (Cause.NO_ANSWER, "destinationRejection", "Closed (outside the opening hours)"),
    Ending.RATE_LIMITED: (Cause.USER_BUSY, "adaptiveBusy", "Too many calls from your address"),
    Ending.BAD_HOST_LINK: (Cause.CALL_REJECTED, "destinationRejection", "Host link not valid"),
    Ending.SIGN_IN_ENDED: (Cause.CALL_REJECTED, "destinationRejection", "Sign-in ended"),
    Ending.LEFT: (Cause.NORMAL, None, "Left"),
    Ending.NO_ENTRY: (Cause.NO_USER_RESPONDING, None, "No entry"),
    Ending.MEDIA_TIMEOUT: (Cause.TIMER_EXPIRY, None, "Media timeout"),
    Ending.ADMITTED_BUT_GONE: (Cause.TEMPORARY_FAILURE, None, "Admitted but gone"),
    Ending.INTERNAL_ERROR: (Cause.TEMPORARY_FAILURE, "undefinedReason", "Internal error"),
}


def q931_cause(ending: Ending) -> tuple[int, str | None, str]:
    """(Q.850 cause, ReleaseCompleteReason or None, text) for `ending`."""
    return CAUSES[ending]
