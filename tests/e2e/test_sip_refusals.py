"""Calls refused with the right SIP status and reason (404, 403, 486), the PIN lockout of a source
that keeps guessing, and the voice menu that asks for the conference number. Scenarios are written
here from two templates; sipp checks each message. What a refused caller hears is checked in its
audio: the shipped prompt found there by cross-correlation (tests/support/prompts.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import scenarios as sc
from tests.support.gateway import (
    TEST_CONFIG,
    RunningGateway,
    logged,
    mentions,
    participants,
    start_gateway,
    stop_and_check,
    wait_until,
)
from tests.support.prompts import Phone, assert_heard, assert_not_heard, phones
from tests.support.sipp import Sipp


def refused(status: int, reason: str) -> str:
    """INVITE answered `status` with `reason` in the reason phrase, then ACK."""
    why = sc.check("why", f"SIP/2.0 {status} {reason}")
    return sc.scenario(f"refused {status}", sc.invite(), sc.answer(status, why), sc.ack(), checked=["why"])


def answered_then_bye(cause: int, text: str | None = None, timeout_ms: int = 15000) -> str:
    """INVITE answered 200, ACK, no RTP, then the gateway's BYE whose Reason says `cause` (and
    `text`), awaited and answered."""
    checks = sc.check("cause", f"SIP;cause={cause}", "Reason")
    names = ["cause"]
    if text is not None:
        checks += sc.check("text", f"text=.{text}.", "Reason")
        names.append("text")
    return sc.scenario(
        f"answered, then BYE {cause}", sc.invite(), sc.answer(200), sc.ack(), sc.their_bye(timeout_ms, checks), checked=names
    )


def keys_then_bye(keys: list[tuple[str, int]], stay_ms: int = 3000) -> str:
    """INVITE, 200, ACK, each key by SIP INFO followed by its pause (ms), `stay_ms` in the call, BYE."""
    pressed = [sc.key(digit, n, pause) for n, (digit, pause) in enumerate(keys, start=2)]
    return sc.scenario(
        "keys", sc.invite(), sc.answer(200), sc.ack(), sc.pause(800), *pressed, sc.pause(stay_ms), sc.bye(len(keys) + 2)
    )


def run(gateway: RunningGateway, directory: Path, xml: str, service: str) -> Sipp:
    directory.mkdir(parents=True, exist_ok=True)
    scenario = directory / "scenario.xml"
    scenario.write_text(xml)
    sipp = Sipp(gateway, directory, str(scenario), service)  # (an absolute path wins over tests/sipp/)
    result = sipp.wait()
    assert result.returncode == 0, result.describe()
    return sipp


@pytest.fixture
def strict_gateway(tmp_path: Path) -> Iterator[RunningGateway]:
    """No voice menu, a locked room without host PIN, and a lockout after three wrong PINs."""
    config = (
        TEST_CONFIG.replace("sip: {host: 127.0.0.1, port: 0,", "sip: {host: 127.0.0.1, port: 0, menu: false,")
        + '  - {id: closed, locked: true}\nsecurity: {pin_max_failures: 3, pin_lockout_s: 600}\n'
    )
    running = start_gateway(tmp_path, config)
    yield running
    stop_and_check(running)


def test_unknown_number_without_menu_locked_room_and_full_room_are_refused(
    strict_gateway: RunningGateway, tmp_path: Path
) -> None:
    run(strict_gateway, tmp_path / "unknown", refused(404, "Unknown conference"), "999")
    run(strict_gateway, tmp_path / "locked", refused(403, "Meeting locked"), "closed")
    # `small` takes two: two callers join (bare # at the PIN prompt), the third is refused with 486.
    first = Sipp(strict_gateway, tmp_path / "one", str(_write(tmp_path / "one", keys_then_bye([("#", 500)], 8000))), "small")
    second = Sipp(strict_gateway, tmp_path / "two", str(_write(tmp_path / "two", keys_then_bye([("#", 500)], 8000))), "small")
    wait_until(lambda: len(strict_gateway.api("GET", "/api/rooms/small/participants").json()) == 2, 15, what="two in")
    run(strict_gateway, tmp_path / "full", refused(486, "Meeting full"), "small")
    for sipp in (first, second):
        result = sipp.wait()
        assert result.returncode == 0, result.describe()
    refusals = [line for line in strict_gateway.log_lines() if line.get("event") == "call refused"]
    assert [line["status"] for line in refusals] == [404, 403, 486]


def test_a_source_that_keeps_guessing_pins_is_locked_out_and_logged(strict_gateway: RunningGateway, tmp_path: Path) -> None:
    wrong = [("1", 200), ("1", 200), ("1", 200), ("1", 200), ("#", 1200)]
    run(strict_gateway, tmp_path / "guess1", keys_then_bye(wrong * 2, 500), "secret")
    run(strict_gateway, tmp_path / "guess2", keys_then_bye(wrong, 500), "secret")
    assert len(logged(strict_gateway, "wrong PIN")) == 3
    assert logged(strict_gateway, "wrong PIN", now_locked_out=True)
    # Now even the right PIN does not help from this address: the caller hears why, then a BYE 403.
    run(strict_gateway, tmp_path / "locked-out", answered_then_bye(403, "Too many wrong PINs"), "secret")
    assert logged(strict_gateway, "call refused: source locked out after wrong PINs")
    with phones() as made:  # what it hears: the reason in words, never the PIN prompt
        again = Phone(strict_gateway, "127.0.0.1")
        made.append(again)
        assert again.call("secret").status == 200
        bye = again.caller.bye_from_gateway(again.dialog, 20)  # type: ignore[arg-type]
        assert "cause=403" in bye.headers["reason"][0]
        assert_heard(*again.recording(), "too_many_attempts")
        assert_not_heard(*again.recording(), "welcome", "enter_pin")
    # Other rooms are not affected.
    run(strict_gateway, tmp_path / "other", keys_then_bye([("#", 1000)], 500), "demo")


def test_the_menu_asks_for_the_conference_number(gateway: RunningGateway, tmp_path: Path) -> None:
    """An unknown number: the caller types the conference number, then # as a guest, and joins."""
    keys = [("9", 200), ("9", 200), ("#", 1500)] + [("4", 200), ("7", 200), ("1", 200), ("1", 200), ("#", 1500)]
    sipp = Sipp(gateway, tmp_path / "menu", str(_write(tmp_path / "menu", keys_then_bye(keys + [("#", 500)], 4000))), "0800")
    (member,) = wait_until(lambda: participants(gateway, "demo"), 30, what="the caller in demo")  # type: ignore[misc]
    assert member["kind"] == "phone" and member["role"] == "guest", member
    result = sipp.wait()
    assert result.returncode == 0, result.describe()
    entered = [(line["found"], line["room"]) for line in logged(gateway, "conference number entered")]
    assert entered == [(False, None), (True, "demo")]
    assert not any(mentions(line, "4711") for line in logged(gateway, "conference number entered")), "typed digits logged"
    joined = logged(gateway, "joined meeting")
    assert joined[0]["room"] == "demo" and joined[0]["kind"] == "phone"


