"""Numbers from a trunk in E.164, and the called party read from the headers a trunk fills."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.calls.numbers import to_e164
from gateway.sip import message


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("030901820", "+4930901820"),  # national
        ("030 90 18-20", "+4930901820"),  # with separators
        ("(030) 901820", "+4930901820"),
        ("004930901820", "+4930901820"),  # international
        ("+4930901820", "+4930901820"),
        ("0043 1 234567", "+431234567"),  # Austria, dialled from Germany
        ("4711", "4711"),  # an extension, a room alias: as it came
        ("110", "110"),  # a service number
        ("0", "0"),
        ("00", "00"),
        ("+", "+"),
        ("+0301234", "+0301234"),  # no country code starts with 0: left alone
        ("+4930901820123456789", "+4930901820123456789"),  # longer than E.164: left alone
        ("demo", "demo"),
        ("０３０９０１８２０", "０３０９０１８２０"),  # full-width digits are not digits here
    ],
)
def test_german_trunk_numbers(number: str, expected: str) -> None:
    assert to_e164(number) == expected


def test_other_numbering_plans() -> None:
    assert to_e164("0612345678", country_code="31") == "+31612345678"  # the Netherlands
    assert to_e164("011441234567890", country_code="1", national_prefix="1", international_prefix="011") == "+441234567890"


@given(st.text(max_size=40))
def test_any_text_gives_a_string_e164_or_itself_without_separators(text: str) -> None:
    result = to_e164(text)
    assert isinstance(result, str)
    assert (result.startswith("+") and result[1:].isdigit() and len(result) <= 16) or " " not in result


def invite_with(*headers: str) -> message.Invite:
    lines = [
        "INVITE sip:trunk-contact@198.51.100.1 SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx",
        "From: <sip:+4917012345@carrier.example>;tag=1",
        "Call-ID: c1",
        "CSeq: 1 INVITE",
        "Max-Forwards: 70",
        *headers,
    ]
    return message.parse_invite(message.parse(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()))


def test_the_called_party_as_to_p_called_party_id_and_diversion_name_it() -> None:
    invite = invite_with(
        "To: <sip:030901820@carrier.example>",
        "P-Called-Party-ID: <tel:+4930901820>",
        "Diversion: <sip:0309018299@carrier.example>;reason=unconditional, <sip:030901820@carrier.example>;reason=no-answer",
    )
    assert (invite.user, invite.to_user, invite.called_party, invite.diverted_from) == (
        "trunk-contact", "030901820", "+4930901820", "030901820",
    )  # fmt: skip
    bare = invite_with("To: <sip:x@y>", "P-Called-Party-ID: not an address", "Diversion: <mailto:a@b>")
    assert (bare.called_party, bare.diverted_from) == ("", "")
