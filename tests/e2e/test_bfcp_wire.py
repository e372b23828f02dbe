"""BFCP on the wire, read by decoders that are not the gateway's.

Our BFCP messages as Wireshark's BFCP dissector (tshark, an independent decoder) reads them:
every primitive we send, with the attributes a floor control server sends, decoded with the
values we meant and nothing malformed. Over TCP (BFCP version 1, what room systems mostly use):
Debian 12's tshark 4.0 does not know version 2 (RFC 8855's UDP), which the unit tests cover.

And the test peers of tests/support/bfcp_peer.py (written from the RFCs, not from the gateway's
module): their codec against the RFC's layouts octet by octet and against the gateway's encoder,
their messages as tshark reads them, and a test client and test server talking to each other over
TCP and UDP (request, grant, revoke, release; UDP acknowledgements and retransmissions). None of
these need a gateway."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from typing import cast

import pytest

from gateway.bfcp.message import (
    Attribute,
    AttributeType,
    ErrorCode,
    Message,
    Primitive,
    RequestStatus,
    serialize,
)
from tests.support import bfcp_peer as peer
from tests.support.bfcp_peer import (
    GRANTED,
    PENDING,
    RELEASED,
    REVOKED,
    BfcpClient,
    BfcpServerPeer,
    assert_tshark_reads,
    decode,
    encode,
    tshark_fields,
)
from tests.support.pcap import tcp_pcap

PORT = 5070


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


def test_tshark_reads_every_message_we_send_as_we_meant_it(tmp_path: Path) -> None:
    pcap = tmp_path / "bfcp.pcap"
    tcp_pcap(pcap, [serialize(m) for m in MESSAGES], PORT)
    rows = tshark_fields(pcap, PORT, "bfcp.ver", "bfcp.primitive", "bfcp.conference_id", "bfcp.transaction_id", "bfcp.user_id")
    assert [tuple(int(v) for v in r) for r in rows] == [(1, int(m.primitive), 7, m.transaction_id, 2) for m in MESSAGES]
    # nothing the dissector found malformed or wrong (expert infos of severity warning and above)
    assert tshark_fields(pcap, PORT, "frame.number", display_filter="_ws.malformed || _ws.expert.severity >= warning") == []
    (status,) = tshark_fields(pcap, PORT, "bfcp.floorrequest_id", "bfcp.floor_id", "bfcp.request_status", "bfcp.beneficiary_id",
                              "bfcp.user_disp_name", display_filter="bfcp.primitive == 4")  # fmt: skip
    assert status[0].split(",") == ["9", "9"] and status[1] == "1" and status[2].split(",") == ["3", "3"]
    assert status[3] == "2" and status[4] == "Ratssaal"
    (error,) = tshark_fields(pcap, PORT, "bfcp.error_code", "bfcp.error_info_text", display_filter="bfcp.primitive == 13")
    assert error == ["4", "unknown attribute 60"]


def test_the_test_codec_reads_the_gateways_messages_octet_for_octet() -> None:
    """Two codecs written apart (the gateway's, and the test peers' from the RFC): each of the
    gateway's messages reads as meant, and written again gives the same octets."""
    for message in MESSAGES:
        raw = serialize(message)
        read = decode(raw)
        assert (read.version, read.response, read.primitive, read.conference_id, read.transaction_id, read.user_id) == (
            1, False, int(message.primitive), message.conference_id, message.transaction_id, message.user_id,
        )  # fmt: skip
        assert encode(read.primitive, read.conference_id, read.transaction_id, read.user_id, read.attributes, read.version) == raw
    status = decode(serialize(MESSAGES[3]))
    assert peer.request_status(status) == (9, GRANTED)
    information = status.find(peer.AttributeType.FLOOR_REQUEST_INFORMATION)
    assert information is not None
    beneficiary = information.find(peer.AttributeType.BENEFICIARY_INFORMATION)
    assert beneficiary is not None and beneficiary.id == 2
    assert beneficiary.find(peer.AttributeType.USER_DISPLAY_NAME) == (peer.AttributeType.USER_DISPLAY_NAME, False, "Ratssaal")
    assert decode(serialize(MESSAGES[6])).error() == (4, "unknown attribute 60")


# -- the test peers' codec against the RFC's layouts ----------------------------------------------------

