"""The administration page (/admin) end to end, in real headless Chromium against a real gateway.

An administrator signs in with a token, creates a room and a room system through the forms, orders
routing rules, runs a live meeting with a real browser participant (mute, forbid unmuting, a refused
dial-out, a host link, lock, end) and downloads the call records; parts of it by keyboard only. An
operator sees the page without any editing control, in German (the browser's language). Screenshots
of every section go to /tmp/admin-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.support.gateway import (
    ADMIN_TOKEN,
    TEST_CONFIG,
    RunningGateway,
    start_gateway,
    stop_and_check,
    wait_until,
)

pytestmark = pytest.mark.browser

OPERATOR_TOKEN = "test-operator-token-9876543210"
CONFIG = TEST_CONFIG.replace(
    f"admin: {{token: {ADMIN_TOKEN}}}",
    f"admin: {{token: {ADMIN_TOKEN}, tokens: [{{name: night-shift, token: {OPERATOR_TOKEN}, role: operator}}]}}",
)
assert CONFIG != TEST_CONFIG
SLOW = 20_000  # ms: two cores, other test runs beside this one
SHOTS = Path("/tmp")

FOCUSED_JS = """() => {
  const e = document.activeElement;
  if (!e || e === document.body) return null;
  const s = getComputedStyle(e);
  const label = e.labels && e.labels.length ? e.labels[0].innerText : '';
  return {name: (e.getAttribute('aria-label') || label || e.innerText || '').trim(),
          visible: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0};
}"""


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[RunningGateway]:
    running = start_gateway(tmp_path, CONFIG)
    yield running
    stop_and_check(running)


def open_admin(open_participant, gateway: RunningGateway, lang: str = "en-US") -> Page:  # type: ignore[no-untyped-def]
    page: Page = open_participant(f"{gateway.base_url}/admin", None, lang, False)
    page.set_viewport_size({"width": 1366, "height": 900})
    page.set_default_timeout(SLOW)
    expect(page.locator("#token-input")).to_be_focused(timeout=SLOW)  # the page's module has run
    return page


def sign_in(page: Page, token: str) -> None:
    page.keyboard.type(token)
    page.keyboard.press("Enter")


def tab_to(page: Page, name: str, backwards: bool = False, limit: int = 60) -> None:
    """Presses Tab (or Shift+Tab) until the element named `name` has the focus; every stop on the
    way must show a visible focus outline."""
    seen: list[str] = []
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
        focused = page.evaluate(FOCUSED_JS)
        if not focused:
            continue
        assert focused["visible"], f"no visible focus on {focused['name']!r}"
        seen.append(focused["name"])
        if focused["name"] == name:
            return
    raise AssertionError(f"{name!r} not reached by Tab: {seen}")


def errors(page: Page):  # type: ignore[no-untyped-def]
    return page.locator("#errors .message")


def notices(page: Page):  # type: ignore[no-untyped-def]
    return page.locator("#notices .message")


def test_an_administrator_manages_rooms_systems_and_rules_by_keyboard_and_in_german(
    gateway: RunningGateway, open_participant
) -> None:
    page = open_admin(open_participant, gateway)
    page.screenshot(path=str(SHOTS / "admin-signin.png"))

    # A wrong token is refused with the API's reason; the right one signs in (typed, then Enter).
    sign_in(page, "not-the-right-token-at-all")
    expect(page.locator("#token-error")).to_contain_text("The token was not accepted", timeout=SLOW)
    page.locator("#token-input").fill("")
    sign_in(page, ADMIN_TOKEN)
    expect(page.get_by_role("heading", name="Live meetings", level=1)).to_be_focused(timeout=SLOW)
    expect(page.locator("#who")).to_have_text("Signed in: admin (administrator)")
    assert ADMIN_TOKEN not in page.url
    assert page.evaluate("() => sessionStorage.getItem('gateway.admin.token')") == ADMIN_TOKEN

    # By keyboard: back up to the section bar, open "Rooms", open "New room".
    tab_to(page, "Rooms", backwards=True)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Rooms", level=1)).to_be_focused()
    expect(page.get_by_role("row", name="Demo demo")).to_be_visible()
    tab_to(page, "New room")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="New room", level=2)).to_be_focused()
    tab_to(page, "Room ID")
    page.keyboard.type("buergerbuero")
    tab_to(page, "Display name")
    page.keyboard.type("Bürgerbüro")
    tab_to(page, "Host PIN")
    page.keyboard.type("12")  # too short: the API refuses and says why
    page.keyboard.press("Enter")
    expect(errors(page).first).to_contain_text("Host PIN: String should match pattern", timeout=SLOW)
    expect(errors(page).first).to_contain_text("The room was not created.")
    expect(page.get_by_label("Host PIN")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Host PIN")).to_be_focused()
    page.keyboard.press("Control+A")
    page.keyboard.type("4321")
    page.get_by_label("Guest PIN").fill("9876")
    page.get_by_label("Dial-in aliases").fill("4800, buergerbuero-tel")
    page.get_by_label("Maximum participants").fill("25")
    page.get_by_label("Language of spoken prompts").select_option("de")
    page.get_by_label("Picture for room systems").select_option("grid")
    page.get_by_label("Who may present").select_option("hosts")
    page.get_by_label("Waiting room", exact=True).check()
    page.get_by_label("Guests may only enter during opening hours").check()
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_label("Monday").fill("08:00-12:00, 13:00 - 16:00")
    page.get_by_label("Thursday").fill("08:00-18:00")
    page.get_by_label("Closed days").fill("2030-12-24\n2030-12-31")
    page.screenshot(path=str(SHOTS / "admin-room-form.png"), full_page=True)
    page.get_by_label("Guest PIN").focus()
    page.keyboard.press("Enter")
    expect(notices(page).first).to_contain_text("Room “Bürgerbüro” is created.", timeout=SLOW)
    expect(errors(page)).to_have_count(0)  # the refusal is answered
    row = page.get_by_role("row", name="Bürgerbüro buergerbuero")
    expect(row).to_contain_text("Mon 08:00-12:00, 13:00-16:00")
    expect(row.get_by_role("button", name="Edit Bürgerbüro")).to_be_focused()
    room = gateway.api("GET", "/api/rooms/buergerbuero").json()
    assert (room["name"], room["host_pin"], room["guest_pin"], room["lobby"]) == ("Bürgerbüro", "4321", "9876", True)
    assert room["aliases"] == ["4800", "buergerbuero-tel"] and room["max_participants"] == 25 and room["language"] == "de"
    assert (room["layout"], room["presenters"]) == ("grid", "hosts")
    assert room["opening_hours"]["weekly"] == {"mon": ["08:00-12:00", "13:00-16:00"], "thu": ["08:00-18:00"]}
    assert room["opening_hours"]["closed"] == ["2030-12-24", "2030-12-31"]

    # Editing keeps what is not changed; Escape closes the form and gives the focus back.
    row.get_by_role("button", name="Edit Bürgerbüro").click()
    expect(page.get_by_label("Room ID")).to_have_js_property("readOnly", True)
    page.get_by_label("Maximum participants").fill("30")
    page.get_by_role("button", name="Save").click()
    expect(notices(page).first).to_contain_text("Room “Bürgerbüro” is saved.", timeout=SLOW)
    wait_until(lambda: gateway.api("GET", "/api/rooms/buergerbuero").json()["max_participants"] == 30, 10, what="saved")
    kept = gateway.api("GET", "/api/rooms/buergerbuero").json()
    assert (kept["host_pin"], kept["layout"], kept["presenters"]) == ("4321", "grid", "hosts")
    row.get_by_role("button", name="Edit Bürgerbüro").click()
    page.keyboard.press("Escape")
    expect(page.locator("#room-form")).to_be_hidden()
    expect(row.get_by_role("button", name="Edit Bürgerbüro")).to_be_focused()

    # A room of the configuration file is shown read-only.
    demo = page.get_by_role("row", name="Demo demo")
    expect(demo).to_contain_text("Configuration file")
    expect(demo.get_by_role("button", name="Edit Demo")).to_have_count(0)
    demo.get_by_role("button", name="Show Demo").click()
    expect(page.get_by_text("This room is defined in the configuration file: change it there.")).to_be_visible()
    expect(page.get_by_label("Display name")).to_be_disabled()
    expect(page.get_by_role("button", name="Save")).to_be_hidden()
    page.get_by_role("button", name="Close", exact=True).click()
    page.screenshot(path=str(SHOTS / "admin-rooms.png"), full_page=True)

    # Room systems: add one through the form.
    page.get_by_role("link", name="Room systems").click()
    expect(page.get_by_text("There are no room systems in the directory yet.")).to_be_visible()
    page.get_by_role("button", name="Add room system").click()
    page.get_by_label("ID", exact=True).fill("ratssaal")
    page.get_by_label("Name", exact=True).fill("Council chamber")
    page.get_by_label("SIP address", exact=True).fill("sip:ratssaal@192.0.2.10")
    page.get_by_label("Default room").select_option("buergerbuero")
    page.get_by_label("Trusted", exact=True).check()
    page.get_by_label("Require encrypted media (SRTP)").check()
    page.get_by_role("button", name="Save").click()
    expect(notices(page).first).to_contain_text("Room system “Council chamber” is added.", timeout=SLOW)
    expect(page.get_by_role("row", name="Council chamber ratssaal")).to_contain_text("Bürgerbüro (buergerbuero)")
    assert gateway.api("GET", "/api/systems/ratssaal").json() == {
        "id": "ratssaal", "name": "Council chamber", "uri": "sip:ratssaal@192.0.2.10", "trusted": True, "default_room": "buergerbuero",
        "srtp": "required", "password": None, "auth_user": None, "challenge_calls": False,
    }
    expect(page.get_by_role("row", name="Council chamber ratssaal")).to_contain_text("Does not register")
    # It is to register with the gateway: a password (asked for, then never shown again).
    page.get_by_role("button", name="Edit Council chamber").click()
    page.get_by_label("Registers with the gateway").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_label("Password", exact=True)).to_be_focused()
    expect(page.locator("#errors")).to_contain_text("A room system that registers needs a password.")
    page.get_by_label("Password", exact=True).fill("Ratssaal-Kennwort-42")
    page.get_by_role("button", name="Save").click()
    expect(notices(page).first).to_contain_text("Room system “Council chamber” is saved.", timeout=SLOW)
    expect(page.get_by_role("row", name="Council chamber ratssaal")).to_contain_text("Not registered")
    assert gateway.api("GET", "/api/systems/ratssaal").json()["password"] == "**********"
    page.get_by_role("button", name="Edit Council chamber").click()  # an edit that leaves the field empty keeps it
    expect(page.get_by_label("Registers with the gateway")).to_be_checked()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("row", name="Council chamber ratssaal")).to_contain_text("Not registered", timeout=SLOW)
    assert gateway.api("GET", "/api/systems/ratssaal").json()["password"] == "**********"
    page.screenshot(path=str(SHOTS / "admin-systems.png"), full_page=True)

    # Routing rules: add two, move the second up, delete one; check where an alias goes.
    page.get_by_role("link", name="Routing rules").click()
    for pattern, target in ((r"48(\d\d)", r"office-\1"), (r"49\d+", "demo")):
        page.get_by_label("Pattern").fill(pattern)
        page.locator("#rule-form").get_by_label("Room", exact=True).fill(target)
        page.get_by_role("button", name="Add rule at the end").click()
        expect(page.get_by_role("cell", name=pattern, exact=True)).to_be_visible(timeout=SLOW)
    assert [r["id"] for r in gateway.api("GET", "/api/rules").json()] == ["rule-1", "rule-2"]
    page.get_by_role("button", name="Move rule rule-2 up").click()
    wait_until(lambda: [r["id"] for r in gateway.api("GET", "/api/rules").json()] == ["rule-2", "rule-1"], 10, what="moved")
    expect(page.get_by_role("button", name="Move rule rule-2 down")).to_be_focused()
    page.get_by_label("Dialled alias or number").fill("4999")
    page.get_by_role("button", name="Check").click()
    expect(page.locator("#route-result")).to_have_text("“4999” goes to room demo.")
    page.screenshot(path=str(SHOTS / "admin-rules.png"), full_page=True)
    page.get_by_role("button", name="Delete rule-1").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    wait_until(lambda: [r["id"] for r in gateway.api("GET", "/api/rules").json()] == ["rule-2"], 10, what="deleted")

    # German: every label of the page changes, and the choice is kept.
    page.get_by_label("Language", exact=True).select_option("de")
    expect(page.get_by_role("heading", name="Weiterleitungsregeln", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="Laufende Besprechungen")).to_be_visible()
    expect(page.get_by_role("button", name="Regel am Ende hinzufügen")).to_be_visible()
    expect(page.get_by_role("button", name="Regel rule-2 nach unten verschieben")).to_be_disabled()
    expect(page.get_by_label("Muster")).to_be_visible()
    expect(page.locator("#who")).to_have_text("Angemeldet: admin (Administrator)")
    assert page.evaluate("() => document.documentElement.lang") == "de"
    page.get_by_role("link", name="Räume").click()
    expect(page.get_by_role("row", name="Bürgerbüro buergerbuero")).to_contain_text("Mo 08:00-12:00, 13:00-16:00")
    expect(page.get_by_role("button", name="Neuer Raum")).to_be_visible()
    page.screenshot(path=str(SHOTS / "admin-german.png"), full_page=True)
    page.reload()
    expect(page.get_by_role("heading", name="Räume", level=1)).to_be_visible(timeout=SLOW)  # still signed in, still German


def test_the_live_view_controls_a_real_participant_and_the_records_show_the_call(
    gateway: RunningGateway, open_participant, tmp_path: Path
) -> None:
    ben = open_participant(f"{gateway.base_url}/r/demo?name=Ben", 1000)
    wait_until(lambda: ben.evaluate("() => window.gatewayClient && window.gatewayClient.phase") == "meeting", 30, what="Ben in the meeting")
    page = open_admin(open_participant, gateway)
    sign_in(page, ADMIN_TOKEN)
    expect(page.get_by_role("heading", name="Live meetings", level=1)).to_be_focused(timeout=SLOW)

    card = page.locator("article.live-room", has=page.get_by_role("heading", name="Demo demo"))
    ben_row = card.get_by_role("row", name="Ben")
    expect(ben_row).to_contain_text("Browser", timeout=SLOW)
    expect(ben_row).to_contain_text("Guest")
    expect(ben_row).to_contain_text("Microphone on")
    # Media counters arrive through the 2 s refresh: audio packets from Ben's fake microphone.
    audio_cell = ben_row.locator('[data-col="audio"]')
    wait_until(lambda: audio_cell.inner_text().replace(",", "") not in ("", "0"), 30, what="audio packets counted")

    # Mute Ben by keyboard from the top of the section: Tab to his button, Enter.
    tab_to(page, "Mute Ben")
    page.keyboard.press("Enter")
    wait_until(lambda: gateway.api("GET", "/api/rooms/demo/participants").json()[0]["host_muted"], 10, what="Ben muted")
    participant = gateway.api("GET", "/api/rooms/demo/participants").json()[0]
    assert participant["name"] == "Ben" and participant["muted"] is True
    expect(page.get_by_role("button", name="Unmute Ben")).to_be_focused(timeout=SLOW)  # the same button, still focused
    expect(ben_row).to_contain_text("Muted by a host")
    expect(notices(page).first).to_contain_text("Ben is muted.")

    ben_row.get_by_role("button", name="Forbid Ben to unmute").click()
    wait_until(lambda: gateway.api("GET", "/api/rooms/demo/participants").json()[0]["self_unmute_forbidden"], 10, what="forbidden")
    expect(ben_row).to_contain_text("May not unmute", timeout=SLOW)

    # Lock and unlock.
    card.get_by_role("button", name="Lock: Demo").click()
    wait_until(lambda: gateway.api("GET", "/api/rooms/demo").json()["live"]["locked"], 10, what="locked")
    expect(card).to_contain_text("Locked", timeout=SLOW)
    card.get_by_role("button", name="Unlock: Demo").click()
    wait_until(lambda: not gateway.api("GET", "/api/rooms/demo").json()["live"]["locked"], 10, what="unlocked")

    # Invite: a destination outside the dial-out rules is refused with the API's reason, in the dialog.
    gateway.api("POST", "/api/systems", json={"id": "ratssaal", "name": "Council chamber", "uri": "sip:ratssaal@192.0.2.10"})
    invite = card.get_by_role("button", name="Invite …: Demo")
    invite.click()
    dialog = page.get_by_role("dialog", name="Invite into “Demo”")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Room system from the directory")).to_have_value("ratssaal")
    dialog.get_by_label("Or another SIP address").fill("sip:premium@198.51.100.7")
    dialog.get_by_role("button", name="Call address").click()
    expect(dialog.locator(".dialog-messages")).to_contain_text("no dial-out rule allows this destination", timeout=SLOW)
    expect(dialog.get_by_label("Or another SIP address")).to_have_attribute("aria-invalid", "true")
    page.screenshot(path=str(SHOTS / "admin-dial.png"))
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(invite).to_be_focused()

    # A host link, shown with a copy button.
    card.get_by_role("button", name="Host link …: Demo").click()
    link_dialog = page.get_by_role("dialog", name="Host link for “Demo”")
    expect(link_dialog.get_by_label("Host link")).to_have_value(re.compile(re.escape(f"{gateway.base_url}/r/demo?host=") + ".+"))
    expect(link_dialog.get_by_role("button", name="Copy link")).to_be_focused()
    link_dialog.get_by_role("button", name="Copy link").click()
    expect(link_dialog.locator(".dialog-messages")).to_contain_text("The link is")
    link_dialog.get_by_role("button", name="Close", exact=True).click()
    expect(link_dialog).to_be_hidden()

    expect(card).to_contain_text("1 participant")
    page.screenshot(path=str(SHOTS / "admin-live.png"), full_page=True)

    # End the meeting (confirmed in a dialog): Ben is out, and his call record appears.
    card.get_by_role("button", name="End meeting: Demo").click()
    page.get_by_role("dialog").get_by_role("button", name="End meeting").click()
    wait_until(lambda: ben.get_by_text("The meeting has ended").count() == 1, 20, what="Ben sees the end")
    assert gateway.api("GET", "/api/rooms/demo/participants").json() == []
    expect(ben_row).to_have_count(0, timeout=SLOW)
    wait_until(lambda: gateway.api("GET", "/api/call-records").json(), 20, what="call record written")

    page.get_by_role("link", name="Call records").click()
    page.locator("#records-form").get_by_label("Room", exact=True).fill("demo")
    page.get_by_role("button", name="Show", exact=True).click()
    record = page.get_by_role("row").filter(has_text="Ben")
    expect(record).to_contain_text("meeting ended", timeout=SLOW)
    expect(page.locator("#records-count")).to_have_text("1 record.")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    saved = tmp_path / "records.csv"
    download.value.save_as(saved)
    lines = saved.read_text().splitlines()
    assert lines[0].startswith("id,room,participant,name") and any(",Ben," in line for line in lines[1:])
    page.screenshot(path=str(SHOTS / "admin-records.png"), full_page=True)


def test_an_operator_sees_live_controls_but_no_editing_in_the_browser_language(
    gateway: RunningGateway, open_participant
) -> None:
    gateway.api("POST", "/api/systems", json={"id": "ratssaal", "name": "Ratssaal", "uri": "sip:ratssaal@192.0.2.10"})
    gateway.api("POST", "/api/rules", json={"id": "amt", "pattern": r"48(\d\d)", "room": r"amt-\1"})
    gateway.api("POST", "/api/rooms", json={"id": "sprechstunde", "name": "Sprechstunde", "host_pin": "2468"})
    carol = open_participant(f"{gateway.base_url}/r/lobby?name=Carol", None)
    wait_until(lambda: carol.evaluate("() => window.gatewayClient && window.gatewayClient.phase") == "lobby", 30, what="Carol waits")
    page = open_admin(open_participant, gateway, "de-DE")
    expect(page.get_by_role("heading", name="Anmelden", level=1)).to_be_visible()  # German from the browser
    sign_in(page, OPERATOR_TOKEN)
    expect(page.get_by_role("heading", name="Laufende Besprechungen", level=1)).to_be_focused(timeout=SLOW)
    expect(page.locator("#who")).to_have_text("Angemeldet: night-shift (Operator)")
    expect(page.locator("#role-note")).to_be_visible()

    # Live: meeting controls yes, host links (administrators only) no.
    card = page.locator("article.live-room", has=page.get_by_role("heading", name="Sprechstunde sprechstunde"))
    expect(card.get_by_role("button", name="Sperren: Sprechstunde")).to_be_visible()
    expect(card.get_by_role("button", name="Moderationslink …: Sprechstunde")).to_be_hidden()
    # An operator admits from the waiting room.
    lobby = page.locator("article.live-room", has=page.get_by_role("heading", name="Citizen office lobby"))
    expect(lobby.get_by_role("heading", name="Warteraum (1)")).to_be_visible(timeout=SLOW)
    expect(lobby).to_contain_text("Platz 1 der Warteschlange")
    page.screenshot(path=str(SHOTS / "admin-operator-live.png"), full_page=True)
    lobby.get_by_role("button", name="Carol einlassen").click()
    wait_until(lambda: carol.evaluate("() => window.gatewayClient.phase") == "meeting", 20, what="Carol admitted")
    expect(lobby.get_by_role("row", name="Carol")).to_contain_text("Gast", timeout=SLOW)
    assert [p["name"] for p in gateway.api("GET", "/api/rooms/lobby/participants").json()] == ["Carol"]

    # Rooms: shown, not editable; PINs are not sent to operators.
    page.get_by_role("link", name="Räume").click()
    row = page.get_by_role("row", name="Sprechstunde sprechstunde")
    expect(row).to_contain_text("Verwaltung")
    expect(page.get_by_role("button", name="Neuer Raum")).to_be_hidden()
    expect(page.get_by_role("button", name="Sprechstunde bearbeiten")).to_have_count(0)
    expect(page.get_by_role("button", name="Sprechstunde löschen")).to_have_count(0)
    row.get_by_role("button", name="Sprechstunde anzeigen").click()
    expect(page.get_by_text("Nur Administratoren dürfen Räume ändern.")).to_be_visible()
    expect(page.get_by_label("Moderations-PIN")).to_have_value("")
    expect(page.get_by_label("Moderations-PIN")).to_be_disabled()
    expect(page.get_by_role("button", name="Speichern")).to_be_hidden()
    page.screenshot(path=str(SHOTS / "admin-operator-rooms.png"), full_page=True)
    page.keyboard.press("Escape")

    page.get_by_role("link", name="Raumsysteme").click()
    expect(page.get_by_role("row", name="Ratssaal ratssaal")).to_be_visible()
    expect(page.get_by_role("button", name="Raumsystem hinzufügen")).to_be_hidden()
    expect(page.get_by_role("button", name="Ratssaal bearbeiten")).to_have_count(0)

    page.get_by_role("link", name="Weiterleitungsregeln").click()
    expect(page.get_by_role("cell", name=r"48(\d\d)")).to_be_visible()
    expect(page.get_by_role("heading", name="Regel hinzufügen")).to_be_hidden()
    expect(page.get_by_role("button", name="Regel amt nach oben verschieben")).to_have_count(0)
    expect(page.get_by_role("button", name="amt löschen")).to_have_count(0)
    # Checking where an alias goes is reading: allowed.
    page.get_by_label("Gewählter Alias oder Nummer").fill("4812")
    page.get_by_role("button", name="Prüfen").click()
    expect(page.locator("#route-result")).to_have_text("Kein Raum nimmt „4812“ an: Der Anruf wird abgewiesen.")

    # Signing out forgets the token.
    page.get_by_role("button", name="Abmelden").click()
    expect(page.get_by_label("Zugangs-Token")).to_be_focused()
    assert page.evaluate("() => sessionStorage.getItem('gateway.admin.token')") is None
