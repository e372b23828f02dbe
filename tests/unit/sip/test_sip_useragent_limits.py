"""The user agent core under hostile load, sans-IO: a bounded transaction table however many distinct
branches arrive, digit floods in one INFO refused, SRTP kept when required, Retry-After on 503."""

from __future__ import annotations

from dataclasses import replace

from gateway.sip import message
from tests.support.useragent import PLAN, Harness, offer_sdp, request, statuses


def test_the_transaction_table_is_bounded_and_expires_from_the_front() -> None:
    h = Harness()
    h.ua.max_transactions = 100
    answers = {}
    for n in range(1000):
        (answers[n],) = h.feed(request("OPTIONS", branch=f"z9hG4bKflood{n}"))
    assert len(h.ua._server_tx) == 100
    assert h.ua.counters["transactions_dropped"] == 900
    # a retransmission of a recent request is still absorbed: the same answer (same random To tag)
    (again,) = h.feed(request("OPTIONS", branch="z9hG4bKflood999"))
    assert again.get("to") == answers[999].get("to")
    (fresh,) = h.feed(request("OPTIONS", branch="z9hG4bKflood0"))  # long dropped: a new transaction
    assert fresh.get("to") != answers[0].get("to")
    # 64*T1 later everything old has expired: the next request leaves one entry, nothing dropped
    h.now += 33
    h.feed(request("OPTIONS", branch="z9hG4bKlater"))
    assert len(h.ua._server_tx) == 1 and h.ua.counters["transactions_dropped"] == 901


def test_an_info_with_a_flood_of_digits_is_refused_and_none_count() -> None:
    h = Harness()
    _, tag = h.connect()
    flood = request("INFO", branch="z9hG4bKi1", cseq=2, to_tag=tag, body="1" * 5000, content_type="application/dtmf")
    (answer,) = h.feed(flood)
    assert answer.status == 400 and "digits" in answer.reason
    assert h.events.named("digit") == []
    one = request("INFO", branch="z9hG4bKi2", cseq=3, to_tag=tag, body="Signal=7\r\n", content_type="application/dtmf-relay")
    assert statuses(h.feed(one)) == [200] and len(h.events.named("digit")) == 1


def test_a_reoffer_without_srtp_is_refused_when_srtp_is_required() -> None:
    h = Harness()
    call, _ = h.invite(body="")  # a late offer: ours goes out, the plain answer comes in the ACK
    h.answer_call(call, plan=replace(PLAN, require_srtp=True))
    (ok,) = h.take()
    tag = message.NameAddr.parse(ok.get("to") or "").tag
    h.feed(request("ACK", branch="z9hG4bKack1", to_tag=tag, body=offer_sdp()))
    plain = request("INVITE", branch="z9hG4bKre1", cseq=2, to_tag=tag, body=offer_sdp(version=2))
    assert statuses(h.feed(plain)) == [488]
    assert call in h.ua.calls  # the call goes on with what it had


def test_a_refusal_can_carry_retry_after() -> None:
    h = Harness()
    call, _ = h.invite()
    h.reject(call, 503, "Service Unavailable (overloaded)", retry_after_s=30)
    (refusal,) = h.take()
    assert refusal.status == 503 and refusal.get("retry-after") == "30"
