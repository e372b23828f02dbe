"""Reliable provisional answers (RFC 3262, 100rel/PRACK) and session timers (RFC 4028) in the sans-IO
user agent core, as callee and as caller: messages in, messages out, a fake clock stepped through the
core's own timers. Carriers require both; without them such calls got 420."""

from __future__ import annotations

from gateway.sip import message
from gateway.sip.useragent import T1, CallState, Peer
from tests.support.useragent import PLAN, Harness, offer_sdp, request, response_to, statuses, to_tag

CALLEE = Peer("udp", ("192.0.2.20", 5070))
CARRIER = ("Supported: 100rel, timer",)


def answer_sdp() -> str:
    return offer_sdp("8 101").replace("192.0.2.10", "192.0.2.20")


# -- as callee: reliable provisional answers -------------------------------------------------------


def test_a_caller_requiring_100rel_gets_a_reliable_180_and_our_answer_after_its_prack() -> None:
    h = Harness()
    out = h.feed(request("INVITE", body=offer_sdp(), extra=("Require: 100rel", "Supported: timer")))
    assert statuses(out) == [100, 180]
    ringing = out[1]
    rseq = int(ringing.get("rseq") or "0")
    assert ringing.get("require") == "100rel" and 1 <= rseq < 2**31 and to_tag(ringing)
    assert ringing.get("contact") == "<sip:gateway@198.51.100.1:5060>"
    call = h.events.calls[-1].call
    h.answer_call(call)
    assert h.take() == []  # the 200 waits for the PRACK of our 180 (RFC 3262 3)
    again = h.run_until(1.6)  # retransmitted at T1, then 2*T1 later
    assert [(at, m.status, m.get("rseq")) for at, m in again] == [(T1, 180, str(rseq)), (3 * T1, 180, str(rseq))]
    prack = request(
        "PRACK", branch="z9hG4bKprack1", cseq=2, to_tag=to_tag(ringing), extra=(f"RAck: {rseq} 1 INVITE",)
    )
    ok_prack, ok = h.feed(prack)
    assert (ok_prack.status, ok_prack.get("cseq")) == (200, "2 PRACK")
    assert (ok.status, ok.get("cseq"), to_tag(ok)) == (200, "1 INVITE", to_tag(ringing))
    assert "m=audio 30000" in ok.text()
    assert h.feed(request("ACK", branch="z9hG4bKack1", to_tag=to_tag(ok))) == []
    assert [m.status for _, m in h.run_until(40.0)] == []  # no more 180s, no 200s
    assert h.ua.call_state(call) is CallState.CONFIRMED


def test_a_prack_naming_another_answer_gets_481_and_the_answer_keeps_waiting() -> None:
    h = Harness()
    _, ringing = h.feed(request("INVITE", body=offer_sdp(), extra=("Require: 100rel",)))
    rseq = int(ringing.get("rseq") or "0")
    h.answer_call(h.events.calls[-1].call)
    for cseq, rack in enumerate((f"{rseq + 1} 1 INVITE", f"{rseq} 7 INVITE", "x 1 INVITE", ""), start=2):
        (refused,) = h.feed(
            request("PRACK", branch=f"z9hG4bKbad{cseq}", cseq=cseq, to_tag=to_tag(ringing), extra=(f"RAck: {rack}",))
        )
        assert refused.status == 481
    assert [m.status for m in h.take()] == []


def test_no_prack_within_64_t1_refuses_the_call_with_a_5xx() -> None:
    h = Harness()
    h.feed(request("INVITE", body=offer_sdp(), extra=("Require: 100rel",)))
    call = h.events.calls[-1].call
    h.answer_call(call)
    sent = h.run_until(40.0)
    provisional = [at for at, m in sent if m.status == 180]
    assert provisional == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # T1 doubling (RFC 3262 3)
    (refusal,) = [m for at, m in sent if m.status >= 300][:1]
    assert (refusal.status, refusal.reason) == (500, "No PRACK")
    assert h.events.named("disconnected") == [("disconnected", str(call), "500", "No PRACK")]


def test_a_caller_that_only_supports_100rel_is_answered_at_once() -> None:
    h = Harness()
    call, _ = h.invite(extra=("Supported: 100rel",))
    assert h.answer(call).status == 200


# -- as callee: session timers --------------------------------------------------------------------


def connect_with(*headers: str) -> tuple[Harness, int, message.SipMessage]:
    """An answered, acknowledged call whose INVITE carried `headers`: (harness, call, our 200)."""
    h = Harness()
    call, _ = h.invite(extra=headers)
    ok = h.answer(call)
    assert h.feed(request("ACK", branch="z9hG4bKack1", to_tag=to_tag(ok))) == []
    return h, call, ok


