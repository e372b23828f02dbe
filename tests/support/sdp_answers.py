"""What a sipp call's SDP offer/answer came to, read from sipp's message trace (`Sipp.messages`):
the m-lines of sipp's offers and of the gateway's answers, and the participant's media counters
(its participants API) while the call goes on.

For the end-to-end tests that judge the gateway's SDP on the wire, line by line: parsed here with a
few string operations, independently of the gateway's own SDP model (which the tests must not
borrow: a shared misreading would pass unseen)."""

from __future__ import annotations

from dataclasses import dataclass

from tests.support.gateway import RunningGateway, wait_until
from tests.support.sipp import SipMessage, Sipp, media

# -- m-lines ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaLine:
    """One m= line of an SDP body, with the a= and b= lines that follow it (up to the next m=)."""

    kind: str  # audio, video, application ...
    port: int  # 0: the line is declined (or was removed)
    proto: str  # RTP/AVP, RTP/AVPF, RTP/SAVP, TCP/BFCP, UDP/BFCP ...
    formats: tuple[str, ...]  # payload types, or "*" for BFCP
    attributes: tuple[str, ...]  # a= lines, without "a="
    bandwidth: tuple[str, ...]  # b= lines, without "b="

    def attribute(self, name: str) -> list[str]:
        """The values of this line's a=`name` attributes, in order ("" for a property attribute
        such as a=sendrecv); an empty list when it has none."""
        return [a.split(":", 1)[1] if ":" in a else "" for a in self.attributes if a.split(":", 1)[0] == name]


def media_lines(sdp: str) -> list[MediaLine]:
    """The m-lines of an SDP body, in order (session-level lines before the first m= are skipped);
    CRLF or LF line ends."""
    lines: list[MediaLine] = []
    current: dict[str, object] | None = None

    def close() -> None:
        if current is not None:
            lines.append(MediaLine(**current))  # type: ignore[arg-type]

    for raw in sdp.replace("\r\n", "\n").split("\n"):
        if raw.startswith("m="):
            close()
            kind, port, proto, *formats = raw[2:].split()
            current = {"kind": kind, "port": int(port), "proto": proto, "formats": tuple(formats), "attributes": (), "bandwidth": ()}
        elif current is not None and raw.startswith("a="):
            current["attributes"] = (*current["attributes"], raw[2:])  # type: ignore[misc]
        elif current is not None and raw.startswith("b="):
            current["bandwidth"] = (*current["bandwidth"], raw[2:])  # type: ignore[misc]
    close()
    return lines


# -- offers and answers in sipp's trace ---------------------------------------------------------------


def answer_to(sipp: Sipp, cseq: str) -> SipMessage:
    """The gateway's 200 with SDP to sipp's INVITE of this CSeq ("1 INVITE", "3 INVITE"), the first
    in sipp's trace (it must be there already: see `sdp_answer` to wait for it)."""
    answers = [m for m in sipp.received("SIP/2.0 200", cseq) if m.body.strip()]
    assert answers, f"no 200 with SDP to {cseq} in sipp's trace"
    return answers[0]


def sdp_answer(sipp: Sipp, cseq: str, timeout: float = 15) -> list[MediaLine]:
    """The m-lines of the gateway's 200 with SDP to this INVITE, once it is in sipp's trace (waits
    up to `timeout` s for it)."""
    wait_until(
        lambda: [m for m in sipp.received("SIP/2.0 200", cseq) if m.body.strip()], timeout, what=f"the 200 with SDP to {cseq}"
    )
    return media_lines(answer_to(sipp, cseq).body)


def sent_offer(sipp: Sipp, cseq: str) -> SipMessage:
    """sipp's INVITE of this CSeq as it sent it (its retransmissions are the same message: exactly
    one must be in the trace)."""
    (invite,) = {m.text: m for m in sipp.messages() if m.sent and m.header("CSeq") == cseq}.values()
    return invite


def offered_port(sipp: Sipp, cseq: str, kind: str) -> int:
    """The port of the one m-line of this kind ("application" for BFCP) in sipp's INVITE of this
    CSeq, as sent."""
    (line,) = [m for m in media_lines(sent_offer(sipp, cseq).body) if m.kind == kind]
    return line.port


# -- the participant's media counters -----------------------------------------------------------------


def counters(gateway: RunningGateway, name: str, room: str = "demo") -> dict[str, object]:
    """The participant's media counters (its participants API `media`: rtp_packets_in/out,
    audio_packets_in, codec, and a dict per video line: video_main, video_content)."""
    return media(gateway, room, name)


def grows(
    gateway: RunningGateway,
    name: str,
    keys: tuple[str, ...] = ("rtp_packets_in", "rtp_packets_out"),
    by: int = 10,
    within: float = 5.0,
    what: str = "",
    room: str = "demo",
) -> dict[str, object]:
    """Waits until each of these counters of the participant grew by `by` (within `within` s);
    returns the counters then."""
    first = counters(gateway, name, room)

    def grown() -> dict[str, object] | None:
        now = counters(gateway, name, room)
        return now if all(int(str(now[k])) - int(str(first[k])) >= by for k in keys) else None

    found = wait_until(grown, within, what=what or f"{name}'s {', '.join(keys)} growing by {by}")
    assert isinstance(found, dict)
    return found
