"""The voice menu and the SIP message helpers, sans-IO: keys, timeouts and room answers in, actions out."""

from __future__ import annotations

import pytest

from gateway.sip import message
from gateway.sip.ivr import End, EntryFlow, FindRoom, Join, RoomInfo, Say, StopSaying
from gateway.sip.prompts import Prompt, PromptLibrary
from gateway.transcode.audio import AudioCodec, AudioFormat

SECRET = RoomInfo("secret", "de", host_pin=True, guest_pin=True)
DEMO = RoomInfo("demo", "en", host_pin=True, guest_pin=False)
OPEN = RoomInfo("open", "en", host_pin=False, guest_pin=False)


def keys(flow: EntryFlow, typed: str, now: float = 0.0) -> list[object]:
    actions: list[object] = []
    for key in typed:
        actions += flow.digit(key, now)
    return actions


def test_known_room_with_pins_asks_for_the_pin_in_the_rooms_language() -> None:
    flow = EntryFlow("en")
    assert flow.start(SECRET, 0.0) == [Say((Prompt.WELCOME, Prompt.ENTER_PIN), "de")]
    actions = keys(flow, "5555#")
    assert actions == [StopSaying(), Join("secret", "5555")]


def test_open_room_joins_at_once_and_host_pin_only_room_takes_a_bare_hash() -> None:
    flow = EntryFlow("de")
    assert flow.start(OPEN, 0.0) == [Say((Prompt.WELCOME,), "en"), Join("open", None)]
    flow = EntryFlow("de")
    assert flow.start(DEMO, 0.0) == [Say((Prompt.WELCOME, Prompt.ENTER_PIN_OPTIONAL), "en")]
    assert keys(flow, "#") == [StopSaying(), Join("demo", None)]


def test_no_key_after_the_prompt_joins_a_guest_where_guests_need_no_pin() -> None:
    flow = EntryFlow("en", entry_timeout_s=10)
    flow.start(DEMO, 0.0)
    flow.prompt_finished(5.0)
    assert flow.deadline == 15.0
    assert flow.timeout(14.9) == []
    assert flow.timeout(15.0) == [Join("demo", None)]


def test_digits_end_by_timeout_as_well_as_by_hash() -> None:
    flow = EntryFlow("en", digit_timeout_s=3)
    flow.start(SECRET, 0.0)
    flow.prompt_finished(4.0)
    keys(flow, "12", now=5.0)
    assert flow.deadline == 8.0
    assert flow.timeout(8.0) == [Join("secret", "12")]


def test_three_wrong_pins_end_the_call_with_403() -> None:
    flow = EntryFlow("en", attempts=3)
    flow.start(SECRET, 0.0)
    keys(flow, "1#")
    assert flow.wrong_pin(1.0) == [Say((Prompt.WRONG_PIN, Prompt.ENTER_PIN), "de")]
    keys(flow, "2#")
    assert flow.wrong_pin(2.0) == [Say((Prompt.WRONG_PIN, Prompt.ENTER_PIN), "de")]
    keys(flow, "3#")
    assert flow.wrong_pin(3.0) == [End(Prompt.TOO_MANY_ATTEMPTS, "de", 403, "Wrong PIN")]
    assert flow.digit("4", 4.0) == []  # over


def test_menu_asks_for_the_conference_number_and_retries_unknown_ones() -> None:
    flow = EntryFlow("de", attempts=2)
    assert flow.start(None, 0.0) == [Say((Prompt.WELCOME, Prompt.ENTER_CONFERENCE), "de")]
    assert keys(flow, "#") == [StopSaying(), Say((Prompt.ENTER_CONFERENCE,), "de")]  # empty: ask again
    assert keys(flow, "999#") == [StopSaying(), FindRoom("999")]
    assert flow.room_found(None, 1.0) == [Say((Prompt.UNKNOWN_CONFERENCE, Prompt.ENTER_CONFERENCE), "de")]
    assert keys(flow, "4711#") == [StopSaying(), FindRoom("4711")]
    assert flow.room_found(DEMO, 2.0) == [Say((Prompt.ENTER_PIN_OPTIONAL,), "en")]  # the room's language now
    flow = EntryFlow("de", attempts=2)
    flow.start(None, 0.0)
    keys(flow, "1#")
    flow.room_found(None, 1.0)
    keys(flow, "2#")
    assert flow.room_found(None, 2.0) == [End(Prompt.TOO_MANY_ATTEMPTS, "de", 404, "Unknown conference")]


def test_silence_repeats_the_question_then_hangs_up() -> None:
    flow = EntryFlow("en", attempts=2, entry_timeout_s=5)
    flow.start(SECRET, 0.0)
    flow.prompt_finished(3.0)
    assert flow.timeout(8.0) == [Say((Prompt.ENTER_PIN,), "de")]
    flow.prompt_finished(10.0)
    assert flow.timeout(15.0) == [End(Prompt.GOODBYE, "de", 408, "No entry")]


INVITE = (
    "INVITE sip:4711@gw.example;user=phone SIP/2.0\r\n"
    "Via: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK1\r\n"
    'f: "M\\"uller, Anna" <sip:+4930123@carrier.example>;tag=1\r\n'
    "To: <sip:4711@gw.example>\r\n"
    "Call-ID: a@b\r\n"
    "CSeq: 1 INVITE\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 5\r\n"
    "\r\n"
    "v=0\r\n"
)