def _write(directory: Path, xml: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "scenario.xml"
    path.write_text(xml)
    return path


def test_a_caller_gone_without_bye_is_ended_after_the_media_timeout(tmp_path: Path) -> None:
    config = TEST_CONFIG.replace("sip: {host: 127.0.0.1, port: 0,", "sip: {host: 127.0.0.1, port: 0, media_timeout_s: 5,")
    gateway = start_gateway(tmp_path, config)
    try:
        run(gateway, tmp_path / "silent", answered_then_bye(408, timeout_ms=20000), "demo")  # and no RTP at all
        ended = logged(gateway, "no media from the caller; ending the call")
        assert ended and 5 <= float(str(ended[0]["silent_s"])) < 12
    finally:
        stop_and_check(gateway)


def test_what_refused_callers_hear(gateway: RunningGateway) -> None:
    """The refusals a caller is answered for, heard (the shipped prompt found in the caller's audio):
    an unknown conference number, a wrong PIN, a locked meeting, a full one, an ended one."""
    with phones() as made:
        menu, guesser, late, first, second, third = (Phone(gateway, f"127.0.0.{n}") for n in range(2, 8))
        made += [menu, guesser, late, first, second, third]

        # A number that names no room: the menu asks for the conference number; a wrong one is named as such.
        assert menu.call("0800").status == 200
        menu.wait_to_hear("enter_conference")
        menu.keys("99#")
        menu.wait_to_hear("unknown_conference")
        assert_heard(*menu.recording(), "welcome", "enter_conference", "unknown_conference")

        # A wrong PIN: said so, and asked again; not let in.
        assert guesser.call("secret").status == 200
        guesser.wait_to_hear("enter_pin")
        assert_heard(*guesser.recording(), "welcome", "enter_pin")
        guesser.keys("1111#")
        guesser.wait_to_hear("wrong_pin")
        assert participants(gateway, "secret") == []

        # `small` takes two: three callers wait at the PIN prompt, two join, the third hears it is full.
        for phone in (first, second, third):
            assert phone.call("small").status == 200
        for phone in (first, second, third):
            phone.wait_to_hear("enter_pin_optional")
        first.keys("#")
        second.keys("#")
        wait_until(lambda: len(participants(gateway, "small")) == 2, 15, what="two in `small`")
        third.keys("#")
        bye = third.caller.bye_from_gateway(third.dialog, 20)  # type: ignore[arg-type]
        assert "cause=486" in bye.headers["reason"][0]
        assert_heard(*third.recording(), "enter_pin_optional", "meeting_full")

        # A locked meeting that has a host PIN answers (a host could open it); a guest hears it is locked.
        assert gateway.api("POST", "/api/rooms/demo/lock").status_code == 200
        assert late.call("demo").status == 200
        late.wait_to_hear("enter_pin_optional")
        late.keys("#")
        bye = late.caller.bye_from_gateway(late.dialog, 20)  # type: ignore[arg-type]
        assert "cause=403" in bye.headers["reason"][0]
        assert_heard(*late.recording(), "enter_pin_optional", "meeting_locked")
        assert_not_heard(*late.recording(), "joined")

        # The meeting ended by the administrator: those in it hear so before the BYE.
        first.wait_to_hear("joined")
        assert gateway.api("POST", "/api/rooms/small/end").status_code == 200
        first.caller.bye_from_gateway(first.dialog, 20)  # type: ignore[arg-type]
        assert_heard(*first.recording(), "joined", "meeting_ended")
        assert_not_heard(*first.recording(), "meeting_full", "meeting_locked")


