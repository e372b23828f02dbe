"""The sans-IO SIP user agent core against RFC 3261 (and 3264, 3311, 3326, 3581, 6086): messages in,
messages out, a fake clock stepped through the core's own timers; no sockets, no sleeps."""

from __future__ import annotations

import pytest

from gateway.sip import message, sdp
from gateway.sip.negotiation import MediaSession
from gateway.sip.useragent import T1, T2, Peer, UserAgent
from tests.support.useragent import (
    PLAN,
    TCP,
    Harness,
    offer_sdp,
    request,
    response_to,
    statuses,
    to_tag,
)


def test_invite_gets_100_trying_at_once_and_reports_the_caller() -> None:
    """RFC 3261 8.2.6.1 and 17.2.1: a 100 Trying at once, which carries no To tag."""
    h = Harness()
    call, trying = h.invite()
    assert trying.reason == "Trying" and to_tag(trying) == ""
    assert trying.get("call-id") == "call-1@pbx.example" and trying.get("cseq") == "1 INVITE"
    (incoming,) = h.events.calls
    assert (incoming.call, incoming.user, incoming.display_name, incoming.from_user) == (
        call,
        "4711",
        "Anna Example",
        "+4930123",
    )
    assert incoming.offer == offer_sdp() and incoming.transport == "udp" and incoming.source == "192.0.2.10"


def test_answer_sends_200_with_tag_contact_and_sdp_retransmitted_until_the_ack() -> None:
    """RFC 3261 13.3.1.4: the 2xx is retransmitted at T1, 2*T1, 4*T1 ... capped at T2 until the ACK."""
    h = Harness()
    call, _ = h.invite()
    ok = h.answer(call)
    assert (ok.status, ok.content_type) == (200, "application/sdp")
    assert to_tag(ok) and ok.get("contact") == "<sip:gateway@198.51.100.1:5060>"
    assert "m=audio 30000 RTP/AVP 0 101" in ok.text()
    sent = h.run_until(16.0)
    assert [at for at, _ in sent] == [T1, 3 * T1, 7 * T1, 7 * T1 + T2, 7 * T1 + 2 * T2, 7 * T1 + 3 * T2]
    assert all(m.status == 200 and to_tag(m) == to_tag(ok) for _, m in sent)
    assert h.feed(request("ACK", branch="z9hG4bKack1", to_tag=to_tag(ok))) == []
    assert h.run_until(40.0) == []
    assert h.events.named("confirmed") == [("confirmed", str(call))]
    assert h.feed(request("ACK", branch="z9hG4bKack1", to_tag=to_tag(ok))) == []  # a retransmitted ACK
    assert h.events.named("confirmed") == [("confirmed", str(call))]


def test_retransmitted_invite_gets_the_last_response_again() -> None:
    """RFC 3261 17.2.1: a retransmitted INVITE (same branch) gets the most recent response again."""
    h = Harness()
    call, _ = h.invite()
    assert statuses(h.feed(request("INVITE", body=offer_sdp()))) == [100]
    ok = h.answer(call)
    (again,) = h.feed(request("INVITE", body=offer_sdp()))
    assert again.status == 200 and to_tag(again) == to_tag(ok) and len(h.events.calls) == 1


def test_no_ack_for_the_200_ends_the_call_with_a_bye() -> None:
    """RFC 3261 13.3.1.4: no ACK after 64*T1 of 2xx retransmissions: the session ends with a BYE."""
    h = Harness()
    call, _ = h.invite()
    h.answer(call)
    sent = [m for _, m in h.run_until(40.0)]
    bye = sent[-1]
    assert bye.method == "BYE" and bye.get("reason") == 'SIP;cause=408;text="No ACK"'
    assert h.events.named("disconnected") == [("disconnected", str(call), "408", "No ACK")]



def test_no_ack_bye_comes_at_64_t1() -> None:
    """RFC 3261 13.3.1.4: the UAS gives up after retransmitting the 2xx for 64*T1 seconds."""
    h = Harness()
    call, _ = h.invite()
    h.answer(call)
    assert "BYE" in [m.method for _, m in h.run_until(32.0)]


