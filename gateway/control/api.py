"""Admin REST API under /api, protected by the bearer token from the configuration.

Answers are JSON; every refusal is a 4xx JSON body {"error": code, "reason": text}.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from gateway.rooms.conference import Conference
from gateway.rooms.directory import Directory
from gateway.rooms.errors import DialOutRefused, NotAllowed, RoomError, UnknownParticipant

# Places a call into a room: (room, destination URI, who asked) -> what was placed.
DialOut = Callable[[str, str, str], Awaitable[dict[str, Any]]]
_DIAL_OUT_STATUS = {"dial_out_refused": 403, "unknown_room": 404, "bad_uri": 400}

log = structlog.get_logger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason = status, code, reason


def api_error_response(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse({"error": exc.code, "reason": exc.reason}, status_code=exc.status)


class RoomSummary(BaseModel):
    id: str
    name: str
    locked: bool
    lobby_enabled: bool
    participants: int
    lobby_waiting: int
    aliases: list[str]


class MixerClockView(BaseModel):
    ticks: int
    late_ticks: int
    skipped_ticks: int
    max_lateness_ms: float
    tick_cpu_ms_mean: float


class RoomDetail(RoomSummary):
    mixer: MixerClockView


class MuteResult(BaseModel):
    participant: str
    muted: bool


class DialRequest(BaseModel):
    uri: str  # sip:user@host[:port]: a room system or a number behind a trunk


class DialResult(BaseModel):
    call: int
    room: str
    uri: str


def make_authorise(admin_token: str | None) -> Callable[[Request], None]:
    """The bearer-token check of the admin API (and of /metrics)."""

    def authorise(request: Request) -> None:
        if not admin_token:
            raise ApiError(403, "api_disabled", "no admin token is configured (admin.token)")
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "unauthorised", "send 'Authorization: Bearer <admin token>'")
        if not hmac.compare_digest(token.encode(), admin_token.encode()):
            log.warning("admin API: wrong token", client=request.client.host if request.client else None)
            raise ApiError(401, "unauthorised", "wrong admin token")

    return authorise


def build_router(directory: Directory, admin_token: str | None, dial_out: DialOut | None = None) -> APIRouter:
    authorise = make_authorise(admin_token)

    # Every route is async: room changes must happen on the event loop, never in a worker thread.
    router = APIRouter(prefix="/api", dependencies=[Depends(authorise)])

    def conference(room: str) -> Conference:
        found = directory.find(room)
        if found is None:
            raise ApiError(404, "unknown_room", f"no room {room!r}")
        return found

    def room_action(action: Any) -> None:
        try:
            action()
        except UnknownParticipant as exc:
            raise ApiError(404, exc.code, str(exc)) from None
        except NotAllowed as exc:
            raise ApiError(409, exc.code, str(exc)) from None
        except RoomError as exc:
            raise ApiError(409, exc.code, str(exc)) from None

    def summary(c: Conference) -> dict[str, Any]:
        return {
            "id": c.room.id,
            "name": c.room.name,
            "locked": c.room.locked,
            "lobby_enabled": c.room.lobby_enabled,
            "participants": len(c.room.participants),
            "lobby_waiting": len(c.room.lobby),
            "aliases": c.room.aliases,
        }

    @router.get("/rooms", response_model=list[RoomSummary])
    async def list_rooms() -> list[RoomSummary]:
        return [RoomSummary(**summary(c)) for c in directory]

    @router.get("/rooms/{room}", response_model=RoomDetail)
    async def get_room(room: str) -> RoomDetail:
        conf = conference(room)
        clock = conf.clock.stats
        mixer = MixerClockView(
            ticks=clock.ticks,
            late_ticks=clock.late_ticks,
            skipped_ticks=clock.skipped_ticks,
            max_lateness_ms=round(clock.max_lateness_ms, 2),
            tick_cpu_ms_mean=round(clock.tick_cpu_ms_total / clock.ticks, 4) if clock.ticks else 0.0,
        )
        return RoomDetail(**summary(conf), mixer=mixer)

    @router.get("/rooms/{room}/participants")
    async def list_participants(room: str) -> list[dict[str, Any]]:
        conf = conference(room)
        return [conf.participant_view(pid) for pid in list(conf.room.participants)]

    @router.post("/rooms/{room}/participants/{participant}/mute", response_model=MuteResult)
    async def mute(room: str, participant: str) -> MuteResult:
        conf = conference(room)
        room_action(lambda: conf.room.mute(None, participant))
        log.info("admin muted participant", room=conf.room.id, participant=participant)
        return MuteResult(participant=participant, muted=conf.room.get(participant).audio_muted)

    @router.post("/rooms/{room}/participants/{participant}/unmute", response_model=MuteResult)
    async def unmute(room: str, participant: str) -> MuteResult:
        conf = conference(room)
        room_action(lambda: conf.room.unmute(None, participant))
        log.info("admin unmuted participant", room=conf.room.id, participant=participant)
        return MuteResult(participant=participant, muted=conf.room.get(participant).audio_muted)

    @router.post("/rooms/{room}/dial", response_model=DialResult, status_code=202)
    async def dial(room: str, request: DialRequest) -> DialResult:
        """Calls a room system or number into the room (allowed destinations: sip.dial_out_allow)."""
        conf = conference(room)
        if dial_out is None:
            raise ApiError(503, "sip_disabled", "SIP is not enabled")
        try:
            placed = await dial_out(conf.room.id, request.uri.strip(), "admin-api")
        except DialOutRefused as exc:
            raise ApiError(_DIAL_OUT_STATUS.get(exc.code, 503), exc.code, str(exc)) from None
        return DialResult(**placed)

    return router
