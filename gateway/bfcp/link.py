"""One call's BFCP stream: the thin asyncio adapter around `FloorServer` (the gateway serves the
floor to a room system) or `FloorClient` (the far end is an MCU that serves it), over TCP (a listener of the call's own, or a connection we open when the room system's SDP says it
listens: `a=setup:passive`) or UDP (a socket of the call's own).

    link = FloorLink("tcp", on_event, log)
    port = await link.open(host, port_min, port_max)       # before the SDP answer names it
    link.start(conference_id, user_id, floor_id, version,  # once the answer is sent
               remote=(address, port), connect=False, allowed={address, signalling_source}, server=True)
    link.granted(request_id) / link.denied(...) / link.revoked(...)   # as server: the call layer's decisions
    link.request() / link.release()                                   # as client: our room presents or stopped
    link.close()

BFCP comes from the internet like RTP: only the addresses the signalling named (the BFCP line's
connection address, the SIP source) may connect or send; one TCP connection at a time; a message
longer than `MAX_MESSAGE` closes the connection (TCP framing cannot resynchronise). A TCP
connection that ends gives the floor back (`FloorReleased`); a UDP client has no connection to end,
its call's end does it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import secrets
import socket
from collections.abc import Callable
from typing import Any

import structlog

from gateway.bfcp import client as floor_client
from gateway.bfcp.client import FloorClient
from gateway.bfcp.message import MAX_MESSAGE, message_length
from gateway.bfcp.server import Event, FloorReleased, FloorServer

LinkEvent = Event | floor_client.Event

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT_S = 5.0
Address = tuple[str, int]


def bind_port(host: str, port_min: int, port_max: int, kind: socket.SocketKind) -> socket.socket:
    """A socket of `kind` (TCP or UDP) bound to a free port of the range, from a random start."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    count = port_max - port_min + 1
    start = secrets.randbelow(max(count, 1))
    for i in range(count):
        sock = socket.socket(family, kind)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port_min + (start + i) % count))
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        sock.setblocking(False)
        return sock
    raise OSError(errno.EADDRINUSE, f"no free port in {port_min}-{port_max}")


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, link: FloorLink) -> None:
        self.link = link

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.link._on_datagram(data, (addr[0], addr[1]))


