"""SIP URIs read into the directory's typed identities, and dial-out destinations checked and
normalised before any dial-out rule sees them (gateway/sip/uri.py)."""

from __future__ import annotations

import pytest

from gateway.rooms.errors import DialOutRefused
from gateway.rooms.identity import IdentityKind
from gateway.sip.uri import dial_target, sip_identity


def test_sip_and_tel_uris_become_typed_identities() -> None:
    board = sip_identity("sips:Board@[2001:db8::5]:5061;transport=tls")
    assert (board.kind, board.user, board.host) == (IdentityKind.SIP_URI, "Board", "2001:db8::5")
    number = sip_identity("tel:+4930123456;phone-context=example")
    assert (number.kind, number.user, number.host) == (IdentityKind.E164, "+4930123456", None)
    with pytest.raises(ValueError):
        sip_identity("h323:board@10.0.0.5")


def test_a_dial_target_is_normalised_so_rules_see_one_spelling() -> None:
    assert dial_target("SIP:%2B4930123@Carrier.Example:5070;Transport=UDP") == (
        "sip:+4930123@carrier.example:5070;transport=udp", "carrier.example", 5070, "+4930123",
    )
    assert dial_target("sip:board@[2001:db8::5]")[:2] == ("sip:board@[2001:db8::5]", "2001:db8::5")


@pytest.mark.parametrize(
    "uri",
    [
        "tel:+4930123",  # dial-out takes sip: URIs
        "sip:board@10.0.0.5;transport=tcp",  # UDP only for now
        "sip:board@10.0.0.5?Subject=x",  # no header parts
        "sip:bo ard@10.0.0.5",  # no spaces
        "sip:10.0.0.5",  # no user
        "sip:a%40b@10.0.0.5",  # an @ smuggled in by percent-encoding
        "sip:board@10.0.0.5;maddr=192.0.2.1",  # only transport and user parameters
        "sip:" + "x" * 300 + "@10.0.0.5",  # too long
    ],
)
def test_dial_targets_a_rule_must_never_see_are_refused(uri: str) -> None:
    with pytest.raises(DialOutRefused) as refused:
        dial_target(uri)
    assert refused.value.code == "bad_uri"
