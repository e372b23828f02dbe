"""SIP participants: calls from room systems and phones, from INVITE to BYE, on the asyncio loop.

`SipService` receives what the SIP user agent reports (useragent.CallEvents) and keeps one `SipCall` per
call. A SipCall checks the call before answering (room, lockout, lock, capacity, SDP), answers it
with our SDP on our own RTP leg, runs the voice menu (ivr.EntryFlow), waits in the lobby with hold
music, joins the room's conference, turns phone keys into room actions and room events into
prompts, and ends with a prompt and a BYE that says why.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from gateway.config import GatewayConfig, RoomSystemConfig
from gateway.rooms.admission import Admission
from gateway.rooms.conference import Conference
from gateway.rooms.directory import Directory
from gateway.rooms.errors import DialOutRefused, JoinRefused, RoomError
from gateway.rooms.events import RoomEvent
from gateway.rooms.participant import LegKind
from gateway.rooms.patterns import MAX_URI, compile_rule, full_match
from gateway.rooms.pinguard import PinGuard
from gateway.rooms.ratelimit import RateLimit
from gateway.rtp.leg import RtpAudioLeg
from gateway.sip import ivr, message, sdp
from gateway.sip.prompts import HOLD_MUSIC, Prompt, PromptLibrary
from gateway.sip.transport import SipTransport
from gateway.sip.useragent import IncomingCall, MediaPlan, Peer
from gateway.transcode.audio import SILENCE, AudioCodec, AudioFormat, make_encoder

log = structlog.get_logger(__name__)

_CODECS = {"PCMU": AudioCodec.PCMU, "PCMA": AudioCodec.PCMA, "G722": AudioCodec.G722, "opus": AudioCodec.OPUS}
_NUMBER = re.compile(r"^\+?[0-9]{2,32}$")
_DIGITS_PER_S = 10  # keys a person can press in a second, at most
# Why the room ended a call -> what the caller hears, and the cause in the BYE's Reason header.
_ENDINGS: dict[str, tuple[Prompt, int, str]] = {
    "removed": (Prompt.REMOVED, 403, "Removed by the host"),
    "meeting_ended": (Prompt.MEETING_ENDED, 200, "Meeting ended"),
    "denied": (Prompt.DENIED, 403, "Not admitted"),
    "locked": (Prompt.MEETING_LOCKED, 403, "Meeting locked"),
    "full": (Prompt.MEETING_FULL, 486, "Meeting full"),
    "locked_out": (Prompt.TOO_MANY_ATTEMPTS, 403, "Too many wrong PINs"),
    "closed": (Prompt.CLOSED, 480, "Closed (outside the opening hours)"),
    "shutdown": (Prompt.SHUTTING_DOWN, 503, "Gateway shutting down"),
}


class SipService:
    def __init__(self, config: GatewayConfig, directory: Directory, pin_guard: PinGuard) -> None:
        self.config = config
        self.directory = directory
        self.pin_guard = pin_guard
        self.prompts = PromptLibrary()
        self.codecs = [_CODECS[name] for name in config.sip.codecs]
        self.calls: dict[int, SipCall] = {}
        self.stack: SipTransport | None = None
        self._silence: dict[AudioFormat, bytes] = {}
        self.attempts: dict[str, int] = {"in": 0, "out": 0}
        # refusals by SIP status, failed dial-outs by the callee's status (bounded label values)
        self.failures: dict[str, int] = {}
        self.admission: Admission | None = None  # set by the gateway: refuses new calls while overloaded
        self._dial_outs = RateLimit(config.sip.dial_out_per_minute)  # per actor
        self._dial_outs_total = RateLimit(config.sip.dial_out_per_minute_total)
        self.trunks = [ipaddress.ip_network(source, strict=False) for source in config.sip.trunk_sources]

    def from_trunk(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trunks)

    async def start(self) -> dict[str, int]:
        self.stack = SipTransport(self.config.sip, self)
        ports = await self.stack.start()
        log.info("SIP started", host=self.config.sip.host, ports=ports)
        return ports

    async def wait_idle(self, timeout_s: float) -> None:
        """Waits until every call has ended (their goodbye prompts played), at most `timeout_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.calls and loop.time() < deadline:  # noqa: ASYNC110 (calls end in many places; 100 ms polls at shutdown only)
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.stack is not None:
            await self.stack.stop()  # BYE to every call; each is released as it ends
        for call in list(self.calls.values()):
            call.release()
        self.calls.clear()

    def silence(self, fmt: AudioFormat) -> bytes:
        payload = self._silence.get(fmt)
        if payload is None:
            payload = self._silence[fmt] = make_encoder(fmt).encode(SILENCE)
        return payload

    def room_info(self, conference: Conference) -> ivr.RoomInfo:
        room = conference.room
        language = room.language or self.config.sip.language
        return ivr.RoomInfo(room.id, language, bool(room.host_pin), bool(room.guest_pin))

    # -- useragent.CallEvents -------------------------------------------------------------------

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
            uri, host, port, user = _dial_target(uri)
            rules = self.config.sip.dial_out_allow
            if not in_directory and not any(full_match(compile_rule(r), uri, max_length=MAX_URI) for r in rules):
                raise DialOutRefused("no dial-out rule allows this destination", "dial_out_refused")
            self._dial_out_allowed(requested_by)
        except DialOutRefused as exc:
            attempt.warning("dial-out refused", code=exc.code, why=str(exc))
            raise
        try:
            address = str(ipaddress.ip_address(host))
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port or 5060, type=socket.SOCK_DGRAM)
            except OSError:
                infos = []
            if not infos:
                attempt.warning("dial-out refused", code="bad_uri", why="host name does not resolve")
                raise DialOutRefused(f"cannot resolve {host!r}", "bad_uri") from None
            address = str(infos[0][4][0])
        incoming = IncomingCall(0, "", room_id, name or user or host, user, address, "udp", None)
        call = SipCall(self, self.stack, incoming, outbound=True)
        number = await call.dial(conference, uri, Peer("udp", (address, port or 5060)))
        self.attempts["out"] += 1
        attempt.info("dial-out placed", call=number)
        return {"call": number, "room": conference.room.id, "uri": uri}

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
        if self._dial_outs_total.full(None):
            raise DialOutRefused("too many dial-outs in the last minute", "rate_limited")
        if self._dial_outs.full(actor):
            raise DialOutRefused("too many dial-outs by you in the last minute", "rate_limited")
        self._dial_outs.add(actor)
        self._dial_outs_total.add(None)

    def count_failure(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1

    def incoming(self, call: IncomingCall) -> None:
        assert self.stack is not None
        self.attempts["in"] += 1
        busy = self.admission.admit() if self.admission is not None else None
        if busy is not None:
            log.warning("call refused: overloaded", call_id=call.sip_call_id, source=call.source, why=busy)
            self.count_failure("503")
            assert self.admission is not None
            self.stack.hang_up(call.call, 503, "Service Unavailable (overloaded)", retry_after_s=self.admission.retry_after_s)
            return
        if not self.from_trunk(call.source):
            from_there = sum(1 for c in self.calls.values() if c.source == call.source and not c.outbound)
            if from_there >= self.config.sip.max_calls_per_source:
                log.warning("call refused: too many calls from one address", call_id=call.sip_call_id, source=call.source)
                self.count_failure("486")
                self.stack.hang_up(call.call, 486, "Busy Here (too many calls from your address)")
                return
        sip_call = SipCall(self, self.stack, call)
        self.calls[call.call] = sip_call
        sip_call.task = asyncio.get_running_loop().create_task(self._supervised(sip_call, sip_call.start()))

    async def _supervised(self, sip_call: SipCall, work: Coroutine[Any, Any, None]) -> None:
        """Runs one call's work: an exception ends that call (500 or BYE with a Reason), frees its
        slot and ports, and is logged once with the call id; other calls carry on."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            sip_call.fail()

    def _guarded(self, call: int, action: Callable[[SipCall], None]) -> None:
        """An event of the SIP stack for one call: a failure ends that call only."""
        sip_call = self.calls.get(call)
        if sip_call is None:
            return
        try:
            action(sip_call)
        except Exception:
            sip_call.fail()

    def media(self, call: int, choice: sdp.AudioChoice) -> None:
        self._guarded(call, lambda c: c.apply(choice))

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


def _dial_target(uri: str) -> tuple[str, str, int | None, str]:
    """A dial-out URI checked and normalised before any rule sees it: no control characters, spaces
    or header parts, a sip: URI over UDP, scheme and host lower-case, the user part percent-decoded
    (so that `%2B` cannot sneak past a rule written for `+`). Returns (uri, host, port, user)."""
    if len(uri) > 256 or any(ord(c) < 0x21 or ord(c) == 0x7F or c in '<>"?,' for c in uri):
        raise DialOutRefused("the address has characters a SIP URI to call may not have", "bad_uri")
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() != "sip":
        raise DialOutRefused("dial-out takes sip: URIs", "bad_uri")
    try:
        host, port, transport = message.uri_host_port(uri)
        user = message.uri_user(uri)
    except message.SipMessageError as exc:
        raise DialOutRefused(f"not a SIP URI: {exc}", "bad_uri") from None
    if transport not in (None, "udp"):
        raise DialOutRefused("dial-out goes over UDP for now", "bad_uri")
    if any(ord(c) < 0x21 or ord(c) == 0x7F or c in '<>"?,@:;' for c in user) or not host or "@" not in rest:
        raise DialOutRefused("the address has characters a SIP URI to call may not have", "bad_uri")
    params = rest.partition(";")[2]
    if params and any(p.split("=")[0].lower() not in ("transport", "user") for p in params.split(";")):
        raise DialOutRefused("only the transport and user parameters may follow the address", "bad_uri")
    shown_host = f"[{host}]" if ":" in host else host.lower()
    normal = f"sip:{user}@{shown_host}" + (f":{port}" if port else "") + (f";{params.lower()}" if params else "")
    return normal, host.lower(), port, user


class SipCall:
    def __init__(self, service: SipService, stack: SipTransport, incoming: IncomingCall, outbound: bool = False) -> None:
        self.service = service
        self.outbound = outbound
        self.stack = stack
        self.incoming = incoming
        config = service.config.sip
        self.kind = LegKind.PHONE if _NUMBER.match(incoming.from_user or "") else LegKind.SIP_ROOM_SYSTEM
        self.name = (incoming.display_name or incoming.from_user or "SIP")[:64]
        self.source = incoming.source
        self.log = log.bind(call_id=incoming.sip_call_id, source=incoming.source, dialled=incoming.user)
        self.leg = RtpAudioLeg(
            self.kind,
            on_digit=self.on_digit,
            on_event=self.on_room_event,
            on_hang_up=self.on_room_hang_up,
            log_context={"call_id": incoming.sip_call_id},
            latching=config.rtp_latching,
            learn_s=config.rtp_learn_s,
        )
        self.flow = ivr.EntryFlow(
            config.language, config.pin_attempts, config.digit_timeout_s, config.entry_timeout_s
        )
        self.conference: Conference | None = None
        self.participant_id = ""
        self.phase = "new"  # new -> answered -> menu -> lobby -> admitted -> meeting -> ending -> ended
        self._confirmed = False
        self._timer: asyncio.TimerHandle | None = None
        self._keys = ""
        self._unsubscribe: Callable[[], None] | None = None
        self._first_room: Conference | None = None
        self.trusted = False  # its own room system of the directory, calling its room: no PIN, no lobby
        self.task: asyncio.Task[None] | None = None
        self._refusal: tuple[Prompt, int, str] | None = None  # said once answered, then the BYE
        self._keys_per_s = RateLimit(_DIGITS_PER_S, 1.0)
        self._digits_dropped = 0

    @property
    def language(self) -> str:
        return self.flow.language

    # -- set-up ---------------------------------------------------------------------------------

    def _reject(self, status: int, reason: str) -> None:
        self.log.info("call refused", status=status, reason=reason)
        self.service.count_failure(str(status))
        self.phase = "ended"
        self.stack.hang_up(self.incoming.call, status, reason)

    def _pin_source(self) -> str:
        """Who is guessing: the caller's number where the call comes through a configured trunk
        (every caller of a carrier shares its address), the source address otherwise."""
        if self.service.from_trunk(self.source) and _NUMBER.match(self.incoming.from_user or ""):
            return f"number:{self.incoming.from_user}"
        return self.source

    def _known_system(self) -> RoomSystemConfig | None:
        """The directory entry of the caller: its From names the system and the INVITE comes from
        an address of the system (its URI's IP, or what its host name resolved to). A From header
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
        if str(ip) not in directory.system_addresses(system):
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

    async def start(self) -> None:
        config = self.service.config.sip
        directory = self.service.directory
        system = self._known_system()
        conference = directory.route(self.incoming.user) if self.incoming.user else None
        if system is not None:
            self.kind, self.name = LegKind.SIP_ROOM_SYSTEM, system.name[:64]
            if conference is None and system.default_room:
                conference = directory.find(system.default_room)  # it called the gateway, not a room
            self.trusted = bool(
                system.trusted and conference is not None and conference.room.id == system.default_room
            )
            self.log = self.log.bind(system=system.id, trusted=self.trusted)
        if conference is None and not config.menu:
            self._reject(404, "Unknown conference")
            return
        if conference is not None and self.trusted:
            room = conference.room
            if sum(1 for p in room.participants.values() if p.connected) >= room.max_participants:
                self._reject(486, "Meeting full")
                return
            self.conference = conference
        elif conference is not None:
            room = conference.room
            try:
                self.service.pin_guard.check(self._pin_source(), conference.room.id)
            except JoinRefused:
                # Answered so that a person hears why (a bare 403 is a carrier's busy tone), then
                # a BYE with Reason 403; the PIN is never asked for.
                self.log.warning("call refused: source locked out after wrong PINs")
                self.service.count_failure("403")
                self._refusal = _ENDINGS["locked_out"]
            if self._refusal is None and room.locked and not room.host_pin:
                self._reject(403, "Meeting locked")
                return
            if sum(1 for p in room.participants.values() if p.connected) >= room.max_participants:
                self._reject(486, "Meeting full")
                return
        offer = None
        require_srtp = self._srtp_required(system)
        if self.incoming.offer is not None:
            try:
                offer = sdp.parse(self.incoming.offer)
                trial = sdp.answer(offer, local_address=config.host, audio_port=9, codecs=self.service.codecs)
            except sdp.SdpError as exc:
                self._reject(exc.status, exc.reason if exc.status == 488 else f"Bad SDP: {exc.reason}")
                return
            if require_srtp and trial.audio.local_crypto is None:
                self._reject(488, "SRTP required")
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
        if self.phase == "ended":  # cancelled meanwhile
            self.leg.close()
            return
        plan = MediaPlan(
            local_address=config.public_address or config.host,
            audio_port=port,
            codecs=self.service.codecs,
            prefer_ours=config.prefer_our_codecs,
            user_agent=config.user_agent.replace(" ", "-"),
            require_srtp=require_srtp,
        )
        body = None
        if offer is not None:
            answer = sdp.answer(
                offer,
                local_address=plan.local_address,
                audio_port=port,
                codecs=plan.codecs,
                prefer_ours=plan.prefer_ours,
                session_id=plan.session_id,
                user_agent=plan.user_agent,
            )
            body = answer.sdp
            self.apply(answer.audio)
        self._first_room = conference
        self.phase = "answered"
        self.log.info("call answered", kind=self.kind.value, name=self.name, transport=self.incoming.transport)
        self.stack.answer(self.incoming.call, 200, plan=plan, body=body)

    def apply(self, choice: sdp.AudioChoice) -> None:
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
        self.leg.set_idle(self.service.silence(self.leg.audio_out_format))
        self.log.info(
            "media agreed" if first else "media renegotiated",
            codec=choice.codec.value,
            pt=choice.payload_type,
            direction=choice.direction,
            srtp=choice.local_crypto is not None,
            telephone_event=choice.telephone_event_pt,
        )

    async def dial(self, conference: Conference, uri: str, peer: Peer) -> int:
        """Places the call (dial-out); it joins `conference` when answered."""
        config = self.service.config.sip
        try:
            port = await self.leg.open(config.host, config.rtp_port_min, config.rtp_port_max)
        except OSError as exc:
            raise DialOutRefused(f"no RTP port free: {exc}", "no_media_port") from None
        plan = MediaPlan(
            local_address=config.public_address or config.host,
            audio_port=port,
            codecs=self.service.codecs,
            prefer_ours=True,
            user_agent=config.user_agent.replace(" ", "-"),
        )
        assert self.stack.ua is not None
        number = self.stack.ua.invite(uri, peer, plan, display_name=conference.room.name)
        self.stack.rearm()
        self.incoming = IncomingCall(number, "", conference.room.id, self.name, self.name, peer.address[0], "udp", None)
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
        if self._refusal is not None:
            self.end(*self._refusal)
            return
        if self.outbound or self.trusted:
            if self.trusted:
                self._watch_media()
            self._join_invited()
            return
        self.phase = "menu"
        self._watch_media()
        info = self.service.room_info(self._first_room) if self._first_room is not None else None
        self._run(self.flow.start(info, self._now()))

    def _watch_media(self) -> None:
        """A caller whose RTP (and RTCP) stopped while not on hold is gone without a BYE (a crashed
        room system, a lost network): end the call rather than keep a ghost in the room."""
        if self.phase in ("ending", "ended"):
            return
        timeout = self.service.config.sip.media_timeout_s
        silent_for = self._now() - self.leg.last_packet_at
        if self.leg.remote_sends and silent_for > timeout:
            self.log.warning("no media from the caller; ending the call", silent_s=round(silent_for, 1))
            self.end(Prompt.GOODBYE, 408, "Media timeout")
            return
        asyncio.get_running_loop().call_later(min(timeout / 4, 10.0), self._watch_media)

    # -- the voice menu -------------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _run(self, actions: list[ivr.Action]) -> None:
        said: tuple[Prompt, ...] = ()
        for action in actions:
            if isinstance(action, ivr.Say):
                said = action.prompts
                self.say(*action.prompts, done=self._prompt_finished)
            elif isinstance(action, ivr.StopSaying):
                self.leg.stop_playing()
            elif isinstance(action, ivr.FindRoom):
                conference = self.service.directory.route(action.number)
                info = self.service.room_info(conference) if conference is not None else None
                # (not the number typed: typed digits stay out of the log)
                self.log.info(
                    "conference number entered",
                    found=conference is not None,
                    room=conference.room.id if conference is not None else None,
                )
                self._run(self.flow.room_found(info, self._now()))
                return
            elif isinstance(action, ivr.Join):
                self._join(action.room_id, action.pin, greeting=said)
                return
            elif isinstance(action, ivr.End):
                self.end(action.prompt, action.status, action.reason)
                return
        self._arm()

    def _prompt_finished(self) -> None:
        self.flow.prompt_finished(self._now())
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.flow.deadline is not None and self.phase == "menu":
            self._timer = asyncio.get_running_loop().call_at(
                self.flow.deadline, lambda: self._run(self.flow.timeout(self._now()))
            )

    def say(self, *prompts: Prompt, done: Callable[[], Any] | None = None, then_hold: bool = False) -> None:
        fmt = self.leg.audio_out_format
        frames = [f for p in prompts for f in self.service.prompts.frames(p, self.language, fmt)]
        if then_hold:
            music = self.service.prompts.frames(HOLD_MUSIC, "", fmt)
            self.leg.play(frames, done=lambda: self.leg.play(music, loop=True) if self.phase == "lobby" else None)
        else:
            self.leg.play(frames, done=done)

    def _join(self, room_id: str, pin: str | None, greeting: tuple[Prompt, ...] = ()) -> None:
        """`greeting`: prompts said just before (a room without PIN: the welcome), heard in full."""
        conference = self.service.directory.find(room_id)
        if conference is None:
            self.end(Prompt.MEETING_ENDED, 404, "Unknown conference")
            return
        guard, key = self.service.pin_guard, (self._pin_source(), conference.room.id)
        self.conference = conference
        self.log = self.log.bind(room=conference.room.id)
        try:
            if pin:
                guard.check(*key)
            result = conference.room.request_join(self.name, pin, self.kind, source=self.source)
        except JoinRefused as exc:
            if exc.code == "wrong_pin":
                locked_out = guard.failed(*key)
                self.log.warning("wrong PIN", now_locked_out=locked_out)
                if locked_out:
                    self.end(Prompt.TOO_MANY_ATTEMPTS, 403, "Too many wrong PINs")
                else:
                    self._run(self.flow.wrong_pin(self._now()))
                return
            self.log.info("join refused", code=exc.code)
            prompt, status, reason = _ENDINGS.get(exc.code, (Prompt.GOODBYE, 403, str(exc)))
            self.end(prompt, status, reason)
            return
        self.flow.joined()
        if result.participant is not None and result.participant.is_host:
            guard.succeeded(*key)
        if result.lobby_entry is not None:
            self.participant_id = result.lobby_entry.id
            self.log = self.log.bind(participant=self.participant_id)
            self.phase = "lobby"
            self._unsubscribe = conference.room.subscribe(self._on_lobby_event)
            self.log.info("waiting in lobby")
            self.say(Prompt.WAITING_FOR_HOST, then_hold=True)
            return
        assert result.participant is not None
        self._enter_meeting(result.participant.id, result.participant.is_host, greeting)

    def _join_invited(self) -> None:
        """The callee of a dial-out answered: straight into the room, past the lobby and the lock."""
        conference = self.conference
        if conference is None:
            return
        try:
            direction = "out" if self.outbound else "in"
            participant = conference.room.add_invited(self.name, self.kind, source=self.source, direction=direction)
        except JoinRefused as exc:
            prompt, status, reason = _ENDINGS.get(exc.code, (Prompt.GOODBYE, 403, str(exc)))
            self.end(prompt, status, reason)
            return
        self._watch_media()
        self._enter_meeting(participant.id, False)

    def _on_lobby_event(self, event: RoomEvent) -> None:
        if self.phase != "lobby":
            return
        if event.participant == self.participant_id and event.type == "lobby_admitted":
            self._stop_lobby_events()
            self.phase = "admitted"
            # (the room adds the participant right after saying so: enter on the next loop turn)
            asyncio.get_running_loop().call_soon(self._enter_admitted)
        elif event.participant == self.participant_id and event.type == "lobby_denied":
            self._stop_lobby_events()
            self.end(*_ENDINGS["denied"])
        elif event.type == "meeting_ended" and self.participant_id in event.data.get("participants", []):
            self._stop_lobby_events()
            self.end(*_ENDINGS[event.data.get("reason", "meeting_ended")])

    def _enter_admitted(self) -> None:
        if self.phase == "admitted" and self.conference is not None:
            if self.participant_id in self.conference.room.participants:
                self._enter_meeting(self.participant_id, False)
            else:
                self.end(Prompt.GOODBYE, 480, "Admitted but gone")

    def _stop_lobby_events(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _enter_meeting(self, participant_id: str, is_host: bool, greeting: tuple[Prompt, ...] = ()) -> None:
        assert self.conference is not None
        self.phase = "meeting"
        self.participant_id = participant_id
        self.log = self.log.bind(participant=participant_id)
        self.leg.stop_playing()
        self.leg.attach(self.conference, participant_id)
        self.log.info("joined meeting", role="host" if is_host else "guest", kind=self.kind.value)
        participant = self.conference.room.participants.get(participant_id)
        muted = (Prompt.HOST_MUTED_YOU,) if participant is not None and participant.host_muted else ()
        self.say(*greeting, Prompt.JOINED, *muted)

    # -- keys and events in the meeting ---------------------------------------------------------

    def on_digit(self, digit: str, via: str = "rfc4733") -> None:
        if not self._keys_per_s.allow(None):
            # Nobody presses keys faster than this: a flood is a guessing machine; drop, count, log once.
            self._digits_dropped += 1
            if self._digits_dropped == 1:
                self.log.warning("DTMF flood: keys dropped", via=via)
            return
        if self.phase == "meeting":
            self.log.info("DTMF received", digit=digit, via=via)
        else:  # in the menu keys are PINs and conference numbers: that one arrived, not which
            self.log.debug("DTMF received", via=via)
        if self.phase == "menu":
            self._run(self.flow.digit(digit, self._now()))
        elif self.phase == "meeting":
            self._meeting_key(digit)

    def _meeting_key(self, digit: str) -> None:
        keys = self.service.config.sip.keys
        self._keys = (self._keys + digit)[-2:]
        command = next(
            (name for name, key in (("self_mute", keys.self_mute), ("hand", keys.hand), ("mute_all", keys.mute_all), ("lock", keys.lock)) if self._keys.endswith(key)),
            None,
        )
        if command is None or self.conference is None:
            return
        self._keys = ""
        room, me = self.conference.room, self.participant_id
        participant = room.participants.get(me)
        if participant is None:
            return
        self.log.info("phone key", command=command)
        try:
            if command == "self_mute":
                if participant.audio_muted:
                    if participant.host_muted and participant.self_unmute_forbidden and not participant.is_host:
                        self.say(Prompt.HOST_MUTED_YOU)
                        return
                    room.set_self_muted(me, False)
                    self.say(Prompt.YOU_ARE_UNMUTED)
                else:
                    room.set_self_muted(me, True)
                    self.say(Prompt.YOU_ARE_MUTED)
            elif command == "hand":
                room.set_hand(me, me, not participant.hand_raised)
                self.say(Prompt.HAND_RAISED if participant.hand_raised else Prompt.HAND_LOWERED)
            elif not participant.is_host:
                self.say(Prompt.NOT_ALLOWED)
            elif command == "mute_all":
                if room.guests_muted_on_entry:
                    room.allow_guests_to_unmute(me)
                    for guest in [p for p in room.participants.values() if not p.is_host and p.host_muted]:
                        room.unmute(me, guest.id)
                    self.say(Prompt.ALL_GUESTS_UNMUTED)
                else:
                    room.mute_all_guests(me)
                    self.say(Prompt.ALL_GUESTS_MUTED)
            elif command == "lock":
                room.set_locked(me, not room.locked)
                self.say(Prompt.MEETING_LOCKED if room.locked else Prompt.MEETING_UNLOCKED)
        except RoomError as exc:
            self.log.info("phone key refused", command=command, code=exc.code)
            self.say(Prompt.HOST_MUTED_YOU if exc.code == "self_unmute_forbidden" else Prompt.NOT_ALLOWED)

    def on_room_event(self, event: RoomEvent) -> None:
        me = self.participant_id
        if event.participant != me or event.by in (None, me):
            return
        if event.type == "muted" or (event.type == "mute_changed" and event.data.get("host_muted")):
            self.say(Prompt.HOST_MUTED_YOU)
        elif event.type == "unmuted":
            self.say(Prompt.YOU_ARE_UNMUTED)
        elif event.type == "self_unmute_allowed":
            self.say(Prompt.UNMUTE_ALLOWED)

    async def on_room_hang_up(self, reason: str) -> None:
        """The room ended our part (removed, meeting ended): the caller hears why, then a BYE."""
        prompt, status, text = _ENDINGS.get(reason, (Prompt.GOODBYE, 200, reason))
        self.end(prompt, status, text)

    # -- endings --------------------------------------------------------------------------------

    def end(self, prompt: Prompt, status: int, reason: str) -> None:
        """Says `prompt`, then hangs up with a Reason header naming `status` (unless all is well)."""
        if self.phase in ("ending", "ended"):
            return
        self.log.info("ending call", reason=reason, cause=status)
        self._leave_room()
        self.phase = "ending"
        if self._timer is not None:
            self._timer.cancel()
        cause = (status, reason) if status != 200 else None

        def bye() -> None:
            if self.phase == "ending":
                self.phase = "ended"
                self.stack.hang_up(self.incoming.call, 200, None, cause)
                self.leg.close()

        self.say(prompt, done=bye)
        asyncio.get_running_loop().call_later(self.service.prompts.duration_s(prompt, self.language) + 2.0, bye)

    def _leave_room(self) -> None:
        self._stop_lobby_events()
        conference = self.conference
        if conference is not None and self.participant_id:
            self.leg.detach()
            conference.room.leave(self.participant_id)  # (no-op when the room removed us already)
        self.conference = None

    def fail(self) -> None:
        """Something raised while handling this call: end it (500 before the answer, a BYE with
        Reason 500 after), free its slot and ports. Logged once, with the traceback."""
        self.log.exception("call failed; ending it", phase=self.phase)
        self.service.count_failure("500")
        phase, self.phase = self.phase, "ended"
        try:
            self._leave_room()
        except Exception:
            self.log.exception("leaving the room failed")
        self.leg.close()
        self.service.calls.pop(self.incoming.call, None)
        if phase == "new":
            self.stack.hang_up(self.incoming.call, 500, "Server Internal Error")
        else:
            self.stack.hang_up(self.incoming.call, 200, None, (500, "Server Internal Error"))

    def on_disconnected(self, status: int, reason: str) -> None:
        self.log.info("call ended", status=status, reason=reason, phase=self.phase)
        if self.outbound and not self._confirmed and status >= 300:
            self.service.count_failure(f"dial-out {status}")
        self.release()

    def release(self) -> None:
        self.phase = "ended"
        if self._timer is not None:
            self._timer.cancel()
        self._leave_room()
        self.leg.close()
