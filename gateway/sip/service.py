"""SIP participants: calls from room systems and phones, from INVITE to BYE, on the asyncio loop.

`SipService` receives the SIP user agent's events (the asyncio adapter pulls them from the sans-IO
core) and keeps one `SipCall` per call; offers and answers are read and written with
`sip/negotiation.py` (the core passes SDP through unread). A SipCall is SIP's adapter of the shared
call flow (gateway.calls): it checks the call before answering (room, lockout, lock, capacity with
the Doorkeeper; SDP), answers it with our SDP on our own RTP leg, runs the voice menu (calls.menu),
waits in the lobby with hold music, joins the room's conference, turns phone keys into room actions
(calls.keys) and room events into prompts, and ends with a prompt and a BYE whose Reason says the
neutral Ending in SIP's terms (sip/endings.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ipaddress
import re
import secrets
import socket
from collections.abc import Callable
from typing import Any

import structlog

from gateway.bfcp.client import FloorGranted, FloorHeld, FloorLost
from gateway.bfcp.link import FloorLink, LinkEvent
from gateway.bfcp.server import FloorReleased, FloorRequested
from gateway.calls.admission import DialOutLimits, Doorkeeper
from gateway.calls.call import Call, CallContext, CallSettings
from gateway.calls.endings import Ending
from gateway.calls.numbers import to_e164
from gateway.calls.prompts import PromptLibrary
from gateway.config import GatewayConfig, RoomSystemConfig, TrunkConfig
from gateway.rooms.admission import Admission
from gateway.rooms.conference import Conference
from gateway.rooms.directory import Directory
from gateway.rooms.errors import DialOutRefused
from gateway.rooms.events import RoomEvent
from gateway.rooms.floor import Content
from gateway.rooms.participant import LegKind
from gateway.rooms.patterns import MAX_URI, compile_rule, full_match
from gateway.rooms.pinguard import PinGuard
from gateway.rtp.leg import RtpLeg
from gateway.sip import negotiation
from gateway.sip.digest import DigestClient, DigestServer
from gateway.sip.dns import SipResolver
from gateway.sip.endings import sip_status
from gateway.sip.message import MEDIA_CONTROL, picture_fast_update_body
from gateway.sip.negotiation import AudioChoice, BfcpPlan, ContentChoice, MediaPlan, MediaSession, VideoChoice
from gateway.sip.registrar import Account, Answer, Binding, Registrar
from gateway.sip.sdp import SdpError, SessionDescription
from gateway.sip.transport import SipTransport
from gateway.sip.trunks import TrunkRegistrations
from gateway.sip.uri import dial_target
from gateway.sip.useragent import (
    AnswerReceived,
    CallConfirmed,
    CallEnded,
    DigitReceived,
    Event,
    IncomingCall,
    KeyframeRequested,
    OfferReceived,
    OfferRequested,
    Peer,
    ResponseReceived,
)
from gateway.transcode.audio import AudioCodec, AudioFormat, silence_payload
from gateway.transcode.codecs import StreamCodec, StreamKind, h264, vp8

log = structlog.get_logger(__name__)

_CODECS = {"PCMU": AudioCodec.PCMU, "PCMA": AudioCodec.PCMA, "G722": AudioCodec.G722, "opus": AudioCodec.OPUS}
_NUMBER = re.compile(r"^\+?[0-9]{2,32}$")


def video_codecs(names: list[str]) -> tuple[StreamCodec, ...]:
    """What room systems may send and receive, in the configured order: H.264 in both
    packetization modes (any profile and level is taken; these are what our offers name), VP8."""
    made: dict[str, tuple[StreamCodec, ...]] = {
        "H264": (h264(97, "42e01f", 1), h264(98, "42e01f", 0)),
        "VP8": (vp8(96),),
    }
    return tuple(codec for name in names for codec in made[name])


WITHHELD = {"de": "Rufnummer unterdrückt", "en": "Withheld number"}
_ANONYMOUS = {"", "anonymous", "unknown", "restricted", "unavailable", "private"}


def caller_number(incoming: IncomingCall, from_trunk: bool, trunk: TrunkConfig | None) -> tuple[str | None, bool]:
    """(the caller's number or address user, whether it is withheld). From a trunk, the network's
    P-Asserted-Identity is believed over From (RFC 3325: only a trusted network asserts), and
    numbers are read in E.164 by the trunk's plan; `Privacy: id` or an anonymous From withholds it
    (RFC 3323), and it is then neither shown nor kept."""
    raw = incoming.asserted_user if from_trunk and incoming.asserted_user else incoming.from_user
    withheld = "id" in incoming.privacy or raw.strip().lower() in _ANONYMOUS or incoming.from_user.strip().lower() in _ANONYMOUS - {""}
    if withheld:
        return None, True
    if trunk is not None:
        raw = to_e164(raw, trunk.country_code, trunk.national_prefix, trunk.international_prefix)
    return raw[:64], False


def masked(number: str) -> str:
    """A number as others see it: the country and area part and the last two digits."""
    if len(number) < 8:
        return number  # (an extension or a short number says nothing about a person)
    return number[:6] + "•" * (len(number) - 8) + number[-2:]


def shown_name(incoming: IncomingCall, number: str | None, withheld: bool, numbers: str, language: str) -> str:
    """The name the room shows for a caller: its display name unless that is just its number;
    else its number, masked (or whole, by sip.caller_numbers); withheld: a label."""
    if withheld:
        return WITHHELD.get(language, WITHHELD["en"])
    name = incoming.display_name.strip()
    digits = "".join(c for c in name if c.isdigit())
    if name and not (number and digits and len(digits) >= 6 and digits in "".join(c for c in number if c.isdigit())):
        return name[:64]
    if number and _NUMBER.match(number):
        return (masked(number) if numbers == "masked" else number)[:64]
    return (number or "SIP")[:64]


class SipService:
    def __init__(self, config: GatewayConfig, directory: Directory, pin_guard: PinGuard) -> None:
        self.config = config
        self.directory = directory
        self.pin_guard = pin_guard
        self.inherited: dict[str, socket.socket] = {}  # (a worker's: udp, tcp, tls; gateway/workers.py)
        # A worker of several (its index) and how it hands another worker's SIP over (useragent.py)
        self.worker: tuple[int, Callable[[int, bytes, Peer], bool]] | None = None
        self.binding_sharer: Callable[[str, Binding | None], None] | None = None  # (the other workers)
        self.prompts = PromptLibrary()
        self.codecs = [_CODECS[name] for name in config.sip.codecs]
        self.video_codecs = video_codecs(list(config.sip.video_codecs)) if config.sip.video else ()
        self.calls: dict[int, SipCall] = {}
        self.stack: SipTransport | None = None
        self.attempts: dict[str, int] = {"in": 0, "out": 0}
        # refusals by SIP status, failed dial-outs by the callee's status (bounded label values)
        self.failures: dict[str, int] = {}
        self.admission: Admission | None = None  # set by the gateway: refuses new calls while overloaded
        self.door = Doorkeeper(pin_guard, lambda: self.admission)  # one for every call
        self.context = CallContext(self.prompts, directory, self.door, CallSettings.of(config.sip))
        # (the gateway gives H.323 the same limits: dial-outs by both protocols add up)
        self.dial_limits = DialOutLimits(config.sip.dial_out_per_minute, config.sip.dial_out_per_minute_total)
        self.trunks = [ipaddress.ip_network(source, strict=False) for source in config.sip.trunk_sources]
        self.registrations: TrunkRegistrations | None = None  # (the trunks that register; from start)
        # The trunks: the configuration file's and the API's (the gateway sets them from its
        # administration before start, and again on every change: set_trunks).
        self.trunk_configs: list[TrunkConfig] = list(config.sip.trunks)
        self._trunk_by_address: dict[str, TrunkConfig] = {}  # (from start)
        self._lookups: set[asyncio.Task[None]] = set()
        self.trunk_listeners: list[Callable[[dict[str, Any]], None]] = []  # (MQTT: told state changes)
        # The directory's room systems with a password register here (from start).
        self.registrar: Registrar | None = None
        self.registration_listeners: list[Callable[[dict[str, Any]], None]] = []  # (MQTT: told changes)

    def from_trunk(self, address: str) -> bool:
        if address in self._trunk_by_address:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trunks)

    def trunk_of(self, address: str) -> TrunkConfig | None:
        """The configured trunk a call from `address` comes over (its registrar's or peer's address)."""
        return self._trunk_by_address.get(address)

    async def _resolve_trunks(self) -> None:
        """Where each trunk's calls come from: its registrar's (or peer's) addresses, all of them
        (RFC 3263: every SRV target's, so calls from a secondary are the trunk's too), and its
        outbound proxy's (the carrier's calls come back through it)."""
        resolver = SipResolver(self.config.sip)
        trunks = list(self.trunk_configs)
        hops = [
            (trunk, hop)
            for trunk in trunks
            for hop in dict.fromkeys([(trunk.registrar_host, trunk.registrar_explicit_port), trunk.next_hop])
        ]
        resolutions = await asyncio.gather(*(resolver.resolve(host, port, (t.transport,)) for t, (host, port) in hops))
        found: dict[str, TrunkConfig] = {}
        for (trunk, (host, _port)), resolution in zip(hops, resolutions, strict=True):
            if not resolution.targets:
                log.warning(
                    "trunk address not resolved; its calls are taken as any others", trunk=trunk.id, host=host, error=resolution.error
                )
            for target in resolution.targets:
                found.setdefault(target.address, trunk)
        if trunks == self.trunk_configs:  # (not changed again while resolving: the newer lookup wins)
            self._trunk_by_address = found

    def set_trunks(self, trunks: list[TrunkConfig]) -> None:
        """The trunks changed (the API): registrations follow at once, their addresses when looked up."""
        self.trunk_configs = list(trunks)
        if self.stack is None:
            return  # (not started: start takes them as they are)
        if self.registrations is None:
            self.registrations = TrunkRegistrations(self.config.sip, self.stack, self.trunk_listeners, trunks=trunks)
            self.registrations.start()
        else:
            self.registrations.update(trunks)
        task = asyncio.get_running_loop().create_task(self._resolve_trunks(), name="resolve-trunks")
        self._lookups.add(task)
        task.add_done_callback(self._lookups.discard)

    async def start(self) -> dict[str, int]:
        self.stack = SipTransport(self.config.sip, self.handle_event, self.inherited)
        ports = await self.stack.start()
        log.info("SIP started", host=self.config.sip.host, ports=ports)
        assert self.stack.ua is not None
        self.stack.ua.refusing_calls = self._refusing_calls
        if self.worker is not None:
            self.stack.ua.worker, self.stack.ua.hand_off = self.worker
        self.registrar = self.stack.ua.registrar = Registrar(
            self.config.sip.realm,
            self._account,
            digest=DigestServer(self.config.sip.realm, algorithms=tuple(dict.fromkeys(self.config.sip.registrar_digest))),
            on_change=self._registration_changed,
        )
        self.registrar.share = self.binding_sharer
        if self.trunk_configs:
            await self._resolve_trunks()
            self.registrations = TrunkRegistrations(self.config.sip, self.stack, self.trunk_listeners, trunks=self.trunk_configs)
            self.registrations.start()
        return ports

    def _refusing_calls(self) -> int | None:
        """The Retry-After of a 503 while new calls are refused (overloaded, draining), else None."""
        if self.admission is None or self.admission.refusing is None:
            return None
        return self.admission.retry_after_s

    def trunk_states(self) -> list[dict[str, Any]]:
        return self.registrations.states() if self.registrations is not None else []

    # -- room systems registering with us ---------------------------------------------------------

    def _account(self, user: str) -> Account | None:
        """The directory entry that registers as `user` (only entries with a password do)."""
        for system in self.directory.systems.values():
            if system.password is not None and system.register_user == user:
                return Account(system.id, user, system.password.get_secret_value())
        return None

    def binding(self, system: RoomSystemConfig) -> Binding | None:
        """Where a room system registered from (None: it registers with no password, or is not
        registered now)."""
        if self.registrar is None or system.password is None:
            return None
        return self.registrar.binding(system.id, asyncio.get_running_loop().time())

    def registration_state(self, system: RoomSystemConfig) -> dict[str, Any] | None:
        """What the API and the admin page show of a room system's registration (None: it has no
        password, so it does not register)."""
        if system.password is None:
            return None
        found = self.binding(system)
        if found is None:
            return {"system": system.id, "registered": False}
        return {
            "system": system.id,
            "registered": True,
            "contact": found.contact,
            "address": f"{found.source[0]}:{found.source[1]}",
            "transport": found.transport,
            "user_agent": found.user_agent,
            "since": found.since,
            "expires_in_s": max(0, round(found.expires_at - asyncio.get_running_loop().time())),
        }

    def registration_states(self) -> list[dict[str, Any]]:
        return [state for s in self.directory.systems.values() if (state := self.registration_state(s)) is not None]

    def _registration_changed(self, system_id: str) -> None:
        system = self.directory.systems.get(system_id)
        state = self.registration_state(system) if system is not None else None
        for listener in self.registration_listeners:
            listener(state or {"system": system_id, "registered": False})

    async def wait_idle(self, timeout_s: float) -> None:
        """Waits until every call has ended (their goodbye prompts played), at most `timeout_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.calls and loop.time() < deadline:  # noqa: ASYNC110 (calls end in many places; 100 ms polls at shutdown only)
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.registrations is not None:
            await self.registrations.stop()  # (bindings removed while the stack still runs)
        if self.stack is not None:
            await self.stack.stop()  # BYE to every call; each is released as it ends
        for call in list(self.calls.values()):
            call.release()
        self.calls.clear()

    # -- dial-out -------------------------------------------------------------------------------

    async def dial_out(
        self, room_id: str, uri: str, requested_by: str, name: str | None = None, in_directory: bool = False
    ) -> dict[str, Any]:
        """Calls `uri` into the room: a room system of the directory, or a destination a configured
        dial-out rule allows (toll fraud protection); every attempt is logged. The callee joins as a
        guest once it answers."""
        conference = self.directory.find(room_id)
        attempt = log.bind(room=room_id, uri=uri[:300], requested_by=requested_by, directory=in_directory)
        try:
            if conference is None:
                raise DialOutRefused(f"no room {room_id!r}", "unknown_room")
            if self.stack is None or self.stack.ua is None:
                raise DialOutRefused("SIP is not running", "sip_disabled")
            system = self.directory.system_for(uri) if in_directory else None
            registered = self.binding(system) if system is not None else None
            if system is not None and system.password is not None and registered is None:
                raise DialOutRefused(f"room system {system.id!r} is not registered now", "not_registered")
            uri, host, port, user = dial_target(uri)
            rules = self.config.sip.dial_out_allow
            if not in_directory and not any(full_match(compile_rule(r), uri, max_length=MAX_URI) for r in rules):
                raise DialOutRefused("no dial-out rule allows this destination", "dial_out_refused")
            self._dial_out_allowed(requested_by)
        except DialOutRefused as exc:
            attempt.warning("dial-out refused", code=exc.code, why=str(exc))
            raise
        if registered is not None:
            # A registered room system is called at its Contact, where its REGISTER came from (NAT)
            incoming = IncomingCall(0, "", room_id, name or user or host, user, registered.source[0], registered.transport, None)
            call = SipCall(self, self.stack, incoming, outbound=True)
            peer = Peer(registered.transport, registered.source, registered.connection)
            number = await call.dial(conference, registered.contact, peer, None)
            self.attempts["out"] += 1
            attempt.info("dial-out placed", call=number, registered=True)
            return {"call": number, "room": conference.room.id, "uri": uri}
        # RFC 3263 (NAPTR, SRV, A): the first target (no failover to the next for a dial-out yet)
        resolution = await SipResolver(self.config.sip).resolve(host, port)
        if not resolution.targets:
            attempt.warning("dial-out refused", code="bad_uri", why="host name does not resolve", error=resolution.error)
            raise DialOutRefused(f"cannot resolve {host!r}", "bad_uri")
        target = resolution.targets[0]
        trunk = self._trunk_for(host)
        peer = Peer("udp", target.peer_address)
        if trunk is not None and self.registrations is not None:  # (its transport, its proxy, the registrar in use)
            peer = await self.registrations.peer_for(trunk) or peer
        incoming = IncomingCall(0, "", room_id, name or user or host, user, peer.address[0], peer.transport, None)
        call = SipCall(self, self.stack, incoming, outbound=True)
        number = await call.dial(conference, uri, peer, trunk)
        self.attempts["out"] += 1
        attempt.info("dial-out placed", call=number)
        return {"call": number, "room": conference.room.id, "uri": uri}

    def _trunk_for(self, host: str) -> TrunkConfig | None:
        """The trunk a dial-out goes through: the one whose registrar's host or domain the URI
        names. Its credentials answer the carrier's 401/407, its address of record is the From."""
        for trunk in self.trunk_configs:
            if host.lower() in {trunk.registrar_host.lower(), (trunk.domain or "").lower()}:
                return trunk
        return None

    def _dial_out_allowed(self, actor: str) -> None:
        """Dial-out costs money and can be abused (toll fraud): bounded by max_calls, by a rate per
        actor and a rate in all, and by the process's load."""
        config = self.config.sip
        assert self.stack is not None
        if self.stack.active_calls >= config.max_calls:
            raise DialOutRefused("the gateway carries as many calls as it may", "busy")
        busy = self.admission.admit() if self.admission is not None else None
        if busy is not None:
            raise DialOutRefused(f"the gateway is overloaded ({busy})", "busy")
        self.dial_limits.take(actor)

    def count_failure(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1

    def incoming(self, call: IncomingCall) -> None:
        assert self.stack is not None
        self.attempts["in"] += 1
        busy = self.admission.admit() if self.admission is not None else None
        if busy is not None:
            log.warning("call refused: overloaded", call_id=call.sip_call_id, source=call.source, why=busy)
            status, reason = sip_status(Ending.OVERLOADED)
            self.count_failure(str(status))
            assert self.admission is not None
            self.stack.reject(call.call, status, reason, retry_after_s=self.admission.retry_after_s)
            return
        if not self.from_trunk(call.source):
            from_there = sum(1 for c in self.calls.values() if c.source == call.source and not c.outbound)
            if from_there >= self.config.sip.max_calls_per_source:
                log.warning("call refused: too many calls from one address", call_id=call.sip_call_id, source=call.source)
                status, reason = sip_status(Ending.RATE_LIMITED)
                self.count_failure(str(status))
                self.stack.reject(call.call, status, reason)
                return
        sip_call = SipCall(self, self.stack, call)
        self.calls[call.call] = sip_call
        # (an exception ends that call only: 500 or BYE with a Reason; other calls carry on)
        sip_call.task = asyncio.get_running_loop().create_task(sip_call._supervised(sip_call.start()))

    def handle_event(self, event: Event) -> None:
        """What the SIP user agent reports, handed out by the adapter after each call into it."""
        if isinstance(event, IncomingCall):
            self.incoming(event)
        elif isinstance(event, OfferReceived):
            if not self._guarded(event.call, lambda c: c.on_offer(event.sdp)):
                assert self.stack is not None
                self.stack.refuse_offer(event.call, 481, "Call/Transaction Does Not Exist")
        elif isinstance(event, OfferRequested):
            if not self._guarded(event.call, lambda c: c.on_offer_requested()):
                assert self.stack is not None
                self.stack.refuse_offer(event.call, 481, "Call/Transaction Does Not Exist")
        elif isinstance(event, AnswerReceived):
            self._guarded(event.call, lambda c: c.on_answer(event.sdp))
        elif isinstance(event, DigitReceived):
            self.digit(event.call, event.digit, event.via)
        elif isinstance(event, KeyframeRequested):
            self._guarded(event.call, lambda c: c.leg.keyframe_wanted(c.stream_of(event.stream_id)))
        elif isinstance(event, CallConfirmed):
            self.confirmed(event.call)
        elif isinstance(event, CallEnded):
            self.disconnected(event.call, event.status, event.reason)
        elif isinstance(event, ResponseReceived):
            if self.registrations is not None:
                self.registrations.on_response(event)

    def _guarded(self, call: int, action: Callable[[SipCall], None]) -> bool:
        """An event of the SIP stack for one call: a failure ends that call only. False when the
        call is not (or no longer) ours."""
        sip_call = self.calls.get(call)
        if sip_call is None:
            return False
        try:
            action(sip_call)
        except Exception:
            sip_call.fail()
        return True

    def digit(self, call: int, digit: str, via: str) -> None:
        self._guarded(call, lambda c: c.on_digit(digit, via))

    def confirmed(self, call: int) -> None:
        self._guarded(call, lambda c: c.on_confirmed())

    def disconnected(self, call: int, status: int, reason: str) -> None:
        sip_call = self.calls.pop(call, None)
        if sip_call is not None:
            try:
                sip_call.on_disconnected(status, reason)
            except Exception:
                sip_call.log.exception("call clean-up failed")


class SipCall(Call):
    """SIP's adapter of the shared call flow (gateway.calls.call): answering with SDP, the media
    and content lines and their floor, SIP INFO, and endings as BYE with a Reason."""

    def __init__(self, service: SipService, stack: SipTransport, incoming: IncomingCall, outbound: bool = False) -> None:
        self.service = service
        self.stack = stack
        self.incoming = incoming
        config = service.config.sip
        number, withheld = caller_number(incoming, service.from_trunk(incoming.source), service.trunk_of(incoming.source))
        kind = LegKind.PHONE if withheld or _NUMBER.match(number or "") else LegKind.SIP_ROOM_SYSTEM
        leg = RtpLeg(
            kind,
            on_digit=self.on_digit,
            on_event=self.on_room_event,
            on_hang_up=self.on_room_hang_up,
            log_context={"call_id": incoming.sip_call_id},
            latching=config.rtp_latching,
            learn_s=config.rtp_learn_s,
        )
        super().__init__(
            service.context,
            leg,
            kind=kind,
            name=shown_name(incoming, number, withheld, config.caller_numbers, config.language),
            source=incoming.source,
            number=number,
            outbound=outbound,
            log=log.bind(call_id=incoming.sip_call_id, source=incoming.source, dialled=incoming.user),
        )
        self.leg: RtpLeg = leg
        self._confirmed = False
        self.media: MediaSession | None = None  # our side of offer/answer, once we have a port
        self.floor: FloorLink | None = None  # the BFCP stream of the content line, while there is one

    # -- set-up ---------------------------------------------------------------------------------

    def _reject(self, status: int, reason: str, headers: list[tuple[str, str]] | None = None) -> None:
        self.log.info("call refused", status=status, reason=reason)
        self.service.count_failure(str(status))
        self.phase = "ended"
        self.stack.reject(self.incoming.call, status, reason, headers=headers)

    def _refuse(self, ending: Ending) -> None:
        """Refuses the call before answering it, with the ending's SIP status."""
        self._reject(*sip_status(ending))

    def _count_failure(self, code: str) -> None:
        self.service.count_failure(code)

    def _pin_source(self) -> str:
        """Who is guessing: the caller's number where the call comes through a configured trunk
        (every caller of a carrier shares its address), the source address otherwise."""
        if self.service.from_trunk(self.source) and _NUMBER.match(self.incoming.from_user or ""):
            return f"number:{self.incoming.from_user}"
        return self.source

    def _known_system(self) -> RoomSystemConfig | None:
        """The directory entry of the caller: its From names the system and the INVITE comes from
        an address of the system (its URI's IP, what its host name resolved to, or where it
        registered from with its password). A From header
        alone is easily forged: it never names a system, let alone grants trust."""
        directory = self.service.directory
        system = directory.system_for(self.incoming.from_uri) if self.incoming.from_uri else None
        if system is None:
            return None
        try:
            ip = ipaddress.ip_address(self.source)
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:  # a dual-stack socket
            ip = ip.ipv4_mapped
        registered = self.service.binding(system)
        if str(ip) not in directory.system_addresses(system) and (registered is None or registered.source[0] != str(ip)):
            self.log.warning("caller claims a directory room system but calls from elsewhere", system=system.id)
            return None
        return system

    def _srtp_required(self, system: RoomSystemConfig | None) -> bool:
        """The room system's policy, else the trunk's (for calls from trunk_sources), else sip.srtp."""
        config = self.service.config.sip
        policy = config.srtp
        if system is not None and system.srtp is not None:
            policy = system.srtp
        elif config.trunk_srtp is not None and self.service.from_trunk(self.source):
            policy = config.trunk_srtp
        return policy == "required"

    def _authenticated(self, system: RoomSystemConfig | None) -> tuple[bool, RoomSystemConfig | None]:
        """Digest authentication of the call where it is asked for (RFC 3261 22): by the entry its
        From names when that entry says `challenge_calls`, and with sip.challenge_untrusted for
        every call that neither comes over a trunk nor from a room system recognised by its
        address. (go on, the entry proven or recognised); a caller without an answer gets 401 with
        the gateway's challenge, a wrong one 403 (and its source counts towards a lockout)."""
        service = self.service
        named = service.directory.system_for(self.incoming.from_uri) if self.incoming.from_uri else None
        if named is not None and named.challenge_calls and named.password is not None:
            only: str | None = named.register_user
        elif service.config.sip.challenge_untrusted and system is None and not service.from_trunk(self.source):
            only = None
        else:
            return True, system
        registrar = service.registrar
        assert registrar is not None
        found = registrar.authenticate(
            self.incoming.authorization, "INVITE", self.source, asyncio.get_running_loop().time(), user=only
        )
        if isinstance(found, Answer):
            self._reject(found.status, found.reason, found.headers)
            return False, None
        proven = service.directory.systems.get(found.system)
        self.log = self.log.bind(authenticated=found.system)
        return True, proven

    async def start(self) -> None:
        config = self.service.config.sip
        directory = self.service.directory
        go_on, system = self._authenticated(self._known_system())
        if not go_on:
            return
        conference = self._route()
        if system is not None:
            self.kind, self.name = LegKind.SIP_ROOM_SYSTEM, system.name[:64]
            if conference is None and system.default_room:
                conference = directory.find(system.default_room)  # it called the gateway, not a room
            self.trusted = bool(
                system.trusted and conference is not None and conference.room.id == system.default_room
            )
            self.log = self.log.bind(system=system.id, trusted=self.trusted)
        if conference is None and not config.menu:
            self._refuse(Ending.ROOM_NOT_FOUND)
            return
        if conference is not None:
            refused = self.door.before_answer(conference.room, self._caller(), trusted=self.trusted)
            if refused is not None and refused.ending is Ending.LOCKED_OUT:
                # Answered so that a person hears why (a bare 403 is a carrier's busy tone), then
                # a BYE with Reason 403; the PIN is never asked for.
                self.log.warning("call refused: source locked out after wrong PINs")
                self.service.count_failure(str(sip_status(Ending.LOCKED_OUT)[0]))
                self._refusal = Ending.LOCKED_OUT
            elif refused is not None:
                self._refuse(refused.ending)
                return
            if self.trusted:
                self.conference = conference
        require_srtp = self._srtp_required(system)
        offer: SessionDescription | None = None
        if self.incoming.offer is not None:
            try:  # (before a port is taken for it)
                offer = negotiation.parse(self.incoming.offer)
                negotiation.check_offer(offer, self.service.codecs, require_srtp=require_srtp)
            except SdpError as exc:
                self._reject(exc.status, exc.reason if exc.status == 488 else f"Bad SDP: {exc.reason}")
                return
        elif require_srtp:  # (our own offer would be plain RTP: a late offer cannot be made secure here)
            self._reject(488, "SRTP required (send an offer with SDES keys)")
            return
        try:
            port = await self.leg.open(config.host, config.rtp_port_min, config.rtp_port_max)
        except OSError as exc:
            self.log.error("no RTP port for a call", error=str(exc))
            self._reject(503, "No media port free")
            return
        video_port = None
        content_port, bfcp = None, None
        if self.service.video_codecs and (
            offer is None or negotiation.video_offered(offer, self.service.video_codecs, require_srtp=require_srtp)
        ):
            video_port = await self._open_video()
        if self.service.video_codecs and offer is not None:
            transport = negotiation.content_offered(offer, self.service.video_codecs, require_srtp=require_srtp)
            if transport is not None:
                content_port, bfcp = await self._open_content(transport)
        if self.phase == "ended":  # cancelled meanwhile
            self._close_media()
            return
        plan = MediaPlan(
            local_address=config.public_address or config.host,
            audio_port=port,
            codecs=self.service.codecs,
            prefer_ours=config.prefer_our_codecs,
            user_agent=config.user_agent.replace(" ", "-"),
            require_srtp=require_srtp,
            video_port=video_port,
            video_codecs=self.service.video_codecs,
            video_max_kbps=config.video_max_kbps,
            content_port=content_port,
            bfcp=bfcp,
        )
        self.media = MediaSession(plan)
        if offer is not None:
            try:
                answer = self.media.answer(offer)
            except SdpError as exc:  # (check_offer above took this offer: not expected)
                self._close_media()
                self._reject(exc.status, exc.reason)
                return
            body = answer.sdp
            self.apply(answer.audio)
            self.apply_video(answer.video)
            self.apply_content(answer.content)
        else:
            body = self.media.offer()  # a late offer: ours in the 200, the answer in the ACK
        self._first_room = conference
        self.phase = "answered"
        self.log.info("call answered", kind=self.kind.value, name=self.name, transport=self.incoming.transport)
        self.stack.answer(self.incoming.call, body)

    def _route(self) -> Conference | None:
        """The room the call is for: the Request-URI's user; for a call over a configured trunk,
        the first of its `route_by` headers whose number reaches a room, as it came or in E.164."""
        directory = self.service.directory
        incoming = self.incoming
        trunk = self.service.trunk_of(incoming.source)
        if trunk is None:
            return directory.route(incoming.user) if incoming.user else None
        named = {
            "request_uri": incoming.user,
            "to": incoming.to_user,
            "p_called_party_id": incoming.called_party,
            "diversion": incoming.diverted_from,
        }
        for header in trunk.route_by:
            number = named[header]
            if not number:
                continue
            e164 = to_e164(number, trunk.country_code, trunk.national_prefix, trunk.international_prefix)
            for candidate in dict.fromkeys((number, e164)):
                conference = self._reachable(directory.route(candidate))
                if conference is not None:
                    self.log = self.log.bind(trunk=trunk.id, routed_by=header)
                    return conference
        self.log = self.log.bind(trunk=trunk.id)
        return None

    def _reachable(self, conference: Conference | None) -> Conference | None:
        """`conference` if this call may reach it: a trunk's `rooms` bound where its calls go (a
        room outside them is as if no room had that number, so nothing is learnt about it)."""
        trunk = self.service.trunk_of(self.incoming.source) if conference is not None and not self.outbound else None
        if trunk is not None and trunk.rooms is not None and conference is not None and conference.room.id not in trunk.rooms:
            self.log.info("room not reachable over this trunk", trunk=trunk.id)
            return None
        return conference

    async def _open_video(self) -> int | None:
        """A socket pair for the main video line; None (video declined, the call goes on) when no
        port is free."""
        config = self.service.config.sip
        try:
            return await self.leg.open_video(StreamKind.MAIN, config.host, config.rtp_port_min, config.rtp_port_max)
        except OSError as exc:
            self.log.warning("no RTP port for video; the call goes on with audio", error=str(exc))
            return None

    def on_offer(self, offer: str) -> None:
        """A re-INVITE or UPDATE with an offer (hold, resume, codec change, video added or
        removed): answered from our plan, or refused 488 with the session unchanged. An offer that
        adds video while we have no video port gets one first (answered a moment later)."""
        if self.media is None:
            self.stack.refuse_offer(self.incoming.call, 491, "Request Pending")
            return
        plan = self.media.plan
        wants_video, wants_content = False, None
        if self.service.video_codecs and (plan.video_port is None or plan.content_port is None):
            try:
                parsed = negotiation.parse(offer)
                if plan.video_port is None:
                    wants_video = negotiation.video_offered(parsed, plan.video_codecs, require_srtp=plan.require_srtp)
                if plan.content_port is None:
                    wants_content = negotiation.content_offered(parsed, plan.video_codecs, require_srtp=plan.require_srtp)
            except SdpError:
                pass  # (answered below: the parse error gets its 488)
        if wants_video or wants_content:
            self._spawn(self._answer_with_sockets(offer, wants_video, wants_content))
            return
        self._answer_offer(offer)

    async def _answer_with_sockets(self, offer: str, video: bool, content: str | None) -> None:
        """An offer that brings video or content we have no sockets for: they are opened first."""
        video_port = await self._open_video() if video else None
        content_port, bfcp = await self._open_content(content) if content is not None else (None, None)
        if self.media is None or self.phase in ("ending", "ended"):
            return
        plan = self.media.plan
        self.media.plan = dataclasses.replace(
            plan,
            video_port=video_port if video_port is not None else plan.video_port,
            content_port=content_port if content_port is not None else plan.content_port,
            bfcp=bfcp if bfcp is not None else plan.bfcp,
        )
        self._answer_offer(offer)

    def _answer_offer(self, offer: str) -> None:
        assert self.media is not None
        try:
            answer = self.media.answer(offer)
        except SdpError as exc:
            self.log.info("re-offer refused", status=exc.status, reason=exc.reason)
            self.stack.refuse_offer(self.incoming.call, 488, "Not Acceptable Here")
            return
        self.apply(answer.audio)
        self.apply_video(answer.video)
        self.apply_content(answer.content)
        self.stack.accept_offer(self.incoming.call, answer.sdp)

    def on_offer_requested(self) -> None:
        """A re-INVITE without SDP: our offer (the codec in use first); the answer comes in the ACK."""
        if self.media is None:
            self.stack.refuse_offer(self.incoming.call, 491, "Request Pending")
            return
        self.stack.accept_offer(self.incoming.call, self.media.offer())

    def on_answer(self, answer: str) -> None:
        """The answer to our offer (in the ACK of a late offer, in the 2xx of a dial-out): one we
        cannot use ends the call with a BYE saying 488."""
        if self.media is None or not self.media.awaiting_answer:
            return
        try:
            choice = self.media.take_answer(answer)
        except SdpError as exc:
            self.log.warning("unusable SDP answer", reason=exc.reason)
            self.stack.hang_up(self.incoming.call, (488, exc.reason))
            return
        self.apply(choice)
        self.apply_video(self.media.video_choice)
        self.apply_content(self.media.content_choice)

    def apply(self, choice: AudioChoice) -> None:
        opus = self.service.config.media.opus
        out = AudioFormat(choice.codec, opus.bitrate, opus.complexity) if choice.codec is AudioCodec.OPUS else None
        first = self.leg.session is None
        self.leg.apply(
            choice.codec,
            choice.payload_type,
            choice.clock_rate,
            (choice.remote_address, choice.remote_port),
            (choice.remote_address, choice.remote_rtcp_port),
            ptime_ms=choice.ptime_ms,
            telephone_event_pt=choice.telephone_event_pt,
            direction=choice.direction,
            local_crypto=choice.local_crypto,
            remote_crypto=choice.remote_crypto,
            out_format=out,
        )
        self.leg.set_idle(silence_payload(self.leg.audio_out_format))
        self.log.info(
            "media agreed" if first else "media renegotiated",
            codec=choice.codec.value,
            pt=choice.payload_type,
            direction=choice.direction,
            srtp=choice.local_crypto is not None,
            telephone_event=choice.telephone_event_pt,
        )

    def apply_video(self, choice: VideoChoice | None) -> None:
        """What the offer/answer agreed for the main video line: the leg runs it (a room system's
        camera becomes the participant's video, the room's composed picture goes back), or closes
        it when video was declined or removed."""
        if choice is None:
            if self.leg.video_port(StreamKind.MAIN) is not None:
                self.leg.remove_video(StreamKind.MAIN)
                if self.media is not None:
                    self.media.plan = dataclasses.replace(self.media.plan, video_port=None)
                self.log.info("video removed")
            return
        first = StreamKind.MAIN not in self.leg.video_streams
        self._run_video_line(StreamKind.MAIN, choice)
        send = choice.codecs[0]
        self.log.info(
            "video agreed" if first else "video renegotiated",
            codec=send.name,
            pt=send.payload_type,
            fmtp=send.fmtp_line,
            direction=choice.direction,
            avpf=choice.avpf,
            feedback=",".join(sorted({fb for c in choice.codecs for fb in c.rtcp_fb})),
            kbps=send.bandwidth_kbps,
        )

    # -- content and its floor (BFCP) -------------------------------------------------------------

    async def _open_content(self, transport: str) -> tuple[int | None, BfcpPlan | None]:
        """The content line's socket pair and the BFCP socket (a TCP listener or a UDP socket) for
        an offer that brings content; (None, None) when no port is free (content declined, the call
        goes on). The conference and user ids are the call's own, unguessable ones."""
        config = self.service.config.sip
        link = self.floor
        try:
            port = await self.leg.open_video(StreamKind.CONTENT, config.host, config.rtp_port_min, config.rtp_port_max)
            if link is None or link.transport != transport:
                if link is not None:
                    link.close()
                link = self.floor = FloorLink(transport, self._on_floor_event, {"call_id": self.incoming.sip_call_id})
                await link.open(config.host, config.rtp_port_min, config.rtp_port_max)
        except OSError as exc:
            self.log.warning("no port for content; the call goes on without it", error=str(exc))
            return None, None
        plan = BfcpPlan(1 + secrets.randbelow(2**32 - 1), 1 + secrets.randbelow(65535), transport, link.port)
        return port, plan

    def apply_content(self, choice: ContentChoice | None) -> None:
        """What the offer/answer agreed for content: the leg runs its line (slides from the room
        system become its content source, the room's content goes back), the BFCP link serves the
        floor; both close when content was declined or removed."""
        if choice is None:
            if self.leg.video_port(StreamKind.CONTENT) is not None or self.floor is not None:
                self._leave_floor()
                self.leg.remove_video(StreamKind.CONTENT)
                if self.floor is not None:
                    self.floor.close()
                    self.floor = None
                if self.media is not None:
                    self.media.plan = dataclasses.replace(self.media.plan, content_port=None, bfcp=None)
                self.log.info("content removed")
            return
        first = StreamKind.CONTENT not in self.leg.video_streams
        video, bfcp = choice.video, choice.bfcp
        self._run_video_line(StreamKind.CONTENT, video, stream_id=bfcp.label)
        if self.floor is not None:
            self.floor.start(
                bfcp.conference_id,
                bfcp.user_id,
                bfcp.floor_id,
                bfcp.version,
                remote=(bfcp.remote_address, bfcp.remote_port),
                connect=bfcp.connect,
                allowed={bfcp.remote_address, self.source},
                server=bfcp.server,
            )
            presentation = self.conference.room.presentation if self.conference is not None else None
            if presentation is not None and presentation.presenter != self.participant_id:
                self.floor.request()  # (our room presents already: an MCU should show it)
                self.floor.held_elsewhere(self._name_of(presentation.presenter))  # (a room system hears who)
        self.log.info(
            "content agreed" if first else "content renegotiated",
            codec=video.codecs[0].name,
            direction=video.direction,
            bfcp=bfcp.transport,
            bfcp_role="server" if bfcp.server else "client",
            bfcp_version=bfcp.version,
            bfcp_connect=bfcp.connect,
            floor=bfcp.floor_id,
        )

    def _on_floor_event(self, event: LinkEvent) -> None:
        """As server: the room system asks for the floor (its share button) or gives it back; the
        room's presentation floor decides (rooms/floor.py), BFCP says how. As client of an MCU: the
        MCU's floor status says when one of its participants presents (this leg presents in our
        room then), and how our own request went."""
        link = self.floor
        if link is None:
            return
        conference = self.conference
        room = conference.room if conference is not None else None
        pid = self.participant_id
        if isinstance(event, FloorRequested):
            if room is None or self.phase != "meeting" or pid not in room.participants:
                link.denied(event.request_id, "not in the meeting yet")
                self.log.info("floor request denied", why="not in the meeting")
            elif not room.may_present(pid):
                link.denied(event.request_id, "only hosts present in this meeting")
                self.log.info("floor request denied", why="not allowed")
            else:
                link.granted(event.request_id)  # (first: the room's events may revoke it at once)
                room.start_presenting(pid, Content.SLIDES)
                self.log.info("floor granted: presenting")
        elif isinstance(event, FloorReleased) and event.was_granted:
            if room is not None and room.presentation is not None and room.presentation.presenter == pid:
                room.stop_presenting(by=pid, participant_id=pid)
                self.log.info("floor released: presentation stopped")
        elif isinstance(event, FloorHeld):
            presenting = room is not None and room.presentation is not None and room.presentation.presenter == pid
            if event.by_other and room is not None and self.phase == "meeting" and pid in room.participants:
                if room.may_present(pid):
                    room.start_presenting(pid, Content.SLIDES)
                    self.log.info("the far end presents: its content is shown in the room")
                else:
                    self.log.info("the far end presents, but this room takes presentations from hosts only")
            elif not event.by_other and presenting and room is not None:
                room.stop_presenting(by=pid, participant_id=pid)
                self.log.info("the far end stopped presenting")
        elif isinstance(event, FloorGranted):
            self.log.info("floor granted by the far end: our room's presentation goes there")
        elif isinstance(event, FloorLost):
            self.log.info("floor lost at the far end", status=event.status.name.lower())

    def _presentation_changed(self, event: RoomEvent, link: FloorLink) -> None:
        """The room's presentation changed: as server, a room system that lost it hears Revoked; as
        client of an MCU, the floor is asked for while someone of our room (not the MCU's own
        presenter) presents, and given back when nobody does."""
        ours = event.participant == self.participant_id
        reason = str(event.data.get("reason", ""))
        if event.type == "presentation_stopped":
            if ours:
                link.revoked(why=reason)  # (no-op when it released the floor itself, or as client)
            if reason != "taken_over":  # (a new presentation follows at once: its event decides)
                link.release()
                link.held_elsewhere(None)
        elif ours:
            link.release()  # (the MCU's own presenter: our room shows the MCU, not the reverse)
            link.held_elsewhere(None)
        else:
            link.request()
            link.held_elsewhere(self._name_of(event.participant))

    def _name_of(self, pid: str | None) -> str:
        participant = self.conference.room.participants.get(pid or "") if self.conference is not None else None
        return participant.name if participant is not None else ""

    def _leave_floor(self) -> None:
        """Content goes away (declined by a re-INVITE, the call ends): a presentation of ours ends."""
        conference = self.conference
        if conference is None or not self.participant_id:
            return
        presentation = conference.room.presentation
        if presentation is not None and presentation.presenter == self.participant_id:
            conference.room.stop_presenting(by=self.participant_id, participant_id=self.participant_id)

    def _close_media(self) -> None:
        self.leg.close()
        if self.floor is not None:
            self.floor.close()
            self.floor = None

    def _run_video_line(self, kind: StreamKind, choice: VideoChoice, stream_id: str | None = None) -> None:
        """The leg runs a video line as agreed; without RTCP feedback its keyframes are asked for
        by SIP INFO (naming `stream_id`, the line's a=label, for any but the main line)."""
        ask = None if choice.keyframe_by_rtcp else functools.partial(self._ask_picture_fast_update, stream_id)
        self.leg.apply_video(
            kind,
            choice.codecs,
            (choice.remote_address, choice.remote_port),
            (choice.remote_address, choice.remote_rtcp_port),
            direction=choice.direction,
            local_crypto=choice.local_crypto,
            remote_crypto=choice.remote_crypto,
            ask_keyframe_by_signalling=ask,
        )

    def _ask_picture_fast_update(self, stream_id: str | None = None) -> None:
        """No RTCP feedback was agreed: a keyframe is asked for with a SIP INFO (RFC 5168), for the
        slides with their label as <stream_id>."""
        if self._confirmed and self.phase not in ("ending", "ended"):
            self.stack.send_info(self.incoming.call, picture_fast_update_body(stream_id), MEDIA_CONTROL)

    def stream_of(self, stream_id: str | None) -> StreamKind:
        """Which of our video lines a picture_fast_update's <stream_id> (an a=label) names."""
        content = self.media.content_choice if self.media is not None else None
        return StreamKind.CONTENT if content is not None and stream_id == content.bfcp.label else StreamKind.MAIN

    async def dial(self, conference: Conference, uri: str, peer: Peer, trunk: TrunkConfig | None = None) -> int:
        """Places the call (dial-out); it joins `conference` when answered."""
        config = self.service.config.sip
        try:
            port = await self.leg.open(config.host, config.rtp_port_min, config.rtp_port_max)
        except OSError as exc:
            raise DialOutRefused(f"no RTP port free: {exc}", "no_media_port") from None
        video_port = await self._open_video() if self.service.video_codecs else None
        # Content is offered on the first offer (RFC 8856 over TCP, either BFCP role): MCUs and
        # room systems add no content line later.
        content_port, bfcp = await self._open_content("tcp") if video_port is not None else (None, None)
        plan = MediaPlan(
            local_address=config.public_address or config.host,
            audio_port=port,
            codecs=self.service.codecs,
            prefer_ours=True,
            user_agent=config.user_agent.replace(" ", "-"),
            video_port=video_port,
            video_codecs=self.service.video_codecs,
            video_max_kbps=config.video_max_kbps,
            content_port=content_port,
            bfcp=bfcp,
        )
        self.media = MediaSession(plan)
        credentials, from_uri, shown, headers = None, None, conference.room.name, []
        if trunk is not None:
            # Through a trunk the call presents the trunk's caller ID (From and, for the carrier's
            # network, P-Preferred-Identity: RFC 3325), never anything of whoever asked for it.
            presented = f"sip:{trunk.caller_id or trunk.user}@{trunk.domain or trunk.registrar_host}"
            from_uri, shown = presented, trunk.display_name or conference.room.name
            headers.append(("p-preferred-identity", f"<{presented}>"))
            if trunk.password is not None:
                credentials = DigestClient(trunk.auth_user or trunk.user, trunk.password.get_secret_value())
        number = self.stack.invite(
            uri, peer, self.media.offer(), display_name=shown, credentials=credentials, from_uri=from_uri, headers=headers
        )
        self.incoming = IncomingCall(number, "", conference.room.id, self.name, self.name, peer.address[0], peer.transport, None)
        self.conference = self._first_room = conference
        self.phase = "answered"
        self.log = log.bind(call=number, room=conference.room.id, dialled=uri, direction="out")
        self.service.calls[number] = self
        return number

    def on_confirmed(self) -> None:
        if self._confirmed or self.phase != "answered":
            return
        self._confirmed = True
        self.leg.confirm()  # the ACK (or the callee's 200) confirmed the media address: we may send
        self.begin()

    def _on_room_event(self, event: RoomEvent) -> None:
        if event.type in ("presentation_started", "presentation_stopped") and self.floor is not None:
            self._presentation_changed(event, self.floor)

    # -- endings --------------------------------------------------------------------------------

    def _ending_terms(self, ending: Ending) -> tuple[int, str]:
        return sip_status(ending)

    def _hang_up(self, ending: Ending) -> None:
        """A BYE whose Reason header names the ending's SIP status (none when all is well)."""
        status, reason = sip_status(ending)
        self.stack.hang_up(self.incoming.call, (status, reason) if status != 200 else None)
        self._close_media()

    def _failed(self, phase: str) -> None:
        self._close_media()
        self.service.calls.pop(self.incoming.call, None)
        if phase == "new":
            self.stack.reject(self.incoming.call, 500, "Server Internal Error")
        else:
            self.stack.hang_up(self.incoming.call, (500, "Server Internal Error"))

    def on_disconnected(self, status: int, reason: str) -> None:
        self.log.info("call ended", status=status, reason=reason, phase=self.phase)
        if self.outbound and not self._confirmed and status >= 300:
            self.service.count_failure(f"dial-out {status}")
        self.release()
