"""SIP's side of the voice menu, sans-IO: the INVITE's dialled alias and caller, the digits of SIP
INFO, and the menu's language from the SIP settings. The menu itself, its prompts and endings are
tested in tests/unit/calls/."""

from __future__ import annotations

import pytest

from gateway.calls.menu import EntryFlow, RoomInfo, Say
from gateway.calls.prompts import Prompt
from gateway.sip import message

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
    assert service.context.room_info(rathaus) == RoomInfo("rathaus", "de", host_pin=False, guest_pin=False)
    assert service.context.room_info(council) == RoomInfo("council", "en", host_pin=True, guest_pin=False)
    # and the menu starts in the SIP default language, switching to the room's once it is known
    flow = EntryFlow(config.sip.language)
    assert flow.start(None, 0.0) == [Say((Prompt.WELCOME, Prompt.ENTER_CONFERENCE), "de")]
    flow.digit("1", 1.0)
    flow.digit("#", 1.0)
    assert flow.room_found(service.context.room_info(council), 2.0) == [Say((Prompt.ENTER_PIN_OPTIONAL,), "en")]
