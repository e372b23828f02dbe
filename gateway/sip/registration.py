"""Keeping a trunk registered (RFC 3261 section 10), sans-IO: what to send when, and what the
answers mean. The adapter (sip/trunks.py) sends the REGISTERs this builds through the user agent
and hands the final answers back, with the time.

    reg = Registration(...); reg.start(now)
    reg.due                     # when to call reg.build(now) and send (None: nothing to send)
    uri, headers = reg.build(now)
    reg.answered(status, message, now)   # the final answer (408 and None: no answer at all)
    reg.state                   # registered / failing (with the status) / next attempt

One Call-ID for the life of the binding, the CSeq rising (RFC 3261 10.2.4). 401/407 are answered
with digest (sip/digest.py; the strongest algorithm offered, nonce counted; a stale nonce is
answered again at once; the same challenge twice means the credentials are wrong: failing, with
backoff). 423 Interval Too Brief: again at once with its Min-Expires. 2xx: registered for the
expiry the registrar granted (the Contact's expires parameter for our contact, else Expires),
refreshed at half of it, at most a minute before it ends. Anything else, or no answer: failing,
again after 5, 10, 30, 60, 120, then every 300 s, with up to 10 % jitter so trunks of many
gateways do not return in step. While registered, a keep-alive every `keepalive_s` keeps NAT
bindings on the way open and notices a registrar that went away: over UDP an OPTIONS, unanswered
(64*T1); over TCP/TLS a CRLF ping (RFC 5626 4.4.1: `ping_sent`, `pong_received`), with no pong within
PONG_TIMEOUT_S (`pong_due`, `pong_missed`) or the connection lost (`flow_failed`): the trunk
registers again at once.

A registrar's name may stand for several addresses (RFC 3263: SRV targets by priority and weight):
the adapter says how many it has not tried yet (`answered(..., alternatives=n)`); no answer (408)
or 503 then sends again at once, afresh (no challenge carried over), to the next one, and only
when none is left is it a failure with backoff.
"""

from __future__ import annotations

import enum
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from gateway.sip.digest import Challenge, DigestClient, DigestError, choose, parse_challenge
from gateway.sip.message import NameAddr, SipMessage, SipMessageError, ascii_int, split_list

BACKOFF_S = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
MAX_INTERVAL_BRIEF = 3  # 423s in a row before giving up for a backoff round
MAX_EXPIRES_S = 86_400
FAILOVER_STATUSES = frozenset({408, 503})  # RFC 3263 4.3: try the registrar's next address
PONG_TIMEOUT_S = 10.0  # RFC 5626 4.4.1: no pong to a CRLF ping this long after it: the flow has failed


class RegistrationStatus(enum.Enum):
    IDLE = "idle"  # not started, or stopped
    REGISTERING = "registering"  # a REGISTER is out (first, or after a failure)
    REGISTERED = "registered"
    FAILING = "failing"  # the last attempt failed: `status` says how, `next_attempt_at` when again
    UNREGISTERING = "unregistering"


@dataclass(frozen=True)
class RegistrationState:
    status: RegistrationStatus
    last_status: int | None = None  # the registrar's last final answer (408: none came)
    reason: str = ""
    registered_until: float | None = None
    next_attempt_at: float | None = None
    failures: int = 0


