"""H.323 participants on the asyncio loop: the call signalling listener (TCP, H.225.0), one H323Call
per call, and its H.245 (tunnelled, or on a TCP connection of its own).

The adapters are thin: bytes from a connection go into the sans-IO cores (call.py's CallChannel,
control.py's H245Control), the octets they produce go out, and their events drive H323Call, which
is H.323's adapter of the shared call flow (gateway/calls/call.py): routing by the dialled alias,
the Doorkeeper's checks, media by fastStart or H.245 logical channels on our RTP leg, the voice
menu with keys from H.245 userInputIndication or RFC 2833, and endings as Q.931 causes
(endings.py). Malformed input ends at most the call it came on, with a ReleaseComplete or a log
line (call.py says which); a connection that brings no Setup in time is closed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import functools
import ipaddress
import re
import secrets
import socket
from typing import Any

import structlog

from gateway.calls.admission import DialOutLimits, Doorkeeper
from gateway.calls.call import Call, CallContext, CallSettings
from gateway.calls.endings import Ending
from gateway.calls.prompts import PromptLibrary
from gateway.config import GatewayConfig, RoomSystemConfig
from gateway.h323 import faststart, h239, h245, q931, url
from gateway.h323.call import (
    CallChannel,
    Cause,
    Connected,
    FacilityReceived,
    FastStartAnswered,
    H245Received,
    Progressed,
    ProtocolProblem,
    Released,
    SetupReceived,
)
from gateway.h323.call import Event as SignalEvent
from gateway.h323.control import (
    BitrateLimited,
    CapabilitiesReceived,
    ChannelClosed,
    ChannelEstablished,
    ChannelOffered,
    ChannelRefused,
    ControlProblem,
    H239Message,
    H245Control,
    KeyframeRequested,
    MasterSlaveDetermined,
    ProcedureFailed,
    SessionEnded,
    UserInput,
)
from gateway.h323.control import Event as ControlEvent
from gateway.h323.endings import q931_cause
from gateway.h323.h225 import Alias, Signal
from gateway.h323.h245 import Capabilities, Channel, Codec, MediaKind
from gateway.h323.ras import (
    AdmissionRefused,
    Admitted,
    RasClient,
    RasProblem,
    Registered,
    RegistrationFailed,
    Unregistered,
)
from gateway.h323.ras import Event as RasEvent
from gateway.h323.ras import State as RasState
from gateway.rooms.admission import Admission
from gateway.rooms.conference import Conference
from gateway.rooms.directory import Directory
from gateway.rooms.errors import DialOutRefused
from gateway.rooms.events import RoomEvent
from gateway.rooms.floor import Content
from gateway.rooms.identity import IdentityKind
from gateway.rooms.participant import LegKind
from gateway.rooms.patterns import compile_rule, full_match
from gateway.rooms.pinguard import PinGuard
from gateway.rtp.leg import RtpLeg
from gateway.transcode.audio import AudioCodec, silence_payload
from gateway.transcode.codecs import StreamCodec, StreamKind, h264

log = structlog.get_logger(__name__)

Address = tuple[str, int]
_AUDIO = {"PCMU": (AudioCodec.PCMU, 0, 8000), "PCMA": (AudioCodec.PCMA, 8, 8000), "G722": (AudioCodec.G722, 9, 8000)}
TELEPHONE_EVENT_PT = 101  # what our capability set offers for RFC 2833
H264_PT = 97  # the payload type of the H.264 channels we open
_LINES = {MediaKind.VIDEO: StreamKind.MAIN, MediaKind.CONTENT: StreamKind.CONTENT}  # H.245's video kinds on the leg
_KEYS = re.compile(r"[0-9*#]")
# H.241 level values -> H.264 level_idc (H.241 table 8-2 against H.264 table A-1)
_LEVEL_IDC = {15: 10, 19: 9, 22: 11, 29: 12, 36: 13, 43: 20, 50: 21, 57: 22, 64: 30, 71: 31, 78: 32, 85: 40, 92: 41,
              99: 42, 106: 50, 113: 51}  # fmt: skip
_VIDEO_WAIT_S = 1.5  # after the capability exchange, how long the far end's own channels get first
_CONNECT_S = 5.0  # a dial-out's TCP connection to the callee
_RING_S = 60.0  # a dial-out unanswered this long (after its first response) is given up


def stream_codec(codec: Codec, payload_type: int) -> StreamCodec:
    """The RTP engine's H.264 descriptor of an H.245 codec: profile and level as profile-level-id,
    the custom maximums as max-fs/max-mbps, maxBitRate as the bandwidth."""
    profile = "6400" if codec.profile & h245.PROFILE_HIGH else "4d00" if codec.profile & h245.PROFILE_MAIN else "42e0"
    level = _LEVEL_IDC.get(codec.level, 31)
    base = h264(
        payload_type,
        profile_level_id=f"{profile}{level:02x}",
        packetization_mode=codec.packetization_mode,
        rtcp_fb=(),  # (H.323 asks for pictures in H.245: videoFastUpdatePicture)
        bandwidth_kbps=codec.max_bitrate // 10 if codec.max_bitrate else None,
    )
    extra = []
    if codec.max_fs:
        extra.append(("max-fs", str(codec.max_fs * 256)))
    if codec.max_mbps:
        extra.append(("max-mbps", str(codec.max_mbps * 500)))
    return StreamCodec(base.name, base.payload_type, base.clock_rate, fmtp=base.fmtp + tuple(extra), bandwidth_kbps=base.bandwidth_kbps)


def shown_name(signal: Signal, source: str) -> str:
    """What the room shows: the display name, else an h323-ID alias, else the dialled-from digits,
    else the address; printable, at most 64 characters."""
    candidates = [signal.display_name or ""]
    candidates += [a.value for a in signal.source_aliases if a.kind == "h323-ID"]
    candidates += [a.value for a in signal.source_aliases if a.kind == "dialledDigits"]
    for text in candidates:
        clean = "".join(c for c in text if c.isprintable()).strip()[:64]
        if clean:
            return clean
    return f"H.323 {source}"


class H323Service:
    def __init__(
        self, config: GatewayConfig, directory: Directory, pin_guard: PinGuard, prompts: PromptLibrary | None = None
    ) -> None:
        self.config = config
        self.inherited: socket.socket | None = None  # (a worker's listening socket: gateway/workers.py)
        self.directory = directory
        self.prompts = prompts or PromptLibrary()  # (the gateway's one library, shared with SIP)
        self.admission: Admission | None = None  # set by the gateway: refuses new calls while overloaded
        self.door = Doorkeeper(pin_guard, lambda: self.admission)
        self.context = CallContext(self.prompts, directory, self.door, CallSettings.of(config.sip))
        self.calls: set[H323Call] = set()
        self.connections: dict[str, int] = {}  # source address -> open signalling connections
        self.attempts = 0
        self.failures: dict[str, int] = {}  # by Q.850 cause
        self.port = 0
        self.ras: RasClient | None = None  # (with h323.gatekeeper: our registration)
        self._ras_transport: asyncio.DatagramTransport | None = None
        self._ras_timer: asyncio.TimerHandle | None = None
        self._admissions: dict[int, asyncio.Future[Admitted | AdmissionRefused]] = {}  # id(Setup) -> the gatekeeper's word
        # (the gateway gives SIP's, when it runs: dial-outs by both protocols add up)
        self.dial_limits = DialOutLimits(config.sip.dial_out_per_minute, config.sip.dial_out_per_minute_total)
        self.dial_outs = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        h323 = config.h323
        self.capabilities = Capabilities(
            audio=tuple(Codec(name) for name in h323.codecs),
            video=(Codec("H264", level=h245.LEVEL_4, max_bitrate=h323.video_max_kbps * 10),) if h323.video else (),
            content=(Codec("H264", level=h245.LEVEL_4, max_bitrate=h323.video_max_kbps * 10, role=h245.ROLE_PRESENTATION),)
            if h323.video and h323.content
            else (),
            h239=h323.video and h323.content,
            telephone_event=TELEPHONE_EVENT_PT,
            user_input=frozenset({"basicString", "dtmf"}),
            packetization_modes=frozenset({0, 1}),
        )

    @property
    def address(self) -> str:
        """The address written into fastStart and H.245 (where the far end sends)."""
        return self.config.h323.public_address or self.config.h323.host

    async def start(self) -> int:
        h323 = self.config.h323
        inherited = self.inherited  # (a worker's: gateway/workers.py)
        self._server = await asyncio.start_server(
            self._connected, *((None, None) if inherited else (h323.host, h323.port)), limit=1 << 16, sock=inherited
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("H.323 listening", host=h323.host, port=self.port)
        if h323.gatekeeper is not None:
            await self._start_ras()
        return self.port

    # -- the gatekeeper (RAS) ---------------------------------------------------------------------

    def room_aliases(self) -> tuple[Alias, ...]:
        """What the gatekeeper routes to us: every room's id (h323-ID) and aliases."""
        aliases: dict[Alias, None] = {}
        for conference in self.directory:
            room = conference.room
            aliases[Alias("h323-ID", room.id)] = None
            for alias in getattr(room, "aliases", ()) or ():
                kind = "dialledDigits" if alias.isdigit() else "h323-ID"
                aliases[Alias(kind, alias)] = None
        return tuple(aliases)[:64]

    async def _start_ras(self) -> None:
        h323 = self.config.h323
        gatekeeper = h323.gatekeeper
        assert gatekeeper is not None
        host, _, port_text = gatekeeper.address.rpartition(":") if gatekeeper.address.count(":") == 1 else (gatekeeper.address, "", "")
        loop = asyncio.get_running_loop()
        found = await loop.getaddrinfo(host or gatekeeper.address, int(port_text or 1719), type=2)  # (SOCK_DGRAM)
        gk_host, gk_port = str(found[0][4][0]), int(found[0][4][1])
        self._ras_transport, _ = await loop.create_datagram_endpoint(
            lambda: _RasProtocol(self), local_addr=(h323.host, gatekeeper.ras_port)
        )
        ras_port = int(self._ras_transport.get_extra_info("sockname")[1])
        self.ras = RasClient(
            gatekeeper=(gk_host, gk_port),
            ras_address=(self.address, ras_port),
            call_signal_address=(self.address, self.port),
            aliases=self.room_aliases(),
            prefixes=tuple(gatekeeper.prefixes),
            gatekeeper_id=gatekeeper.identifier,
            discover=gatekeeper.discover,
            time_to_live=gatekeeper.time_to_live_s,
        )
        log.info("registering with the gatekeeper", gatekeeper=f"{gk_host}:{gk_port}", aliases=len(self.ras.aliases))
        self.ras.start(loop.time())
        self._ras_flush()
        self.directory.alias_watchers.append(self._rooms_changed)

    def _rooms_changed(self) -> None:
        """A room was added, changed or removed: the gatekeeper hears the aliases we now serve."""
        ras = self.ras
        if ras is not None and ras.state is not RasState.STOPPED:
            aliases = self.room_aliases()
            if aliases != ras.aliases:
                log.info("room aliases changed: registering them", aliases=len(aliases))
                ras.update_aliases(aliases, asyncio.get_running_loop().time())
                self._ras_flush()

    def _ras_flush(self) -> None:
        ras, transport = self.ras, self._ras_transport
        if ras is None or transport is None:
            return
        for event in ras.events():
            self._ras_event(event)
        for datagram in ras.datagrams_to_send():
            transport.sendto(datagram, ras.gatekeeper)
        if self._ras_timer is not None:
            self._ras_timer.cancel()
            self._ras_timer = None
        if ras.deadline is not None:
            loop = asyncio.get_running_loop()
            self._ras_timer = loop.call_at(ras.deadline, self._ras_timeout)

    def _ras_timeout(self) -> None:
        if self.ras is not None:
            for event in self.ras.timeout(asyncio.get_running_loop().time()):
                self._ras_event(event)
            self._ras_flush()

    def ras_datagram(self, data: bytes, source: tuple[str, int]) -> None:
        if self.ras is None:
            return
        for event in self.ras.receive(data, (_plain(source[0]), source[1]), asyncio.get_running_loop().time()):
            self._ras_event(event)
        self._ras_flush()

    def _ras_event(self, event: RasEvent) -> None:
        if isinstance(event, Registered):
            log.info("registered with the gatekeeper", endpoint=event.endpoint_id, time_to_live_s=event.time_to_live)
        elif isinstance(event, RegistrationFailed):
            log.warning("gatekeeper registration failed; direct calls still work", reason=event.reason)
        elif isinstance(event, Unregistered):
            log.info("unregistered from the gatekeeper", by_gatekeeper=event.by_gatekeeper)
        elif isinstance(event, Admitted | AdmissionRefused):
            future = self._admissions.pop(event.key, None)
            if future is not None and not future.done():
                future.set_result(event)
        elif isinstance(event, RasProblem):
            log.info("RAS problem", problem=event.what)

    @property
    def registered(self) -> bool:
        return self.ras is not None and self.ras.state is RasState.REGISTERED

    async def admit(self, setup: Signal, *, outbound: bool) -> Admitted | AdmissionRefused | None:
        """The gatekeeper's admission of the call `setup` begins while we are registered (None: no
        gatekeeper to ask). For a dial-out, Admitted says where to call."""
        ras = self.ras
        if ras is None or not self.registered:
            return None
        future: asyncio.Future[Admitted | AdmissionRefused] = asyncio.get_running_loop().create_future()
        self._admissions[id(setup)] = future
        ras.admit(
            id(setup),
            asyncio.get_running_loop().time(),
            answer=not outbound,
            call_identifier=setup.call_identifier or bytes(16),
            conference_id=setup.conference_id or bytes(16),
            call_reference=setup.call_reference,
            source=setup.source_aliases,
            destination=setup.destination_aliases,
            destination_address=setup.destination_address,
        )
        self._ras_flush()
        return await future

    def disengage(self, call: H323Call) -> None:
        if call.admitted:
            self._disengage(call.setup, call.answered)

    def _disengage(self, setup: Signal, answered: bool) -> None:
        if self.ras is not None:
            self.ras.disengage(
                asyncio.get_running_loop().time(),
                call_identifier=setup.call_identifier or bytes(16),
                conference_id=setup.conference_id or bytes(16),
                call_reference=setup.call_reference,
                answered=answered,
            )
            self._ras_flush()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for call in list(self.calls):
            call.shut_down()
        if self._rooms_changed in self.directory.alias_watchers:
            self.directory.alias_watchers.remove(self._rooms_changed)
        if self.ras is not None:
            self.ras.stop(asyncio.get_running_loop().time())
            self._ras_flush()
            if self._ras_timer is not None:
                self._ras_timer.cancel()
        if self._ras_transport is not None:
            self._ras_transport.close()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    async def wait_idle(self, timeout_s: float) -> None:
        """Until every call has hung up (their ending prompts said), at most `timeout_s`."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.calls and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110 (at shutdown only)
            await asyncio.sleep(0.1)

    def count_failure(self, cause: int) -> None:
        self.failures[str(cause)] = self.failures.get(str(cause), 0) + 1

    # -- dial-out -------------------------------------------------------------------------------

    async def dial_out(
        self, room_id: str, address: str, requested_by: str, name: str | None = None, in_directory: bool = False
    ) -> dict[str, Any]:
        """Calls an h323: URL into the room: a room system of the directory, or a destination an
        h323.dial_out_allow rule allows (toll fraud); every attempt is logged. The callee joins as
        a guest once it answers (past the lobby: the room invited it). Through the gatekeeper when
        registered (ARQ: it may refuse, and finds an alias without a host); straight to the host
        otherwise. Returns once the Setup is out."""
        conference = self.directory.find(room_id)
        attempt = log.bind(room=room_id, uri=address[:300], requested_by=requested_by, directory=in_directory, protocol="h323")
        try:
            if conference is None:
                raise DialOutRefused(f"no room {room_id!r}", "unknown_room")
            if self._server is None:
                raise DialOutRefused("H.323 is not running", "h323_disabled")
            target = url.read(address)
            rules = self.config.h323.dial_out_allow
            if not in_directory and not any(full_match(compile_rule(r), target.url, max_length=url.MAX_URL) for r in rules):
                raise DialOutRefused("no dial-out rule allows this destination", "dial_out_refused")
            if target.host is None and not self.registered:
                raise DialOutRefused("an alias without a host needs a gatekeeper, and none is registered", "bad_uri")
            if len(self.calls) >= self.config.h323.max_calls:
                raise DialOutRefused("the gateway carries as many H.323 calls as it may", "busy")
            busy = self.admission.admit() if self.admission is not None else None
            if busy is not None:
                raise DialOutRefused(f"the gateway is overloaded ({busy})", "busy")
            self.dial_limits.take(requested_by)
        except DialOutRefused as exc:
            attempt.warning("dial-out refused", code=exc.code, why=str(exc))
            raise
        call = await self._place(conference, target, name, attempt)
        self.dial_outs += 1
        attempt.info("dial-out placed", call=call.channel.call_reference, target=target.url)
        return {"call": call.channel.call_reference, "room": conference.room.id, "uri": target.url}

    async def _place(self, conference: Conference, target: url.Target, name: str | None, attempt: Any) -> H323Call:
        """The gatekeeper's admission (when registered), the TCP connection, the call's Setup."""
        loop = asyncio.get_running_loop()
        room = conference.room
        setup = Signal(
            "setup",
            call_reference=1 + secrets.randbelow(0x7FFF),
            call_identifier=secrets.token_bytes(16),
            conference_id=secrets.token_bytes(16),
            conference_goal="create",
            source_aliases=(Alias("h323-ID", room.id),) + tuple(Alias("dialledDigits", a) for a in room.aliases if a.isdigit())[:1],
            destination_aliases=(target.alias,) if target.alias is not None else (),
            destination_address=(target.host, target.port) if target.host is not None and _is_ip(target.host) else None,
            display_name=room.name[:64],
            endpoint_kind="mcu",
        )
        word = await self.admit(setup, outbound=True)
        if isinstance(word, AdmissionRefused):
            attempt.warning("dial-out refused", code="dial_out_refused", why=f"the gatekeeper refused: {word.reason}")
            raise DialOutRefused(f"the gatekeeper refused the call: {word.reason}", "dial_out_refused")
        where = word.address if word is not None and word.address is not None else None
        if where is None:
            assert target.host is not None  # (checked before: no host, no gatekeeper, no call)
            where = (target.host, target.port)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*where), _CONNECT_S)
        except (OSError, TimeoutError) as exc:
            attempt.warning("dial-out failed: callee unreachable", address=f"{where[0]}:{where[1]}", error=str(exc) or type(exc).__name__)
            if word is not None:
                self._disengage(setup, answered=False)
            raise DialOutRefused(f"cannot reach {where[0]}:{where[1]}: {exc or 'timed out'}", "unreachable") from None
        connection = SignallingConnection(self, reader, writer, _plain(where[0]))
        call = H323Call(self, connection, setup, outbound=True, name=name or target.url.removeprefix("h323:"))
        call.admitted = word is not None
        connection.call = call
        try:
            await call.dial(conference)
        except DialOutRefused:
            writer.close()
            raise
        task = loop.create_task(connection.run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return call

    # -- signalling connections -------------------------------------------------------------------

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peer = writer.get_extra_info("peername") or ("?", 0)
        source = _plain(peer[0])
        h323 = self.config.h323
        if sum(self.connections.values()) >= h323.max_connections or self.connections.get(source, 0) >= h323.max_calls_per_source:
            log.warning("H.323 connection refused: too many", source=source)
            writer.close()
            return
        self.connections[source] = self.connections.get(source, 0) + 1
        connection = SignallingConnection(self, reader, writer, source)
        try:
            await connection.run()
        except Exception:
            log.exception("H.323 connection failed", source=source)
        finally:
            self.connections[source] -= 1
            if not self.connections[source]:
                del self.connections[source]
            if task is not None:
                self._tasks.discard(task)


def _plain(address: str) -> str:
    """An address as the directory writes it (IPv4-mapped IPv6 from a dual-stack socket as IPv4)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _RasProtocol(asyncio.DatagramProtocol):
    def __init__(self, service: H323Service) -> None:
        self.service = service

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            self.service.ras_datagram(data, (str(addr[0]), int(addr[1])))
        except Exception:
            log.exception("RAS datagram failed")


