"""BFCP in SDP (RFC 8856): a room system's offered BFCP stream read, and the gateway's answer as
floor control server or, facing an MCU that insists on serving, as client; and the gateway's own
offer (dial-out) with the role the answer gives it."""

from __future__ import annotations

import pytest

from gateway.bfcp.sdp import BfcpSdpError, answer, offer_attributes, read_answer, read_offer

# What a Poly or Cisco room system offers beside its content line (a=label:3, a=content:slides).
POLY = [
    ("floorctrl", "c-s"), ("confid", "1"), ("userid", "2"), ("floorid", "1 mstrm:3"),
    ("setup", "actpass"), ("connection", "new"), ("bfcpver", "1 2"),
]  # fmt: skip


def ours(offered: list[tuple[str, str | None]], proto: str = "TCP/BFCP"):  # type: ignore[no-untyped-def]
    return answer(read_offer(proto, offered), conference_id=4711, user_id=7, floor_id=1, content_label="11")


def test_a_room_systems_offer_is_read() -> None:
    offer = read_offer("TCP/BFCP", POLY)
    assert (offer.transport, offer.roles, offer.setup, offer.versions) == ("tcp", frozenset({"c-s"}), "actpass", (1, 2))
    assert (offer.conference_id, offer.user_id, offer.floors) == (1, 2, {1: ("3",)})


def test_the_gateway_answers_as_server_listening_over_tcp() -> None:
    found = ours(POLY)
    assert found is not None
    assert found.attributes() == [
        ("floorctrl", "s-only"), ("setup", "passive"), ("connection", "new"),
        ("confid", "4711"), ("userid", "7"), ("floorid", "1 mstrm:11"), ("bfcpver", "2"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("offered", "proto", "setup", "version"),
    [
        ([("floorctrl", "c-only"), ("setup", "passive")], "TCP/BFCP", "active", 1),  # it listens: we connect
        ([("floorctrl", "c-only s-only")], "TCP/TLS/BFCP", "passive", 1),  # no bfcpver: TCP's version 1
        ([], "TCP/BFCP", "passive", 1),  # no floorctrl: the offerer is a client (RFC 8856 7)
        ([("floorctrl", "c-s"), ("bfcpver", "2")], "UDP/BFCP", None, 2),  # UDP: version 2, no setup
    ],
    ids=["offerer-listens", "tls-no-version", "no-floorctrl", "udp"],
)
def test_roles_setup_and_version_follow_the_offer(offered: list[tuple[str, str | None]], proto: str, setup: str | None, version: int) -> None:
    found = ours(offered, proto)
    assert found is not None and (found.role, found.setup, found.version) == ("s-only", setup, version)


@pytest.mark.parametrize(
    ("offered", "proto"),
    [
            ([("floorctrl", "s-only"), ("floorid", "1 mstrm:3")], "TCP/BFCP"),  # a server without its ids
        ([("floorctrl", "c-s")], "UDP/TLS/BFCP"),
        ([("floorctrl", "c-s"), ("bfcpver", "1")], "UDP/BFCP"),  # version 1 over UDP does not exist
    ],
    ids=["server-without-ids", "dtls", "udp-version-1"],
)
def test_what_the_gateway_cannot_serve_is_declined(offered: list[tuple[str, str | None]], proto: str) -> None:
    assert ours(offered, proto) is None


@pytest.mark.parametrize(
    ("proto", "offered"),
    [("SCTP/BFCP", POLY), ("TCP/BFCP", [("setup", "sometimes")])],
    ids=["transport", "setup"],
)
def test_an_unreadable_offer_is_an_error(proto: str, offered: list[tuple[str, str | None]]) -> None:
    with pytest.raises(BfcpSdpError):
        read_offer(proto, offered)


def test_nonsense_ids_and_too_many_floors_are_not_taken() -> None:
    offer = read_offer("TCP/BFCP", [
        ("confid", "0"), ("userid", "70000"), ("floorid", "x mstrm:3"),
        *[("floorid", f"{n} mstrm:{n}") for n in range(1, 20)],
    ])  # fmt: skip
    assert offer.conference_id is None and offer.user_id is None and len(offer.floors) == 7  # (8 read, 1 not a number)


def test_an_mcu_that_insists_on_serving_is_answered_as_client_with_its_ids() -> None:
    mcu = [("floorctrl", "s-only"), ("confid", "9"), ("userid", "5"), ("floorid", "4 mstrm:3"), ("floorid", "6 mstrm:11"), ("setup", "active")]
    found = ours(mcu)
    assert found is not None
    assert (found.role, found.conference_id, found.user_id, found.floor_id) == ("c-only", 9, 5, 6)  # (the floor of our label)
    assert found.attributes() == [("floorctrl", "c-only"), ("setup", "passive"), ("connection", "new"), ("bfcpver", "1")]


def test_our_offer_leaves_the_role_to_the_answer() -> None:
    offered = offer_attributes(4711, 7, 1, "2")
    assert ("floorctrl", "c-s") in offered and ("setup", "actpass") in offered and ("floorid", "1 mstrm:2") in offered
    ids = {"conference_id": 4711, "user_id": 7, "floor_id": 1, "content_label": "2"}
    client = read_answer("TCP/BFCP", [("floorctrl", "c-only"), ("setup", "active"), ("bfcpver", "1")], **ids)
    assert client is not None and (client.role, client.setup, client.conference_id, client.version) == ("s-only", "passive", 4711, 1)
    mcu = [("floorctrl", "s-only"), ("setup", "passive"), ("confid", "77"), ("userid", "3"), ("floorid", "2 mstrm:2"), ("bfcpver", "2")]
    server = read_answer("TCP/BFCP", mcu, **ids)
    assert server is not None and (server.role, server.setup, server.conference_id, server.user_id, server.floor_id, server.version) == (
        "c-only", "active", 77, 3, 2, 2,
    )  # fmt: skip
    for unusable in ([("floorctrl", "c-s")], [("floorctrl", "s-only")], [("floorctrl", "c-only"), ("bfcpver", "7")]):
        assert read_answer("TCP/BFCP", unusable, **ids) is None, unusable
