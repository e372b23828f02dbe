"""Signing in with the town's identity provider (gateway/control/oidc.py), against a real OpenID
provider (oidc-provider-mock: authlib's authorisation server with its authorisation form;
tests/support/oidc.py), in headless Chromium and over HTTP:

- an administrator signs in to /admin with the organisation account and sees the editing controls;
  an operator sees none; an account with neither role is refused; API tokens work as before;
- a member of the host group signs in on a room's page and joins as host without the PIN, where the
  room allows it (and as a guest where it does not); someone else joins as a guest;
- a forged ID token (the provider's claims and key id, signed with another key) and an expired one
  are refused; a sign-in that was never started, a foreign `next` and an ended session are refused;
- no session token, code or ID token reaches the log.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.support.api import ws_join
from tests.support.browser import in_meeting
from tests.support.gateway import (
    ADMIN_TOKEN,
    TEST_CONFIG,
    RunningGateway,
    participant,
    start_gateway,
    stop_and_check,
    wait_until,
)
from tests.support.oidc import Front, authorize, provider

pytestmark = pytest.mark.browser
SLOW = 20_000


@pytest.fixture(scope="module")
def front() -> Iterator[Front]:
    with provider() as running:
        running.add_user("ada", name="Ada Admin", groups=["gateway-admins"])
        running.add_user("otto", name="Otto Operator", groups=["gateway-operators"])
        running.add_user("clara", name="Clara Clerk", groups=["ratsbuero"])
        running.add_user("nina", name="Nina Nobody", groups=["citizens"])
        yield running


@pytest.fixture(scope="module")
def gateway(front: Front, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    config = TEST_CONFIG.replace(
        "rooms:\n",
        f"""oidc:
  issuer: {front.url}
  client_id: gateway
  client_secret: test-client-secret
  admins: [gateway-admins]
  operators: [gateway-operators]
  hosts: [ratsbuero]
  clock_skew_s: 0
rooms:
  - {{id: rat, name: Council chamber, host_pin: "2468", sign_in_hosts: true}}
