"""The control plane's part of the HTTP application: the admin API with its OpenAPI schema and docs
page, /metrics, and the admin page (its files are served under /static from control/static)."""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from gateway.control.api import ApiError, api_error_response, room_error_response
from gateway.control.auth import Authenticator, AuthError
from gateway.rooms.errors import RoomError

# The admin page's files, served under /static by the HTTP application.
STATIC_DIR = Path(str(resources.files("gateway.control") / "static"))

TITLE = "Meeting gateway"
DESCRIPTION = "Admin API of the meeting gateway"
OPENAPI_URL = "/api/openapi.json"


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


def add_control_routes(
    app: FastAPI, api: APIRouter, auth: Authenticator, metrics: CollectorRegistry | None = None
) -> None:
    """Adds the admin API (under /api, documented at /api/openapi.json and /api/docs), /metrics and
    /admin to `app`; API routes find the Authenticator in `app.state.auth`."""
    app.title, app.description, app.openapi_url = TITLE, DESCRIPTION, OPENAPI_URL
    app.state.auth = auth
    app.add_exception_handler(ApiError, api_error_response)
    app.add_exception_handler(AuthError, api_error_response)
    app.add_exception_handler(RoomError, room_error_response)

    async def openapi(_request: Request) -> JSONResponse:
        return JSONResponse(app.openapi())

    app.add_route(OPENAPI_URL, openapi, include_in_schema=False)
    app.include_router(api)
    docs_page = _api_docs_page(OPENAPI_URL, f"{TITLE} - Swagger UI")

    @app.get("/api/docs", include_in_schema=False)
    async def api_docs() -> HTMLResponse:
        return docs_page

    @app.get("/admin", include_in_schema=False)
    async def admin_page() -> FileResponse:
        """The administration page; it signs in with an API token typed into it (never in the URL)."""
        # The token lives in sessionStorage: no script, style or frame from anywhere else may reach it
        # (the page policy, set for every HTML answer by gateway.http.SecurityHeaders).
        return FileResponse(STATIC_DIR / "admin.html", headers={"Cache-Control": "no-cache"})

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        """Prometheus text format; an admin or operator token as a bearer token (scrape config: authorization)."""
        auth.authenticate(request.headers.get("authorization", ""))
        if metrics is None:
            return Response(status_code=404)
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)