def test_the_caller_refreshes_when_it_can_and_silence_ends_the_call_before_the_interval() -> None:
    """RFC 4028 9, 10: no refresher named and the caller supports timers: it refreshes; with no
    refresh the call ends with a BYE at interval - min(32, interval / 3)."""
    h, call, ok = connect_with("Supported: timer", "Session-Expires: 90")
    assert (ok.get("session-expires"), ok.get("require")) == ("90;refresher=uac", "timer")
    sent = h.run_until(100.0)
    byes = [(at, m) for at, m in sent if m.method == "BYE"]
    assert byes and byes[0][0] == 60.0
    assert byes[0][1].get("reason") == 'SIP;cause=408;text="Session expired"'
    assert h.events.named("disconnected") == [("disconnected", str(call), "408", "Session expired")]


def test_a_refresh_by_the_caller_keeps_the_call_up() -> None:
    h, call, ok = connect_with("Supported: timer", "Session-Expires: 90;refresher=uac")
    h.run_until(45.0)
    refresh = request(
        "UPDATE", branch="z9hG4bKupd1", cseq=2, to_tag=to_tag(ok), extra=("Supported: timer", "Session-Expires: 90;refresher=uac")
    )
    (answered,) = h.feed(refresh)
    assert (answered.status, answered.get("session-expires"), answered.get("require")) == (200, "90;refresher=uac", "timer")
    assert [m.method for _, m in h.run_until(104.0)] == []  # 45 + 60: not yet
    assert [m.method for _, m in h.run_until(105.2)] == ["BYE"]


def test_an_interval_under_our_min_se_gets_422() -> None:
    h = Harness()
    out = h.feed(request("INVITE", body=offer_sdp(), extra=("Supported: timer", "Session-Expires: 60")))
    assert [(m.status, m.get("min-se")) for m in out] == [(422, "90")] and h.events.calls == []


def test_an_unreadable_session_expires_gets_400() -> None:
    h = Harness()
    (refused,) = h.feed(request("INVITE", body=offer_sdp(), extra=("Session-Expires: soon",)))
    assert refused.status == 400 and "Session-Expires" in refused.reason


def test_we_refresh_with_update_when_asked_to_and_the_caller_takes_update() -> None:
    h, _call, ok = connect_with("Supported: timer", "Session-Expires: 120;refresher=uas", "Allow: INVITE, ACK, BYE, UPDATE")
    assert ok.get("session-expires") == "120;refresher=uas"
    sent = h.run_until(60.0)
    (update,) = [m for _, m in sent]
    assert (update.method, update.get("session-expires"), update.body) == ("UPDATE", "120;refresher=uac", b"")
    assert to_tag(update) == "caller1" and message.NameAddr.parse(update.get("from") or "").tag == to_tag(ok)
    h.feed(response_to(update, 200, "OK", extra=("Session-Expires: 120;refresher=uac", "Require: timer")), CALLEE)
    assert [(at, m.method) for at, m in h.run_until(120.2)] == [(120.0, "UPDATE")]  # the next one half-way again


def test_we_refresh_with_a_reinvite_of_our_sdp_when_the_caller_has_no_update() -> None:
    h, _call, ok = connect_with("Supported: timer", "Session-Expires: 90;refresher=uas", "Allow: INVITE, ACK, BYE")
    (reinvite,) = [m for _, m in h.run_until(45.0)]
    assert reinvite.method == "INVITE" and reinvite.body == ok.body  # our SDP again, unchanged
    assert reinvite.get("session-expires") == "90;refresher=uac"
    (ack,) = h.feed(response_to(reinvite, 200, "OK", body=offer_sdp(), extra=("Session-Expires: 90;refresher=uac",)), CALLEE)
    assert (ack.method, ack.get("cseq")) == ("ACK", reinvite.get("cseq").replace("INVITE", "ACK"))  # type: ignore[union-attr]
    assert [(at, m.method) for at, m in h.run_until(90.2)] == [(90.0, "INVITE")]  # next refresh at 45 + 45, no BYE


def test_a_refresh_answered_481_ends_the_call() -> None:
    h, call, _ok = connect_with("Supported: timer", "Session-Expires: 90;refresher=uas", "Allow: UPDATE")
    (update,) = [m for _, m in h.run_until(45.0)]
    (bye,) = h.feed(response_to(update, 481, "Call/Transaction Does Not Exist"), CALLEE)
    assert bye.method == "BYE" and h.events.named("disconnected") == [("disconnected", str(call), "408", "Session refresh failed")]


def test_a_reinvite_while_our_refresh_is_out_gets_491() -> None:
    h, _call, ok = connect_with("Supported: timer", "Session-Expires: 90;refresher=uas", "Allow: UPDATE")
    h.run_until(45.0)
    (glare,) = h.feed(request("INVITE", branch="z9hG4bKre2", cseq=2, to_tag=to_tag(ok), body=offer_sdp(version=2)))
    assert glare.status == 491