class SignallingConnection:
    """One TCP connection of H.225.0 call signalling: bytes in, CallChannel, events to its call."""

    def __init__(self, service: H323Service, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, source: str) -> None:
        self.service = service
        self.reader = reader
        self.writer = writer
        self.source = source
        self.channel = CallChannel(tunnelling=service.config.h323.tunnelling)
        self.call: H323Call | None = None

    def flush(self) -> None:
        data = self.channel.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        setup_by = loop.time() + self.service.config.h323.setup_timeout_s
        try:
            while not self.channel.closed:
                try:
                    if self.call is None:
                        data = await asyncio.wait_for(self.reader.read(65536), max(0.0, setup_by - loop.time()))
                    else:
                        data = await self.reader.read(65536)
                except (TimeoutError, ConnectionError):
                    data = b""
                if not data and self.call is None:
                    break
                events = self.channel.receive_data(data, loop.time())
                self.flush()
                for event in events:
                    self.dispatch(event)
            self.flush()
            if not self.writer.is_closing():
                await self.writer.drain()
        finally:
            self.writer.close()
            if self.call is not None:
                self.call.connection_lost()

    def dispatch(self, event: SignalEvent) -> None:
        if isinstance(event, SetupReceived) and self.call is None:
            self.call = H323Call(self.service, self, event.signal)
            self.call.task = asyncio.get_running_loop().create_task(self.call._supervised(self.call.start()))
        elif self.call is not None:
            self.call.on_signal(event)
        elif isinstance(event, ProtocolProblem):
            log.info("H.323 signalling problem", source=self.source, problem=event.what)