def test_over_tcp_nothing_is_retransmitted() -> None:
    """RFC 3261 13.3.1.4, 17.2.1: over a reliable transport the 2xx and failures are sent once."""
    h = Harness()
    call, _ = h.invite(peer=TCP)
    ok = h.answer(call)
    assert ok.get("contact") == "<sip:gateway@198.51.100.1:5060;transport=tcp>"
    assert h.run_until(31.0) == []
    h.feed(request("ACK", branch="z9hG4bKack1", to_tag=to_tag(ok)), TCP)
    assert h.run_until(100.0) == [] and len(h.events.named("confirmed")) == 1
    h.feed(request("INVITE", branch="z9hG4bKinv2", call_id="other"), TCP)
    h.reject(h.events.calls[-1].call, 486, "Meeting full")
    assert statuses(h.take()) == [486] and h.run_until(200.0) == []


def test_refusal_is_retransmitted_until_its_ack() -> None:
    """RFC 3261 17.2.1: a 3xx-6xx is retransmitted over UDP (timer G) until the ACK (same branch)."""
    h = Harness()
    call, _ = h.invite()
    h.reject(call, 486, "Meeting full")
    (busy,) = h.take()
    assert (busy.status, busy.reason) == (486, "Meeting full") and to_tag(busy)
    assert h.events.named("disconnected") == [("disconnected", str(call), "486", "Meeting full")]
    assert [(at, m.status) for at, m in h.run_until(2.0)] == [(0.5, 486), (1.5, 486)]
    assert h.feed(request("ACK", to_tag=to_tag(busy))) == []  # the ACK of a failure reuses the branch
    assert h.run_until(60.0) == []


def test_cancel_before_the_answer() -> None:
    """RFC 3261 9.2: 200 to the CANCEL, 487 to the INVITE (with the same To tag)."""
    h = Harness()
    call, _ = h.invite()
    cancel_ok, terminated = h.feed(request("CANCEL"))
    assert (cancel_ok.status, cancel_ok.cseq) == (200, (1, "CANCEL"))
    assert (terminated.status, terminated.cseq) == (487, (1, "INVITE")) and to_tag(terminated) == to_tag(
        cancel_ok
    )
    assert h.events.named("disconnected") == [("disconnected", str(call), "487", "Request Terminated")]
    assert statuses(h.feed(request("CANCEL"))) == [200]  # a retransmitted CANCEL
    h.ua.answer(call, None)  # too late: nothing happens
    assert h.take() == []


def test_cancel_for_an_unknown_transaction_gets_481() -> None:
    """RFC 3261 9.2: a CANCEL matching no transaction is answered 481."""
    assert statuses(Harness().feed(request("CANCEL", branch="z9hG4bKnothing"))) == [481]


# -- offers and answers ---------------------------------------------------------------------------


def test_late_offer_is_ours_in_the_200_and_the_answer_comes_in_the_ack() -> None:
    """RFC 3261 13.3.1.1 / RFC 3264: an INVITE without SDP gets our offer; the ACK carries the answer."""
    h = Harness()
    call, _ = h.invite(body="")
    assert h.events.calls[0].offer is None
    ok = h.answer(call, late=True)
    offer = sdp.parse(ok.text())
    assert offer.media[0].formats == ["111", "8", "0", "101", "110"]
    assert {"101 telephone-event/8000", "110 telephone-event/48000"} <= set(offer.media[0].values("rtpmap"))
    answer = "v=0\r\no=phone 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    answer += "m=audio 40000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    h.feed(request("ACK", branch="z9hG4bKack1", to_tag=to_tag(ok), body=answer))
    assert h.events.log[1:] == [("media", str(call), "pcma", "sendrecv"), ("confirmed", str(call))]
    assert h.events.choices[0].remote_port == 40000 and h.events.choices[0].telephone_event_pt == 101


def test_reinvite_putting_us_on_hold_is_answered_recvonly() -> None:
    """RFC 3264 6.1 and 8.4: a sendonly offer is answered recvonly."""
    h = Harness()
    call, tag = h.connect()
    (ok,) = h.feed(
        request("INVITE", branch="z9hG4bKre1", cseq=2, to_tag=tag, body=offer_sdp(direction="sendonly"))
    )
    assert ok.status == 200 and to_tag(ok) == tag and "a=recvonly" in ok.text()
    assert h.events.log[-1] == ("media", str(call), "pcmu", "recvonly")
    assert " 7 2 IN IP4 " in ok.text()  # the same session, its version one up


def test_reinvite_without_sdp_gets_our_offer_with_the_codec_in_use_first() -> None:
    """RFC 3261 14.2 / RFC 3264 8: a re-INVITE without a body asks for our offer."""
    h = Harness()
    _, tag = h.connect()
    (ok,) = h.feed(request("INVITE", branch="z9hG4bKre1", cseq=2, to_tag=tag))
    assert ok.status == 200 and sdp.parse(ok.text()).media[0].formats == ["0", "111", "8", "101", "110"]


