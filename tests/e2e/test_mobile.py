"""The meeting page on a phone (headless Chromium emulating a Pixel 7: its viewport, touch and user
agent): a one-tap link joins; the controls sit in the lower half of the screen, within the thumb's
reach, and inside the screen in portrait and in landscape; tapping mutes; the panel button opens the
participant list and the chat, where a message is sent by tapping; tapping leave leaves."""

from __future__ import annotations

from tests.support.browser import in_meeting
from tests.support.gateway import TEST_CONFIG, RunningGateway, gateway_per_module, participant, wait_until

shared_gateway, demo = gateway_per_module("demo", TEST_CONFIG)
CONTROLS = ("#btn-mic", "#btn-cam", "#btn-hand", "#btn-panel", "#btn-leave")


def boxes(page) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    return {selector: page.locator(selector).bounding_box() for selector in CONTROLS}


def test_a_phone_joins_mutes_chats_and_leaves_by_touch(demo: RunningGateway, open_participant) -> None:  # type: ignore[no-untyped-def]
    page = open_participant(f"{demo.base_url}/r/demo?name=Handy", 440.0, device="Pixel 7")
    wait_until(lambda: in_meeting(page), 40, what="the phone in the meeting")
    assert page.evaluate("() => matchMedia('(pointer: coarse)').matches"), "not emulating a touch screen"
    for width, height in ((412, 839), (839, 412)):  # portrait, then landscape
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(300)  # (layout)
        for selector, box in boxes(page).items():
            assert box is not None, f"{selector} not shown at {width}x{height}"
            assert 0 <= box["x"] and box["x"] + box["width"] <= width + 1, (selector, box, width)
            assert box["y"] + box["height"] <= height + 1, (selector, box, height)
            if height > width:
                assert box["y"] >= height / 2, f"{selector} out of the thumb's reach: {box}"
            assert box["height"] >= 40, f"{selector} too small to tap: {box}"  # (WCAG 2.5.5 asks 44 CSS px)

    page.tap("#btn-mic")
    wait_until(lambda: (participant(demo, "demo", "Handy") or {}).get("muted") is True, 10, what="muted by a tap")

    page.tap("#btn-panel")
    wait_until(lambda: page.locator("#participant-list").is_visible() and page.locator("#chat-input").is_visible(), 10, what="the panel open")
    page.locator("#chat-input").tap()
    page.fill("#chat-input", "Vom Handy")
    page.tap("#chat-send")
    wait_until(lambda: page.locator("#chat-list .chat-text").all_text_contents() == ["Vom Handy"], 10, what="the message sent")

    page.tap("#btn-panel")  # (back to the video)
    page.tap("#btn-leave")
    wait_until(lambda: participant(demo, "demo", "Handy") is None, 15, what="left by a tap")
