"""The MQTT session of the control plane: one connection to the broker (aiomqtt), kept up with
backoff, presence on a retained status topic with a last will, a bounded outbox of messages drained
in pipelined batches, and command messages handed to the bridge and answered.

What is published and which commands are taken is the bridge's (gateway/control/mqtt.py); this
module knows the topic layout and MQTT itself: QoS 1, retained status, the v5 Response Topic and
Correlation Data of requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import ssl
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway import __version__
from gateway.config import MqttConfig

log = structlog.get_logger(__name__)

# Answers a command message (room, payload) with the reply to publish (JSON-able).
CommandHandler = Callable[[str, bytes], Awaitable[dict[str, Any]]]


# -- topics ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topics:
    """`node`: the machine's name (mqtt.node). `worker`: this process is that worker of the
    machine's (gateway/workers.py): the machine still speaks as one node (its events, commands and
    replies under `<prefix>/<node>`), each worker says its own presence (`.../workers/<i>/status`),
    and each command goes to one worker (an MQTT shared subscription): any worker can carry out a
    command on any meeting of the machine."""

    prefix: str
    node: str
    worker: int | None = None

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.node}"

    @property
    def status(self) -> str:
        return f"{self.base}/status" if self.worker is None else f"{self.base}/workers/{self.worker}/status"

    @property
    def commands_filter(self) -> str:
        plain = f"{self.base}/rooms/+/commands"
        if self.worker is None:
            return plain
        group = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"gateway-{self.base}")
        return f"$share/{group}/{plain}"

    def event(self, room: str, event_type: str) -> str:
        return f"{self.base}/rooms/{room}/events/{event_type}"

    def trunk_state(self, trunk: str) -> str:
        return f"{self.base}/trunks/{trunk}/state"

    def registration(self, system: str) -> str:
        return f"{self.base}/systems/{system}/registration"

    def replies(self, room: str) -> str:
        return f"{self.base}/rooms/{room}/replies"

    def command_room(self, topic: str) -> str | None:
        """The room a command topic names, or None when the topic is no command topic of ours."""
        head, tail = f"{self.base}/rooms/", "/commands"
        if not (topic.startswith(head) and topic.endswith(tail)):
            return None
        room = topic[len(head) : -len(tail)]
        return room if room and "/" not in room else None

    def reply_topic(self, room: str, response_topic: str | None) -> str:
        """Where a command's answer goes: the requester's v5 Response Topic when it is a plain topic
        outside the gateways' namespace, else the room's replies topic."""
        if (
            response_topic
            and not any(c in response_topic for c in "+#\x00")
            and not response_topic.startswith(f"{self.prefix}/")
            and len(response_topic.encode()) <= 1024
        ):
            return response_topic
        return self.replies(room)


# -- the outbox ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: bytes  # JSON, serialised when queued: a value JSON cannot carry fails there, not in the drain


class Outbox:
    """Bounded FIFO of events waiting for the broker: when full, the oldest go first and are counted."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[Outgoing] = deque()
        self.dropped_total = 0
        self.dropped_since_connected = 0  # reset when a connection takes over: "in this outage"

    def push(self, item: Outgoing) -> bool:
        """Adds an item; True when an older one had to be dropped for it."""
        self._items.append(item)
        return self._trim() > 0

    def take(self, count: int) -> list[Outgoing]:
        return [self._items.popleft() for _ in range(min(count, len(self._items)))]

    def put_back(self, items: Iterable[Outgoing]) -> None:
        """Items that could not be published go back to the front, in order (they are the oldest)."""
        self._items.extendleft(reversed(list(items)))
        self._trim()

    def _trim(self) -> int:
        dropped = 0
        while len(self._items) > self.limit:
            self._items.popleft()
            dropped += 1
        self.dropped_total += dropped
        self.dropped_since_connected += dropped
        return dropped

    def __len__(self) -> int:
        return len(self._items)


# -- presence and reconnection --------------------------------------------------------------------


def status_payload(state: Literal["online", "offline"], node: str, started: float, clean: bool | None = None) -> bytes:
    body: dict[str, Any] = {"state": state, "node": node, "version": __version__, "started": started, "at": time.time()}
    if clean is not None:
        body["clean"] = clean  # offline: True after a shutdown, False when the broker sent the last will
    return json.dumps(body).encode()


class Backoff:
    """Exponential reconnect delays from `low` to `high` seconds, with up to 20 % jitter downwards so a
    cluster of gateways does not reconnect in step."""

    def __init__(self, low: float, high: float, rng: Callable[[], float] = random.random) -> None:
        self.low, self.high, self._rng = low, high, rng
        self._attempt = 0

    def next(self) -> float:
        delay = min(self.high, self.low * 2.0 ** min(self._attempt, 32))
        self._attempt += 1
        return delay * (1 - 0.2 * self._rng())

    def reset(self) -> None:
        self._attempt = 0