def test_update_without_a_body_is_a_refresh() -> None:
    """RFC 3311 5.2: an UPDATE without an offer is answered 200 without one."""
    h = Harness()
    _, tag = h.connect()
    (ok,) = h.feed(request("UPDATE", branch="z9hG4bKup1", cseq=2, to_tag=tag))
    assert (ok.status, ok.body, ok.get("contact") is not None) == (200, b"", True)


def test_reinvite_we_cannot_take_gets_488_and_the_call_goes_on() -> None:
    """RFC 3261 14.2: a re-offer the UAS cannot accept is answered 488; the session is unchanged."""
    h = Harness()
    call, tag = h.connect()
    assert statuses(
        h.feed(request("INVITE", branch="z9hG4bKre1", cseq=2, to_tag=tag, body=offer_sdp("3")))
    ) == [488]
    assert call in h.ua.calls and not h.events.named("disconnected")
    assert statuses(h.feed(request("OPTIONS", branch="z9hG4bKopt", cseq=3, to_tag=tag))) == [200]


def test_sdp_version_goes_up_by_one_after_a_refused_reoffer() -> None:
    """RFC 3264 8: the o= version of each new SDP MUST be one more than the previous SDP's."""
    h = Harness()
    _, tag = h.connect()  # our answer was version 1
    h.feed(
        request("INVITE", branch="z9hG4bKre1", cseq=2, to_tag=tag, body=offer_sdp("3"))
    )  # 488, no SDP sent
    (ok,) = h.feed(request("INVITE", branch="z9hG4bKre2", cseq=3, to_tag=tag, body=offer_sdp(version=2)))
    assert " 7 2 IN IP4 " in ok.text()


# -- INFO, BYE --------------------------------------------------------------------------------------


def test_info_digits_in_both_formats() -> None:
    """RFC 6086 / RFC 3261 12.2.2: INFO in a dialog answered 200; the DTMF key reported."""
    h = Harness()
    call, tag = h.connect()
    relay = request(
        "INFO",
        branch="z9hG4bKi1",
        cseq=2,
        to_tag=tag,
        body="Signal=5\r\nDuration=160\r\n",
        content_type="application/dtmf-relay",
    )
    bare = request("INFO", branch="z9hG4bKi2", cseq=3, to_tag=tag, body="#", content_type="application/dtmf")
    assert statuses(h.feed(relay) + h.feed(bare)) == [200, 200]
    assert h.events.named("digit") == [
        ("digit", str(call), "5", "sip-info"),
        ("digit", str(call), "#", "sip-info"),
    ]


def test_info_picture_fast_update_asks_for_a_keyframe() -> None:
    """RFC 5168: an INFO with application/media_control+xml picture_fast_update is answered 200 and
    reported; one of another type (or a media_control without the element) only gets its 200. Our
    own INFO carries the same element."""
    h = Harness()
    call, tag = h.connect()
    fast_update = request(
        "INFO", branch="z9hG4bKf1", cseq=2, to_tag=tag, body=message.picture_fast_update_body(),
        content_type="application/media_control+xml",
    )
    other = request(
        "INFO", branch="z9hG4bKf2", cseq=3, to_tag=tag, body="<media_control/>",
        content_type="application/media_control+xml",
    )
    unrelated = request("INFO", branch="z9hG4bKf3", cseq=4, to_tag=tag, body="picture_fast_update", content_type="text/plain")
    slides = request(
        "INFO", branch="z9hG4bKf4", cseq=5, to_tag=tag, body=message.picture_fast_update_body("12"),
        content_type="application/media_control+xml",
    )  # (RFC 5168's <stream_id>: the a=label of the slides line)
    assert statuses(h.feed(fast_update) + h.feed(other) + h.feed(unrelated) + h.feed(slides)) == [200] * 4
    assert h.events.named("keyframe") == [("keyframe", str(call)), ("keyframe", str(call), "12")]
    assert "<stream_id>12</stream_id></vc_primitive>" in message.picture_fast_update_body("12")


def test_bye_from_the_caller() -> None:
    """RFC 3261 15.1.2: a BYE in the dialog is answered 200 and the session ends."""
    h = Harness()
    call, tag = h.connect()
    (ok,) = h.feed(request("BYE", branch="z9hG4bKbye", cseq=2, to_tag=tag))
    assert (ok.status, to_tag(ok)) == (200, tag) and call not in h.ua.calls
    assert h.events.log[-1] == ("disconnected", str(call), "200", "Remote BYE")
    assert statuses(h.feed(request("BYE", branch="z9hG4bKbye", cseq=2, to_tag=tag))) == [
        200
    ]  # retransmission


