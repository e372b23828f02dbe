"""Dial-out picks the protocol from the callee's identity (gateway/control/dialout.py), and the
directory holds typed identities read by the protocol that owns the address (gateway/sip/uri.py)."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from gateway.config import GatewayConfig, RoomConfig, RoomSystemConfig
from gateway.control.dialout import DialOut
from gateway.control.live import LiveControl
from gateway.rooms.directory import Directory
from gateway.rooms.errors import DialOutRefused
from gateway.rooms.identity import Identity, IdentityKind
from gateway.sip.uri import sip_identity


def test_sip_uris_and_numbers_become_typed_identities() -> None:
    board = sip_identity("sips:Board@[2001:DB8::5]:5061;transport=tls")
    assert (board.kind, board.user, board.host, board.address) == (IdentityKind.SIP_URI, "Board", "2001:DB8::5", "board@2001:db8::5")
    number = sip_identity("tel:+4930123;phone-context=x")
    assert (number.kind, number.user, number.host, number.address) == (IdentityKind.E164, "+4930123", None, "+4930123")
    with pytest.raises(ValueError):
        sip_identity("h323:board@10.0.0.5")


async def test_each_kind_goes_to_its_own_dialer_and_unreadable_ones_are_refused() -> None:
    calls: list[tuple[str, Identity, bool]] = []

    def dialer(name: str) -> Any:
        async def dial(room: str, callee: Identity, actor: str, shown: str | None, in_directory: bool) -> dict[str, Any]:
            calls.append((name, callee, in_directory))
            return {"call": len(calls), "room": room, "uri": callee.text}

        return dial

    config = GatewayConfig(rooms=[RoomConfig(id="demo")])
    directory = Directory(config, identify=sip_identity)
    directory.set_systems([RoomSystemConfig(id="board", name="Board", uri="sip:board@10.0.0.5")])
    dial_out = DialOut(sip_identity, {IdentityKind.SIP_URI: dialer("sip"), IdentityKind.E164: dialer("trunk")})
    live = LiveControl(directory, dial_out)

    await live.dial("demo", "test", system="board")
    await live.dial("demo", "test", uri=" sip:42@pbx.example ")
    await live.dial("demo", "test", uri="tel:+4930123")
    assert [(name, c.kind, c.text, d) for name, c, d in calls] == [
        ("sip", IdentityKind.SIP_URI, "sip:board@10.0.0.5", True),
        ("sip", IdentityKind.SIP_URI, "sip:42@pbx.example", False),
        ("trunk", IdentityKind.E164, "tel:+4930123", False),
    ]
    with capture_logs() as logs, pytest.raises(DialOutRefused) as refused:
        await live.dial("demo", "test", uri="mailto:x@example.org")
    assert refused.value.code == "bad_uri"
    assert [(e["event"], e["code"]) for e in logs] == [("dial-out refused", "bad_uri")]
    h323_only = DialOut(lambda text: Identity(IdentityKind.H323_ALIAS, text, None, text), {IdentityKind.SIP_URI: dialer("sip")})
    with pytest.raises(DialOutRefused) as refused:
        await h323_only("demo", "board", "test")
    assert refused.value.code == "bad_uri" and len(calls) == 3


def test_a_directory_without_an_identity_reader_recognises_no_room_system() -> None:
    directory = Directory(GatewayConfig())
    assert directory.system_for("sip:board@10.0.0.5") is None
    with pytest.raises(RuntimeError):
        directory.set_systems([RoomSystemConfig(id="board", name="Board", uri="sip:board@10.0.0.5")])
