"""The one HTTP application: the packages' routes (meeting page and WebSocket from webrtc/, the admin
API, /metrics and the admin page from control/) behind the middleware they share.

Shared by every route: security headers (page policy, no sniffing, no Referer), the Origin check of
every WebSocket, JSON answers for unknown paths and invalid requests, /healthz and /readyz, and the
static files each package brings, all under /static.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)

# Adds a package's routes (and its own exception handlers) to the application.
Routes = Callable[[FastAPI], None]

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
    """A browser page may open a WebSocket only from the gateway's own origin (the scheme and Host
    of this request) or an allowed one: otherwise any site a participant visits could join
    meetings in their name, with their address (and its PIN allowance). Without an Origin the
    client is no browser, and cross-site hijacking needs one, so it is let through."""
    if origin is None:
        return True
    given = normalise_origin(origin)
    if given is None:
        return False
    own = normalise_origin(f"{'https' if scheme in ('wss', 'https') else 'http'}://{host}") if host else None
    return given == own or given in allowed


class OriginCheck:
    """Refuses a WebSocket opened by a page from another site before it is accepted (uvicorn then
    answers the handshake with HTTP 403); each refused origin is logged at its first refusal only."""

    def __init__(self, app: ASGIApp, allowed_origins: Sequence[str]) -> None:
        self.app = app
        self.allowed = frozenset(o for o in map(normalise_origin, allowed_origins) if o)
        self.refused: set[str] = set()  # a hostile page retries: logged once each

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            if origin is not None and not origin_allowed(origin, scope.get("scheme", "ws"), headers.get("host"), self.allowed):
                client = scope.get("client")
                remote = f"{client[0]}:{client[1]}" if client else "?"
                shown = origin[:200]
                if shown not in self.refused:
                    if len(self.refused) >= 10_000:
                        self.refused.clear()  # bounded memory; they are logged once more
                    self.refused.add(shown)
                    log.warning("websocket refused: page from another site", origin=shown, remote=remote)
                await send({"type": "websocket.close", "code": 1008, "reason": ""})
                return
        await self.app(scope, receive, send)


class StaticFolders(StaticFiles):
    """Files of several folders under one path: the first folder that has a file serves it."""

    def __init__(self, folders: Sequence[Path]) -> None:
        super().__init__(directory=folders[0])
        self.all_directories = list(folders)


def build_http_app(
    routes: Sequence[Routes],
    static: Sequence[Path],
    allowed_origins: Sequence[str] = (),
    ready: Callable[[], bool] = lambda: True,
) -> FastAPI:
    """The application: `routes` add each package's routes, `static` names the folders whose files
    are served under /static (the first that has a file wins)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)  # the API documents itself (control/)
    app.add_middleware(OriginCheck, allowed_origins=list(allowed_origins))
    app.add_middleware(SecurityHeaders)

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

    for add in routes:
        add(app)
    app.mount("/static", StaticFolders(static), name="static")

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

    return app
