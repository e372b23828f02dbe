"""Administration: rooms, room systems, trunks and routing rules changed at run time and kept in the store.

The Directory serves what is live; the Store keeps what the API made. Every change is checked by the
Directory first (clashes), then stored, and undone in the Directory if storing fails, so the two
never disagree. Rooms of the configuration file are read-only here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from pydantic import SecretStr

from gateway.config import GatewayConfig, RoomConfig, RoomSystemConfig, RoutingRuleConfig, TrunkConfig
from gateway.config.models import MASKED_SECRET
from gateway.control.store import Store
from gateway.rooms.directory import Conflict, Directory, NotFound
from gateway.rooms.errors import RoomError

log = structlog.get_logger(__name__)


S = TypeVar("S", RoomSystemConfig, TrunkConfig)


def _with_password(entry: S, stored: SecretStr | None) -> S:
    """The API shows a password masked: that mask sent back keeps the one `stored`, "" removes it."""
    if entry.password is None:
        return entry
    given = entry.password.get_secret_value()
    if given == MASKED_SECRET:
        return entry.model_copy(update={"password": stored})
    return entry.model_copy(update={"password": None}) if not given else entry


class StorageFailed(RoomError):
    code = "storage_failed"


class Administration:
    def __init__(self, config: GatewayConfig, directory: Directory, store: Store) -> None:
        self.config = config
        self.directory = directory
        self.store = store
        # Rooms in the database that clash with the configuration file: kept, not served, reported.
        self.conflicts: list[dict[str, Any]] = []
        # Trunks made through the API (those of the configuration file are sip.trunks), and who is
        # told the whole list when it changes (the SIP service: registrations, calls' routing).
        self.api_trunks: dict[str, TrunkConfig] = {}
        self.trunk_listeners: list[Callable[[list[TrunkConfig]], None]] = []
        self._load()

    def _load(self) -> None:
        where = self.store.where or "memory"
        for spec in self.store.rooms():
            problems = self.directory.clashes(spec)
            if problems:
                self.conflicts.append({"room": spec.id, "problems": problems})
                log.error(
                    "room in the database clashes with the configuration file; it is not served until one "
                    "of them changes (delete it with DELETE /api/rooms/<id> or `gateway rooms delete <id>`, "
                    "or remove it from the file)",
                    room=spec.id,
                    database=where,
                    problems=problems,
                )
                continue
            self.directory.add(spec, "api")
        self.directory.set_systems(self.store.systems())
        self.directory.set_rules(self.store.rules())
        configured = {t.id for t in self.config.sip.trunks}
        for trunk in self.store.trunks():
            if trunk.id in configured:
                log.error("trunk in the database has the id of one in the configuration file; the file's is used", trunk=trunk.id)
                continue
            self.api_trunks[trunk.id] = trunk
        log.info(
            "administration loaded",
            database=where,
            rooms_from_database=sum(1 for o in self.directory.origins.values() if o == "api"),
            rooms_from_config=sum(1 for o in self.directory.origins.values() if o == "config"),
            systems=len(self.directory.systems),
            rules=len(self.directory.rules),
            conflicts=len(self.conflicts),
        )

    async def reload(self, table: str) -> None:
        """Another node changed `table` (rooms, systems, trunks, rules) in the shared database: the
        stored state is taken over here as it is (this node's own changes read back the same)."""
        if table == "rooms":
            stored = {spec.id: spec for spec in self.store.rooms()}
            ours = {room_id for room_id, origin in self.directory.origins.items() if origin == "api"}
            for room_id in ours - set(stored):
                await self.directory.remove(room_id)
                log.info("room deleted on another node", room=room_id)
            for room_id, spec in stored.items():
                if room_id in ours:
                    if self.directory.specs.get(room_id) != spec:
                        self.directory.update(spec)
                        log.info("room changed on another node", room=room_id)
                elif room_id not in self.directory.specs and not self.directory.clashes(spec):
                    self.directory.add(spec, "api")
                    log.info("room created on another node", room=room_id)
        elif table == "systems":
            self.directory.set_systems(self.store.systems())
        elif table == "rules":
            self.directory.set_rules(self.store.rules())
        elif table == "trunks":
            configured = {t.id for t in self.config.sip.trunks}
            stored_trunks = {t.id: t for t in self.store.trunks() if t.id not in configured}
            if stored_trunks != self.api_trunks:
                self.api_trunks = stored_trunks
                self._trunks_changed()

    def _stored(self, action: Any, undo: Any) -> None:
        try:
            action()
        except Exception as exc:
            undo()
            log.exception("storing a change failed; the change was undone")
            raise StorageFailed(f"the change could not be stored: {exc}") from None

    # -- rooms ----------------------------------------------------------------------------------

    async def create_room(self, spec: RoomConfig, actor: str) -> None:
        if any(c["room"] == spec.id for c in self.conflicts):
            raise Conflict(f"room {spec.id!r} is in the database but clashes with the configuration file: delete it first")
        self.directory.add(spec, "api")
        try:
            self.store.save_room(spec)
        except Exception as exc:
            await self.directory.remove(spec.id)
            log.exception("storing a new room failed; it was not created", room=spec.id)
            raise StorageFailed(f"the room could not be stored: {exc}") from None
        log.info("room created", room=spec.id, actor=actor)

    def update_room(self, spec: RoomConfig, actor: str) -> None:
        before = self.directory.specs.get(spec.id)
        self.directory.update(spec)
        if before is not None:
            self._stored(lambda: self.store.save_room(spec), lambda: self.directory.update(before))
        log.info("room changed", room=spec.id, actor=actor)

    async def delete_room(self, room_id: str, actor: str) -> None:
        conflicting = next((c for c in self.conflicts if c["room"] == room_id), None)
        if conflicting is not None:  # only in the database: deleting it resolves the clash
            self.store.delete_room(room_id)
            self.conflicts.remove(conflicting)
            log.info("clashing room deleted from the database", room=room_id, actor=actor)
            return
        spec = self.directory.specs.get(room_id)
        if spec is None:
            raise NotFound(f"no room {room_id!r}", "unknown_room")
        homed = sorted(s.id for s in self.directory.systems.values() if s.default_room == room_id)
        if homed and self.directory.origins.get(room_id) == "api":
            # A later room of the same id would otherwise inherit their trust (no PIN, no lobby).
            raise Conflict(f"room {room_id!r} is the default room of room system(s) {', '.join(map(repr, homed))}: change them first")
        await self.directory.remove(room_id)
        try:
            self.store.delete_room(room_id)
        except Exception as exc:
            self.directory.add(spec, "api")
            log.exception("deleting a room from the database failed; it was kept", room=room_id)
            raise StorageFailed(f"the room could not be deleted: {exc}") from None
        log.info("room deleted", room=room_id, actor=actor)

    # -- room systems -----------------------------------------------------------------------------

    def _check_system(self, system: RoomSystemConfig) -> RoomSystemConfig:
        """The entry as it is kept: its default room named by the room's id, not an alias (a trusted
        system is recognised by the id of the room it calls)."""
        if system.default_room is not None:
            home = self.directory.find(system.default_room)
            if home is None:
                raise NotFound(f"default_room {system.default_room!r} is no room", "unknown_room")
            system = system.model_copy(update={"default_room": home.room.id})
        try:
            self.directory.identity(system)  # (read by the protocol its scheme names)
        except ValueError as exc:
            raise RoomError(f"uri: {exc}", "bad_uri") from None
        for other in self.directory.systems.values():
            if other.id != system.id and other.uri.lower() == system.uri.lower():
                raise Conflict(f"room system {other.id!r} already has the URI {system.uri!r}")
        before = self.directory.systems.get(system.id)
        system = _with_password(system, before.password if before is not None else None)
        if system.password is not None:
            for other in self.directory.systems.values():
                if other.id != system.id and other.password is not None and other.register_user == system.register_user:
                    raise Conflict(f"room system {other.id!r} already registers as {system.register_user!r}")
        return system

    def save_system(self, system: RoomSystemConfig, actor: str, create: bool) -> RoomSystemConfig:
        exists = system.id in self.directory.systems
        if create and exists:
            raise Conflict(f"room system {system.id!r} exists")
        if not create and not exists:
            raise NotFound(f"no room system {system.id!r}", "unknown_system")
        system = self._check_system(system)
        before = dict(self.directory.systems)
        self.directory.set_systems([*(s for s in before.values() if s.id != system.id), system])
        self._stored(lambda: self.store.save_system(system), lambda: self.directory.set_systems(list(before.values())))
        log.info("room system " + ("added" if create else "changed"), system=system.id, actor=actor)
        return system

    def delete_system(self, system_id: str, actor: str) -> None:
        before = dict(self.directory.systems)
        if system_id not in before:
            raise NotFound(f"no room system {system_id!r}", "unknown_system")
        self.directory.set_systems([s for s in before.values() if s.id != system_id])
        self._stored(lambda: self.store.delete_system(system_id), lambda: self.directory.set_systems(list(before.values())))
        log.info("room system deleted", system=system_id, actor=actor)

    # -- trunks -----------------------------------------------------------------------------------

    def trunks(self) -> list[TrunkConfig]:
        """Every trunk: the configuration file's, then those made through the API."""
        return [*self.config.sip.trunks, *self.api_trunks.values()]

    def trunk_origin(self, trunk_id: str) -> str | None:
        if any(t.id == trunk_id for t in self.config.sip.trunks):
            return "config"
        return "api" if trunk_id in self.api_trunks else None

    def save_trunk(self, trunk: TrunkConfig, actor: str, create: bool) -> TrunkConfig:
        origin = self.trunk_origin(trunk.id)
        if origin == "config":
            raise Conflict(f"trunk {trunk.id!r} is defined in the configuration file: change it there")
        if create and origin is not None:
            raise Conflict(f"trunk {trunk.id!r} exists")
        if not create and origin is None:
            raise NotFound(f"no trunk {trunk.id!r}", "unknown_trunk")
        before = self.api_trunks.get(trunk.id)
        trunk = _with_password(trunk, before.password if before is not None else None)
        before_all = dict(self.api_trunks)
        self.api_trunks[trunk.id] = trunk
        self._stored(lambda: self.store.save_trunk(trunk), lambda: self._restore_trunks(before_all))
        log.info("trunk " + ("added" if create else "changed"), trunk=trunk.id, actor=actor)
        self._trunks_changed()
        return trunk

    def delete_trunk(self, trunk_id: str, actor: str) -> None:
        origin = self.trunk_origin(trunk_id)
        if origin == "config":
            raise Conflict(f"trunk {trunk_id!r} is defined in the configuration file: remove it there")
        if origin is None:
            raise NotFound(f"no trunk {trunk_id!r}", "unknown_trunk")
        before_all = dict(self.api_trunks)
        del self.api_trunks[trunk_id]
        self._stored(lambda: self.store.delete_trunk(trunk_id), lambda: self._restore_trunks(before_all))
        log.info("trunk deleted", trunk=trunk_id, actor=actor)
        self._trunks_changed()

    def _restore_trunks(self, before: dict[str, TrunkConfig]) -> None:
        self.api_trunks = before

    def _trunks_changed(self) -> None:
        trunks = self.trunks()
        for listener in self.trunk_listeners:
            try:
                listener(trunks)
            except Exception:
                log.exception("applying the changed trunks failed")

    # -- routing rules ----------------------------------------------------------------------------

    def set_rules(self, rules: list[RoutingRuleConfig], actor: str) -> None:
        ids = [r.id for r in rules]
        if len(set(ids)) != len(ids):
            raise Conflict("two rules have the same id")
        before = list(self.directory.rules)
        self.directory.set_rules(rules)
        self._stored(lambda: self.store.save_rules(rules), lambda: self.directory.set_rules(before))
        log.info("routing rules set", rules=ids, actor=actor)

    def add_rule(self, rule: RoutingRuleConfig, actor: str, position: int | None = None) -> None:
        if any(r.id == rule.id for r in self.directory.rules):
            raise Conflict(f"rule {rule.id!r} exists")
        rules = list(self.directory.rules)
        rules.insert(len(rules) if position is None else min(max(0, position), len(rules)), rule)
        self.set_rules(rules, actor)

    def delete_rule(self, rule_id: str, actor: str) -> None:
        rules = [r for r in self.directory.rules if r.id != rule_id]
        if len(rules) == len(self.directory.rules):
            raise NotFound(f"no rule {rule_id!r}", "unknown_rule")
        self.set_rules(rules, actor)
