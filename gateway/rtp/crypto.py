"""SDES keys for SRTP (RFC 4568): what SDP agrees and the RTP session uses, shared by SIP and H.323."""

from __future__ import annotations

import base64
from dataclasses import dataclass

CRYPTO_SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")


@dataclass(frozen=True)
class Crypto:
    """One SDES crypto line: tag, suite and the master key+salt (30 bytes for both suites)."""

    tag: int
    suite: str
    key_salt: bytes

    def line(self) -> str:
        return f"{self.tag} {self.suite} inline:{base64.b64encode(self.key_salt).decode()}"
