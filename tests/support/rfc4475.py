"""The RFC 4475 torture messages (tests/data/rfc4475/) as octets, and how the RFC says each must be
answered."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "rfc4475"
_HEX = re.compile(r"<hex>([0-9A-Fa-f]*)</hex>")


def rfc4475_message(name: str) -> bytes:
    """The exact octets of one RFC 4475 message, from the RFC's notation (see the README there):
    lines end in CRLF, <allOneLine> blocks are one line, <hex> is octets."""
    lines = (DATA / f"{name}.txt").read_text(encoding="ascii").split("\n")
    assert lines.pop() == "", "a message file ends with a line end"
    out = b""
    index = 0
    while index < len(lines):
        if lines[index] == "<allOneLine>":
            end = lines.index("</allOneLine>", index)
            logical, index = "".join(lines[index + 1 : end]), end + 1
        else:
            logical, index = lines[index], index + 1
        position = 0
        for match in _HEX.finditer(logical):
            out += logical[position : match.start()].encode("ascii") + bytes.fromhex(match.group(1))
            position = match.end()
        out += logical[position:].encode("ascii") + b"\r\n"
    return out


NO_ANSWER = None
CLOSED = -1  # the gateway closes the TCP connection: the stream's framing is lost


@dataclass(frozen=True)
class Expected:
    section: str
    status: int | None  # the final answer over UDP; NO_ANSWER: none at all
    why: str
    tcp: int | None | str = "same"  # over TCP when it differs
    stream_usable: bool = True  # over TCP, whether the connection can carry the next request

    @property
    def tcp_status(self) -> int | None:
        return self.status if self.tcp == "same" else self.tcp  # type: ignore[return-value]


# 404 means: accepted and routed, and refused by the gateway because no room has that number (the
# voice menu is off here); the user agent core itself sends 100 Trying and reports the call.
EXPECTED: dict[str, Expected] = {
    # 3.1.1 valid messages: a normal answer
    "wsinv": Expected("3.1.1.1", 481, "valid; its To has a tag, so it asks for a dialog we do not have"),
    "intmeth": Expected("3.1.1.2", 501, "valid; an unknown method: 501 Not Implemented"),
    "esc01": Expected("3.1.1.3", 404, "valid; the user is sips:user@example.com, no such room"),
    "escnull": Expected("3.1.1.4", 401, "valid REGISTER: challenged (the gateway is its room systems' registrar)"),
    "esc02": Expected("3.1.1.5", 501, "valid; RE%47IST%45R is an unknown method (not REGISTER)"),
    "lwsdisp": Expected("3.1.1.6", 200, "valid OPTIONS"),
    "longreq": Expected("3.1.1.7", 404, "valid; 34 Vias, long values, no such room"),
    "dblreq": Expected(
        "3.1.1.8", 401, "valid REGISTER (challenged); the INVITE after it is noise in a datagram",
        tcp=404, stream_usable=False,  # on a stream it is a second request (then 3 octets of noise)
    ),
    "semiuri": Expected("3.1.1.9", 200, "valid OPTIONS"),
    "transports": Expected("3.1.1.10", 200, "valid OPTIONS"),
    "mpart01": Expected("3.1.1.11", 405, "valid; MESSAGE is not a method of ours"),
    "unreason": Expected("3.1.1.12", NO_ANSWER, "a valid response matching nothing: dropped"),
    "noreason": Expected("3.1.1.13", NO_ANSWER, "a valid response matching nothing: dropped"),
    # 3.1.2 invalid messages: 400 (or another error), or dropped
    "badinv01": Expected("3.1.2.1", 400, "empty Via and Contact parameters"),
    "clerr": Expected(
        "3.1.2.2", 400, "body shorter than Content-Length",
        tcp=NO_ANSWER, stream_usable=False,  # on a stream the rest may still come: it waits
    ),
    "ncl": Expected("3.1.2.3", 400, "negative Content-Length", tcp=CLOSED, stream_usable=False),
    "scalar02": Expected("3.1.2.4", 400, "CSeq above 2**31"),
    "scalarlg": Expected("3.1.2.5", NO_ANSWER, "a response matching nothing: dropped"),
    "quotbal": Expected("3.1.2.6", 400, "unterminated quote in To"),
    "ltgtruri": Expected("3.1.2.7", 400, "Request-URI in <>"),
    "lwsruri": Expected("3.1.2.8", 400, "blank inside the Request-URI"),
    "lwsstart": Expected("3.1.2.9", 400, "two spaces between request line elements (the RFC allows refusing)"),
    "trws": Expected("3.1.2.10", 400, "spaces after SIP/2.0 (the RFC allows refusing)"),
    "escruri": Expected("3.1.2.11", 400, "headers in the Request-URI (the RFC allows refusing)"),
    "baddate": Expected("3.1.2.12", 404, "Date is not read, so its time zone does not matter (as the RFC prefers)"),
    "regbadct": Expected("3.1.2.13", 400, "Contact URI with ? not in <>"),
    "badaspec": Expected("3.1.2.14", 400, "blanks inside <> in To"),
    "baddn": Expected("3.1.2.15", 400, "unquoted display names with commas"),
    "badvers": Expected("3.1.2.16", 505, "SIP/7.0"),
    "mismatch01": Expected("3.1.2.17", 400, "CSeq method differs from the request's"),
    "mismatch02": Expected("3.1.2.18", 400, "unknown method and CSeq mismatch (400 is allowed)"),
    "bigcode": Expected("3.1.2.19", NO_ANSWER, "response code 4294967301: dropped"),
    # 3.2 transaction layer
    "badbranch": Expected("3.2.1", 400, "branch is only the magic cookie (refused statelessly, as the RFC suggests)"),
    # 3.3 application layer
    "insuf": Expected("3.3.1", 400, "To, From and Call-ID missing; answered with what it has"),
    "unkscm": Expected("3.3.2", 416, "Request-URI scheme unknown"),
    "novelsc": Expected("3.3.3", 416, "Request-URI scheme soap.beep"),
    "unksm2": Expected("3.3.4", 416, "REGISTER whose address of record (To) is no SIP URI"),
    "bext01": Expected("3.3.5", 420, "Require of extensions we lack (Proxy-Require is for proxies)"),
    "invut": Expected("3.3.6", 415, "an INVITE body we cannot read"),
    "regaut01": Expected("3.3.7", 401, "REGISTER answering with an unknown scheme: challenged"),
    "multi01": Expected("3.3.8", 400, "To, From, Call-ID and CSeq twice"),
    "mcl01": Expected("3.3.9", 400, "two Content-Lengths", tcp=CLOSED, stream_usable=False),
    "bcast": Expected("3.3.10", NO_ANSWER, "a response matching nothing: dropped"),
    "zeromf": Expected("3.3.11", 200, "Max-Forwards 0 at an endpoint: processed"),
    "cparam01": Expected("3.3.12", 401, "valid REGISTER: challenged"),
    "cparam02": Expected("3.3.13", 401, "valid REGISTER: challenged"),
    "regescrt": Expected("3.3.14", 401, "valid REGISTER: challenged"),
    "sdp01": Expected("3.3.15", 406, "Accept without application/sdp"),
    # 3.4 backward compatibility
    "inv2543": Expected(
        "3.4.1", 404, "an RFC 2543 INVITE is taken (no branch, no Max-Forwards, no Content-Length)",
        stream_usable=False,  # without Content-Length its SDP stays in the stream as noise
    ),
}


