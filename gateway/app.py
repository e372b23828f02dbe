"""Composition root: builds every service from the configuration, runs them, stops them in order."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import resource
import signal
from collections.abc import Callable, Iterator
from typing import Any

import structlog
import uvicorn

from gateway import http
from gateway.cluster.backplane import Backplane
from gateway.cluster.cascade import LINK_FORMAT, LOCAL_LINK_FORMAT
from gateway.config import GatewayConfig
from gateway.control import web
from gateway.control.admin import Administration
from gateway.control.api import build_router
from gateway.control.auth import Authenticator, HostLinks
from gateway.control.broadcasts import Broadcasts
from gateway.control.dialout import Dialer, DialOut
from gateway.control.live import LiveControl
from gateway.control.metrics import CallCounters, H323Counters, LoopLag, WorkersCollector, build_registry
from gateway.control.mqtt import MqttBridge
from gateway.control.node import Drain
from gateway.control.oidc import OidcSignIn, add_sign_in_routes
from gateway.control.records import CallRecorder
from gateway.control.store import Store
from gateway.h323.service import H323Service
from gateway.h323.url import h323_identity
from gateway.rooms.admission import Admission
from gateway.rooms.directory import Directory
from gateway.rooms.identity import Identity, IdentityKind
from gateway.rooms.pinguard import PinGuard
from gateway.rtp.aiortc_glue import ignore_close_races
from gateway.sip.registrar import Binding, binding_from_wire, binding_to_wire
from gateway.sip.service import SipService
from gateway.sip.uri import sip_identity
from gateway.sip.useragent import Peer
from gateway.webrtc import server as meeting
from gateway.webrtc.resume import ResumeTokens
from gateway.webrtc.session import BrowserHub
from gateway.workers import WorkerPlan, WorkerRuntime

log = structlog.get_logger(__name__)

# Long enough for a caller to hear "the meeting has ended" before the BYE.
_SHUTDOWN_PROMPT_S = 6.0


class _HttpServer(uvicorn.Server):
    """uvicorn without its own SIGINT/SIGTERM handling: the gateway's handler ends the meetings
    first (callers hear why) and only then stops the HTTP server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def read_identity(address: str) -> Identity:
    """A directory address or dial-out destination read by the protocol that owns its scheme
    (sip:, sips: and tel: by SIP; h323: by H.323); ValueError for any other."""
    if address.partition(":")[0].strip().lower() == "h323":
        return h323_identity(address)
    return sip_identity(address)


def dialer(service: SipService | H323Service) -> Dialer:
    """A protocol's dialer for the dial-out dispatcher: it calls the identity's address as given."""

    async def dial(room: str, callee: Identity, actor: str, name: str | None, in_directory: bool) -> dict[str, Any]:
        return await service.dial_out(room, callee.text, actor, name, in_directory)

    return dial


