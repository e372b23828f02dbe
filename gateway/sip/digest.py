"""SIP digest authentication (sans-IO): the client's side (read a 401/407 challenge, answer it)
and the server's (challenge a REGISTER or INVITE, verify the answer).

RFC 3261 section 22 with RFC 8760 (SHA-256 and SHA-512/256 beside MD5, the "-sess" variants, the
UAC choosing the strongest challenge it supports) and RFC 7616's computation: qop=auth with a
client nonce and a nonce count that rises with each use of the same nonce, qop=auth-int (the body's
hash) when that is all the server offers, and RFC 2069's form without qop for old servers. A stale
nonce (stale=true) is answered again with the same credentials and the new nonce.

The server's nonces are stateless (a timestamp and its HMAC under a secret of the process: nothing
is stored per challenge, so a flood of REGISTERs costs no memory); an expired one is answered with
stale=true; the nonce count of each nonce must rise (a replayed answer fails), kept for a bounded
number of recent nonces; responses are compared in constant time, and an unknown user costs the
same work as a wrong password (no user enumeration by timing).

Challenges come from the network: a challenge is read in one pass over at most MAX_CHALLENGE
characters, with at most MAX_PARAMS parameters; anything else is a DigestError, never a crash. The
password is never part of an error, a repr or a log line; values that would break the header (CR,
LF, NUL) are refused instead of being sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

MAX_CHALLENGE = 4096
MAX_PARAMS = 32

# By preference (RFC 8760 section 2.4: the strongest the UAC supports first).
ALGORITHMS: dict[str, Callable[[bytes], str]] = {
    "SHA-512-256": lambda data: hashlib.new("sha512_256", data).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
    "MD5": lambda data: hashlib.md5(data, usedforsecurity=False).hexdigest(),
}


class DigestError(ValueError):
    """A challenge we cannot read or answer."""


@dataclass(frozen=True)
class Challenge:
    """One WWW-Authenticate / Proxy-Authenticate challenge of the Digest scheme."""

    realm: str
    nonce: str
    algorithm: str = "MD5"  # upper-case, as ALGORITHMS spells it, with "-SESS" where asked
    qop: tuple[str, ...] = ()  # the qop options offered, lower-case
    opaque: str | None = None
    stale: bool = False
    proxy: bool = False  # from Proxy-Authenticate (a 407): answered in Proxy-Authorization

    @property
    def base_algorithm(self) -> str:
        return self.algorithm.removesuffix("-SESS")

    @property
    def supported(self) -> bool:
        return self.base_algorithm in ALGORITHMS and (not self.qop or bool({"auth", "auth-int"} & set(self.qop)))

    @property
    def answer_header(self) -> str:
        return "Proxy-Authorization" if self.proxy else "Authorization"


def _params(text: str) -> dict[str, str]:
    """auth-params (name=token or name="quoted string", comma separated), in one pass."""
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        if i >= n:
            break
        start = i
        while i < n and text[i] not in "= \t,":
            i += 1
        name = text[start:i].lower()
        while i < n and text[i] in " \t":
            i += 1
        if not name or i >= n or text[i] != "=":
            raise DigestError(f"parameter without a value near {text[start:start + 20]!r}")
        i += 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            value: list[str] = []
            while True:
                if i >= n:
                    raise DigestError("unterminated quoted string")
                char = text[i]
                if char == "\\" and i + 1 < n:
                    value.append(text[i + 1])
                    i += 2
                    continue
                i += 1
                if char == '"':
                    break
                value.append(char)
            params[name] = "".join(value)
        else:
            start = i
            while i < n and text[i] not in " \t,":
                i += 1
            params[name] = text[start:i]
        if len(params) > MAX_PARAMS:
            raise DigestError(f"more than {MAX_PARAMS} parameters")
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] != ",":
            raise DigestError(f"expected a comma near {text[i:i + 20]!r}")
    return params


def parse_challenge(value: str, *, proxy: bool = False) -> Challenge:
    """A WWW-Authenticate (proxy=False) or Proxy-Authenticate header value. Raises DigestError."""
    if len(value) > MAX_CHALLENGE:
        raise DigestError(f"challenge longer than {MAX_CHALLENGE} characters")
    if any(c in value for c in "\r\n\x00"):
        raise DigestError("control characters in the challenge")
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"not a Digest challenge ({scheme[:20]!r})")
    params = _params(rest)
    realm, nonce = params.get("realm"), params.get("nonce")
    if realm is None or not nonce:
        raise DigestError("a Digest challenge needs a realm and a nonce")
    qop = tuple(q.strip().lower() for q in params["qop"].split(",") if q.strip()) if "qop" in params else ()
    return Challenge(
        realm=realm,
        nonce=nonce,
        algorithm=params.get("algorithm", "MD5").upper(),
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
        proxy=proxy,
    )


def choose(challenges: Iterable[Challenge]) -> Challenge | None:
    """The challenge to answer: the one with the most preferred algorithm we support (RFC 8760
    section 2.4), the first of those; None when there is none we can answer."""
    usable = [c for c in challenges if c.supported]
    order = list(ALGORITHMS)
    return min(usable, key=lambda c: order.index(c.base_algorithm), default=None)


def _quoted(value: str) -> str:
    if any(c in value for c in "\r\n\x00"):
        raise DigestError("control characters in a value of the answer")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class DigestClient:
    """One set of credentials (a trunk's, a registration's). Remembers how often it used each
    nonce (the nc of RFC 7616), so that repeated answers to one nonce are not replays."""

    username: str
    password: str = field(repr=False)
    new_cnonce: Callable[[], str] = field(default=lambda: secrets.token_hex(16), repr=False)
    _counts: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)

    def authorization(self, challenge: Challenge, method: str, uri: str, body: bytes = b"") -> str:
        """The Authorization / Proxy-Authorization value answering `challenge` for a request."""
        if not challenge.supported:
            raise DigestError(f"cannot answer algorithm {challenge.algorithm} with qop {','.join(challenge.qop) or 'none'}")
        digest = ALGORITHMS[challenge.base_algorithm]
        qop = "auth" if "auth" in challenge.qop else ("auth-int" if challenge.qop else None)
        cnonce = self.new_cnonce() if qop or challenge.algorithm.endswith("-SESS") else None
        ha1 = digest(f"{self.username}:{challenge.realm}:{self.password}".encode())
        if challenge.algorithm.endswith("-SESS"):
            ha1 = digest(f"{ha1}:{challenge.nonce}:{cnonce}".encode())
        a2 = f"{method}:{uri}" + (f":{digest(body)}" if qop == "auth-int" else "")
        ha2 = digest(a2.encode())
        parts = [
            f"username={_quoted(self.username)}",
            f"realm={_quoted(challenge.realm)}",
            f"nonce={_quoted(challenge.nonce)}",
            f"uri={_quoted(uri)}",
        ]
        if qop is None:
            response = digest(f"{ha1}:{challenge.nonce}:{ha2}".encode())
        else:
            key = (challenge.realm, challenge.nonce)
            if key not in self._counts and len(self._counts) >= 64:
                self._counts.pop(next(iter(self._counts)))  # (nonces of the past are not used again)
            count = self._counts[key] = self._counts.get(key, 0) + 1
            nc = f"{count:08x}"
            response = digest(f"{ha1}:{challenge.nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())
            parts += [f"qop={qop}", f"nc={nc}"]
        if cnonce is not None:
            parts.append(f"cnonce={_quoted(cnonce)}")
        parts += [f'response="{response}"', f"algorithm={challenge.algorithm}"]
        if challenge.opaque is not None:
            parts.append(f"opaque={_quoted(challenge.opaque)}")
        return "Digest " + ", ".join(parts)


# -- the server's side ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What an Authorization header proved: `user` when it is right; `stale` when it was right for
    a nonce that expired (challenge again with stale=true, the client answers without asking its
    user); else `reason` says what failed (for the log: never the password or the response)."""

    user: str | None = None
    stale: bool = False
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.user is not None


