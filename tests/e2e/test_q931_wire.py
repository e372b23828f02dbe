"""Our Q.931 messages over TPKT (gateway/h323/q931.py) as Wireshark's TPKT and Q.931 dissectors
(tshark, an independent decoder) read them on TCP 1720: message types, the call reference and its
flag, the cause, the called number and the display as we meant them, and nothing malformed. (The
User-user element's H.225.0 contents are left out here: they are PER, checked with the H.225.0
codec that carries them.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

from gateway.h323.q931 import (
    BEARER_SPEECH,
    BEARER_VIDEO,
    Element,
    InformationElement,
    Message,
    MessageType,
    called_party_number,
    cause,
    display,
    serialize,
    tpkt,
)
from tests.support.pcap import tcp_pcap

FIELDS = (
    "q931.message_type", "q931.call_ref", "q931.call_ref_flag", "q931.cause_value",
    "q931.called_party_number.digits", "q931.display_information", "q931.information_element", "_ws.malformed", "_ws.expert",
)  # fmt: skip


def test_tshark_reads_our_q931_messages_as_we_meant_them(tmp_path: Path) -> None:
    messages = [
        (True, Message(MessageType.SETUP, 0x1234, False, [BEARER_VIDEO, display("Ratssaal"), called_party_number("4711")])),
        (False, Message(MessageType.CALL_PROCEEDING, 0x1234, True, [])),
        (False, Message(MessageType.ALERTING, 0x1234, True, [display("Gateway")])),
        (False, Message(MessageType.CONNECT, 0x1234, True, [BEARER_SPEECH])),
        (True, Message(MessageType.INFORMATION, 0x1234, False, [InformationElement(Element.SENDING_COMPLETE)])),
        (False, Message(MessageType.RELEASE_COMPLETE, 0x1234, True, [cause(16)])),
    ]
    pcap = tcp_pcap(tmp_path / "q931.pcap", [(side, tpkt(serialize(m))) for side, m in messages], 1720)
    args = ["tshark", "-n", "-r", str(pcap), "-Y", "q931", "-T", "fields", "-E", "separator=/t"]
    done = subprocess.run([*args, *(a for field in FIELDS for a in ("-e", field))], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [dict(zip(FIELDS, line.split("\t"), strict=False)) for line in done.stdout.splitlines() if line.strip()]
    assert [int(r["q931.message_type"], 16) for r in rows] == [int(m.type) for _, m in messages]
    assert {r["q931.call_ref"] for r in rows} == {"1234"}
    assert [r["q931.call_ref_flag"] for r in rows] == ["1" if m.from_destination else "0" for _, m in messages]
    assert rows[0]["q931.called_party_number.digits"] == "4711" and rows[0]["q931.display_information"] == "Ratssaal"
    assert rows[0]["q931.information_element"] == "4,40,112"  # bearer capability, display, called party number
    assert rows[-1]["q931.cause_value"] == "16"
    assert not any(r.get("_ws.malformed") or r.get("_ws.expert") for r in rows), rows
