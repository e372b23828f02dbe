"""H.245 control (gateway/h323/control.py), h11 style: two controls wired back to back run the
capability exchange and master/slave determination (both started, one started, identical numbers,
an MCU against a terminal) to a quiet end; logical channels opened, acknowledged, refused and
closed; commands and indications carried; unanswered requests time out; and what cannot be read
is a ControlProblem, never an exception."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.h323 import h245
from gateway.h323.control import (
    TIMEOUT_S,
    BitrateLimited,
    CapabilitiesReceived,
    ChannelClosed,
    ChannelEstablished,
    ChannelOffered,
    ChannelRefused,
    ControlProblem,
    Event,
    H239Message,
    H245Control,
    KeyframeRequested,
    MasterSlaveDetermined,
    ProcedureFailed,
    RoundTrip,
    SessionEnded,
    UserInput,
)
from gateway.h323.h245 import Capabilities, Codec

CAPS = Capabilities(audio=(Codec("PCMA", frames=60),), video=(Codec("H264"),), h239=True)  # (as its capability set reads back)


def exchange(a: H245Control, b: H245Control, now: float = 0.0) -> tuple[list[Event], list[Event], list[str]]:
    """Delivers PDUs both ways until both are quiet: the events of a and b, and every PDU's name."""
    events_a: list[Event] = []
    events_b: list[Event] = []
    names: list[str] = []
    for _ in range(20):
        to_b, to_a = a.pdus_to_send(), b.pdus_to_send()
        if not to_a and not to_b:
            return events_a, events_b, names
        for pdu in to_b:
            names.append("a>" + h245.read(pdu)[1])
            events_b += b.receive(pdu, now)
        for pdu in to_a:
            names.append("b>" + h245.read(pdu)[1])
            events_a += a.receive(pdu, now)
    raise AssertionError(f"never quiet: {names[-10:]}")


def test_both_started_exchange_capabilities_and_agree_on_one_master() -> None:
    a, b = H245Control(CAPS), H245Control(CAPS, terminal_type=50)
    a.start(0.0)
    b.start(0.0)
    events_a, events_b, names = exchange(a, b)
    assert CapabilitiesReceived(CAPS) in events_a and CapabilitiesReceived(CAPS) in events_b
    assert MasterSlaveDetermined(True) in events_a and MasterSlaveDetermined(False) in events_b  # (the MCU's type is higher)
    assert names.count("a>masterSlaveDeterminationAck") == names.count("b>masterSlaveDeterminationAck") == 1
    assert a.deadline is None and b.deadline is None


def test_determination_started_by_one_side_ends_after_three_messages() -> None:
    """MSD, its Ack, and the Ack of that Ack: nothing further."""
    a, b = H245Control(CAPS), H245Control(CAPS)
    a.start(0.0)
    events_a, events_b, names = exchange(a, b)
    msd = [n for n in names if "masterSlave" in n]
    assert msd == ["a>masterSlaveDetermination", "b>masterSlaveDeterminationAck", "a>masterSlaveDeterminationAck"]
    (mine,) = [e for e in events_a if isinstance(e, MasterSlaveDetermined)]
    (theirs,) = [e for e in events_b if isinstance(e, MasterSlaveDetermined)]
    assert mine.master != theirs.master


def test_equal_terminal_types_are_decided_by_the_numbers_modulo_2_24() -> None:
    a, b = H245Control(CAPS), H245Control(CAPS)
    a._msd_number, b._msd_number = 0xFFFFF0, 0x000010  # (b's is 0x20 "after" a's, modulo 2^24: a is master)
    a.start(0.0)
    b.start(0.0)
    events_a, events_b, _ = exchange(a, b)
    assert MasterSlaveDetermined(True) in events_a and MasterSlaveDetermined(False) in events_b


def test_identical_numbers_are_drawn_again() -> None:
    a, b = H245Control(CAPS), H245Control(CAPS)
    a._msd_number = b._msd_number = 4711
    a.start(0.0)
    b.start(0.0)
    events_a, events_b, _ = exchange(a, b)
    assert {e.master for e in events_a + events_b if isinstance(e, MasterSlaveDetermined)} == {True, False}


def opened(a: H245Control, b: H245Control) -> tuple[ChannelOffered, H245Control, H245Control]:
    a.open_channel(2, Codec("H264"), ("192.0.2.1", 5003), 97, 0.0)
    (offered,) = [e for e in exchange(a, b)[1] if isinstance(e, ChannelOffered)]
    return offered, a, b


