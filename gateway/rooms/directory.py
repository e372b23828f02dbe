"""The rooms this gateway hosts, the room systems it knows and the rules that route called aliases.

Rooms come from the configuration file (origin "config") or the admin API (origin "api"); each has
its live Conference. A call or browser names a room by id or alias; calls may also be routed by
ordered regular-expression rules. Every room's events, and events of the gateway itself (call
records), reach the subscribers of `subscribe` (MQTT, call records).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from typing import Literal

import structlog

from gateway.config import GatewayConfig, RoomConfig, RoomSystemConfig, RoutingRuleConfig
from gateway.rooms.conference import Conference
from gateway.rooms.errors import RoomError
from gateway.rooms.events import RoomEvent
from gateway.rooms.hours import OpeningHours
from gateway.rooms.room import Room
from gateway.transcode.clock import ClockDriver

log = structlog.get_logger(__name__)

Origin = Literal["config", "api"]
Listener = Callable[[RoomEvent], None]


class Conflict(RoomError):
    """An id or alias is taken, or a room from the config file would be changed through the API."""

    code = "conflict"


class NotFound(RoomError):
    code = "not_found"


def _hours(spec: RoomConfig) -> OpeningHours | None:
    return OpeningHours(spec.opening_hours) if spec.opening_hours is not None else None


def uri_host(uri: str) -> str:
    """The host of a SIP URI (brackets of an IPv6 literal removed)."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    rest = rest.split(";", 1)[0].split("?", 1)[0]
    host = rest.rpartition("@")[2]
    return host[1:].split("]", 1)[0] if host.startswith("[") else host.split(":", 1)[0]


def system_address(uri: str) -> str:
    """user@host of a SIP URI, lower-cased, without scheme, port and parameters: how a caller is
    recognised whatever port or transport it calls from."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    rest = rest.split(";", 1)[0].split("?", 1)[0]
    user, _, host = rest.rpartition("@")
    host = host[1:].split("]", 1)[0] if host.startswith("[") else host.split(":", 1)[0]
    return f"{user}@{host}".lower()


class Directory:
    def __init__(self, config: GatewayConfig) -> None:
        self._config = config
        self.conferences: dict[str, Conference] = {}
        self.specs: dict[str, RoomConfig] = {}
        self.origins: dict[str, Origin] = {}
        self._aliases: dict[str, str] = {}
        self.systems: dict[str, RoomSystemConfig] = {}
        self.rules: list[RoutingRuleConfig] = []
        self._compiled: list[tuple[RoutingRuleConfig, re.Pattern[str]]] = []
        self._listeners: list[Listener] = []
        self._unsubscribe: dict[str, Callable[[], None]] = {}
        # One media timer for every room of the process: rooms tick in turn on one 20 ms grid.
        self.clock_driver = ClockDriver(config.media.mixer.tick_ms / 1000)
        for rc in config.rooms:
            self.add(rc, "config")

    # -- events ---------------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Every room's events (rooms added later too) and the gateway's own (call records)."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

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
        )
        room.max_lobby = self._config.lobby.max_waiting
        conference = Conference(room, self._config.media, clock_driver=self.clock_driver)
        self.conferences[spec.id] = conference
        self.specs[spec.id] = spec
        self.origins[spec.id] = origin
        self._index_aliases(spec)
        self._unsubscribe[spec.id] = room.subscribe(self.publish)
        return conference

    def _index_aliases(self, spec: RoomConfig) -> None:
        for alias in [a for a, owner in self._aliases.items() if owner == spec.id]:
            del self._aliases[alias]
        for alias in (spec.id, *spec.aliases):
            self._aliases[alias.lower()] = spec.id

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
        )
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
        """The room a call to `called` goes to: an exact id or alias, else the first matching rule."""
        found = self.find(called)
        if found is not None:
            return found
        for rule, pattern in self._compiled:
            match = pattern.fullmatch(called.strip())
            if match is None:
                continue
            try:
                target = match.expand(rule.room).lower()
            except (re.error, IndexError):  # a rule stored before templates were checked: skip it, not the call
                log.warning("routing rule's room cannot be expanded; rule skipped", rule=rule.id, room=rule.room)
                continue
            conference = self.find(target)
            if conference is not None:
                log.debug("routed by rule", called=called, rule=rule.id, room=conference.room.id)
                return conference
            log.info("routing rule matched but names no room", called=called, rule=rule.id, room=target)
        return None

    def __iter__(self) -> Iterator[Conference]:
        return iter(list(self.conferences.values()))

    # -- room systems and rules -----------------------------------------------------------------

    def set_systems(self, systems: list[RoomSystemConfig]) -> None:
        self.systems = {s.id: s for s in systems}

    def system_for(self, uri: str) -> RoomSystemConfig | None:
        """The directory entry a caller's (From) URI belongs to."""
        address = system_address(uri)
        return next((s for s in self.systems.values() if system_address(s.uri) == address), None)

    def system_addresses(self, system: RoomSystemConfig) -> frozenset[str]:
        """The IP addresses a room system calls from: its URI's host when that is an IP literal,
        else what the host name resolved to when the entry was saved or last refreshed."""
        try:
            return frozenset({str(ipaddress.ip_address(uri_host(system.uri)))})
        except ValueError:
            return frozenset()

    def set_rules(self, rules: list[RoutingRuleConfig]) -> None:
        self.rules = list(rules)
        self._compiled = [(rule, re.compile(rule.pattern, re.IGNORECASE)) for rule in self.rules]

    async def close(self) -> None:
        for conference in list(self.conferences.values()):
            await conference.close()
