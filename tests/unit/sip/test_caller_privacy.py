"""Caller privacy (RFC 3323 / 3325): which number a call has, whether it is withheld, and the name
the room shows for it."""

from __future__ import annotations

from gateway.config import TrunkConfig
from gateway.sip.service import caller_number, masked, shown_name
from gateway.sip.useragent import IncomingCall

TRUNK = TrunkConfig(id="t", registrar="127.0.0.1", user="gw", registers=False)


def call(from_user: str = "+4917012345678", display: str = "", privacy: tuple[str, ...] = (), asserted: str = "") -> IncomingCall:
    return IncomingCall(1, "c", "4711", display, from_user, "192.0.2.1", "udp", None, privacy=privacy, asserted_user=asserted)


def test_privacy_id_or_an_anonymous_from_withholds_the_number() -> None:
    for incoming in (call(privacy=("id",)), call(from_user="anonymous"), call(from_user="Anonymous", asserted="+4930123")):
        assert caller_number(incoming, True, TRUNK) == (None, True)
        assert shown_name(incoming, None, True, "masked", "de") == "Rufnummer unterdrückt"
    assert shown_name(call(privacy=("id",)), None, True, "masked", "en") == "Withheld number"
    assert caller_number(call(privacy=("none",)), True, TRUNK) == ("+4917012345678", False)


def test_the_asserted_identity_counts_only_from_a_trunk_and_is_read_in_e164() -> None:
    incoming = call(from_user="spoofed", asserted="01701234567")
    assert caller_number(incoming, True, TRUNK) == ("+491701234567", False)
    assert caller_number(incoming, False, None) == ("spoofed", False)  # anyone can write a P-Asserted-Identity


def test_names_show_no_whole_number_unless_configured() -> None:
    number = "+4917012345678"
    assert masked(number) == "+49170••••••78"
    assert masked("4711") == "4711"
    assert shown_name(call(), number, False, "masked", "de") == "+49170••••••78"
    assert shown_name(call(), number, False, "full", "de") == number
    assert shown_name(call(display="Erika Mustermann"), number, False, "masked", "de") == "Erika Mustermann"
    # a display name that is only the number again is masked like the number
    assert shown_name(call(display="+49 170 12345678"), number, False, "masked", "de") == "+49170••••••78"
    assert shown_name(call(from_user="room-301", display=""), "room-301", False, "masked", "de") == "room-301"
