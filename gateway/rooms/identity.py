"""Typed identities of the directory, protocol-free: a SIP URI, an H.323 alias or an E.164 number.

The protocol that reads an address (a SIP URI, later an H.323 alias address) makes the identity;
the directory only compares identities and looks up their host part, and dial-out picks the
protocol that calls an identity by its kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class IdentityKind(StrEnum):
    SIP_URI = "sip_uri"
    H323_ALIAS = "h323_alias"
    E164 = "e164"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a room system or callee is. `user` is the user part, alias or number (as the protocol
    decoded it), `host` the host part without port or IPv6 brackets (None for a bare number or alias
    reached through a trunk or gatekeeper), `text` the address as given: what the protocol dials."""

    kind: IdentityKind
    user: str
    host: str | None
    text: str

    @property
    def address(self) -> str:
        """How a caller is recognised whatever port, transport or parameters it calls with:
        user@host (or the user alone), lower case."""
        return (f"{self.user}@{self.host}" if self.host is not None else self.user).lower()


# Reads an address as written (a room system's URI, a destination to dial) into an identity;
# raises ValueError for an address no enabled protocol can read.
IdentityReader = Callable[[str], Identity]
