"""Who may use the admin API: bearer tokens with a role, `admin` (everything) or `operator` (read, and
control live meetings). Signed host links are the meeting's (gateway.rooms.hostlinks, re-exported
here for the API that issues them).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from gateway.config import AdminConfig
from gateway.rooms.hostlinks import HostLinks

__all__ = ["AuthError", "Authenticator", "HostLinks", "Principal", "Role", "bearer_token"]

Role = Literal["admin", "operator"]


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role


def bearer_token(authorization: str) -> str:
    """The token of an `Authorization: Bearer <token>` header ("" for anything else)."""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class AuthError(Exception):
    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason = status, code, reason


class Authenticator:
    """`sessions`: who holds a session token of someone signed in with the identity provider
    (gateway.control.oidc), with the role the provider's claim gave them; None without sign-in."""

    def __init__(self, config: AdminConfig, sessions: Callable[[str], Principal | None] | None = None) -> None:
        self._sessions = sessions
        self._tokens: list[tuple[bytes, Principal]] = []
        if config.token:
            self._tokens.append((config.token.encode(), Principal("admin", "admin")))
        for entry in config.tokens:
            self._tokens.append((entry.token.encode(), Principal(entry.name, entry.role)))

    @property
    def enabled(self) -> bool:
        return bool(self._tokens) or self._sessions is not None

    def authenticate(self, authorization: str) -> Principal:
        """The principal of an `Authorization: Bearer <token>` header, or AuthError (401/403)."""
        if not self.enabled:
            raise AuthError(403, "api_disabled", "no admin token is configured (admin.token or admin.tokens)")
        token = bearer_token(authorization)
        if not token:
            raise AuthError(401, "unauthorised", "send 'Authorization: Bearer <token>'")
        given = token.encode()
        found = None
        for known, principal in self._tokens:  # compare with every token: no timing hint which one is near
            if hmac.compare_digest(given, known):
                found = principal
        if found is None and self._sessions is not None:
            found = self._sessions(token)
        if found is None:
            raise AuthError(401, "unauthorised", "unknown token, or the sign-in ended (or gave no admin or operator role)")
        return found

    @staticmethod
    def require(principal: Principal, role: Role) -> None:
        if role == "admin" and principal.role != "admin":
            raise AuthError(403, "forbidden", f"token {principal.name!r} is an operator's: only admins may do this")