def test_our_bye_with_a_reason_follows_the_route_set_until_answered() -> None:
    """RFC 3261 12.2.1.1, 15.1.1, 17.1.2 and RFC 3326: our BYE in the dialog, with Route and Reason."""
    h = Harness()
    routes = ("Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>",)
    call, tag = h.connect(extra=routes)
    h.hang_up(call, (403, "Wrong PIN"))
    (bye,) = h.take()
    assert (bye.method, bye.uri, bye.cseq[1]) == ("BYE", "sip:anna@192.0.2.10:5060", "BYE")
    assert message.NameAddr.parse(bye.get("from") or "").tag == tag and to_tag(bye) == "caller1"
    assert bye.get("call-id") == "call-1@pbx.example" and bye.top_via.branch.startswith("z9hG4bK")
    assert bye.all("route") == ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    assert bye.get("reason") == 'SIP;cause=403;text="Wrong PIN"'
    assert h.events.log[-1] == ("disconnected", str(call), "200", "Local BYE")
    assert [at for at, m in h.run_until(4.0) if m.method == "BYE"] == [0.5, 1.5, 3.5]
    ok = f"SIP/2.0 200 OK\r\nVia: {bye.get('via')}\r\nFrom: {bye.get('from')}\r\nTo: {bye.get('to')}\r\n"
    ok += f"Call-ID: call-1@pbx.example\r\nCSeq: {bye.get('cseq')}\r\nContent-Length: 0\r\n\r\n"
    assert h.feed(ok.encode()) == []
    assert h.run_until(60.0) == []


def test_hang_up_before_the_ack_waits_for_it() -> None:
    """RFC 3261 15: the callee sends its BYE only once the ACK has confirmed the dialog."""
    h = Harness()
    call, _ = h.invite()
    ok = h.answer(call)
    h.hang_up(call, (403, "Wrong PIN"))
    assert h.take() == []
    (bye,) = h.feed(request("ACK", branch="z9hG4bKack1", to_tag=to_tag(ok)))
    assert bye.method == "BYE" and "cause=403" in (bye.get("reason") or "")


# -- requests we refuse -----------------------------------------------------------------------------


def test_request_in_an_unknown_dialog_gets_481() -> None:
    """RFC 3261 12.2.2: a request with a To tag matching no dialog gets 481."""
    assert statuses(Harness().feed(request("BYE", cseq=2, to_tag="nobodys"))) == [481]


def test_options_outside_a_dialog() -> None:
    """RFC 3261 11.2: OPTIONS is answered 200 with Allow (and Accept)."""
    (ok,) = Harness().feed(request("OPTIONS", branch="z9hG4bKopt"))
    assert (
        ok.status == 200
        and "INVITE" in (ok.get("allow") or "")
        and "application/sdp" in (ok.get("accept") or "")
    )


def test_unknown_method_gets_405_with_allow() -> None:
    """RFC 3261 8.2.1: a method the UAS does not support gets 405 with an Allow header."""
    (refused,) = Harness().feed(request("MESSAGE", branch="z9hG4bKmsg", body="hi", content_type="text/plain"))
    assert refused.status == 405 and "BYE" in (refused.get("allow") or "")


def test_required_extension_we_lack_gets_420() -> None:
    """RFC 3261 8.2.2.3: Require naming an unsupported extension gets 420 with Unsupported."""
    h = Harness()
    (refused,) = h.feed(request("INVITE", extra=("Require: precondition, 100rel",), body=offer_sdp()))
    assert (refused.status, refused.get("unsupported")) == (420, "precondition") and h.events.calls == []


def test_max_forwards_zero_gets_483() -> None:
    """RFC 3261 16.3 / 20.22: a request with Max-Forwards 0 is not taken further: 483."""
    h = Harness()
    data = request("INVITE", body=offer_sdp()).replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
    assert statuses(h.feed(data)) == [483] and h.events.calls == []


def test_max_calls_reached_gets_503_with_retry_after() -> None:
    """RFC 3261 21.5.4: 503 Service Unavailable, with Retry-After."""
    h = Harness(max_calls=1)
    h.invite()
    (busy,) = h.feed(request("INVITE", branch="z9hG4bKinv2", body=offer_sdp(), call_id="second"))
    assert busy.status == 503 and busy.get("retry-after") == "30" and len(h.events.calls) == 1


