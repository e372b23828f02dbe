"""H.239's presentation token in plain terms (ITU-T H.239 clause 7 and table 7): the generic
messages H.245 carries (control.py's H239Message events in, `H245Control.send_h239` out), read
into `Token` and written by the builders below. Sans-IO and free of floor decisions: the call
layer (service.py) maps the token to the room's presentation floor (rooms/floor.py).

The dialogue a room system's share button starts, and how the gateway (an MCU: it holds the token
for the room) answers:

- presentationTokenRequest (genericRequest 3: terminalLabel, channelId, symmetryBreaking): the
  endpoint wants to present on its channel `channelId`; presentationTokenResponse (genericResponse
  4) acknowledges or rejects it, echoing terminalLabel and channelId. The MCU sends the request too,
  to the owner, to take the token back (someone else presents, a host stopped it); the owner
  acknowledges and stops.
- presentationTokenRelease (genericCommand 5): the owner gives the token back.
- presentationTokenIndicateOwner (genericIndication 6): who owns it (the endpoint after a grant;
  the MCU when it opens its own presentation channel).
- flowControlReleaseRequest/Response (1/2): an endpoint asks for bandwidth for its channel before
  opening it; we grant what it asks (the room's content is encoded to what each line takes).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

# (H.239 table 7) parameters; the sub-messages are What's
BIT_RATE, CHANNEL_ID, SYMMETRY_BREAKING, TERMINAL_LABEL, ACKNOWLEDGE, REJECT = 41, 42, 43, 44, 126, 127
MCU_LABEL = 0  # our terminalLabel: an MCU's own (H.243 numbers terminals from 1)

Message = tuple[str, int, list[tuple[int, tuple[str, Any]]]]  # (class, sub-message, parameters) for send_h239


class What(enum.Enum):
    """A sub-message: (its identifier, the class of generic message that carries it)."""

    FLOW_CONTROL_RELEASE_REQUEST = (1, "request")
    FLOW_CONTROL_RELEASE_RESPONSE = (2, "response")
    TOKEN_REQUEST = (3, "request")
    TOKEN_RESPONSE = (4, "response")
    TOKEN_RELEASE = (5, "command")
    TOKEN_OWNER = (6, "indication")


@dataclass(frozen=True)
class Token:
    """One H.239 message read: what it is and the parameters it had (None: absent)."""

    what: What
    terminal_label: int | None = None
    channel: int | None = None
    symmetry_breaking: int | None = None
    acknowledged: bool | None = None  # responses
    bit_rate: int | None = None  # flow control (units of 100 bit/s)


def read(kind: str, sub_message: int, parameters: dict[int, tuple[str, Any]]) -> Token | None:
    """The message of an H239Message event; None for one H.239 does not define (class and
    sub-message must agree: a presentationTokenRequest sent as an indication is not one)."""
    what = next((w for w in What if w.value == (sub_message, kind)), None)
    if what is None:
        return None

    def number(ident: int) -> int | None:
        value = parameters.get(ident)
        if isinstance(value, tuple) and len(value) == 2 and str(value[0]).startswith("unsigned") and isinstance(value[1], int):
            return value[1]
        return None

    acknowledged = True if ACKNOWLEDGE in parameters else False if REJECT in parameters else None
    return Token(what, number(TERMINAL_LABEL), number(CHANNEL_ID), number(SYMMETRY_BREAKING), acknowledged, number(BIT_RATE))


def _message(what: What, parameters: list[tuple[int, tuple[str, Any]]]) -> Message:
    sub_message, kind = what.value
    return kind, sub_message, parameters


def _label_and_channel(label: int | None, channel: int | None) -> list[tuple[int, tuple[str, Any]]]:
    out = [(TERMINAL_LABEL, ("unsignedMin", label if label is not None else MCU_LABEL))]
    if channel is not None:
        out.append((CHANNEL_ID, ("unsignedMin", channel)))
    return out


def token_response(acknowledge: bool, label: int | None, channel: int | None) -> Message:
    verdict = (ACKNOWLEDGE if acknowledge else REJECT, ("logical", 0))
    return _message(What.TOKEN_RESPONSE, [verdict, *_label_and_channel(label, channel)])


def token_request(channel: int | None, symmetry_breaking: int) -> Message:
    """The MCU asks the owner for the token back (or claims it for its own channel)."""
    params = _label_and_channel(MCU_LABEL, channel)
    return _message(What.TOKEN_REQUEST, [*params, (SYMMETRY_BREAKING, ("unsignedMin", max(1, min(127, symmetry_breaking))))])


def token_release(channel: int | None) -> Message:
    return _message(What.TOKEN_RELEASE, _label_and_channel(MCU_LABEL, channel))


def token_owner(channel: int | None) -> Message:
    return _message(What.TOKEN_OWNER, _label_and_channel(MCU_LABEL, channel))


def flow_control_release_response(acknowledge: bool, channel: int | None, bit_rate: int | None) -> Message:
    params: list[tuple[int, tuple[str, Any]]] = [(ACKNOWLEDGE if acknowledge else REJECT, ("logical", 0))]
    if bit_rate is not None:
        params.append((BIT_RATE, ("unsignedMin", min(bit_rate, 65535))))
    if channel is not None:
        params.append((CHANNEL_ID, ("unsignedMin", channel)))
    return _message(What.FLOW_CONTROL_RELEASE_RESPONSE, params)
