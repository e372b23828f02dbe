"""H.225.0 call signalling messages (gateway/h323/h225.py) and the aligned-PER codec under them
(gateway/h323/per.py): every body written and read back, octets checked against X.691 by hand where
pycrate alone went wrong, what real endpoints leave out tolerated, and bad PER refused with
H225Error only."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrate_asn1dir import H225

from gateway.h323 import h225, per, q931
from gateway.h323.h225 import Alias, H225Error, Signal

CALL_ID = bytes(range(16))
CONFERENCE = bytes(range(16, 32))
BODIES = ["setup", "callProceeding", "alerting", "connect", "releaseComplete", "facility", "progress",
          "information", "notify", "status", "statusInquiry", "setupAcknowledge"]  # fmt: skip


def round_trip(signal: Signal, *elements: q931.InformationElement) -> Signal:
    return h225.read(q931.parse(q931.serialize(h225.write(signal, elements))))


def test_a_release_complete_with_a_reason_is_aligned_as_x691_says() -> None:
    """pycrate 0.8 alone pads the first extension addition after an unaligned root once too often
    (`18 a8 00 00 11`); per.py writes what X.691 says: root 5 bits, bitmap length 7, bitmap 11,
    one pad bit, then the open type's length octet."""
    uuie = H225.H323_MESSAGES.ReleaseComplete_UUIE
    value = {"protocolIdentifier": (0, 0, 8, 2250, 0, 6), "callIdentifier": {"guid": bytes(16)},
             "reason": ("destinationRejection", 0)}  # fmt: skip
    data = per.encode(uuie, value)
    assert data == bytes.fromhex("c0060008914a0006" + "18a800" + "11" + "00" * 17)
    assert per.decode(uuie, data) == value


def test_a_setup_carries_what_the_call_needs_and_reads_back() -> None:
    setup = Signal(
        "setup", call_reference=0x1234, call_identifier=CALL_ID, conference_id=CONFERENCE,
        source_aliases=(Alias("h323-ID", "Ratssaal"), Alias("dialledDigits", "4920")),
        destination_aliases=(h225.alias_of("4711"),), destination_address=("192.0.2.10", 1720),
        source_address=("2001:db8::5", 1720), h245_address=("192.0.2.1", 30000), tunnelling=True,
        fast_start=(b"\x01\x02\x03", b"\x04"), display_name="Ratssaal", called_number="4711",
    )  # fmt: skip
    message = h225.write(setup, [q931.BEARER_VIDEO])
    assert message.type == q931.MessageType.SETUP and message.find(q931.Element.BEARER_CAPABILITY) is not None
    back = round_trip(setup, q931.BEARER_VIDEO)
    assert back.version == h225.VERSION >= 4
    assert (back.call_identifier, back.conference_id, back.conference_goal) == (CALL_ID, CONFERENCE, "create")
    assert back.source_aliases == setup.source_aliases and back.destination_aliases == (Alias("dialledDigits", "4711"),)
    assert (back.destination_address, back.source_address, back.h245_address) == (
        ("192.0.2.10", 1720), ("2001:db8::5", 1720), ("192.0.2.1", 30000))  # fmt: skip
    assert back.tunnelling and back.fast_start == setup.fast_start
    assert (back.display_name, back.called_number, back.endpoint_kind) == ("Ratssaal", "4711", "terminal")
    assert back.vendor == h225.GATEWAY_VENDOR


@pytest.mark.parametrize("body", BODIES)
def test_every_body_round_trips_with_its_identifiers_and_tunnelled_h245(body: str) -> None:
    signal = Signal(body, call_reference=77, from_destination=True, call_identifier=CALL_ID, conference_id=CONFERENCE,
                    tunnelling=True, h245_control=(b"\x03\x04", b"\x05"))  # fmt: skip
    back = round_trip(signal)
    assert back.body == body and back.call_reference == 77 and back.from_destination
    assert back.call_identifier == CALL_ID
    assert back.h245_control == (b"\x03\x04", b"\x05") and back.tunnelling
    if body in ("connect", "setup"):
        assert back.conference_id == CONFERENCE


def test_an_empty_body_travels_in_a_facility() -> None:
    """H.225.0 v4 and later: tunnelled H.245 alone, in a Facility whose body is `empty`."""
    message = h225.write(Signal("empty", call_reference=3, tunnelling=True, h245_control=(b"\x01",)))
    assert message.type == q931.MessageType.FACILITY
    back = h225.read(message)
    assert (back.body, back.h245_control) == ("empty", (b"\x01",))


@pytest.mark.parametrize(
    ("reason", "cause"),
    [("destinationRejection", 21), ("undefinedReason", 16), ("adaptiveBusy", 17), ("noPermission", 57), (None, 16)],
)
def test_a_release_says_its_reason_and_cause(reason: str | None, cause: int) -> None:
    back = round_trip(Signal("releaseComplete", call_identifier=CALL_ID, release_reason=reason, cause=cause))
    assert (back.release_reason, back.cause) == (reason, cause)


def test_facility_reasons_and_fast_connect_refused_read_back() -> None:
    back = round_trip(Signal("facility", facility_reason="startH245", h245_address=("192.0.2.1", 1234)))
    assert (back.facility_reason, back.h245_address) == ("startH245", ("192.0.2.1", 1234))
    assert round_trip(Signal("connect", fast_connect_refused=True)).fast_connect_refused


def test_a_version_2_message_without_extension_additions_is_read() -> None:
    """An old endpoint's Alerting: root components only, no callIdentifier; read, not refused."""
    uui = H225.H323_MESSAGES.H323_UserInformation
    value = {"h323-uu-pdu": {"h323-message-body": ("alerting", {
        "protocolIdentifier": (0, 0, 8, 2250, 0, 2),
        "destinationInfo": {"mcu": {}, "mc": True, "undefinedNode": False}})}}  # fmt: skip
    message = q931.Message(q931.MessageType.ALERTING, 5, True, [q931.user_user(per.encode(uui, value))])
    back = h225.read(message)
    assert (back.body, back.version, back.call_identifier, back.endpoint_kind, back.tunnelling) == (
        "alerting", 2, None, "mcu", False)  # fmt: skip


def test_a_body_that_does_not_match_its_message_type_is_refused() -> None:
    message = h225.write(Signal("connect", call_identifier=CALL_ID))
    message.type = q931.MessageType.ALERTING
    with pytest.raises(H225Error, match="connect body"):
        h225.read(message)


def test_a_message_without_user_information_is_refused() -> None:
    with pytest.raises(H225Error, match="no H.323 user information"):
        h225.read(q931.Message(q931.MessageType.CONNECT, 1, True, [q931.display("x")]))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_octets_in_the_user_user_element_are_read_or_refused_with_h225error(data: bytes) -> None:
    message = q931.Message(q931.MessageType.SETUP, 1, False, [q931.user_user(data)])
    try:
        signal = h225.read(message)
    except H225Error:
        return
    assert signal.body in ("setup", "empty")


@pytest.mark.parametrize(
    ("text", "kind"),
    [("4711", "dialledDigits"), ("*99#", "dialledDigits"), ("Ratssaal", "h323-ID"), ("h323:ratssaal@example.org", "url-ID"),
     ("saal@example.org", "email-ID")],
)
def test_a_dialled_text_becomes_the_alias_it_looks_like(text: str, kind: str) -> None:
    assert h225.alias_of(text) == Alias(kind, text)
