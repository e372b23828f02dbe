"""H.239's presentation token (gateway/h323/h239.py): every message we write goes through H.245's
PER (h245.generic_message, read back by h245.read) and reads back as the same token; class and
sub-message must agree; parameters of the wrong form are absent, never an exception."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.h323 import h239, h245
from gateway.h323.h239 import Token, What


def through_per(message: h239.Message) -> Token | None:
    kind, name, value = h245.read(h245.generic_message(*message))
    assert name == f"generic{kind.title()}"
    oid, sub_message, parameters = h245.read_generic(value)
    assert oid == h245.H239_MESSAGE and sub_message is not None
    return h239.read(kind, sub_message, parameters)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (h239.token_response(True, 7, 5), Token(What.TOKEN_RESPONSE, 7, 5, acknowledged=True)),
        (h239.token_response(False, None, None), Token(What.TOKEN_RESPONSE, h239.MCU_LABEL, acknowledged=False)),
        (h239.token_request(4, 300), Token(What.TOKEN_REQUEST, h239.MCU_LABEL, 4, symmetry_breaking=127)),
        (h239.token_request(None, 0), Token(What.TOKEN_REQUEST, h239.MCU_LABEL, symmetry_breaking=1)),
        (h239.token_release(4), Token(What.TOKEN_RELEASE, h239.MCU_LABEL, 4)),
        (h239.token_owner(4), Token(What.TOKEN_OWNER, h239.MCU_LABEL, 4)),
        (h239.flow_control_release_response(True, 5, 80_000), Token(What.FLOW_CONTROL_RELEASE_RESPONSE, None, 5, acknowledged=True, bit_rate=65535)),
    ],
)
def test_every_message_we_write_reads_back_through_per(message: h239.Message, expected: Token) -> None:
    assert through_per(message) == expected


def test_a_room_systems_request_reads_with_its_label_channel_and_symmetry_breaking() -> None:
    request = ("request", 3, [(44, ("unsignedMin", 2)), (42, ("unsignedMin", 5)), (43, ("unsignedMin", 99))])
    assert through_per(request) == Token(What.TOKEN_REQUEST, 2, 5, 99)
    flow = ("request", 1, [(42, ("unsignedMin", 5)), (41, ("unsignedMin", 10_000))])
    assert through_per(flow) == Token(What.FLOW_CONTROL_RELEASE_REQUEST, None, 5, bit_rate=10_000)


def test_class_and_sub_message_must_agree() -> None:
    assert h239.read("indication", 3, {}) is None  # (a token request sent as an indication)
    assert h239.read("request", 9, {}) is None
    assert h239.read("command", 5, {}) == Token(What.TOKEN_RELEASE)


_VALUES = st.one_of(
    st.tuples(st.sampled_from(["unsignedMin", "unsigned32Max", "logical", "octetString", "booleanArray"]), st.integers(-5, 70_000)),
    st.none(), st.integers(), st.text(max_size=3), st.tuples(st.text(max_size=3)), st.tuples(st.integers(), st.integers()),
)


@given(st.sampled_from(["request", "response", "command", "indication"]), st.integers(0, 127), st.dictionaries(st.integers(0, 130), _VALUES, max_size=6))
def test_parameters_of_any_form_never_raise(kind: str, sub_message: int, parameters: dict[int, Any]) -> None:
    token = h239.read(kind, sub_message, parameters)
    if token is not None:
        for number in (token.terminal_label, token.channel, token.symmetry_breaking, token.bit_rate):
            assert number is None or isinstance(number, int)