class FloorLink:
    def __init__(self, transport: str, on_event: Callable[[LinkEvent], None], log_context: dict[str, Any] | None = None) -> None:
        if transport not in ("tcp", "udp"):
            raise ValueError(f"BFCP over {transport} is not served")
        self.transport = transport
        self._on_event = on_event
        self._log = log.bind(bfcp=transport, **(log_context or {}))
        self.core: FloorServer | FloorClient | None = None
        self.port = 0
        self._allowed: set[str] = set()
        self._remote: Address | None = None  # where what the server starts goes (UDP)
        self._listener: asyncio.base_events.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._writer: asyncio.StreamWriter | None = None  # the one TCP connection
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self.messages_in = 0
        self.messages_refused = 0  # from an address the signalling did not name

    # -- set-up -------------------------------------------------------------------------------------

    async def open(self, host: str, port_min: int, port_max: int) -> int:
        """Binds the TCP listener or the UDP socket in the media port range; returns its port."""
        loop = asyncio.get_running_loop()
        if self.transport == "tcp":
            sock = bind_port(host, port_min, port_max, socket.SOCK_STREAM)
            self._listener = await asyncio.start_server(self._accepted, sock=sock, limit=MAX_MESSAGE)
        else:
            sock = bind_port(host, port_min, port_max, socket.SOCK_DGRAM)
            self._udp, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(self), sock=sock)
        self.port = int(sock.getsockname()[1])
        return self.port

    def start(
        self,
        conference_id: int,
        user_id: int,
        floor_id: int,
        version: int,
        *,
        remote: Address,
        connect: bool,
        allowed: set[str],
        server: bool = True,
    ) -> None:
        """What the SDP agreed (first or again): the floor server (or client) for it, and over TCP
        with `connect` (the far end listens) our connection to `remote`."""
        self._allowed = set(allowed)
        self._remote = remote
        core = self.core
        kind = FloorServer if server else FloorClient
        if not isinstance(core, kind) or (core.conference_id, core.user_id, core.floor_id, core.version) != (
            conference_id, user_id, floor_id, version,
        ):  # fmt: skip
            self._give_back()
            self.core = kind(conference_id, user_id, floor_id, version=version, transport=self.transport)
            if isinstance(self.core, FloorClient) and (self.transport == "udp" or self._writer is not None):
                self.core.start(asyncio.get_running_loop().time())  # (UDP, or the connection is there)
                self._flush()
        if connect and self.transport == "tcp" and self._writer is None:
            self._spawn(self._connect(remote))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the call layer's decisions -----------------------------------------------------------------

    @property
    def server(self) -> FloorServer | None:
        return self.core if isinstance(self.core, FloorServer) else None

    @property
    def client(self) -> FloorClient | None:
        return self.core if isinstance(self.core, FloorClient) else None

    def granted(self, request_id: int) -> None:
        if self.server is not None:
            self.server.granted(request_id)
            self._flush()

    def denied(self, request_id: int, why: str = "") -> None:
        if self.server is not None:
            self.server.denied(request_id, why)
            self._flush()

    def revoked(self, why: str = "") -> None:
        """The room took the floor from this room system (another presenter, a host)."""
        if self.server is not None and self.server.holder is not None:
            self.server.revoked(why=why)
            self._flush()

    def held_elsewhere(self, name: str | None) -> None:
        """As server: someone else of the room presents (their name), or nobody does (None); a room
        system that asked for the floor's status hears it."""
        if self.server is not None:
            self.server.held_elsewhere(name)
            self._flush()

    def request(self) -> None:
        """As client: someone of our room presents, the far end should show it."""
        if self.client is not None:
            self.client.request(asyncio.get_running_loop().time())
            self._flush()

    def release(self) -> None:
        """As client: our room's presentation ended."""
        if self.client is not None:
            self.client.release(asyncio.get_running_loop().time())
            self._flush()

    # -- TCP ----------------------------------------------------------------------------------------

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = str(peer[0]) if peer else ""
        if self._closed or self.core is None or source not in self._allowed or self._writer is not None:
            self.messages_refused += 1
            self._log.warning(
                "BFCP connection refused",
                source=source,
                why="not the signalled address" if source not in self._allowed else "a connection is open",
            )
            writer.close()
            return
        self._log.info("BFCP connection accepted", source=source)
        await self._serve(reader, writer)

    async def _connect(self, remote: Address) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(remote[0], remote[1], limit=MAX_MESSAGE), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            self._log.warning("BFCP connection failed", remote=f"{remote[0]}:{remote[1]}", error=str(exc) or type(exc).__name__)
            return
        if self._closed or self._writer is not None:
            writer.close()
            return
        self._log.info("BFCP connected", remote=f"{remote[0]}:{remote[1]}")
        await self._serve(reader, writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        if isinstance(self.core, FloorClient):
            self.core.start(asyncio.get_running_loop().time())
            self._flush()
        try:
            while not self._closed:
                head = await reader.readexactly(4)
                length = message_length(head)
                if length is None or length > MAX_MESSAGE:
                    self._log.warning("BFCP message too long; closing the connection", octets=length)
                    break
                data = head + await reader.readexactly(length - 4)
                self._receive(data, None)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if self._writer is writer:
                self._writer = None
                self._log.info("BFCP connection closed")
                self._give_back()
            writer.close()

    # -- UDP ----------------------------------------------------------------------------------------

    def _on_datagram(self, data: bytes, source: Address) -> None:
        if self.core is None or source[0] not in self._allowed:
            self.messages_refused += 1
            if self.messages_refused == 1:
                self._log.warning("BFCP from an address the signalling did not name dropped", source=source[0])
            return
        self._remote = source  # (the client's address as the network shows it: NAT)
        self._receive(data, source)

    # -- both ---------------------------------------------------------------------------------------

    def _receive(self, data: bytes, source: Address | None) -> None:
        core = self.core
        if core is None:
            return
        self.messages_in += 1
        for reply in core.receive(data):
            self._send(reply, source)
        while (event := core.next_event()) is not None:
            try:
                self._on_event(event)
            except Exception:
                self._log.exception("the call layer failed on a BFCP event", bfcp_event=type(event).__name__)
        self._flush()

    def _send(self, data: bytes, destination: Address | None = None) -> None:
        if self._writer is not None:
            self._writer.write(data)
        elif self._udp is not None and (destination or self._remote) is not None:
            self._udp.sendto(data, destination or self._remote)

    def _flush(self) -> None:
        core = self.core
        if core is None:
            return
        loop = asyncio.get_running_loop()
        for data in core.datagrams_to_send(loop.time()):
            self._send(data)
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        core = self.core
        due = core.get_timer() if core is not None else None
        if due is not None and not self._closed:
            self._timer = asyncio.get_running_loop().call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        core = self.core
        if core is None:
            return
        for data in core.handle_timer(asyncio.get_running_loop().time()):
            self._send(data)
        self._arm()

    def _give_back(self) -> None:
        """The connection to the room system ended: a floor it held is released."""
        server = self.server
        if server is None:
            if isinstance(self.core, FloorClient) and self.core.held_by_other:
                with contextlib.suppress(Exception):
                    self._on_event(floor_client.FloorHeld(by_other=False))  # (nobody there presents any more)
            return
        holder = server.holder
        server.requests.clear()
        if holder is not None:
            with contextlib.suppress(Exception):
                self._on_event(FloorReleased(holder, was_granted=True))

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self.core = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        for task in list(self._tasks):
            task.cancel()
