"""The BFCP floor control server for one room system (RFC 8855): its answers to what a room system
sends, the decisions of the call layer sent on, and Errors with the RFC's codes."""

from __future__ import annotations

import pytest

from gateway.bfcp.message import (
    Attribute,
    AttributeType,
    ErrorCode,
    Message,
    Primitive,
    RequestStatus,
    parse,
    serialize,
)
from gateway.bfcp.server import FloorReleased, FloorRequested, FloorServer

CONFERENCE, USER, FLOOR = 4711, 2, 1


def send(server: FloorServer, primitive: Primitive, *attributes: Attribute, tid: int = 10, conference: int = CONFERENCE, user: int = USER) -> Message:
    (reply,) = server.receive(serialize(Message(primitive, conference, tid, user, list(attributes))))
    message = parse(reply)
    assert message.transaction_id == tid
    return message


def status_of(message: Message) -> tuple[int, RequestStatus]:
    info = message.find(AttributeType.FLOOR_REQUEST_INFORMATION)
    assert info is not None
    overall = info.find(AttributeType.OVERALL_REQUEST_STATUS)
    assert overall is not None and isinstance(info.value, int)
    status, _queue = overall.children[0].value  # type: ignore[misc]
    return info.value, status


def error_code(message: Message) -> int:
    assert message.primitive is Primitive.ERROR
    found = message.find(AttributeType.ERROR_CODE)
    assert found is not None
    return found.value[0]  # type: ignore[index, no-any-return]


def test_hello_is_answered_with_what_we_support() -> None:
    ack = send(FloorServer(CONFERENCE, USER, FLOOR), Primitive.HELLO)
    assert ack.primitive is Primitive.HELLO_ACK
    primitives = ack.find(AttributeType.SUPPORTED_PRIMITIVES)
    assert primitives is not None and int(Primitive.FLOOR_REQUEST) in primitives.value  # type: ignore[operator]


def test_a_floor_request_is_pending_then_granted_then_released() -> None:
    server = FloorServer(CONFERENCE, USER, FLOOR)
    pending = send(server, Primitive.FLOOR_REQUEST, Attribute(AttributeType.FLOOR_ID, FLOOR, mandatory=True))
    request_id, status = status_of(pending)
    assert status is RequestStatus.PENDING and server.next_event() == FloorRequested(request_id)
    server.granted(request_id)
    (granted,) = server.datagrams_to_send()
    assert status_of(parse(granted)) == (request_id, RequestStatus.GRANTED) and server.holder == request_id
    floor = send(server, Primitive.FLOOR_QUERY, Attribute(AttributeType.FLOOR_ID, FLOOR))
    assert floor.primitive is Primitive.FLOOR_STATUS and status_of(floor) == (request_id, RequestStatus.GRANTED)
    released = send(server, Primitive.FLOOR_RELEASE, Attribute(AttributeType.FLOOR_REQUEST_ID, request_id, mandatory=True))
    assert status_of(released) == (request_id, RequestStatus.RELEASED)
    assert server.next_event() == FloorReleased(request_id, was_granted=True) and server.holder is None


def test_the_floor_taken_by_another_is_revoked_and_a_refusal_is_denied() -> None:
    server = FloorServer(CONFERENCE, USER, FLOOR)
    first, _ = status_of(send(server, Primitive.FLOOR_REQUEST, Attribute(AttributeType.FLOOR_ID, FLOOR)))
    server.granted(first)
    server.revoked(why="Anna presents")
    revoked = [parse(m) for m in server.datagrams_to_send()][-1]
    assert status_of(revoked) == (first, RequestStatus.REVOKED) and server.holder is None
    info = revoked.find(AttributeType.FLOOR_REQUEST_INFORMATION)
    assert info is not None and info.children[0].children[1].value == "Anna presents"
    second, _ = status_of(send(server, Primitive.FLOOR_REQUEST, Attribute(AttributeType.FLOOR_ID, FLOOR), tid=11))
    server.denied(second, "only hosts present here")
    (denied,) = server.datagrams_to_send()
    assert status_of(parse(denied)) == (second, RequestStatus.DENIED) and server.requests == {}


