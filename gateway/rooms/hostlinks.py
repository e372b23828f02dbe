"""Signed host links, protocol-free: `/r/<room>?host=<expiry>.<signature>` lets a host in without
typing the PIN. The signature is an HMAC over the room, the expiry and the room's host PIN, keyed by
a secret kept in the database, so a link stops working when it expires or the host PIN changes.
The control plane issues links; the legs that take them (the browser session) verify them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time


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