# Octets worked out by hand from RFC 8855 5.2: Type << 1 | M, Length (header and contents, not
# padding), contents, zeros to a 4-octet boundary.
LAYOUTS = [
    (peer.floor_id(1), "05 04 0001"),  # type 2, M: the 16-bit ids are Length 4, unpadded
    (peer.floor_request_id(9, mandatory=False), "06 04 0009"),
    (peer.beneficiary_id(2), "02 04 0002"),
    (peer.priority(3), "08 04 6000"),  # 3 bits of priority, 13 reserved
    (peer.request_status_attr(GRANTED, 2), "0a 04 03 02"),  # status, queue position
    (peer.error_code(4, bytes([60 << 1])), "0d 04 04 78"),  # code 4 and the unknown type 60 (<< 1)
    (peer.error_code(14), "0d 03 0e 00"),  # Length 3, one octet of padding
    (peer.user_display_name("abc"), "18 05 616263 000000"),  # Length 2 + 3, padded to 8
    (peer.status_info("abcd"), "12 06 61626364 0000"),
    (peer.user_uri("sip:a@b"), "1a 09 7369703a614062 000000"),
    (peer.participant_provided_info("ab"), "10 04 6162"),  # exactly 4: no padding
    (peer.error_info("é"), "0e 04 c3a9"),  # UTF-8: Length counts octets
    (peer.supported_primitives([1, 11, 17]), "16 05 010b11 000000"),
    (peer.supported_attributes([2, 15]), "14 04 04 1e"),  # type << 1 each
    # grouped: a 16-bit id, then attributes with their padding; Length covers all of it
    (peer.overall_request_status(9, peer.request_status_attr(GRANTED)), "24 08 0009 0a040300"),
    (
        peer.floor_request_information(9, peer.overall_request_status(9, peer.request_status_attr(GRANTED))),
        "1e 0c 0009 24080009 0a040300",
    ),
    (peer.beneficiary_information(2, peer.user_display_name("Ratssaal")), "1c 10 0002 180a 526174737361616c 0000"),
    (peer.floor_request_status(1), "22 04 0001"),  # grouped and empty
]


@pytest.mark.parametrize(("attribute", "octets"), LAYOUTS, ids=[f"{peer.AttributeType(a.type).name}-{i}" for i, (a, _) in enumerate(LAYOUTS)])
def test_attribute_layout_octet_for_octet(attribute: peer.Attribute, octets: str) -> None:
    raw = bytes.fromhex(octets.replace(" ", ""))
    assert len(raw) % 4 == 0
    assert peer.encode_attribute(attribute) == raw
    message = encode(peer.Primitive.FLOOR_STATUS, 7, 1, 2, [attribute])
    assert decode(message).attributes == [attribute]


def test_common_header_layout() -> None:
    # Ver 1, nothing set, Hello (11), no payload, conference 7, transaction 1, user 2
    assert encode(peer.Primitive.HELLO, 7, 1, 2) == bytes.fromhex("200b0000 00000007 00010002")
    # Ver 2 with R (a response over UDP): 010 1 0 000 = 0x50; one attribute: Payload Length 1 word
    ack = encode(peer.Primitive.HELLO_ACK, 0x01020304, 0xFFFF, 0x8001, [peer.floor_id(1)], version=2, response=True)
    assert ack == bytes.fromhex("500c0001 01020304 ffff8001 05040001")
    read = decode(ack)
    assert (read.version, read.response, read.primitive, read.conference_id, read.transaction_id, read.user_id) == (
        2, True, 12, 0x01020304, 0xFFFF, 0x8001,
    )  # fmt: skip
    assert peer.message_length(ack[:4]) == len(ack) == 16


