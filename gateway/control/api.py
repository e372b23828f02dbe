"""Admin REST API under /api (OpenAPI at /api/openapi.json, interactive docs at /api/docs).

Bearer tokens with a role: `admin` may do everything, `operator` may read and control live meetings.
Answers are JSON; every refusal is a 4xx JSON body {"error": code, "reason": text}. The routes are
thin: rules live in Administration (rooms, systems, rules), LiveControl (meetings) and the Store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi import Path as Path_
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.config import (
    ROOM_ID_PATTERN,
    GatewayConfig,
    RoomConfig,
    RoomSystemConfig,
    RoutingRuleConfig,
    TrunkConfig,
)
from gateway.control.admin import Administration
from gateway.control.auth import Authenticator, AuthError, HostLinks, Principal
from gateway.control.broadcasts import Broadcasts
from gateway.control.live import LiveControl
from gateway.control.node import Drain
from gateway.control.records import records_csv
from gateway.rooms.conference import Conference
from gateway.rooms.errors import RoomError
from gateway.transcode.layout import Layout

log = structlog.get_logger(__name__)

_STATUS_BY_CODE = {
    "unknown_room": 404,
    "unknown_participant": 404,
    "unknown_system": 404,
    "unknown_trunk": 404,
    "unknown_rule": 404,
    "not_found": 404,
    "dial_out_refused": 403,
    "bad_uri": 400,
    "bad_request": 400,
    "sip_disabled": 503,
    "h323_disabled": 503,
    "unreachable": 502,
    "no_media_port": 503,
    "busy": 503,
    "rate_limited": 429,
    "storage_failed": 503,
    "unknown_recording": 404,
    "recording_forbidden": 403,
    "streaming_forbidden": 403,
    "recording_failed": 503,
    "broadcasts_disabled": 503,
    "no_stream_url": 409,
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason = status, code, reason


def api_error_response(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError | AuthError)
    return JSONResponse({"error": exc.code, "reason": exc.reason}, status_code=exc.status)


def room_error_response(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RoomError)
    return JSONResponse({"error": exc.code, "reason": str(exc)}, status_code=_STATUS_BY_CODE.get(exc.code, 409))


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MuteRequest(_Body):
    forbid_self_unmute: bool = False


class LayoutRequest(_Body):
    layout: Layout = Field(description="speaker: the speaker (or the spotlight) large, the others below; grid: equal tiles")


class SpotlightRequest(_Body):
    participant: str | None = Field(max_length=64, description="a participant's id; null ends the spotlight")


class Picture(BaseModel):
    """The composed picture of a meeting now (room systems see it; browsers show the spotlight too)."""

    layout: Layout
    spotlight: str | None


class DialRequest(_Body):
    uri: str | None = Field(None, max_length=256, description="sip:user@host[:port], tel:number (a trunk) or h323:alias@host[:port]")
    system: str | None = Field(None, pattern=ROOM_ID_PATTERN, description="a room system of the directory")


class DialResult(BaseModel):
    call: int
    room: str
    uri: str


class DrainRequest(_Body):
    deadline_s: float | None = Field(
        None, gt=0, le=7 * 86400, description="meetings still running this long from now are ended (default: admission.drain_deadline_s)"
    )


class HostLinkRequest(_Body):
    valid_hours: float | None = Field(None, gt=0, le=24 * 366)


class HostLink(BaseModel):
    url: str
    path: str
    expires_at: int


class RoomSettings(RoomConfig):
    """A room's settings for PUT: the id comes from the path."""

    id: str | None = Field(None, pattern=ROOM_ID_PATTERN)  # type: ignore[assignment]


class SystemSettings(RoomSystemConfig):
    id: str | None = Field(None, pattern=ROOM_ID_PATTERN)  # type: ignore[assignment]


class TrunkSettings(TrunkConfig):
    id: str | None = Field(None, pattern=ROOM_ID_PATTERN)  # type: ignore[assignment]


