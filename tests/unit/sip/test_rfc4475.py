"""RFC 4475, the SIP torture test messages, against the user agent core in process: each answered as
the RFC says, and every answer it sends parses again. (Over UDP and TCP to the real process:
tests/e2e/test_sip_torture.py.)"""

from __future__ import annotations

import re

import pytest

from gateway.sip import message
from gateway.sip.registrar import Registrar
from gateway.sip.useragent import IncomingCall, Peer, UserAgent
from tests.support.rfc4475 import DATA, EXPECTED, NO_ANSWER, rfc4475_message


def test_the_corpus_is_the_49_messages_of_rfc_4475() -> None:
    assert sorted(path.stem for path in DATA.glob("*.txt")) == sorted(EXPECTED) and len(EXPECTED) == 49
    for name in EXPECTED:
        data = rfc4475_message(name)
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(-?[0-9]+)", head)
        if length and name not in ("dblreq", "clerr", "ncl", "mcl01"):
            assert int(length.group(1)) == len(body), name  # the octets are the RFC's
    assert len(rfc4475_message("mpart01").partition(b"\r\n\r\n")[2]) == 553


# -- the user agent core, in process ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(EXPECTED))
def test_the_user_agent_core_answers_each_torture_message_as_the_rfc_says(name: str) -> None:
    ua = UserAgent(local={"udp": ("192.0.2.1", 5060)})
    ua.registrar = Registrar("meeting-gateway", lambda _user: None)  # (as the gateway runs it: REGISTERs are its)
    ua.receive(rfc4475_message(name), Peer("udp", ("198.51.100.7", 5060)), 0.0)
    answers = [message.parse(data) for data, _ in ua.datagrams_to_send(0.0)]  # whatever goes out parses again
    calls = []
    while (event := ua.next_event()) is not None:
        assert isinstance(event, IncomingCall)
        calls.append(event)
    expected = EXPECTED[name]
    if expected.status == 404:  # routed: the 404 is the gateway's, the core reports the call
        assert [a.status for a in answers] == [100] and len(calls) == 1
    elif expected.status is NO_ANSWER:
        assert answers == [] and calls == []
    else:
        assert [a.status for a in answers] == [expected.status], [a.reason for a in answers]
        assert calls == []
    for answer in answers:
        assert not answer.is_request and answer.all("via")


def test_the_valid_messages_read_as_the_rfc_says() -> None:
    wsinv = message.parse(rfc4475_message("wsinv"))
    assert [via.host for via in map(message.Via.parse, wsinv.all("via"))] == [
        "192.0.2.2", "spindle.example.com", "192.168.255.111",
    ]
    assert wsinv.top_via.branch == "390skdjuw" and wsinv.cseq == (9, "INVITE")
    assert message.NameAddr.parse(wsinv.get("from") or "").display_name == 'J Rosenberg \\"'
    assert message.NameAddr.parse(wsinv.get("to") or "").tag == "1918181833n"
    assert message.NameAddr.parse(wsinv.get("contact") or "").display_name == 'Quoted string ""'
    assert wsinv.get("newfangledheader") == "newfangled value continued newfangled value"
    assert wsinv.get("subject") == "" and len(wsinv.body) == 150
    intmeth = message.parse(rfc4475_message("intmeth"))
    assert intmeth.method == "!INTERESTING-METHOD0123456789_*+`.%INDEED'~"
    assert message.NameAddr.parse(intmeth.get("to") or "").display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert message.NameAddr.parse(intmeth.get("from") or "").tag == "_token~1'+`*%!-."
    assert message.uri_user(message.parse(rfc4475_message("esc01")).uri) == "sips:user@example.com"
    assert message.uri_user(message.parse(rfc4475_message("semiuri")).uri) == "user"
    escnull = message.parse(rfc4475_message("escnull"))
    assert [message.uri_user(message.NameAddr.parse(c).uri) for c in escnull.all("contact")] == ["\x00", "\x00\x00"]
    assert message.parse(rfc4475_message("esc02")).all("contact") == [
        "<sip:alias1@host1.example.com>", "<sip:alias3@host3.example.com>",
    ]
    assert message.NameAddr.parse(message.parse(rfc4475_message("lwsdisp")).get("from") or "").display_name == "caller"
    longreq = message.parse(rfc4475_message("longreq"))
    assert len(longreq.all("via")) == 34 and len(longreq.body) == 150
    dblreq = message.parse(rfc4475_message("dblreq"))
    assert dblreq.method == "REGISTER" and dblreq.body == b""
    assert [message.Via.parse(v).transport for v in message.parse(rfc4475_message("transports")).all("via")] == [
        "UDP", "SCTP", "TLS", "UNKNOWN", "TCP",
    ]
    mpart01 = message.parse(rfc4475_message("mpart01"))
    assert len(mpart01.body) == 553 and b"\x00" in mpart01.body
    unreason = message.parse(rfc4475_message("unreason"))
    assert unreason.status == 200 and unreason.reason.endswith("\u043f\u0440\u043e\u0441\u0442\u043e\u0435")
    noreason = message.parse(rfc4475_message("noreason"))
    assert (noreason.status, noreason.reason) == (100, "")
    for name in ("wsinv", "esc01", "longreq", "mpart01", "unreason"):
        parsed = message.parse(rfc4475_message(name))
        again = message.parse(parsed.serialize())
        assert (again.method, again.uri, again.status, again.reason, again.body) == (
            parsed.method, parsed.uri, parsed.status, parsed.reason, parsed.body,
        )