class DigestServer:
    """Challenges requests for one realm and verifies their answers."""

    # timestamp (ms) + 8 random bytes (every challenge its own nonce: two clients challenged in the
    # same millisecond must not share one, or the second's nc=1 would look like a replay)
    # + truncated HMAC-SHA-256 of both
    NONCE_BYTES = 8 + 8 + 16

    def __init__(
        self,
        realm: str,
        *,
        secret: bytes | None = None,
        lifetime_s: float = 300.0,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        clock: Callable[[], float] = time.time,
        remembered_nonces: int = 10_000,
    ) -> None:
        unknown = [a for a in algorithms if a not in ALGORITHMS]
        if unknown or not algorithms:
            raise ValueError(f"unsupported digest algorithms {unknown or algorithms}")
        if any(c in realm for c in '"\\\r\n\x00'):
            raise ValueError("a realm may not hold quotes, backslashes or control characters")
        self.realm = realm
        self._secret = secret or secrets.token_bytes(32)
        self._lifetime = lifetime_s
        self._algorithms = algorithms
        self._clock = clock
        self._counts: OrderedDict[str, int] = OrderedDict()  # nonce -> highest nc seen
        self._remembered = remembered_nonces

    def _nonce(self) -> str:
        stamp = int(self._clock() * 1000).to_bytes(8, "big") + secrets.token_bytes(8)
        mac = hmac.new(self._secret, stamp + self.realm.encode(), hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(stamp + mac).decode().rstrip("=")

    def _nonce_age(self, nonce: str) -> float | None:
        """Seconds since we made this nonce; None when we did not make it."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except ValueError:
            return None
        if len(raw) != self.NONCE_BYTES:
            return None
        stamp, mac = raw[:16], raw[16:]
        expected = hmac.new(self._secret, stamp + self.realm.encode(), hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(mac, expected):
            return None
        return self._clock() - int.from_bytes(stamp[:8], "big") / 1000

    def challenges(self, *, stale: bool = False) -> list[str]:
        """WWW-Authenticate (or Proxy-Authenticate) values, one per algorithm, the strongest first
        (RFC 8760 section 2.4), all with the same fresh nonce."""
        nonce = self._nonce()
        tail = ", stale=true" if stale else ""
        return [f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={a}, qop="auth"{tail}' for a in self._algorithms]

    def ours(self, authorization: str) -> bool:
        """Whether an Authorization value answers a challenge of ours at all (Digest, our realm):
        one that does not is no wrong answer, the client must be challenged (RFC 4475 regaut01)."""
        scheme, _, rest = authorization.strip().partition(" ")
        if scheme.lower() != "digest" or len(authorization) > MAX_CHALLENGE:
            return False
        try:
            return _params(rest).get("realm") == self.realm
        except DigestError:
            return True  # (malformed Digest: verify says why)

    def verify(
        self, authorization: str, method: str, password_of: Callable[[str], str | None], body: bytes = b""
    ) -> Verdict:
        """Checks an Authorization / Proxy-Authorization value for a request; `password_of` gives a
        user's password (None: no such user). Never raises on what the network sent."""
        if len(authorization) > MAX_CHALLENGE or any(c in authorization for c in "\r\n\x00"):
            return Verdict(reason="malformed authorization")
        scheme, _, rest = authorization.strip().partition(" ")
        if scheme.lower() != "digest":
            return Verdict(reason="not a Digest authorization")
        try:
            params = _params(rest)
        except DigestError as exc:
            return Verdict(reason=f"malformed authorization: {exc}")
        user, nonce, uri, response = (params.get(k) for k in ("username", "nonce", "uri", "response"))
        if user is None or not nonce or uri is None or not response:
            return Verdict(reason="authorization without username, nonce, uri or response")
        if params.get("realm") != self.realm:
            return Verdict(reason="another realm")
        algorithm = params.get("algorithm", "MD5").upper()
        if algorithm not in self._algorithms:
            return Verdict(reason=f"algorithm {algorithm[:20]} not offered")
        age = self._nonce_age(nonce)
        if age is None or age < -5:
            return Verdict(reason="a nonce we did not give")
        qop = params.get("qop", "").lower() or None
        if qop not in (None, "auth", "auth-int"):
            return Verdict(reason="unknown qop")
        nc_text, cnonce = params.get("nc", ""), params.get("cnonce", "")
        count = 0
        if qop is not None:
            if len(nc_text) != 8 or not cnonce:
                return Verdict(reason="qop without nc or cnonce")
            try:
                count = int(nc_text, 16)
            except ValueError:
                return Verdict(reason="nc is not hexadecimal")
        password = password_of(user)
        known = password is not None
        digest = ALGORITHMS[algorithm]
        ha1 = digest(f"{user}:{self.realm}:{password if known else secrets.token_hex(16)}".encode())
        a2 = f"{method}:{uri}" + (f":{digest(body)}" if qop == "auth-int" else "")
        ha2 = digest(a2.encode())
        if qop is None:
            expected = digest(f"{ha1}:{nonce}:{ha2}".encode())
        else:
            expected = digest(f"{ha1}:{nonce}:{nc_text}:{cnonce}:{qop}:{ha2}".encode())
        if not (hmac.compare_digest(expected, response.lower()) and known):
            return Verdict(reason="wrong credentials")
        if age > self._lifetime:
            return Verdict(stale=True, reason="nonce expired")
        if qop is not None:
            if count <= self._counts.get(nonce, 0):
                return Verdict(reason="nonce count did not rise (a replay)")
            self._counts[nonce] = count
            self._counts.move_to_end(nonce)
            while len(self._counts) > self._remembered:
                self._counts.popitem(last=False)
        elif nonce in self._counts:
            return Verdict(reason="nonce used before without qop (a replay)")
        else:
            self._counts[nonce] = 0
            while len(self._counts) > self._remembered:
                self._counts.popitem(last=False)
        return Verdict(user=user)