class RuleInsert(RoutingRuleConfig):
    position: int | None = Field(None, ge=0, le=1_000_000, description="place in the order (default: last)")


ErrorBody = {"content": {"application/json": {"example": {"error": "code", "reason": "why"}}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "bad request", **ErrorBody},
    401: {"description": "no or unknown token", **ErrorBody},
    403: {"description": "not allowed", **ErrorBody},
    404: {"description": "not found", **ErrorBody},
    409: {"description": "conflict", **ErrorBody},
    422: {"description": "invalid body or parameters", **ErrorBody},
}


# Declares the bearer token in the OpenAPI schema (the docs' "Authorize" button, generated clients);
# checking it is the Authenticator's job, so this never refuses by itself.
_bearer = HTTPBearer(auto_error=False, description="an API token from admin.token or admin.tokens")


def _principal(request: Request, _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    """The caller of an API route (the app's Authenticator is in `app.state.auth`)."""
    auth: Authenticator = request.app.state.auth
    return auth.authenticate(request.headers.get("authorization", ""))


def _admin(who: Annotated[Principal, Depends(_principal)]) -> Principal:
    Authenticator.require(who, "admin")
    return who


Reader = Annotated[Principal, Depends(_principal)]
Admin = Annotated[Principal, Depends(_admin)]


def build_router(
    config: GatewayConfig,
    admin: Administration,
    live: LiveControl,
    host_links: HostLinks,
    mqtt_state: Callable[[], dict[str, Any]] | None = None,
    trunk_states: Callable[[], list[dict[str, Any]]] | None = None,
    registrations: Callable[[], list[dict[str, Any]]] | None = None,
    drain: Drain | None = None,
) -> APIRouter:
    started = time.time()

    # Every route is async: room changes must happen on the event loop, never in a worker thread.
    router = APIRouter(prefix="/api", responses=_ERRORS)
    directory = admin.directory

    def conference(room: str) -> Conference:
        return live.conference(room)

    def room_view(c: Conference, who: Principal) -> dict[str, Any]:
        room = c.room
        spec = directory.specs[room.id]
        settings = spec.model_dump(mode="json", exclude={"host_pin", "guest_pin"})
        view: dict[str, Any] = {
            **settings,
            "name": room.name,
            "origin": directory.origins[room.id],
            "host_pin_set": bool(spec.host_pin),
            "guest_pin_set": bool(spec.guest_pin),
            "live": {
                "locked": room.locked,
                "participants": len(room.participants),
                "lobby_waiting": len(room.lobby),
                "open_now": room.is_open(),
            },
            # (`layout` above is the room's configured default; this is the meeting's, now)
            "picture": live.picture(c),
            "presentation": live.presentation(c),
            # (recorded or streamed now: since when, by whom; the stream's URL is never shown)
            "broadcasting": live.broadcasting(room.id),
        }
        if who.role == "admin":
            view["host_pin"], view["guest_pin"] = spec.host_pin, spec.guest_pin
        return view

    # -- status -----------------------------------------------------------------------------------

    @router.get("/status", tags=["status"])
    async def status(who: Reader) -> dict[str, Any]:
        """The gateway at a glance, and rooms of the database that clash with the configuration file."""
        return {
            "you": {"name": who.name, "role": who.role},
            "uptime_s": round(time.time() - started, 1),
            "rooms": len(directory.conferences),
            "participants": sum(len(c.room.participants) for c in directory),
            "database": admin.store.where,
            "conflicts": admin.conflicts,
            "mqtt": mqtt_state() if mqtt_state else {"enabled": False},
            "sip_enabled": config.sip.enabled,
            "trunks": trunk_states() if trunk_states is not None else [],
        }

    def trunk_view(trunk: TrunkConfig, states: dict[str, dict[str, Any]]) -> dict[str, Any]:
        state = states.get(trunk.id) or {"id": trunk.id, "status": "registering" if trunk.registers else "not_registering"}
        return {**state, "origin": admin.trunk_origin(trunk.id), "settings": trunk.model_dump(mode="json")}

    def trunk_states_by_id() -> dict[str, dict[str, Any]]:
        return {s["id"]: s for s in (trunk_states() if trunk_states is not None else [])}

    def node_drain() -> Drain:
        if drain is None:
            raise ApiError(404, "not_found", "this gateway has no node control")
        return drain

    @router.get("/node", tags=["node", "status"])
    async def node(who: Reader) -> dict[str, Any]:
        """This node: `serving`, `draining` (new participants are refused, meetings carry on) or
        `drained` (none left), the drain's deadline, and the meetings and participants still here."""
        return node_drain().view()

    @router.post("/node/drain", tags=["node"])
    async def start_drain(who: Admin, request: DrainRequest | None = None) -> dict[str, Any]:
        """Drains the node for a restart: new calls and browsers are refused (SIP 503, OPTIONS 503,
        /readyz 503, so a front sends them to another node); meetings carry on until they end or
        until the deadline, when the rest are ended. Again: a new deadline."""
        deadline = request.deadline_s if request is not None and request.deadline_s is not None else config.admission.drain_deadline_s
        return node_drain().start(deadline, who.name)

    @router.delete("/node/drain", tags=["node"])
    async def cancel_drain(who: Admin) -> dict[str, Any]:
        """Ends a drain: new participants are taken again."""
        return node_drain().cancel(who.name)

    @router.get("/trunks", tags=["trunks", "status"])
    async def trunks(who: Reader) -> list[dict[str, Any]]:
        """Every trunk, of the configuration file (`origin` config) or made here (api): its state
        (registered, or failing with which status and why, and when the next attempt is, in seconds
        since the epoch; `not_registering` for a peer that knows our address) and its `settings`
        (the password shown as **********, never itself)."""
        states = trunk_states_by_id()
        return [trunk_view(t, states) for t in admin.trunks()]

    @router.post("/trunks", status_code=201, tags=["trunks"])
    async def add_trunk(trunk: TrunkConfig, who: Admin) -> dict[str, Any]:
        """A new trunk: registered (if it `registers`) and taking calls at once."""
        return trunk_view(admin.save_trunk(trunk, who.name, create=True), {})

    @router.get("/trunks/{trunk}", tags=["trunks"])
    async def get_trunk(trunk: str, _who: Reader) -> dict[str, Any]:
        found = next((t for t in admin.trunks() if t.id == trunk), None)
        if found is None:
            raise ApiError(404, "unknown_trunk", f"no trunk {trunk!r}")
        return trunk_view(found, trunk_states_by_id())

    @router.put("/trunks/{trunk}", tags=["trunks"])
    async def update_trunk(trunk: str, settings: TrunkSettings, who: Admin) -> dict[str, Any]:
        """Changes a trunk made through the API (it registers again with the new settings). A
        password left out, or sent as the ********** the API shows, stays; "" removes it."""
        if settings.id is not None and settings.id != trunk:
            raise ApiError(400, "bad_request", f"the body's id {settings.id!r} is not the path's {trunk!r}")
        if admin.trunk_origin(trunk) is None:
            raise ApiError(404, "unknown_trunk", f"no trunk {trunk!r}")
        data = {**settings.model_dump(), "id": trunk}
        if "password" not in settings.model_fields_set and trunk in admin.api_trunks:
            data["password"] = admin.api_trunks[trunk].password
        return trunk_view(admin.save_trunk(TrunkConfig.model_validate(data), who.name, create=False), {})

    @router.delete("/trunks/{trunk}", status_code=204, tags=["trunks"])
    async def delete_trunk(trunk: str, who: Admin) -> Response:
        """Removes a trunk made through the API (its registration is removed first)."""
        admin.delete_trunk(trunk, who.name)
        return Response(status_code=204)

    @router.get("/registrations", tags=["status", "directory"])
    async def registrations_(who: Reader) -> list[dict[str, Any]]:
        """Each room system of the directory that registers with the gateway (it has a password):
        registered (its Contact, the address it registered from, its user agent, since when and
        for how long yet) or not."""
        return registrations() if registrations is not None else []

    # -- rooms ------------------------------------------------------------------------------------

    @router.get("/rooms", tags=["rooms"])
    async def list_rooms(who: Reader) -> list[dict[str, Any]]:
        return [room_view(c, who) for c in directory]

    @router.post("/rooms", status_code=201, tags=["rooms"])
    async def create_room(spec: RoomConfig, who: Admin) -> dict[str, Any]:
        await admin.create_room(spec, who.name)
        return room_view(conference(spec.id), who)

    @router.get("/rooms/{room}", tags=["rooms"])
    async def get_room(room: str, who: Reader) -> dict[str, Any]:
        conf = conference(room)
        view = room_view(conf, who)
        clock = conf.clock.stats
        view["mixer"] = {
            "ticks": clock.ticks,
            "late_ticks": clock.late_ticks,
            "skipped_ticks": clock.skipped_ticks,
            "max_lateness_ms": round(clock.max_lateness_ms, 2),
            "tick_cpu_ms_mean": round(clock.tick_cpu_ms_total / clock.ticks, 4) if clock.ticks else 0.0,
        }
        if conf.room.opening_hours is not None:
            view["hours"] = conf.room.opening_hours.public(time.time())
        return view

    @router.put("/rooms/{room}", tags=["rooms"])
    async def update_room(room: str, settings: RoomSettings, who: Admin) -> dict[str, Any]:
        if settings.id is not None and settings.id != room:
            raise ApiError(400, "bad_request", f"the body's id {settings.id!r} is not the path's {room!r}")
        conf = conference(room)
        spec = RoomConfig.model_validate({**settings.model_dump(exclude_unset=False), "id": conf.room.id})
        admin.update_room(spec, who.name)
        return room_view(conf, who)

    @router.patch("/rooms/{room}", tags=["rooms"])
    async def patch_room(
        room: str,
        changes: Annotated[dict[str, Any], Body(examples=[{"lobby": True, "guest_pin": None}])],
        who: Admin,
    ) -> dict[str, Any]:
        """Changes only the settings given (JSON merge: null clears a setting); the rest stay."""
        conf = conference(room)
        if changes.get("id", conf.room.id) != conf.room.id:
            raise ApiError(400, "bad_request", "a room's id cannot be changed")
        current = directory.specs[conf.room.id].model_dump(mode="json")
        try:
            spec = RoomConfig.model_validate({**current, **changes, "id": conf.room.id})
        except ValidationError as exc:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
        admin.update_room(spec, who.name)
        return room_view(conf, who)

    @router.delete("/rooms/{room}", status_code=204, tags=["rooms"])
    async def delete_room(room: str, who: Admin) -> Response:
        await admin.delete_room(room, who.name)
        return Response(status_code=204)

    @router.post("/rooms/{room}/host-link", response_model=HostLink, tags=["rooms"])
    async def host_link(room: str, request: Request, who: Admin, body: HostLinkRequest | None = None) -> HostLink:
        """A link that lets a host join without typing the PIN, until it expires or the host PIN changes."""
        conf = conference(room)
        if not conf.room.host_pin:  # the link is signed over the host PIN; without one nobody is a host
            raise ApiError(409, "no_host_pin", f"room {conf.room.id!r} has no host PIN: set one before issuing host links")
        hours = body.valid_hours if body and body.valid_hours else config.admin.host_link_valid_h
        token, expires = host_links.issue(conf.room.id, conf.room.host_pin, hours * 3600)
        path = f"/r/{conf.room.id}?host={token}"
        log.info("host link issued", room=conf.room.id, actor=who.name, valid_hours=hours)  # never the link itself
        return HostLink(url=str(request.base_url).rstrip("/") + path, path=path, expires_at=expires)

    # -- live meetings ------------------------------------------------------------------------------

    @router.get("/rooms/{room}/participants", tags=["live"])
    async def list_participants(room: str, _who: Reader) -> list[dict[str, Any]]:
        conf = conference(room)
        return [
            {
                **conf.participant_view(pid),
                "spotlight": pid == conf.room.spotlight,
                # the node (or worker) that serves it: this one, or another through the backplane
                "node": conf.room.participants[pid].extra.get("via") or config.mqtt.node,
            }
            for pid in list(conf.room.participants)
        ]

    @router.get("/rooms/{room}/lobby", tags=["live"])
    async def list_lobby(room: str, _who: Reader) -> list[dict[str, Any]]:
        return conference(room).room.lobby_public()

    @router.post("/rooms/{room}/participants/{participant}/mute", tags=["live"])
    async def mute(room: str, participant: str, who: Reader, body: MuteRequest | None = None) -> dict[str, Any]:
        return live.mute(room, participant, who.name, bool(body and body.forbid_self_unmute))

    @router.post("/rooms/{room}/participants/{participant}/unmute", tags=["live"])
    async def unmute(room: str, participant: str, who: Reader) -> dict[str, Any]:
        return live.unmute(room, participant, who.name)

    @router.post("/rooms/{room}/participants/{participant}/forbid-unmute", tags=["live"])
    async def forbid_unmute(room: str, participant: str, who: Reader) -> dict[str, Any]:
        return live.set_self_unmute(room, participant, False, who.name)

    @router.post("/rooms/{room}/participants/{participant}/allow-unmute", tags=["live"])
    async def allow_unmute(room: str, participant: str, who: Reader) -> dict[str, Any]:
        return live.set_self_unmute(room, participant, True, who.name)

    @router.delete("/rooms/{room}/participants/{participant}", status_code=204, tags=["live"])
    async def remove(room: str, participant: str, who: Reader) -> Response:
        live.remove(room, participant, who.name)
        return Response(status_code=204)

    @router.post("/rooms/{room}/mute-all", tags=["live"])
    async def mute_all(room: str, who: Reader, body: MuteRequest | None = None) -> dict[str, Any]:
        return {"muted": live.mute_all(room, who.name, bool(body and body.forbid_self_unmute))}

    @router.post("/rooms/{room}/allow-unmute-all", tags=["live"])
    async def allow_unmute_all(room: str, who: Reader) -> dict[str, bool]:
        """Ends mute-all: guests who join are no longer muted, and every guest may unmute again."""
        live.allow_all_unmute(room, who.name)
        return {"guests_may_unmute": True}

    @router.post("/rooms/{room}/lobby/{entry}/admit", tags=["live"])
    async def admit(room: str, entry: str, who: Reader) -> dict[str, Any]:
        return live.admit(room, entry, who.name)

    @router.post("/rooms/{room}/lobby/{entry}/deny", status_code=204, tags=["live"])
    async def deny(room: str, entry: str, who: Reader) -> Response:
        live.deny(room, entry, who.name)
        return Response(status_code=204)

    @router.post("/rooms/{room}/lock", tags=["live"])
    async def lock(room: str, who: Reader) -> dict[str, bool]:
        return {"locked": live.lock(room, True, who.name)}

    @router.post("/rooms/{room}/unlock", tags=["live"])
    async def unlock(room: str, who: Reader) -> dict[str, bool]:
        return {"locked": live.lock(room, False, who.name)}

    @router.put("/rooms/{room}/layout", response_model=Picture, tags=["live"])
    async def set_layout(room: str, body: LayoutRequest, who: Reader) -> Picture:
        """How room systems see the meeting, until it ends (then the room's configured layout again)."""
        return Picture(**live.set_layout(room, body.layout, who.name))

    @router.put("/rooms/{room}/spotlight", response_model=Picture, tags=["live"])
    async def spotlight(room: str, body: SpotlightRequest, who: Reader) -> Picture:
        """Shows one participant large for everyone (room systems and browsers); `null` ends it. It
        also ends when that participant leaves."""
        return Picture(**live.spotlight(room, body.participant, who.name))

    @router.post("/rooms/{room}/presentation/stop", tags=["live"])
    async def stop_presentation(room: str, who: Reader) -> dict[str, Any]:
        """Ends the presentation in the room, whoever gives it (the presenter is told; a room
        system's floor is revoked). `stopped`: the presentation ended, null when there was none."""
        return {"stopped": live.stop_presentation(room, who.name)}

    @router.post("/rooms/{room}/end", tags=["live"])
    async def end(room: str, who: Reader) -> dict[str, Any]:
        return {"ended": live.end(room, who.name)}

    @router.post("/rooms/{room}/recording", tags=["live", "recordings"])
    async def start_recording(room: str, who: Reader) -> dict[str, Any]:
        """Records the meeting (its composed picture and full mix, MP4; audio-only for a room of
        phones) until it is stopped or the meeting ends. Everyone in it is told. 403 where the room
        forbids it, 409 when it is recorded already or nobody is in it."""
        return live.start_broadcast(room, "recording", who.name)

    @router.post("/rooms/{room}/recording/stop", tags=["live", "recordings"])
    async def stop_recording(room: str, who: Reader) -> dict[str, bool]:
        """`stopped`: false when it was not recorded. The file is complete a moment later."""
        return {"stopped": live.stop_broadcast(room, "recording", who.name)}

    @router.post("/rooms/{room}/streaming", tags=["live"])
    async def start_streaming(room: str, who: Reader) -> dict[str, Any]:
        """Streams the meeting live to the room's stream_url (RTMP or RTMPS). Everyone is told."""
        return live.start_broadcast(room, "streaming", who.name)

    @router.post("/rooms/{room}/streaming/stop", tags=["live"])
    async def stop_streaming(room: str, who: Reader) -> dict[str, bool]:
        return {"stopped": live.stop_broadcast(room, "streaming", who.name)}

    @router.post("/rooms/{room}/dial", response_model=DialResult, status_code=202, tags=["live"])
    async def dial(room: str, request: DialRequest, who: Reader) -> DialResult:
        """Calls a directory room system, or a SIP URI allowed by sip.dial_out_allow, into the room."""
        placed = await live.dial(room, who.name, uri=request.uri, system=request.system)
        return DialResult(**placed)

    # -- directory of room systems ------------------------------------------------------------------

    @router.get("/systems", tags=["directory"])
    async def list_systems(_who: Reader) -> list[RoomSystemConfig]:
        return list(directory.systems.values())

    @router.post("/systems", status_code=201, tags=["directory"])
    async def add_system(system: RoomSystemConfig, who: Admin) -> RoomSystemConfig:
        return admin.save_system(system, who.name, create=True)

    @router.get("/systems/{system}", tags=["directory"])
    async def get_system(system: str, _who: Reader) -> RoomSystemConfig:
        found = directory.systems.get(system)
        if found is None:
            raise ApiError(404, "unknown_system", f"no room system {system!r}")
        return found

    @router.put("/systems/{system}", tags=["directory"])
    async def update_system(system: str, settings: SystemSettings, who: Admin) -> RoomSystemConfig:
        if settings.id is not None and settings.id != system:
            raise ApiError(400, "bad_request", f"the body's id {settings.id!r} is not the path's {system!r}")
        if system not in directory.systems:  # before validating: a path that is no valid id is unknown, not a 500
            raise ApiError(404, "unknown_system", f"no room system {system!r}")
        data = {**settings.model_dump(), "id": system}
        if "password" not in settings.model_fields_set:  # (not sent: the stored one stays)
            data["password"] = directory.systems[system].password
        entry = RoomSystemConfig.model_validate(data)
        return admin.save_system(entry, who.name, create=False)

    @router.delete("/systems/{system}", status_code=204, tags=["directory"])
    async def delete_system(system: str, who: Admin) -> Response:
        admin.delete_system(system, who.name)
        return Response(status_code=204)

    # -- routing rules ------------------------------------------------------------------------------

    @router.get("/rules", tags=["routing"])
    async def list_rules(_who: Reader) -> list[RoutingRuleConfig]:
        return list(directory.rules)

    @router.put("/rules", tags=["routing"])
    async def replace_rules(rules: list[RoutingRuleConfig], who: Admin) -> list[RoutingRuleConfig]:
        """The whole ordered list at once; checked after exact aliases, first match wins."""
        admin.set_rules(rules, who.name)
        return list(directory.rules)

    @router.post("/rules", status_code=201, tags=["routing"])
    async def add_rule(rule: RuleInsert, who: Admin) -> list[RoutingRuleConfig]:
        admin.add_rule(RoutingRuleConfig.model_validate(rule.model_dump(exclude={"position"})), who.name, rule.position)
        return list(directory.rules)

    @router.delete("/rules/{rule}", status_code=204, tags=["routing"])
    async def delete_rule(rule: str, who: Admin) -> Response:
        admin.delete_rule(rule, who.name)
        return Response(status_code=204)

    @router.get("/route", tags=["routing"])
    async def route(called: Annotated[str, Query(min_length=1, max_length=128)], _who: Reader) -> dict[str, Any]:
        """Where a call to `called` would go (exact alias first, then the rules)."""
        found = directory.route(called)
        return {"called": called, "room": found.room.id if found else None}

    # -- recordings ---------------------------------------------------------------------------------

    def broadcasts() -> Broadcasts:
        if live.broadcasts is None:
            raise ApiError(503, "broadcasts_disabled", "this gateway neither records nor streams")
        return live.broadcasts

    @router.get("/recordings", tags=["recordings"])
    async def list_recordings(
        _who: Admin,
        room: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> list[dict[str, Any]]:
        """Newest first: room, file, start and end (Unix time; end null while it runs), who started
        and stopped it, size in bytes, and why it ended when it failed."""
        return list(broadcasts().recordings(room, limit, offset))

    @router.get("/recordings/{recording}", tags=["recordings"])
    async def get_recording(recording: Annotated[str, Path_(max_length=64)], _who: Admin) -> dict[str, Any]:
        return dict(broadcasts().recording(recording))

    @router.get("/recordings/{recording}/file", tags=["recordings"], response_model=None)
    async def download_recording(recording: Annotated[str, Path_(max_length=64)], who: Admin) -> FileResponse:
        found = broadcasts().recording(recording)
        path = broadcasts().path_of(found)
        if not path.is_file():
            raise ApiError(404, "unknown_recording", "the recording's file is gone")
        log.info("recording downloaded", recording=recording, room=found["room"], actor=who.name)
        return FileResponse(path, media_type="video/mp4", filename=path.name)

    @router.delete("/recordings/{recording}", status_code=204, tags=["recordings"])
    async def delete_recording(recording: Annotated[str, Path_(max_length=64)], who: Admin) -> Response:
        """Deletes the file and its entry (409 while it is being recorded)."""
        broadcasts().delete(recording, who.name)
        return Response(status_code=204)

    # -- call records -------------------------------------------------------------------------------

    @router.get("/call-records", tags=["records"], response_model=None)
    async def call_records(
        _who: Reader,
        room: Annotated[str | None, Query(max_length=64)] = None,
        since: Annotated[float | None, Query(ge=0, le=1e11, description="Unix time")] = None,
        until: Annotated[float | None, Query(ge=0, le=1e11, description="Unix time")] = None,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
    ) -> Any:
        """Newest first. `format=csv` downloads them as CSV (UTF-8, a header line)."""
        records = admin.store.call_records(room, since, until, limit, offset)
        if format == "csv":
            return PlainTextResponse(
                records_csv(records),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": 'attachment; filename="call-records.csv"'},
            )
        return records

    return router
