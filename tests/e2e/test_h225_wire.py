"""A whole H.323 call's signalling as our call channels write it (gateway/h323/call.py, h225.py,
per.py), read by Wireshark's TPKT, Q.931 and H.225.0 dissectors (tshark, an independent PER
decoder) on TCP 1720: every message body, the protocol version, the call and conference
identifiers echoed, aliases, addresses, the release reason and cause as we meant them, and nothing
malformed or warned about. (fastStart and tunnelled H.245 contents are checked with the H.245 codec
that writes them.)"""

from __future__ import annotations

import uuid
from pathlib import Path

from gateway.h323.call import CallChannel, Cause
from gateway.h323.h225 import Alias, Signal
from tests.support.pcap import tcp_pcap, tshark_packets

FIELDS = (
    "q931.message_type", "q931.cause_value", "h225.h323_message_body", "h225.protocolIdentifier", "h225.guid",
    "h225.conferenceID", "h225.h245Tunnelling", "h225.reason", "h225.dialledDigits", "h225.h323_ID", "h225.productId",
    "h225.ipV4", "h225.ipV4_port", "h225.h245Ip", "h225.h245IpPort",
)  # fmt: skip


def test_tshark_reads_a_whole_call_as_we_meant_it(tmp_path: Path) -> None:
    caller, callee = CallChannel(), CallChannel()
    wire: list[tuple[bool, bytes]] = []

    def caller_sends() -> None:
        data = caller.data_to_send()
        wire.append((True, data))
        callee.receive_data(data)

    def callee_sends() -> None:
        data = callee.data_to_send()
        wire.append((False, data))
        caller.receive_data(data)

    caller.setup(Signal("setup", source_aliases=(Alias("h323-ID", "Ratssaal"),), destination_aliases=(Alias("dialledDigits", "4711"),),
                        destination_address=("192.0.2.10", 1720), h245_address=("192.0.2.20", 30000)))  # fmt: skip
    caller_sends()
    callee.proceed()
    callee_sends()
    callee.alert()
    callee_sends()
    callee.connect(h245_address=("192.0.2.10", 31000))
    callee_sends()
    caller.facility("startH245", h245_address=("192.0.2.20", 30002))
    caller_sends()
    callee.release(Cause.CALL_REJECTED, "destinationRejection")
    callee_sends()

    pcap = tcp_pcap(tmp_path / "h225.pcap", wire, 1720)
    packets = tshark_packets(pcap, "h225", FIELDS)
    assert [p.first("h225.h323_message_body") for p in packets] == ["0", "1", "3", "2", "6", "5"]  # setup ... releaseComplete
    assert not [p for p in packets if p.malformed or p.problems], [(p.frame, p.problems) for p in packets]
    assert {p.first("h225.protocolIdentifier") for p in packets} == {"0.0.8.2250.0.6"}
    guid = str(uuid.UUID(bytes=caller.call_identifier))
    assert all(p.first("h225.guid") == guid for p in packets), [p.fields.get("h225.guid") for p in packets]
    conference = str(uuid.UUID(bytes=caller.conference_id))
    assert packets[0].first("h225.conferenceID") == packets[3].first("h225.conferenceID") == conference
    setup = packets[0]
    assert (setup.first("h225.dialledDigits"), setup.first("h225.h323_ID")) == ("4711", "Ratssaal")
    assert setup.first("h225.productId") == "meeting-gateway"
    assert (setup.first("h225.ipV4"), setup.first("h225.ipV4_port")) == ("192.0.2.10", "1720")  # destCallSignalAddress
    assert (setup.first("h225.h245Ip"), setup.first("h225.h245IpPort")) == ("192.0.2.20", "30000")
    assert (packets[3].first("h225.h245Ip"), packets[3].first("h225.h245IpPort")) == ("192.0.2.10", "31000")
    assert packets[4].first("h225.h245IpPort") == "30002"
    assert all(p.first("h225.h245Tunnelling") in ("1", "True") for p in packets)
    release = packets[-1]
    assert (release.first("q931.cause_value"), release.first("h225.reason")) == ("21", "3")  # destinationRejection
