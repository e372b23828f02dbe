"""Who may use the admin API, and signed host links.

Tokens carry a role: `admin` (everything) or `operator` (read, and control live meetings). A host
link is `/r/<room>?host=<expiry>.<signature>`: an HMAC over the room, the expiry and the room's
host PIN, keyed by a secret kept in the database; it lets a host in without typing the PIN, and
stops working when it expires or the host PIN changes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Literal

from gateway.config import AdminConfig

Role = Literal["admin", "operator"]


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role


class AuthError(Exception):
    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason = status, code, reason


class Authenticator:
    def __init__(self, config: AdminConfig) -> None:
        self._tokens: list[tuple[bytes, Principal]] = []
        if config.token:
            self._tokens.append((config.token.encode(), Principal("admin", "admin")))
        for entry in config.tokens:
            self._tokens.append((entry.token.encode(), Principal(entry.name, entry.role)))

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def authenticate(self, authorization: str) -> Principal:
        """The principal of an `Authorization: Bearer <token>` header, or AuthError (401/403)."""
        if not self._tokens:
            raise AuthError(403, "api_disabled", "no admin token is configured (admin.token or admin.tokens)")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "unauthorised", "send 'Authorization: Bearer <token>'")
        given = token.strip().encode()
        found = None
        for known, principal in self._tokens:  # compare with every token: no timing hint which one is near
            if hmac.compare_digest(given, known):
                found = principal
        if found is None:
            raise AuthError(401, "unauthorised", "unknown token")
        return found

    @staticmethod
    def require(principal: Principal, role: Role) -> None:
        if role == "admin" and principal.role != "admin":
            raise AuthError(403, "forbidden", f"token {principal.name!r} is an operator's: only admins may do this")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class HostLinks:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _signature(self, room: str, expires: int, host_pin: str | None) -> str:
        pin_hash = hashlib.sha256((host_pin or "").encode()).hexdigest()
        message = f"host-link|{room}|{expires}|{pin_hash}".encode()
        return _b64(hmac.new(self._secret, message, hashlib.sha256).digest()[:18])

    def issue(self, room: str, host_pin: str | None, valid_s: float, now: float | None = None) -> tuple[str, int]:
        expires = int((now if now is not None else time.time()) + valid_s)
        return f"{expires}.{self._signature(room, expires, host_pin)}", expires

    def verify(self, token: str, room: str, host_pin: str | None, now: float | None = None) -> bool:
        expiry, _, signature = token.partition(".")
        if not (expiry.isascii() and expiry.isdigit()) or len(expiry) > 12 or not signature:
            return False
        if int(expiry) < (now if now is not None else time.time()):
            return False
        return hmac.compare_digest(signature.encode(), self._signature(room, int(expiry), host_pin).encode())
