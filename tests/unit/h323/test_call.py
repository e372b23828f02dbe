"""The Q.931 call state machine of one H.323 call (gateway/h323/call.py), h11 style: a caller and a
callee channel wired back to back, every transition of the state table, fastStart answered once,
tunnelling agreed by both, and what does not fit answered as Q.931 says (Status with its cause,
ReleaseComplete for other call references, a broken stream ending the call)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.h323 import h225, q931
from gateway.h323.call import (
    SETUP_TIMEOUT_S,
    CallChannel,
    CallState,
    Cause,
    Connected,
    FacilityReceived,
    FastStartAnswered,
    H245Received,
    Progressed,
    ProtocolProblem,
    Released,
    SetupReceived,
)
from gateway.h323.h225 import Alias, Signal

SETUP = Signal("setup", destination_aliases=(Alias("dialledDigits", "4711"),), fast_start=(b"olc-1", b"olc-2"))


def messages(data: bytes) -> list[q931.Message]:
    reader = q931.TpktReader()
    return [q931.parse(frame) for frame in reader.feed(data)]


def pair(*, caller_tunnels: bool = True, callee_tunnels: bool = True) -> tuple[CallChannel, CallChannel, SetupReceived]:
    caller, callee = CallChannel(tunnelling=caller_tunnels), CallChannel(tunnelling=callee_tunnels)
    caller.setup(SETUP)
    events = callee.receive_data(caller.data_to_send())
    assert isinstance(events[0], SetupReceived)
    return caller, callee, events[0]


def test_a_call_goes_from_setup_to_connect_and_release_on_both_sides() -> None:
    caller, callee, setup = pair()
    assert (caller.state, callee.state) == (CallState.CALL_INITIATED, CallState.CALL_PRESENT)
    assert setup.signal.destination_aliases == (Alias("dialledDigits", "4711"),) and setup.signal.fast_start == SETUP.fast_start
    assert callee.call_identifier == caller.call_identifier and callee.conference_id == caller.conference_id
    assert callee.call_reference == caller.call_reference

    callee.proceed()
    (event,) = caller.receive_data(callee.data_to_send())
    assert isinstance(event, Progressed) and event.signal.body == "callProceeding"
    assert (caller.state, callee.state) == (CallState.OUTGOING_PROCEEDING, CallState.INCOMING_PROCEEDING)

    callee.alert()
    callee.connect(fast_start=(b"olc-1-answered",), h245_address=("192.0.2.1", 2000))
    events = caller.receive_data(callee.data_to_send())
    assert [type(e) for e in events] == [Progressed, FastStartAnswered, Connected]
    assert events[1] == FastStartAnswered((b"olc-1-answered",))
    assert caller.peer_h245_address == ("192.0.2.1", 2000)
    assert (caller.state, callee.state) == (CallState.ACTIVE, CallState.ACTIVE)

    assert callee.release(Cause.NORMAL) == [Released(Cause.NORMAL, None, by_peer=False)]
    assert caller.receive_data(callee.data_to_send()) == [Released(Cause.NORMAL, None, by_peer=True)]
    assert caller.state is callee.state is CallState.RELEASED and caller.closed and callee.closed


def test_every_message_we_send_echoes_the_call_identifiers_and_the_reference_flag() -> None:
    caller, callee, _ = pair()
    callee.proceed()
    callee.alert()
    callee.connect()
    callee.facility("startH245", h245_address=("192.0.2.1", 2000))
    callee.release(Cause.CALL_REJECTED, "destinationRejection")
    sent = messages(callee.data_to_send())
    assert [m.type for m in sent] == [q931.MessageType.CALL_PROCEEDING, q931.MessageType.ALERTING, q931.MessageType.CONNECT,
                                      q931.MessageType.FACILITY, q931.MessageType.RELEASE_COMPLETE]  # fmt: skip
    for message in sent:
        signal = h225.read(message)
        assert message.from_destination and message.call_reference == caller.call_reference
        assert signal.call_identifier == caller.call_identifier and signal.version >= 4
    assert h225.read(sent[2]).conference_id == caller.conference_id
    assert (sent[-1].cause, h225.read(sent[-1]).release_reason) == (21, "destinationRejection")
    assert all(not m.from_destination for m in messages(bytes(caller.data_to_send())))


def test_fast_start_is_answered_once_in_the_first_response_that_carries_it() -> None:
    caller, callee, _ = pair()
    callee.alert(fast_start=(b"answer",))
    with pytest.raises(RuntimeError, match="fastStart"):
        callee.connect(fast_start=(b"again",))
    callee.connect()
    events = caller.receive_data(callee.data_to_send())
    assert [e for e in events if isinstance(e, FastStartAnswered)] == [FastStartAnswered((b"answer",))]


def test_a_refused_fast_start_is_reported_to_the_caller() -> None:
    caller, callee, _ = pair()
    callee.connect(fast_connect_refused=True)
    events = caller.receive_data(callee.data_to_send())
    assert FastStartAnswered((), refused=True) in events and caller.fast_start_done


@pytest.mark.parametrize(("caller_tunnels", "callee_tunnels", "agreed"), [(True, True, True), (True, False, False), (False, True, False)])
def test_tunnelling_is_on_only_when_setup_and_first_response_both_say_so(caller_tunnels: bool, callee_tunnels: bool, agreed: bool) -> None:
    caller, callee, setup = pair(caller_tunnels=caller_tunnels, callee_tunnels=callee_tunnels)
    assert setup.signal.tunnelling is caller_tunnels
    callee.proceed()
    caller.receive_data(callee.data_to_send())
    assert caller.tunnelling is callee.tunnelling is agreed
    callee.alert()
    (alerting,) = messages(callee.data_to_send())
    assert h225.read(alerting).tunnelling is agreed


def test_tunnelled_h245_travels_in_both_directions() -> None:
    caller, callee, _ = pair()
    callee.connect()
    caller.receive_data(callee.data_to_send())
    callee.send_h245([b"tcs", b"msd"])
    assert caller.receive_data(callee.data_to_send()) == [H245Received((b"tcs", b"msd"))]
    caller.send_h245([b"tcs-ack"])
    (message,) = messages(data := caller.data_to_send())
    assert message.type == q931.MessageType.FACILITY and h225.read(message).body == "empty"  # (version 4 and later)
    assert callee.receive_data(data) == [H245Received((b"tcs-ack",))]


def test_a_facility_reaches_the_call_layer() -> None:
    caller, callee, _ = pair(caller_tunnels=False)
    callee.connect()
    caller.receive_data(callee.data_to_send())
    caller.facility("startH245", h245_address=("192.0.2.9", 3000))
    (event,) = callee.receive_data(caller.data_to_send())
    assert isinstance(event, FacilityReceived) and event.signal.facility_reason == "startH245"
    assert callee.peer_h245_address == ("192.0.2.9", 3000)


def test_a_status_enquiry_gets_our_call_state() -> None:
    caller, callee, _ = pair()
    callee.alert()
    enquiry = q931.Message(q931.MessageType.STATUS_ENQUIRY, callee.call_reference, False, [])
    assert callee.receive_data(q931.tpkt(q931.serialize(enquiry))) == []
    (status,) = messages(callee.data_to_send())[-1:]
    assert status.type == q931.MessageType.STATUS and status.cause == Cause.STATUS_ENQUIRY_RESPONSE
    assert status.find(q931.Element.CALL_STATE).value == bytes([CallState.CALL_RECEIVED])  # type: ignore[union-attr]


def test_an_unknown_message_type_gets_status_97_and_the_call_goes_on() -> None:
    caller, callee, _ = pair()
    unknown = q931.Message(0x4F, callee.call_reference, False, [])
    (problem,) = callee.receive_data(q931.tpkt(q931.serialize(unknown)))
    assert isinstance(problem, ProtocolProblem)
    (status,) = messages(callee.data_to_send())
    assert status.cause == Cause.MESSAGE_TYPE_UNKNOWN and callee.state is CallState.CALL_PRESENT


def test_a_message_that_does_not_fit_the_state_gets_status_101() -> None:
    caller, callee, _ = pair()
    wrong = h225.write(Signal("connect", call_reference=callee.call_reference, call_identifier=callee.call_identifier))
    (problem,) = callee.receive_data(q931.tpkt(q931.serialize(wrong)))
    assert isinstance(problem, ProtocolProblem) and "connect" in problem.what
    (status,) = messages(callee.data_to_send())
    assert status.cause == Cause.MESSAGE_NOT_COMPATIBLE and callee.state is CallState.CALL_PRESENT


def test_progress_information_and_notify_are_tolerated_in_any_state() -> None:
    caller, callee, _ = pair()
    for body in ("progress", "information", "notify", "status"):
        message = h225.write(Signal(body, call_reference=callee.call_reference, call_identifier=callee.call_identifier))
        assert callee.receive_data(q931.tpkt(q931.serialize(message))) == []
    assert callee.data_to_send() == b"" and callee.state is CallState.CALL_PRESENT


def test_another_call_reference_is_released_with_cause_81_and_a_second_setup_as_busy() -> None:
    caller, callee, _ = pair()
    stray = h225.write(Signal("alerting", call_reference=callee.call_reference + 1))
    (problem,) = callee.receive_data(q931.tpkt(q931.serialize(stray)))
    assert isinstance(problem, ProtocolProblem)
    (released,) = messages(callee.data_to_send())
    assert released.type == q931.MessageType.RELEASE_COMPLETE and released.cause == Cause.INVALID_CALL_REFERENCE
    assert released.call_reference == callee.call_reference + 1
    other = CallChannel()
    other.setup(SETUP)
    callee.receive_data(other.data_to_send())
    (busy,) = messages(callee.data_to_send())
    assert busy.cause == Cause.USER_BUSY and callee.state is CallState.CALL_PRESENT


def test_a_setup_that_cannot_be_read_is_released_with_cause_100() -> None:
    callee = CallChannel()
    setup = q931.Message(q931.MessageType.SETUP, 9, False, [q931.BEARER_VIDEO, q931.user_user(b"\xff\xff\xff")])
    events = callee.receive_data(q931.tpkt(q931.serialize(setup)))
    assert isinstance(events[0], ProtocolProblem) and events[-1] == Released(Cause.INVALID_ELEMENT_CONTENTS, "undefinedReason", False)
    (released,) = messages(callee.data_to_send())
    assert released.type == q931.MessageType.RELEASE_COMPLETE and released.call_reference == 9 and released.from_destination
    assert released.cause == Cause.INVALID_ELEMENT_CONTENTS


def test_a_stream_that_is_not_tpkt_ends_the_call_and_closes() -> None:
    caller, callee, _ = pair()
    events = callee.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    assert isinstance(events[0], ProtocolProblem) and isinstance(events[-1], Released) and callee.closed
    assert messages(callee.data_to_send())[0].type == q931.MessageType.RELEASE_COMPLETE


def test_a_lost_connection_releases_the_call() -> None:
    caller, callee, _ = pair()
    assert callee.receive_data(b"") == [Released(None, None, by_peer=True)]
    assert callee.state is CallState.RELEASED


def test_an_unanswered_setup_times_out_with_cause_102() -> None:
    caller = CallChannel()
    caller.setup(SETUP, now=100.0)
    assert caller.deadline == 100.0 + SETUP_TIMEOUT_S
    assert caller.timeout(105.0) == []
    assert caller.timeout(100.0 + SETUP_TIMEOUT_S) == [Released(Cause.TIMER_EXPIRY, "unreachableDestination", False)]


def test_a_release_complete_whose_user_information_is_bad_still_ends_the_call() -> None:
    caller, callee, _ = pair()
    bad = q931.Message(q931.MessageType.RELEASE_COMPLETE, caller.call_reference, True, [q931.cause(16), q931.user_user(b"\xff")])
    assert caller.receive_data(q931.tpkt(q931.serialize(bad))) == [Released(16, None, by_peer=True)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=6))
def test_any_frames_after_a_setup_never_raise(frames: list[bytes]) -> None:
    caller, callee, _ = pair()
    for frame in frames:
        callee.receive_data(q931.tpkt(frame))
        callee.data_to_send()
