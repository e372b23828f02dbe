"""RFC 4028 session timers, the negotiation part (pure functions; the user agent core runs the
timers). Carriers require them: a call whose BYE was lost (a dead phone, a NAT that forgot us)
would otherwise hold a room's seat and a mixer slot for ever.

A session timer is negotiated per INVITE or UPDATE transaction: the request names an interval
(`Session-Expires: 1800;refresher=uac`) and its lower bound (`Min-SE`), the 2xx names the interval
and who refreshes. Who refreshes is said relative to that transaction (`uac`: whoever sent the
request), so here it is turned into `we_refresh` at once. The refresher sends a refresh (UPDATE, or a
re-INVITE with the same SDP) half-way through the interval; the other side ends the call with a
BYE when no refresh came by `interval - min(32, interval / 3)` (RFC 4028 10).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.sip import message as sipmsg
from gateway.sip.message import SipMessage, SipMessageError

MIN_SE = 90  # RFC 4028 4: the smallest interval anyone may ask for
MAX_SE = 86_400  # longer asks are taken as a day (a bound on what a peer makes us hold)


@dataclass(frozen=True)
class SessionTimer:
    interval: int  # seconds
    we_refresh: bool

    @property
    def refresh_after(self) -> float:
        """When the refresher sends its refresh (RFC 4028 7.4, 9: half the interval)."""
        return self.interval / 2

    @property
    def expires_after(self) -> float:
        """When the other side gives up on a refresh (RFC 4028 10)."""
        return self.interval - min(32, self.interval / 3)


@dataclass(frozen=True)
class TooBrief:
    """The request's interval is under our Min-SE: answer 422 with `Min-SE: min_se`."""

    min_se: int


def supports_timer(msg: SipMessage) -> bool:
    return "timer" in _tags(msg.get("supported")) or "timer" in _tags(msg.get("require"))


def session_expires(msg: SipMessage) -> tuple[int, str | None] | None:
    """(interval, refresher or None) of a Session-Expires header (compact `x`); None without one.
    Raises SipMessageError for one we cannot read."""
    value = msg.get("session-expires")
    if value is None:
        return None
    head, *params = value.split(";")
    interval = sipmsg.ascii_int(head.strip(), 10)
    if interval is None or interval < 1:
        raise SipMessageError("bad Session-Expires")
    refresher = None
    for param in params:
        key, _, val = param.strip().partition("=")
        if key.strip().lower() == "refresher":
            refresher = val.strip().lower()
            if refresher not in ("uac", "uas"):
                raise SipMessageError("bad Session-Expires refresher")
    return min(interval, MAX_SE), refresher


def min_se(msg: SipMessage) -> int:
    """The Min-SE of a request or a 422 (RFC 4028 5; MIN_SE when absent or unreadable)."""
    value = (msg.get("min-se") or "").split(";")[0].strip()
    found = sipmsg.ascii_int(value, 10) if value else None
    return max(MIN_SE, min(found, MAX_SE)) if found is not None else MIN_SE


def as_uas(request: SipMessage, our_min_se: int) -> SessionTimer | TooBrief | None:
    """What we answer an INVITE or UPDATE (RFC 4028 9): None (no session timer: the request asked
    for none), TooBrief (422), or the timer our 2xx confirms. Without a refresher named we leave the
    refreshing to the caller when it can (`uac`), else do it ourselves."""
    asked = session_expires(request)
    if asked is None:
        return None
    interval, refresher = asked
    if interval < our_min_se:
        return TooBrief(max(our_min_se, min_se(request)))
    if refresher is None:
        refresher = "uac" if supports_timer(request) else "uas"
    return SessionTimer(interval, we_refresh=refresher == "uas")


def uas_headers(request: SipMessage, timer: SessionTimer) -> list[tuple[str, str]]:
    """The 2xx's Session-Expires (and Require: timer when the requester supports it, RFC 4028 9)."""
    refresher = "uas" if timer.we_refresh else "uac"
    headers = [("session-expires", f"{timer.interval};refresher={refresher}")]
    if supports_timer(request):
        headers.append(("require", "timer"))
    return headers


def as_uac(response: SipMessage) -> SessionTimer | None:
    """The timer a 2xx to our INVITE or UPDATE sets (RFC 4028 7.2): none without Session-Expires;
    we refresh when it says `uac`, or when the far end does not do timers (no Require: timer: a
    proxy on the way asked for it, and only we can keep it)."""
    found = session_expires(response)
    if found is None:
        return None
    interval, refresher = found
    if "timer" not in _tags(response.get("require")):
        return SessionTimer(max(interval, MIN_SE), we_refresh=True)
    return SessionTimer(max(interval, MIN_SE), we_refresh=refresher != "uas")


def uac_headers(interval: int, we_refresh: bool | None, our_min_se: int) -> list[tuple[str, str]]:
    """A request's Session-Expires and Min-SE (the refresher named when we know who it is)."""
    refresher = "" if we_refresh is None else ";refresher=" + ("uac" if we_refresh else "uas")
    return [("session-expires", f"{interval}{refresher}"), ("min-se", str(our_min_se))]


def _tags(value: str | None) -> list[str]:
    return [t.strip().lower() for t in (value or "").split(",") if t.strip()]
