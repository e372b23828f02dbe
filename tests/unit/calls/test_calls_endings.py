"""Endings: every neutral code has a prompt and a term in each protocol's table, today's terms exactly."""

from __future__ import annotations

import pytest

from gateway.calls.endings import PROMPTS, Ending, ending_for
from gateway.calls.prompts import Prompt
from gateway.sip.endings import STATUS, sip_status
from gateway.webrtc.signalling import ENDED_REASONS, server_ended


def test_every_ending_has_a_prompt_a_sip_status_and_a_page_reason() -> None:
    assert set(PROMPTS) == set(Ending)
    assert set(STATUS) == set(Ending)
    assert set(ENDED_REASONS) == set(Ending)


@pytest.mark.parametrize(
    "ending, status, reason, prompt",
    [
        (Ending.ROOM_NOT_FOUND, 404, "Unknown conference", Prompt.MEETING_ENDED),
        (Ending.WRONG_PIN, 403, "Wrong PIN", Prompt.TOO_MANY_ATTEMPTS),
        (Ending.LOCKED_OUT, 403, "Too many wrong PINs", Prompt.TOO_MANY_ATTEMPTS),
        (Ending.LOCKED, 403, "Meeting locked", Prompt.MEETING_LOCKED),
        (Ending.FULL, 486, "Meeting full", Prompt.MEETING_FULL),
        (Ending.DENIED_FROM_LOBBY, 403, "Not admitted", Prompt.DENIED),
        (Ending.REMOVED, 403, "Removed by the host", Prompt.REMOVED),
        (Ending.MEETING_ENDED, 200, "Meeting ended", Prompt.MEETING_ENDED),
        (Ending.OUTSIDE_HOURS, 480, "Closed (outside the opening hours)", Prompt.CLOSED),
        (Ending.SHUTDOWN, 503, "Gateway shutting down", Prompt.SHUTTING_DOWN),
        (Ending.OVERLOADED, 503, "Service Unavailable (overloaded)", Prompt.GOODBYE),
        (Ending.NO_ENTRY, 408, "No entry", Prompt.GOODBYE),
        (Ending.MEDIA_TIMEOUT, 408, "Media timeout", Prompt.GOODBYE),
        (Ending.ADMITTED_BUT_GONE, 480, "Admitted but gone", Prompt.GOODBYE),
    ],
)
def test_sip_says_each_ending_with_todays_status_and_reason(ending: Ending, status: int, reason: str, prompt: Prompt) -> None:
    assert sip_status(ending) == (status, reason)
    assert PROMPTS[ending] is prompt


@pytest.mark.parametrize(
    "ending, reason",
    [
        (Ending.ROOM_NOT_FOUND, "unknown_room"),
        (Ending.WRONG_PIN, "wrong_pin"),
        (Ending.LOCKED_OUT, "locked_out"),
        (Ending.LOCKED, "locked"),
        (Ending.FULL, "full"),
        (Ending.DENIED_FROM_LOBBY, "denied"),
        (Ending.REMOVED, "removed"),
        (Ending.MEETING_ENDED, "meeting_ended"),
        (Ending.SHUTDOWN, "shutdown"),
        (Ending.OVERLOADED, "overloaded"),
        (Ending.OUTSIDE_HOURS, "closed"),
        (Ending.RATE_LIMITED, "rate_limited"),
        (Ending.BAD_HOST_LINK, "bad_host_link"),
        (Ending.SIGN_IN_ENDED, "sign_in_ended"),
        (Ending.LEFT, "left"),
    ],
)
def test_the_page_is_told_each_ending_with_todays_reason(ending: Ending, reason: str) -> None:
    assert ENDED_REASONS[ending] == reason
    assert server_ended(ENDED_REASONS[ending]) == {"type": "ended", "reason": reason}


def test_room_codes_convert_to_endings() -> None:
    for code in ("wrong_pin", "locked_out", "locked", "full", "denied", "closed", "removed", "meeting_ended", "shutdown"):
        assert ending_for(code).value == code
    assert ending_for("something new") is Ending.MEETING_ENDED
    assert ending_for("something new", Ending.LOCKED) is Ending.LOCKED
