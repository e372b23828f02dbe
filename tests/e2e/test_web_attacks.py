"""The browser edge under attack, through the real gateway process: pages from other sites, join
floods, an overloaded gateway, framing and content injection, secrets in the log.

What browsers enforce (the Content-Security-Policy) is checked in headless Chromium; what the
gateway enforces is checked with plain WebSocket clients that send whatever an attacker would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from gateway.config import parse_config
from gateway.rooms.directory import Directory
from gateway.rooms.pinguard import PinGuard
from gateway.webrtc.session import BrowserHub, BrowserSession, JoinRate, address_key
from tests.support.browser import CHROMIUM, chromium_args
from tests.support.gateway import ADMIN_TOKEN, RunningGateway, start_gateway, stop_and_check, wait_until

HOST_PIN, GUEST_PIN = "73915046281", "46028573914"  # long: no timestamp or port contains them by chance


def config(extra: str = "", rooms: str = "") -> str:
    return f"""
server: {{host: 127.0.0.1, port: 0, joins_per_minute: 6, allowed_origins: ["https://Intranet.Example.org:443"]}}
admin: {{token: {ADMIN_TOKEN}}}
logging: {{level: debug, format: json}}
sip: {{enabled: false}}
storage: {{path: null}}
{extra}
rooms:
  - {{id: demo, name: Demo, host_pin: "{HOST_PIN}"}}
  - {{id: office, name: Citizen office, host_pin: "{HOST_PIN}", lobby: true}}
  - {{id: secret, name: Council, host_pin: "{HOST_PIN}", guest_pin: "{GUEST_PIN}"}}
{rooms}
"""


@pytest.fixture
def hardened(tmp_path: Path) -> Iterator[RunningGateway]:
    running = start_gateway(tmp_path, config())
    yield running
    stop_and_check(running)


async def join(
    gateway: RunningGateway,
    room: str = "office",
    local: str = "127.0.0.1",
    origin: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Opens a socket, sends one join and returns the first answer (the socket is closed after)."""
    async with websockets.connect(gateway.ws_url, origin=origin, local_addr=(local, 0)) as ws:  # type: ignore[arg-type]
        await ws.send(json.dumps({"type": "join", "room": room, "name": "Mallory", **fields}))
        return json.loads(await asyncio.wait_for(ws.recv(), 10))  # type: ignore[no-any-return]


def events(gateway: RunningGateway, name: str) -> list[dict[str, object]]:
    return [line for line in gateway.log_lines() if line.get("event") == name]


# -- headers --------------------------------------------------------------------------------------


def test_pages_forbid_framing_inline_code_sniffing_and_referrers(hardened: RunningGateway) -> None:
    for path in ("/", "/r/demo", "/r/demo?pin=1&host=2", "/admin", "/static/index.html", "/static/admin.html"):
        response = httpx.get(hardened.base_url + path)
        assert response.status_code == 200, path
        csp = {d.split()[0]: d.split()[1:] for d in response.headers["content-security-policy"].split(";") if d.strip()}
        assert csp["frame-ancestors"] == ["'none'"], path
        assert csp["default-src"] == ["'none'"], path
        assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"], path  # nothing inline
        assert csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"], path
        assert response.headers["x-frame-options"] == "DENY", path
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["referrer-policy"] == "no-referrer", path
    # The API docs load Swagger UI from its CDN: allowed, but only its own inline script (by hash).
    docs = httpx.get(hardened.base_url + "/api/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    script_src = next(d for d in docs.headers["content-security-policy"].split(";") if d.strip().startswith("script-src"))
    assert "'sha256-" in script_src and "unsafe-inline" not in script_src
    assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]
    # Everything else is not sniffed and sends no Referer either (scripts, JSON, errors).
    for path in ("/static/app.js", "/api/rooms", "/healthz", "/nothing"):
        response = hardened.api("GET", path)
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["referrer-policy"] == "no-referrer", path


# -- where the WebSocket may be opened from ------------------------------------------------------


async def test_a_page_from_another_site_cannot_open_the_meeting_socket(hardened: RunningGateway) -> None:
    port = hardened.base_url.rsplit(":", 1)[1]
    refused = [
        "https://evil.example",
        f"http://127.0.0.1:{int(port) + 1}",  # same host, another port: another origin
        f"https://127.0.0.1:{port}",  # another scheme
        "null",  # sandboxed frames, files
        "http://user@127.0.0.1:" + port,
        "x" * 5000,
    ]
    for origin in refused:
        with pytest.raises(InvalidStatus) as error:
            await join(hardened, origin=origin)
        assert error.value.response.status_code == 403, origin
    with pytest.raises(InvalidStatus):
        await join(hardened, origin="https://evil.example")  # again: refused, not logged again
    logged = events(hardened, "websocket refused: page from another site")
    assert len(logged) == len(refused)  # one line per refused origin
    assert logged[0]["origin"] == "https://evil.example"
    assert all(len(str(line["origin"])) <= 200 for line in logged)

    # The gateway's own pages, an allowed origin (configured with its default port), and clients
    # that are no browsers (no Origin at all) are let in.
    for origin in (hardened.base_url, "https://intranet.example.org", None):
        assert (await join(hardened, origin=origin))["type"] == "lobby", origin


