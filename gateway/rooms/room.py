"""A room's rules as a sans-IO state machine: joining with PINs, lock, lobby, roles and the mute policy.

Every method validates the actor, changes state and emits RoomEvents to the subscribers; nothing
here touches media or sockets. `by=None` means the administrator (admin API), who may do what a
host may do.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from gateway.rooms.chat import Chat, ChatMessage, clean
from gateway.rooms.errors import JoinRefused, NotAllowed, UnknownParticipant
from gateway.rooms.events import EventType, RoomEvent
from gateway.rooms.floor import Content, Presentation, Presenters, StopReason
from gateway.rooms.participant import LegKind, MirrorState, Participant, Role
from gateway.rooms.quality import Measured
from gateway.transcode.layout import Layout

Listener = Callable[[RoomEvent], None]


class Schedule(Protocol):
    """Opening hours (gateway.rooms.hours.OpeningHours): guests may enter only while open."""

    def is_open(self, at: float) -> bool: ...

    def public(self, at: float) -> dict[str, Any]: ...


def new_participant_id() -> str:
    return "p" + secrets.token_hex(5)


@dataclass
class LobbyEntry:
    id: str
    name: str
    kind: LegKind
    since: float  # monotonic
    source: str | None = None
    number: str | None = None  # a caller's whole number (hosts see it: the lobby is theirs)
    via: str | None = None  # another node waits them (gateway/cluster/): its to admit or deny

    def public(self, position: int, estimated_wait_s: float) -> dict[str, Any]:
        view = {
            "id": self.id,
            "name": self.name,
            "kind": self.kind.value,
            "position": position,
            "estimated_wait_s": round(estimated_wait_s),
        }
        if self.number:
            view["number"] = self.number
        return view


@dataclass(frozen=True)
class JoinResult:
    participant: Participant | None = None
    lobby_entry: LobbyEntry | None = None


def _same_pin(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


Broadcasting = Literal["recording", "streaming"]
_BROADCAST_EVENTS: dict[Broadcasting, tuple[EventType, EventType]] = {
    "recording": ("recording_started", "recording_stopped"),
    "streaming": ("streaming_started", "streaming_stopped"),
}


class Room:
    def __init__(
        self,
        id: str,
        name: str | None = None,
        *,
        host_pin: str | None = None,
        guest_pin: str | None = None,
        lobby: bool = False,
        locked: bool = False,
        max_participants: int = 100,
        default_lobby_wait_s: float = 120.0,
        aliases: list[str] | None = None,
        language: str | None = None,
        opening_hours: Schedule | None = None,
        layout: Layout = Layout.SPEAKER,
        presenters: Presenters = Presenters.EVERYONE,
        sign_in_hosts: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        id_factory: Callable[[], str] = new_participant_id,
    ) -> None:
        self.id = id
        self.name = name or id
        self.host_pin = host_pin
        self.guest_pin = guest_pin
        self.lobby_enabled = lobby
        self.locked = locked
        self._locked_by_config = locked
        self.max_participants = max_participants
        self.aliases = list(aliases or [])
        self.language = language  # prompts; None: the gateway's default
        self.opening_hours = opening_hours
        self.sign_in_hosts = sign_in_hosts  # staff signed in with the host group host here without the PIN
        # The composed picture room systems see: its arrangement, and who a host put in the spotlight
        # (shown large for everyone, browsers included). The configured layout is the default a
        # host's choice returns to when the meeting ends.
        self.layout = layout
        self._configured_layout = layout
        self.spotlight: str | None = None
        # The presentation floor (rooms/floor.py): who may present, who does now
        self.presenters = presenters
        self.presentation: Presentation | None = None
        self.chat = Chat()
        self.participants: dict[str, Participant] = {}
        self.lobby: dict[str, LobbyEntry] = {}  # insertion order is queue order
        self._default_lobby_wait_s = default_lobby_wait_s
        self._decision_interval_s: float | None = None
        self._last_decision_at: float | None = None
        self._monotonic = monotonic
        self._wall = wall_clock
        self._new_id = id_factory
        self._listeners: list[Listener] = []
        # "Mute all guests" is also a policy for guests who join later, and a host's mute follows a
        # guest who leaves and comes back (same source and name): leaving must not lift a mute.
        self.guests_muted_on_entry = False
        self.guests_forbidden_on_entry = False
        self._held_mutes: dict[str, bool] = {}  # returner key -> self-unmute forbidden
        self.max_lobby = 200
        # Recorded or streamed now: what ("recording", "streaming") -> since (wall clock). Everyone
        # is told (the page's indicator, the spoken prompt, MQTT, call records).
        self.broadcasting: dict[Broadcasting, float] = {}
        self.may_broadcast: dict[Broadcasting, bool] = {"recording": True, "streaming": False}  # (its settings)
        self.streaming_interrupted = False  # the live stream lost its server and reconnects
        self.version = 0  # increases with every event: lets views of the room be cached

    # -- events ---------------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, type: EventType, participant: str | None = None, by: str | None = None, **data: Any) -> None:
        self.version += 1
        mirror = self.participants.get(participant) if participant is not None else None
        if mirror is not None and "via" in mirror.extra:
            data["via"] = mirror.extra["via"]  # (another node's participant: that node tells the world)
        event = RoomEvent(type=type, room=self.id, participant=participant, by=by, data=data, at=self._wall())
        for listener in list(self._listeners):
            listener(event)

    # -- lookups --------------------------------------------------------------------------------

    def get(self, participant_id: str) -> Participant:
        try:
            return self.participants[participant_id]
        except KeyError:
            raise UnknownParticipant(f"no participant {participant_id!r} in room {self.id!r}") from None

    def _require_host(self, by: str | None) -> None:
        if by is None:
            return
        actor = self.participants.get(by)
        if actor is None or not actor.is_host:
            raise NotAllowed("only a host may do this")

    @property
    def hosts_present(self) -> bool:
        return any(p.is_host for p in self.participants.values())

    def reconfigure(
        self,
        *,
        name: str | None,
        host_pin: str | None,
        guest_pin: str | None,
        lobby: bool,
        locked: bool,
        max_participants: int,
        aliases: list[str],
        language: str | None,
        opening_hours: Schedule | None,
        layout: Layout = Layout.SPEAKER,
        presenters: Presenters = Presenters.EVERYONE,
        sign_in_hosts: bool = False,
    ) -> None:
        """New settings for a live room (the admin changed them): whoever is in stays in."""
        self.name = name or self.id
        self.sign_in_hosts = sign_in_hosts
        self.host_pin, self.guest_pin = host_pin, guest_pin
        self.max_participants = max_participants
        self.aliases = list(aliases)
        self.language = language
        self.opening_hours = opening_hours
        if self._locked_by_config != locked:
            self._locked_by_config = locked
            if self.locked != locked:
                self.locked = locked
                self._emit("room_locked" if locked else "room_unlocked")
        if self.lobby_enabled != lobby:
            self.lobby_enabled = lobby
            self._emit("lobby_changed", None, waiting=len(self.lobby), enabled=lobby)
        if self._configured_layout != layout:
            self._configured_layout = layout
            self.set_layout(None, layout)
        if self.presenters is not presenters:
            self.presenters = presenters
            self._emit("presenters_changed", None, presenters=presenters.value)
            if self.presentation is not None and not self.may_present(self.presentation.presenter):
                self._end_presentation(StopReason.NOT_ALLOWED, None)

    def is_open(self) -> bool:
        return self.opening_hours is None or self.opening_hours.is_open(self._wall())

    # -- joining --------------------------------------------------------------------------------

    def role_for_pin(self, pin: str | None) -> Role:
        """Host PIN makes a host; the guest PIN (or none, when the room has none) a guest."""
        pin = (pin or "").strip()
        if self.host_pin and pin and _same_pin(pin, self.host_pin):
            return Role.HOST
        if self.guest_pin:
            if pin and _same_pin(pin, self.guest_pin):
                return Role.GUEST
            raise JoinRefused("wrong PIN", "wrong_pin")
        if pin:
            # A PIN was typed but is not the host PIN: say so rather than silently making a guest.
            raise JoinRefused("wrong PIN", "wrong_pin")
        return Role.GUEST

    def request_join(
        self,
        name: str,
        pin: str | None,
        kind: LegKind,
        source: str | None = None,
        role: Role | None = None,
        number: str | None = None,
    ) -> JoinResult:
        """`source` identifies where the join comes from (an address, a number), to recognise returners.
        `role` is given when the caller proved it otherwise (a signed host link, a trusted room system):
        then no PIN is asked."""
        role = role or self.role_for_pin(pin)
        if role is Role.GUEST and not self.is_open():
            raise JoinRefused("the room is closed now (see its opening hours)", "closed")
        if role is Role.GUEST and self.locked:
            raise JoinRefused("the meeting is locked", "locked")
        if role is Role.GUEST and self.lobby_enabled:
            if len(self.lobby) >= self.max_lobby:
                raise JoinRefused("the waiting room is full", "full")
            entry = LobbyEntry(
                id=self._new_id(), name=name, kind=kind, since=self._monotonic(), source=source, number=number
            )
            if not self.lobby:
                self._last_decision_at = entry.since
            self.lobby[entry.id] = entry
            self._emit("lobby_changed", entry.id, waiting=len(self.lobby), name=name)
            return JoinResult(lobby_entry=entry)
        return JoinResult(participant=self._add(self._new_id(), name, role, kind, source, number=number))

    def add_invited(
        self, name: str, kind: LegKind, source: str | None = None, direction: str = "out", number: str | None = None
    ) -> Participant:
        """Someone the room called (dial-out), or its own trusted room system calling in: a guest,
        past the lobby, the lock and the opening hours (an administrator vouched for them), still
        within the room's size; trusted (it may present where only hosts and trusted room systems
        may)."""
        participant = self._add(self._new_id(), name, Role.GUEST, kind, source, direction=direction, number=number)
        participant.trusted = True
        return participant

    def add_resumed(
        self,
        name: str,
        role: Role,
        kind: LegKind,
        source: str | None,
        *,
        self_muted: bool,
        host_muted: bool,
        self_unmute_forbidden: bool,
    ) -> Participant:
        """Someone who was in this meeting on another node, back after that node failed (a signed
        resume token vouches for it): with their role and mute state, past the lobby, the lock and the
        opening hours, still within the room's size. A mute-all in force here holds them too."""
        participant = self._add(
            self._new_id(), name, role, kind, source,
            mute=(self_muted, host_muted, self_unmute_forbidden),
        )  # fmt: skip
        return participant

    def waiting_since(self, entry_id: str) -> float:
        """When someone began to wait in the lobby, on the wall clock (another node's clock agrees)."""
        return self._wall() - max(0.0, self._monotonic() - self.lobby[entry_id].since)

    def add_waiting_resumed(self, name: str, kind: LegKind, source: str | None, waiting_since: float) -> LobbyEntry:
        """Someone who waited in this room's lobby on another node, back after that node failed (a
        signed resume token vouches for it): in the queue where the time they came puts them, before
        those who came after them, whatever the order they come back in; within the lobby's size."""
        if len(self.lobby) >= self.max_lobby:
            raise JoinRefused("the waiting room is full", "full")
        waited = max(0.0, self._wall() - waiting_since)
        entry = LobbyEntry(id=self._new_id(), name=name, kind=kind, since=self._monotonic() - waited, source=source)
        self._queue(entry)
        self._emit("lobby_changed", entry.id, waiting=len(self.lobby), name=name)
        return entry

    def _queue(self, entry: LobbyEntry) -> None:
        """Into the lobby where the time it came puts it."""
        if not self.lobby:
            self._last_decision_at = entry.since
        queue = sorted([*self.lobby.values(), entry], key=lambda waiting: waiting.since)
        self.lobby.clear()
        self.lobby.update((waiting.id, waiting) for waiting in queue)

    def add_lobby_mirror(self, entry_id: str, name: str, kind: LegKind, waiting_since: float, via: str) -> None:
        """Someone waiting in this room's lobby on another node (gateway/cluster/): hosts here see
        them in the queue by the time they came, and admitting or denying them goes to that node."""
        if entry_id in self.lobby or entry_id in self.participants:
            return
        waited = max(0.0, self._wall() - waiting_since)
        self._queue(LobbyEntry(id=entry_id, name=name, kind=kind, since=self._monotonic() - waited, via=via))
        self._emit("lobby_changed", entry_id, waiting=len(self.lobby), name=name, via=via)

    def remove_lobby_mirror(self, entry_id: str) -> None:
        entry = self.lobby.get(entry_id)
        if entry is not None and entry.via is not None:
            del self.lobby[entry_id]
            self._emit("lobby_changed", entry_id, waiting=len(self.lobby), left=True, via=entry.via)

    def lobby_mirrors(self, via: str) -> list[LobbyEntry]:
        return [entry for entry in self.lobby.values() if entry.via == via]

    @staticmethod
    def _returner_key(source: str | None, name: str) -> str | None:
        return f"{source}|{name.strip().casefold()}" if source else None

    def _add(
        self,
        participant_id: str,
        name: str,
        role: Role,
        kind: LegKind,
        source: str | None = None,
        direction: str = "in",
        number: str | None = None,
        mute: tuple[bool, bool, bool] | None = None,  # (self-muted, host-muted, self-unmute forbidden) it brings along
    ) -> Participant:
        # Places kept for a reconnect do not count: they must never lock a host out.
        if sum(1 for p in self.participants.values() if p.connected) >= self.max_participants:
            raise JoinRefused("the meeting is full", "full")
        participant = Participant(
            id=participant_id, name=name, role=role, kind=kind, joined_at=self._wall(), source=source, number=number
        )
        participant.extra["direction"] = direction
        if role is Role.GUEST:
            held = self._held_mutes.get(self._returner_key(source, name) or "")
            if self.guests_muted_on_entry or held is not None:
                participant.host_muted = True
                participant.self_unmute_forbidden = self.guests_forbidden_on_entry or bool(held)
        if mute is not None:
            participant.self_muted = mute[0]
            participant.host_muted = participant.host_muted or mute[1]
            participant.self_unmute_forbidden = participant.self_unmute_forbidden or mute[2]
        self.participants[participant.id] = participant
        self._emit("participant_joined", participant.id, name=name, role=role.value, kind=kind.value)
        return participant

    # -- mirrors: participants another node of the cluster serves (gateway/cluster/) -----------

    def add_mirror(self, state: MirrorState, via: str) -> Participant:
        """Shows a participant of this meeting whom the node `via` serves. Its audio comes inside
        that node's link; its state is that node's to change (`update_mirror` follows it); a host's
        action on it here changes it here at once and goes to that node as a command."""
        p = self.participants.get(state.id)
        if p is not None:
            if p.extra.get("via") != via:
                raise JoinRefused("that participant is someone else here", "conflict")
            self.update_mirror(state)
            return p
        p = Participant(id=state.id, name=state.name, role=state.role, kind=state.kind, joined_at=state.joined_at)
        p.extra["via"] = via
        self._apply_mirror(p, state)
        self.participants[p.id] = p
        self._emit("participant_joined", p.id, name=p.name, role=p.role.value, kind=p.kind.value)
        return p

    def update_mirror(self, state: MirrorState) -> None:
        """Another node's participant changed: the same events as a change here."""
        p = self.participants.get(state.id)
        if p is None or p.extra.get("via") is None:
            return
        before = dataclasses.replace(p)
        self._apply_mirror(p, state)
        if (before.self_muted, before.host_muted) != (p.self_muted, p.host_muted):
            kind: EventType = "mute_changed"
            if before.audio_muted != p.audio_muted:
                kind = "muted" if p.audio_muted else "unmuted"
            self._emit(kind, p.id, None, self_muted=p.self_muted, host_muted=p.host_muted)
        if before.self_unmute_forbidden != p.self_unmute_forbidden:
            self._emit("self_unmute_forbidden" if p.self_unmute_forbidden else "self_unmute_allowed", p.id)
        if before.hand_raised != p.hand_raised:
            self._emit("hand_raised" if p.hand_raised else "hand_lowered", p.id, p.id)
        if before.speaking != p.speaking:
            self._emit("speaking_started" if p.speaking else "speaking_stopped", p.id)
        if before.connected != p.connected:
            self._emit("connection_changed", p.id, connected=p.connected)
        if before.quality != p.quality and p.quality is not None:
            self._emit("quality_changed", p.id, quality=p.quality)
        if before.video_off != p.video_off:
            self._emit("video_changed", p.id, p.id, video_off=p.video_off)

    @staticmethod
    def _apply_mirror(p: Participant, state: MirrorState) -> None:
        p.name = state.name
        p.self_muted, p.host_muted = state.self_muted, state.host_muted
        p.self_unmute_forbidden = state.self_unmute_forbidden
        p.hand_raised, p.speaking, p.connected = state.hand_raised, state.speaking, state.connected
        p.quality, p.video_off = state.quality, state.video_off

    def mirrors(self, via: str | None = None) -> list[Participant]:
        """The participants other nodes serve (those of node `via`)."""
        return [p for p in self.participants.values() if p.extra.get("via") is not None and via in (None, p.extra["via"])]

    @property
    def has_own_participants(self) -> bool:
        """Someone this node serves is in the meeting (a mirror alone keeps no meeting here)."""
        return any(p.extra.get("via") is None for p in self.participants.values())

    @property
    def in_use(self) -> bool:
        """Someone this node serves is in the meeting or waits in its lobby (asked at every room
        event: stops at the first one)."""
        return self.has_own_participants or any(entry.via is None for entry in self.lobby.values())

    @property
    def own_people(self) -> int:
        """Those this node serves, in the meeting and in its lobby."""
        return sum(1 for p in self.participants.values() if p.extra.get("via") is None) + sum(
            1 for entry in self.lobby.values() if entry.via is None
        )

    def _remember_mute(self, p: Participant) -> None:
        key = self._returner_key(p.source, p.name)
        if key is not None and p.host_muted and not p.is_host:
            self._held_mutes[key] = p.self_unmute_forbidden

    def leave(self, participant_id: str) -> None:
        """The participant hung up or its connection was lost."""
        participant = self.participants.pop(participant_id, None)
        if participant is not None:
            self._remember_mute(participant)
            via = {"via": participant.extra["via"]} if "via" in participant.extra else {}
            self._emit("participant_left", participant_id, **via)
            self._end_spotlight_of(participant_id)
            self._end_presentation_of(participant_id)
            self._reset_lock_if_empty()
        elif self.lobby.pop(participant_id, None) is not None:
            self._emit("lobby_changed", participant_id, waiting=len(self.lobby), left=True)

    def _reset_lock_if_empty(self) -> None:
        """The last participant is gone: the next meeting starts with the configured lock (and no
        mute policy from this one)."""
        if not self.participants:
            self._reset_mute_policy()
            self.chat.clear()  # (nothing of a meeting's chat outlives it)
            if self.layout is not self._configured_layout:  # (a host's choice lasts for their meeting)
                self.layout = self._configured_layout
                self._emit("layout_changed", None, layout=self.layout.value)
        if not self.participants and self.locked != self._locked_by_config:
            self.locked = self._locked_by_config
            self._emit("room_locked" if self.locked else "room_unlocked")

    def remove(self, by: str | None, participant_id: str) -> None:
        self._require_host(by)
        removed = self.get(participant_id)
        self._remember_mute(removed)
        del self.participants[participant_id]
        self._emit("participant_removed", participant_id, by, **({"via": removed.extra["via"]} if "via" in removed.extra else {}))
        self._end_spotlight_of(participant_id)
        self._end_presentation_of(participant_id)
        self._reset_lock_if_empty()

    def end(self, by: str | None, reason: str = "meeting_ended") -> list[str]:
        """Ends the meeting for everyone (and everyone waiting); the room stays for the next one.
        `reason` is what legs tell their people: meeting_ended, or shutdown (the gateway stops)."""
        self._require_host(by)
        ended = [*self.participants, *self.lobby]
        self.participants.clear()
        self.lobby.clear()
        self.locked = self._locked_by_config
        self._reset_mute_policy()
        self.spotlight, self.layout = None, self._configured_layout
        self.chat.clear()
        if self.presentation is not None:
            self._end_presentation(StopReason.MEETING_ENDED, by)
        self._emit("meeting_ended", None, by, participants=ended, reason=reason)
        return ended

    # -- lobby ----------------------------------------------------------------------------------

    def lobby_position(self, entry_id: str) -> tuple[int, float]:
        """1-based queue position and the estimated wait in seconds."""
        order = list(self.lobby)
        if entry_id not in self.lobby:
            raise UnknownParticipant(f"{entry_id!r} is not waiting in room {self.id!r}")
        position = order.index(entry_id) + 1
        interval = self._decision_interval_s or self._default_lobby_wait_s
        # Time since the last decision (or since the head of the queue arrived) is already served.
        served = self._monotonic() - (self._last_decision_at or self.lobby[order[0]].since)
        return position, max(0.0, position * interval - served)

    def lobby_public(self) -> list[dict[str, Any]]:
        return [entry.public(*self.lobby_position(entry.id)) for entry in self.lobby.values()]

    def _take_from_lobby(self, by: str | None, entry_id: str) -> LobbyEntry:
        self._require_host(by)
        entry = self.lobby.get(entry_id)
        if entry is None:
            raise UnknownParticipant(f"{entry_id!r} is not waiting in room {self.id!r}")
        now = self._monotonic()
        # Smoothed interval between a host's decisions: the basis of the wait estimate.
        started = max(self._last_decision_at or entry.since, entry.since)
        sample = max(now - started, 1.0)
        prev = self._decision_interval_s
        self._decision_interval_s = sample if prev is None else 0.7 * prev + 0.3 * sample
        self._last_decision_at = now
        del self.lobby[entry_id]
        return entry

    def admit(self, by: str | None, entry_id: str) -> Participant:
        self._require_host(by)  # before the capacity check: a guest learns nothing but "not allowed"
        entry = self.lobby.get(entry_id)
        if entry is not None and len(self.participants) >= self.max_participants:
            raise JoinRefused("the meeting is full", "full")
        entry = self._take_from_lobby(by, entry_id)
        via = {"via": entry.via} if entry.via is not None else {}
        self._emit("lobby_admitted", entry.id, by, name=entry.name, **via)
        self._emit("lobby_changed", entry.id, by, waiting=len(self.lobby), **via)
        if entry.via is not None:
            # (another node waits them: it admits them, and they show here as its participant)
            return Participant(id=entry.id, name=entry.name, role=Role.GUEST, kind=entry.kind, joined_at=self._wall())
        return self._add(entry.id, entry.name, Role.GUEST, entry.kind, entry.source, number=entry.number)

    def deny(self, by: str | None, entry_id: str) -> None:
        entry = self._take_from_lobby(by, entry_id)
        via = {"via": entry.via} if entry.via is not None else {}
        self._emit("lobby_denied", entry.id, by, name=entry.name, **via)
        self._emit("lobby_changed", entry.id, by, waiting=len(self.lobby), **via)

    # -- lock -----------------------------------------------------------------------------------

    def set_locked(self, by: str | None, locked: bool) -> None:
        self._require_host(by)
        if self.locked != locked:
            self.locked = locked
            self._emit("room_locked" if locked else "room_unlocked", None, by)

    # -- mute policy ----------------------------------------------------------------------------

    def _set_mute(self, p: Participant, by: str | None, *, self_muted: bool | None = None, host_muted: bool | None = None) -> None:
        """Changes mute flags and says so: `muted`/`unmuted` when the participant's audibility changes,
        `mute_changed` when only who holds the mute changes (so the host's view never goes stale)."""
        before = (p.self_muted, p.host_muted, p.audio_muted)
        if self_muted is not None:
            p.self_muted = self_muted
        if host_muted is not None:
            p.host_muted = host_muted
        if (p.self_muted, p.host_muted) == before[:2]:
            return
        kind: EventType = "mute_changed"
        if p.audio_muted != before[2]:
            kind = "muted" if p.audio_muted else "unmuted"
        self._emit(kind, p.id, by, self_muted=p.self_muted, host_muted=p.host_muted)

    def set_self_muted(self, participant_id: str, muted: bool) -> None:
        """The participant's own microphone switch. Unmuting also lifts a host's mute unless forbidden."""
        p = self.get(participant_id)
        if muted:
            self._set_mute(p, p.id, self_muted=True)
            return
        if p.host_muted and p.self_unmute_forbidden and not p.is_host:
            raise NotAllowed("a host has muted you and not allowed you to unmute", "self_unmute_forbidden")
        self._set_mute(p, p.id, self_muted=False, host_muted=False)

    def mute(self, by: str | None, participant_id: str, forbid_self_unmute: bool = False) -> None:
        self._require_host(by)
        p = self.get(participant_id)
        if forbid_self_unmute and not p.is_host and not p.self_unmute_forbidden:
            p.self_unmute_forbidden = True
            self._emit("self_unmute_forbidden", p.id, by)
        self._set_mute(p, by, host_muted=True)

    def unmute(self, by: str | None, participant_id: str) -> None:
        """Lifts a host's mute (and its ban on self-unmute). A participant's own mute stays theirs."""
        self._require_host(by)
        p = self.get(participant_id)
        if p.self_unmute_forbidden:
            p.self_unmute_forbidden = False
            self._emit("self_unmute_allowed", p.id, by)
        self._set_mute(p, by, host_muted=False)

    def set_self_unmute_forbidden(self, by: str | None, participant_id: str, forbidden: bool) -> None:
        self._require_host(by)
        p = self.get(participant_id)
        if p.is_host and forbidden:
            raise NotAllowed("hosts can always unmute themselves")
        if p.self_unmute_forbidden != forbidden:
            p.self_unmute_forbidden = forbidden
            self._emit("self_unmute_forbidden" if forbidden else "self_unmute_allowed", p.id, by)

    def _reset_mute_policy(self) -> None:
        self.guests_muted_on_entry = self.guests_forbidden_on_entry = False
        self._held_mutes.clear()

    def allow_guests_to_unmute(self, by: str | None) -> None:
        """Ends a 'mute all guests' policy and lets every guest unmute themselves again."""
        self._require_host(by)
        self.guests_muted_on_entry = self.guests_forbidden_on_entry = False
        self._held_mutes = {k: False for k in self._held_mutes}
        for p in list(self.participants.values()):
            if p.self_unmute_forbidden:
                p.self_unmute_forbidden = False
                self._emit("self_unmute_allowed", p.id, by)
        self._emit("mute_policy_changed", None, by, guests_muted_on_entry=False, guests_may_unmute=True)

    def mute_all_guests(self, by: str | None, forbid_self_unmute: bool = False) -> list[str]:
        """Mutes every guest now and every guest who joins later, until a host allows unmuting."""
        self._require_host(by)
        self.guests_muted_on_entry = True
        self.guests_forbidden_on_entry = forbid_self_unmute
        self._emit(
            "mute_policy_changed", None, by, guests_muted_on_entry=True, guests_may_unmute=not forbid_self_unmute
        )
        muted = []
        for p in list(self.participants.values()):
            if not p.is_host:
                self.mute(by, p.id, forbid_self_unmute)
                muted.append(p.id)
        return muted

    # -- hand, video, speaking ------------------------------------------------------------------

    def set_hand(self, by: str | None, participant_id: str, raised: bool) -> None:
        """Anyone raises or lowers their own hand; a host may lower anyone's."""
        p = self.get(participant_id)
        if by != participant_id:
            if raised:
                raise NotAllowed("only the participant can raise their hand")
            self._require_host(by)
        if p.hand_raised != raised:
            p.hand_raised = raised
            self._emit("hand_raised" if raised else "hand_lowered", p.id, by)

    # -- chat ---------------------------------------------------------------------------------------

    def send_chat(self, participant_id: str, text: str) -> ChatMessage:
        """A message from a participant to everyone in the meeting (while a host has not turned the
        chat off; a host's own still go out, to say why)."""
        p = self.get(participant_id)
        if not self.chat.enabled and not p.is_host:
            raise NotAllowed("a host turned the chat off", "chat_off")
        text = clean(text)
        if not text:
            raise NotAllowed("an empty message", "chat_empty")
        if not self.chat.allowed(participant_id):
            raise NotAllowed("too many messages: wait a moment", "rate_limited")
        message = self.chat.add(participant_id, p.name, text, p.is_host, self._wall())
        self._emit("chat_message", participant_id, participant_id, message=message.public())
        return message

    def mirror_chat(self, sender: str, name: str, text: str, host: bool, at: float) -> ChatMessage | None:
        """A chat message written on another node of the meeting (that node checked it): shown here
        too, with an id of this room's. None: its sender is not in the meeting here."""
        p = self.participants.get(sender)
        if p is None or p.extra.get("via") is None:
            return None
        message = self.chat.add(sender, name, clean(text), host, at)
        self._emit("chat_message", sender, sender, message=message.public())
        return message

    def remove_chat(self, by: str | None, message_id: int) -> None:
        self._require_host(by)
        if self.chat.remove(message_id) is not None:
            self._emit("chat_removed", None, by, id=message_id)

    def set_chat(self, by: str | None, enabled: bool) -> None:
        self._require_host(by)
        if self.chat.enabled != enabled:
            self.chat.enabled = enabled
            self._emit("chat_changed", None, by, enabled=enabled)

    def set_video_off(self, participant_id: str, off: bool) -> None:
        p = self.get(participant_id)
        if p.video_off != off:
            p.video_off = off
            self._emit("video_changed", p.id, p.id, video_off=off)

    def set_layout(self, by: str | None, layout: Layout) -> None:
        """A host (or the administrator) chooses how room systems see the meeting."""
        self._require_host(by)
        layout = Layout(layout)
        if self.layout is not layout:
            self.layout = layout
            self._emit("layout_changed", None, by, layout=layout.value)

    def set_spotlight(self, by: str | None, participant_id: str | None) -> None:
        """A host shows one participant large for everyone (the chair of a council session);
        None ends the spotlight."""
        self._require_host(by)
        if participant_id is not None:
            self.get(participant_id)
        if self.spotlight != participant_id:
            self.spotlight = participant_id
            self._emit("spotlight_changed", participant_id, by, spotlight=participant_id)

    # -- the presentation floor (rooms/floor.py) ------------------------------------------------

    def may_present(self, participant_id: str) -> bool:
        participant = self.participants.get(participant_id)
        if participant is None:
            return False
        return self.presenters is Presenters.EVERYONE or participant.is_host or participant.trusted

    def start_presenting(self, participant_id: str, content: Content = Content.SCREEN) -> Presentation:
        """The participant takes the floor (from whoever had it, who is told: taken_over)."""
        self.get(participant_id)
        if not self.may_present(participant_id):
            raise NotAllowed("only hosts and trusted room systems may present in this room")
        current = self.presentation
        if current is not None and current.presenter == participant_id:
            if current.content is content:
                return current
            self._end_presentation(StopReason.STOPPED, participant_id)
        elif current is not None:
            self._end_presentation(StopReason.TAKEN_OVER, participant_id)
        self.presentation = Presentation(participant_id, self._wall(), content)
        self._emit("presentation_started", participant_id, participant_id, content=content.value, since=self.presentation.since)
        return self.presentation

    def stop_presenting(self, by: str | None, participant_id: str | None = None) -> None:
        """Ends the presentation: by its presenter (or `participant_id` names it: it stops only
        that one's), by a host, or with `by` None by the gateway's operators (the API, MQTT)."""
        current = self.presentation
        if current is None or (participant_id is not None and current.presenter != participant_id):
            return
        if by is not None and by != current.presenter:
            self._require_host(by)
        if by is None:
            reason = StopReason.STOPPED_BY_OPERATOR
        else:
            reason = StopReason.STOPPED if by == current.presenter else StopReason.STOPPED_BY_HOST
        self._end_presentation(reason, by)

    def mirror_presentation(self, presenter: str, content: Content, since: float) -> None:
        """Another node's participant presents (that node let them, by the room's policy there): the
        floor here follows, unless it went to someone later (the latest start wins on every node,
        so two nodes that started at once agree)."""
        p = self.participants.get(presenter)
        current = self.presentation
        if p is None or p.extra.get("via") is None:
            return
        if current is not None:
            if (current.since, current.presenter) > (since, presenter):
                return
            if current.presenter == presenter and current.content is content:
                return
            self._end_presentation(StopReason.STOPPED if current.presenter == presenter else StopReason.TAKEN_OVER, presenter)
        self.presentation = Presentation(presenter, since, content)
        self._emit("presentation_started", presenter, presenter, content=content.value, since=since)

    def end_presentation_of(self, presenter: str, reason: StopReason) -> None:
        """Ends the presenter's presentation, if it is the room's now (another node said so)."""
        if self.presentation is not None and self.presentation.presenter == presenter:
            self._end_presentation(reason, None)

    def _end_presentation_of(self, participant_id: str) -> None:
        if self.presentation is not None and self.presentation.presenter == participant_id:
            self._end_presentation(StopReason.LEFT, None)

    def _end_presentation(self, reason: StopReason, by: str | None) -> None:
        ended, self.presentation = self.presentation, None
        if ended is not None:
            self._emit("presentation_stopped", ended.presenter, by, reason=reason.value, content=ended.content.value)

    def _end_spotlight_of(self, participant_id: str) -> None:
        if self.spotlight == participant_id:
            self.spotlight = None
            self._emit("spotlight_changed", None, None, spotlight=None)

    def set_connected(self, participant_id: str, connected: bool) -> None:
        """A leg lost its connection (its place is kept for a while) or came back."""
        p = self.participants.get(participant_id)
        if p is not None and p.connected != connected:
            p.connected = connected
            if not connected:
                p.speaking = False
            self._emit("connection_changed", p.id, connected=connected)

    def set_speaking(self, participant_id: str, speaking: bool) -> None:
        p = self.participants.get(participant_id)
        if p is not None and p.speaking != speaking:
            p.speaking = speaking
            self._emit("speaking_started" if speaking else "speaking_stopped", p.id)

    def set_quality(self, participant_id: str, measured: Measured) -> None:
        """The participant's connection got better or worse (the conference measures it)."""
        p = self.participants.get(participant_id)
        if p is None or p.quality == measured.quality.value:
            return
        p.quality = measured.quality.value
        self._emit(
            "quality_changed",
            p.id,
            quality=p.quality,
            loss_percent=round(100 * measured.loss, 1),
            jitter_ms=None if measured.jitter_ms is None else round(measured.jitter_ms, 1),
            rtt_ms=None if measured.rtt_ms is None else round(measured.rtt_ms),
        )

    def set_broadcasting(self, what: Broadcasting, on: bool, by: str | None = None, **data: Any) -> None:
        """The meeting is now recorded or streamed live (`what`), or no longer: an event says so."""
        if on and what not in self.broadcasting:
            self.broadcasting[what] = self._wall()
            self._emit(_BROADCAST_EVENTS[what][0], None, by, **data)
        elif not on and self.broadcasting.pop(what, None) is not None:
            if what == "streaming":
                self.streaming_interrupted = False
            self._emit(_BROADCAST_EVENTS[what][1], None, by, **data)

    def set_streaming_up(self, up: bool, reason: str | None = None) -> None:
        """The live stream reached its server (again), or lost it (and reconnects): said when it
        changes."""
        if "streaming" not in self.broadcasting or self.streaming_interrupted == (not up):
            return
        self.streaming_interrupted = not up
        if up:
            self._emit("streaming_resumed", None)
        else:
            self._emit("streaming_interrupted", None, reason=reason)

    # -- views ----------------------------------------------------------------------------------

    def public(self, for_host: bool) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "locked": self.locked,
            "lobby_enabled": self.lobby_enabled,
            "guests_muted_on_entry": self.guests_muted_on_entry,
            "guests_may_unmute": not self.guests_forbidden_on_entry,
            # (a caller's whole number for hosts only: the room sees the name or a masked number)
            "participants": [
                {**p.public(), "number": p.number} if for_host and p.number else p.public()
                for p in self.participants.values()
            ],
            "lobby": self.lobby_public() if for_host else [],
            "lobby_waiting": len(self.lobby),
            "layout": self.layout.value,
            "spotlight": self.spotlight,
            "presenters": self.presenters.value,
            "presentation": self.presentation.public() if self.presentation is not None else None,
            "chat_enabled": self.chat.enabled,
            "broadcasting": {what: since for what, since in self.broadcasting.items()},
            "streaming_interrupted": self.streaming_interrupted,
            # (hosts: what they may start; a room may forbid it, and streams need a stream_url)
            "may_broadcast": dict(self.may_broadcast) if for_host else {},
        }