""",
        1,
    )
    running = start_gateway(tmp_path_factory.mktemp("oidc"), config)
    yield running
    stop_and_check(running)


def sign_in_to_admin(open_participant, gateway: RunningGateway, sub: str) -> Page:  # type: ignore[no-untyped-def]
    page: Page = open_participant(f"{gateway.base_url}/admin", None, "en-US", False)
    page.set_default_timeout(SLOW)
    page.get_by_role("link", name="Sign in with your organisation account").click()
    authorize(page, sub)
    return page


def session_token(page: Page, key: str) -> str:
    return str(page.evaluate("(key) => sessionStorage.getItem(key) || ''", key))


def test_administrators_and_operators_sign_in_to_the_admin_page(gateway: RunningGateway, front: Front, open_participant) -> None:  # type: ignore[no-untyped-def]
    ada = sign_in_to_admin(open_participant, gateway, "ada")
    expect(ada.locator("#who")).to_have_text("Signed in: Ada Admin (administrator)")
    assert urlsplit(ada.url).fragment in ("", "live")  # (the session token left the address bar)
    ada.get_by_role("link", name="Rooms").click()
    expect(ada.get_by_role("button", name="New room")).to_be_visible()
    token = session_token(ada, "gateway.admin.token")
    assert len(token) > 30
    status = httpx.get(f"{gateway.base_url}/api/status", headers={"Authorization": f"Bearer {token}"})
    assert status.status_code == 200 and status.json()["you"] == {"name": "Ada Admin", "role": "admin"}
    # A room the page makes lets staff host by signing in.
    ada.get_by_role("button", name="New room").click()
    ada.get_by_label("Room ID").fill("sprechstunde")
    ada.get_by_label("Staff may host by signing in").check()
    ada.get_by_role("button", name="Save").click()
    wait_until(lambda: gateway.api("GET", "/api/rooms/sprechstunde").status_code == 200, 10, what="the room made")
    assert gateway.api("GET", "/api/rooms/sprechstunde").json()["sign_in_hosts"] is True

    otto = sign_in_to_admin(open_participant, gateway, "otto")
    expect(otto.locator("#who")).to_have_text("Signed in: Otto Operator (operator)")
    expect(otto.locator("#role-note")).to_be_visible()
    otto.get_by_role("link", name="Rooms").click()
    expect(otto.get_by_role("button", name="New room")).to_be_hidden()
    otto_token = session_token(otto, "gateway.admin.token")
    refused = httpx.delete(f"{gateway.base_url}/api/rooms/sprechstunde", headers={"Authorization": f"Bearer {otto_token}"})
    assert refused.status_code == 403

    # No role: refused, and told so on the page.
    nina = sign_in_to_admin(open_participant, gateway, "nina")
    expect(nina.locator("#oidc-error")).to_contain_text("no_role")
    expect(nina.locator("#token-input")).to_be_visible()
    assert session_token(nina, "gateway.admin.token") == ""

    # Signing out ends the session at the gateway; the configured token works as before.
    ada.get_by_role("button", name="Sign out").click()
    ended = httpx.get(f"{gateway.base_url}/api/status", headers={"Authorization": f"Bearer {token}"})
    assert ended.status_code == 401
    assert gateway.api("GET", "/api/status").status_code == 200
    log = gateway.log_path.read_text()
    assert token not in log and otto_token not in log
    assert gateway.api("DELETE", "/api/rooms/sprechstunde").status_code == 204


def test_a_host_group_member_hosts_without_the_pin_where_the_room_allows_it(gateway: RunningGateway, open_participant) -> None:  # type: ignore[no-untyped-def]
    page: Page = open_participant(f"{gateway.base_url}/r/rat", 440.0)
    page.set_default_timeout(SLOW)
    page.get_by_role("link", name="Staff: sign in with your organisation account").click()
    authorize(page, "clara")
    expect(page.locator("#signin-status")).to_contain_text("Signed in as Clara Clerk")
    assert urlsplit(page.url).fragment == ""
    expect(page.locator("#name-input")).to_have_value("Clara Clerk")
    token = session_token(page, "gateway.signin")
    page.get_by_role("button", name="Join", exact=True).click()
    wait_until(lambda: in_meeting(page), 40, what="Clara in the meeting")
    clara = participant(gateway, "rat", "Clara Clerk")
    assert clara is not None and clara["role"] == "host"  # (no PIN typed)

    # Someone not in the host group joins as a guest, as before.
    other: Page = open_participant(f"{gateway.base_url}/r/rat", None)
    other.set_default_timeout(SLOW)
    other.get_by_role("link", name="Staff: sign in with your organisation account").click()
    authorize(other, "nina")
    expect(other.locator("#signin-status")).to_contain_text("Signed in as Nina Nobody")
    other.get_by_role("button", name="Join", exact=True).click()
    wait_until(lambda: in_meeting(other), 40, what="Nina in the meeting")
    assert (participant(gateway, "rat", "Nina Nobody") or {}).get("role") == "guest"

    # A room that does not let staff host: the same sign-in joins it as a guest.
    ws = ws_join(gateway, "demo", signin=token)
    assert ws["type"] == "joined" and ws["you"]["role"] == "guest"
    # An ended (or made-up) sign-in is refused, not taken as a guest's.
    assert ws_join(gateway, "rat", signin="x" * 43) == {"type": "ended", "reason": "sign_in_ended"}
    for p in (page, other):
        p.click("#btn-leave")
    wait_until(lambda: not gateway.api("GET", "/api/rooms/rat/participants").json(), 15, what="the room empty")
    assert token not in gateway.log_path.read_text()


def _sign_in_over_http(gateway: RunningGateway, sub: str) -> str:
    """The browser's part of a sign-in, over HTTP: /auth/login, the provider's form, the callback.
    Returns where the gateway sent the browser in the end (with its fragment)."""
    with httpx.Client(follow_redirects=False, timeout=30) as client:
        start = client.get(f"{gateway.base_url}/auth/login", params={"next": "/admin"})
        assert start.status_code == 303, start.text
        query = parse_qs(urlsplit(start.headers["location"]).query)
        assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0] and query["nonce"][0]
        consent = client.post(start.headers["location"], data={"sub": sub})
        assert consent.status_code in (302, 303), consent.text
        back = client.get(consent.headers["location"])
        assert back.status_code == 303, back.text
        return str(back.headers["location"])


def test_forged_and_expired_id_tokens_and_bad_requests_are_refused(gateway: RunningGateway, front: Front) -> None:
    assert _sign_in_over_http(gateway, "ada").startswith("/admin#signin=")  # (the front passes it on)
    try:
        front.mode = "forge"
        assert _sign_in_over_http(gateway, "nina") == "/admin#signin_error=bad_id_token"
        front.mode = "expire"
        assert _sign_in_over_http(gateway, "ada") == "/admin#signin_error=expired_id_token"
    finally:
        front.mode = "pass"
    with httpx.Client(follow_redirects=False, timeout=30) as client:
        # A callback for no sign-in started here (a replayed or made-up state).
        stray = client.get(f"{gateway.base_url}/auth/callback", params={"state": "made-up", "code": "x"})
        assert stray.status_code == 400 and "Sign-in failed" in stray.text
        # Only the admin page and rooms' pages may be returned to (no open redirect).
        for target in ("https://evil.example/", "//evil.example", "/admin/../x", "/r/"):
            assert client.get(f"{gateway.base_url}/auth/login", params={"next": target}).status_code == 400
        assert client.get(f"{gateway.base_url}/auth/me", headers={"Authorization": "Bearer nonsense"}).status_code == 401
    log = gateway.log_path.read_text()
    assert "sign-in refused: the ID token's signature is not the provider's" in log
    assert "sign-in refused: the ID token has expired" in log
    assert front.forged and all(forged not in log for forged in front.forged)
    assert not Path(gateway.log_path).read_text().count("#signin=")
    assert ADMIN_TOKEN not in log
