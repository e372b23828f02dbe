"""A real OpenID provider for the tests: oidc-provider-mock (authlib's authorisation server behind
Flask: discovery, keys, an authorisation form, tokens), run in a thread of the test process, behind a
front of our own that can tamper with what the provider answers (the attack tests): forge the ID
token (the same claims and key id, signed with a key that is not the provider's) or hold the token
answer back until the ID token has expired."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import quote

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey
from oidc_provider_mock import run_server_in_thread

Mode = Literal["pass", "forge", "expire"]
ID_TOKEN_S = 3  # the provider's ID tokens last this long (the "expire" front holds them longer)


class Front:
    """The provider as the gateway and the browser see it (its issuer URL is the front's)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode: Mode = "pass"
        self.forged: list[str] = []  # the ID tokens it forged (for checking they reached no log)
        self._key = RSAKey.generate_key(2048)
        front = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # (quiet)
                pass

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("content-length", "connection")}
                with httpx.Client(follow_redirects=False, timeout=10) as client:
                    answer = client.request(self.command, front.upstream + self.path, headers=headers, content=body)
                content = answer.content
                if self.command == "POST" and "token" in self.path and answer.status_code == 200:
                    content = front._tamper(content)
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in ("content-length", "connection", "transfer-encoding", "content-encoding", "date", "server"):
                        self.send_header(key, value)
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = _relay  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _tamper(self, content: bytes) -> bytes:
        if self.mode == "expire":
            time.sleep(ID_TOKEN_S + 1.5)  # (the answer arrives after the ID token's expiry)
            return content
        if self.mode == "forge":
            answer = json.loads(content)
            header_b64, payload_b64, _ = answer["id_token"].split(".")
            header = json.loads(base64.urlsafe_b64decode(header_b64 + "=="))
            claims = json.loads(base64.urlsafe_b64decode(payload_b64 + "=="))
            claims["groups"] = ["gateway-admins"]  # (what a forger would want)
            forged = jwt.encode({k: v for k, v in header.items() if k in ("alg", "kid", "typ")}, claims, self._key)
            self.forged.append(forged)
            answer["id_token"] = forged
            return json.dumps(answer).encode()
        return content

    def add_user(self, sub: str, **claims: object) -> None:
        """A person the provider knows, with the claims its ID tokens carry about them."""
        response = httpx.put(f"{self.url}/users/{quote(sub)}", json=claims)
        assert response.status_code == 204, response.text

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def provider() -> Iterator[Front]:
    with run_server_in_thread(access_token_max_age=timedelta(seconds=ID_TOKEN_S)) as server:
        front = Front(f"http://localhost:{server.server_port}")
        try:
            yield front
        finally:
            front.close()


def authorize(page, sub: str) -> None:  # type: ignore[no-untyped-def]
    """On the provider's authorisation form: signs in as `sub`."""
    page.get_by_placeholder("sub").fill(sub)
    page.get_by_role("button", name="Authorize").click()