class Gateway:
    def __init__(self, config: GatewayConfig, plan: WorkerPlan | None = None) -> None:
        """`plan`: this process is one worker of several (gateway/workers.py), `config` already its own."""
        self.config = config
        self.plan = plan
        # The sockets the supervisor bound for every worker (HTTP, SIP, H.323)
        self._inherited = plan.sockets() if plan is not None else {}
        self.directory = Directory(config, identify=read_identity)
        # SQLite, or the cluster's shared PostgreSQL (StoreError: not usable, reported by the CLI)
        storage_url = config.storage.url.get_secret_value() if config.storage.url else None
        self.store = Store(config.storage.path, storage_url, node=config.mqtt.node)
        self.store.shared_file = plan is not None  # (the workers share the SQLite file: each hears the others' changes)
        self.admin = Administration(config, self.directory, self.store)
        self.records = CallRecorder(self.directory, self.store, config.storage.call_records_days)
        # One PIN guard for every kind of leg: guessing by phone and by browser add up.
        self.pin_guard = PinGuard.from_config(config.security)
        self.browsers = BrowserHub(config, self.directory, self.pin_guard)
        self.host_links = HostLinks(self.store.secret("host-links"))
        self.browsers.host_links = self.host_links
        # Resume tokens other nodes take after a failover: signed with the cluster's shared key, or
        # with this node's own from its store (a browser resumes here, also after a restart).
        cluster = config.cluster
        resume_key = cluster.secret.get_secret_value().encode() if cluster.secret else self.store.secret("resume-tokens")
        self.browsers.resume_tokens = ResumeTokens(resume_key, cluster.resume_valid_s)
        # One room's participants on several nodes meet through the backplane (gateway/cluster/).
        self.backplane = (
            Backplane(
                self.directory, config.mqtt.node, cluster.secret.get_secret_value().encode(), cluster.backplane, cluster.peers,
                observe=plan is not None and plan.observe,
                sockets=(self._inherited["backplane_tcp"], self._inherited["backplane_udp"]) if "backplane_tcp" in self._inherited else None,
                # (the workers of one machine: the samples as they are, no codec)
                link_format=LOCAL_LINK_FORMAT if "backplane_tcp" in self._inherited else LINK_FORMAT,
            )
            if cluster.backplane and cluster.secret
            else None
        )
        self.sip = SipService(config, self.directory, self.pin_guard) if config.sip.enabled else None
        if self.sip is not None:
            self.sip.inherited = {k[4:]: v for k, v in self._inherited.items() if k.startswith("sip_")}
            if plan is not None and self.backplane is not None:
                self._hand_sip_between_workers(plan, self.sip, self.backplane)
        prompts = self.sip.prompts if self.sip is not None else None
        self.h323 = H323Service(config, self.directory, self.pin_guard, prompts) if config.h323.enabled else None
        if self.h323 is not None:
            self.h323.inherited = self._inherited.get("h323")
        self.h323_port = 0
        # Dial-out picks the protocol from the callee's identity: SIP URIs and numbers (its trunk) by
        # SIP, h323: URLs by H.323, under one set of rate limits (toll fraud).
        dialers: dict[IdentityKind, Dialer] = {}
        if self.sip is not None:
            # The trunks of the file and of the API; the API's changes reach the SIP side live.
            self.sip.trunk_configs = self.admin.trunks()
            self.admin.trunk_listeners.append(self.sip.set_trunks)
            dialers[IdentityKind.SIP_URI] = dialers[IdentityKind.E164] = dialer(self.sip)
        if self.h323 is not None:
            dialers[IdentityKind.H323_ALIAS] = dialer(self.h323)
            if self.sip is not None:
                self.h323.dial_limits = self.sip.dial_limits
        dial_out = DialOut(read_identity, dialers) if dialers else None
        # Recordings and live streams (gateway/control/broadcasts.py)
        self.broadcasts = Broadcasts(self.directory, self.store, config.recording)
        self.live = LiveControl(self.directory, dial_out, self.broadcasts)
        self.browsers.live = self.live
        # Signing in with the town's identity provider (gateway/control/oidc.py), when configured.
        self.sign_in = OidcSignIn(config.oidc) if config.oidc.enabled else None
        self.auth = Authenticator(config.admin, self.sign_in.principal if self.sign_in else None)
        if self.sign_in is not None:
            self.browsers.sign_ins = self.sign_in.host_of
        self.sip_ports: dict[str, int] = {}
        self.loop_lag = LoopLag()
        # New calls and browsers are refused while the process is overloaded (meetings go on).
        self.admission = Admission(config.admission, lambda: self.loop_lag.last_s)
        self.browsers.admission = self.admission
        if self.sip is not None:
            self.sip.admission = self.admission
        if self.h323 is not None:
            self.h323.admission = self.admission
        # Draining for a rolling restart (gateway/control/node.py): the API and `gateway drain`.
        self.drain = Drain(self.directory, self.admission)
        if self.backplane is not None:
            self.drain.backplane = self.backplane.state
        self.worker = WorkerRuntime(plan, self.drain, self.directory) if plan is not None else None
        sip = self.sip
        calls = (
            (
                lambda: CallCounters(
                    len(sip.calls),
                    dict(sip.attempts),
                    dict(sip.failures),
                    sip.trunk_states(),
                    dict(sip.registrar.counters) if sip.registrar is not None else {},
                )
            )
            if sip
            else None
        )
        # Events out, commands in, presence (gateway/control/mqtt.py): only with mqtt.enabled.
        self.mqtt = (
            MqttBridge(
                config.mqtt, self.directory, self.live,
                # (the workers of a machine speak as its node; each room-wide event once, by the room's hub)
                worker=(_machine(config.mqtt.node, plan), plan.index) if plan is not None else None,
                publishes_room=self.backplane.cascade.publishes if self.backplane is not None else None,
            )
            if config.mqtt.enabled
            else None
        )  # fmt: skip
        if self.mqtt is not None and sip is not None:
            sip.trunk_listeners.append(self.mqtt.publish_trunk_state)
            sip.registration_listeners.append(self.mqtt.publish_registration)
        h323 = self.h323
        h323_counters = (
            (
                lambda: H323Counters(
                    len(h323.calls),
                    {"in": h323.attempts, "out": h323.dial_outs},
                    dict(h323.failures),
                    h323.registered if config.h323.gatekeeper is not None else None,
                )
            )
            if h323
            else None
        )
        self.metrics = build_registry(
            self.directory,
            calls,
            self.loop_lag,
            self.mqtt.counters if self.mqtt else None,
            h323_counters,
            self.broadcasts.counters,
            lambda: self.drain.draining,
        )
        if self.worker is not None and plan is not None:
            self.metrics.register(WorkersCollector(plan.index, self.worker.supervisor_state))
        self.ready = False
        api = build_router(
            config,
            self.admin,
            self.live,
            self.host_links,
            self.mqtt.state if self.mqtt else None,
            sip.trunk_states if sip else None,
            sip.registration_states if sip else None,
            self.drain,
        )
        self.http = http.build_http_app(
            routes=[
                lambda app: meeting.add_meeting_routes(app, self.browsers),
                lambda app: web.add_control_routes(app, api, self.auth, self.metrics),
                lambda app: add_sign_in_routes(app, self.sign_in),
            ],
            static=[meeting.STATIC_DIR, web.STATIC_DIR],
            allowed_origins=config.server.allowed_origins,
            ready=lambda: self.ready and not self.drain.draining,  # (an HTTP front's health check)
        )
        server = config.server
        tls = server.tls
        self._uvicorn = _HttpServer(
            uvicorn.Config(
                self.http,
                host=server.host,
                port=server.port,
                ssl_certfile=str(tls.cert) if tls else None,
                ssl_keyfile=str(tls.key) if tls else None,
                log_config=None,
                access_log=False,
                # Above the application's own limit, so an oversize message gets an error message
                # from the session rather than a closed socket.
                ws_max_size=4 * server.websocket_max_message_bytes,
                ws_per_message_deflate=False,
                # The client address (PIN lockouts, logs) comes from X-Forwarded-For only behind these.
                proxy_headers=bool(server.trusted_proxies),
                forwarded_allow_ips=server.trusted_proxies or None,  # small JSON messages: compressing them costs more CPU than it saves
                lifespan="off",
            )
        )
        self.started = asyncio.Event()
        self._stopping: asyncio.Task[None] | None = None

    def _hand_sip_between_workers(self, plan: WorkerPlan, sip: SipService, backplane: Backplane) -> None:
        """The workers share the SIP port and the kernel hashes each sender to one of them: an
        answer to another worker's request (a dial-out, a trunk's registration), or a request in its
        dialog, goes to that worker over the backplane, and is handled there as if it had come there."""

        def hand_off(index: int, data: bytes, peer: Peer) -> bool:
            return backplane.hand_sip(_worker_peer(self.config.mqtt.node, plan, index), data, peer.address)

        def taken(data: bytes, source: tuple[str, int]) -> None:
            if sip.stack is not None:
                sip.stack.received(data, Peer("udp", source))

        sip.worker = (plan.index, hand_off)
        backplane.on_sip = taken

        # The room systems registered with one worker can be called from any (over UDP)
        def share(system: str, binding: Binding | None, peer: str | None = None) -> None:
            backplane.tell_workers({"what": "binding", "system": system, "binding": binding_to_wire(binding) if binding else None}, peer)

        def told(message: dict[str, Any]) -> None:
            if message.get("what") != "binding" or sip.registrar is None or not isinstance(message.get("system"), str):
                raise ValueError("not a binding")
            raw = message.get("binding")
            sip.registrar.learn(message["system"], binding_from_wire(raw) if raw is not None else None)

        def link_up(peer: str) -> None:  # (a worker that restarted learns what is bound here)
            if sip.registrar is not None:
                for system, binding in sip.registrar.own_bindings().items():
                    if binding.connection is None:
                        share(system, binding, peer)

        sip.binding_sharer = share
        backplane.on_worker_message = told
        backplane.link_up_listeners.append(link_up)

    @property
    def http_port(self) -> int:
        for srv in self._uvicorn.servers:
            for sock in srv.sockets:
                return int(sock.getsockname()[1])
        return self.config.server.port

    @property
    def base_url(self) -> str:
        scheme = "https" if self.config.server.tls else "http"
        return f"{scheme}://{self.config.server.host}:{self.http_port}"

    async def run(self, ready: Callable[[Gateway], None] | None = None) -> None:
        ignore_close_races(asyncio.get_running_loop())
        # The calls a killed node left open become records that say so, before any new call comes.
        await self.records.settle_lost_calls()
        # (a worker: the port all share, and its own)
        http_sockets = [self._inherited[name] for name in ("http", "http_own") if name in self._inherited]
        serve = asyncio.create_task(self._uvicorn.serve(sockets=http_sockets or None))
        while not self._uvicorn.started:
            if serve.done():
                await serve  # raises the start-up error (port in use, bad certificate)
                raise RuntimeError("HTTP server stopped during start-up")
            await asyncio.sleep(0.02)
        try:
            if self.sip is not None:
                self.sip_ports = await self.sip.start()
            if self.h323 is not None:
                self.h323_port = await self.h323.start()
            if self.backplane is not None:
                await self.backplane.start()
        except Exception:
            self.stop()
            await serve
            raise
        # Everything built so far lives as long as the process: keep it out of the cyclic collector,
        # and collect young objects less often. A full collection over aiortc's many small objects
        # paused the loop for up to 150 ms under load, late for dozens of 20 ms mixer ticks.
        gc.freeze()
        gc.set_threshold(10_000, 20, 1_000)
        lag_task = asyncio.create_task(self.loop_lag.run(), name="loop-lag")
        prune_task = asyncio.create_task(self.records.run_pruning(), name="call-record-pruning")
        heartbeat_task = asyncio.create_task(self.records.run_heartbeat(), name="open-calls-heartbeat")
        # Other nodes' changes of rooms, systems, trunks and rules in the shared database (PostgreSQL)
        store_changes = asyncio.create_task(self.store.listen(self.admin.reload), name="shared-store-changes")
        prune_recordings = asyncio.create_task(self.broadcasts.run_pruning(), name="recording-pruning")
        admission_task = asyncio.create_task(self.admission.run(), name="admission")
        # Room systems named by host name are recognised by the addresses it resolves to (off the loop).
        refresh_task = asyncio.create_task(self.directory.run_refresh(), name="room-system-addresses")
        if self.mqtt is not None:
            self.mqtt.start()
        worker_task = asyncio.create_task(self.worker.run(), name="worker-state") if self.worker is not None else None
        self.ready = True
        log.info(
            "gateway started",
            url=self.base_url,
            sip=self.sip_ports,
            h323=self.h323_port or None,
            backplane=f"{self.backplane.host}:{self.backplane.port}" if self.backplane else None,
            rooms=[c.room.id for c in self.directory],
        )
        self.started.set()
        if ready is not None:
            ready(self)
        try:
            await serve
        finally:
            self.ready = False
            lag_task.cancel()
            prune_task.cancel()
            heartbeat_task.cancel()
            store_changes.cancel()
            prune_recordings.cancel()
            admission_task.cancel()
            refresh_task.cancel()
            self.drain.close()
            if worker_task is not None:
                worker_task.cancel()
            if self.backplane is not None:
                await self.backplane.stop()
            if self.sip is not None:
                await self.sip.stop()
            if self.h323 is not None:
                await self.h323.stop()
            await self.browsers.close()
            await self.records.close()
            await self.directory.close()  # (recordings still running are completed, and their entries)
            self.broadcasts.close()
            if self.mqtt is not None:
                await self.mqtt.stop()  # last: the meetings' end and call records go out first, then "offline"
            self.store.close()
            log.info("gateway stopped")

    def stop(self) -> None:
        """Stops gracefully: every meeting is ended first (callers hear that it ends, browsers are
        told), then the servers stop."""
        self.ready = False  # /readyz says so at once: load balancers stop sending calls here
        if self._stopping is None and self.started.is_set():
            self._stopping = asyncio.get_running_loop().create_task(self._end_meetings())
        else:
            self._uvicorn.should_exit = True  # not started yet, or a second signal: stop now

    async def _end_meetings(self) -> None:
        try:
            busy = self.directory.end_meetings("shutdown")
            log.info("shutting down: meetings ended", rooms=len(busy))
            if self.sip is not None:
                await self.sip.wait_idle(timeout_s=_SHUTDOWN_PROMPT_S)
            if self.h323 is not None:
                await self.h323.wait_idle(timeout_s=_SHUTDOWN_PROMPT_S)
            await asyncio.sleep(0.2)  # the browsers' "ended" messages leave before the sockets close
        finally:
            self._uvicorn.should_exit = True


def _raise_open_file_limit() -> None:
    """Each SIP call holds two RTP sockets and each browser several: take the hard limit of open
    files, not the soft one (often 1024, about 400 calls)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 65536 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit", soft=soft, hard=hard, error=str(exc))


def _machine(node: str, plan: WorkerPlan) -> str:
    """The machine's node name (mqtt.node), from a worker's own (`<mqtt.node>-<index>`)."""
    return node.removesuffix(f"-{plan.index}")


def _worker_peer(node: str, plan: WorkerPlan, index: int) -> str:
    """The backplane name of the machine's worker `index` (`<mqtt.node>-<index>`; ours is `node`)."""
    return f"{_machine(node, plan)}-{index}"


async def run_gateway(config: GatewayConfig, plan: WorkerPlan | None = None) -> None:
    _raise_open_file_limit()
    gateway = Gateway(config, plan)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, gateway.stop)
    await gateway.run()