@pytest.mark.parametrize(
    ("octets", "why"),
    [
        ("28010000 00000007 00010002", "F (a fragment)"),  # F set (and a fragment header would follow)
        ("200b0001 00000007 00010002", "Payload Length 1"),  # a word announced, none there
        ("200b0000 00000007 00010002 05040001", "Payload Length 0"),  # one more than announced
        ("600b0000 00000007 00010002", "version 3"),
        ("20080001 00000007 00010002 05030001", "Length 3, want 4"),  # FLOOR-ID of 3 octets
        ("20080002 00000007 00010002 05050001 00000000", "Length 5, want 4"),
        ("20080001 00000007 00010002 05080001", "runs past"),  # Length 8 in a 4-octet payload
        ("20080002 00000007 00010002 18056162 63000001", "padding is not zero"),
        ("20080002 00000007 00010002 1e060009 05040001", "grouped attribute"),  # Length 6: not 4 + padded
        ("20080001 00000007 00010002 0d020000", "ERROR-CODE"),  # no code octet
        ("20080001 00000007 00010002 05010000", "Length 1"),
    ],
)
def test_decode_refuses_what_is_not_one_whole_message(octets: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        decode(bytes.fromhex(octets.replace(" ", "")))


# -- the test peers' messages as tshark reads them --------------------------------------------------------


def _peer_messages() -> list[tuple[bool, bytes]]:
    """Every primitive the test client and test server send, with the attributes they can carry,
    in version 1: (sent by the client, octets)."""
    p, a = peer.Primitive, peer
    info = a.floor_request_information(
        9,
        a.overall_request_status(9, a.request_status_attr(GRANTED), a.status_info("granted by the test")),
        a.floor_request_status(1, a.request_status_attr(GRANTED, 0)),
        a.beneficiary_information(2, a.user_display_name("Ratssaal"), a.user_uri("sip:ratssaal@example.org")),
        a.requested_by_information(3, a.user_display_name("Chair")),
        a.priority(2),
        a.participant_provided_info("slides"),
    )
    return [
        (True, encode(p.HELLO, 7, 1, 2)),
        (False, encode(p.HELLO_ACK, 7, 1, 2, [a.supported_primitives(a.ALL_PRIMITIVES), a.supported_attributes(a.ALL_ATTRIBUTES)])),
        (True, encode(p.FLOOR_REQUEST, 7, 2, 2, [a.floor_id(1), a.beneficiary_id(2), a.participant_provided_info("slides é"), a.priority(4)])),
        (False, encode(p.FLOOR_REQUEST_STATUS, 7, 2, 2, [a.floor_request_info(9, [1], PENDING)])),
        (False, encode(p.FLOOR_REQUEST_STATUS, 7, 0, 2, [info])),
        (True, encode(p.FLOOR_QUERY, 7, 3, 2, [a.floor_id(1)])),
        (False, encode(p.FLOOR_STATUS, 7, 3, 2, [a.floor_id(1, mandatory=False), info])),
        (True, encode(p.FLOOR_REQUEST_QUERY, 7, 4, 2, [a.floor_request_id(9)])),
        (False, encode(p.FLOOR_REQUEST_STATUS, 7, 0, 2, [a.floor_request_info(9, [1], REVOKED, "taken back")])),
        (True, encode(p.FLOOR_RELEASE, 7, 5, 2, [a.floor_request_id(9)])),
        (False, encode(p.ERROR, 7, 5, 2, [a.error_code(7), a.error_info("no such floor request")])),
        (True, encode(p.USER_QUERY, 7, 6, 2)),
        (False, encode(p.ERROR, 7, 6, 2, [a.error_code(4, bytes([60 << 1, 61 << 1])), a.error_info("unknown")])),
        (True, encode(p.GOODBYE, 7, 7, 2)),
        (False, encode(p.GOODBYE_ACK, 7, 7, 2)),
        (False, encode(p.GOODBYE, 7, 1, 2)),
        (True, encode(p.GOODBYE_ACK, 7, 1, 2)),
    ]


def test_tshark_reads_every_message_the_test_peers_send(tmp_path: Path) -> None:
    messages = _peer_messages()
    read = assert_tshark_reads(messages, PORT, tmp_path)  # headers, attribute types, nothing malformed
    fields = [r["fields"] for r in read]
    assert [int(v) for v in fields[1]["bfcp.supp_primitive"]] == list(range(1, 18))
    assert [int(v) for v in fields[1]["bfcp.supp_attr"]] == list(range(1, 19))
    assert fields[2]["bfcp.attribute_types_m_bit"][0] in ("1", "True") and fields[2]["bfcp.floor_id"] == ["1"]
    assert fields[2]["bfcp.beneficiary_id"] == ["2"] and fields[2]["bfcp.priority"] == ["4"]
    granted_info = fields[4]
    assert granted_info["bfcp.floorrequest_id"] == ["9", "9"] and granted_info["bfcp.request_status"] == ["3", "3"]
    assert granted_info["bfcp.status_info_text"] == ["granted by the test"]
    assert granted_info["bfcp.user_disp_name"] == ["Ratssaal", "Chair"]
    assert granted_info["bfcp.user_uri"] == ["sip:ratssaal@example.org"]
    assert granted_info["bfcp.req_by_i"] == ["3"] and granted_info["bfcp.priority"] == ["2"]
    assert granted_info["bfcp.part_prov_info_text"] == ["slides"]
    assert fields[6]["bfcp.floor_id"] == ["1", "1"]  # FloorStatus: its FLOOR-ID and the FLOOR-REQUEST-STATUS's
    assert fields[8]["bfcp.request_status"] == ["7", "7"] and fields[8]["bfcp.status_info_text"] == ["taken back"]
    assert fields[10]["bfcp.error_code"] == ["7"] and fields[10]["bfcp.error_info_text"] == ["no such floor request"]
    assert fields[12]["bfcp.error_code"] == ["4"] and fields[12]["bfcp.error_specific_details"] == ["787a"]
    assert [r["transaction_id"] for r in read if r["primitive"] == 4] == [2, 0, 0]


# -- the test client and the test server together ----------------------------------------------------------


def _floor_session(client: BfcpClient, server: BfcpServerPeer) -> int:
    """Hello, a floor request granted by the server, a floor query, a revoke, a release, a request
    query and goodbye; returns the floor request id."""
    ack = client.hello()
    supported = ack.find(peer.AttributeType.SUPPORTED_PRIMITIVES)
    assert supported is not None and {1, 2, 4, 11, 16} <= set(cast(tuple[int, ...], supported.value)), ack.describe()
    request = client.floor_request(1)
    assert client.wait_status(request, GRANTED) is not None
    floor = client.floor_query(1)
    assert floor.primitive == peer.Primitive.FLOOR_STATUS and peer.request_status(floor) == (request, GRANTED), floor.describe()
    server.revoke(request, "taken back")
    revoked = client.wait_status(request, REVOKED)
    assert peer.status_text(revoked) == "taken back"
    released = client.floor_release(request)
    assert peer.request_status(released) == (request, RELEASED), released.describe()
    assert peer.request_status(client.floor_request_query(request)) == (request, RELEASED)
    client.goodbye()
    assert server.wait_for(peer.Primitive.GOODBYE).user_id == 2
    assert client.statuses(request) == [PENDING, GRANTED, REVOKED, RELEASED, RELEASED]
    assert server.requests[request].status == RELEASED and server.requests[request].floors == [1]
    return request


def _sent(endpoint: BfcpClient | BfcpServerPeer) -> set[int]:
    return {decode(raw).primitive for raw in endpoint.sent}


def test_client_and_server_over_tcp(tmp_path: Path) -> None:
    """Version 1 over TCP: the server's own messages (Granted, Revoked) have transaction id 0 and
    nothing acknowledges them; everything both sent reads right in tshark."""
    with BfcpServerPeer.tcp(conference_id=7, floors=[1]) as server, BfcpClient.tcp("127.0.0.1", server.port, 7, 2) as client:
        _floor_session(client, server)
        assert client.problems == [] and server.problems == []
        own = [decode(raw) for raw in server.sent if decode(raw).transaction_id == 0]
        assert [peer.request_status(m) for m in own] == [(1, GRANTED), (1, REVOKED)]
        assert client.acks_sent == 0 and server.acked == [] and not any(decode(raw).response for raw in client.sent + server.sent)
        assert _sent(client) == {1, 2, 3, 7, 11, 16} and _sent(server) == {4, 8, 12, 17}
        assert sorted(client.wire) == sorted(server.wire)  # each saw what the other sent
        # the client's record is what a test against the gateway hands to tshark
        assert len(assert_tshark_reads(client.wire, PORT, tmp_path)) == len(client.sent) + len(client.received)
        assert_tshark_reads(server.wire, PORT, tmp_path)


def test_client_and_server_over_udp() -> None:
    """Version 2 over UDP: responses carry R; the server's own FloorRequestStatus messages have
    transaction ids of their own and are acknowledged (FloorRequestStatusAck, same ids, R set); a
    lost response makes the client send its request again and the server answer it again (one
    floor request, not two); a lost Revoked is sent again by the server until acknowledged."""
    with BfcpServerPeer.udp(conference_id=7) as server, BfcpClient.udp("127.0.0.1", server.port, 7, 2) as client:
        request = _floor_session(client, server)
        assert client.problems == [] and server.problems == []
        assert all(decode(raw).version == 2 for raw in client.sent + server.sent)
        answers = [decode(raw) for raw in server.sent if decode(raw).response]
        own = [decode(raw) for raw in server.sent if not decode(raw).response]
        assert {m.primitive for m in answers} == {4, 8, 12, 17} and all(m.transaction_id for m in own)
        acks = [decode(raw) for raw in client.sent if decode(raw).primitive == peer.Primitive.FLOOR_REQUEST_STATUS_ACK]
        # (one acknowledgement per message received: a retransmission, were one needed, gets its own)
        assert {(m.transaction_id, m.conference_id, m.user_id, m.response) for m in acks} == {
            (m.transaction_id, 7, 2, True) for m in own
        } and set(server.acked) == {m.transaction_id for m in own}

        # the client loses the server's answer (Pending): it asks again, the server answers again
        client.lose(1)
        started = time.monotonic()
        second = client.floor_request(1)
        assert second == request + 1 and len(server.requests) == 2, server.requests
        assert client.retransmitted >= 1 and len(client.lost) == 1 and time.monotonic() - started >= 0.4
        pending = [raw for raw in server.sent if decode(raw).response and peer.request_status(decode(raw)) == (second, PENDING)]
        assert len(pending) >= 2 and len(set(pending)) == 1  # the same answer again, octet for octet
        client.wait_status(second, GRANTED)

        # the client loses the server's Revoked: the server sends it again until acknowledged
        client.lose(1)
        transaction = server.revoke(second)
        server.wait_acked(transaction)
        assert server.retransmitted >= 1 and client.statuses(second)[-1] == REVOKED
        assert client.problems == [] and server.problems == []


def test_setup_passive_client_takes_the_servers_connection(tmp_path: Path) -> None:
    """The client listens (SDP setup:passive), the server connects; the server's Goodbye gets a
    GoodbyeAck."""
    with BfcpClient.accept_tcp("127.0.0.1", 7, 2) as client, BfcpServerPeer.connect_tcp("127.0.0.1", client.port) as server:
        client.wait_connected()
        client.hello()
        request = client.floor_request(1)
        client.wait_status(request, GRANTED)
        assert server.goodbye().primitive == peer.Primitive.GOODBYE_ACK
        assert client.problems == [] and server.problems == []
        assert_tshark_reads(client.wire, PORT, tmp_path)


def test_the_test_server_refuses_what_it_should_and_the_client_says_so() -> None:
    with BfcpServerPeer.tcp(conference_id=7, floors=[1]) as server, BfcpClient.tcp("127.0.0.1", server.port, 7, 2) as client:
        with pytest.raises(AssertionError, match=r"\(6, 'no floor 2'\)"):
            client.floor_request(2)
        assert client.floor_release(99).error() == (7, "no such floor request")
        assert client.request(peer.Primitive.USER_QUERY).error() == (3, "primitive 5 not supported")
    with BfcpServerPeer.udp(conference_id=7) as server, BfcpClient.udp("127.0.0.1", server.port, 8, 2) as stranger:
        assert stranger.request(peer.Primitive.HELLO).error() == (1, "conference 8 does not exist")
        assert server.requests == {} and stranger.problems == []


def test_udp_client_retransmits_then_gives_up() -> None:
    """A request nobody answers is sent again every retransmit_interval, `retransmissions` times,
    then the client fails the test with what it sent."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    silent.settimeout(0.2)
    try:
        with BfcpClient.udp("127.0.0.1", silent.getsockname()[1], 7, 2, retransmit_interval=0.1, retransmissions=3) as client:
            with pytest.raises(AssertionError, match="after 3 retransmissions"):
                client.hello()
            copies = []
            while True:
                try:
                    copies.append(silent.recv(100))
                except TimeoutError:
                    break
        assert len(copies) == 4 and len(set(copies)) == 1 and client.sent == copies
        assert decode(copies[0]).primitive == peer.Primitive.HELLO and decode(copies[0]).transaction_id != 0
    finally:
        silent.close()