# -- malformed input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage", [b"\x00\xff\xfe garbage", b"hello world\r\n\r\n", b"SIP/2.0 abc\r\n\r\n", b"\r\n\r\n"]
)
def test_garbage_is_dropped_without_an_answer(garbage: bytes) -> None:
    """RFC 3261 18.3: what is not a SIP message is discarded."""
    h = Harness()
    assert h.feed(garbage) == [] and h.events.log == []


def test_bad_cseq_gets_400_naming_the_problem() -> None:
    """RFC 3261 8.2 / 21.4.1: a malformed request that can be answered gets 400 with the reason."""
    h = Harness()
    (bad,) = h.feed(request("INVITE", cseq_method="BYE", body=offer_sdp()))
    assert bad.status == 400 and "bad CSeq" in bad.reason and bad.get("call-id") == "call-1@pbx.example"
    assert h.events.calls == []


def test_a_response_matching_nothing_is_ignored() -> None:
    """RFC 3261 18.1.2: a response matching no client transaction is discarded."""
    h = Harness()
    stray = (
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKnone\r\nFrom: <sip:a@b>;tag=1\r\n"
    )
    stray += "To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
    assert h.feed(stray.encode()) == [] and h.feed(b"SIP/2.0 200 OK\r\nCSeq: 1 BYE\r\n\r\n") == []


# -- bugs -------------------------------------------------------------------------------------------


def test_responses_carry_received_and_rport() -> None:
    """RFC 3261 18.2.1 and RFC 3581 4: the server MUST add received= (and rport=) to the top Via."""
    h = Harness()
    natted = Peer("udp", ("203.0.113.99", 40001))
    (trying,) = h.feed(request("INVITE", via="SIP/2.0/UDP 10.0.0.5:5060;rport", body=offer_sdp()), natted)
    assert trying.top_via.params.get("received") == "203.0.113.99"
    assert trying.top_via.params.get("rport") == "40001"


def test_retransmitted_bad_invite_gets_its_refusal_again() -> None:
    """RFC 3261 17.2.1: a retransmitted request gets the transaction's final response again (here
    416 for a Request-URI scheme we do not serve, RFC 3261 8.2.2.1)."""
    h = Harness()
    data = request("INVITE", uri="mailto:4711@gw.example", body=offer_sdp())
    assert statuses(h.feed(data)) == [416]
    assert statuses(h.feed(data)) == [416]


def test_503_to_an_invite_is_retransmitted_over_udp() -> None:
    """RFC 3261 17.2.1: every 3xx-6xx to an INVITE over UDP is retransmitted (timer G) until the ACK."""
    h = Harness(max_calls=0)
    assert statuses(h.feed(request("INVITE", body=offer_sdp()))) == [503]
    assert [m.status for _, m in h.run_until(1.0)] == [503]


def test_mutated_invites_never_raise_and_every_answer_parses() -> None:
    """Bad input never crashes the core (ARCHITECTURE: a clear error or nothing, never an exception):
    thousands of randomly damaged INVITEs, and whatever goes out is itself valid SIP."""
    import random

    sent: list[bytes] = []
    ua = UserAgent(local={"udp": ("127.0.0.1", 5060)})
    base = (
        b"INVITE sip:demo@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKx;rport\r\n"
        b"From: \"A\" <sip:a@b>;tag=1\r\nTo: <sip:demo@c>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
        b"Contact: <sip:a@192.0.2.4>\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n"
    )
    rng = random.Random(7)
    for i in range(3000):
        data = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(len(data))
            roll = rng.random()
            if roll < 0.4:
                data[pos] = rng.randrange(256)
            elif roll < 0.7:
                del data[pos]
            else:
                data.insert(pos, rng.choice(b';:<>"\r\n ,=@'))
        ua.receive(bytes(data).replace(b"z9hG4bKx", b"z9hG4bK%d" % i), Peer("udp", ("192.0.2.4", 5060)), 0.0)
        sent += [data for data, _ in ua.datagrams_to_send(0.0)]
        while ua.next_event() is not None:
            pass
    assert sent, "nothing was answered at all"
    for data in sent:
        message.parse(data)  # raises if we ever sent something malformed


# -- dial-out (UAC) -------------------------------------------------------------------------------


CALLEE = Peer("udp", ("192.0.2.20", 5070))


