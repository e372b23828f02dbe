"""The SIP user agent core's state machines as tables, in the style of h11's test_state.py: for each
(state, event) the state it leads to, for calls (dialogs), server and client transactions. Driven
only through the public API (receive, commands, handle_timer) with a fake clock; the state read
with call_state / server_transaction_state / client_transaction_state."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.sip import message
from gateway.sip.useragent import (
    T4,
    TIMEOUT,
    CallState,
    ClientTransactionState,
    OfferReceived,
    OfferRequested,
    Peer,
    ServerTransactionState,
)
from tests.support.useragent import Harness, offer_sdp, request, to_tag

CALLEE = Peer("udp", ("192.0.2.20", 5070))
INVITE_BRANCH = "z9hG4bKinv1"


class Call:
    """A harness with one call in a known state, and what is needed to act on it."""

    def __init__(self, h: Harness, number: int, tag: str = "", invite: message.SipMessage | None = None) -> None:
        self.h, self.number, self.tag, self.invite = h, number, tag, invite

    @property
    def state(self) -> CallState:
        return self.h.ua.call_state(self.number)


# -- getting a call into each state ---------------------------------------------------------------------


def incoming() -> Call:
    h = Harness(auto_answer_offers=False)
    number, _ = h.invite()
    return Call(h, number)


def answered() -> Call:
    call = incoming()
    call.h.auto_answer_offers = True
    call.tag = to_tag(call.h.answer(call.number))
    call.h.auto_answer_offers = False
    return call


def confirmed() -> Call:
    call = answered()
    call.h.feed(request("ACK", branch="z9hG4bKack1", to_tag=call.tag))
    return call


def calling() -> Call:
    h = Harness(auto_answer_offers=False)
    number = h.dial("sip:room@192.0.2.20:5070", CALLEE)
    (invite,) = h.take()
    return Call(h, number, invite=invite)


def response_to(invite: message.SipMessage, status: int, reason: str, body: str = "") -> bytes:
    lines = [f"SIP/2.0 {status} {reason}", *[f"Via: {via}" for via in invite.all("via")]]
    lines += [
        f"From: {invite.get('from')}",
        f"To: {invite.get('to')}" + (";tag=callee1" if status > 100 else ""),
        f"Call-ID: {invite.call_id}",
        f"CSeq: {invite.get('cseq')}",
        "Contact: <sip:room@192.0.2.20:5070>",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    return ("\r\n".join(lines) + f"\r\nContent-Length: {len(body.encode())}\r\n\r\n" + body).encode()


# -- what happens to it ---------------------------------------------------------------------------------


def answer(call: Call) -> None:
    call.h.answer_call(call.number)


def reject(call: Call) -> None:
    call.h.reject(call.number, 486, "Meeting full")


def hang_up(call: Call) -> None:
    call.h.hang_up(call.number, (403, "Removed by the host"))


def cancel(call: Call) -> None:
    call.h.feed(request("CANCEL"))


def ack(call: Call) -> None:
    call.h.feed(request("ACK", branch="z9hG4bKack1", to_tag=call.tag))


def bye(call: Call) -> None:
    call.h.feed(request("BYE", branch="z9hG4bKbye", cseq=2, to_tag=call.tag))


def info(call: Call) -> None:
    call.h.feed(request("INFO", branch="z9hG4bKi1", cseq=2, to_tag=call.tag, body="5", content_type="application/dtmf"))


def options(call: Call) -> None:
    call.h.feed(request("OPTIONS", branch="z9hG4bKo1", cseq=2, to_tag=call.tag))


def reinvite(call: Call) -> None:
    """A re-INVITE with an offer, still with the call layer (no answer given yet)."""
    call.h.feed(request("INVITE", branch="z9hG4bKre1", cseq=2, to_tag=call.tag, body=offer_sdp(version=2)))


def reinvite_answered(call: Call) -> None:
    reinvite(call)
    (event,) = [e for e in call.h.events.events if isinstance(e, OfferReceived)]
    call.h.ua.accept_offer(call.number, call.h.sessions[call.number].answer(event.sdp).sdp)
    call.h.pump()


def reinvite_refused(call: Call) -> None:
    reinvite(call)
    call.h.ua.refuse_offer(call.number)
    call.h.pump()


def reinvite_without_offer(call: Call) -> None:
    call.h.feed(request("INVITE", branch="z9hG4bKre1", cseq=2, to_tag=call.tag))
    assert any(isinstance(e, OfferRequested) for e in call.h.events.events)
    call.h.ua.accept_offer(call.number, call.h.sessions[call.number].offer())
    call.h.pump()


def update_answered(call: Call) -> None:
    call.h.feed(request("UPDATE", branch="z9hG4bKup1", cseq=2, to_tag=call.tag, body=offer_sdp(version=2)))
    (event,) = [e for e in call.h.events.events if isinstance(e, OfferReceived)]
    call.h.ua.accept_offer(call.number, call.h.sessions[call.number].answer(event.sdp).sdp)
    call.h.pump()


def timers_run_out(call: Call) -> None:
    call.h.run_until(call.h.now + TIMEOUT + 5)


def ringing(call: Call) -> None:
    assert call.invite is not None
    call.h.feed(response_to(call.invite, 180, "Ringing"), CALLEE)


def accepted(call: Call) -> None:
    assert call.invite is not None
    body = offer_sdp("0 101").replace("192.0.2.10", "192.0.2.20")
    call.h.feed(response_to(call.invite, 200, "OK", body), CALLEE)


def busy(call: Call) -> None:
    assert call.invite is not None
    call.h.feed(response_to(call.invite, 486, "Busy Here"), CALLEE)


CALL_TABLE: list[tuple[Callable[[], Call], Callable[[Call], None], CallState]] = [
    (incoming, answer, CallState.ANSWERED),
    (incoming, reject, CallState.TERMINATED),
    (incoming, hang_up, CallState.TERMINATED),
    (incoming, cancel, CallState.TERMINATED),
    (incoming, options, CallState.INCOMING),
    (incoming, timers_run_out, CallState.INCOMING),  # (the call layer decides; the 100 is sent)
    (answered, ack, CallState.CONFIRMED),
    (answered, hang_up, CallState.ANSWERED),  # the BYE waits for the ACK
    (answered, timers_run_out, CallState.TERMINATED),  # timer H: no ACK, a BYE saying 408
    (answered, cancel, CallState.ANSWERED),  # too late: the 2xx is out
    (confirmed, bye, CallState.TERMINATED),
    (confirmed, hang_up, CallState.TERMINATED),
    (confirmed, info, CallState.CONFIRMED),
    (confirmed, options, CallState.CONFIRMED),
    (confirmed, reinvite, CallState.CONFIRMED),  # the offer waits for the call layer
    (confirmed, reinvite_answered, CallState.ANSWERED),  # our 2xx waits for its ACK
    (confirmed, reinvite_refused, CallState.CONFIRMED),  # 488: the session goes on
    (confirmed, reinvite_without_offer, CallState.ANSWERED),
    (confirmed, update_answered, CallState.CONFIRMED),  # an UPDATE has no ACK
    (confirmed, timers_run_out, CallState.CONFIRMED),
    (calling, ringing, CallState.CALLING),
    (calling, accepted, CallState.CONFIRMED),
    (calling, busy, CallState.TERMINATED),
    (calling, hang_up, CallState.TERMINATED),  # CANCEL
    (calling, timers_run_out, CallState.TERMINATED),  # timer B: no answer, CANCEL
]


@pytest.mark.parametrize(
    ("start", "event", "expected"), CALL_TABLE, ids=[f"{s.__name__}-{e.__name__}" for s, e, _ in CALL_TABLE]
)
def test_call_state_transitions(start: Callable[[], Call], event: Callable[[Call], None], expected: CallState) -> None:
    call = start()
    event(call)
    assert call.state is expected


def test_each_start_is_in_its_state() -> None:
    assert incoming().state is CallState.INCOMING
    assert answered().state is CallState.ANSWERED
    assert confirmed().state is CallState.CONFIRMED
    assert calling().state is CallState.CALLING


def test_a_reinvite_then_its_ack_confirms_again_and_a_bye_after_the_ack_ends() -> None:
    call = confirmed()
    reinvite_answered(call)
    call.h.feed(request("ACK", branch="z9hG4bKack2", cseq=2, to_tag=call.tag))
    assert call.state is CallState.CONFIRMED
    hang_up(call)
    assert call.state is CallState.TERMINATED


def test_hang_up_while_answered_ends_at_the_ack() -> None:
    call = answered()
    hang_up(call)
    assert call.h.take() == []
    sent = call.h.feed(request("ACK", branch="z9hG4bKack1", to_tag=call.tag))
    assert call.state is CallState.TERMINATED and [m.method for m in sent] == ["BYE"]


def test_a_bye_while_an_offer_waits_answers_that_offer_487() -> None:
    call = confirmed()
    reinvite(call)
    assert call.h.take() == []  # (no 100 for a re-INVITE: the call layer answers at once)
    sent = call.h.feed(request("BYE", branch="z9hG4bKbye", cseq=3, to_tag=call.tag))
    assert sorted(m.status for m in sent) == [200, 487]
    assert call.state is CallState.TERMINATED


# -- server transactions --------------------------------------------------------------------------------


def server_state(call: Call, method: str = "INVITE", branch: str = INVITE_BRANCH) -> ServerTransactionState:
    return call.h.ua.server_transaction_state(branch, method)


SERVER_TABLE: list[tuple[Callable[[], Call], Callable[[Call], None], ServerTransactionState]] = [
    (incoming, options, ServerTransactionState.PROCEEDING),  # (another transaction: this one untouched)
    (incoming, answer, ServerTransactionState.ACCEPTED),
    (incoming, reject, ServerTransactionState.COMPLETED),
    (incoming, cancel, ServerTransactionState.COMPLETED),  # 487
    (answered, ack, ServerTransactionState.ACCEPTED),  # (the ACK of a 2xx is the dialog's)
    (answered, timers_run_out, ServerTransactionState.TERMINATED),
]


@pytest.mark.parametrize(
    ("start", "event", "expected"), SERVER_TABLE, ids=[f"{s.__name__}-{e.__name__}" for s, e, _ in SERVER_TABLE]
)
def test_invite_server_transaction_transitions(
    start: Callable[[], Call], event: Callable[[Call], None], expected: ServerTransactionState
) -> None:
    call = start()
    event(call)
    assert server_state(call) is expected


def test_invite_server_transaction_failure_path() -> None:
    """PROCEEDING -(3xx-6xx)-> COMPLETED -(ACK)-> CONFIRMED; without the ACK, timer H: TERMINATED."""
    call = incoming()
    assert server_state(call) is ServerTransactionState.PROCEEDING
    reject(call)
    assert server_state(call) is ServerTransactionState.COMPLETED
    failure = call.h.take()[-1]
    call.h.feed(request("ACK", to_tag=to_tag(failure)))
    assert server_state(call) is ServerTransactionState.CONFIRMED
    assert call.h.run_until(TIMEOUT + 1) == []  # timer I: the transaction absorbs, then ends
    assert server_state(call) is ServerTransactionState.TERMINATED

    unacked = incoming()
    reject(unacked)
    sent = unacked.h.run_until(TIMEOUT + 1)  # timer G retransmits until timer H
    assert sent and all(m.status == 486 for _, m in sent) and sent[-1][0] < TIMEOUT
    assert server_state(unacked) is ServerTransactionState.TERMINATED


def test_non_invite_server_transaction() -> None:
    """A request answered at once: COMPLETED (retransmissions get the answer again) until timer J."""
    h = Harness()
    (ok,) = h.feed(request("OPTIONS", branch="z9hG4bKo1"))
    assert h.ua.server_transaction_state("z9hG4bKo1", "OPTIONS") is ServerTransactionState.COMPLETED
    assert h.feed(request("OPTIONS", branch="z9hG4bKo1"))[0].get("to") == ok.get("to")
    h.run_until(TIMEOUT + 1)
    assert h.ua.server_transaction_state("z9hG4bKo1", "OPTIONS") is ServerTransactionState.TERMINATED


# -- client transactions --------------------------------------------------------------------------------


def client_state(call: Call, branch: str) -> ClientTransactionState:
    return call.h.ua.client_transaction_state(branch)


CLIENT_INVITE_TABLE: list[tuple[Callable[[Call], None], ClientTransactionState]] = [
    (ringing, ClientTransactionState.PROCEEDING),
    (accepted, ClientTransactionState.ACCEPTED),
    (busy, ClientTransactionState.COMPLETED),
    (hang_up, ClientTransactionState.CALLING),  # CANCEL sent: the INVITE awaits its 487 (timer D)
    (timers_run_out, ClientTransactionState.CALLING),  # timer B: CANCEL, then timer D
]


@pytest.mark.parametrize(
    ("event", "expected"), CLIENT_INVITE_TABLE, ids=[e.__name__ for e, _ in CLIENT_INVITE_TABLE]
)
def test_invite_client_transaction_transitions(event: Callable[[Call], None], expected: ClientTransactionState) -> None:
    call = calling()
    assert call.invite is not None
    branch = call.invite.top_via.branch
    assert client_state(call, branch) is ClientTransactionState.CALLING
    event(call)
    assert client_state(call, branch) is expected
    call.h.run_until(call.h.now + 2 * TIMEOUT + 1)  # timers D and M: the transaction ends
    assert client_state(call, branch) is ClientTransactionState.TERMINATED


def test_non_invite_client_transaction() -> None:
    """Our BYE: TRYING -(1xx)-> PROCEEDING -(2xx)-> COMPLETED -(timer K)-> TERMINATED; unanswered,
    timer F ends it."""
    call = confirmed()
    hang_up(call)
    (bye_request,) = call.h.take()
    branch = bye_request.top_via.branch
    assert client_state(call, branch) is ClientTransactionState.TRYING

    def answer_bye(status: int, reason: str) -> bytes:
        head = f"SIP/2.0 {status} {reason}\r\nVia: {bye_request.get('via')}\r\nFrom: {bye_request.get('from')}\r\n"
        head += f"To: {bye_request.get('to')}\r\nCall-ID: {bye_request.call_id}\r\nCSeq: {bye_request.get('cseq')}\r\n"
        return (head + "Content-Length: 0\r\n\r\n").encode()

    call.h.feed(answer_bye(100, "Trying"))
    assert client_state(call, branch) is ClientTransactionState.PROCEEDING
    call.h.feed(answer_bye(200, "OK"))
    assert client_state(call, branch) is ClientTransactionState.COMPLETED
    call.h.run_until(call.h.now + T4 + 0.1)
    assert client_state(call, branch) is ClientTransactionState.TERMINATED

    unanswered = confirmed()
    hang_up(unanswered)
    (lost,) = unanswered.h.take()
    sent = unanswered.h.run_until(TIMEOUT + 10)
    assert sent and all(m.method == "BYE" for _, m in sent)
    assert client_state(unanswered, lost.top_via.branch) is ClientTransactionState.TERMINATED


def test_timers_are_named_and_one_wakeup_serves_them_all() -> None:
    """get_timer is the earliest running timer; nothing runs once every call and transaction ended."""
    call = answered()
    assert call.h.ua.get_timer() == 0.5  # timer G of the 2xx
    ack(call)
    hang_up(call)
    call.h.take()
    assert call.h.ua.get_timer() == 0.5  # timer E of our BYE
    call.h.run_until(100.0)
    assert call.h.ua.get_timer() is None
