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

A trunk's `transport` (udp, tcp, tls) carries its REGISTERs, keep-alives and dial-outs; over tcp and
tls the SIP stack keeps one connection to the target in use (`SipTransport.reach`; TLS: the
certificate checked against the host configured, RFC 5922, with the system's or `tls_ca`'s CAs),
our Contact says `;transport=tcp|tls` and the registrar's calls come back over that connection
(our Via's alias, RFC 5923). Keep-alives: OPTIONS over udp; over tcp/tls a CRLF ping (RFC 5626
4.4.1) whose pong must come within 10 s. No pong, the connection lost, or one that cannot be
opened (a 503 at once, so failover does not wait 32 s) registers again at once. With an
`outbound_proxy`, the next hop is the proxy (resolved by RFC 3263 in the same way) and the requests
carry its loose Route; the Request-URI stays the registrar's.

The state of each trunk (registered, failing with which status and why, next attempt) is what the
API, the metrics and the logs show; the password is never part of it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from gateway.config import SipConfig, TrunkConfig
from gateway.sip.digest import DigestClient
from gateway.sip.dns import SipResolver, TargetRound
from gateway.sip.registration import Registration, RegistrationStatus
from gateway.sip.transport import SipTransport, StreamEvent
from gateway.sip.useragent import Peer, ResponseReceived

log = structlog.get_logger(__name__)