def test_dial_out_offers_takes_the_answer_and_acks_the_2xx_with_a_new_branch() -> None:
    """RFC 3261 13.2.2.4 / 17.1.1.3: 1xx stops our retransmissions; the 2xx is ACKed end to end
    (new branch, the callee's Contact as Request-URI, the route set reversed); a retransmitted 2xx
    is ACKed again. The answer's codec comes as a media event."""
    h = Harness()
    call = h.dial("sip:room@192.0.2.20:5070", CALLEE, PLAN, display_name="Council")
    (invite,) = h.take()
    assert invite.method == "INVITE" and '"Council"' in (invite.get("from") or "")
    assert "m=audio 30000 RTP/AVP" in invite.text()
    assert [m.method for _, m in h.run_until(0.6)] == ["INVITE"]  # retransmitted at T1 (UDP)
    h.feed(response_to(invite, 180, "Ringing"), CALLEE)
    assert h.run_until(5.0) == []  # provisional: no more retransmissions
    answer = offer_sdp("8 101").replace("192.0.2.10", "192.0.2.20")
    (ack,) = h.feed(response_to(invite, 200, "OK", body=answer), CALLEE)
    assert ack.method == "ACK" and ack.uri == "sip:room@192.0.2.20:5070"
    assert ack.top_via.branch != invite.top_via.branch
    assert ack.all("route") == ["<sip:proxy2.example;lr>", "<sip:proxy1.example;lr>"]
    assert h.events.named("media") == [("media", str(call), "pcma", "sendrecv")]
    assert h.events.named("confirmed") == [("confirmed", str(call))]
    (again,) = h.feed(response_to(invite, 200, "OK", body=answer), CALLEE)
    assert again.method == "ACK" and h.events.named("confirmed") == [("confirmed", str(call))]
    # and the dialog works: our BYE goes to the callee's target with both tags
    h.hang_up(call, (403, "Removed by the host"))
    (bye,) = h.take()
    assert bye.method == "BYE" and bye.uri == "sip:room@192.0.2.20:5070"
    assert message.NameAddr.parse(bye.get("to") or "").tag == "callee1"


def test_a_refused_dial_out_is_acked_on_the_same_branch_and_reported() -> None:
    """RFC 3261 17.1.1.3: the ACK of a failure belongs to the INVITE transaction (same branch)."""
    h = Harness()
    call = h.dial("sip:room@192.0.2.20:5070", CALLEE, PLAN)
    (invite,) = h.take()
    (ack,) = h.feed(response_to(invite, 486, "Busy Here"), CALLEE)
    assert ack.method == "ACK" and ack.top_via.branch == invite.top_via.branch
    assert message.NameAddr.parse(ack.get("to") or "").tag == "callee1"
    assert h.events.named("disconnected") == [("disconnected", str(call), "486", "Busy Here")]


def test_an_unanswered_dial_out_is_cancelled_after_64_t1() -> None:
    """Timer B: no final answer for 32 s ends the attempt (CANCEL, 408 to the gateway)."""
    h = Harness()
    call = h.dial("sip:room@192.0.2.20:5070", CALLEE, PLAN)
    (invite,) = h.take()
    h.feed(response_to(invite, 180, "Ringing"), CALLEE)
    sent = h.run_until(33.0)
    assert [m.method for _, m in sent] == ["CANCEL"]
    assert sent[0][1].top_via.branch == invite.top_via.branch
    assert h.events.named("disconnected") == [("disconnected", str(call), "408", "No answer")]
    (ack,) = h.feed(response_to(invite, 487, "Request Terminated"), CALLEE)
    assert ack.method == "ACK"


def challenge_to(invite: message.SipMessage, status: int, *challenges: str) -> bytes:
    """A proxy's 401/407 to our INVITE, with these challenges."""
    header = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
    extra = "".join(f"{header}: {c}\r\n" for c in challenges)
    data = response_to(invite, status, "Proxy Authentication Required" if status == 407 else "Unauthorized", to_tag="proxy1")
    return data.replace(b"\r\nContent-Length", ("\r\n" + extra.rstrip("\r\n") + "\r\nContent-Length").encode(), 1)