# -- join floods -----------------------------------------------------------------------------------


async def test_a_join_flood_is_refused_for_its_address_only_and_a_reconnect_still_gets_in(
    hardened: RunningGateway,
) -> None:
    # A guest waits in the lobby and loses the connection: the place is kept.
    async with websockets.connect(hardened.ws_url, local_addr=("127.0.0.1", 0)) as ws:
        await ws.send(json.dumps({"type": "join", "room": "office", "name": "Grete"}))
        waiting = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert waiting["type"] == "lobby"
    wait_until(lambda: events(hardened, "connection lost; place in the queue kept"), 10, what="place kept")

    # The same address scans for rooms: joins 2..6 of the minute are answered, the 7th is refused.
    for _ in range(5):
        assert (await join(hardened, room="nowhere")) == {"type": "ended", "reason": "unknown_room"}
    assert await join(hardened) == {"type": "ended", "reason": "rate_limited"}
    assert await join(hardened, room="demo", pin=HOST_PIN) == {"type": "ended", "reason": "rate_limited"}
    refusals = events(hardened, "join refused: too many joins from this address")
    assert len(refusals) == 1, "logged at the first refusal, not at every one"
    assert refusals[0]["source"] == "127.0.0.1" and refusals[0]["level"] == "warning"

    # Another address is not affected.
    assert (await join(hardened, local="127.0.0.2"))["type"] == "lobby"
    # The guest coming back to the kept place is not a new join: in again, same place.
    back = await join(hardened, resume=waiting["resume"])
    assert back["type"] == "lobby" and back["position"] == waiting["position"]
    # A made-up resume token does not get round the limit.
    assert await join(hardened, resume="made-up-token") == {"type": "ended", "reason": "rate_limited"}


def test_the_join_window_slides_and_an_ipv6_household_counts_as_one() -> None:
    now = [0.0]
    rate = JoinRate(3, clock=lambda: now[0])
    assert [rate.refusals("192.0.2.1") for _ in range(5)] == [0, 0, 0, 1, 2]
    assert rate.refusals("192.0.2.2") == 0
    now[0] = 59.9
    assert rate.refusals("192.0.2.1") == 3
    now[0] = 60.0  # the first three joins are a minute old: room for three more
    assert [rate.refusals("192.0.2.1") for _ in range(4)] == [0, 0, 0, 1]
    # Addresses of one /64 (what a provider gives one line) share the allowance; mapped IPv4 is IPv4.
    assert [rate.refusals(f"2001:db8:1:2::{n:x}") for n in range(4)] == [0, 0, 0, 1]
    assert rate.refusals("2001:db8:1:3::1") == 0
    assert address_key("::ffff:192.0.2.9") == "192.0.2.9" and address_key("fe80::1%eth0") == "fe80::/64"
    # Addresses quiet for a minute are forgotten: the table does not grow with every address seen.
    for n in range(1000):
        rate.refusals(f"198.51.100.{n % 250}")
    now[0] = 200.0
    rate.refusals("192.0.2.1")
    assert len(rate.joins._events) == 1


# -- overload ----------------------------------------------------------------------------------------


async def test_an_overloaded_gateway_refuses_new_browsers(tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, config("admission: {max_cpu: 0.000001, max_loop_lag_ms: 0.001}"))
    try:
        wait_until(lambda: events(gateway, "overloaded: new participants are refused"), 15, what="overload seen")
        assert await join(gateway, room="demo", pin=HOST_PIN) == {"type": "ended", "reason": "overloaded"}
        refused = events(gateway, "join refused: the gateway is overloaded")
        assert len(refused) == 1 and refused[0]["why"]
    finally:
        stop_and_check(gateway)


