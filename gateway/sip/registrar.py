"""The gateway as registrar for the room systems of its directory (RFC 3261 10.3), sans-IO.

A directory entry with a password may register: the digest user name names it (its URI's user, or
its `auth_user`), the password proves it (RFC 3261 22 with RFC 8760: SHA-256 or MD5, a nonce
count against replays, by `DigestServer`), and its binding (the Contact it names and the address the
REGISTER came from, which is where calls to it go: room systems sit behind NAT) is kept for the
expiry granted. Dial-outs to it ("invite a room system") go to its binding.

Every REGISTER without credentials is challenged, known device or not, so nobody learns which names
exist; one whose answer is wrong, or for no entry with a password, gets 403. A source that fails
`MAX_FAILURES` times within `FAILURE_WINDOW_S` is refused without a look at its answers for that
window (password guessing). Nothing here logs or keeps a password or a digest response.

    registrar.handle(msg, transport, address, now) -> Answer(status, reason, headers)
    registrar.binding(system_id, now) -> Binding | None

The workers of one machine share the SIP port, and a room system's REGISTER reaches one of them:
each binding over UDP is told to the others (`share`, `learn`), so a dial-out from any worker finds
it (the answers come back to the worker the room system's address hashes to, which hands them on).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway.sip.digest import DigestServer
from gateway.sip.message import NameAddr, SipMessage, SipMessageError

log = structlog.get_logger(__name__)

MIN_EXPIRES = 60  # RFC 3261 10.3 step 7: shorter asks get 423 with Min-Expires
MAX_EXPIRES = 3600  # longer asks are granted this
DEFAULT_EXPIRES = 600
MAX_FAILURES = 10
FAILURE_WINDOW_S = 300.0
MAX_SOURCES = 10_000  # sources whose failures are counted (the oldest forgotten past it)


@dataclass(frozen=True)
class Account:
    """A directory entry that may register: its id, digest user name and password."""

    system: str
    user: str
    password: str


@dataclass(frozen=True)
class Binding:
    system: str
    contact: str  # the Contact URI it registered: the Request-URI of calls to it
    transport: str
    source: tuple[str, int]  # where its REGISTER came from: where calls to it are sent
    connection: int | None  # (TCP/TLS: the connection it came on)
    expires_at: float  # on the registrar's clock
    user_agent: str
    call_id: str
    cseq: int
    since: float = field(default_factory=time.time, compare=False)  # wall clock, for people


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)


class Registrar:
    def __init__(
        self,
        realm: str,
        accounts: Callable[[str], Account | None],
        *,
        digest: DigestServer | None = None,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.realm = realm
        self._accounts = accounts  # digest user name -> the entry that may register with it
        self._digest = digest or DigestServer(realm)
        self._bindings: dict[str, Binding] = {}  # system id -> its binding
        self._failures: OrderedDict[str, list[float]] = OrderedDict()  # source ip -> failure times
        self._on_change = on_change  # told a system id whose binding came, changed or went
        # The workers of one machine: bindings another worker holds, and how ours are told to them
        self.elsewhere: dict[str, Binding] = {}
        self.share: Callable[[str, Binding | None], None] | None = None
        self.counters = {"registered": 0, "refused": 0, "challenged": 0}

    # -- what the adapter asks --------------------------------------------------------------------

    def binding(self, system: str, now: float) -> Binding | None:
        """The live binding of a directory entry (None: not registered, or expired)."""
        found = self._bindings.get(system)
        if found is not None and found.expires_at <= now:
            del self._bindings[system]
            self._changed(system)
            found = None
        if found is None:
            other = self.elsewhere.get(system)
            if other is not None and other.expires_at > now:
                return other
        return found

    def learn(self, system: str, binding: Binding | None) -> None:
        """Another worker's binding of a room system (None: it has none now). The newest word
        wins: a room system registered there now (its address changed) is no longer bound here."""
        if binding is None:
            self.elsewhere.pop(system, None)
            return
        self.elsewhere[system] = binding
        self._bindings.pop(system, None)

    def _share(self, system: str, binding: Binding | None) -> None:
        if self.share is not None:
            try:
                self.share(system, binding if binding is not None and binding.connection is None else None)
            except Exception:
                log.exception("sharing a binding failed", system=system)

    def own_bindings(self) -> dict[str, Binding]:
        """The bindings made here (not another worker's), expired or not."""
        return dict(self._bindings)

    def bindings(self, now: float) -> dict[str, Binding]:
        for system in [s for s, b in self._bindings.items() if b.expires_at <= now]:
            del self._bindings[system]
            self._changed(system)
        return dict(self._bindings)

    def forget(self, system: str) -> None:
        """Drops an entry's binding (the entry was deleted, or lost its password)."""
        if self._bindings.pop(system, None) is not None:
            self._changed(system)
            self._share(system, None)

    # -- REGISTER ---------------------------------------------------------------------------------

    def handle(
        self, msg: SipMessage, transport: str, address: tuple[str, int], now: float, connection: int | None = None
    ) -> Answer:
        """The answer to one REGISTER (RFC 3261 10.3). Raises SipMessageError for one we cannot
        read (the user agent answers 400 with the reason)."""
        to = NameAddr.parse(msg.get("to") or "")  # (a To we cannot read: 400)
        if to.uri.partition(":")[0].lower() not in ("sip", "sips"):
            return Answer(416, "Unsupported URI Scheme (the address of record is no sip: URI)")  # (RFC 4475 unksm2)
        # The entry whose credentials the digest answer proves is the one bound, whatever To says.
        found = self.authenticate(msg.get("authorization"), "REGISTER", address[0], now)
        if isinstance(found, Answer):
            return found
        return self._bind(found, msg, transport, address, connection, now)

    def authenticate(
        self, authorization: str | None, method: str, source: str, now: float, user: str | None = None
    ) -> Account | Answer:
        """A request's digest answer checked against the entries that may register: the Account it
        proves, or the Answer to send (401 with our challenges when it brought none or a stale
        one, 403 when it is wrong or names no such entry). `user`: only that entry's account counts
        (a REGISTER's To, a call whose From names an entry); None: any entry's (the digest user
        name says which)."""
        if self._locked_out(source, now):
            self.counters["refused"] += 1
            return Answer(403, "Forbidden (too many failed attempts)")
        if authorization is None or not self._digest.ours(authorization):
            # none, or another scheme or realm (RFC 4475 regaut01): challenged, not a failure
            self.counters["challenged"] += 1
            return Answer(401, "Unauthorized", [("www-authenticate", c) for c in self._digest.challenges()])
        accounts: dict[str, Account] = {}

        def password_of(name: str) -> str | None:
            account = self._accounts(name) if name and (user is None or name == user) else None
            if account is None:
                return None
            accounts[name] = account
            return account.password

        verdict = self._digest.verify(authorization, method, password_of)
        if verdict.stale:
            return Answer(401, "Unauthorized", [("www-authenticate", c) for c in self._digest.challenges(stale=True)])
        proven = accounts.get(verdict.user or "") if verdict.ok else None
        if proven is None:
            self._failed(source, now)
            self.counters["refused"] += 1
            log.info(
                "authentication refused",
                method=method,
                source=source,
                user=(user or "")[:64] or None,
                known=bool(accounts),
                reason=verdict.reason or "no such device",
            )
            return Answer(403, "Forbidden")
        return proven

    def _bind(
        self,
        account: Account,
        msg: SipMessage,
        transport: str,
        address: tuple[str, int],
        connection: int | None,
        now: float,
    ) -> Answer:
        contacts = msg.all("contact")
        header_expires = _expires(msg.get("expires"))
        current = self.binding(account.system, now)
        if not contacts:  # a query: the bindings as they are (RFC 3261 10.2.3)
            return Answer(200, "OK", self._contact_headers(current, now))
        if len(contacts) == 1 and contacts[0].strip() == "*":
            if header_expires != 0:
                raise SipMessageError("Contact: * needs Expires: 0")
            self.forget(account.system)
            log.info("room system unregistered", system=account.system)
            return Answer(200, "OK")
        if len(contacts) > 4:
            raise SipMessageError("more than 4 contacts")
        call_id = msg.call_id
        cseq = msg.cseq[0]
        if current is not None and current.call_id == call_id and cseq <= current.cseq:
            return Answer(500, "Server Internal Error (REGISTER out of order)", [("retry-after", "1")])
        chosen: tuple[str, int] | None = None  # (contact, expires) of the binding kept
        for value in contacts:
            contact = NameAddr.parse(value)
            param = contact.param("expires")
            asked = _expires(param) if param is not None else header_expires
            asked = DEFAULT_EXPIRES if asked is None else asked
            if asked == 0:
                if current is not None and current.contact == contact.uri:
                    self.forget(account.system)
                    current = None
                    log.info("room system unregistered", system=account.system)
                continue
            if asked < MIN_EXPIRES:
                return Answer(423, "Interval Too Brief", [("min-expires", str(MIN_EXPIRES))])
            chosen = (contact.uri, min(asked, MAX_EXPIRES))
        if chosen is None:
            return Answer(200, "OK", self._contact_headers(current, now))
        contact_uri, granted = chosen
        binding = Binding(
            system=account.system,
            contact=contact_uri,
            transport=transport,
            source=address,
            connection=connection,
            expires_at=now + granted,
            user_agent=(msg.get("user-agent") or "")[:128],
            call_id=call_id,
            cseq=cseq,
            since=current.since if current is not None and current.contact == contact_uri else time.time(),
        )
        fresh = current is None or (current.contact, current.source, current.connection) != (
            binding.contact,
            binding.source,
            binding.connection,
        )
        self._bindings[account.system] = binding
        self.elsewhere.pop(account.system, None)
        self.counters["registered"] += 1
        self._share(account.system, binding)
        if fresh:
            log.info("room system registered", system=account.system, source=address[0], expires_s=granted)
            self._changed(account.system)
        return Answer(200, "OK", self._contact_headers(binding, now))

    @staticmethod
    def _contact_headers(binding: Binding | None, now: float) -> list[tuple[str, str]]:
        if binding is None:
            return []
        left = max(0, int(binding.expires_at - now))
        return [("contact", f"<{binding.contact}>;expires={left}")]

    # -- password guessing ------------------------------------------------------------------------

    def _locked_out(self, source: str, now: float) -> bool:
        times = self._failures.get(source)
        if not times:
            return False
        times[:] = [t for t in times if now - t < FAILURE_WINDOW_S]
        if not times:
            del self._failures[source]
            return False
        return len(times) >= MAX_FAILURES

    def _failed(self, source: str, now: float) -> None:
        times = self._failures.setdefault(source, [])
        times.append(now)
        del times[:-MAX_FAILURES]
        self._failures.move_to_end(source)
        while len(self._failures) > MAX_SOURCES:
            self._failures.popitem(last=False)
        if len(times) >= MAX_FAILURES:
            log.warning("registrations from this source refused for a while: too many failures", source=source)

    def _changed(self, system: str) -> None:
        if self._on_change is not None:
            try:
                self._on_change(system)
            except Exception:
                log.exception("registration listener failed", system=system)


def binding_to_wire(binding: Binding) -> dict[str, Any]:
    """A binding as the workers tell each other (the expiry on the machine's monotonic clock)."""
    return {
        "system": binding.system, "contact": binding.contact, "transport": binding.transport,
        "source": [binding.source[0], binding.source[1]], "expires_at": binding.expires_at,
        "user_agent": binding.user_agent, "call_id": binding.call_id, "cseq": binding.cseq, "since": binding.since,
    }  # fmt: skip


def binding_from_wire(raw: Any) -> Binding:
    """The binding another worker told (ValueError: not one)."""
    if not isinstance(raw, dict):
        raise ValueError("no binding")
    source = raw.get("source")
    strings = ("system", "contact", "transport", "user_agent", "call_id")
    if not all(isinstance(raw.get(k), str) and len(raw[k]) <= 1024 for k in strings):
        raise ValueError("a binding's text fields")
    if not (isinstance(source, list) and len(source) == 2 and isinstance(source[0], str) and isinstance(source[1], int)):
        raise ValueError("a binding's source")
    if raw["transport"] != "udp" or not all(isinstance(raw.get(k), int | float) for k in ("expires_at", "cseq", "since")):
        raise ValueError("a binding's transport, expiry or sequence")
    return Binding(
        system=raw["system"], contact=raw["contact"], transport="udp", source=(source[0], source[1]), connection=None,
        expires_at=float(raw["expires_at"]), user_agent=raw["user_agent"], call_id=raw["call_id"], cseq=int(raw["cseq"]),
        since=float(raw["since"]),
    )  # fmt: skip


def _expires(value: str | None) -> int | None:
    """An Expires value (delta-seconds; huge ones are capped, RFC 3261 20.19); None when absent or
    unreadable (the default applies)."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return min(int(text[:10]), 2**32 - 1)
    return None