class _Demote(logging.Filter):
    """paho logs a lost connection as an error; for the gateway it is an expected, handled event."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _properties(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]


_client_logger = logging.getLogger("gateway.mqtt.client")
_client_logger.addFilter(_Demote())


# -- the session ---------------------------------------------------------------------------------


class _Client(aiomqtt.Client):
    """aiomqtt 2.x schedules `add_writer` with call_soon_threadsafe; when the broker drops the
    connection in between, asyncio then logs an error for a closed (or reused) descriptor. Register
    the writer only while paho still holds that socket. (A private hook: aiomqtt is pinned to 2.x.)"""

    def _on_socket_register_write(self, client: Any, userdata: Any, sock: Any) -> None:
        fileno = sock.fileno()

        def write() -> None:
            try:
                client.loop_write()
            except Exception as exc:  # a broken connection: end it as aiomqtt does
                if not self._disconnected.done():
                    self._disconnected.set_exception(exc)

        def register() -> None:
            if client.socket() is sock and sock.fileno() == fileno:
                self._loop.add_writer(fileno, write)

        self._loop.call_soon_threadsafe(register)


@dataclass
class SessionStats:
    """The connection now, and what went through it since the start."""

    connected: bool = False
    published: int = 0
    reconnects: int = 0
    commands: dict[str, int] = field(default_factory=lambda: {"accepted": 0, "refused": 0})


class MqttSession:
    BATCH = 32  # messages in flight at once: pipelined, not one round trip each

    def __init__(self, config: MqttConfig, topics: Topics, on_command: CommandHandler) -> None:
        self.config = config
        self.topics = topics
        self.on_command = on_command
        self.outbox = Outbox(config.queue_max)
        self.stats = SessionStats()
        self.started = time.time()
        self._wake = asyncio.Event()  # set when a message is queued
        self._idle = asyncio.Event()  # set while the outbox is empty and nothing is in flight
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._client: aiomqtt.Client | None = None  # while connected
        self._command_tasks: set[asyncio.Task[None]] = set()
        self._warned_full = False

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._task = asyncio.create_task(self._run(), name="mqtt-bridge")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Publishes "offline" (retained) and disconnects cleanly; never takes longer than `timeout_s`."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(task, timeout_s)
        except TimeoutError:
            log.warning("mqtt bridge did not stop in time", timeout_s=timeout_s)
        for command in list(self._command_tasks):
            command.cancel()
        if self.outbox.dropped_since_connected or len(self.outbox):
            log.warning("mqtt events not published", dropped=self.outbox.dropped_since_connected, queued=len(self.outbox))

    # -- messages out (from any thread) --------------------------------------------------------

    def enqueue(self, item: Outgoing) -> None:
        if self.outbox.push(item) and not self._warned_full:
            self._warned_full = True
            log.warning("mqtt queue full: dropping the oldest events until the broker is back", queue_max=self.outbox.limit)
        if threading.get_ident() == self._loop_thread:
            self._queued()
        elif self._loop is not None:
            self._loop.call_soon_threadsafe(self._queued)

    def _queued(self) -> None:
        self._idle.clear()
        self._wake.set()

    # -- connection ----------------------------------------------------------------------------

    def _client_for(self) -> aiomqtt.Client:
        c = self.config
        tls: ssl.SSLContext | None = None
        if c.tls:
            tls = ssl.create_default_context(cafile=str(c.tls_ca) if c.tls_ca else None)
        will_props = _properties(PacketTypes.WILLMESSAGE)
        will_props.ContentType = "application/json"
        return _Client(
            c.host,
            c.port,
            username=c.username,
            password=c.password,
            identifier=f"{c.node}-{secrets.token_hex(4)}",
            protocol=aiomqtt.ProtocolVersion.V5,
            will=aiomqtt.Will(
                self.topics.status,
                status_payload("offline", c.node, self.started, clean=False),
                qos=1,
                retain=True,
                properties=will_props,
            ),
            keepalive=c.keepalive_s,
            timeout=10,
            tls_context=tls,
            logger=_client_logger,
        )

    async def _run(self) -> None:
        backoff = Backoff(self.config.reconnect_min_s, self.config.reconnect_max_s)
        ever_connected = False
        failed_attempts = 0  # since the last connection: the first failure is a warning, the rest debug
        while not self._stopping.is_set():
            try:
                async with self._client_for() as client:
                    self._client = client
                    client.pending_calls_threshold = self.BATCH + 16
                    await client.publish(self.topics.status, status_payload("online", self.config.node, self.started), qos=1, retain=True)
                    await client.subscribe(self.topics.commands_filter, qos=1)
                    await client.subscribe(self.topics.status, qos=1)
                    self.stats.connected = True
                    backoff.reset()
                    failed_attempts = 0
                    if ever_connected:
                        self.stats.reconnects += 1
                    log.info(
                        "mqtt reconnected" if ever_connected else "mqtt connected",
                        broker=f"{self.config.host}:{self.config.port}",
                        queued=len(self.outbox),
                        dropped=self.outbox.dropped_since_connected,
                    )
                    if self.outbox.dropped_since_connected:
                        log.warning(
                            "mqtt events dropped while the broker was away",
                            dropped=self.outbox.dropped_since_connected,
                            queue_max=self.outbox.limit,
                        )
                    self.outbox.dropped_since_connected = 0
                    self._warned_full = False
                    ever_connected = True
                    await self._connected(client)
                    await self._say_offline(client)
            except (aiomqtt.MqttError, OSError) as exc:
                if self.stats.connected:
                    log.warning("mqtt connection lost", error=str(exc), queued=len(self.outbox))
                    failed_attempts = 1
                else:
                    failed_attempts += 1
                    (log.warning if failed_attempts == 1 else log.debug)(
                        "mqtt broker unreachable",
                        broker=f"{self.config.host}:{self.config.port}",
                        error=str(exc),
                        attempt=failed_attempts,
                    )
            except Exception:
                log.exception("mqtt bridge failed; reconnecting")
            finally:
                self.stats.connected = False
                self._client = None
            if self._stopping.is_set():
                break
            delay = backoff.next()
            log.debug("mqtt reconnect in", delay_s=round(delay, 2))
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
            except TimeoutError:
                pass

    async def _connected(self, client: aiomqtt.Client) -> None:
        """Runs while connected: the outbox drains, commands are answered; returns on stop, raises on loss."""
        drain = asyncio.create_task(self._drain(client), name="mqtt-drain")
        incoming = asyncio.create_task(self._incoming(client), name="mqtt-incoming")
        stopping = asyncio.create_task(self._stopping.wait(), name="mqtt-stopping")
        try:
            done, _ = await asyncio.wait({drain, incoming, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stopping in done:
                incoming.cancel()
                # What happened just before the shutdown (people leaving) is still worth sending.
                try:
                    await asyncio.wait_for(self._flushed(), 2.0)
                except TimeoutError:
                    pass
                return
            for task in done:
                task.result()  # raises the connection's error
        finally:
            for task in (drain, incoming, stopping):
                task.cancel()
            await asyncio.gather(drain, incoming, stopping, return_exceptions=True)

    async def _flushed(self) -> None:
        await self._idle.wait()

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        payload = status_payload("offline", self.config.node, self.started, clean=True)
        await client.publish(self.topics.status, payload, qos=1, retain=True, timeout=2)
        log.info("mqtt offline published", topic=self.topics.status)

    async def _drain(self, client: aiomqtt.Client) -> None:
        while True:
            batch = self.outbox.take(self.BATCH)
            if not batch:
                self._wake.clear()
                self._idle.set()
                await self._wake.wait()
                continue
            try:
                results = await asyncio.gather(
                    *(client.publish(item.topic, item.payload, qos=1) for item in batch),
                    return_exceptions=True,
                )
            except BaseException:
                self.outbox.put_back(batch)  # cancelled: a QoS 1 event may then arrive twice, never zero times
                raise
            failed = [item for item, result in zip(batch, results, strict=True) if isinstance(result, BaseException)]
            self.stats.published += len(batch) - len(failed)
            if failed:
                self.outbox.put_back(failed)
                error = next(r for r in results if isinstance(r, BaseException))
                raise error

    async def _incoming(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = str(message.topic)
            if topic == self.topics.status:
                self._status_seen(client, message.payload)
                continue
            room = self.topics.command_room(topic)
            if room is None:
                continue
            task = asyncio.create_task(self._command(client, room, bytes(message.payload), message.properties))
            self._command_tasks.add(task)
            task.add_done_callback(self._command_tasks.discard)

    def _status_seen(self, client: aiomqtt.Client, payload: Any) -> None:
        """A last will of an earlier connection of ours (seen late by the broker) must not leave us
        "offline" while we are here: say "online" again."""
        try:
            state = json.loads(payload).get("state")
        except (ValueError, AttributeError, TypeError):
            return
        if state == "offline" and not self._stopping.is_set():
            log.info("mqtt status said offline while connected; publishing online again")
            task = asyncio.create_task(self._say_online(client))
            self._command_tasks.add(task)
            task.add_done_callback(self._command_tasks.discard)

    async def _say_online(self, client: aiomqtt.Client) -> None:
        try:
            await client.publish(self.topics.status, status_payload("online", self.config.node, self.started), qos=1, retain=True)
        except aiomqtt.MqttError as exc:  # the connection is going: the next one says online anyway
            log.debug("mqtt online not published", error=str(exc))

    async def _command(self, client: aiomqtt.Client, room: str, payload: bytes, properties: Any) -> None:
        reply = await self.on_command(room, payload)
        self.stats.commands["accepted" if reply["ok"] else "refused"] += 1
        response_topic = getattr(properties, "ResponseTopic", None)
        correlation = getattr(properties, "CorrelationData", None)
        props = _properties(PacketTypes.PUBLISH)
        props.ContentType = "application/json"
        if correlation is not None:
            props.CorrelationData = correlation
        current = self._client or client
        try:
            await current.publish(
                self.topics.reply_topic(room, response_topic), json.dumps(reply).encode(), qos=1, properties=props
            )
        except Exception as exc:  # the connection went away meanwhile: the requester sees no answer
            log.warning("mqtt reply not sent", room=room, id=reply.get("id"), error=str(exc))
