"""Browsers' resume tokens, signed: what lets a browser that lost its connection back into its place
(this node keeps it for webrtc.reconnect_grace_s), and after a failover into the meeting on another
node with its name, role and mute state. The node that takes it trusts the signature (HMAC-SHA256
with the cluster's shared key), not the client. Sans-IO: no sockets, the clock is given.

A token is `v1.<claims>.<signature>`, both parts base64url. Claims: the place (a random id, new at
every join: a token of a place taken once is worth nothing on that node again), the room, the name,
the role, whether the person waited in the lobby and since when, the mute state (host-muted, self-unmute forbidden,
self-muted) and when it was issued. Another node takes it only while it is fresh
(cluster.resume_valid_s); browsers get a new one at every ping and whenever their mute state changes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_TOKEN_CHARS = 1024
_VERSION = "v1"


class Place(BaseModel):
    """What a resume token vouches for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    place: str = Field(min_length=8, max_length=64)
    room: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    role: Literal["host", "guest"]
    lobby: bool = False
    waiting_since: float = 0.0  # in the lobby: since when, on the wall clock (its place in the queue)
    host_muted: bool = False
    self_unmute_forbidden: bool = False
    self_muted: bool = False
    issued: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ResumeTokens:
    def __init__(self, key: bytes, valid_s: float, clock: Callable[[], float] = time.time) -> None:
        # (a key of its own for this purpose, whatever else the secret signs)
        self._key = hmac.new(key, b"gateway resume tokens", hashlib.sha256).digest()
        self.valid_s = valid_s
        self._clock = clock

    def issue(self, place: Place) -> str:
        claims = _b64(json.dumps(place.model_dump(), separators=(",", ":")).encode())
        return f"{_VERSION}.{claims}.{self._sign(claims)}"

    def _sign(self, claims: str) -> str:
        return _b64(hmac.new(self._key, f"{_VERSION}.{claims}".encode(), hashlib.sha256).digest())

    def read(self, token: str) -> Place | None:
        """The place a token vouches for, or None when it is not one of ours (malformed, forged,
        another cluster's). It may be old: `fresh` says whether another node may take it."""
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            return None
        version, claims, signature = token.split(".")
        if version != _VERSION or not hmac.compare_digest(signature, self._sign(claims)):
            return None
        try:
            return Place.model_validate_json(_unb64(claims))
        except (ValueError, ValidationError):
            return None

    def fresh(self, place: Place) -> bool:
        """Issued within cluster.resume_valid_s (and not in the future beyond a little clock skew)."""
        age = self._clock() - place.issued
        return -5.0 <= age <= self.valid_s