async def test_overload_refuses_newcomers_but_not_someone_coming_back_to_a_kept_place() -> None:
    """In-process (the real process cannot be made overloaded on cue): a guest in the lobby loses
    the connection, the gateway becomes overloaded, the guest comes back; a newcomer is refused."""

    class Overload:
        reason: str | None = None

        def admit(self) -> str | None:
            return self.reason

    gw = parse_config(config())
    hub = BrowserHub(gw, Directory(gw), PinGuard.from_config(gw.security))
    hub.admission = overload = Overload()  # type: ignore[assignment]

    async def session(address: str, message: dict[str, Any]) -> tuple[BrowserSession, list[dict[str, Any]]]:
        sent: list[dict[str, Any]] = []

        async def send(m: dict[str, Any] | str) -> None:
            sent.append(json.loads(m) if isinstance(m, str) else m)

        async def close(_code: int, _reason: str) -> None:
            return None

        s = BrowserSession(hub, send, close, f"{address}:4000", address)
        await s.handle_text(json.dumps(message))
        return s, sent

    first, sent = await session("198.51.100.1", {"type": "join", "room": "office", "name": "Grete"})
    assert sent[-1]["type"] == "lobby"
    await first.socket_closed()
    overload.reason = "CPU at 99% of a core"
    _, again = await session("198.51.100.1", {"type": "join", "room": "office", "name": "Grete", "resume": sent[-1]["resume"]})
    assert again[-1]["type"] == "lobby" and again[-1]["position"] == 1
    _, newcomer = await session("198.51.100.2", {"type": "join", "room": "office", "name": "Nils"})
    assert newcomer == [{"type": "ended", "reason": "overloaded"}]
    await hub.close()


# -- secrets ---------------------------------------------------------------------------------------


async def test_pins_host_links_and_resume_tokens_never_reach_the_log(hardened: RunningGateway) -> None:
    link = hardened.api("POST", "/api/rooms/secret/host-link", json={})
    assert link.status_code == 200, link.text
    host_token = link.json()["url"].split("host=")[1]
    # The page with a PIN and a host link in its address (as a link would open it).
    async with httpx.AsyncClient() as client:
        page = await client.get(f"{hardened.base_url}/r/secret?name=Anna&pin={HOST_PIN}&host={host_token}")
    assert page.status_code == 200

    secrets: list[str] = [HOST_PIN, GUEST_PIN, host_token, host_token.split(".")[1], "99999999999"]
    assert (await join(hardened, room="secret", local="127.0.0.3", pin="99999999999"))["reason"] == "wrong_pin"
    assert (await join(hardened, room="secret", local="127.0.0.3", pin=GUEST_PIN))["type"] == "joined"
    async with websockets.connect(hardened.ws_url, local_addr=("127.0.0.4", 0)) as ws:
        await ws.send(json.dumps({"type": "join", "room": "secret", "name": "Hanna", "host": host_token}))
        hosting = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hosting["type"] == "joined" and hosting["you"]["role"] == "host"
        secrets.append(hosting["resume"])
        await ws.send(json.dumps({"type": "leave"}))
    assert (await join(hardened, room="demo", local="127.0.0.4", pin=HOST_PIN))["type"] == "joined"

    # A guest waits, loses the connection and comes back with the resume token.
    async with websockets.connect(hardened.ws_url, local_addr=("127.0.0.5", 0)) as ws:
        await ws.send(json.dumps({"type": "join", "room": "office", "name": "Grete"}))
        waiting = json.loads(await asyncio.wait_for(ws.recv(), 10))
    wait_until(lambda: events(hardened, "connection lost; place in the queue kept"), 10, what="place kept")
    back = await join(hardened, room="office", local="127.0.0.5", resume=waiting["resume"])
    assert back["type"] == "lobby"
    secrets += [waiting["resume"], back["resume"]]
    wait_until(lambda: events(hardened, "reconnected to the lobby"), 10, what="reconnect logged")

    text = hardened.log_path.read_text(errors="replace")
    leaked = [s for s in secrets if s in text]
    assert not leaked, f"secrets in the gateway log: {leaked}"


# -- in a real browser -----------------------------------------------------------------------------

