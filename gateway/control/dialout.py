"""Dial-out by identity: reads a destination into a typed identity and hands it to the protocol that
calls that kind of identity (SIP for SIP URIs and, through a trunk, E.164 numbers; H.323 later)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from gateway.rooms.errors import DialOutRefused
from gateway.rooms.identity import Identity, IdentityKind, IdentityReader

log = structlog.get_logger(__name__)

# Places a call into a room: (room, callee, who asked, display name, directory entry?) -> the call.
Dialer = Callable[[str, Identity, str, str | None, bool], Awaitable[dict[str, Any]]]


class DialOut:
    def __init__(self, read: IdentityReader, dialers: Mapping[IdentityKind, Dialer]) -> None:
        self._read = read
        self._dialers = dict(dialers)

    async def __call__(
        self, room: str, callee: Identity | str, actor: str, name: str | None = None, in_directory: bool = False
    ) -> dict[str, Any]:
        """Calls `callee` (an identity, or an address as typed) into `room` through its protocol,
        whose own checks (dial-out rules, rates, load) then apply."""
        try:
            identity = self._read(callee) if isinstance(callee, str) else callee
            dialer = self._dialers.get(identity.kind)
            if dialer is None:
                raise DialOutRefused(f"no protocol of this gateway calls a {identity.kind.value}", "bad_uri")
        except (ValueError, DialOutRefused) as exc:
            code = exc.code if isinstance(exc, DialOutRefused) else "bad_uri"
            shown = callee if isinstance(callee, str) else callee.text
            log.warning(
                "dial-out refused", room=room, uri=shown[:300], requested_by=actor, directory=in_directory, code=code, why=str(exc)
            )
            if isinstance(exc, DialOutRefused):
                raise
            raise DialOutRefused(str(exc), "bad_uri") from None
        return await dialer(room, identity, actor, name, in_directory)