@pytest.mark.parametrize(
    ("primitive", "attributes", "conference", "user", "code"),
    [
        (Primitive.FLOOR_REQUEST, [Attribute(AttributeType.FLOOR_ID, FLOOR)], 1, USER, ErrorCode.CONFERENCE_DOES_NOT_EXIST),
        (Primitive.FLOOR_REQUEST, [Attribute(AttributeType.FLOOR_ID, FLOOR)], CONFERENCE, 99, ErrorCode.USER_DOES_NOT_EXIST),
        (Primitive.FLOOR_REQUEST, [Attribute(AttributeType.FLOOR_ID, 5)], CONFERENCE, USER, ErrorCode.INVALID_FLOOR_ID),
        (Primitive.FLOOR_REQUEST, [], CONFERENCE, USER, ErrorCode.INVALID_FLOOR_ID),
        (Primitive.FLOOR_RELEASE, [Attribute(AttributeType.FLOOR_REQUEST_ID, 77)], CONFERENCE, USER, ErrorCode.FLOOR_REQUEST_ID_DOES_NOT_EXIST),
        (Primitive.CHAIR_ACTION, [], CONFERENCE, USER, ErrorCode.UNKNOWN_PRIMITIVE),
    ],
    ids=["conference", "user", "floor", "no-floor", "request", "chair-action"],
)
def test_what_cannot_be_done_gets_an_error_with_its_code(
    primitive: Primitive, attributes: list[Attribute], conference: int, user: int, code: ErrorCode
) -> None:
    server = FloorServer(CONFERENCE, USER, FLOOR)
    reply = send(server, primitive, *attributes, conference=conference, user=user)
    assert error_code(reply) == code and server.next_event() is None


def test_malformed_bytes_get_a_parse_error_and_a_flood_of_requests_is_bounded() -> None:
    server = FloorServer(CONFERENCE, USER, FLOOR)
    good = serialize(Message(Primitive.FLOOR_REQUEST, CONFERENCE, 5, USER, [Attribute(AttributeType.FLOOR_ID, FLOOR)]))
    (reply,) = server.receive(good[:13] + bytes([9]) + good[14:])  # (FLOOR-ID's length past the message)
    assert error_code(parse(reply)) == ErrorCode.PARSE_ERROR and parse(reply).transaction_id == 5
    assert server.receive(b"\x20\x01") == []  # (no header: no transaction to answer)
    codes = [error_code(m) if m.primitive is Primitive.ERROR else 0 for m in (parse(server.receive(good)[0]) for _ in range(6))]
    assert codes[-1] == ErrorCode.MAX_FLOOR_REQUESTS_REACHED and codes.count(0) == 4


def test_goodbye_is_acknowledged_and_acks_are_not_answered() -> None:
    server = FloorServer(CONFERENCE, USER, FLOOR, version=2)
    assert send(server, Primitive.GOODBYE).primitive is Primitive.GOODBYE_ACK
    ack = Message(Primitive.FLOOR_REQUEST_STATUS_ACK, CONFERENCE, 3, USER, [], version=2, response=True)
    assert server.receive(serialize(ack), "udp") == []


def test_over_tcp_what_the_server_starts_has_transaction_id_0() -> None:
    server = FloorServer(CONFERENCE, USER, FLOOR)
    request_id, _ = status_of(send(server, Primitive.FLOOR_REQUEST, Attribute(AttributeType.FLOOR_ID, FLOOR)))
    server.granted(request_id)
    (granted,) = server.datagrams_to_send(100.0)
    assert parse(granted).transaction_id == 0 and server.get_timer() is None  # (TCP: nothing to acknowledge)


def udp(primitive: Primitive, *attributes: Attribute, tid: int) -> bytes:
    return serialize(Message(primitive, CONFERENCE, tid, USER, list(attributes), version=2))


