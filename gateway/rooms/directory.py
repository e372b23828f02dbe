"""The rooms this gateway hosts, the room systems it knows and the rules that route called aliases.

Rooms come from the configuration file (origin "config") or the admin API (origin "api"); each has
its live Conference. A call or browser names a room by id or alias; calls may also be routed by
ordered regular-expression rules (RE2: linear time on whatever the caller dials). Every room's
events, and events of the gateway itself (call records), reach the subscribers of `subscribe` (MQTT,
call records).

A room system is known by a typed identity (gateway.rooms.identity), read from its configured
address by the protocol that owns the address's scheme (the `identify` reader the composition root
gives); the directory itself parses no protocol's addresses. A room system is recognised by the
address its call comes from, not by its From header alone: the host name of its identity is
resolved when the entry is saved and every REFRESH_S seconds after (`run_refresh`), never per call.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Literal

import structlog

from gateway.config import GatewayConfig, RoomConfig, RoomSystemConfig, RoutingRuleConfig
from gateway.rooms.conference import Conference
from gateway.rooms.errors import RoomError
from gateway.rooms.events import RoomEvent
from gateway.rooms.floor import Presenters
from gateway.rooms.hours import OpeningHours
from gateway.rooms.identity import Identity, IdentityReader
from gateway.rooms.patterns import (
    MAX_ALIAS,
    Pattern,
    PatternError,
    Template,
    compile_rule,
    full_match,
    parse_template,
)
from gateway.rooms.room import Broadcasting, Room
from gateway.transcode.clock import ClockDriver
from gateway.transcode.layout import Layout

log = structlog.get_logger(__name__)

Origin = Literal["config", "api"]
Listener = Callable[[RoomEvent], None]
# host name -> its IP addresses (as str(ipaddress.ip_address(...))); raises when the lookup fails
Resolver = Callable[[str], Awaitable[frozenset[str]]]

# How often room systems' host names are looked up again. Not a setting: DNS records of room
# systems change rarely, and five minutes bounds how long a moved system is not recognised.
REFRESH_S = 300.0
# One lookup that takes longer counts as failed (the old addresses are kept); the thread running
# getaddrinfo cannot be cancelled, but the refresh goes on to the next host.
RESOLVE_TIMEOUT_S = 10.0


class Conflict(RoomError):
    """An id or alias is taken, or a room from the config file would be changed through the API."""

    code = "conflict"


class NotFound(RoomError):
    code = "not_found"


def _broadcast_policy(spec: RoomConfig) -> dict[Broadcasting, bool]:
    """What a host of the room may start: recording unless forbidden, streaming where a stream_url is set."""
    return {"recording": spec.recording != "forbidden", "streaming": spec.streaming != "forbidden" and spec.stream_url is not None}


def _hours(spec: RoomConfig) -> OpeningHours | None:
    return OpeningHours(spec.opening_hours) if spec.opening_hours is not None else None


def _ip(host: str) -> str | None:
    """The canonical text of an IP literal (as the SIP service compares sources), else None."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


