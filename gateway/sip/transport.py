"""The asyncio adapter of the SIP user agent: UDP, TCP and TLS listeners on the configured address,
messages framed and handed to the sans-IO `UserAgent`. As aioquic's asyncio protocol does, it
pulls from the core after every call into it (a message, a command, a timer): it writes out
`datagrams_to_send`, hands each `next_event` to the gateway's handler, and re-arms one loop timer
from `get_timer`. One port serves UDP and TCP (RFC 3261 18); TLS has its own.

Connections go both ways. A destination the gateway reaches over TCP or TLS (a trunk's registrar
or outbound proxy, declared with `reach`) gets one connection, opened when something is to be sent
there and none is up (TLS: the far end's certificate checked), kept for as long as it lasts and
used for everything between the two (RFC 5923-like reuse: our requests, their answers, the far
end's requests and our answers); messages wait while it opens, and when it cannot be opened the
user agent is told at once (`transport_error`: a 503 for what waits). Such a connection counts in
the same limits as accepted ones and shares their read loop and framing, but is never closed for
idleness: it is the trunk's flow. RFC 5626 keep-alives on any stream: a CRLF ping we receive is
answered with a CRLF pong; `ping` sends ours, and a pong, or the end of such a connection, is a
`StreamEvent` for the trunks.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import structlog

from gateway.config import SipConfig
from gateway.sip.digest import DigestClient
from gateway.sip.message import SipMessageError, StreamFramer
from gateway.sip.useragent import Event, Peer, UserAgent

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT_S = 10.0  # an outgoing connection (TCP handshake, TLS handshake) is up within this, or failed
MAX_QUEUED = 32  # messages waiting for a connection being opened (more are dropped)
Address = tuple[str, int]


@dataclass(frozen=True)
class StreamEvent:
    """About a connection the gateway opened to a destination: "pong" (an RFC 5626 CRLF pong came),
    "closed" (it ended, by either side), "failed" (it could not be opened; `reason` says why)."""

    kind: Literal["pong", "closed", "failed"]
    transport: str
    address: Address
    reason: str = ""


@dataclass(eq=False)
class _Destination:
    """Where the gateway opens connections to: how (TLS), the one open, what waits for it."""

    transport: str
    address: Address
    ssl_context: ssl.SSLContext | None
    server_name: str | None
    connection: int | None = None
    queued: list[bytes] = field(default_factory=list)
    connecting: bool = False


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self._owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._owner.received(data, Peer("udp", (addr[0], addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP UDP error", error=str(exc))


class SipTransport:
    """Owns the sockets and the user agent; the gateway talks to it as to the SIP stack."""

    def __init__(
        self, config: SipConfig, on_event: Callable[[Event], None], inherited: dict[str, socket.socket] | None = None
    ) -> None:
        self.config = config
        self._on_event = on_event
        # Sockets a supervisor bound for its workers (gateway/workers.py): udp, tcp, tls
        self._inherited = inherited or {}
        self.ports: dict[str, int] = {}
        self.ua: UserAgent | None = None
        self._udp: _Datagrams | None = None
        self._servers: list[asyncio.Server] = []
        self._connections: dict[int, asyncio.StreamWriter] = {}
        self._per_address: dict[str, int] = {}
        self._destinations: dict[tuple[str, Address], _Destination] = {}
        self._outgoing: set[int] = set()  # connections we opened (never closed for idleness)
        self._connecting = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.stream_listeners: list[Callable[[StreamEvent], None]] = []  # (the trunks)
        self._failures = 0
        self._connection_ids = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pumping = False

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> dict[str, int]:
        loop = self._loop = asyncio.get_running_loop()
        config = self.config
        # With port 0 UDP picks a free port and TCP must take the same number, which an outgoing TCP
        # connection of another program may hold: then pick another pair.
        for attempt in range(1 if config.port or self._inherited else 20):
            try:
                await self._bind_udp_and_tcp(loop, config.port)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or attempt == 19 or config.port:
                    raise
                self._close_bound()
        if config.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(config.tls.cert), str(config.tls.key))
            tls = self._inherited.get("tls")
            server = await asyncio.start_server(
                lambda r, w: self._serve(r, w, "tls"),
                *((None, None) if tls else (config.host, config.tls.port)),
                ssl=context,
                sock=tls,
            )
            self._servers.append(server)
            self.ports["tls"] = int(server.sockets[0].getsockname()[1])
        local = {name: (config.host, number) for name, number in self.ports.items()}
        self.ua = UserAgent(
            local=local,
            public_address=config.public_address,
            user_agent=config.user_agent,
            max_calls=config.max_calls,
            max_transactions=config.max_transactions,
            session_expires_s=config.session_expires_s,
            min_se_s=config.min_session_expires_s,
        )
        return self.ports

    async def _bind_udp_and_tcp(self, loop: asyncio.AbstractEventLoop, port: int) -> None:
        config = self.config
        if "udp" in config.transports:
            udp = self._inherited.get("udp")
            _, self._udp = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), **({"sock": udp} if udp else {"local_addr": (config.host, port)})
            )
            assert self._udp.transport is not None
            port = int(self._udp.transport.get_extra_info("sockname")[1])
            self.ports["udp"] = port
        if "tcp" in config.transports:
            tcp = self._inherited.get("tcp")
            server = await asyncio.start_server(
                lambda r, w: self._serve(r, w, "tcp"), *((None, None) if tcp else (config.host, port)), limit=2**17, sock=tcp
            )
            self._servers.append(server)
            self.ports["tcp"] = int(server.sockets[0].getsockname()[1])

    def _close_bound(self) -> None:
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()
        self._udp = None
        for server in self._servers:
            server.close()
        self._servers.clear()
        self.ports.clear()

    async def stop(self) -> None:
        self._stopping = True
        if self.ua is not None:
            self.ua.close()
            self._pump()
        await asyncio.sleep(0.05)  # the BYEs out
        if self._timer is not None:
            self._timer.cancel()
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()
        for writer in list(self._connections.values()):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
        for server in self._servers:
            server.close()
            await server.wait_closed()

    # -- in and out -----------------------------------------------------------------------------

    def received(self, data: bytes, peer: Peer) -> None:
        if self.ua is None or self._loop is None:
            # Before the user agent exists: a restarted worker's inherited socket may hold what came
            # while it was away. Its senders send requests again (UDP), so they are dropped.
            return
        try:
            self.ua.receive(data, peer, self._loop.time())
        except Exception:
            # A bug met by one message must cost that message only, never the listener or the loop.
            self._failures += 1
            if self._failures <= 20 or self._failures % 1000 == 0:
                log.exception("SIP message could not be handled", source=peer.address[0], transport=peer.transport)
        self._pump()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, kind: str) -> None:
        config = self.config
        address = writer.get_extra_info("peername")
        source = str(address[0])
        if len(self._connections) >= config.tcp_max_connections or self._per_address.get(source, 0) >= config.tcp_max_per_address:
            log.warning("SIP connection refused: too many connections", source=source, transport=kind)
            writer.close()
            return
        number = next(self._connection_ids)
        peer = Peer(kind, (address[0], address[1]), number)
        self._connections[number] = writer
        self._per_address[source] = self._per_address.get(source, 0) + 1
        log.debug("SIP connection accepted", source=source, port=address[1], transport=kind, connection=number)
        await self._read(reader, writer, peer)

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer) -> None:
        """A connection's life: its messages framed and handed to the core, RFC 5626 keep-alives
        answered (ping) or reported (pong, on ours), closed when idle (not ours) or unframeable."""
        config = self.config
        kind, source, number = peer.transport, peer.address[0], peer.connection or 0
        outgoing = number in self._outgoing
        framer = StreamFramer()
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(65536), config.tcp_idle_s)
                except TimeoutError:
                    if outgoing or self._carries_a_call(number):
                        continue
                    log.info("SIP connection closed: idle", source=source, transport=kind, idle_s=config.tcp_idle_s)
                    break
                if not data:
                    break
                for message in framer.feed(data):
                    self.received(message, peer)
                pings, pongs = framer.take_keepalives()
                if pings and not writer.is_closing():
                    writer.write(b"\r\n")  # (one pong for what came at once: never more than was sent)
                if pongs and outgoing:
                    self._tell(StreamEvent("pong", kind, peer.address), number)
        except SipMessageError as exc:
            log.info("SIP stream closed: unframeable data", reason=str(exc), source=source, transport=kind)
        except (ConnectionError, ssl.SSLError) as exc:
            log.debug("SIP connection lost", error=str(exc), source=source)
        finally:
            self._connections.pop(number, None)
            self._outgoing.discard(number)
            left = self._per_address.get(source, 1) - 1
            if left > 0:
                self._per_address[source] = left
            else:
                self._per_address.pop(source, None)
            writer.close()

    def _carries_a_call(self, connection: int) -> bool:
        return self.ua is not None and any(call.peer.connection == connection for call in self.ua.calls.values())

    def _send(self, data: bytes, peer: Peer) -> None:
        if peer.transport == "udp":
            if self._udp is not None and self._udp.transport is not None:
                self._udp.transport.sendto(data, peer.address)
            return
        writer = self._connections.get(peer.connection) if peer.connection is not None else None
        if writer is not None and not writer.is_closing():
            writer.write(data)
            return
        destination = self._destinations.get((peer.transport, peer.address))
        if destination is None:
            # (a connection the far end opened, now gone: its source port is no place to connect to)
            log.info("SIP connection gone; message not sent", destination=peer.address[0], transport=peer.transport)
            return
        self._send_to(destination, data)

    # -- connections we open ----------------------------------------------------------------------

    def reach(
        self,
        transport: str,
        address: Address,
        *,
        server_name: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        route: str | None = None,
    ) -> Peer:
        """Declares a destination (a trunk's registrar or outbound proxy) and returns the Peer to send
        to it: over tcp/tls, what is sent there goes over the connection open to it, one being opened
        when none is (TLS: with `ssl_context`, the default one when None, its certificate checked
        against `server_name`, else the address). `route`: the loose Route of an outbound proxy,
        carried by the requests outside dialogs sent there (None: none)."""
        assert self.ua is not None
        key = (transport, address)
        if route is None:
            self.ua.preloaded_routes.pop(key, None)
        else:
            self.ua.preloaded_routes[key] = route
        if transport != "udp":
            if transport == "tls" and ssl_context is None:
                ssl_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
            destination = self._destinations.get(key)
            if destination is None:
                self._destinations[key] = _Destination(transport, address, ssl_context, server_name)
            else:
                destination.ssl_context, destination.server_name = ssl_context, server_name
        return Peer(transport, address)

    def ping(self, transport: str, address: Address) -> bool:
        """An RFC 5626 CRLF ping on the connection open to a destination; False when none is open."""
        writer = self._flow(transport, address)
        if writer is None:
            return False
        writer.write(b"\r\n\r\n")
        return True

    def close_flow(self, transport: str, address: Address) -> None:
        """Closes the connection open to a destination (it failed: the next message opens another)."""
        destination = self._destinations.get((transport, address))
        writer = self._flow(transport, address)
        if destination is not None:
            destination.connection = None
        if writer is not None:
            log.info("SIP connection closed: keep-alive failed", destination=_shown(address), transport=transport)
            writer.close()

    def _flow(self, transport: str, address: Address) -> asyncio.StreamWriter | None:
        destination = self._destinations.get((transport, address))
        if destination is None or destination.connection is None:
            return None
        writer = self._connections.get(destination.connection)
        return writer if writer is not None and not writer.is_closing() else None

    def _send_to(self, destination: _Destination, data: bytes) -> None:
        writer = self._connections.get(destination.connection) if destination.connection is not None else None
        if writer is not None and not writer.is_closing():
            writer.write(data)
            return
        if len(destination.queued) >= MAX_QUEUED:
            log.warning("SIP connection not up yet; message dropped", destination=_shown(destination.address), transport=destination.transport)
            return
        destination.queued.append(data)
        if not destination.connecting and self._loop is not None and not self._stopping:
            destination.connecting = True
            task = self._loop.create_task(self._connect(destination))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _connect(self, destination: _Destination) -> None:
        """Opens the connection to `destination`, sends what waits, then reads it until it ends."""
        config = self.config
        kind, (host, port) = destination.transport, destination.address
        tls = kind == "tls"
        try:
            if len(self._connections) + self._connecting >= config.tcp_max_connections or self._per_address.get(host, 0) >= config.tcp_max_per_address:
                raise ConnectionError("too many SIP connections")
            self._connecting += 1
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    reader, writer = await asyncio.open_connection(
                        host,
                        port,
                        ssl=destination.ssl_context if tls else None,
                        server_hostname=(destination.server_name or host) if tls else None,
                        local_addr=self._local_addr(),
                        limit=2**17,
                    )
            finally:
                self._connecting -= 1
        except (OSError, TimeoutError) as exc:  # (ssl.SSLError, ConnectionError: OSErrors)
            destination.connecting = False
            dropped, destination.queued = len(destination.queued), []
            reason = _failure(exc)
            log.warning("SIP connection failed", destination=_shown(destination.address), transport=kind, reason=reason, dropped=dropped)
            self._transport_error(Peer(kind, destination.address), f"{kind} connection to {_shown(destination.address)} failed: {reason}")
            self._tell(StreamEvent("failed", kind, destination.address, reason))
            return
        number = next(self._connection_ids)
        self._connections[number] = writer
        self._outgoing.add(number)
        self._per_address[host] = self._per_address.get(host, 0) + 1
        destination.connection, destination.connecting = number, False
        log.info("SIP connection opened", destination=_shown(destination.address), transport=kind, connection=number)
        queued, destination.queued = destination.queued, []
        for data in queued:
            writer.write(data)
        await self._read(reader, writer, Peer(kind, destination.address, number))
        if destination.connection == number:  # (the destination's flow ended, not one replaced already)
            destination.connection = None
            if not self._stopping:
                log.info("SIP connection ended", destination=_shown(destination.address), transport=kind, connection=number)
                # Requests still waiting for an answer on it get none (answers come on the same
                # connection): they fail now, not at Timer F (a REGISTER sent as a restarting
                # registrar reset the connection waited 32 s)
                self._transport_error(Peer(kind, destination.address), f"{kind} connection to {_shown(destination.address)} closed")
                self._tell(StreamEvent("closed", kind, destination.address))

    def _local_addr(self) -> tuple[str, int] | None:
        """Connections leave from the configured address (none when listening on all of them)."""
        host = self.config.host
        return None if host in ("0.0.0.0", "::", "") else (host, 0)

    def _transport_error(self, peer: Peer, reason: str) -> None:
        if self.ua is None or self._loop is None:
            return
        self.ua.transport_error(peer, reason, self._loop.time())
        self._pump()

    def _tell(self, event: StreamEvent, connection: int | None = None) -> None:
        if self._stopping:
            return
        if connection is not None:  # (a pong counts only on the destination's connection in use)
            destination = self._destinations.get((event.transport, event.address))
            if destination is None or destination.connection != connection:
                return
        for listener in self.stream_listeners:
            try:
                listener(event)
            except Exception:
                log.exception("SIP stream listener failed", event=event.kind)

    def _pump(self) -> None:
        """After every call into the core: what it has to send goes out, what happened goes to the
        gateway (whose commands may add more of both: pulled in the same loop), and the loop timer
        is set to the core's next one."""
        ua, loop = self.ua, self._loop
        if ua is None or loop is None or self._pumping:
            return  # (a command given while events are handed out: the running pump pulls after it)
        self._pumping = True
        try:
            while True:
                for data, peer in ua.datagrams_to_send(loop.time()):
                    self._send(data, peer)
                event = ua.next_event()
                if event is None:
                    break
                try:
                    self._on_event(event)
                except Exception:
                    self._failures += 1
                    if self._failures <= 20 or self._failures % 1000 == 0:
                        log.exception("SIP event could not be handled", kind=type(event).__name__)
        finally:
            self._pumping = False
        self._arm()

    def _arm(self) -> None:
        """Wakes the loop at the user agent's next timer."""
        if self.ua is None or self._loop is None:
            return
        deadline = self.ua.get_timer()
        if self._timer is not None:
            if deadline is not None and abs(self._timer.when() - deadline) < 0.001:
                return
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self.ua is not None and self._loop is not None:
            self.ua.handle_timer(self._loop.time())
        self._pump()

    # -- commands (the SIP stack's interface for the gateway); each pulls from the core after ----

    def answer(self, call: int, sdp: str | None) -> None:
        assert self.ua is not None
        self.ua.answer(call, sdp)
        self._pump()

    def reject(
        self,
        call: int,
        status: int,
        reason: str | None = None,
        retry_after_s: int | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        assert self.ua is not None
        self.ua.reject(call, status, reason, retry_after_s, headers)
        self._pump()

    def hang_up(self, call: int, cause: tuple[int, str] | None = None) -> None:
        assert self.ua is not None
        self.ua.hang_up(call, cause)
        self._pump()

    def accept_offer(self, call: int, sdp: str | None) -> None:
        assert self.ua is not None
        self.ua.accept_offer(call, sdp)
        self._pump()

    def refuse_offer(self, call: int, status: int = 488, reason: str = "Not Acceptable Here") -> None:
        assert self.ua is not None
        self.ua.refuse_offer(call, status, reason)
        self._pump()

    def send_info(self, call: int, body: str, content_type: str) -> None:
        assert self.ua is not None
        self.ua.send_info(call, body, content_type)
        self._pump()

    def invite(
        self,
        target: str,
        peer: Peer,
        sdp: str,
        display_name: str = "",
        credentials: DigestClient | None = None,
        from_uri: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> int:
        assert self.ua is not None
        call = self.ua.invite(target, peer, sdp, display_name, credentials, from_uri, headers)
        self._pump()
        return call

    def request(self, method: str, uri: str, peer: Peer, headers: list[tuple[str, str]]) -> str:
        """A request outside calls (REGISTER, OPTIONS); its answer comes as ResponseReceived."""
        assert self.ua is not None
        branch = self.ua.request(method, uri, peer, headers)
        self._pump()
        return branch

    @property
    def active_calls(self) -> int:
        return len(self.ua.calls) if self.ua is not None else 0


def _shown(address: Address) -> str:
    return f"[{address[0]}]:{address[1]}" if ":" in address[0] else f"{address[0]}:{address[1]}"


def _failure(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"not up within {CONNECT_TIMEOUT_S:g} s"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not accepted: {exc.verify_message or exc.reason}"[:200]
    return (str(exc) or type(exc).__name__)[:200]