# Installed before any page script: every CSP violation the page meets, as the browser reports it.
CSP_WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
"""


@pytest.mark.browser
def test_the_pages_work_under_their_policy_and_say_why_a_join_was_refused(
    hardened: RunningGateway, playwright_instance, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=chromium_args(None), headless=True)
    try:
        pages: list[tuple[Any, list[str]]] = []  # each page with its console messages

        def open_page(url: str, lang: str = "en-US"):  # type: ignore[no-untyped-def]
            context = browser.new_context(locale=lang)
            context.add_init_script(CSP_WATCH)
            page = context.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.goto(url)
            pages.append((page, console))
            return page

        meeting = open_page(f"{hardened.base_url}/r/demo?name=Anna&pin={HOST_PIN}")
        wait_until(lambda: meeting.evaluate("() => window.gatewayClient && window.gatewayClient.phase") == "meeting",
                   30, what="the host in the meeting")
        wait_until(lambda: meeting.evaluate("() => window.gatewayClient.pc && window.gatewayClient.pc.connectionState")
                   == "connected", 30, what="media connected")
        # The style sheet applies and the icons are drawn (neither was blocked).
        assert meeting.evaluate("() => getComputedStyle(document.querySelector('.skip-link')).position") == "absolute"
        assert meeting.locator("#btn-mic svg").count() == 1
        assert "pin=" not in meeting.url and "host=" not in meeting.url
        admin = open_page(f"{hardened.base_url}/admin")
        wait_until(lambda: admin.locator("input[type=password]").count() >= 1, 10, what="admin sign-in form")
        admin.locator("input[type=password]").first.fill(ADMIN_TOKEN)
        admin.locator("input[type=password]").first.press("Enter")
        wait_until(lambda: admin.get_by_text("Demo").count() >= 1, 15, what="admin page lists the rooms")

        # The same address over its join limit: the page says what happened and what to do, in
        # English and in German.
        for _ in range(10):
            with connect(hardened.ws_url, source_address=("127.0.0.1", 0)) as ws:  # (Playwright owns the loop)
                ws.send(json.dumps({"type": "join", "room": "nowhere", "name": "Mallory"}))
                if json.loads(ws.recv(10))["reason"] == "rate_limited":
                    break
        english = open_page(f"{hardened.base_url}/r/office?name=Emil")
        wait_until(lambda: english.get_by_text("Too many attempts").count() == 1, 20, what="rate limit, in English")
        assert english.get_by_text("Please try again in a minute", exact=False).count() == 1
        german = open_page(f"{hardened.base_url}/r/office?name=Emil", "de-DE")
        wait_until(lambda: german.get_by_text("Zu viele Versuche").count() == 1, 20, what="rate limit, in German")
        assert german.get_by_role("button", name="Erneut teilnehmen").count() == 1

        for page, console_messages in pages:
            violations = page.evaluate("() => window.__csp")
            console = [m for m in console_messages if "Content Security Policy" in m or "Refused to" in m]
            assert not violations and not console, f"{page.url}: {violations} {console}"
    finally:
        browser.close()


@pytest.mark.browser
def test_the_busy_page_in_both_languages(tmp_path: Path, playwright_instance) -> None:  # type: ignore[no-untyped-def]
    gateway = start_gateway(tmp_path, config("admission: {max_cpu: 0.000001, max_loop_lag_ms: 0.001}"))
    browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=chromium_args(None), headless=True)
    try:
        wait_until(lambda: events(gateway, "overloaded: new participants are refused"), 15, what="overload seen")
        for lang, title, text in (
            ("en-US", "The service is busy", "please try again in a minute"),
            ("de-DE", "Der Dienst ist ausgelastet", "bitte versuchen Sie es in einer Minute erneut"),
        ):
            page = browser.new_context(locale=lang).new_page()
            page.goto(f"{gateway.base_url}/r/demo?name=Emil")
            wait_until(lambda page=page, title=title: page.get_by_text(title, exact=True).count() == 1, 20, what=title)
            assert page.get_by_text(text, exact=False).count() == 1
    finally:
        browser.close()
        stop_and_check(gateway)


def test_idle_and_piled_up_sockets_are_bounded(tmp_path: Path) -> None:
    """Sockets that never join are closed after server.join_timeout_s; one address holds at most
    server.sockets_per_address open at once, while another address still gets in."""
    server = "server: {host: 127.0.0.1, port: 0, join_timeout_s: 1, sockets_per_address: 3}"
    gateway = start_gateway(tmp_path, config().replace(config().split("\n")[1], server))
    try:
        with contextlib.ExitStack() as sockets:
            idle_and_piled_up(gateway, sockets)
        with connect(gateway.ws_url, source_address=("127.0.0.1", 0)):
            pass  # their places are free again
    finally:
        stop_and_check(gateway)


def idle_and_piled_up(gateway: RunningGateway, sockets: contextlib.ExitStack) -> None:
    """Three idle sockets from one address, a fourth refused, a joined one from another address."""
    held = [sockets.enter_context(connect(gateway.ws_url, source_address=("127.0.0.1", 0))) for _ in range(3)]
    with pytest.raises(InvalidStatus) as refused:
        connect(gateway.ws_url, source_address=("127.0.0.1", 0))
    assert refused.value.response.status_code == 403
    other = sockets.enter_context(connect(gateway.ws_url, source_address=("127.0.0.2", 0)))
    other.send(json.dumps({"type": "join", "room": "demo", "name": "Olga", "pin": HOST_PIN}))
    assert json.loads(other.recv(timeout=10))["type"] == "joined"
    # The three that never joined are closed after a second; the one that joined stays.
    for ws in held:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 1008
    with pytest.raises(TimeoutError):
        while True:
            other.recv(timeout=1.5)  # (room state messages may come; the socket stays open)
    other.close()
