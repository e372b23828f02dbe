"""The asyncio adapter of the SIP user agent: UDP, TCP and TLS listeners on the configured address,
messages framed and handed to the sans-IO `UserAgent`. As aioquic's asyncio protocol does, it
pulls from the core after every call into it (a message, a command, a timer): it writes out
`datagrams_to_send`, hands each `next_event` to the gateway's handler, and re-arms one loop timer
from `get_timer`. One port serves UDP and TCP (RFC 3261 18); TLS has its own."""

from __future__ import annotations

import asyncio
import errno
import itertools
import ssl
from collections.abc import Callable
from typing import Any, cast

import structlog

from gateway.config import SipConfig
from gateway.sip.digest import DigestClient
from gateway.sip.message import SipMessageError, StreamFramer
from gateway.sip.useragent import Event, Peer, UserAgent

log = structlog.get_logger(__name__)


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

    def __init__(self, config: SipConfig, on_event: Callable[[Event], None]) -> None:
        self.config = config
        self._on_event = on_event
        self.ports: dict[str, int] = {}
        self.ua: UserAgent | None = None
        self._udp: _Datagrams | None = None
        self._servers: list[asyncio.Server] = []
        self._connections: dict[int, asyncio.StreamWriter] = {}
        self._per_address: dict[str, int] = {}
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
        for attempt in range(1 if config.port else 20):
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
            server = await asyncio.start_server(
                lambda r, w: self._serve(r, w, "tls"), config.host, config.tls.port, ssl=context
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
            _, self._udp = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), local_addr=(config.host, port)
            )
            assert self._udp.transport is not None
            port = int(self._udp.transport.get_extra_info("sockname")[1])
            self.ports["udp"] = port
        if "tcp" in config.transports:
            server = await asyncio.start_server(
                lambda r, w: self._serve(r, w, "tcp"), config.host, port, limit=2**17
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
        for server in self._servers:
            server.close()
            await server.wait_closed()

    # -- in and out -----------------------------------------------------------------------------

    def received(self, data: bytes, peer: Peer) -> None:
        assert self.ua is not None and self._loop is not None
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
        framer = StreamFramer()
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(65536), config.tcp_idle_s)
                except TimeoutError:
                    if self._carries_a_call(number):
                        continue
                    log.info("SIP connection closed: idle", source=source, transport=kind, idle_s=config.tcp_idle_s)
                    break
                if not data:
                    break
                for message in framer.feed(data):
                    self.received(message, peer)
        except SipMessageError as exc:
            log.info("SIP stream closed: unframeable data", reason=str(exc), source=source, transport=kind)
        except (ConnectionError, ssl.SSLError) as exc:
            log.debug("SIP connection lost", error=str(exc), source=source)
        finally:
            self._connections.pop(number, None)
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
        writer = self._connections.get(peer.connection or -1)
        if writer is None or writer.is_closing():
            log.info("SIP connection gone; message not sent", destination=peer.address[0], transport=peer.transport)
            return
        writer.write(data)

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
                        log.exception("SIP event could not be handled", event=type(event).__name__)
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
    ) -> int:
        assert self.ua is not None
        call = self.ua.invite(target, peer, sdp, display_name, credentials, from_uri)
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
