"""The HTTP(S) side: the web client's page and files, the browser WebSocket, the admin API.

A thin adapter: it turns WebSocket frames into BrowserSession calls and back; everything the
conversation means lives in session.py and signalling.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import structlog
from fastapi import APIRouter, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry
from starlette.exceptions import HTTPException

from gateway.control.api import ApiError, api_error_response, room_error_response
from gateway.control.auth import Authenticator, AuthError
from gateway.rooms.errors import RoomError
from gateway.webrtc.session import BrowserHub, BrowserSession

log = structlog.get_logger(__name__)

STATIC_DIR = Path(str(resources.files("gateway.webrtc") / "static"))


def build_http_app(
    hub: BrowserHub,
    api: APIRouter | None = None,
    auth: Authenticator | None = None,
    metrics: CollectorRegistry | None = None,
    ready: Callable[[], bool] = lambda: True,
) -> FastAPI:
    app = FastAPI(
        title="Meeting gateway",
        description="Admin API of the meeting gateway",
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    app.state.auth = auth or Authenticator(hub.config.admin)
    app.add_exception_handler(ApiError, api_error_response)
    app.add_exception_handler(AuthError, api_error_response)
    app.add_exception_handler(RoomError, room_error_response)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in error.get('loc', ()))}: {error.get('msg', 'invalid').removeprefix('Value error, ')}"
            for error in exc.errors()
        ] or ["invalid request"]
        return JSONResponse({"error": "bad_request", "reason": "; ".join(problems[:5])}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": code, "reason": str(exc.detail)}, status_code=exc.status_code)
    if api is not None:
        app.include_router(api)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    max_bytes = hub.config.server.websocket_max_message_bytes

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/r/{room}", include_in_schema=False)
    async def room_page(room: str) -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/admin", include_in_schema=False)
    async def admin_page() -> FileResponse:
        """The administration page; it signs in with an API token typed into it (never in the URL)."""
        # The token lives in sessionStorage: no script, style or frame from anywhere else may reach it.
        csp = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
        headers = {"Cache-Control": "no-cache", "Content-Security-Policy": csp, "Referrer-Policy": "no-referrer"}
        return FileResponse(STATIC_DIR / "admin.html", headers=headers)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        """The process answers."""
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """Every service (HTTP, SIP) has started and none is shutting down: send calls here."""
        if ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not_ready"}, status_code=503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        """Prometheus text format; an admin or operator token as a bearer token (scrape config: authorization)."""
        app.state.auth.authenticate(request.headers.get("authorization", ""))
        if metrics is None:
            return Response(status_code=404)
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    @app.websocket("/ws")
    async def websocket(ws: WebSocket) -> None:
        await ws.accept()
        remote = f"{ws.client.host}:{ws.client.port}" if ws.client else "?"

        async def close(code: int, reason: str) -> None:
            try:
                await ws.close(code, reason[:120])
            except RuntimeError:
                pass

        async def send(message: dict[str, object] | str) -> None:
            if isinstance(message, str):
                await ws.send_text(message)
            else:
                await ws.send_text(json.dumps(message, separators=(",", ":")))

        session = BrowserSession(hub, send, close, remote, ws.client.host if ws.client else "")
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                raw = message.get("text")
                if raw is None:
                    raw = message.get("bytes") or b""
                if len(raw) > max_bytes:
                    await session.send({"type": "error", "code": "bad_message", "message": "message too large", "request": None})
                    continue
                await session.handle_text(raw)
        except WebSocketDisconnect:
            pass
        except RuntimeError as exc:  # receive after close
            log.debug("websocket ended", remote=remote, error=str(exc))
        finally:
            await session.socket_closed()

    return app