class Registration:
    """One binding: `aor` (sip:user@domain) at `contact`, refreshed through `registrar`."""

    def __init__(
        self,
        *,
        registrar: str,  # the Request-URI: sip:domain (RFC 3261 10.2)
        aor: str,  # To and From
        contact: str,  # our Contact URI
        credentials: DigestClient | None,
        expires_s: int = 600,
        keepalive_s: float = 0.0,  # OPTIONS to the registrar this often while registered (0: none)
        realm: str | None = None,  # answer only challenges of this realm (None: any)
        display_name: str = "",
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.registrar = registrar
        self.aor = aor
        self.contact = contact
        self.credentials = credentials
        self.wanted_expires = expires_s
        self.keepalive_s = keepalive_s
        self.keepalive_due: float | None = None  # when to send the next keep-alive (OPTIONS or CRLF ping)
        self.pong_due: float | None = None  # a CRLF ping is out: its pong must come by then
        self.keepalives_answered = 0
        self.realm = realm
        self.display_name = display_name.replace('"', "'")
        self._rng = rng
        self.call_id = secrets.token_hex(12)
        self.from_tag = secrets.token_hex(6)
        self.cseq = secrets.randbelow(2**16)
        self._expires = expires_s
        self._challenge: Challenge | None = None
        self._answered_challenge: Challenge | None = None  # the challenge our last REGISTER answered
        self._brief = 0
        self._unregister = False
        self.due: float | None = None
        self.in_flight = False
        self.state = RegistrationState(RegistrationStatus.IDLE)

    # -- commands -------------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        self._unregister = False
        self.state = RegistrationState(RegistrationStatus.REGISTERING, failures=self.state.failures)
        self.due = now

    def stop(self, now: float) -> None:
        """Removes the binding (a REGISTER with Expires: 0) when one is up; else just stops."""
        self.keepalive_due = self.pong_due = None
        if self.state.status is RegistrationStatus.REGISTERED:
            self._unregister = True
            self.state = RegistrationState(RegistrationStatus.UNREGISTERING)
            self.due = now
        else:
            self.state = RegistrationState(RegistrationStatus.IDLE)
            self.due = None

    def unreachable(self, reason: str, now: float) -> None:
        """No REGISTER could be sent (the registrar's name did not resolve): a failure."""
        if self.state.status is not RegistrationStatus.IDLE:
            self.due = None
            self._failed(0, reason, now)

    def keepalive_answered(self, status: int, now: float) -> None:
        """The registrar's answer to our OPTIONS keep-alive (any status: it is there), or 408 when
        none came: then it (or the path to it, a NAT binding) is gone, and we register again at once."""
        if self.state.status is not RegistrationStatus.REGISTERED:
            return
        if status == 408:
            self.flow_failed(408, "registrar silent (keep-alive unanswered)", now)
            return
        self.keepalives_answered += 1
        self.keepalive_due = now + self.keepalive_s if self.keepalive_s > 0 else None

    def ping_sent(self, now: float) -> None:
        """A CRLF ping went out on the registrar's connection (when keepalive_due came): its pong is due."""
        self.keepalive_due = None
        if self.state.status is RegistrationStatus.REGISTERED:
            self.pong_due = now + PONG_TIMEOUT_S

    def pong_received(self, now: float) -> None:
        """The pong (a CRLF) of our ping: the registrar is there; the next ping after keepalive_s."""
        if self.pong_due is None or self.state.status is not RegistrationStatus.REGISTERED:
            return
        self.pong_due = None
        self.keepalives_answered += 1
        self.keepalive_due = now + self.keepalive_s if self.keepalive_s > 0 else None

    def pong_missed(self, now: float) -> None:
        """pong_due has come: without the pong by then the flow has failed (RFC 5626 4.4.1)."""
        if self.pong_due is not None and now >= self.pong_due - 0.001:
            self.flow_failed(408, f"registrar silent (no pong to the CRLF keep-alive within {PONG_TIMEOUT_S:g} s)", now)

    def flow_failed(self, status: int, reason: str, now: float) -> None:
        """While registered, the way to the registrar failed (a keep-alive unanswered, its connection
        lost): the binding is not to be trusted, we register again at once."""
        if self.state.status is not RegistrationStatus.REGISTERED:
            return
        self.keepalive_due = self.pong_due = None
        self.state = RegistrationState(
            RegistrationStatus.FAILING, last_status=status, reason=reason, next_attempt_at=now, failures=self.state.failures + 1
        )
        self._challenge = None
        if not self.in_flight:
            self.due = now

    def keepalive_request(self) -> tuple[str, list[tuple[str, str]]]:
        """The OPTIONS keep-alive (Request-URI and headers), when keepalive_due has come."""
        self.keepalive_due = None
        return self.registrar, [
            ("from", f"<{self.aor}>;tag={self.from_tag}"),
            ("to", f"<{self.registrar}>"),
            ("call-id", secrets.token_hex(12)),
            ("cseq", "1 OPTIONS"),
        ]

    # -- the requests -----------------------------------------------------------------------------

    def build(self, now: float, method: str = "REGISTER", uri: str | None = None) -> tuple[str, list[tuple[str, str]]]:
        """The next REGISTER (Request-URI and headers; Via is the user agent's)."""
        self.cseq += 1
        self.due = None
        self.in_flight = True
        name = f'"{self.display_name}" ' if self.display_name else ""
        expires = 0 if self._unregister else self._expires
        uri = uri or self.registrar
        headers = [
            ("from", f"{name}<{self.aor}>;tag={self.from_tag}"),
            ("to", f"{name}<{self.aor}>"),
            ("call-id", self.call_id),
            ("cseq", f"{self.cseq} {method}"),
            ("contact", f"<{self.contact}>;expires={expires}"),
            ("expires", str(expires)),
            ("allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"),
            # (RFC 3327: a proxy on the way, e.g. an outbound proxy, may put itself on the binding's Path;
            # strict registrars refuse that with 420 unless the UA says it takes it)
            ("supported", "path"),
        ]
        self._answered_challenge = None
        if self._challenge is not None and self.credentials is not None:
            try:
                header = self.credentials.authorization(self._challenge, method, uri)
            except DigestError:
                pass
            else:
                headers.append((self._challenge.answer_header.lower(), header))
                self._answered_challenge = self._challenge
        return uri, headers

    # -- the answers ------------------------------------------------------------------------------

    def answered(self, status: int, message: SipMessage | None, now: float, alternatives: int = 0, reason: str = "") -> bool:
        """The final answer to our REGISTER (`reason`: why, when no message came: "no answer", or
        the transport's error). `alternatives`: addresses of the registrar not tried yet in this
        round. True when the answer (none, 503) means: again at once, to the next of them."""
        self.in_flight = False
        if self.state.status is RegistrationStatus.IDLE:
            return False  # (stopped meanwhile)
        if self._unregister:
            self.state = RegistrationState(RegistrationStatus.IDLE, last_status=status)
            self.due = None
            return False
        if status in FAILOVER_STATUSES and alternatives > 0:
            self._next_address(status, message.reason if message is not None else reason or "no answer", now)
            return True
        if status in (401, 407) and message is not None:
            self._challenged(status, message, now)
        elif status == 423 and message is not None:
            self._interval_too_brief(message, now)
        elif 200 <= status < 300:
            self._registered(status, message, now)
        else:
            self._failed(status, message.reason if message is not None else reason or "no answer", now)
        return False

    def _next_address(self, status: int, reason: str, now: float) -> None:
        """One address of the registrar failed, another is left: no failure counted, no backoff."""
        self.keepalive_due = self.pong_due = None
        self._challenge = None  # (its nonce is the silent one's)
        self._brief = 0
        self.state = RegistrationState(
            RegistrationStatus.REGISTERING, last_status=status, reason=f"{reason[:100]}; trying the next address",
            failures=self.state.failures,
        )  # fmt: skip
        self.due = now

    def _challenged(self, status: int, message: SipMessage, now: float) -> None:
        header = "proxy-authenticate" if status == 407 else "www-authenticate"
        offered = []
        # (raw values: a challenge's own commas are no list separators, so not message.all)
        for value in message.all_raw(header)[:8]:
            try:
                offered.append(parse_challenge(value, proxy=status == 407))
            except DigestError:
                continue
        if self.realm is not None:
            offered = [c for c in offered if c.realm == self.realm]
        challenge = choose(offered)
        if self.credentials is None or challenge is None:
            self._failed(status, "no credentials for this challenge" if self.credentials is None else "no digest challenge we can answer", now)
            return
        answered = self._answered_challenge
        if answered is not None and not challenge.stale and challenge.realm == answered.realm and (
            challenge.nonce == answered.nonce or self.state.status is not RegistrationStatus.REGISTERED
        ):
            # Our answer was refused: to this very nonce, or (while registering, or retrying after a
            # failure) met by a fresh one not marked stale. (A refresh may meet a new nonce once:
            # that one is answered.) Registrars that challenge with a fresh nonce every time would
            # otherwise be asked again and again.
            self._failed(status, "credentials refused", now)
            return
        self._challenge = challenge
        self.due = now

    def _interval_too_brief(self, message: SipMessage, now: float) -> None:
        minimum = ascii_int((message.get("min-expires") or "").strip(), 10)
        self._brief += 1
        if minimum is None or minimum > MAX_EXPIRES_S or minimum <= self._expires or self._brief > MAX_INTERVAL_BRIEF:
            self._failed(423, "Interval Too Brief without a usable Min-Expires", now)
            return
        self._expires = minimum
        self.due = now

    def _registered(self, status: int, message: SipMessage | None, now: float) -> None:
        granted = self._granted_expires(message)
        if granted <= 0:
            self._failed(status, "registrar kept no binding for our contact", now)
            return
        self._brief = 0
        refresh = max(granted / 2, granted - 60) if granted > 120 else granted / 2
        self.state = RegistrationState(
            RegistrationStatus.REGISTERED, last_status=status, registered_until=now + granted, next_attempt_at=now + refresh
        )
        self.due = now + refresh
        if self.keepalive_s > 0 and self.keepalive_due is None and self.pong_due is None:
            self.keepalive_due = now + self.keepalive_s

    def _granted_expires(self, message: SipMessage | None) -> int:
        """The registrar's expiry for our contact: its Contact's expires parameter, else Expires,
        else what we asked."""
        if message is None:
            return self._expires
        ours = self.contact.lower()
        try:
            for value in message.all_raw("contact")[:8]:
                for part in split_list(value)[:32]:
                    entry = NameAddr.parse(part)
                    found = ascii_int(entry.param("expires") or "", 10)
                    if entry.uri.lower() == ours and found is not None:
                        return min(found, MAX_EXPIRES_S)
        except SipMessageError:
            pass
        header = ascii_int((message.get("expires") or "").strip(), 10)
        return min(header, MAX_EXPIRES_S) if header is not None else self._expires

    def _failed(self, status: int, reason: str, now: float) -> None:
        self.keepalive_due = self.pong_due = None
        failures = self.state.failures + 1
        self._challenge = None  # (the next attempt starts afresh)
        self._brief = 0
        delay = BACKOFF_S[min(failures, len(BACKOFF_S)) - 1] * (1 + 0.1 * self._rng())
        self.state = RegistrationState(
            RegistrationStatus.FAILING, last_status=status, reason=reason, next_attempt_at=now + delay, failures=failures
        )
        self.due = now + delay
