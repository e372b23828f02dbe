"""The HTTP side as a user meets it: HTTPS with a configured certificate, the page, API errors."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.support.certificates import self_signed
from tests.support.gateway import RunningGateway, start_gateway, stop_and_check


def test_https_with_a_configured_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    gateway = start_gateway(
        tmp_path,
        f"server: {{host: 127.0.0.1, port: 0, tls: {{cert: {cert}, key: {key}}}}}\nrooms: [{{id: demo}}]\n",
    )
    try:
        assert gateway.base_url.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert))
        page = httpx.get(gateway.base_url + "/r/demo", verify=context)
        assert page.status_code == 200 and "<html" in page.text.lower()
        # The page's own origin is https://...: its WebSocket (wss) is let in, the http:// twin is not.
        ws_url = gateway.base_url.replace("https", "wss", 1) + "/ws"
        # (open_timeout: under a loaded CI machine the TLS upgrade once took over websockets' default 10 s)
        with connect(ws_url, ssl=context, origin=gateway.base_url, open_timeout=30) as ws:  # type: ignore[arg-type]
            ws.send('{"type": "ping"}')
            assert ws.recv(10) == '{"type":"pong"}'
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url, ssl=context, origin=gateway.base_url.replace("https", "http", 1), open_timeout=30)  # type: ignore[arg-type]
        assert refused.value.response.status_code == 403
    finally:
        stop_and_check(gateway)


def test_page_and_static_files_are_served(gateway: RunningGateway) -> None:
    for path in ("/", "/r/demo", "/static/app.js", "/static/i18n.js", "/static/style.css"):
        response = httpx.get(gateway.base_url + path)
        assert response.status_code == 200, path
    assert httpx.get(gateway.base_url + "/static/nothing.js").status_code == 404


def test_api_errors_are_json_with_a_reason(gateway: RunningGateway) -> None:
    unknown = gateway.api("GET", "/api/nothing")
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    wrong_method = gateway.api("DELETE", "/api/rooms")
    assert wrong_method.status_code == 405 and "reason" in wrong_method.json()
    openapi = gateway.api("GET", "/api/openapi.json", token=None)
    assert openapi.status_code == 200 and "/api/rooms/{room}/participants/{participant}/mute" in openapi.json()["paths"]


def test_check_config_reports_a_broken_file_and_run_refuses_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  port: 99999\nrooms:\n  - id: Demo Room\n")
    result = subprocess.run([sys.executable, "-m", "gateway", "run", "--config", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "server.port (line 2)" in result.stderr and "rooms[0].id (line 4)" in result.stderr