class H245Link:
    """H.245 on a TCP connection of its own (TPKT framed): the one we accepted or made."""

    def __init__(self, on_pdu: Any, on_closed: Any) -> None:
        self.on_pdu = on_pdu
        self.on_closed = on_closed
        self.writer: asyncio.StreamWriter | None = None
        self.server: asyncio.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: list[bytes] = []

    async def listen(self, host: str, ports: tuple[int, int] | None = None) -> int:
        """Listens for the far end's H.245 connection: on a port of `ports` (a firewall's range,
        tried from a random start), else on any free one."""
        if ports is None:
            self.server = await asyncio.start_server(self._accepted, host, 0)
            return int(self.server.sockets[0].getsockname()[1])
        low, high = ports
        start = secrets.randbelow(high - low + 1)
        for i in range(high - low + 1):
            port = low + (start + i) % (high - low + 1)
            try:
                self.server = await asyncio.start_server(self._accepted, host, port)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            return port
        raise OSError(errno.EADDRINUSE, f"no free H.245 port in {low}-{high}")

    async def connect(self, address: Address) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), 10)
        self._attach(reader, writer)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.writer is not None:
            writer.close()  # (one H.245 connection per call)
            return
        if self.server is not None:
            self.server.close()
        self._attach(reader, writer)

    def _attach(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self._task = asyncio.get_running_loop().create_task(self._read(reader))
        self.send(self._pending)
        self._pending = []

    async def _read(self, reader: asyncio.StreamReader) -> None:
        frames = q931.TpktReader()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                for pdu in frames.feed(data):
                    self.on_pdu(pdu)
        except (ConnectionError, q931.Q931Error) as exc:
            log.info("H.245 connection ended", why=str(exc))
        finally:
            self.on_closed()

    def send(self, pdus: list[bytes]) -> None:
        if self.writer is None:
            self._pending += pdus
            return
        if not self.writer.is_closing():
            self.writer.write(b"".join(q931.tpkt(pdu) for pdu in pdus))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.writer is not None:
            self.writer.close()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()


class H323Call(Call):
    """H.323's adapter of the shared call flow: one call, incoming (`setup` is the caller's) or a
    dial-out (`outbound`: `setup` is ours, sent by `dial`)."""

    def __init__(
        self,
        service: H323Service,
        connection: SignallingConnection,
        setup: Signal,
        *,
        outbound: bool = False,
        name: str | None = None,
    ) -> None:
        self.service = service
        self.connection = connection
        self.setup = setup
        config = service.config
        call_id = (setup.call_identifier or b"").hex()
        leg = RtpLeg(
            LegKind.H323_ROOM_SYSTEM,
            on_digit=self.on_digit,
            on_event=self.on_room_event,
            on_hang_up=self.on_room_hang_up,
            log_context={"call_id": call_id},
            latching=config.sip.rtp_latching,
            learn_s=config.sip.rtp_learn_s,
        )
        dialled = [a.value for a in setup.destination_aliases] or ([setup.called_number] if setup.called_number else [])
        super().__init__(
            service.context,
            leg,
            kind=LegKind.H323_ROOM_SYSTEM,
            name=(name or "")[:64] or shown_name(setup, connection.source),
            source=connection.source,
            outbound=outbound,
            log=log.bind(
                call_id=call_id, source=connection.source, dialled=dialled[:1], protocol="h323", direction="out" if outbound else "in"
            ),
        )
        self.leg: RtpLeg = leg
        self.dialled = dialled
        self.control = H245Control(service.capabilities)
        self.h245: H245Link | None = None
        self.theirs: Capabilities | None = None
        self.sending: dict[MediaKind, Channel] = {}  # our channels, once acknowledged (or by fastStart)
        self.receiving: dict[MediaKind, Channel] = {}  # the far end's channels we accepted
        self._opening: set[MediaKind] = set()  # our channels requested, not acknowledged yet
        self._send_to: dict[MediaKind, tuple[Address, Address | None]] = {}
        self._control_timer: asyncio.TimerHandle | None = None
        self._released = False
        self.admitted = False  # (the gatekeeper admitted it: a DisengageRequest when it ends)
        self.answered = False
        self._proposed: list[Channel] = []  # a dial-out's fastStart proposals
        self._ringing: asyncio.TimerHandle | None = None  # a dial-out's time to be answered

    @property
    def channel(self) -> CallChannel:
        return self.connection.channel

    # -- set-up ---------------------------------------------------------------------------------

    def _route(self) -> Conference | None:
        for alias in self.dialled:
            conference = self.context.directory.route(alias)
            if conference is not None:
                return conference
        return None

    def _known_system(self) -> RoomSystemConfig | None:
        """The directory's H.323 room system this call comes from: one whose address the call comes
        from (its URL's IP, or what its host name resolved to) and whose alias is one of the
        caller's (an entry without an alias: the address alone). An alias alone is easily forged:
        it never names a system, let alone grants trust."""
        directory = self.context.directory
        aliases = {a.value.lower() for a in self.setup.source_aliases[:16]}
        claimed = None
        for system in directory.systems.values():
            try:
                identity = directory.identity(system)
            except ValueError:
                continue
            if identity.kind is not IdentityKind.H323_ALIAS or (identity.user and identity.user.lower() not in aliases):
                continue
            if self.source in directory.system_addresses(system):
                return system
            if identity.user:  # (its alias named it: worth a warning, unlike any caller's address)
                claimed = claimed or system
        if claimed is not None:
            self.log.warning("caller claims a directory room system but calls from elsewhere", system=claimed.id)
        return None

    def _release(self, ending: Ending) -> None:
        """Refuses the call before answering it: ReleaseComplete with the ending's cause."""
        cause, reason, text = q931_cause(ending)
        self.log.info("call refused", cause=cause, reason=text)
        self._refused(cause, reason)

    def _refused(self, cause: int, reason: str | None) -> None:
        self.service.count_failure(cause)
        self.phase = "ended"
        self._released = True
        self.service.calls.discard(self)
        self._close_media()
        self.channel.release(cause, reason)
        self.connection.flush()

    async def start(self) -> None:
        service = self.service
        service.attempts += 1
        busy = service.admission.admit() if service.admission is not None else None
        if busy is not None:
            self.log.warning("call refused: overloaded", why=busy)
            self._release(Ending.OVERLOADED)
            return
        if len(service.calls) >= service.config.h323.max_calls:
            self._release(Ending.OVERLOADED)
            return
        service.calls.add(self)
        conference = self._route()
        system = self._known_system()
        if system is not None:
            self.name = system.name[:64]
            if conference is None and system.default_room:
                conference = self.context.directory.find(system.default_room)  # (it called the gateway, not a room)
            self.trusted = bool(system.trusted and conference is not None and conference.room.id == system.default_room)
            self.log = self.log.bind(system=system.id, trusted=self.trusted)
        if conference is None and not self.context.settings.menu:
            self._release(Ending.ROOM_NOT_FOUND)
            return
        if conference is not None:
            refused = self.door.before_answer(conference.room, self._caller(), trusted=self.trusted)
            if refused is not None and refused.ending is Ending.LOCKED_OUT:
                self.log.warning("call refused: source locked out after wrong PINs")
                self._refusal = Ending.LOCKED_OUT  # (answered, so that a person hears why)
            elif refused is not None:
                self._release(refused.ending)
                return
            if self.trusted:
                self.conference = conference
        word = await service.admit(self.setup, outbound=False)
        if isinstance(word, AdmissionRefused):
            self.log.info("call refused by the gatekeeper", reason=word.reason)
            self._refused(Cause.CALL_REJECTED, "noPermission")
            return
        self.admitted = word is not None
        try:
            await self._open_media()
        except OSError as exc:
            self.log.error("no RTP port for a call", error=str(exc))
            self._release(Ending.OVERLOADED)
            return
        answers = self._fast_start()
        h245_address = None
        if not self.channel.tunnelling:
            self.h245 = H245Link(self._on_h245_pdu, self._on_h245_closed)
            if self.setup.h245_address is not None:
                self._spawn(self._connect_h245(self.setup.h245_address))
            else:
                h245_address = (service.address, await self.h245.listen(service.config.h323.host, service.config.h323.h245_ports))
        if self.phase == "ended":  # (the caller gave up meanwhile)
            self._close_media()
            return
        self._first_room = conference
        self.phase = "answered"
        fields: dict[str, Any] = {"display_name": conference.room.name if conference is not None else None}
        if answers is not None:
            fields["fast_start"] = tuple(h245.fast_start_element(c) for c in answers) or None
            fields["fast_connect_refused"] = not answers
        if h245_address is not None:
            fields["h245_address"] = h245_address
        self.channel.connect(**{k: v for k, v in fields.items() if v is not None})
        self.connection.flush()
        self.answered = True
        self.log.info(
            "call answered",
            kind=self.kind.value,
            name=self.name,
            fast_start=bool(answers),
            tunnelling=self.channel.tunnelling,
            vendor=self.setup.vendor.product if self.setup.vendor else None,
        )
        self.control.start(self._now())
        self._flush_h245()
        self.leg.confirm()
        self.begin()

    async def _open_media(self) -> None:
        """The leg's sockets: audio, and video and content lines where we have them (OSError: none free)."""
        service, sip = self.service, self.service.config.sip
        host = service.config.h323.host
        await self.leg.open(host, sip.rtp_port_min, sip.rtp_port_max)
        if service.capabilities.video:
            await self.leg.open_video(StreamKind.MAIN, host, sip.rtp_port_min, sip.rtp_port_max)
        if service.capabilities.content:
            await self.leg.open_video(StreamKind.CONTENT, host, sip.rtp_port_min, sip.rtp_port_max)

    async def dial(self, conference: Conference) -> None:
        """Places the call (dial-out): our Setup, with fastStart proposals (every codec of ours, to
        send and to receive) and H.245 tunnelled where the callee takes it; it joins `conference`
        when answered."""
        service = self.service
        try:
            await self._open_media()
        except OSError as exc:
            self._close_media()
            raise DialOutRefused(f"no RTP port free: {exc}", "no_media_port") from None
        self.conference = self._first_room = conference
        self.phase = "answered"  # (the shared flow's word for "set up"; begin() follows the Connect)
        fast_start: tuple[bytes, ...] = ()
        if service.config.h323.fast_start:
            self._proposed = faststart.proposals(service.capabilities, self._addresses(), {"H264": H264_PT})
            fast_start = tuple(h245.fast_start_element(c) for c in self._proposed)
        self.setup = dataclasses.replace(self.setup, fast_start=fast_start, source_address=(service.address, service.port))
        self.channel.setup(self.setup, self._now())
        self.connection.flush()
        service.calls.add(self)
        deadline = self.channel.deadline  # (T303: some answer to the Setup, or the call is given up)
        if deadline is not None:
            self._ringing = asyncio.get_running_loop().call_at(deadline, self._no_response)

    def _no_response(self) -> None:
        for event in self.channel.timeout(self._now()):
            self.on_signal(event)
        self.connection.flush()

    def _not_answered(self) -> None:
        if self.phase == "answered" and not self.answered:
            self.log.info("dial-out not answered", after_s=round(_RING_S))
            self.service.count_failure(int(Cause.NO_ANSWER))
            self._hang_up_now(Cause.NO_ANSWER, None)

    def _answered_by_callee(self, signal: Signal) -> None:
        """Our dial-out is answered (Connect): H.245 starts (tunnelled, or on the connection the
        callee named), media may flow, and the callee enters the room it was invited to."""
        if self.phase != "answered" or self.answered:
            return
        self.answered = True
        if self._ringing is not None:
            self._ringing.cancel()
        self.log.info(
            "dial-out answered",
            name=self.name,
            tunnelling=self.channel.tunnelling,
            fast_start=bool(self.sending or self.receiving),
            vendor=signal.vendor.product if signal.vendor else None,
        )
        self._h245_to_callee()
        self.control.start(self._now())
        self._flush_h245()
        self.leg.confirm()
        self.begin()

    def _h245_to_callee(self) -> None:
        address = self.channel.peer_h245_address
        if not self.channel.tunnelling and self.h245 is None and address is not None:
            self.h245 = H245Link(self._on_h245_pdu, self._on_h245_closed)
            self._spawn(self._connect_h245(address))

    def _fast_start_accepted(self, answers: tuple[bytes, ...]) -> None:
        """The callee's fastStart answer to our proposals: what it took runs on the leg at once."""
        replies = []
        for element in answers[:16]:
            try:
                replies.append(h245.read_fast_start_element(element))
            except h245.H245Error as exc:
                self.log.debug("fastStart answer skipped", why=str(exc))
        agreement = faststart.accepted(self._proposed, replies)
        self.control.adopt([t.channel for t in agreement.transmit.values()], list(agreement.receive.values()))
        self._take(agreement)

    def _take(self, agreement: faststart.Agreement) -> None:
        for kind, theirs in agreement.receive.items():
            self.receiving[kind] = theirs
        for kind, transmit in agreement.transmit.items():
            self.sending[kind] = transmit.channel
            self._send_to[kind] = (transmit.media, transmit.control)
        for kind in set(agreement.transmit) | set(agreement.receive):
            self._apply(kind)

    def _fast_start(self) -> list[Channel] | None:
        """Our answer to the caller's fastStart proposals (None: it proposed none, or fastStart is
        off; []: none we take). What we take is applied to the leg at once."""
        if not self.setup.fast_start or not self.service.config.h323.fast_start:
            return None
        offered = []
        for element in self.setup.fast_start:
            try:
                offered.append(h245.read_fast_start_element(element))
            except h245.H245Error as exc:
                self.log.debug("fastStart proposal skipped", why=str(exc))
        agreement = faststart.answer(
            offered,
            self.service.capabilities,
            self._addresses(),
            prefer_ours=self.service.config.h323.prefer_our_codecs,
        )
        self.control.adopt([t.channel for t in agreement.transmit.values()], list(agreement.receive.values()))
        self._take(agreement)
        return agreement.answers

    def _addresses(self) -> dict[MediaKind, tuple[Address, Address]]:
        host = self.service.address
        out = {MediaKind.AUDIO: ((host, self.leg.local_port), (host, self.leg.local_port + 1))}
        for kind, line in _LINES.items():
            port = self.leg.video_port(line)
            if port is not None:
                out[kind] = ((host, port), (host, port + 1))
        return out

    # -- media ----------------------------------------------------------------------------------

    def _apply(self, kind: MediaKind) -> None:
        """Runs what is agreed for `kind` on the leg: what we send (codec, where to) and what we
        receive. Until we know where to send, the line only receives."""
        sending, receiving = self.sending.get(kind), self.receiving.get(kind)
        codec = sending.codec if sending is not None else receiving.codec if receiving is not None else None
        if codec is None:
            return
        media, control = self._send_to.get(kind, (("0.0.0.0", 0), None))
        control = control or (media[0], media[1] + 1)
        direction = "sendrecv" if sending is not None and receiving is not None else "sendonly" if sending is not None else "recvonly"
        if kind is MediaKind.AUDIO:
            audio, pt, clock = _AUDIO[codec.name]
            self.leg.apply(audio, pt, clock, media, control, telephone_event_pt=TELEPHONE_EVENT_PT, direction=direction)
            self.leg.set_idle(silence_payload(self.leg.audio_out_format))
            self.log.info("audio agreed", codec=codec.name, direction=direction)
        else:
            # What we send first (its payload type is ours); what the far end sends under its own
            # payload type too, so that both are taken (H.245 channels are one-way each).
            codecs = []
            if sending is not None:
                codecs.append(stream_codec(sending.codec, sending.payload_type or H264_PT))
            if receiving is not None and (sending is None or receiving.payload_type != sending.payload_type):
                codecs.append(stream_codec(receiving.codec, receiving.payload_type or H264_PT))
            self.leg.apply_video(
                _LINES[kind],
                tuple(codecs),
                media,
                control,
                direction=direction,
                ask_keyframe_by_signalling=functools.partial(self._ask_keyframe, kind),
            )
            what = "video agreed" if kind is MediaKind.VIDEO else "content agreed"
            self.log.info(what, codec=codec.name, h241_level=codec.level, direction=direction, pt=[c.payload_type for c in codecs])

    def _ask_keyframe(self, kind: MediaKind) -> None:
        theirs = self.receiving.get(kind)
        if theirs is not None and self.phase not in ("ending", "ended"):
            self.control.ask_keyframe(theirs.number)
            self._flush_h245()

    def _open_ours(self, kind: MediaKind) -> None:
        """Opens our channel for `kind` (H.245, not fastStart): the far end's own codec where it can
        take it back (one codec both ways), else our first choice it takes."""
        if kind in self.sending or kind in self._opening or self.theirs is None or self.phase in ("ending", "ended"):
            return
        theirs = self.theirs.codecs(kind)
        ours = self.service.capabilities.codecs(kind)
        if not theirs or not ours:
            if kind is MediaKind.AUDIO and self.theirs.other_audio:
                # (G.722.1 and Siren 14 are not ours: no maintained decoder in PyAV or elsewhere in Python)
                self.log.warning("no common audio codec: the room system takes only ones we lack", theirs=list(self.theirs.other_audio))
            return  # (it receives no such media, or we send none)
        names = {c.name for c in theirs}
        received = self.receiving.get(kind)
        choice = None
        if received is not None and received.codec.name in names:
            choice = next(c for c in theirs if c.name == received.codec.name)
        else:
            choice = next((t for o in ours for t in theirs if t.name == o.name), None)
        if choice is None:
            self.log.warning("no common codec to send", kind=kind.value, theirs=[c.name for c in theirs], unsupported=list(self.theirs.other_audio))
            return
        addresses = self._addresses()
        if kind not in addresses:
            return
        rtcp = addresses[kind][1]
        if kind is MediaKind.AUDIO:
            choice = Codec(choice.name, frames=20)
        pt = None if kind is MediaKind.AUDIO else H264_PT
        session: int = {MediaKind.AUDIO: h245.Session.AUDIO, MediaKind.VIDEO: h245.Session.VIDEO}.get(kind, h245.Session.CONTENT)
        if kind is MediaKind.CONTENT and not self.control.master:
            session = 0  # (a new session: the master assigns its number in the Ack)
        self._opening.add(kind)
        self.control.open_channel(session, choice, rtcp, pt, self._now())

    def _open_after_wait(self) -> None:
        """The capability exchange is done: our channels, audio at once (the far end's own channel
        decides its codec if it came first), video a moment later."""
        self._open_ours(MediaKind.AUDIO)
        self._flush_h245()
        asyncio.get_running_loop().call_later(_VIDEO_WAIT_S, self._open_video)

    def _open_video(self) -> None:
        self._open_ours(MediaKind.VIDEO)
        self._sync_content()
        self._flush_h245()

    # -- H.239 content and its presentation token -------------------------------------------------

    def _enter_meeting(self, participant_id: str, is_host: bool, greeting: tuple[Any, ...] = ()) -> None:
        super()._enter_meeting(participant_id, is_host, greeting)
        self._sync_content()  # (someone may present already)

    def _presenting(self) -> bool:
        room = self.conference.room if self.conference is not None else None
        return room is not None and room.presentation is not None and room.presentation.presenter == self.participant_id

    def _speaks_h239(self) -> bool:
        return self.theirs is not None and self.theirs.h239

    def _on_h239(self, message: H239Message) -> None:
        token = h239.read(message.kind, message.sub_message, message.parameters)
        if token is None:
            self.log.info("H.239 message not handled", kind=message.kind, sub_message=message.sub_message)
        elif token.what is h239.What.TOKEN_REQUEST:
            self._take_token(token.terminal_label, token.channel)
        elif token.what is h239.What.TOKEN_RELEASE:
            self._give_back_token()
        elif token.what is h239.What.FLOW_CONTROL_RELEASE_REQUEST:
            self.control.send_h239(*h239.flow_control_release_response(True, token.channel, token.bit_rate))
        else:
            self.log.info("H.239", message=token.what.name.lower(), acknowledged=token.acknowledged, channel=token.channel)

    def _take_token(self, label: int | None, channel: int | None) -> None:
        """The room system asks to present (its share button, or a content channel opened without
        H.239): the room's presentation floor decides, as for every other kind of participant."""
        conference, pid = self.conference, self.participant_id
        room = conference.room if conference is not None else None
        why = None
        if room is None or self.phase != "meeting" or pid not in room.participants:
            why = "not in the meeting"
        elif not room.may_present(pid):
            why = "only hosts present in this meeting"
        if self._speaks_h239():
            self.control.send_h239(*h239.token_response(why is None, label, channel))
        if why is not None or room is None:
            self.log.info("presentation token refused", why=why)
            return
        self.log.info("presentation token granted: presenting", channel=channel)
        if not self._presenting():
            room.start_presenting(pid, Content.SLIDES)  # (whoever presented is told: taken over)

    def _give_back_token(self) -> None:
        if self._presenting() and self.conference is not None:
            self.log.info("presentation token released: presentation stopped")
            self.conference.room.stop_presenting(by=self.participant_id, participant_id=self.participant_id)

    def _on_room_event(self, event: RoomEvent) -> None:
        if event.type not in ("presentation_started", "presentation_stopped") or self.phase != "meeting":
            return
        reason = str(event.data.get("reason", ""))
        if event.type == "presentation_stopped" and event.participant == self.participant_id and reason != "stopped":
            # The room took the token back (another presents, a host stopped it): the room system is
            # asked to give it up, which stops its content (H.239 clause 7: the MCU's request).
            if self._speaks_h239():
                theirs = self.receiving.get(MediaKind.CONTENT)
                self.control.send_h239(*h239.token_request(theirs.number if theirs else None, 1 + secrets.randbelow(127)))
            self.log.info("presentation token taken back", reason=reason)
        self._sync_content()
        self._flush_h245()

    def _sync_content(self) -> None:
        """Our presentation channel is open while someone else in the room presents and the room
        system takes H.239 content; otherwise it is closed (the room system shows its own or none)."""
        conference = self.conference
        presentation = conference.room.presentation if conference is not None else None
        want = (
            self.phase == "meeting"
            and presentation is not None
            and presentation.presenter != self.participant_id
            and self.theirs is not None
            and bool(self.theirs.content)
        )
        ours = self.sending.get(MediaKind.CONTENT)
        if want and ours is None:
            self._open_ours(MediaKind.CONTENT)
        elif not want and ours is not None:
            self.control.close_channel(ours.number)
            del self.sending[MediaKind.CONTENT]
            if self._speaks_h239():
                self.control.send_h239(*h239.token_release(ours.number))
            self.log.info("content channel closed", channel=ours.number)
            if MediaKind.CONTENT in self.receiving:
                self._apply(MediaKind.CONTENT)
            else:
                self._content_idle()

    def _content_opened(self, channel: Channel) -> None:
        """Our presentation channel is up: the room system hears that the token is ours (the room's),
        unless the presentation ended meanwhile (then it closes again)."""
        if self._speaks_h239():
            self.control.send_h239(*h239.token_owner(channel.number))
        self._sync_content()

    def _content_idle(self) -> None:
        """Neither side sends content: the line stays open, inactive (the room shows its
        presentation in this room system's composed picture meanwhile)."""
        if StreamKind.CONTENT in self.leg.video_streams and self.service.capabilities.content:
            codec = stream_codec(self.service.capabilities.content[0], H264_PT)
            self.leg.apply_video(StreamKind.CONTENT, (codec,), ("0.0.0.0", 0), ("0.0.0.0", 0), direction="inactive")

    # -- H.245 ----------------------------------------------------------------------------------

    async def _connect_h245(self, address: Address) -> None:
        assert self.h245 is not None
        try:
            await self.h245.connect(address)
        except (OSError, TimeoutError) as exc:
            self.log.warning("H.245 connection to the caller failed", error=str(exc))

    def _on_h245_pdu(self, pdu: bytes) -> None:
        try:
            self._on_control(self.control.receive(pdu, self._now()))
        except Exception:
            self.fail()

    def _on_h245_closed(self) -> None:
        if self.phase not in ("ending", "ended"):
            self.log.info("H.245 connection closed by the far end")

    def _flush_h245(self) -> None:
        pdus = self.control.pdus_to_send()
        if not pdus:
            return
        if self.channel.tunnelling:
            self.channel.send_h245(pdus)
            self.connection.flush()
        elif self.h245 is not None:
            self.h245.send(pdus)
        self._arm_control()

    def _arm_control(self) -> None:
        if self._control_timer is not None:
            self._control_timer.cancel()
            self._control_timer = None
        deadline = self.control.deadline
        if deadline is not None and self.phase not in ("ending", "ended"):
            self._control_timer = asyncio.get_running_loop().call_at(
                deadline, lambda: self._on_control(self.control.timeout(self._now()))
            )

    def _on_control(self, events: list[ControlEvent]) -> None:
        for event in events:
            if isinstance(event, CapabilitiesReceived):
                self.theirs = event.capabilities
                self.log.info(
                    "capabilities received",
                    audio=[c.name for c in event.capabilities.audio],
                    other_audio=list(event.capabilities.other_audio),
                    video=[f"{c.name}/{c.level}" for c in event.capabilities.video],
                    content=bool(event.capabilities.content),
                    h239=event.capabilities.h239,
                )
                self._open_after_wait()
            elif isinstance(event, ChannelOffered):
                self._channel_offered(event.channel)
            elif isinstance(event, ChannelEstablished):
                kind = event.channel.kind
                self._opening.discard(kind)
                if event.media is None:
                    continue
                self.sending[kind] = event.channel
                self._send_to[kind] = (event.media, event.control)
                self._apply(kind)
                if kind is MediaKind.CONTENT:
                    self._content_opened(event.channel)
            elif isinstance(event, ChannelRefused):
                self._opening.discard(event.channel.kind)
                self.log.info("our channel refused", kind=event.channel.kind.value, cause=event.cause)
            elif isinstance(event, ChannelClosed):
                self._channel_closed(event.number, event.incoming)
            elif isinstance(event, KeyframeRequested):
                for kind, line in _LINES.items():
                    ours = self.sending.get(kind)
                    if ours is not None and ours.number == event.number:
                        self.leg.keyframe_wanted(line)
            elif isinstance(event, H239Message):
                self._on_h239(event)
            elif isinstance(event, BitrateLimited):
                content = self.sending.get(MediaKind.CONTENT)
                if content is not None and content.number == event.number:
                    self.log.info("flow control on content", bps=event.bitrate)  # (the room's bitrate is the people's)
                elif self.conference is not None and self.participant_id and event.bitrate:
                    self.conference.limit_video_bitrate(self.participant_id, event.bitrate)
                self.log.info("flow control", channel=event.number, bps=event.bitrate)
            elif isinstance(event, UserInput):
                for key in _KEYS.findall(event.keys)[:16]:
                    self.on_digit(key, via="h245")
            elif isinstance(event, SessionEnded):
                self.log.info("H.245 session ended by the far end")
                self._hang_up_now(Cause.NORMAL, None)
            elif isinstance(event, MasterSlaveDetermined):
                self.log.info("master/slave determined", master=event.master)
            elif isinstance(event, ProcedureFailed):
                self.log.warning("H.245 procedure failed", what=event.what)
            elif isinstance(event, ControlProblem):
                self.log.info("H.245 problem", problem=event.what)
        self._flush_h245()

    def _channel_offered(self, channel: Channel) -> None:
        kind = channel.kind
        addresses = self._addresses()
        if kind not in addresses or not any(c.name == channel.codec.name for c in self.service.capabilities.codecs(kind)):
            self.control.reject_channel(channel)
            self.log.info("channel refused", kind=kind.value, codec=channel.codec.name)
            return
        rtp, rtcp = addresses[kind]
        self.control.accept_channel(channel, rtp, rtcp)
        self.receiving[kind] = channel
        if kind is MediaKind.CONTENT and self.theirs is not None and not self.theirs.h239:
            self._take_token(None, channel.number)  # (no H.239 control: opening the channel is the request)
        ours = self.sending.get(kind)
        if kind is MediaKind.AUDIO and ours is not None and ours.codec.name != channel.codec.name:
            # One codec both ways: ours follows theirs when they can take it.
            if self.theirs is not None and any(c.name == channel.codec.name for c in self.theirs.audio):
                self.control.close_channel(ours.number)
                del self.sending[kind]
                self._open_ours(kind)
        self._apply(kind)

    def _channel_closed(self, number: int, incoming: bool) -> None:
        table = self.receiving if incoming else self.sending
        for kind, channel in list(table.items()):
            if channel.number == number:
                del table[kind]
                self.log.info("channel closed", kind=kind.value, theirs=incoming)
                if kind is MediaKind.CONTENT and incoming:
                    self._give_back_token()  # (the presenter's channel closed: it stopped)
                if kind is MediaKind.VIDEO and not self.sending.get(kind) and not self.receiving.get(kind):
                    self.leg.remove_video(StreamKind.MAIN)
                elif kind is MediaKind.CONTENT and not self.sending.get(kind) and not self.receiving.get(kind):
                    self._content_idle()
                else:
                    self._apply(kind)

    # -- signalling events ------------------------------------------------------------------------

    def on_signal(self, event: SignalEvent) -> None:
        try:
            if isinstance(event, H245Received):
                for pdu in event.pdus:
                    self._on_control(self.control.receive(pdu, self._now()))
            elif isinstance(event, FacilityReceived):
                if event.signal.facility_reason == "startH245" and event.signal.h245_address and self.h245 is None:
                    self.h245 = H245Link(self._on_h245_pdu, self._on_h245_closed)
                    self._spawn(self._connect_h245(event.signal.h245_address))
                    self._flush_h245()
            elif isinstance(event, Released):
                self.log.info("call released", cause=event.cause, reason=event.reason, by_peer=event.by_peer, phase=self.phase)
                if self.outbound and not self.answered:
                    self.log.warning("dial-out failed", cause=event.cause, reason=event.reason)
                    self.service.count_failure(event.cause or int(Cause.TEMPORARY_FAILURE))
                if event.by_peer or self.outbound:
                    self.release()
            elif isinstance(event, ProtocolProblem):
                self.log.info("H.225.0 problem", problem=event.what)
            elif isinstance(event, FastStartAnswered):
                if self.outbound and not event.refused:
                    self._fast_start_accepted(event.channels)
            elif isinstance(event, Progressed):
                if self.outbound:
                    self.log.info("dial-out progress", message=event.signal.body)
                    self._h245_to_callee()
                    if self._ringing is not None:  # (it answered: now it may ring for a while)
                        self._ringing.cancel()
                        self._ringing = asyncio.get_running_loop().call_later(_RING_S, self._not_answered)
            elif isinstance(event, Connected):
                if self.outbound:
                    self._answered_by_callee(event.signal)
        except Exception:
            self.fail()

    def connection_lost(self) -> None:
        if self.phase != "ended":
            self.log.info("signalling connection closed", phase=self.phase)
            self.release()

    # -- endings --------------------------------------------------------------------------------

    def _ending_terms(self, ending: Ending) -> tuple[int, str]:
        cause, _, text = q931_cause(ending)
        return cause, text

    def _hang_up(self, ending: Ending) -> None:
        cause, reason, _ = q931_cause(ending)
        self._hang_up_now(cause, reason)

    def _hang_up_now(self, cause: int, reason: str | None) -> None:
        """endSessionCommand, then ReleaseComplete with the cause; media closed."""
        self.control.end_session()
        self._flush_h245()
        self.channel.release(cause, reason)
        self.connection.flush()
        self.release()

    def _count_failure(self, code: str) -> None:
        self.service.count_failure(int(Cause.TEMPORARY_FAILURE))

    def _failed(self, phase: str) -> None:
        self._close_media()
        self.channel.release(Cause.TEMPORARY_FAILURE, "undefinedReason")
        self.connection.flush()
        self.service.calls.discard(self)

    def shut_down(self) -> None:
        """The gateway stops now: ReleaseComplete without a prompt."""
        if self.phase != "ended":
            self.phase = "ending"
            self._hang_up(Ending.SHUTDOWN)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        super().release()
        self.service.calls.discard(self)
        self.service.disengage(self)
        if not self.channel.closed:
            self.channel.release(Cause.NORMAL)
            self.connection.flush()
        if not self.connection.writer.is_closing():
            self.connection.writer.close()

    def _close_media(self) -> None:
        self.leg.close()
        if self._ringing is not None:
            self._ringing.cancel()
        if self.h245 is not None:
            self.h245.close()
        if self._control_timer is not None:
            self._control_timer.cancel()
