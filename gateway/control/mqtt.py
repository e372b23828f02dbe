"""MQTT bridge: which room events are published (and how they read), which live-control commands are
taken (and how they are checked), over the MQTT session (gateway/control/mqtt_session.py).

The event and command logic is pure (functions and small classes below, tested without a broker);
`MqttBridge` ties it to the Directory and to an MqttSession. Room events are taken synchronously
from the Directory's listener into the session's bounded outbox, so the media loop never waits for
the broker.

Topics (`<base>` = `<prefix>/<node>`):
  <base>/status                          retained presence: {"state": "online"|"offline", ...}
  <base>/rooms/<room>/events/<type>      one JSON event, QoS 1
  <base>/rooms/<room>/commands           JSON commands in (token required)
  <base>/rooms/<room>/replies            the answer to each command
A command published with an MQTT v5 Response Topic is answered there instead (Correlation Data is
copied back), unless that topic lies under `<prefix>/`: nobody may make the gateway speak in its
own (or another node's) namespace.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from pydantic import BaseModel, ConfigDict, ValidationError

from gateway.config import MqttConfig
from gateway.control.broadcasts import What
from gateway.control.metrics import MqttCounters
from gateway.control.mqtt_session import (
    Backoff,
    MqttSession,
    Outbox,
    Outgoing,
    SessionStats,
    Topics,
    status_payload,
)
from gateway.rooms.directory import Directory
from gateway.rooms.errors import RoomError
from gateway.rooms.events import RoomEvent
from gateway.transcode.layout import Layout

log = structlog.get_logger(__name__)

__all__ = [
    "ACTOR",
    "COMMANDS",
    "PUBLISHED_EVENTS",
    "Backoff",
    "CommandRequest",
    "Control",
    "MqttBridge",
    "Outbox",
    "Outgoing",
    "ParticipantNames",
    "Refusal",
    "Topics",
    "Who",
    "event_payload",
    "execute",
    "parse_command",
    "scrub",
    "status_payload",
]

# Events worth telling the outside world; the rest (video, connection, mute-holder changes) are UI detail.
# Changes of the whole meeting that every node sharing it makes (gateway/cluster/cascade.py)
ROOM_WIDE_EVENTS = frozenset({"room_locked", "room_unlocked", "meeting_ended", "layout_changed", "spotlight_changed"})
PUBLISHED_EVENTS = frozenset(
    {
        "participant_joined",
        "participant_left",
        "participant_removed",
        "muted",
        "unmuted",
        "hand_raised",
        "hand_lowered",
        "speaking_started",
        "speaking_stopped",
        "quality_changed",
        "lobby_changed",
        "lobby_admitted",
        "lobby_denied",
        "room_locked",
        "room_unlocked",
        "meeting_ended",
        "layout_changed",
        "spotlight_changed",
        "presentation_started",
        "presentation_stopped",
        "call_record_written",
        "recording_started",
        "recording_stopped",
        "streaming_started",
        "streaming_stopped",
        "streaming_interrupted",
        "streaming_resumed",
    }
)

COMMANDS = (
    "mute",
    "unmute",
    "remove",
    "admit",
    "deny",
    "lock",
    "unlock",
    "dial",
    "set_layout",
    "spotlight",
    "stop_presentation",
    "start_recording",
    "stop_recording",
    "start_streaming",
    "stop_streaming",
)
LAYOUTS = tuple(layout.value for layout in Layout)
MAX_COMMAND_BYTES = 16 * 1024
ACTOR = "mqtt"

# Keys never published, at any depth of an event's data (a call record, a room's settings).
_SECRET_KEYS = ("pin", "token", "password", "secret")


# -- events ---------------------------------------------------------------------------------------


def _is_secret(key: str) -> bool:
    words = key.lower().replace("-", "_").split("_")
    return any(word in _SECRET_KEYS or word.rstrip("s") in _SECRET_KEYS for word in words)


def scrub(value: Any) -> Any:
    """A copy of `value` without any key that names a PIN, token, password or secret."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if not (isinstance(k, str) and _is_secret(k))}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


@dataclass(frozen=True)
class Who:
    name: str
    kind: str