async def resolve_host(host: str) -> frozenset[str]:
    """The addresses of a host name, looked up in the loop's executor (getaddrinfo blocks)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    return frozenset(address for info in infos if (address := _ip(str(info[4][0]))) is not None)


class Directory:
    def __init__(
        self, config: GatewayConfig, resolver: Resolver = resolve_host, identify: IdentityReader | None = None
    ) -> None:
        self._config = config
        self._identify = identify
        self._identities: dict[str, Identity] = {}  # a room system's address as written -> its identity
        self.conferences: dict[str, Conference] = {}
        self.specs: dict[str, RoomConfig] = {}
        self.origins: dict[str, Origin] = {}
        self._aliases: dict[str, str] = {}
        self.systems: dict[str, RoomSystemConfig] = {}
        self.rules: list[RoutingRuleConfig] = []
        self._compiled: list[tuple[RoutingRuleConfig, Pattern, Template]] = []
        self._resolver = resolver
        self._addresses: dict[str, frozenset[str]] = {}  # host name (lower case) -> addresses
        self._failures: dict[str, str] = {}  # host name -> why its last lookup failed
        self._lookups: set[asyncio.Task[None]] = set()
        self._listeners: list[Listener] = []
        self._unsubscribe: dict[str, Callable[[], None]] = {}
        self.alias_watchers: list[Callable[[], None]] = []  # told when rooms or their aliases change (RAS)
        # told when a leg joins a room's media (after its participant_joined: a browser's leg attaches
        # once its media is set up); e.g. a room set to record automatically starts then
        self.attach_watchers: list[Callable[[Conference], None]] = []
        # One media timer for every room of the process: rooms tick in turn on one 20 ms grid.
        self.clock_driver = ClockDriver(config.media.mixer.tick_ms / 1000)
        for rc in config.rooms:
            self.add(rc, "config")

    # -- events ---------------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Every room's events (rooms added later too) and the gateway's own (call records)."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _attached(self, conference: Conference) -> None:
        for watcher in list(self.attach_watchers):
            try:
                watcher(conference)
            except Exception:
                log.exception("attach watcher failed", room=conference.room.id)

    def publish(self, event: RoomEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed", event=event.type, room=event.room)

    # -- rooms ----------------------------------------------------------------------------------

    def clashes(self, spec: RoomConfig, replacing: str | None = None) -> list[str]:
        """Why `spec` cannot be added (its id or an alias is taken), as sentences."""
        problems = []
        if spec.id in self.conferences and spec.id != replacing:
            problems.append(f"room id {spec.id!r} is taken ({self.origins[spec.id]})")
        for alias in (spec.id, *spec.aliases):
            owner = self._aliases.get(alias.lower())
            if owner is not None and owner not in (spec.id, replacing):
                problems.append(f"alias {alias!r} already dials room {owner!r} ({self.origins[owner]})")
        return problems

    def add(self, spec: RoomConfig, origin: Origin) -> Conference:
        problems = self.clashes(spec)
        if problems:
            raise Conflict("; ".join(problems))
        room = Room(
            spec.id,
            spec.name,
            host_pin=spec.host_pin,
            guest_pin=spec.guest_pin,
            lobby=spec.lobby,
            locked=spec.locked,
            max_participants=spec.max_participants,
            default_lobby_wait_s=self._config.lobby.default_wait_s,
            aliases=spec.aliases,
            language=spec.language,
            opening_hours=_hours(spec),
            layout=Layout(spec.layout),
            presenters=Presenters(spec.presenters),
            sign_in_hosts=spec.sign_in_hosts,
        )
        room.max_lobby = self._config.lobby.max_waiting
        room.may_broadcast = _broadcast_policy(spec)
        conference = Conference(room, self._config.media, clock_driver=self.clock_driver)
        conference.on_attached = self._attached
        self.conferences[spec.id] = conference
        self.specs[spec.id] = spec
        self.origins[spec.id] = origin
        self._index_aliases(spec)
        self._unsubscribe[spec.id] = room.subscribe(self.publish)
        return conference

    def _aliases_changed(self) -> None:
        for watcher in list(self.alias_watchers):
            try:
                watcher()
            except Exception:
                log.exception("alias watcher failed")

    def _index_aliases(self, spec: RoomConfig) -> None:
        for alias in [a for a, owner in self._aliases.items() if owner == spec.id]:
            del self._aliases[alias]
        for alias in (spec.id, *spec.aliases):
            self._aliases[alias.lower()] = spec.id
        self._aliases_changed()

    def update(self, spec: RoomConfig) -> Conference:
        """New settings for an API room; who is in the meeting stays in."""
        conference = self._api_room(spec.id)
        problems = self.clashes(spec, replacing=spec.id)
        if problems:
            raise Conflict("; ".join(problems))
        conference.room.reconfigure(
            name=spec.name,
            host_pin=spec.host_pin,
            guest_pin=spec.guest_pin,
            lobby=spec.lobby,
            locked=spec.locked,
            max_participants=spec.max_participants,
            aliases=spec.aliases,
            language=spec.language,
            opening_hours=_hours(spec),
            layout=Layout(spec.layout),
            presenters=Presenters(spec.presenters),
            sign_in_hosts=spec.sign_in_hosts,
        )
        conference.room.may_broadcast = _broadcast_policy(spec)
        self.specs[spec.id] = spec
        self._index_aliases(spec)
        return conference

    async def remove(self, room_id: str) -> None:
        """Deletes an API room; a meeting in it is ended first (everyone is told)."""
        conference = self._api_room(room_id)
        if conference.room.participants or conference.room.lobby:
            conference.room.end(None)
        del self.conferences[room_id], self.specs[room_id], self.origins[room_id]
        self._aliases = {alias: owner for alias, owner in self._aliases.items() if owner != room_id}
        self._aliases_changed()
        self._unsubscribe.pop(room_id)()
        await conference.close()

    def _api_room(self, room_id: str) -> Conference:
        conference = self.conferences.get(room_id)
        if conference is None:
            raise NotFound(f"no room {room_id!r}")
        if self.origins[room_id] == "config":
            raise Conflict(f"room {room_id!r} is defined in the configuration file: change it there")
        return conference

    def find(self, room_or_alias: str) -> Conference | None:
        room_id = self._aliases.get(room_or_alias.strip().lower())
        return self.conferences.get(room_id) if room_id else None

    def route(self, called: str) -> Conference | None:
        """The room a call to `called` goes to: an exact id or alias, else the first matching rule.

        Rules run on RE2 (linear time), and an alias longer than MAX_ALIAS (128) characters matches
        no rule at all: the caller controls it."""
        found = self.find(called)
        if found is not None:
            return found
        alias = called.strip()
        for rule, pattern, template in self._compiled:
            match = full_match(pattern, alias, max_length=MAX_ALIAS)
            if match is None:
                continue
            target = template.expand(match).lower()
            conference = self.find(target)
            if conference is not None:
                log.debug("routed by rule", called=called, rule=rule.id, room=conference.room.id)
                return conference
            log.info("routing rule matched but names no room", called=called, rule=rule.id, room=target)
        return None

    def __iter__(self) -> Iterator[Conference]:
        return iter(list(self.conferences.values()))

    def meetings(self) -> list[Conference]:
        """The rooms with a meeting here now (someone this node serves is in it, or waiting in its
        lobby; other nodes' participants shown here keep no meeting on this node)."""
        return [c for c in self.conferences.values() if c.room.in_use]

    def end_meetings(self, reason: str) -> list[Conference]:
        """Ends every meeting (the gateway stops, or a drain's deadline came); returns their rooms."""
        busy = self.meetings()
        for conference in busy:
            conference.room.end(None, reason=reason)
        return busy

    # -- room systems and rules -----------------------------------------------------------------

    def set_systems(self, systems: list[RoomSystemConfig]) -> None:
        """The room systems now known. The host name of an entry that is new or changed is looked up
        in the background at once when an event loop runs (else by the first round of
        `run_refresh`); addresses of host names no entry names any more are forgotten."""
        before = self.systems
        self.systems = {s.id: s for s in systems}
        wanted = self._host_names()
        for host in [h for h in self._addresses if h not in wanted]:
            del self._addresses[host]
        for host in [h for h in self._failures if h not in wanted]:
            del self._failures[host]
        self._identities = {s.uri: self.identity(s) for s in self.systems.values()}
        changed = {h for s in self.systems.values() if before.get(s.id) != s and (h := self._host_name(s)) is not None}
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # at start-up, before the loop: run_refresh looks every host up first thing
        for host in sorted(changed):
            task = loop.create_task(self._look_up(host), name=f"resolve-{host}")
            self._lookups.add(task)
            task.add_done_callback(self._lookups.discard)

    def identity(self, system: RoomSystemConfig) -> Identity:
        """The typed identity of a room system, read once from its address by the `identify` reader."""
        found = self._identities.get(system.uri)
        if found is None:
            if self._identify is None:
                raise RuntimeError("this directory has no identity reader: it cannot hold room systems")
            found = self._identities[system.uri] = self._identify(system.uri)
        return found

    def system_for(self, caller: Identity | str) -> RoomSystemConfig | None:
        """The directory entry a caller's identity (or its From address, read by the `identify`
        reader) belongs to: the same user and host, whatever port, transport or parameters."""
        if isinstance(caller, str):
            if self._identify is None:
                return None
            try:
                caller = self._identify(caller)
            except ValueError:
                return None
        address = caller.address
        return next((s for s in self.systems.values() if self.identity(s).address == address), None)

    def system_addresses(self, system: RoomSystemConfig) -> frozenset[str]:
        """The IP addresses a room system calls from: its identity's host when that is an IP literal,
        else what the host name resolved to when the entry was saved or last refreshed (empty
        until the first lookup succeeded)."""
        host = self.identity(system).host
        if host is None:
            return frozenset()
        literal = _ip(host)
        if literal is not None:
            return frozenset({literal})
        return self._addresses.get(host.lower(), frozenset())

    async def lookups_done(self) -> None:
        """Returns when the lookups `set_systems` started have ended (tests; a caller that must know)."""
        while self._lookups:
            await asyncio.gather(*self._lookups, return_exceptions=True)

    def _host_name(self, system: RoomSystemConfig) -> str | None:
        """The host name of a room system's identity (lower case), None when it is an IP literal or
        the identity has no host."""
        host = self.identity(system).host
        return None if host is None or _ip(host) is not None else host.lower()

    def _host_names(self) -> set[str]:
        return {h for s in self.systems.values() if (h := self._host_name(s)) is not None}

    async def _look_up(self, host: str) -> None:
        """Looks `host` up once; a failure keeps the addresses it had and is logged when it starts
        or its reason changes, not at every refresh."""
        try:
            addresses = await asyncio.wait_for(self._resolver(host), RESOLVE_TIMEOUT_S)
            if not addresses:
                raise OSError("no addresses")
        except Exception as exc:  # gaierror, timeout, IDNA errors of odd names: all keep the old addresses
            reason = str(exc) or type(exc).__name__
            if host in self._host_names() and self._failures.get(host) != reason:
                self._failures[host] = reason
                log.warning(
                    "room system host name does not resolve; its last known addresses stay in use",
                    host=host,
                    reason=reason,
                    addresses=sorted(self._addresses.get(host, ())),
                )
            return
        if host not in self._host_names():
            return  # its room system was deleted or changed meanwhile
        if self._failures.pop(host, None) is not None:
            log.info("room system host name resolves again", host=host)
        if self._addresses.get(host) != addresses:
            log.info(
                "room system host name resolved",
                host=host,
                addresses=sorted(addresses),
                before=sorted(self._addresses.get(host, ())),
            )
            self._addresses[host] = addresses

    async def refresh(self) -> None:
        """Looks up the host name of every room system now, one after another (each lookup holds an
        executor thread: a slow DNS server must not take them all)."""
        for host in sorted(self._host_names()):
            await self._look_up(host)

    async def run_refresh(self, interval_s: float = REFRESH_S) -> None:
        """Runs until cancelled: room systems' host names looked up at once, then every interval_s."""
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("refreshing room system addresses failed")
            await asyncio.sleep(interval_s)

    def set_rules(self, rules: list[RoutingRuleConfig]) -> None:
        """The ordered rules, compiled once by RE2 (the config validator has already refused what RE2
        cannot run; a rule that still fails is skipped and logged, never a call's failure)."""
        self.rules = list(rules)
        self._compiled = []
        for rule in self.rules:
            try:
                pattern = compile_rule(rule.pattern, ignore_case=True)
                self._compiled.append((rule, pattern, parse_template(rule.room, pattern)))
            except PatternError as exc:
                log.error("routing rule cannot be used; it is skipped", rule=rule.id, reason=str(exc))

    async def close(self) -> None:
        for task in list(self._lookups):
            task.cancel()
        for conference in list(self.conferences.values()):
            await conference.close()
