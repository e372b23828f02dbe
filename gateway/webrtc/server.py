"""The meeting page and its WebSocket: webrtc's part of the HTTP application (gateway/http.py).

A thin adapter: it turns WebSocket frames into BrowserSession calls and back; everything the
conversation means lives in session.py and signalling.py. The Origin check, security headers and
static files are the HTTP application's (gateway/http.py).
"""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from pathlib import Path

import structlog
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse

from gateway.webrtc.session import BrowserHub, BrowserSession, address_key

log = structlog.get_logger(__name__)

# The meeting page's files, served under /static by the HTTP application.
STATIC_DIR = Path(str(resources.files("gateway.webrtc") / "static"))


def add_meeting_routes(app: FastAPI, hub: BrowserHub) -> None:
    """Adds the meeting page (/ and /r/<room>) and the browsers' WebSocket (/ws) to `app`."""
    server_config = hub.config.server
    open_sockets: dict[str, int] = {}  # by client address (IPv6 by /64)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/r/{room}", include_in_schema=False)
    async def room_page(room: str) -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.websocket("/ws")
    async def websocket(ws: WebSocket) -> None:
        remote = f"{ws.client.host}:{ws.client.port}" if ws.client else "?"
        # (A page from another site was refused before this: gateway.http.OriginCheck.)
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