class ParticipantNames:
    """Remembers who a participant id is, so a `participant_left` (sent after the room forgot the
    participant) still carries the name and kind."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], Who] = {}

    def note(self, room: str, participant: str, who: Who) -> None:
        self._known[(room, participant)] = who

    def get(self, room: str, participant: str) -> Who | None:
        return self._known.get((room, participant))

    def after(self, event: RoomEvent) -> None:
        """Forgets whoever the event says is gone."""
        gone = event.type in ("participant_left", "participant_removed", "lobby_denied") or (
            event.type == "lobby_changed" and event.data.get("left")
        )
        if gone and event.participant:
            self._known.pop((event.room, event.participant), None)
        elif event.type == "meeting_ended":
            for key in [k for k in self._known if k[0] == event.room]:
                del self._known[key]

    def __len__(self) -> int:
        return len(self._known)


def event_payload(event: RoomEvent, who: Who | None, node: str) -> dict[str, Any] | None:
    """The JSON object published for `event`, or None when this event type is not published."""
    if event.type not in PUBLISHED_EVENTS:
        return None
    payload: dict[str, Any] = scrub(event.as_dict())
    payload["node"] = node
    if who is not None:
        payload["participant_name"] = who.name
        payload["participant_kind"] = who.kind
    return payload


# -- commands -------------------------------------------------------------------------------------


class CommandRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str | None = None
    id: str | int | None = None
    command: str
    participant: str | None = None
    uri: str | None = None
    system: str | None = None
    forbid_self_unmute: bool = False
    layout: str | None = None


@dataclass(frozen=True)
class Refusal:
    """A command that is not carried out, and the reply that says why."""

    id: str | int | None
    error: str
    reason: str
    command: str | None = None

    def reply(self) -> dict[str, Any]:
        return {"id": self.id, "ok": False, "error": self.error, "reason": self.reason}


def _correlation_id(raw: Any) -> str | int | None:
    if isinstance(raw, dict):
        value = raw.get("id")
        if isinstance(value, str) and len(value) <= 200:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def parse_command(payload: bytes, command_token: str | None, commands_enabled: bool = True) -> CommandRequest | Refusal:
    """Checks a command message: JSON object, the right token (constant-time), a known command with
    what it needs. The token is checked before anything else is looked at or answered in detail."""
    if len(payload) > MAX_COMMAND_BYTES:
        return Refusal(None, "bad_request", f"a command must be at most {MAX_COMMAND_BYTES} bytes")
    try:
        raw = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return Refusal(None, "bad_request", "the command is not JSON")
    cid = _correlation_id(raw)
    if not isinstance(raw, dict):
        return Refusal(None, "bad_request", "a command is a JSON object")
    if not commands_enabled or command_token is None:
        return Refusal(cid, "commands_disabled", "this gateway takes no MQTT commands (it needs broker credentials and mqtt.command_token)")
    given = raw.get("token")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), command_token.encode()):
        return Refusal(cid, "unauthorised", "missing or wrong token")
    try:
        request = CommandRequest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "command"
        return Refusal(cid, "bad_request", f"{where}: {first['msg']}")
    if request.command not in COMMANDS:
        return Refusal(request.id, "unknown_command", f"unknown command {request.command!r} (known: {', '.join(COMMANDS)})", request.command)
    if request.command in ("mute", "unmute", "remove", "admit", "deny") and not request.participant:
        return Refusal(request.id, "bad_request", f"{request.command} needs a participant", request.command)
    if request.command == "set_layout" and request.layout not in LAYOUTS:
        return Refusal(request.id, "bad_request", f"set_layout needs a layout: {' or '.join(LAYOUTS)}", request.command)
    if request.command == "spotlight" and "participant" not in request.model_fields_set:
        # (said explicitly: a command that merely forgot the participant must not end a spotlight)
        return Refusal(request.id, "bad_request", "spotlight needs a participant (null ends the spotlight)", request.command)
    return request


class Control(Protocol):
    """What the bridge needs of gateway.control.live.LiveControl."""

    def mute(self, room: str, participant: str, actor: str, forbid_self_unmute: bool = False) -> dict[str, Any]: ...
    def unmute(self, room: str, participant: str, actor: str) -> dict[str, Any]: ...
    def remove(self, room: str, participant: str, actor: str) -> None: ...
    def admit(self, room: str, entry: str, actor: str) -> dict[str, Any]: ...
    def deny(self, room: str, entry: str, actor: str) -> None: ...
    def lock(self, room: str, locked: bool, actor: str) -> bool: ...
    def dial(self, room: str, actor: str, uri: str | None = None, system: str | None = None) -> Awaitable[dict[str, Any]]: ...
    def set_layout(self, room: str, layout: str, actor: str) -> dict[str, Any]: ...
    def spotlight(self, room: str, participant: str | None, actor: str) -> dict[str, Any]: ...
    def stop_presentation(self, room: str, actor: str) -> dict[str, Any] | None: ...
    def start_broadcast(self, room: str, what: What, actor: str) -> dict[str, Any]: ...
    def stop_broadcast(self, room: str, what: What, actor: str) -> bool: ...


async def execute(request: CommandRequest, room: str, control: Control) -> dict[str, Any]:
    """Carries out a checked command; a RoomError becomes a refusal reply with its code."""
    participant = request.participant or ""
    result: Any
    try:
        match request.command:
            case "mute":
                result = control.mute(room, participant, ACTOR, request.forbid_self_unmute)
            case "unmute":
                result = control.unmute(room, participant, ACTOR)
            case "remove":
                control.remove(room, participant, ACTOR)
                result = {"removed": participant}
            case "admit":
                result = control.admit(room, participant, ACTOR)
            case "deny":
                control.deny(room, participant, ACTOR)
                result = {"denied": participant}
            case "lock" | "unlock":
                result = {"locked": control.lock(room, request.command == "lock", ACTOR)}
            case "dial":
                result = await control.dial(room, ACTOR, uri=request.uri, system=request.system)
            case "set_layout":
                result = control.set_layout(room, request.layout or "", ACTOR)
            case "spotlight":
                result = control.spotlight(room, request.participant, ACTOR)
            case "stop_presentation":
                result = {"stopped": control.stop_presentation(room, ACTOR)}
            case "start_recording":
                result = control.start_broadcast(room, "recording", ACTOR)
            case "start_streaming":
                result = control.start_broadcast(room, "streaming", ACTOR)
            case "stop_recording":
                result = {"stopped": control.stop_broadcast(room, "recording", ACTOR)}
            case "stop_streaming":
                result = {"stopped": control.stop_broadcast(room, "streaming", ACTOR)}
            case _:  # parse_command lets no other through
                return Refusal(request.id, "unknown_command", f"unknown command {request.command!r}").reply()
    except RoomError as exc:
        return Refusal(request.id, exc.code, str(exc), request.command).reply()
    return {"id": request.id, "ok": True, "result": scrub(result)}


# -- the bridge -----------------------------------------------------------------------------------


class MqttBridge:
    def __init__(
        self,
        config: MqttConfig,
        directory: Directory,
        control: Control,
        worker: tuple[str, int] | None = None,
        publishes_room: Callable[[str], bool] | None = None,
    ) -> None:
        """`worker`: (the machine's node name, this worker's index), when this process is one
        worker of several (Topics). `publishes_room(room)`: whether this node publishes the room's
        room-wide events (those every node sharing the meeting sees: a lock, the layout, its end);
        the room's hub does (gateway/cluster/), so they are published once."""
        self.config = config
        self.directory = directory
        self.control = control
        self.topics = Topics(config.prefix, worker[0], worker[1]) if worker is not None else Topics(config.prefix, config.node)
        self.publishes_room = publishes_room
        self.session = MqttSession(config, self.topics, self.answer)
        self.names = ParticipantNames()
        # Commands need the broker to authenticate their sender (broker credentials) and our token.
        self.commands_enabled = bool(config.command_token and config.username)
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def outbox(self) -> Outbox:
        return self.session.outbox

    @property
    def stats(self) -> SessionStats:
        return self.session.stats

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._unsubscribe = self.directory.subscribe(self.on_event)
        if not self.commands_enabled:
            log.info(
                "mqtt commands disabled",
                reason="set mqtt.username/password (broker credentials) and mqtt.command_token to take commands",
            )
        self.session.start()

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Publishes "offline" (retained) and disconnects cleanly; never takes longer than `timeout_s`."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self.session.stop(timeout_s)

    def counters(self) -> MqttCounters:
        stats = self.session.stats
        return MqttCounters(
            connected=stats.connected,
            published=stats.published,
            dropped=self.outbox.dropped_total,
            queued=len(self.outbox),
            reconnects=stats.reconnects,
            commands=dict(stats.commands),
        )

    def state(self) -> dict[str, Any]:
        """For the admin API's status: the bridge at a glance (never credentials or the token)."""
        stats = self.session.stats
        return {
            "enabled": True,
            "broker": f"{self.config.host}:{self.config.port}",
            "node": self.config.node,
            "connected": stats.connected,
            "commands_enabled": self.commands_enabled,
            "queued": len(self.outbox),
            "published": stats.published,
            "dropped": self.outbox.dropped_total,
            "reconnects": stats.reconnects,
        }

    # -- events in (synchronous: called from the rooms) ----------------------------------------

    def _who(self, event: RoomEvent) -> Who | None:
        if event.participant is None:
            return None
        conference = self.directory.conferences.get(event.room)
        if conference is not None:
            present = conference.room.participants.get(event.participant) or conference.room.lobby.get(event.participant)
            if present is not None:
                who = Who(present.name, present.kind.value)
                self.names.note(event.room, event.participant, who)
                return who
        if event.type == "participant_joined" and "name" in event.data:
            return Who(str(event.data["name"]), str(event.data.get("kind", "")))
        return self.names.get(event.room, event.participant)

    def on_event(self, event: RoomEvent) -> None:
        try:
            # (another node's or worker's participant, shown here: the node serving it publishes it;
            # a room-wide change every node sharing the meeting makes: the room's hub publishes it)
            room_wide = event.participant is None and event.type in ROOM_WIDE_EVENTS
            published_elsewhere = room_wide and self.publishes_room is not None and not self.publishes_room(event.room)
            if event.type in PUBLISHED_EVENTS and "via" not in event.data and not published_elsewhere:
                payload = event_payload(event, self._who(event), self.config.node)
                if payload is not None:
                    body = json.dumps(payload, default=str).encode()
                    self.session.enqueue(Outgoing(self.topics.event(event.room, event.type), body))
            self.names.after(event)
        except Exception:  # an event we cannot publish must never disturb the room that sent it
            log.exception("mqtt could not queue an event", room=event.room, event_type=event.type)

    def publish_trunk_state(self, state: dict[str, Any]) -> None:
        """A trunk's registration changed (registered, failing with which status): published on
        <prefix>/<node>/trunks/<id>/state, as the API shows it (never a password)."""
        try:
            body = json.dumps({**scrub(state), "node": self.config.node}, default=str).encode()
            self.session.enqueue(Outgoing(self.topics.trunk_state(str(state["id"])), body))
        except Exception:
            log.exception("mqtt could not queue a trunk state", trunk=state.get("id"))

    def publish_registration(self, state: dict[str, Any]) -> None:
        """A room system of the directory registered with the gateway, moved or went: published on
        <prefix>/<node>/systems/<id>/registration, as GET /api/registrations shows it."""
        try:
            body = json.dumps({**scrub(state), "node": self.config.node}, default=str).encode()
            self.session.enqueue(Outgoing(self.topics.registration(str(state["system"])), body))
        except Exception:
            log.exception("mqtt could not queue a registration state", system=state.get("system"))

    # -- commands in ----------------------------------------------------------------------------

    async def answer(self, room: str, payload: bytes) -> dict[str, Any]:
        """The reply to a command message for `room`: checked, carried out, logged."""
        parsed = parse_command(payload, self.config.command_token, self.commands_enabled)
        if isinstance(parsed, Refusal):
            log.warning("mqtt command refused", room=room, id=parsed.id, command=parsed.command, error=parsed.error, reason=parsed.reason)
            return parsed.reply()
        try:
            reply = await execute(parsed, room, self.control)
        except Exception:
            log.exception("mqtt command failed", room=room, id=parsed.id, command=parsed.command)
            reply = Refusal(parsed.id, "internal_error", "the command failed inside the gateway").reply()
        if reply["ok"]:
            log.info("mqtt command done", room=room, id=parsed.id, command=parsed.command)
        else:
            log.info("mqtt command not carried out", room=room, id=parsed.id, command=parsed.command, error=reply["error"], reason=reply["reason"])
        return reply
