"""Signing in with the town's identity provider: OpenID Connect's authorisation code flow with PKCE
(authlib's OAuth 2 client; the ID token checked with joserfc against the provider's published keys).

Administrators and operators sign in to /admin, hosts on the meeting page. A sign-in ends in a
session of the gateway's own: an opaque token handed to the page in the redirect's fragment (never
sent to a server, never in a log), which the page keeps in its tab (sessionStorage) and sends as a
bearer token to the API or with its join. The provider's tokens stay here and are dropped after the
check: the gateway needs who signed in and the values of one claim (`oidc.claim`, groups or roles),
which map to the admin and operator roles and to hosting the rooms that allow it.

Nothing here logs a token, a code, a state or a nonce.
"""

from __future__ import annotations

import re
import secrets
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx2
import structlog
from authlib.integrations.httpx_client import AsyncOAuth2Client
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import KeySet

from gateway.config import OidcConfig
from gateway.config.models import ROOM_ID_PATTERN
from gateway.control.auth import Principal, Role, bearer_token

log = structlog.get_logger("gateway.oidc")

# Signature algorithms accepted on ID tokens: the asymmetric ones providers use (never "none", never
# a shared-secret HMAC that anyone holding the client secret could forge).
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
PENDING_S = 600.0  # a sign-in must come back from the provider within 10 minutes
MAX_PENDING = 1000  # sign-ins under way at once (a flood of /auth/login costs no more memory than this)
MAX_SESSIONS = 10_000
METADATA_S = 3600.0  # the provider's discovery document and keys are fetched again after an hour
HTTP_TIMEOUT_S = 10.0
CALLBACK = "/auth/callback"
_NEXT = re.compile(r"^/(admin|r/" + ROOM_ID_PATTERN.strip("^$") + ")$")


class SignInError(Exception):
    """A sign-in that did not succeed: `code` for the page, `reason` for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass(frozen=True)
class SignedIn:
    """Who signed in, as far as the gateway cares."""

    name: str
    role: Role | None  # on /admin and the API; None: neither admin nor operator
    host: bool  # may host the rooms that allow signed-in hosts (sign_in_hosts)
    expires: float


@dataclass(frozen=True)
class _Pending:
    verifier: str  # PKCE code verifier (RFC 7636)
    nonce: str
    next: str
    redirect_uri: str
    started: float


def safe_next(path: str | None) -> str | None:
    """Where a sign-in may return to: the admin page or a room's page, nothing else (no open redirect)."""
    return path if path and _NEXT.match(path) else None


def _display_name(claims: dict[str, Any]) -> str:
    for key in ("name", "preferred_username", "email", "sub"):
        value = claims.get(key)
        if isinstance(value, str) and value.strip():
            cleaned = "".join(c for c in value if unicodedata.category(c)[0] != "C").strip()
            if cleaned:
                return cleaned[:64]
    return "?"