def test_over_udp_a_decision_is_resent_until_acknowledged_and_a_repeated_request_gets_the_same_answer() -> None:
    server = FloorServer(CONFERENCE, USER, FLOOR, version=2, transport="udp")
    request = udp(Primitive.FLOOR_REQUEST, Attribute(AttributeType.FLOOR_ID, FLOOR, mandatory=True), tid=40)
    (pending,) = server.receive(request)
    assert server.receive(request) == [pending]  # (its answer was lost: the same one, no second request)
    request_id, _ = status_of(parse(pending))
    assert server.next_event() == FloorRequested(request_id) and server.next_event() is None
    server.granted(request_id)
    (granted,) = server.datagrams_to_send(10.0)
    tid = parse(granted).transaction_id
    assert tid != 0 and server.get_timer() == 10.5
    assert server.handle_timer(10.4) == [] and server.handle_timer(10.5) == [granted]
    assert server.get_timer() == 11.5  # (doubling)
    ack = Message(Primitive.FLOOR_REQUEST_STATUS_ACK, CONFERENCE, tid, USER, [], version=2, response=True)
    assert server.receive(serialize(ack)) == [] and server.get_timer() is None


def test_over_udp_an_unacknowledged_decision_is_given_up_after_four_sendings() -> None:
    server = FloorServer(CONFERENCE, USER, FLOOR, version=2, transport="udp")
    (pending,) = server.receive(udp(Primitive.FLOOR_REQUEST, Attribute(AttributeType.FLOOR_ID, FLOOR), tid=41))
    server.granted(status_of(parse(pending))[0])
    sent = len(server.datagrams_to_send(0.0))
    now = 0.0
    while (due := server.get_timer()) is not None:
        now = due
        sent += len(server.handle_timer(now))
    assert sent == 4 and now == 0.5 + 1.0 + 2.0 + 4.0


def test_a_client_that_asked_for_the_floor_status_hears_every_change_including_presenters_elsewhere() -> None:
    server = FloorServer(CONFERENCE, USER, FLOOR)
    server.held_elsewhere("Anna")  # (before any FloorQuery: nothing is sent)
    assert server.datagrams_to_send() == []
    status = send(server, Primitive.FLOOR_QUERY, Attribute(AttributeType.FLOOR_ID, FLOOR))
    info = status.find(AttributeType.FLOOR_REQUEST_INFORMATION)
    assert info is not None and status_of(status)[1] is RequestStatus.GRANTED
    beneficiary = info.find(AttributeType.BENEFICIARY_INFORMATION)
    assert beneficiary is not None and beneficiary.value != USER and beneficiary.children[0].value == "Anna"
    assert [a.type for a in info.children][-1] is AttributeType.BENEFICIARY_INFORMATION  # (after the statuses)
    server.held_elsewhere(None)
    (nobody,) = [parse(m) for m in server.datagrams_to_send()]
    assert nobody.primitive is Primitive.FLOOR_STATUS and nobody.find(AttributeType.FLOOR_REQUEST_INFORMATION) is None
    ours, _ = status_of(send(server, Primitive.FLOOR_REQUEST, Attribute(AttributeType.FLOOR_ID, FLOOR), tid=12))
    server.granted(ours)
    granted, floor_status = (parse(m) for m in server.datagrams_to_send())
    assert granted.primitive is Primitive.FLOOR_REQUEST_STATUS and status_of(floor_status) == (ours, RequestStatus.GRANTED)
    server.revoked(why="taken_over")
    server.held_elsewhere("Ben")
    sent = [parse(m) for m in server.datagrams_to_send()]
    assert [m.primitive for m in sent] == [Primitive.FLOOR_REQUEST_STATUS, Primitive.FLOOR_STATUS, Primitive.FLOOR_STATUS]
    assert sent[1].find(AttributeType.FLOOR_REQUEST_INFORMATION) is None  # (revoked: nobody, for a moment)
    assert sent[2].find(AttributeType.FLOOR_REQUEST_INFORMATION).find(AttributeType.BENEFICIARY_INFORMATION).children[0].value == "Ben"  # type: ignore[union-attr]
    assert send(server, Primitive.FLOOR_QUERY, tid=13).primitive is Primitive.FLOOR_STATUS  # (no floor: unsubscribed)
    server.held_elsewhere(None)
    assert server.datagrams_to_send() == []
