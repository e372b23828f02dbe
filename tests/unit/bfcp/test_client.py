"""The BFCP floor participant the gateway is toward an MCU (sans-IO, bfcp/client.py): Hello and a
FloorQuery on connecting, a floor request when our room presents and its release, the server's
decisions and floor status as events, and UDP's retransmissions and acknowledgements. The server
here is the gateway's own FloorServer (the e2e tests use one written from the RFC)."""

from __future__ import annotations

from gateway.bfcp.client import FloorClient, FloorGranted, FloorHeld, FloorLost
from gateway.bfcp.message import Attribute, AttributeType, Message, Primitive, RequestStatus, parse, serialize
from gateway.bfcp.server import FloorRequested, FloorServer

CONFERENCE, USER, FLOOR = 77, 3, 2


def exchange(client: FloorClient, server: FloorServer, now: float = 0.0, transport: str = "tcp") -> list[Primitive]:
    """Carries the client's messages to the server and back until both are quiet; the primitives sent."""
    seen: list[Primitive] = []
    pending = client.datagrams_to_send(now)
    while pending:
        data = pending.pop(0)
        seen.append(parse(data, transport).primitive)
        for reply in server.receive(data):
            seen.append(parse(reply, transport).primitive)
            pending += client.receive(reply)
        for out in server.datagrams_to_send(now):
            seen.append(parse(out, transport).primitive)
            pending += client.receive(out)
        pending += client.datagrams_to_send(now)
    return seen


def test_connecting_says_hello_and_asks_for_the_floor_status() -> None:
    client, server = FloorClient(CONFERENCE, USER, FLOOR), FloorServer(CONFERENCE, USER, FLOOR)
    client.start(0.0)
    assert exchange(client, server) == [Primitive.HELLO, Primitive.HELLO_ACK, Primitive.FLOOR_QUERY, Primitive.FLOOR_STATUS]
    assert client.next_event() is None


def test_our_request_granted_revoked_and_released() -> None:
    client, server = FloorClient(CONFERENCE, USER, FLOOR), FloorServer(CONFERENCE, USER, FLOOR)
    client.start(0.0)
    exchange(client, server)
    client.request(1.0)
    client.request(1.0)  # (asked once)
    assert exchange(client, server) == [Primitive.FLOOR_REQUEST, Primitive.FLOOR_REQUEST_STATUS]
    event = server.next_event()
    assert isinstance(event, FloorRequested) and client.request_id == event.request_id
    server.granted(event.request_id)
    for out in server.datagrams_to_send(2.0):
        client.receive(out)
    assert client.next_event() == FloorGranted(event.request_id) and client.granted
    server.revoked(why="the MCU's chair presents")
    for out in server.datagrams_to_send(3.0):
        client.receive(out)
    assert client.next_event() == FloorLost(event.request_id, RequestStatus.REVOKED) and client.request_id is None
    client.request(4.0)
    exchange(client, server)
    second = server.next_event()
    assert isinstance(second, FloorRequested)
    client.release(5.0)
    assert exchange(client, server) == [Primitive.FLOOR_RELEASE, Primitive.FLOOR_REQUEST_STATUS]
    assert client.request_id is None and server.requests == {}


def test_the_far_ends_presenter_is_heard_from_floor_status() -> None:
    client = FloorClient(CONFERENCE, USER, FLOOR)
    held = Attribute(AttributeType.FLOOR_REQUEST_INFORMATION, 40, [
        Attribute(AttributeType.OVERALL_REQUEST_STATUS, 40, [Attribute(AttributeType.REQUEST_STATUS, (RequestStatus.GRANTED, 0))]),
    ])  # fmt: skip
    status = Message(Primitive.FLOOR_STATUS, CONFERENCE, 0, USER, [Attribute(AttributeType.FLOOR_ID, FLOOR), held])
    client.receive(serialize(status))
    assert client.next_event() == FloorHeld(by_other=True)
    client.receive(serialize(Message(Primitive.FLOOR_STATUS, CONFERENCE, 0, USER, [Attribute(AttributeType.FLOOR_ID, FLOOR)])))
    assert client.next_event() == FloorHeld(by_other=False)
    wrong = Message(Primitive.FLOOR_STATUS, CONFERENCE + 1, 0, USER, [Attribute(AttributeType.FLOOR_ID, FLOOR), held])
    assert client.receive(serialize(wrong)) == [] and client.next_event() is None  # (not our conference)
    assert client.receive(b"\x20\x08\x00\xff") == []  # (garbage: dropped)


def test_over_udp_requests_are_resent_until_answered_and_statuses_acknowledged() -> None:
    client = FloorClient(CONFERENCE, USER, FLOOR, version=2, transport="udp")
    server = FloorServer(CONFERENCE, USER, FLOOR, version=2, transport="udp")
    client.request(0.0)
    (request,) = client.datagrams_to_send(0.0)
    assert client.get_timer() == 0.5 and client.handle_timer(0.5) == [request]
    (pending,) = server.receive(request)
    assert server.receive(request) == [pending]  # (the server's cache: one request)
    assert client.receive(pending, "udp") == [] and client.get_timer() is None
    event = server.next_event()
    assert isinstance(event, FloorRequested)
    server.granted(event.request_id)
    (granted,) = server.datagrams_to_send(1.0)
    (ack,) = client.receive(granted, "udp")
    assert parse(ack, "udp").primitive is Primitive.FLOOR_REQUEST_STATUS_ACK and client.granted
    assert server.receive(ack) == [] and server.get_timer() is None