class OidcSignIn:
    def __init__(self, config: OidcConfig, clock: Callable[[], float] = time.time) -> None:
        assert config.issuer is not None
        self.config = config
        self.issuer = config.issuer.rstrip("/")
        self._clock = clock
        self._pending: dict[str, _Pending] = {}  # by state
        self._sessions: dict[str, SignedIn] = {}  # by the gateway's session token
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._fetched = -METADATA_S

    # -- the provider ---------------------------------------------------------------------------

    def _client(self, redirect_uri: str) -> AsyncOAuth2Client:
        secret = self.config.client_secret.get_secret_value() if self.config.client_secret else None
        return AsyncOAuth2Client(
            client_id=self.config.client_id,
            client_secret=secret,
            token_endpoint_auth_method="client_secret_basic" if secret else "none",
            scope=" ".join(self.config.scopes),
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=HTTP_TIMEOUT_S,
        )

    async def _provider(self, refresh: bool = False) -> tuple[dict[str, Any], KeySet]:
        """The discovery document and the signing keys (cached for an hour; `refresh`: fetched now)."""
        now = self._clock()
        if refresh or self._metadata is None or self._keys is None or now - self._fetched > METADATA_S:
            try:
                async with httpx2.AsyncClient(timeout=HTTP_TIMEOUT_S) as http:
                    response = await http.get(f"{self.issuer}/.well-known/openid-configuration")
                    response.raise_for_status()
                    metadata = response.json()
                    if not isinstance(metadata, dict) or str(metadata.get("issuer", "")).rstrip("/") != self.issuer:
                        raise SignInError("provider_failed", "the provider's discovery document names another issuer")
                    keys = await http.get(str(metadata["jwks_uri"]))
                    keys.raise_for_status()
                    self._keys = KeySet.import_key_set(keys.json())
            except SignInError:
                raise
            except (httpx2.HTTPError, ValueError, KeyError, JoseError) as exc:
                log.warning("identity provider unreachable or unreadable", issuer=self.issuer, error=type(exc).__name__)
                raise SignInError("provider_failed", "the identity provider could not be reached") from None
            self._metadata, self._fetched = metadata, now
        assert self._metadata is not None and self._keys is not None
        return self._metadata, self._keys

    # -- the flow -------------------------------------------------------------------------------

    def _forget_stale(self) -> None:
        now = self._clock()
        for state in [s for s, p in self._pending.items() if now - p.started > PENDING_S]:
            del self._pending[state]
        for token in [t for t, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[token]

    async def start(self, redirect_uri: str, next_path: str) -> str:
        """The provider's authorisation URL for a new sign-in that returns to `next_path`."""
        self._forget_stale()
        while len(self._pending) >= MAX_PENDING:
            # (a flood of /auth/login pushes out the oldest sign-ins under way rather than blocking all)
            del self._pending[next(iter(self._pending))]
        metadata, _ = await self._provider()
        state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        async with self._client(redirect_uri) as client:
            url, _ = client.create_authorization_url(
                str(metadata["authorization_endpoint"]), state=state, code_verifier=verifier, nonce=nonce
            )
        self._pending[state] = _Pending(verifier, nonce, next_path, redirect_uri, self._clock())
        return str(url)

    def cancel(self, state: str) -> None:
        self._pending.pop(state, None)

    def next_of(self, state: str) -> str | None:
        pending = self._pending.get(state)
        return pending.next if pending else None

    async def finish(self, state: str, code: str) -> tuple[str, SignedIn, str]:
        """Back from the provider: the code exchanged, the ID token checked. Returns the gateway's
        session token, who signed in and where to go; SignInError otherwise."""
        self._forget_stale()
        pending = self._pending.pop(state, None)
        if pending is None:
            raise SignInError("bad_state", "this sign-in was not started here, or took longer than 10 minutes")
        metadata, _ = await self._provider()
        try:
            async with self._client(pending.redirect_uri) as client:
                tokens = await client.fetch_token(
                    str(metadata["token_endpoint"]), code=code, code_verifier=pending.verifier
                )
        except Exception as exc:  # (authlib raises its OAuthError, httpx2 its own; the provider said no)
            # (authlib's OAuthError carries the provider's error code, e.g. invalid_grant, invalid_client)
            log.warning("sign-in refused by the provider", error=str(getattr(exc, "error", "") or type(exc).__name__)[:64])
            raise SignInError("provider_refused", "the identity provider did not confirm the sign-in") from None
        id_token = tokens.get("id_token") if isinstance(tokens, dict) else None
        if not isinstance(id_token, str):
            raise SignInError("bad_id_token", "the identity provider sent no ID token")
        claims = await self.verify(id_token, pending.nonce)
        who = self._who(claims)
        if len(self._sessions) >= MAX_SESSIONS:
            raise SignInError("busy", "too many people signed in; try again later")
        token = secrets.token_urlsafe(32)
        self._sessions[token] = who
        log.info("signed in", who=who.name, role=who.role, host=who.host)
        return token, who, pending.next

    async def verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims, if the provider signed it for us, now, in answer to this sign-in
        (OpenID Connect Core 3.1.3.7); SignInError otherwise."""
        _, keys = await self._provider()
        try:
            try:
                token = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
            except ValueError:  # (a key id we do not have: the provider may have rotated its keys)
                _, keys = await self._provider(refresh=True)
                token = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
        except (JoseError, ValueError) as exc:
            log.warning("sign-in refused: the ID token's signature is not the provider's", error=type(exc).__name__)
            raise SignInError("bad_id_token", "the ID token is not signed by the identity provider") from None
        claims = token.claims
        registry = jwt.JWTClaimsRegistry(
            leeway=int(self.config.clock_skew_s),
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.config.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            log.warning("sign-in refused: the ID token has expired")
            raise SignInError("expired_id_token", "the ID token has expired (or the clocks differ)") from None
        except JoseError as exc:
            log.warning("sign-in refused: the ID token is not for this sign-in", error=exc.error)
            raise SignInError("bad_id_token", "the ID token is not for this sign-in") from None
        audience = claims.get("aud")
        if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != self.config.client_id:
            raise SignInError("bad_id_token", "the ID token was issued to another client")
        return claims

    def _who(self, claims: dict[str, Any]) -> SignedIn:
        raw = claims.get(self.config.claim)
        values = {raw} if isinstance(raw, str) else {v for v in raw if isinstance(v, str)} if isinstance(raw, list) else set()
        role: Role | None = (
            "admin" if values & set(self.config.admins) else "operator" if values & set(self.config.operators) else None
        )
        return SignedIn(
            name=_display_name(claims),
            role=role,
            host=bool(values & set(self.config.hosts)),
            expires=self._clock() + self.config.session_h * 3600,
        )

    # -- sessions -------------------------------------------------------------------------------

    def session(self, token: str) -> SignedIn | None:
        """Who holds this session token, while it lasts."""
        who = self._sessions.get(token)
        if who is None:
            return None
        if who.expires <= self._clock():
            self._sessions.pop(token, None)
            return None
        return who

    def principal(self, token: str) -> Principal | None:
        """The API's view of a session: its role, for the admin API (None: no session, or no role)."""
        who = self.session(token)
        return Principal(who.name, who.role) if who is not None and who.role is not None else None

    def host_of(self, token: str) -> tuple[bool, str] | None:
        """The meeting's view of a session: (may host where rooms allow it, name); None: none or ended."""
        who = self.session(token)
        return (who.host, who.name) if who is not None else None

    def sign_out(self, token: str) -> None:
        self._sessions.pop(token, None)


# -- routes -------------------------------------------------------------------------------------

_FAILED_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign-in failed</title></head>
<body><h1>Sign-in failed</h1><p>{reason}</p><p><a href="/admin">Administration</a></p></body></html>"""


def _bearer(request: Request) -> str:
    return bearer_token(request.headers.get("authorization", ""))


def add_sign_in_routes(app: FastAPI, sign_in: OidcSignIn | None) -> None:
    """/auth/config (whether sign-in is offered), /auth/login, /auth/callback, /auth/me, /auth/logout."""

    @app.get("/auth/config", include_in_schema=False)
    async def config() -> JSONResponse:
        return JSONResponse({"enabled": sign_in is not None}, headers={"Cache-Control": "no-store"})

    if sign_in is None:
        return

    def redirect_uri(request: Request) -> str:
        base = sign_in.config.public_url or str(request.base_url)
        return base.rstrip("/") + CALLBACK

    @app.get("/auth/login", include_in_schema=False)
    async def login(request: Request, next: str = "/admin") -> Response:
        target = safe_next(next)
        if target is None:
            return JSONResponse({"error": "bad_next", "message": "next must be /admin or /r/<room>"}, status_code=400)
        try:
            url = await sign_in.start(redirect_uri(request), target)
        except SignInError as exc:
            return RedirectResponse(f"{target}#signin_error={quote(exc.code)}", status_code=303)
        return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})

    @app.get(CALLBACK, include_in_schema=False)
    async def callback(state: str = "", code: str = "", error: str = "") -> Response:
        target = sign_in.next_of(state[:128])
        try:
            if target is None:
                raise SignInError("bad_state", "this sign-in was not started here, or took longer than 10 minutes")
            if error or not code:
                sign_in.cancel(state)
                log.info("sign-in cancelled or refused at the provider", error=error[:64] or "no code")
                raise SignInError("provider_refused", "the identity provider did not confirm the sign-in")
            token, who, target = await sign_in.finish(state[:128], code[:2048])
            if target == "/admin" and who.role is None:
                sign_in.sign_out(token)
                log.info("sign-in to the admin page refused: no admin or operator role", who=who.name)
                raise SignInError("no_role", "the account has neither the admin nor the operator role")
        except SignInError as exc:
            if target is None:
                return HTMLResponse(_FAILED_PAGE.format(reason=exc.reason), status_code=400)
            return RedirectResponse(f"{target}#signin_error={quote(exc.code)}", status_code=303)
        # (in the fragment: the browser keeps it to itself; the page moves it into its tab's storage)
        return RedirectResponse(f"{target}#signin={token}", status_code=303, headers={"Cache-Control": "no-store"})

    @app.get("/auth/me", include_in_schema=False)
    async def me(request: Request) -> JSONResponse:
        who = sign_in.session(_bearer(request))
        if who is None:
            return JSONResponse({"error": "unauthorised", "message": "not signed in, or the sign-in ended"}, status_code=401)
        return JSONResponse({"name": who.name, "role": who.role, "host": who.host}, headers={"Cache-Control": "no-store"})

    @app.post("/auth/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        sign_in.sign_out(_bearer(request))
        return Response(status_code=204)
