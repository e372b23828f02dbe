"""Trunk registrations on the asyncio loop: the thin adapter of sip/registration.py.

For each trunk of `sip.trunks` that `registers`, a Registration: its REGISTERs go out through the
SIP stack's user agent (a client transaction, retransmitted over UDP), their final answers come
back as ResponseReceived events, and a loop timer sends the next one when it is due. The
registrar's host name is resolved (RFC 3263, sip/dns.py: NAPTR, SRV, A; never blocking the loop)
at the start of each round of REGISTERs, so a DNS change is followed at the next refresh; a name
that does not resolve is a failure with backoff like any other. A round tries the targets in
order: no answer (408) or 503 from one sends the REGISTER to the next at once, and only when all
failed does the registration back off. A refresh stays with the target in use (when DNS still
names it); after a failure the next round starts from the best target again (a recovered
primary is used again), and a target whose keep-alive went unanswered goes last in it. At
shutdown, bindings are removed (Expires: 0), waiting at most two seconds for the answers.

The state of each trunk (registered, failing with which status and why, next attempt) is what the
API, the metrics and the logs show; the password is never part of it.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from gateway.config import SipConfig, TrunkConfig
from gateway.sip.digest import DigestClient
from gateway.sip.dns import SipResolver, TargetRound
from gateway.sip.registration import Registration, RegistrationStatus
from gateway.sip.transport import SipTransport
from gateway.sip.useragent import Peer, ResponseReceived

log = structlog.get_logger(__name__)


class _Trunk:
    def __init__(self, config: TrunkConfig, registration: Registration) -> None:
        self.config = config
        self.registration = registration
        self.timer: asyncio.TimerHandle | None = None
        self.keepalive_timer: asyncio.TimerHandle | None = None
        self.address: tuple[str, int] | None = None  # where the REGISTERs and keep-alives go
        self.round: TargetRound | None = None  # the registrar's targets being tried, in order
        self.resolve = True  # the next REGISTER starts a new round (resolves the registrar again)
        self.silent: tuple[str, int] | None = None  # went silent: last in the next round
        self.registrations = 0  # successful REGISTERs
        self.failures = 0
        self.sending = False
        self.reported: tuple[object, ...] = ()


class TrunkRegistrations:
    def __init__(
        self,
        config: SipConfig,
        stack: SipTransport,
        on_change: Sequence[Callable[[dict[str, Any]], None]] = (),
        resolver: SipResolver | None = None,
    ) -> None:
        self._stack = stack
        self._resolver = resolver or SipResolver(config)
        self._on_change = list(on_change)  # told each trunk's state when its status or last answer changes
        self._trunks: dict[str, _Trunk] = {}
        # REGISTER / OPTIONS keep-alive in flight -> (trunk id, the address it went to)
        self._branches: dict[str, tuple[str, tuple[str, int] | None]] = {}
        self._keepalives: dict[str, tuple[str, tuple[str, int] | None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        ua = stack.ua
        assert ua is not None, "the SIP stack runs before trunks register"
        host, port = ua.local_address(Peer("udp", ("0.0.0.0", 0)))
        self._unspecified = host in ("0.0.0.0", "::", "")  # (then the Contact names the route's address)
        for trunk in config.trunks:
            if not trunk.registers:
                continue
            password = trunk.password.get_secret_value() if trunk.password is not None else ""
            domain = trunk.domain or trunk.registrar_host
            registration = Registration(
                registrar=f"sip:{domain}",
                aor=f"sip:{trunk.user}@{domain}",
                contact=f"sip:{trunk.user}@{host}:{port}",
                credentials=DigestClient(trunk.auth_user or trunk.user, password),
                expires_s=trunk.expires_s,
                keepalive_s=trunk.keepalive_s,
                realm=trunk.realm,
                display_name=trunk.display_name,
            )
            self._trunks[trunk.id] = _Trunk(trunk, registration)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for trunk in self._trunks.values():
            trunk.registration.start(self._loop.time())
            self._schedule(trunk)

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Removes the bindings that are up, waiting at most timeout_s for the registrars."""
        loop = self._loop
        if loop is None:
            return
        for trunk in self._trunks.values():
            trunk.registration.stop(loop.time())
            self._schedule(trunk)
        deadline = loop.time() + timeout_s
        while loop.time() < deadline and any(  # noqa: ASYNC110 (a few answers at shutdown)
            t.registration.state.status is RegistrationStatus.UNREGISTERING for t in self._trunks.values()
        ):
            await asyncio.sleep(0.05)
        for trunk in self._trunks.values():
            for timer in (trunk.timer, trunk.keepalive_timer):
                if timer is not None:
                    timer.cancel()
        for task in list(self._tasks):
            task.cancel()

    # -- sending ----------------------------------------------------------------------------------

    def _schedule(self, trunk: _Trunk) -> None:
        loop = self._loop
        if loop is None:
            return
        if trunk.timer is not None:
            trunk.timer.cancel()
            trunk.timer = None
        due = trunk.registration.due
        if due is not None and not trunk.sending:
            trunk.timer = loop.call_at(due, self._due, trunk)
        if trunk.keepalive_timer is not None:
            trunk.keepalive_timer.cancel()
            trunk.keepalive_timer = None
        keepalive = trunk.registration.keepalive_due
        if keepalive is not None:
            trunk.keepalive_timer = loop.call_at(keepalive, self._keepalive, trunk)

    def _keepalive(self, trunk: _Trunk) -> None:
        trunk.keepalive_timer = None
        if trunk.address is None or trunk.registration.state.status is not RegistrationStatus.REGISTERED:
            return
        uri, headers = trunk.registration.keepalive_request()
        branch = self._stack.request("OPTIONS", uri, Peer("udp", trunk.address), headers)
        self._keepalives[branch] = (trunk.config.id, trunk.address)

    def _due(self, trunk: _Trunk) -> None:
        trunk.timer = None
        trunk.sending = True
        task = asyncio.get_running_loop().create_task(self._send(trunk))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, trunk: _Trunk) -> None:
        loop = asyncio.get_running_loop()
        config = trunk.config
        registration = trunk.registration
        try:
            unregistering = registration.state.status is RegistrationStatus.UNREGISTERING
            if trunk.round is None or (trunk.resolve and not unregistering):
                resolution = await self._resolver.resolve(
                    config.registrar_host, config.registrar_explicit_port, (config.transport,)
                )
                if not resolution.targets:
                    trunk.round = None
                    registration.unreachable(f"registrar name not resolved ({resolution.error})", loop.time())
                    self._report(trunk)
                    return
                stays = registration.state.status in (RegistrationStatus.REGISTERED, RegistrationStatus.UNREGISTERING)
                trunk.round = TargetRound(resolution.targets, prefer=trunk.address if stays else None, avoid=trunk.silent)
                trunk.resolve = False
                trunk.silent = None
            address = trunk.round.current.peer_address
            if trunk.address is not None and address != trunk.address:
                log.info("trunk registrar moved", trunk=config.id, address=str(trunk.round.current))
            trunk.address = address
            if self._unspecified:
                registration.contact = _contact_toward(registration.contact, address)
            if registration.due is None or registration.due > loop.time() + 0.001:
                return  # (stopped or rescheduled while resolving)
            uri, headers = registration.build(loop.time())
            branch = self._stack.request("REGISTER", uri, Peer("udp", address), headers)
            self._branches[branch] = (config.id, address)
        finally:
            trunk.sending = False
            self._schedule(trunk)

    # -- answers ----------------------------------------------------------------------------------

    def on_response(self, event: ResponseReceived) -> bool:
        """A final answer from the stack; True when it was one of ours."""
        keepalive = event.branch in self._keepalives
        trunk_id, sent_to = (self._keepalives if keepalive else self._branches).pop(event.branch, ("", None))
        trunk = self._trunks.get(trunk_id)
        if trunk is None or self._loop is None:
            return False
        before = trunk.registration.state
        now = self._loop.time()
        if keepalive:
            trunk.registration.keepalive_answered(event.status, now)
            if trunk.registration.state.status is not before.status:  # (unanswered: gone)
                trunk.silent, trunk.resolve = sent_to, True
        else:
            alternatives = trunk.round.alternatives(sent_to) if trunk.round is not None and sent_to else 0
            if trunk.registration.answered(event.status, event.message, now, alternatives):
                # (a new round after a silent keep-alive comes anyway, that target last in it)
                target = trunk.round.failed(sent_to) if trunk.round is not None and sent_to and not trunk.resolve else None
                log.warning(
                    "trunk registrar failed over", trunk=trunk.config.id, status=event.status,
                    failed=_shown(sent_to), to=str(target) if target is not None else "the next round's best",
                )  # fmt: skip
            elif trunk.registration.due is None or trunk.registration.due > now:
                trunk.resolve = True  # (a refresh, or a retry after backoff, later: resolved again)
        if trunk.registration.state != before:
            self._report(trunk, before.status)
        self._schedule(trunk)
        return True

    def _report(self, trunk: _Trunk, before: RegistrationStatus | None = None) -> None:
        state = trunk.registration.state
        config = trunk.config
        if state.status is RegistrationStatus.REGISTERED:
            trunk.registrations += 1
            if before is not RegistrationStatus.REGISTERED:
                log.info("trunk registered", trunk=config.id, registrar=config.registrar, expires_s=round((state.registered_until or 0) - (self._loop.time() if self._loop else 0)))
        elif state.status is RegistrationStatus.FAILING:
            trunk.failures += 1
            log.warning(
                "trunk registration failed",
                trunk=config.id,
                registrar=config.registrar,
                status=state.last_status,
                reason=state.reason,
                retry_in_s=round((state.next_attempt_at or 0) - (self._loop.time() if self._loop else 0), 1),
            )
        if (state.status, state.last_status, state.reason) != trunk.reported:
            trunk.reported = (state.status, state.last_status, state.reason)
            view = next(s for s in self.states() if s["id"] == config.id)
            for listener in self._on_change:
                try:
                    listener(view)
                except Exception:
                    log.exception("trunk state listener failed", trunk=config.id)

    # -- state ------------------------------------------------------------------------------------

    def states(self) -> list[dict[str, Any]]:
        """Each trunk as the API and the metrics show it (never its password)."""
        loop_now = self._loop.time() if self._loop is not None else 0.0
        wall_now = time.time()
        out = []
        for trunk in self._trunks.values():
            state = trunk.registration.state

            def wall(at: float | None) -> float | None:
                return round(wall_now + (at - loop_now), 1) if at is not None else None

            out.append(
                {
                    "id": trunk.config.id,
                    "registrar": trunk.config.registrar,
                    "address": _shown(trunk.address),  # the registrar's address in use (of its SRV targets)
                    "targets": [str(t) for t in trunk.round.targets] if trunk.round is not None else [],
                    "user": trunk.config.user,
                    "status": state.status.value,
                    "last_status": state.last_status,
                    "reason": state.reason,
                    "registered_until": wall(state.registered_until),
                    "next_attempt_at": wall(state.next_attempt_at),
                    "failures_in_a_row": state.failures,
                    "registrations": trunk.registrations,
                    "keepalives_answered": trunk.registration.keepalives_answered,
                    "failures": trunk.failures,
                }
            )
        return out


def _shown(address: tuple[str, int] | None) -> str | None:
    if address is None:
        return None
    return f"[{address[0]}]:{address[1]}" if ":" in address[0] else f"{address[0]}:{address[1]}"


def _contact_toward(contact: str, address: tuple[str, int]) -> str:
    """The contact with the host this machine uses toward `address` (listening on all interfaces,
    the configured host says nothing a registrar could reach)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(address)  # (no packet: the kernel picks the route and its source address)
        local = probe.getsockname()[0]
    user_host, _, port = contact.rpartition(":")
    user = user_host.split("@", 1)[0]
    return f"{user}@{local}:{port}"
