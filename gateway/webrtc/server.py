"""The HTTP(S) side: the web client's page and files, the browser WebSocket, the admin API.

A thin adapter: it turns WebSocket frames into BrowserSession calls and back; everything the
conversation means lives in session.py and signalling.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import structlog
from fastapi import APIRouter, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.control.api import ApiError, api_error_response, room_error_response
from gateway.control.auth import Authenticator, AuthError
from gateway.rooms.errors import RoomError
from gateway.webrtc.session import BrowserHub, BrowserSession, address_key

log = structlog.get_logger(__name__)

STATIC_DIR = Path(str(resources.files("gateway.webrtc") / "static"))

# The meeting and admin pages: their own scripts and styles only (no inline code, so an injected
# snippet cannot run), never inside another site's frame (clickjacking a host into "end meeting"),
# and no Referer: PINs and host links can be in the page's address.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'; frame-ancestors 'none'"
)


class SecurityHeaders:
    """Every answer: no MIME sniffing, no Referer. Every HTML answer: the page policy above, unless
    its route chose its own (the API docs)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", PAGE_CSP)
                    headers.setdefault("X-Frame-Options", "DENY")  # for browsers without frame-ancestors
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _api_docs_page(openapi_url: str, title: str) -> HTMLResponse:
    """FastAPI's Swagger UI page (scripts and styles from its CDN) with a policy that allows exactly
    that: its one inline script by hash, not inline scripts in general."""
    page = get_swagger_ui_html(openapi_url=openapi_url, title=title)
    html = bytes(page.body).decode()
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in re.findall(r"<script>(.*?)</script>", html, re.S)
    )
    cdn = "https://cdn.jsdelivr.net"
    csp = (
        f"default-src 'none'; script-src {cdn} {hashes}; style-src {cdn} 'unsafe-inline'; "
        f"img-src 'self' data: https://fastapi.tiangolo.com; connect-src 'self'; base-uri 'none'; "
        "object-src 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": csp, "Cache-Control": "no-cache"})


def normalise_origin(value: str) -> str | None:
    """`scheme://host[:port]` as browsers send it in Origin, lower case and without the default port;
    None for anything that is not an http(s) origin ("null" from sandboxed frames and files)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host or parts.username is not None or parts.password is not None:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == (443 if scheme == "https" else 80):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def origin_allowed(origin: str | None, scheme: str, host: str | None, allowed: frozenset[str]) -> bool:
    """A browser page may open the meeting WebSocket only from the gateway's own origin (the scheme
    and Host of this request) or an allowed one: otherwise any site a participant visits could join
    meetings in their name, with their address (and its PIN allowance). Without an Origin the
    client is no browser, and cross-site hijacking needs one, so it is let through."""
    if origin is None:
        return True
    given = normalise_origin(origin)
    if given is None:
        return False
    own = normalise_origin(f"{'https' if scheme in ('wss', 'https') else 'http'}://{host}") if host else None
    return given == own or given in allowed


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
        docs_url=None,  # served below, with a Content-Security-Policy that fits it
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    app.add_middleware(SecurityHeaders)
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
    docs_page = _api_docs_page("/api/openapi.json", f"{app.title} - Swagger UI")
    allowed_origins = frozenset(o for o in map(normalise_origin, hub.config.server.allowed_origins) if o)
    refused_origins: set[str] = set()  # each logged at its first refusal only: a hostile page retries
    server_config = hub.config.server
    open_sockets: dict[str, int] = {}  # by client address (IPv6 by /64)

    @app.get("/api/docs", include_in_schema=False)
    async def api_docs() -> HTMLResponse:
        return docs_page

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/r/{room}", include_in_schema=False)
    async def room_page(room: str) -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/admin", include_in_schema=False)
    async def admin_page() -> FileResponse:
        """The administration page; it signs in with an API token typed into it (never in the URL)."""
        # The token lives in sessionStorage: no script, style or frame from anywhere else may reach it
        # (the page policy, set for every HTML answer by SecurityHeaders).
        return FileResponse(STATIC_DIR / "admin.html", headers={"Cache-Control": "no-cache"})

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
        remote = f"{ws.client.host}:{ws.client.port}" if ws.client else "?"
        origin = ws.headers.get("origin")
        if origin is not None and not origin_allowed(origin, ws.url.scheme, ws.headers.get("host"), allowed_origins):
            shown = origin[:200]
            if shown not in refused_origins:
                if len(refused_origins) >= 10_000:
                    refused_origins.clear()  # bounded memory; they are logged once more
                refused_origins.add(shown)
                log.warning("websocket refused: page from another site", origin=shown, remote=remote)
            await ws.close(1008)  # before accept: uvicorn answers the handshake with HTTP 403
            return
        client = address_key(ws.client.host) if ws.client else "?"
        if open_sockets.get(client, 0) >= server_config.sockets_per_address:
            log.warning("websocket refused: too many open from one address", remote=remote)
            await ws.close(1008)
            return
        open_sockets[client] = open_sockets.get(client, 0) + 1
        try:
            await serve_socket(ws, remote)
        finally:
            left = open_sockets.pop(client, 1) - 1
            if left > 0:
                open_sockets[client] = left

    async def serve_socket(ws: WebSocket, remote: str) -> None:
        await ws.accept()

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
                if session.phase == "new":  # not joined yet: a socket must not idle here for ever
                    try:
                        message = await asyncio.wait_for(ws.receive(), server_config.join_timeout_s)
                    except TimeoutError:
                        log.info("websocket closed: no join in time", remote=remote)
                        await close(1008, "no join")
                        break
                else:
                    message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                raw = message.get("text")
                if raw is None:
                    raw = message.get("bytes") or b""
                await session.handle_text(raw)  # counted against the message rate, oversize ones too
        except WebSocketDisconnect:
            pass
        except RuntimeError as exc:  # receive after close
            log.debug("websocket ended", remote=remote, error=str(exc))
        finally:
            await session.socket_closed()

    return app
