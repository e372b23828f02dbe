"""The backplane's asyncio adapter: a TCP server and a dialler per peer for the control links
(wire.py), one UDP socket on the same host:port for the links' media (media.py), and the cascade
(cascade.py) they feed.

Both nodes of a pair dial each other; when two links to one node open, the one the node of the
lower name dialled stays. A link is pinged every PING_S and counts as lost after DEAD_S of silence
(a killed node's kernel usually resets the connection at once). A link that fails its handshake or
a tag is closed and logged with the reason and the address, never with what it carried.

Between the workers of one machine the links also carry SIP over UDP that the kernel gave the wrong
worker (all share the port, hashed by sender): an answer to another worker's request, or a request
in its dialog (`hand_sip`, `on_sip`); and what one worker tells the others of its own (`tell_workers`,
`on_worker_message`: the room systems registered with it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import socket
import time
from collections.abc import Callable
from typing import Any

import structlog

from gateway.cluster.cascade import LINK_FORMAT, Cascade
from gateway.cluster.media import PeerMedia
from gateway.cluster.wire import NODE_NAME, ControlLink, LinkState
from gateway.rooms.directory import Directory
from gateway.transcode.audio import AudioFormat

log = structlog.get_logger(__name__)

PING_S = 1.0
DEAD_S = 4.0
REDIAL_S = 1.0
HANDSHAKE_S = 5.0
MAX_SIP_BYTES = 65_535  # (a UDP datagram)


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class _Connection:
    def __init__(self, backplane: Backplane, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, initiator: bool) -> None:
        self.backplane = backplane
        self.reader = reader
        self.writer = writer
        self.link = ControlLink(backplane.secret, backplane.node, initiator)
        peer = writer.get_extra_info("peername")
        self.address: tuple[str, int] = (str(peer[0]), int(peer[1])) if peer else ("?", 0)
        self.media: PeerMedia | None = None
        self.last_heard = time.monotonic()
        self.up = False
        self.done = asyncio.Event()  # (its run ended)

    def send(self, message: dict[str, Any]) -> None:
        if self.link.state is LinkState.OPEN and not self.writer.is_closing():
            self.link.send(message)
            self.writer.write(self.link.data_to_send())

    async def run(self) -> None:
        self.writer.write(self.link.data_to_send())
        try:
            while True:
                timeout = HANDSHAKE_S if self.link.state is LinkState.HELLO else DEAD_S
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
                if not data:
                    return
                self.last_heard = time.monotonic()
                was_open = self.link.state is LinkState.OPEN
                self.link.receive(data)
                if self.link.state is LinkState.FAILED:
                    log.warning("backplane link refused", address=self.address[0], reason=self.link.failure)
                    return
                self.writer.write(self.link.data_to_send())
                if not was_open and self.link.state is LinkState.OPEN:
                    self.send({"type": "media", "port": self.backplane.media_port})
                while (message := self.link.next_message()) is not None:
                    self.backplane.on_message(self, message)
        except (TimeoutError, ConnectionError, OSError):
            return
        finally:
            self.writer.close()
            self.done.set()
            self.backplane.lost(self)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, backplane: Backplane) -> None:
        self.backplane = backplane

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.backplane.on_datagram(data, addr)


class Backplane:
    def __init__(
        self,
        directory: Directory,
        node: str,
        secret: bytes,
        listen: str,
        peers: list[str],
        observe: bool = False,
        sockets: tuple[socket.socket, socket.socket] | None = None,  # (TCP, UDP) bound by a supervisor
        link_format: AudioFormat = LINK_FORMAT,
    ) -> None:
        if not NODE_NAME.match(node):
            raise ValueError(f"mqtt.node {node!r} cannot name a node on the backplane: letters, digits, '.', '_', '-' (64 at most)")
        self.node = node
        self.secret = secret
        self.host, self.port = split_address(listen)
        # (a list of every node may name this one too: it is not dialled)
        self.peer_addresses = [a for a in map(split_address, peers) if a != (self.host, self.port)]
        self.cascade = Cascade(directory, node, self._send, self._send_media, observe=observe, link_format=link_format)
        self.links: dict[str, _Connection] = {}  # peer node -> its link (open, media address known)
        self._by_media: dict[tuple[str, int], str] = {}  # a peer's media address -> its name
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self.media_port = 0
        self._sockets = sockets
        self.datagrams_foreign = 0
        self.links_refused = 0
        # The workers of one machine: SIP datagrams handed over (data, where it came from)
        self.on_sip: Callable[[bytes, tuple[str, int]], None] | None = None
        self.sip_handed = 0
        self.sip_taken = 0
        self.sip_refused = 0
        # The workers of one machine: what they tell each other ({"type": "worker", ...}), and who
        # is told a link came up (to tell that worker what it missed)
        self.on_worker_message: Callable[[dict[str, Any]], None] | None = None
        self.link_up_listeners: list[Callable[[str], None]] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        tcp, udp = self._sockets or (None, None)
        self._server = await asyncio.start_server(self._accepted, *((None, None) if tcp else (self.host, self.port)), sock=tcp)
        self.port = self._server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), **({"sock": udp} if udp else {"local_addr": (self.host, self.port)})
        )
        self._udp = transport
        self.media_port = transport.get_extra_info("sockname")[1]
        for address in self.peer_addresses:
            self._spawn(self._dial(address), f"backplane-dial-{address[0]}:{address[1]}")
        self._spawn(self._ping(), "backplane-ping")
        log.info("backplane listening", address=f"{self.host}:{self.port}", peers=len(self.peer_addresses))

    async def stop(self) -> None:
        self.cascade.close()
        for task in list(self._tasks):
            task.cancel()
        for connection in list(self._connections):
            connection.writer.close()
        if self._server is not None:
            self._server.close()
        if self._udp is not None:
            self._udp.close()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _spawn(self, work: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve(_Connection(self, reader, writer, initiator=False))

    async def _dial(self, address: tuple[str, int]) -> None:
        while True:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(address[0], address[1], local_addr=(self.host, 0)), HANDSHAKE_S
                )
            except (TimeoutError, OSError):
                await asyncio.sleep(REDIAL_S)
                continue
            connection = _Connection(self, reader, writer, initiator=True)
            await self._serve(connection)
            # That node is linked through its own dial (its link stays): dial again once it is lost.
            held = self.links.get(connection.link.peer or "")
            if held is not None:
                await held.done.wait()
            await asyncio.sleep(REDIAL_S)

    async def _serve(self, connection: _Connection) -> None:
        self._connections.add(connection)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(PING_S)
            for connection in list(self._connections):
                connection.send({"type": "ping"})

    # -- from the links -----------------------------------------------------------------------------

    def on_message(self, connection: _Connection, message: dict[str, Any]) -> None:
        peer = connection.link.peer or ""
        if message.get("type") == "ping":
            return
        if message.get("type") == "media":
            port = message.get("port")
            if connection.media is not None or not isinstance(port, int) or not 0 < port < 65536:
                self.links_refused += 1
                connection.writer.close()
                return
            self._take(connection, peer, port)
            return
        if message.get("type") == "sip":
            self._take_sip(connection, message)
            return
        if message.get("type") == "worker":
            try:
                if self.on_worker_message is None or not connection.up:
                    raise ValueError("not taken here")
                self.on_worker_message(message)
            except ValueError:
                self.sip_refused += 1
            return
        if connection.up:
            self.cascade.on_message(peer, message)

    def tell_workers(self, message: dict[str, Any], peer: str | None = None) -> None:
        """To every linked worker (or `peer`): {"type": "worker", ...message}."""
        for name, connection in list(self.links.items()):
            if peer in (None, name):
                connection.send({**message, "type": "worker"})

    def hand_sip(self, peer: str, data: bytes, source: tuple[str, int]) -> bool:
        """A SIP datagram for worker `peer` (its branch or tag says so); False: no link to it now."""
        connection = self.links.get(peer)
        if connection is None or len(data) > MAX_SIP_BYTES:
            return False
        connection.send({"type": "sip", "data": base64.b64encode(data).decode(), "from": [source[0], source[1]]})
        self.sip_handed += 1
        return True

    def _take_sip(self, connection: _Connection, message: dict[str, Any]) -> None:
        source, text = message.get("from"), message.get("data")
        try:
            if self.on_sip is None or not connection.up or not isinstance(text, str) or len(text) > MAX_SIP_BYTES * 2:
                raise ValueError("not taken here")
            if not (isinstance(source, list) and len(source) == 2 and isinstance(source[0], str) and isinstance(source[1], int)):
                raise ValueError("no source")
            data = base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            self.sip_refused += 1
            return
        self.sip_taken += 1
        self.on_sip(data, (source[0], source[1]))

    def _take(self, connection: _Connection, peer: str, port: int) -> None:
        current = self.links.get(peer)
        if current is not None and current is not connection:
            # Two links to one node (both dialled): the one the lower name dialled stays.
            keep_current = current.link.initiator == (self.node < peer)
            if keep_current:
                connection.writer.close()
                return
            self._drop(current)
            current.writer.close()
        send_key, receive_key = connection.link.media_keys()
        connection.media = PeerMedia(send_key, receive_key, address=(connection.address[0], port), codec=self.cascade.link_format.codec)
        connection.up = True
        self.links[peer] = connection
        self._by_media[(connection.address[0], port)] = peer
        log.info("backplane link up", peer=peer, address=connection.address[0])
        self.cascade.peer_up(peer, connection.media, connection.link.media_ssrc)
        for listener in self.link_up_listeners:
            listener(peer)

    def lost(self, connection: _Connection) -> None:
        peer = connection.link.peer
        if peer is not None and self.links.get(peer) is connection:
            self._drop(connection)
            log.warning("backplane link lost", peer=peer)

    def _drop(self, connection: _Connection) -> None:
        peer = connection.link.peer or ""
        connection.up = False
        self.links.pop(peer, None)
        if connection.media is not None and connection.media.address is not None:
            self._by_media.pop(connection.media.address, None)
        self.cascade.peer_down(peer)

    # -- media --------------------------------------------------------------------------------------

    def on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        peer = self._by_media.get((addr[0], addr[1]))
        if peer is None:
            self.datagrams_foreign += 1
            return
        self.cascade.on_media(peer, data, addr)

    def _send(self, peer: str, message: dict[str, Any]) -> None:
        connection = self.links.get(peer)
        if connection is not None:
            connection.send(message)

    def _send_media(self, peer: str, packet: bytes) -> None:
        connection = self.links.get(peer)
        if connection is not None and connection.media is not None and self._udp is not None:
            assert connection.media.address is not None
            self._udp.sendto(packet, connection.media.address)

    def state(self) -> dict[str, Any]:
        """For the API and metrics: the links and what they carried."""
        return {
            "address": f"{self.host}:{self.port}",
            "links": {
                peer: {
                    "rooms": sorted(self.cascade.peers[peer].linked) if peer in self.cascade.peers else [],
                    **(vars(c.media.counters) if c.media else {}),
                }
                for peer, c in self.links.items()
            },
            "datagrams_foreign": self.datagrams_foreign,
            "sip_handed": self.sip_handed,
            "sip_taken": self.sip_taken,
            "sip_refused": self.sip_refused,
            "messages_refused": self.cascade.messages_refused,
            "links_refused": self.links_refused,
        }