def test_without_session_expires_there_is_no_session_timer() -> None:
    h, _call, _ok = connect_with("Supported: timer")
    assert h.run_until(4000.0) == []


# -- as caller ------------------------------------------------------------------------------------


def dial() -> tuple[Harness, int, message.SipMessage]:
    h = Harness()
    call = h.dial("sip:+4930111@carrier.example", CALLEE, PLAN)
    (invite,) = h.take()
    return h, call, invite


def test_our_invite_says_what_we_support_and_asks_for_a_session_timer() -> None:
    _, _, invite = dial()
    assert invite.get("supported") == "100rel, timer"
    assert (invite.get("session-expires"), invite.get("min-se")) == ("1800", "90")
    assert "PRACK" in (invite.get("allow") or "")


def test_a_reliable_183_with_sdp_is_pracked_and_is_the_answer() -> None:
    """RFC 3262 4, 5: PRACK in the early dialog with RAck; the 183's SDP is the answer; its
    retransmission is not PRACKed again; the 2xx's copy of the answer is not taken twice."""
    h, call, invite = dial()
    progress = response_to(invite, 183, "Session Progress", body=answer_sdp(), extra=("Require: 100rel", "RSeq: 7"))
    (prack,) = h.feed(progress, CALLEE)
    assert (prack.method, prack.get("rack"), prack.uri) == ("PRACK", "7 1 INVITE", "sip:room@192.0.2.20:5070")
    assert to_tag(prack) == "callee1" and prack.get("cseq") == "2 PRACK"
    assert prack.all("route") == ["<sip:proxy2.example;lr>", "<sip:proxy1.example;lr>"]
    assert h.events.named("media") == [("media", str(call), "pcma", "sendrecv")]
    assert h.feed(progress, CALLEE) == []  # a retransmission: its PRACK is the transaction's to repeat
    assert h.feed(response_to(prack, 200, "OK"), CALLEE) == []
    (ack,) = h.feed(response_to(invite, 200, "OK", body=answer_sdp()), CALLEE)
    assert (ack.method, ack.get("cseq")) == ("ACK", "1 ACK")
    assert h.events.named("media") == [("media", str(call), "pcma", "sendrecv")]
    assert h.events.named("confirmed") == [("confirmed", str(call))]


def test_a_422_to_our_invite_asks_again_for_the_far_ends_minimum() -> None:
    h, _call, invite = dial()
    out = h.feed(response_to(invite, 422, "Session Interval Too Small", extra=("Min-SE: 3600",)), CALLEE)
    ack, again = out
    assert ack.method == "ACK" and again.method == "INVITE"
    assert (again.get("session-expires"), again.get("min-se"), again.get("cseq")) == ("3600", "3600", "2 INVITE")
    assert again.call_id == invite.call_id and again.top_via.branch != invite.top_via.branch
    # a second 422 asking for no more ends the call rather than looping
    out = h.feed(response_to(again, 422, "Session Interval Too Small", extra=("Min-SE: 3600",)), CALLEE)
    assert [m.method for m in out] == ["ACK"]


def test_as_caller_we_refresh_when_the_answer_says_uac() -> None:
    h, _call, invite = dial()
    extra = ("Session-Expires: 90;refresher=uac", "Require: timer", "Allow: INVITE, ACK, BYE, UPDATE")
    h.feed(response_to(invite, 200, "OK", body=answer_sdp(), extra=extra), CALLEE)
    sent = h.run_until(45.0)
    assert [(at, m.method, m.get("session-expires")) for at, m in sent] == [(45.0, "UPDATE", "90;refresher=uac")]


def test_as_caller_we_end_the_call_when_the_callee_does_not_refresh() -> None:
    h, call, invite = dial()
    extra = ("Session-Expires: 90;refresher=uas", "Require: timer")
    h.feed(response_to(invite, 200, "OK", body=answer_sdp(), extra=extra), CALLEE)
    sent = h.run_until(60.2)
    assert [(at, m.method) for at, m in sent] == [(60.0, "BYE")]
    assert h.events.named("disconnected") == [("disconnected", str(call), "408", "Session expired")]


def test_a_session_expires_without_require_timer_makes_us_the_refresher() -> None:
    """RFC 4028 7.2: a proxy asked for the timer and the callee does not do timers: we refresh."""
    h, _call, invite = dial()
    h.feed(response_to(invite, 200, "OK", body=answer_sdp(), extra=("Session-Expires: 100;refresher=uas",)), CALLEE)
    (reinvite,) = [m for _, m in h.run_until(50.0)]
    assert reinvite.method == "INVITE" and reinvite.body == invite.body