def test_a_channel_is_offered_accepted_and_established() -> None:
    offered, a, b = opened(H245Control(CAPS), H245Control(CAPS))
    assert offered.channel.codec == Codec("H264") and offered.channel.control == ("192.0.2.1", 5003)
    b.accept_channel(offered.channel, ("192.0.2.2", 6000), ("192.0.2.2", 6001))
    (established,) = exchange(a, b)[0]
    assert established == ChannelEstablished(a.outgoing[1], ("192.0.2.2", 6000), ("192.0.2.2", 6001))
    assert 1 in a.established and a.deadline is None


def test_a_refused_channel_and_an_unanswered_one_are_reported() -> None:
    offered, a, b = opened(H245Control(CAPS), H245Control(CAPS))
    b.reject_channel(offered.channel)
    assert exchange(a, b)[0] == [ChannelRefused(offered.channel, "dataTypeNotSupported")]
    a.open_channel(1, h245.G711A, ("192.0.2.1", 5001), None, 0.0)
    a.pdus_to_send()
    assert a.timeout(TIMEOUT_S - 1) == []
    (refused,) = a.timeout(TIMEOUT_S)
    assert isinstance(refused, ChannelRefused) and refused.cause == "no answer"


def test_a_channel_of_a_codec_nobody_takes_is_refused_by_the_control_itself() -> None:
    b = H245Control(CAPS)
    value = h245.open_logical_channel_value(h245.Channel(9, 1, h245.G711A, control=("192.0.2.1", 5001)))
    value["forwardLogicalChannelParameters"]["dataType"] = ("audioData", ("g7231", {"maxAl-sduAudioFrames": 1, "silenceSuppression": False}))
    (problem,) = b.receive(h245.message("request", "openLogicalChannel", value), 0.0)
    assert isinstance(problem, ControlProblem)
    (reject,) = b.pdus_to_send()
    assert h245.read(reject)[1] == "openLogicalChannelReject"


def test_channels_close_both_ways() -> None:
    offered, a, b = opened(H245Control(CAPS), H245Control(CAPS))
    b.accept_channel(offered.channel, ("192.0.2.2", 6000), ("192.0.2.2", 6001))
    exchange(a, b)
    a.close_channel(1)
    _, events_b, names = exchange(a, b)
    assert events_b == [ChannelClosed(1, incoming=True)] and "b>closeLogicalChannelAck" in names
    assert not a.outgoing and not b.incoming


def test_commands_and_indications_reach_the_other_side() -> None:
    offered, a, b = opened(H245Control(CAPS), H245Control(CAPS))
    b.accept_channel(offered.channel, ("192.0.2.2", 6000), ("192.0.2.2", 6001))
    exchange(a, b)
    b.ask_keyframe(1)
    b.limit(1, 384_000)
    b.send_user_input("4711#")
    b.send_h239("request", 3, [(44, ("unsignedMin", 2)), (42, ("unsignedMin", 1))])
    events_a, _, _ = exchange(a, b)
    assert events_a == [KeyframeRequested(1), BitrateLimited(1, 384_000), UserInput("4711#"),
                        H239Message("request", 3, {44: ("unsignedMin", 2), 42: ("unsignedMin", 1)})]  # fmt: skip


def test_round_trip_delay_is_measured() -> None:
    a, b = H245Control(CAPS), H245Control(CAPS)
    a.measure_round_trip(10.0)
    b.receive(a.pdus_to_send()[0], 10.1)
    assert a.receive(b.pdus_to_send()[0], 10.25) == [RoundTrip(0.25)]


def test_end_session_is_answered_once() -> None:
    a, b = H245Control(CAPS), H245Control(CAPS)
    a.end_session()
    events_a, events_b, names = exchange(a, b)
    assert events_b == [SessionEnded()] and events_a == [SessionEnded()]
    assert names == ["a>endSessionCommand", "b>endSessionCommand"]


def test_an_unanswered_capability_set_fails_its_procedure() -> None:
    a = H245Control(CAPS)
    a.start(100.0)
    assert a.deadline == 100.0 + TIMEOUT_S
    events = a.timeout(100.0 + TIMEOUT_S)
    assert ProcedureFailed("capability exchange") in events and ProcedureFailed("master/slave determination") in events


def test_a_request_we_do_not_know_gets_function_not_understood() -> None:
    a = H245Control(CAPS)
    request = h245.message("request", "maintenanceLoopRequest", {"type": ("systemLoop", 0)})
    (problem,) = a.receive(request, 0.0)
    assert isinstance(problem, ControlProblem)
    (answer,) = a.pdus_to_send()
    assert h245.read(answer)[:2] == ("indication", "functionNotUnderstood")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=5))
def test_any_pdus_never_raise(pdus: list[bytes]) -> None:
    a = H245Control(CAPS)
    a.start(0.0)
    for pdu in pdus:
        for event in a.receive(pdu, 1.0):
            assert not isinstance(event, ChannelEstablished)  # (we opened no channel: nothing to establish)
