"""Property-based fuzzing (Hypothesis) of the SIP and SDP parsers, in process: whatever the input,
only the module's own error type escapes (SipMessageError, SdpError: never ValueError from int(),
IndexError, UnicodeError ...), and whatever is accepted serialises and parses again to the same
thing. Inputs are arbitrary bytes and text, and SIP/SDP built from the characters and pieces that
break parsers (quotes, backslashes, brackets, commas, semicolons, blanks, folding, Unicode digits)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.sip import message, negotiation, sdp
from gateway.sip.message import NameAddr, SipMessage, SipMessageError, StreamFramer, Via
from gateway.transcode.audio import AudioCodec
from tests.support.rfc4475 import EXPECTED, rfc4475_message

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters that mean something to a SIP or SDP parser, and some that only look like digits.
TRICKY = ' \t"\\<>,;:=@/?%*#[]\r\n\x00\x7f\u00b2\u0663\ufeff\u00e9'
tricky_text = st.text(alphabet=st.sampled_from(TRICKY + "abcSIPz09.-_+"), max_size=60)
any_text = st.one_of(tricky_text, st.text(max_size=80))

HEADER_NAMES = [
    "Via", "v", "From", "f", "To", "t", "Call-ID", "i", "CSeq", "Contact", "m", "Max-Forwards", "Route",
    "Record-Route", "Content-Type", "c", "Content-Length", "l", "Require", "Accept", "X-Thing", "Subject",
]
VALUES = [
    "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport", "SIP  /  2.0 / TCP host.example;branch=z9hG4bK1",
    '"A \\"B\\"" <sip:a@b>;tag=1', "<sip:x@y;lr>", "sip:u@h;tag=7", "caller<sip:c@d>", "1 INVITE", "0009 OPTIONS",
    "70", "0", "application/sdp", "*", "a, b", '"x,y" <sip:z@w>, <sip:v@u>', "<sip:[2001:db8::1]:5060>",
]
header = st.tuples(
    st.sampled_from(HEADER_NAMES) | st.text(alphabet="abcXY-!%", min_size=1, max_size=8),
    st.sampled_from(VALUES) | tricky_text,
)
start_line = st.sampled_from(
    ["INVITE sip:4711@gw SIP/2.0", "OPTIONS sip:x@y SIP/2.0", "BYE sip:a@b;lr SIP/2.0", "SIP/2.0 200 OK",
     "SIP/2.0 100 ", "ACK sip:a@b SIP/2.0", "INFO tel:+49 SIP/2.0", "X sip:a SIP/7.0"]
) | tricky_text


@st.composite
def sip_messages(draw: st.DrawFn) -> bytes:
    headers = draw(st.lists(header, max_size=12))
    separator = draw(st.sampled_from(["\r\n", "\n", "\r\n "]))
    body = draw(st.binary(max_size=40))
    lines = [draw(start_line)] + [f"{name}:{draw(st.sampled_from(['', ' ', '  ']))}{value}" for name, value in headers]
    if draw(st.booleans()):
        length = draw(st.sampled_from([str(len(body)), "0", "-1", "99", " 7", "\u00b2", "1_0"]))
        lines.append(f"Content-Length: {length}")
    return (separator.join(lines) + "\r\n\r\n").encode("utf-8", "surrogatepass") + body


def comparable(m: SipMessage) -> tuple[object, ...]:
    return (m.method, m.uri, m.status, m.reason, [(k, v) for k, v in m.headers if k != "content-length"], m.body)


def check_message(data: bytes) -> None:
    try:
        parsed = message.parse(data)
    except SipMessageError:
        return
    again = message.parse(parsed.serialize())
    assert comparable(again) == comparable(parsed)
    # what the user agent reads of an accepted message raises nothing else either
    for read in (lambda: parsed.cseq, lambda: parsed.content_type, lambda: message.info_digits(parsed)):
        read()
    for name in ("via", "contact", "route", "record-route"):
        try:
            parsed.all(name)
        except SipMessageError:
            assert not parsed.is_request  # a request's lists were checked when it was parsed
    if parsed.is_request:
        message.NameAddr.parse(parsed.get("to") or "")
        assert parsed.top_via.host
        try:
            message.parse_invite(parsed)
        except SipMessageError:
            pass


@FUZZ
@given(st.binary(max_size=300))
def test_parse_of_arbitrary_bytes_raises_only_sip_message_error(data: bytes) -> None:
    check_message(data)


@FUZZ
@given(sip_messages())
@example(b"INVITE sip:a@b SIP/2.0\r\nTo: a" + b" " * 5000 + b"b\r\n\r\n")
@example(b"OPTIONS sip:a@b SIP/2.0\r\nVia: " + b"<" * 3000 + b"\r\n\r\n")
def test_parse_of_sip_shaped_input_raises_only_sip_message_error_and_round_trips(data: bytes) -> None:
    check_message(data)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_accepted_rfc_4475_message_round_trips(name: str) -> None:
    check_message(rfc4475_message(name))


@FUZZ
@given(any_text)
@example('"unterminated <sip:a@b>')
@example("<" * 200 + "sip:a@b" + ">" * 200)
@example('"\\\\\\"" <sip:a@b>;tag=x')
def test_name_addr_raises_only_its_error_and_round_trips(text: str) -> None:
    try:
        parsed = NameAddr.parse(text)
    except SipMessageError:
        return
    assert NameAddr.parse(parsed.serialize()) == parsed
    assert isinstance(parsed.tag, str)  # never raises


@FUZZ
@given(any_text)
@example("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKx;received=2001:db8::2")
@example("SIP  /   2.0 /UDP  192.0.2.2;branch=390skdjuw")
@example("SIP/2.0/UDP h:\u00b2")
def test_via_raises_only_its_error_and_round_trips(text: str) -> None:
    try:
        parsed = Via.parse(text)
    except SipMessageError:
        return
    assert Via.parse(parsed.serialize()) == parsed


@FUZZ
@given(st.lists(sip_messages() | st.sampled_from([b"\r\n\r\n", b"\r\n"]), max_size=5), st.data())
def test_the_stream_framer_cuts_the_same_however_the_stream_is_split(parts: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(parts)
    whole = StreamFramer()
    try:
        expected = whole.feed(stream)
    except SipMessageError:
        expected = None
    pieces = StreamFramer()
    got: list[bytes] = []
    position = 0
    try:
        while position < len(stream):
            size = data.draw(st.integers(1, 64))
            got += pieces.feed(stream[position : position + size])
            position += size
            assert len(pieces._buffer) <= message.MAX_MESSAGE_BYTES
    except SipMessageError:
        assert expected is None
        return
    assert got == expected


def test_the_stream_framer_fed_byte_by_byte_never_holds_more_than_the_limit() -> None:
    framer = StreamFramer()
    one = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 3\r\n\r\nabc"
    stream = b"\r\n" * 10 + one * 300
    got: list[bytes] = []
    for index in range(len(stream)):
        got += framer.feed(stream[index : index + 1])
    assert got == [one] * 300
    endless = StreamFramer()
    with pytest.raises(SipMessageError, match="64 KB"):
        for _ in range(70):
            endless.feed(b"X-Header: " + b"a" * 1000 + b"\r\n")
            assert len(endless._buffer) <= message.MAX_MESSAGE_BYTES
    for bad in (b"Content-Length: -999", b"l: \xc2\xb2", b"Content-Length: 5\r\nContent-Length: 6", b"Content-Length: 99999999"):
        with pytest.raises(SipMessageError):
            StreamFramer().feed(b"INVITE sip:a@b SIP/2.0\r\n" + bad + b"\r\n\r\n")


SDP_LINES = [
    "v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "c=IN IP6 2001:db8::1", "c=IN IP4 host.example",
    "c=IN IP4 ::1", "t=0 0", "m=audio 4000 RTP/AVP 0 8 101", "m=audio 4000 RTP/AVP 0 \u00b2", "m=audio \u0663 RTP/AVP 0",
    "m=audio 4000/2 RTP/SAVP 0", "m=video 0 RTP/AVP 96", "m=application 5000 UDP/BFCP *", "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15", "a=rtpmap:111 opus/48000/2", "a=ptime:\u00b2",
    "a=ptime:99999", "a=rtcp:", "a=rtcp: ", "a=rtcp:\u00b2 IN IP4 x", "a=rtcp-mux", "a=sendonly", "a=inactive",
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + "A" * 40, "a=crypto:\u00b2 AES_CM_128_HMAC_SHA1_80 inline:!!",
]
sdp_text = st.lists(st.sampled_from(SDP_LINES) | tricky_text, max_size=14).map(lambda lines: "\r\n".join(["v=0", *lines]))


def check_sdp(text: str) -> None:
    try:
        offer = sdp.parse(text)
    except sdp.SdpError:
        return
    for codecs in ([AudioCodec.PCMU, AudioCodec.PCMA], [AudioCodec.OPUS, AudioCodec.G722, AudioCodec.PCMU]):
        try:
            answer = negotiation.answer(offer, local_address="192.0.2.9", audio_port=30000, codecs=codecs)
        except sdp.SdpError as exc:
            assert exc.status in (400, 488)
            continue
        ours = sdp.parse(answer.sdp)  # our answer is itself good SDP
        assert any(m.kind == "audio" and m.port == 30000 for m in ours.media)
        try:
            negotiation.accept_answer(offer, codecs)
        except sdp.SdpError:
            pass


@FUZZ
@given(sdp_text | st.text(max_size=200))
@example("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 \u00b2\r\n")
def test_sdp_parse_answer_and_accept_raise_only_sdp_error(text: str) -> None:
    check_sdp(text)


@FUZZ
@given(st.sampled_from(["application/dtmf-relay", "application/dtmf", "text/plain", ""]), st.binary(max_size=60))
@example("application/dtmf-relay", "Signal=\u00b2".encode())
def test_info_digits_never_raises(content_type: str, body: bytes) -> None:
    request = SipMessage(method="INFO", uri="sip:a@b", body=body)
    request.add("content-type", content_type)
    digits = message.info_digits(request)
    assert digits is None or all(c in message.DTMF_SIGNALS for c in digits)


@FUZZ
@given(any_text)
def test_uri_helpers_and_cseq_raise_only_sip_message_error(text: str) -> None:
    for read in (message.uri_user, message.uri_host_port):
        try:
            read(text)
        except SipMessageError:
            pass
    request = SipMessage(method="INVITE", uri="sip:a@b")
    request.add("cseq", text)
    number, _ = request.cseq
    assert number == -1 or 0 <= number < 2**31
