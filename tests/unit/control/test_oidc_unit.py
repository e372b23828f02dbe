"""Signing in (gateway/control/oidc.py) without a provider: where a sign-in may return to, what the
claim's values make of someone, and how sessions end. The flow itself runs against a real provider
in tests/e2e/test_oidc.py."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.config import OidcConfig
from gateway.config.models import AdminConfig
from gateway.control.auth import Authenticator, AuthError
from gateway.control.oidc import OidcSignIn, safe_next


def test_a_sign_in_returns_only_to_the_admin_page_or_a_rooms_page() -> None:
    assert safe_next("/admin") == "/admin"
    assert safe_next("/r/rat") == "/r/rat"
    for target in ("", None, "/admin/", "//evil.example", "https://evil.example/admin", "/r/", "/r/a/b", "/r/../admin", "/admin?x=1"):
        assert safe_next(target) is None, target


def signed(clock: list[float], **config: object) -> OidcSignIn:
    settings = {"issuer": "https://idp.example/realms/town", "client_id": "gateway", "admins": ["it"], "operators": ["desk"], "hosts": ["rat"]}
    return OidcSignIn(OidcConfig(**{**settings, **config}), clock=lambda: clock[0])  # type: ignore[arg-type]


def test_the_claims_values_give_the_role_and_hosting() -> None:
    clock = [1000.0]
    sign_in = signed(clock)
    who = sign_in._who({"sub": "u1", "name": "Ada\u202e Admin\x00", "groups": ["desk", "it"]})
    assert (who.name, who.role, who.host) == ("Ada Admin", "admin", False)  # (control characters gone)
    assert sign_in._who({"sub": "u2", "groups": "desk"}).role == "operator"  # (one string counts as one value)
    clerk = sign_in._who({"sub": "u3", "email": "clara@town.example", "groups": ["rat", 5]})
    assert (clerk.name, clerk.role, clerk.host) == ("clara@town.example", None, True)
    assert sign_in._who({"sub": "u4", "groups": {"it": True}}).role is None  # (neither list nor string: no values)
    roles = signed(clock, claim="realm_roles")._who({"sub": "u5", "realm_roles": ["it"], "groups": []})
    assert roles.role == "admin"


def test_sessions_end_after_their_time_and_on_sign_out_and_only_roles_reach_the_api() -> None:
    clock = [1000.0]
    sign_in = signed(clock, session_h=1)
    sign_in._sessions["admin-session"] = sign_in._who({"sub": "u1", "name": "Ada", "groups": ["it"]})
    sign_in._sessions["clerk-session"] = sign_in._who({"sub": "u3", "name": "Clara", "groups": ["rat"]})
    auth = Authenticator(AdminConfig(), sign_in.principal)
    assert auth.authenticate("Bearer admin-session").role == "admin"
    with pytest.raises(AuthError) as refused:
        auth.authenticate("Bearer clerk-session")  # (signed in, but no role for the API)
    assert refused.value.status == 401
    assert sign_in.host_of("clerk-session") == (True, "Clara")
    clock[0] += 3601
    assert sign_in.session("admin-session") is None and sign_in.host_of("clerk-session") is None
    sign_in._sessions["s"] = sign_in._who({"sub": "u1", "groups": ["it"]})
    sign_in.sign_out("s")
    assert sign_in.principal("s") is None
    # Without any token and without sign-in, the API stays closed as before.
    with pytest.raises(AuthError) as closed:
        Authenticator(AdminConfig()).authenticate("Bearer anything")
    assert closed.value.code == "api_disabled"


def test_the_configuration_asks_for_what_a_sign_in_needs() -> None:
    assert not OidcConfig().enabled
    for bad in (
        {"issuer": "https://idp.example"},  # no client id
        {"issuer": "ftp://idp.example", "client_id": "gateway"},
        {"issuer": "http://idp.example", "client_id": "gateway"},  # plain http to a remote provider
        {"issuer": "https://idp.example", "client_id": "gateway", "scopes": ["profile"]},
    ):
        with pytest.raises(ValidationError):
            OidcConfig(**bad)  # type: ignore[arg-type]
    assert OidcConfig(issuer="http://127.0.0.1:9400", client_id="gateway").enabled  # (a provider on this machine)
