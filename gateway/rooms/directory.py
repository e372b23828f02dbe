"""The rooms this gateway hosts, by id and alias, each with its live Conference."""

from __future__ import annotations

from collections.abc import Iterator

from gateway.config import GatewayConfig
from gateway.rooms.conference import Conference
from gateway.rooms.room import Room
from gateway.transcode.clock import ClockDriver


class Directory:
    def __init__(self, config: GatewayConfig) -> None:
        self._config = config
        self.conferences: dict[str, Conference] = {}
        self._aliases: dict[str, str] = {}
        # One media timer for every room of the process: rooms tick in turn on one 20 ms grid.
        self.clock_driver = ClockDriver(config.media.mixer.tick_ms / 1000)
        for rc in config.rooms:
            room = Room(
                rc.id,
                rc.name,
                host_pin=rc.host_pin,
                guest_pin=rc.guest_pin,
                lobby=rc.lobby,
                locked=rc.locked,
                max_participants=rc.max_participants,
                default_lobby_wait_s=config.lobby.default_wait_s,
                aliases=rc.aliases,
            )
            room.max_lobby = config.lobby.max_waiting
            self.conferences[rc.id] = Conference(room, config.media, clock_driver=self.clock_driver)
            for alias in (rc.id, *rc.aliases):
                self._aliases[alias.lower()] = rc.id

    def find(self, room_or_alias: str) -> Conference | None:
        room_id = self._aliases.get(room_or_alias.strip().lower())
        return self.conferences.get(room_id) if room_id else None

    def __iter__(self) -> Iterator[Conference]:
        return iter(self.conferences.values())

    async def close(self) -> None:
        for conference in self.conferences.values():
            await conference.close()
