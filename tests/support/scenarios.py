"""sipp scenarios written in Python for one caller: its INVITE (PCMA and telephone-event), the answer
checked, the ACK, keys by SIP INFO, pauses, a BYE either way; and for one callee (the gateway
dials it): the INVITE answered with an SDP of the test's. Each function returns XML steps;
`scenario` wraps them. sipp fills the [bracketed] fields; `caller` and `to` are the From and To
name-addrs (the To of requests in the dialog carries sipp's [peer_tag_param])."""

from __future__ import annotations

from collections.abc import Sequence

CALLER = '"Caller" <sip:+4930555@[local_ip]:[local_port]>'
TO = "<sip:[service]@[remote_ip]:[remote_port]>"
R_URI = "sip:[service]@[remote_ip]:[remote_port]"


def headers(method: str, cseq: int, dialog: bool, caller: str = CALLER, to: str = TO, extra: Sequence[str] = ()) -> str:
    lines = [
        "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
        f"From: {caller};tag=[pid]SIPpTag00[call_number]",
        f"To: {to}" + ("[peer_tag_param]" if dialog else ""),
        "Call-ID: [call_id]",
        f"CSeq: {cseq} {method}",
        "Contact: sip:caller@[local_ip]:[local_port]",
        "Max-Forwards: 70",
        *extra,
    ]
    return "\n      ".join(lines)


def invite(caller: str = CALLER, to: str = TO, extra: Sequence[str] = ()) -> str:
    """The INVITE with its offer, and the optional 100 Trying."""
    return f"""  <send retrans="500">
    <![CDATA[
      INVITE {R_URI} SIP/2.0
      {headers("INVITE", 1, False, caller, to, extra)}
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[local_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000

    ]]>
  </send>
  <recv response="100" optional="true"/>"""


def answer(status: int, checks: str = "") -> str:
    """The final answer awaited, with `checks` (ereg actions) on it."""
    action = f"\n    <action>{checks}</action>\n  " if checks else ""
    return f'  <recv response="{status}">{action}</recv>'


def ack(caller: str = CALLER, to: str = TO) -> str:
    return f"""  <send>
    <![CDATA[
      ACK {R_URI} SIP/2.0
      {headers("ACK", 1, True, caller, to)}
      Content-Length: 0

    ]]>
  </send>"""


def key(digit: str, cseq: int, pause_ms: int = 0, caller: str = CALLER, to: str = TO) -> str:
    """One key by SIP INFO (application/dtmf-relay), its 200, then `pause_ms`."""
    return f"""  <send retrans="500">
    <![CDATA[
      INFO {R_URI} SIP/2.0
      {headers("INFO", cseq, True, caller, to)}
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={digit}
      Duration=160
    ]]>
  </send>
  <recv response="200"/>
  <pause milliseconds="{pause_ms}"/>"""


def pause(ms: int) -> str:
    return f'  <pause milliseconds="{ms}"/>'


def bye(cseq: int, caller: str = CALLER, to: str = TO) -> str:
    """Our BYE and its 200."""
    return f"""  <send retrans="500">
    <![CDATA[
      BYE {R_URI} SIP/2.0
      {headers("BYE", cseq, True, caller, to)}
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>"""


def their_bye(timeout_ms: int, checks: str = "") -> str:
    """The gateway's BYE awaited (with `checks` on it), answered 200."""
    action = f"\n    <action>{checks}</action>\n  " if checks else ""
    return f"""  <recv request="BYE" timeout="{timeout_ms}">{action}</recv>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>"""


def answered_invite(sdp: str, user: str = "callee") -> str:
    """As the called side (a UAS: the gateway dials it): the INVITE awaited, answered 200 with
    `sdp` (lines separated by CRLF or LF), and the ACK awaited."""
    body = "\n      ".join(line for line in sdp.replace("\r\n", "\n").split("\n") if line)
    return f"""  <recv request="INVITE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]{user}[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:{user}@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      {body}

    ]]>
  </send>
  <recv request="ACK"/>"""


def check(name: str, regexp: str, header: str | None = None) -> str:
    """An ereg action that must match (in `header`, else the whole message), stored as `name`."""
    where = f'search_in="hdr" header="{header}:"' if header else 'search_in="msg"'
    return f'<ereg regexp="{regexp}" {where} check_it="true" assign_to="{name}"/>'


def scenario(name: str, *steps: str, checked: Sequence[str] = ()) -> str:
    """The whole scenario; `checked`: the names of the checks' variables (sipp wants them used)."""
    reference = f'\n  <Reference variables="{",".join(checked)}"/>' if checked else ""
    body = "\n".join(steps)
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="{name}">
{body}{reference}
</scenario>
"""