class _Trunk:
    def __init__(self, config: TrunkConfig, registration: Registration) -> None:
        self.config = config
        self.registration = registration
        self.timer: asyncio.TimerHandle | None = None
        self.keepalive_timer: asyncio.TimerHandle | None = None
        self.pong_timer: asyncio.TimerHandle | None = None
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
        trunks: Sequence[TrunkConfig] | None = None,
    ) -> None:
        self._stack = stack
        self._resolver = resolver or SipResolver(config)
        self._on_change = list(on_change)  # told each trunk's state when its status or last answer changes
        self._trunks: dict[str, _Trunk] = {}
        # REGISTER / OPTIONS keep-alive in flight -> (its trunk, the address it went to); the trunk
        # itself, not its id: a trunk changed or removed meanwhile still gets its unregister's answer
        self._branches: dict[str, tuple[_Trunk, tuple[str, int] | None]] = {}
        self._keepalives: dict[str, tuple[_Trunk, tuple[str, int] | None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._tls: dict[tuple[str | None, bool], ssl.SSLContext] = {}  # (tls_ca, tls_verify) -> its context
        ua = stack.ua
        assert ua is not None, "the SIP stack runs before trunks register"
        stack.stream_listeners.append(self._on_stream)
        host, _ = ua.local_address(Peer("udp", ("0.0.0.0", 0)))
        self._unspecified = host in ("0.0.0.0", "::", "")  # (then the Contact names the route's address)
        for trunk in config.trunks if trunks is None else trunks:
            if trunk.transport == "tls":
                self._tls_context(trunk)  # (a CA file that cannot be read: said at start)
            if trunk.registers:
                self._trunks[trunk.id] = self._make(trunk)

    def _make(self, trunk: TrunkConfig) -> _Trunk:
        ua = self._stack.ua
        assert ua is not None
        password = trunk.password.get_secret_value() if trunk.password is not None else ""
        domain = trunk.domain or trunk.registrar_host
        host, port = ua.local_address(Peer(trunk.transport, ("0.0.0.0", 0)))
        suffix = "" if trunk.transport == "udp" else f";transport={trunk.transport}"
        registration = Registration(
            registrar=f"sip:{domain}",
            aor=f"sip:{trunk.user}@{domain}",
            contact=f"sip:{trunk.user}@{_host(host)}:{port}{suffix}",
            credentials=DigestClient(trunk.auth_user or trunk.user, password),
            expires_s=trunk.expires_s,
            keepalive_s=trunk.keepalive_s,
            realm=trunk.realm,
            display_name=trunk.display_name,
        )
        return _Trunk(trunk, registration)

    def update(self, trunks: Sequence[TrunkConfig]) -> None:
        """The trunks now configured (an administrator changed them through the API): a new one
        registers at once, a removed one removes its binding (Expires: 0) and goes, a changed one
        does both (a registrar, a user or a password that changed is a new registration)."""
        wanted = {t.id: t for t in trunks if t.registers}
        loop = self._loop
        for trunk_id, trunk in list(self._trunks.items()):
            if wanted.get(trunk_id) == trunk.config:
                continue
            del self._trunks[trunk_id]
            if loop is not None:
                trunk.registration.stop(loop.time())  # (its unregister still goes out and is answered)
                self._schedule(trunk)
            log.info("trunk registration retired", trunk=trunk_id, changed=trunk_id in wanted)
        for trunk_id, config in wanted.items():
            if trunk_id in self._trunks:
                continue
            try:
                if config.transport == "tls":
                    self._tls_context(config)
            except (OSError, ssl.SSLError) as exc:
                log.error("trunk not registered: its TLS settings cannot be used", trunk=trunk_id, error=str(exc))
                continue
            trunk = self._trunks[trunk_id] = self._make(config)
            if loop is not None:
                trunk.registration.start(loop.time())
                self._schedule(trunk)

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
            for timer in (trunk.timer, trunk.keepalive_timer, trunk.pong_timer):
                if timer is not None:
                    timer.cancel()
        for task in list(self._tasks):
            task.cancel()

    # -- sending ----------------------------------------------------------------------------------

    def _schedule(self, trunk: _Trunk) -> None:
        loop = self._loop
        if loop is None:
            return
        registration = trunk.registration

        def arm(timer: asyncio.TimerHandle | None, due: float | None, fire: Callable[[_Trunk], None]) -> asyncio.TimerHandle | None:
            if timer is not None:
                timer.cancel()
            return loop.call_at(due, fire, trunk) if due is not None else None

        trunk.timer = arm(trunk.timer, None if trunk.sending else registration.due, self._due)
        trunk.keepalive_timer = arm(trunk.keepalive_timer, registration.keepalive_due, self._keepalive)
        trunk.pong_timer = arm(trunk.pong_timer, registration.pong_due, self._pong_missed)

    def _keepalive(self, trunk: _Trunk) -> None:
        trunk.keepalive_timer = None
        if trunk.address is None or trunk.registration.state.status is not RegistrationStatus.REGISTERED or self._loop is None:
            return
        transport = trunk.config.transport
        if transport == "udp":
            uri, headers = trunk.registration.keepalive_request()
            branch = self._stack.request("OPTIONS", uri, self._peer(trunk.config, trunk.address), headers)
            self._keepalives[branch] = (trunk, trunk.address)
            return
        if self._stack.ping(transport, trunk.address):
            trunk.registration.ping_sent(self._loop.time())
        else:
            self._flow_failed(trunk, 503, "connection to the registrar lost")
        self._schedule(trunk)

    def _pong_missed(self, trunk: _Trunk) -> None:
        trunk.pong_timer = None
        if self._loop is None:
            return
        before = trunk.registration.state
        trunk.registration.pong_missed(self._loop.time())
        if trunk.registration.state.status is not before.status:
            log.warning("trunk keep-alive unanswered", trunk=trunk.config.id, address=_shown(trunk.address), transport=trunk.config.transport)
            if trunk.address is not None:  # (that flow is dead: the next REGISTER opens another)
                self._stack.close_flow(trunk.config.transport, trunk.address)
            trunk.silent, trunk.resolve = trunk.address, True
            self._report(trunk, before.status)
        self._schedule(trunk)

    def _flow_failed(self, trunk: _Trunk, status: int, reason: str) -> None:
        assert self._loop is not None
        before = trunk.registration.state
        trunk.registration.flow_failed(status, reason, self._loop.time())
        if trunk.registration.state.status is not before.status:
            log.warning("trunk connection lost", trunk=trunk.config.id, address=_shown(trunk.address), transport=trunk.config.transport)
            trunk.silent, trunk.resolve = trunk.address, True
            self._report(trunk, before.status)
        self._schedule(trunk)

    def _on_stream(self, event: StreamEvent) -> None:
        """The SIP stack's word on a connection it opened: a pong, or its end."""
        if self._loop is None or event.kind == "failed":  # (failed: the REGISTER waiting for it gets a 503)
            return
        for trunk in self._trunks.values():
            if trunk.config.transport != event.transport or trunk.address != event.address:
                continue
            if event.kind == "pong":
                trunk.registration.pong_received(self._loop.time())
                self._schedule(trunk)
            elif trunk.registration.state.status is RegistrationStatus.REGISTERED:
                self._flow_failed(trunk, 503, "connection to the registrar closed")

    def _peer(self, config: TrunkConfig, address: tuple[str, int]) -> Peer:
        """The trunk's next hop at `address`, over its transport (a connection the stack keeps), with
        the loose Route of its outbound proxy."""
        host, port = config.next_hop
        route = None
        if config.outbound_proxy is not None:
            suffix = "" if config.transport == "udp" else f";transport={config.transport}"
            route = f"<sip:{_host(host)}{f':{port}' if port else ''}{suffix};lr>"
        context = self._tls_context(config) if config.transport == "tls" else None
        return self._stack.reach(config.transport, address, server_name=host, ssl_context=context, route=route)

    def _tls_context(self, config: TrunkConfig) -> ssl.SSLContext:
        """The far end's certificate checked (chain to the system's CAs, or `tls_ca`'s; its name the
        host configured) unless `tls_verify` is off; one context per CA file and choice."""
        key = (str(config.tls_ca) if config.tls_ca is not None else None, config.tls_verify)
        context = self._tls.get(key)
        if context is None:
            context = self._tls[key] = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=key[0])
            if not config.tls_verify:
                log.warning("trunk TLS certificates not checked (tls_verify: false)", trunk=config.id)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        return context

    async def peer_for(self, config: TrunkConfig) -> Peer | None:
        """Where a dial-out through the trunk goes: the target its registration uses, else the first
        of its next hop's (proxy's or registrar's) RFC 3263 targets; None when that does not resolve."""
        trunk = self._trunks.get(config.id)
        if trunk is not None and trunk.address is not None:
            return self._peer(config, trunk.address)
        host, port = config.next_hop
        resolution = await self._resolver.resolve(host, port, (config.transport,))
        if not resolution.targets:
            log.warning("trunk next hop not resolved", trunk=config.id, error=resolution.error)
            return None
        return self._peer(config, resolution.targets[0].peer_address)

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
                host, port = config.next_hop  # (the outbound proxy when there is one, else the registrar)
                resolution = await self._resolver.resolve(host, port, (config.transport,))
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
            branch = self._stack.request("REGISTER", uri, self._peer(config, address), headers)
            self._branches[branch] = (trunk, address)
        finally:
            trunk.sending = False
            self._schedule(trunk)

    # -- answers ----------------------------------------------------------------------------------

    def on_response(self, event: ResponseReceived) -> bool:
        """A final answer from the stack; True when it was one of ours."""
        keepalive = event.branch in self._keepalives
        found = (self._keepalives if keepalive else self._branches).pop(event.branch, None)
        if found is None or self._loop is None:
            return False
        trunk, sent_to = found
        before = trunk.registration.state
        now = self._loop.time()
        if keepalive:
            trunk.registration.keepalive_answered(event.status, now)
            if trunk.registration.state.status is not before.status:  # (unanswered: gone)
                trunk.silent, trunk.resolve = sent_to, True
        else:
            alternatives = trunk.round.alternatives(sent_to) if trunk.round is not None and sent_to else 0
            # (no message and not 408: the transport's error, e.g. the connection refused)
            reason = event.reason if event.message is None and event.status != 408 else ""
            if trunk.registration.answered(event.status, event.message, now, alternatives, reason):
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
            view = self._state(trunk)
            for listener in self._on_change:
                try:
                    listener(view)
                except Exception:
                    log.exception("trunk state listener failed", trunk=config.id)

    # -- state ------------------------------------------------------------------------------------

    def states(self) -> list[dict[str, Any]]:
        """Each trunk as the API and the metrics show it (never its password)."""
        return [self._state(trunk) for trunk in self._trunks.values()]

    def _state(self, trunk: _Trunk) -> dict[str, Any]:
        loop_now = self._loop.time() if self._loop is not None else 0.0
        wall_now = time.time()
        state = trunk.registration.state

        def wall(at: float | None) -> float | None:
            return round(wall_now + (at - loop_now), 1) if at is not None else None

        return {
            "id": trunk.config.id,
            "registrar": trunk.config.registrar,
            "transport": trunk.config.transport,
            "outbound_proxy": trunk.config.outbound_proxy,
            "address": _shown(trunk.address),  # the next hop's address in use (of its SRV targets)
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


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


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
