"""The meeting's chat (gateway/rooms/chat.py, the page's chat.js) in headless Chromium: a guest's
message reaches the host's page as plain text (markup shown as typed, a guest's link not made
clickable), a host's link is; a late joiner reads the meeting's chat so far; a host removes a
message from every page and turns the chat off (the guest's box is disabled, and the gateway
refuses what it sends anyway); the text never reaches the log; the next meeting starts empty."""

from __future__ import annotations

import json

from tests.support.browser import in_meeting, join
from tests.support.gateway import TEST_CONFIG, RunningGateway, gateway_per_module, participants, wait_until

shared_gateway, demo = gateway_per_module("demo", TEST_CONFIG)

GUEST_TEXT = "Aktenzeichen 4711/2026 <b>fett</b> <img src=x onerror=alert(1)> https://example.org/guest"
HOST_TEXT = "Das Formular: https://example.org/form"


def chat(page) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """The chat as the page shows it: name, text, links and markup elements in each message."""
    return page.evaluate(
        """() => [...document.querySelectorAll('#chat-list .chat-message')].map((m) => ({
            name: m.querySelector('.chat-name').textContent,
            text: m.querySelector('.chat-text').textContent,
            links: [...m.querySelectorAll('.chat-text a')].map((a) => [a.getAttribute('href'), a.rel]),
            elements: m.querySelectorAll('.chat-text *:not(a)').length,
        }))"""
    )


def say(page, text: str) -> None:  # type: ignore[no-untyped-def]
    page.fill("#chat-input", text)
    page.press("#chat-input", "Enter")


def test_chat_reaches_every_page_escaped_and_hosts_remove_and_turn_it_off(demo: RunningGateway, open_participant) -> None:  # type: ignore[no-untyped-def]
    anna = join(open_participant, demo, "demo", "Anna", None, pin="1234")
    bert = join(open_participant, demo, "demo", "Bert", None)
    wait_until(lambda: in_meeting(anna) and in_meeting(bert), 40, what="both in the meeting")

    say(bert, GUEST_TEXT)
    shown = wait_until(lambda: chat(anna), 10, what="the guest's message on the host's page")
    assert shown == [{"name": "Bert", "text": GUEST_TEXT, "links": [], "elements": 0}]  # (text as typed; no link from a guest)
    say(anna, HOST_TEXT)
    wait_until(lambda: len(chat(bert)) == 2, 10, what="the host's message on the guest's page")
    assert chat(bert)[1]["links"] == [["https://example.org/form", "noopener noreferrer"]]

    # A late joiner reads the meeting's chat so far.
    carla = join(open_participant, demo, "demo", "Carla", None)
    wait_until(lambda: in_meeting(carla) and len(chat(carla)) == 2, 40, what="the chat so far on a late joiner's page")

    # The host removes the guest's message: gone from every page.
    anna.get_by_role("button", name="Remove the message from Bert").click()
    for page in (bert, carla, anna):
        wait_until(lambda page=page: [m["name"] for m in chat(page)] == ["Anna"], 10, what="the message removed")

    # The host turns the chat off: the guest's box is disabled, and the gateway refuses it anyway.
    # (a click, not uncheck(): the box shows the room's state, and a state message that arrives before
    # the gateway's answer sets it back for a moment, which uncheck() takes for a click that failed)
    anna.get_by_label("Chat on for everyone").click()
    wait_until(lambda: bert.locator("#chat-input").is_disabled() and bert.locator("#chat-off").is_visible(), 10, what="chat off for the guest")
    assert bert.evaluate("() => window.gatewayClient.room.chat_enabled") is False
    bert.evaluate("() => window.gatewayClient.ws.send(JSON.stringify({type: 'chat', text: 'trotzdem'}))")
    wait_until(lambda: (bert.evaluate("() => window.gatewayClient.lastError") or {}).get("code") == "chat_off", 10, what="refused")
    say(anna, "Nur noch Ansagen.")  # (a host still may)
    wait_until(lambda: len(chat(bert)) == 2, 10, what="the host's announcement")

    # Nothing of the chat is logged.
    logged_text = json.dumps(demo.log_lines())
    assert not any(word in logged_text for word in ("Aktenzeichen", "example.org", "trotzdem", "Ansagen")), "chat text in the log"

    # Everyone leaves: the next meeting starts with an empty chat, on.
    for page in (anna, bert, carla):
        page.click("#btn-leave")
    wait_until(lambda: not participants(demo, "demo"), 15, what="the room empty")
    dora = join(open_participant, demo, "demo", "Dora", None)
    wait_until(lambda: in_meeting(dora), 40, what="Dora in the next meeting")
    assert chat(dora) == [] and not dora.locator("#chat-input").is_disabled()
    dora.click("#btn-leave")
    wait_until(lambda: not participants(demo, "demo"), 15, what="the room empty again")