def test_invite_gives_the_dialled_alias_the_callers_name_and_number() -> None:
    invite = message.parse_invite(message.parse(INVITE.encode()))
    assert invite.user == "4711"
    assert invite.display_name == 'M"uller, Anna'
    assert invite.from_user == "+4930123"
    assert invite.transport == "tcp"
    assert invite.sdp == "v=0\r\n"
    tel = INVITE.replace("sip:4711@gw.example;user=phone", "tel:%2B4930999")
    assert message.parse_invite(message.parse(tel.encode())).user == "+4930999"


HEADERS = "Via: SIP/2.0/UDP h;branch=z9hG4bK2\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"


@pytest.mark.parametrize(
    "text, reason",
    [
        ("INVITE sip:x@y\r\n" + HEADERS + "\r\n", "malformed request line"),
        ("INVITE sip:x@y SIP/2.0\r\n" + HEADERS.replace("From: <sip:a@b>;tag=1\r\n", "") + "\r\n", "missing From"),
        ("INVITE sip:x@y SIP/2.0\r\n" + HEADERS.replace("1 INVITE", "1 BYE") + "\r\n", "bad CSeq"),
        ("INVITE sip:x@y SIP/2.0\r\n" + HEADERS + "Content-Length: 99\r\n\r\nv=0", "shorter than Content-Length"),
        ("INVITE sip:x@y SIP/2.0\r\n" + HEADERS + "no colon here\r\n\r\n", "malformed header line"),
    ],
)
def test_malformed_requests_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(message.SipMessageError, match=reason):
        message.parse(text.encode())


def test_unsupported_uri_scheme_is_refused() -> None:
    text = "INVITE http://x SIP/2.0\r\n" + HEADERS + "\r\n"
    with pytest.raises(message.SipMessageError, match="unsupported URI scheme"):
        message.parse_invite(message.parse(text.encode()))


def test_stream_framing_by_content_length_and_keepalives() -> None:
    one = ("OPTIONS sip:x@y SIP/2.0\r\n" + HEADERS.replace("1 INVITE", "1 OPTIONS") + "Content-Length: 3\r\n\r\nabc").encode()
    framer = message.StreamFramer()
    assert framer.feed(b"\r\n\r\n" + one[:20]) == []
    assert framer.feed(one[20:] + one) == [one, one]
    assert message.parse(one).body == b"abc"
    assert message.parse(one).serialize().endswith(b"Content-Length: 3\r\n\r\nabc")


@pytest.mark.parametrize(
    "content_type, body, digits",
    [
        ("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n", "5"),
        ("application/dtmf-relay", "Signal= *\r\nDuration=160", "*"),
        ("application/dtmf-relay", "Signal=11\r\n", "#"),
        ("application/dtmf-relay", "Signal=X\r\n", None),
        ("application/dtmf", "#", "#"),
        ("application/dtmf", "hello", None),
        ("application/media_control+xml", "<x/>", None),
    ],
)
def test_sip_info_digits(content_type: str, body: str, digits: str | None) -> None:
    headers = HEADERS.replace("1 INVITE", "2 INFO")
    text = f"INFO sip:gw SIP/2.0\r\n{headers}Content-Type: {content_type}\r\n\r\n{body}"
    assert message.info_digits(message.parse(text.encode())) == digits


def test_every_prompt_ships_in_both_languages_and_encodes_for_every_codec() -> None:
    library = PromptLibrary()
    for prompt in Prompt:
        for language in ("de", "en"):
            assert 0.5 < library.duration_s(prompt, language) < 10, (prompt, language)
    for codec in AudioCodec:
        frames = library.frames(Prompt.WELCOME, "de", AudioFormat(codec))
        assert len(frames) == round(library.duration_s(Prompt.WELCOME, "de") * 50)
        assert library.frames(Prompt.WELCOME, "de", AudioFormat(codec)) is frames  # encoded once, shared
    assert library.duration_s("hold_music", "") == pytest.approx(12.0, abs=0.05)


def test_prompt_language_is_the_rooms_or_else_the_sip_default() -> None:
    from gateway.config import parse_config
    from gateway.rooms.directory import Directory
    from gateway.rooms.pinguard import PinGuard
    from gateway.sip.service import SipService

    config = parse_config(
        "sip: {language: de}\nrooms:\n  - {id: rathaus}\n  - {id: council, language: en, host_pin: '1234'}\n"
    )
    directory = Directory(config)
    service = SipService(config, directory, PinGuard(5, 600, 900))
    rathaus, council = directory.find("rathaus"), directory.find("council")
    assert rathaus is not None and council is not None
    assert service.room_info(rathaus) == RoomInfo("rathaus", "de", host_pin=False, guest_pin=False)
    assert service.room_info(council) == RoomInfo("council", "en", host_pin=True, guest_pin=False)
    # and the menu starts in the SIP default language, switching to the room's once it is known
    flow = EntryFlow(config.sip.language)
    assert flow.start(None, 0.0) == [Say((Prompt.WELCOME, Prompt.ENTER_CONFERENCE), "de")]
    flow.digit("1", 1.0)
    flow.digit("#", 1.0)
    assert flow.room_found(service.room_info(council), 2.0) == [Say((Prompt.ENTER_PIN_OPTIONAL,), "en")]
