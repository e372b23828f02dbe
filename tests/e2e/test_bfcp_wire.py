"""Our BFCP messages as Wireshark's BFCP dissector (tshark, an independent decoder) reads them:
every primitive we send, with the attributes a floor control server sends, decoded with the
values we meant and nothing malformed. Over TCP (BFCP version 1, what room systems mostly use):
Debian 12's tshark 4.0 does not know version 2 (RFC 8855's UDP), which the unit tests cover."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

from gateway.bfcp.message import (
    Attribute,
    AttributeType,
    ErrorCode,
    Message,
    Primitive,
    RequestStatus,
    serialize,
)

PORT = 5070
LINKTYPE_RAW = 101  # IPv4 packets, no link layer


def tcp_pcap(path: Path, payloads: list[bytes]) -> None:
    """A pcap of one TCP segment per payload, one stream 127.0.0.1:40000 -> 127.0.0.1:PORT."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
    sequence = 1000
    for index, payload in enumerate(payloads):
        tcp = struct.pack("!HHIIBBHHH", 40000, PORT, sequence, 1, 5 << 4, 0x18, 65535, 0, 0) + payload
        sequence += len(payload)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), index, 0, 64, 6, 0, bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
        packet = ip + tcp
        out += struct.pack("<IIII", 1_700_000_000 + index, 0, len(packet), len(packet)) + packet
    path.write_bytes(bytes(out))


def granted(request_id: int, floor: int, user: int, name: str) -> Attribute:
    return Attribute(AttributeType.FLOOR_REQUEST_INFORMATION, request_id, [
        Attribute(AttributeType.OVERALL_REQUEST_STATUS, request_id, [Attribute(AttributeType.REQUEST_STATUS, (RequestStatus.GRANTED, 0))]),
        Attribute(AttributeType.FLOOR_REQUEST_STATUS, floor, [Attribute(AttributeType.REQUEST_STATUS, (RequestStatus.GRANTED, 0))]),
        Attribute(AttributeType.BENEFICIARY_INFORMATION, user, [Attribute(AttributeType.USER_DISPLAY_NAME, name)]),
    ])  # fmt: skip


MESSAGES = [
    Message(Primitive.HELLO, 7, 1, 2, []),
    Message(Primitive.HELLO_ACK, 7, 1, 2, [
        Attribute(AttributeType.SUPPORTED_PRIMITIVES, [int(p) for p in Primitive]),
        Attribute(AttributeType.SUPPORTED_ATTRIBUTES, [int(a) for a in AttributeType]),
    ]),  # fmt: skip
    Message(Primitive.FLOOR_REQUEST, 7, 2, 2, [Attribute(AttributeType.FLOOR_ID, 1, mandatory=True)]),
    Message(Primitive.FLOOR_REQUEST_STATUS, 7, 2, 2, [granted(9, 1, 2, "Ratssaal")]),
    Message(Primitive.FLOOR_STATUS, 7, 3, 2, [Attribute(AttributeType.FLOOR_ID, 1), granted(9, 1, 2, "Ratssaal")]),
    Message(Primitive.FLOOR_RELEASE, 7, 4, 2, [Attribute(AttributeType.FLOOR_REQUEST_ID, 9, mandatory=True)]),
    Message(Primitive.ERROR, 7, 5, 2, [
        Attribute(AttributeType.ERROR_CODE, (int(ErrorCode.UNKNOWN_MANDATORY_ATTRIBUTE), bytes([60 << 1])), mandatory=True),
        Attribute(AttributeType.ERROR_INFO, "unknown attribute 60"),
    ]),  # fmt: skip
    Message(Primitive.GOODBYE, 7, 6, 2, []),
    Message(Primitive.GOODBYE_ACK, 7, 6, 2, []),
]


def tshark(pcap: Path, *fields: str, display_filter: str = "bfcp") -> list[list[str]]:
    args = ["tshark", "-n", "-r", str(pcap), "-d", f"tcp.port=={PORT},bfcp", "-Y", display_filter, "-T", "fields"]
    for name in fields:
        args += ["-e", name]
    out = subprocess.run([*args, "-E", "separator=|", "-E", "occurrence=a"], capture_output=True, text=True, timeout=60, check=True)
    return [line.split("|") for line in out.stdout.splitlines() if line]


def test_tshark_reads_every_message_we_send_as_we_meant_it(tmp_path: Path) -> None:
    pcap = tmp_path / "bfcp.pcap"
    tcp_pcap(pcap, [serialize(m) for m in MESSAGES])
    rows = tshark(pcap, "bfcp.ver", "bfcp.primitive", "bfcp.conference_id", "bfcp.transaction_id", "bfcp.user_id")
    assert [tuple(int(v) for v in r) for r in rows] == [(1, int(m.primitive), 7, m.transaction_id, 2) for m in MESSAGES]
    # nothing the dissector found malformed or wrong (expert infos of severity warning and above)
    assert tshark(pcap, "frame.number", display_filter="_ws.malformed || _ws.expert.severity >= warning") == []
    (status,) = tshark(pcap, "bfcp.floorrequest_id", "bfcp.floor_id", "bfcp.request_status", "bfcp.beneficiary_id",
                       "bfcp.user_disp_name", display_filter="bfcp.primitive == 4")  # fmt: skip
    assert status[0].split(",") == ["9", "9"] and status[1] == "1" and status[2].split(",") == ["3", "3"]
    assert status[3] == "2" and status[4] == "Ratssaal"
    (error,) = tshark(pcap, "bfcp.error_code", "bfcp.error_info_text", display_filter="bfcp.primitive == 13")
    assert error == ["4", "unknown attribute 60"]