def test_a_challenged_dial_out_is_sent_again_with_digest_and_goes_on() -> None:
    """RFC 3261 22.2: the 407 is ACKed on its branch; the INVITE goes again with Proxy-Authorization
    (SHA-256, the strongest offered), the same Call-ID and From tag, the next CSeq and a new branch;
    its 2xx sets up the call, the ACK carries the new CSeq; a CANCEL would name the new INVITE."""
    from gateway.sip.digest import DigestClient, DigestServer

    server = DigestServer("carrier.example")
    h = Harness()
    session = MediaSession(PLAN)
    call = h.ua.invite("sip:+4930999@carrier.example", CALLEE, session.offer(), "Council", DigestClient("4711", "pw"))
    h.sessions[call] = session
    (invite,) = h.take()
    ack, again = h.feed(challenge_to(invite, 407, *reversed(server.challenges())), CALLEE)
    assert ack.method == "ACK" and ack.top_via.branch == invite.top_via.branch and ack.cseq == (1, "ACK")
    assert again.method == "INVITE" and again.cseq == (2, "INVITE") and again.top_via.branch != invite.top_via.branch
    assert again.call_id == invite.call_id and again.get("from") == invite.get("from") and again.body == invite.body
    authorization = again.get("proxy-authorization") or ""
    assert "algorithm=SHA-256" in authorization
    assert server.verify(authorization, "INVITE", {"4711": "pw"}.get).ok
    assert h.events.named("disconnected") == []
    answer = offer_sdp("8 101").replace("192.0.2.10", "192.0.2.20")
    (ok_ack,) = h.feed(response_to(again, 200, "OK", body=answer), CALLEE)
    assert ok_ack.method == "ACK" and ok_ack.cseq == (2, "ACK")
    assert h.events.named("confirmed") == [("confirmed", str(call))]
    h.hang_up(call)
    (bye,) = h.take()
    assert bye.cseq == (3, "BYE")


def test_a_refused_digest_answer_ends_the_dial_out_with_the_challenge_status() -> None:
    from gateway.sip.digest import DigestClient

    h = Harness()
    session = MediaSession(PLAN)
    call = h.ua.invite("sip:+4930999@carrier.example", CALLEE, session.offer(), "", DigestClient("4711", "wrong"))
    h.sessions[call] = session
    (invite,) = h.take()
    challenge = 'Digest realm="carrier.example", nonce="n1", qop="auth"'
    _ack, again = h.feed(challenge_to(invite, 401, challenge), CALLEE)
    assert again.get("authorization") and again.cseq == (2, "INVITE")
    (ack,) = h.feed(challenge_to(again, 401, challenge), CALLEE)  # the same nonce again: refused
    assert ack.method == "ACK"
    assert h.events.named("disconnected") == [("disconnected", str(call), "401", "Unauthorized")]
    # without credentials, a challenge ends the attempt at once
    plain = h.dial("sip:+4930999@carrier.example", CALLEE, PLAN)
    (invite,) = h.take()
    h.feed(challenge_to(invite, 407, challenge), CALLEE)
    assert ("disconnected", str(plain), "407", "Proxy Authentication Required") in h.events.named("disconnected")


def test_a_challenged_bye_of_a_trunk_call_is_sent_again_with_digest() -> None:
    """Carriers challenge in-dialog requests too: our BYE answered 407 goes again with
    Proxy-Authorization and the next CSeq (the call is already over for the gateway)."""
    from gateway.sip.digest import DigestClient, DigestServer

    server = DigestServer("carrier.example")
    h = Harness()
    session = MediaSession(PLAN)
    call = h.ua.invite("sip:+4930999@carrier.example", CALLEE, session.offer(), "", DigestClient("4711", "pw"))
    h.sessions[call] = session
    (invite,) = h.take()
    answer = offer_sdp("8 101").replace("192.0.2.10", "192.0.2.20")
    h.feed(response_to(invite, 200, "OK", body=answer), CALLEE)
    h.hang_up(call)
    (bye,) = h.take()
    assert bye.cseq == (2, "BYE") and not bye.get("proxy-authorization")
    reply = challenge_to(bye, 407, *server.challenges()).replace(b"To: " + (bye.get("to") or "").encode() + b";tag=proxy1", b"To: " + (bye.get("to") or "").encode())
    (again,) = h.feed(reply, CALLEE)
    assert again.method == "BYE" and again.cseq == (3, "BYE") and again.top_via.branch != bye.top_via.branch
    assert again.get("to") == bye.get("to") and again.call_id == bye.call_id
    assert server.verify(again.get("proxy-authorization") or "", "BYE", {"4711": "pw"}.get).ok
    assert h.feed(response_to(again, 200, "OK"), CALLEE) == []
    assert h.run_until(40.0) == []


# -- SDP passes through the core unread ---------------------------------------------------------


