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
from tests.support.pcap import tcp_pcap, tshark_packets, udp_pcap

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


def test_tshark_reads_our_ras_messages_as_we_meant_them(tmp_path: Path) -> None:
    """Every RAS message the gateway sends to a gatekeeper (GRQ, RRQ full and keep-alive, ARQ, DRQ,
    IRR, UCF, URQ) on UDP 1719, read by Wireshark's H.225.0 RAS dissector."""
    from pycrate_asn1dir import H225

    from gateway.h323.ras import RasClient

    ras_type = H225.H323_MESSAGES.RasMessage

    def gatekeeper(name: str, value: dict[str, object]) -> bytes:
        ras_type.set_val((name, value))
        return bytes(ras_type.to_aper())

    gk = ("127.0.0.1", 1719)
    ras = RasClient(gatekeeper=gk, ras_address=("127.0.0.1", 40000), call_signal_address=("127.0.0.1", 1720),
                    aliases=(Alias("h323-ID", "Ratssaal"), Alias("dialledDigits", "4711")), prefixes=("4930",), discover=True)  # fmt: skip
    wire: list[tuple[bool, bytes]] = []

    def ours() -> list[bytes]:
        datagrams = ras.datagrams_to_send()
        wire.extend((True, d) for d in datagrams)
        return datagrams

    ras.start(0.0)
    ours()
    ras.receive(gatekeeper("gatekeeperConfirm", {"requestSeqNum": ras._sequence, "protocolIdentifier": (0, 0, 8, 2250, 0, 6),
                                                 "rasAddress": ("ipAddress", {"ip": bytes([127, 0, 0, 1]), "port": 1719})}), gk, 0.1)  # fmt: skip
    ours()
    ras.receive(gatekeeper("registrationConfirm", {"requestSeqNum": ras._sequence, "protocolIdentifier": (0, 0, 8, 2250, 0, 6),
                                                   "callSignalAddress": [], "endpointIdentifier": "EP-1"}), gk, 0.2)  # fmt: skip
    ras.timeout(300.0)  # the keep-alive
    ours()
    ras.admit("call", 301.0, answer=True, call_identifier=bytes(range(16)), conference_id=bytes(16), call_reference=5,
              destination=(Alias("dialledDigits", "4711"),))  # fmt: skip
    ours()
    ras.disengage(302.0, call_identifier=bytes(range(16)), conference_id=bytes(16), call_reference=5, answered=True)
    ours()
    ras.receive(gatekeeper("infoRequest", {"requestSeqNum": 77, "callReferenceValue": 0}), gk, 303.0)
    ras.receive(gatekeeper("unregistrationRequest", {"requestSeqNum": 78, "callSignalAddress": []}), gk, 304.0)
    ours()
    ras.receive(gatekeeper("registrationConfirm", {"requestSeqNum": ras._sequence, "protocolIdentifier": (0, 0, 8, 2250, 0, 6),
                                                   "callSignalAddress": [], "endpointIdentifier": "EP-2"}), gk, 304.5)  # fmt: skip
    ras.stop(305.0)
    ours()
    packets = tshark_packets(udp_pcap(tmp_path / "ras.pcap", wire, 1719), "h225", ["h225.RasMessage"])
    assert not [p for p in packets if p.malformed or p.problems], [(p.frame, p.problems) for p in packets]
    kinds = [p.first("h225.RasMessage") for p in packets]
    # gatekeeperRequest 0, registrationRequest 3 (full, keep-alive), admissionRequest 9, disengageRequest 15,
    # infoRequestResponse 22, unregistrationConfirm 7, registrationRequest again, unregistrationRequest 6
    assert kinds == ["0", "3", "3", "9", "15", "22", "7", "3", "6"], kinds