def test_offers_and_answers_pass_through_the_core_unread() -> None:
    """The core reads no SDP: the offer of a re-INVITE comes out as it came (the call layer answers
    it, here with a body the core does not check), and so does the answer in an ACK."""
    from gateway.sip.useragent import AnswerReceived, OfferReceived

    h = Harness(auto_answer_offers=False)
    call, tag = h.connect()
    offer = "not SDP at all, and the core does not mind\r\n"
    assert h.feed(request("INVITE", branch="z9hG4bKre1", cseq=2, to_tag=tag, body=offer)) == []
    assert h.events.events[-1] == OfferReceived(call, offer, "INVITE")
    h.ua.accept_offer(call, "our answer, as the call layer wrote it\r\n")
    (ok,) = h.take()
    assert ok.status == 200 and ok.text() == "our answer, as the call layer wrote it\r\n"
    h.feed(request("ACK", branch="z9hG4bKack2", cseq=2, to_tag=tag))
    # a re-INVITE without SDP: our offer in the 200, the answer (whatever it is) in the ACK
    h.feed(request("INVITE", branch="z9hG4bKre2", cseq=3, to_tag=tag))
    h.ua.accept_offer(call, "our offer\r\n")
    h.take()
    h.feed(request("ACK", branch="z9hG4bKack3", cseq=3, to_tag=tag, body="their answer\r\n"))
    assert h.events.events[-1] == AnswerReceived(call, "their answer\r\n")


def test_a_request_outside_calls_is_retransmitted_until_its_final_answer_which_is_reported() -> None:
    """RFC 3261 17.1.2: our REGISTER as a non-INVITE client transaction (timer E over UDP), its
    provisional answer stops nothing but is not reported, its final answer is (ResponseReceived)."""
    from gateway.sip.useragent import ResponseReceived
    from tests.support.useragent import UDP

    h = Harness()
    headers = [("from", "<sip:4711@carrier.example>;tag=a"), ("to", "<sip:4711@carrier.example>"), ("call-id", "reg-1"), ("cseq", "7 REGISTER")]
    branch = h.ua.request("REGISTER", "sip:carrier.example", UDP, headers)
    (register,) = h.take()
    assert (register.method, register.uri, register.top_via.branch, register.cseq) == ("REGISTER", "sip:carrier.example", branch, (7, "REGISTER"))
    assert register.get("max-forwards") == "70" and register.get("call-id") == "reg-1"
    assert [at for at, m in h.run_until(4.0) if m.method == "REGISTER"] == [0.5, 1.5, 3.5]
    reply = f"SIP/2.0 {{}}\r\nVia: {register.get('via')}\r\nFrom: <sip:4711@carrier.example>;tag=a\r\n"
    reply += "To: <sip:4711@carrier.example>;tag=r\r\nCall-ID: reg-1\r\nCSeq: 7 REGISTER\r\nContent-Length: 0\r\n\r\n"
    h.feed(reply.format("100 Trying").encode())
    assert not [e for e in h.events.events if isinstance(e, ResponseReceived)]
    h.feed(reply.format("401 Unauthorized").encode())
    h.feed(reply.format("401 Unauthorized").encode())  # a retransmission: reported once
    (answer,) = [e for e in h.events.events if isinstance(e, ResponseReceived)]
    assert (answer.branch, answer.status, answer.reason) == (branch, 401, "Unauthorized") and answer.message is not None
    assert h.run_until(40.0) == []  # nothing more goes out


def test_a_request_outside_calls_without_answer_is_reported_as_408_after_64_t1() -> None:
    from gateway.sip.useragent import ResponseReceived
    from tests.support.useragent import UDP

    h = Harness()
    headers = [("from", "<sip:gw@198.51.100.1>;tag=o"), ("to", "<sip:carrier.example>"), ("call-id", "x"), ("cseq", "1 OPTIONS")]
    branch = h.ua.request("OPTIONS", "sip:carrier.example", UDP, headers)
    h.run_until(31.0)
    assert not [e for e in h.events.events if isinstance(e, ResponseReceived)]
    h.run_until(33.0)
    (answer,) = [e for e in h.events.events if isinstance(e, ResponseReceived)]
    assert (answer.branch, answer.status, answer.message) == (branch, 408, None)
    with pytest.raises(ValueError):
        h.ua.request("INVITE", "sip:x@y", UDP, [])


def test_options_while_new_calls_are_refused_gets_503_with_retry_after() -> None:
    """A front's OPTIONS probe (Kamailio's dispatcher) sees what an INVITE would: while the node
    drains or is overloaded, 503 with Retry-After, so it sends new calls to another node."""
    h = Harness()
    h.ua.refusing_calls = lambda: 30
    (busy,) = h.feed(request("OPTIONS", branch="z9hG4bKopt1"))
    assert busy.status == 503 and busy.get("retry-after") == "30"
    h.ua.refusing_calls = lambda: None
    (ok,) = h.feed(request("OPTIONS", branch="z9hG4bKopt2"))
    assert ok.status == 200
