"""Content sharing from and to browsers (issue 12), end to end: real headless Chromium pages against
the real gateway process. Chromium's fake capture answers getDisplayMedia with a moving test screen
(1280x720) under the flags every page here has (--use-fake-ui-for-media-stream accepts the picker).

A page shares its screen from the toolbar; the room and the API show the presentation; the other
page shows it as a tile of its own, first and large, whose video decodes; stopping, being taken
over, and a stop from the API (an operator) end the share on the presenter's page with a notice,
and the capture stops. Where only hosts may present, a guest's button says why it does nothing
and the gateway refuses the request anyway.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import (
    content_frames,
    content_tile,
    in_meeting,
    join,
    participant_id,
    share_state,
    shows_content_first_and_large,
    tiles,
)
from tests.support.gateway import TEST_CONFIG, RunningGateway, start_gateway, stop_and_check, wait_until

pytestmark = pytest.mark.browser

# One more room, where only hosts (and trusted room systems) may present.
CONFIG = TEST_CONFIG + '  - {id: chamber, name: Chamber, host_pin: "1234", presenters: hosts}\n'


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """One gateway for the module: each test has rooms of its own, so they do not disturb each other."""
    running = start_gateway(tmp_path_factory.mktemp("gateway"), CONFIG)
    yield running
    stop_and_check(running)


def presentation(gateway: RunningGateway, room: str) -> dict[str, Any] | None:
    """The room's presentation as the admin API shows it (without `since`), None when nobody presents."""
    shown = gateway.api("GET", f"/api/rooms/{room}").json()["presentation"]
    return {k: v for k, v in shown.items() if k != "since"} if shown else None


def notice(page) -> dict[str, Any] | None:  # type: ignore[no-untyped-def]
    return page.evaluate("() => window.gatewayClient.lastNotice")  # type: ignore[no-any-return]


def toasts(page) -> list[str]:  # type: ignore[no-untyped-def]
    return list(page.evaluate("() => [...document.querySelectorAll('.toast p')].map((p) => p.textContent)"))


def share_button(page):  # type: ignore[no-untyped-def]
    return page.locator("#btn-share")


def test_a_browser_shares_its_screen_and_the_other_sees_it_first_and_large(
    gateway: RunningGateway, open_participant, tmp_path: Path
) -> None:
    anna = join(open_participant, gateway, "demo", "Anna", None)
    ben = join(open_participant, gateway, "demo", "Ben", None, pin="1234")
    for page in (anna, ben):
        page.set_viewport_size({"width": 1366, "height": 900})
        wait_until(lambda page=page: in_meeting(page), 40, what="in the meeting")
    ids = {"Anna": participant_id(anna), "Ben": participant_id(ben)}
    wait_until(lambda: len(tiles(anna)) == 2 and len(tiles(ben)) == 2, 20, what="two tiles on each page")
    assert presentation(gateway, "demo") is None
    assert share_state(anna)["screen_mid"], "the offer named no screen line"

    # Anna shares her screen from the toolbar.
    anna.get_by_role("button", name="Share screen", exact=True).click()
    wait_until(lambda: presentation(gateway, "demo") == {"presenter": ids["Anna"], "content": "screen"}, 15, what="Anna presenting (API)")
    wait_until(lambda: share_state(anna)["confirmed"], 10, what="Anna's page sees its share confirmed")
    # (told at once: the notice shows for 8 s, less than the waits for frames below may take under load)
    wait_until(lambda: any("Anna is presenting now." in text for text in toasts(ben)), 8, what="Ben told that Anna presents")
    shared = share_state(anna)
    assert shared["track"] == "live" and shared["sender_track"] == "live" and shared["direction"] == "sendonly", shared
    assert shared["hint"] == "detail", shared
    assert shared["encodings"] and shared["encodings"][0]["maxFramerate"] == 15, shared  # type: ignore[index]
    assert shared["encodings"][0]["maxBitrate"] == 1_500_000, shared  # type: ignore[index]
    # Anna's page: a small "You are presenting" and "Stop sharing", not her own screen back.
    assert anna.locator("#presenting-badge").is_visible()
    assert anna.locator("#presenting-badge").text_content() == "You are presenting"
    stop = anna.get_by_role("button", name="Stop sharing", exact=True)
    assert stop.get_attribute("aria-pressed") == "true"
    assert not any(str(t["key"]).endswith("#content") for t in tiles(anna)), tiles(anna)
    anna.screenshot(path=str(tmp_path / "anna-presents.png"))

    # Ben's page: Anna's screen first and large, its video decoding, and the frames keep coming.
    wait_until(lambda: shows_content_first_and_large(ben, ids["Anna"], "Anna"), 30, what="Ben's page shows Anna's screen first and large")
    wait_until(lambda: content_frames(ben, ids["Anna"]) > 10, 20, what="Ben decodes Anna's screen")
    first = content_frames(ben, ids["Anna"])
    wait_until(lambda: content_frames(ben, ids["Anna"]) > first + 5, 10, what="Anna's screen keeps coming to Ben")
    # (her camera stays in the strip beside it, marked as presenting)
    camera = next(t for t in tiles(ben) if t["key"] == ids["Anna"])
    assert "Presenting" in camera["badges"] and not camera["main"], camera
    screen = content_tile(ben, ids["Anna"])
    assert screen is not None
    print("Ben's page shows Anna's screen at", screen["videoWidth"], "x", screen["videoHeight"], "in a tile of", screen["width"], "x", screen["height"])
    shot = tmp_path / "ben-sees-anna-presenting.png"
    ben.screenshot(path=str(shot))
    print("screenshot:", shot)

    # Anna stops: the presentation ends, the tile goes, her capture stops.
    stop.click()
    wait_until(lambda: presentation(gateway, "demo") is None, 10, what="Anna's presentation ended (API)")
    wait_until(lambda: content_tile(ben, ids["Anna"]) is None, 10, what="the screen tile gone from Ben's page")
    assert share_state(anna)["sharing"] is False and share_state(anna)["sender_track"] is None
    assert anna.get_by_role("button", name="Share screen", exact=True).get_attribute("aria-pressed") == "false"
    assert not anna.locator("#presenting-badge").is_visible()

    # Anna shares again; Ben takes over: Anna is told, her capture stops, and she sees Ben's screen.
    anna.get_by_role("button", name="Share screen", exact=True).click()
    wait_until(lambda: share_state(anna)["confirmed"], 15, what="Anna presenting again")
    anna.evaluate("() => { window.__capture = window.gatewayClient.share.track; }")
    ben.get_by_role("button", name="Share screen", exact=True).click()
    wait_until(lambda: presentation(gateway, "demo") == {"presenter": ids["Ben"], "content": "screen"}, 15, what="Ben took over (API)")
    wait_until(lambda: (notice(anna) or {}).get("reason") == "taken_over", 10, what="Anna told of the takeover")
    assert notice(anna) == {"type": "notice", "code": "presentation_stopped", "reason": "taken_over", "by": "Ben"}
    wait_until(lambda: "Ben took over the presentation. Your screen is no longer shared." in toasts(anna), 5, what="the takeover shown")
    assert anna.evaluate("() => window.__capture.readyState") == "ended", "Anna's capture goes on after the takeover"
    assert share_state(anna)["sharing"] is False
    wait_until(lambda: shows_content_first_and_large(anna, ids["Ben"], "Ben"), 30, what="Anna's page shows Ben's screen")

    # An operator stops Ben's presentation through the API: Ben is told, his capture stops.
    wait_until(lambda: share_state(ben)["confirmed"], 10, what="Ben's share confirmed")
    ben.evaluate("() => { window.__capture = window.gatewayClient.share.track; }")
    answer = gateway.api("POST", "/api/rooms/demo/presentation/stop")
    assert answer.status_code == 200 and answer.json()["stopped"]["presenter"] == ids["Ben"], answer.text
    wait_until(lambda: (notice(ben) or {}).get("reason") == "stopped_by_operator", 10, what="Ben told of the stop")
    wait_until(lambda: "A host stopped your presentation. Your screen is no longer shared." in toasts(ben), 5, what="the stop shown")
    assert ben.evaluate("() => window.__capture.readyState") == "ended", "Ben's capture goes on after the stop"
    wait_until(lambda: content_tile(anna, ids["Ben"]) is None, 10, what="Ben's screen gone from Anna's page")
    assert presentation(gateway, "demo") is None

    # Ben, a host, stops Anna's presentation from the participant list: Anna is told.
    anna.get_by_role("button", name="Share screen", exact=True).click()
    wait_until(lambda: share_state(anna)["confirmed"], 15, what="Anna presenting once more")
    stop_hers = ben.get_by_role("button", name="Stop the presentation of Anna", exact=True)
    if not stop_hers.is_visible():
        ben.locator("#btn-panel").click()  # (the participant list, where the host's controls are)
    stop_hers.click()
    wait_until(lambda: (notice(anna) or {}).get("reason") == "stopped_by_host", 10, what="Anna told of the host's stop")
    assert notice(anna) == {"type": "notice", "code": "presentation_stopped", "reason": "stopped_by_host", "by": "Ben"}
    wait_until(lambda: presentation(gateway, "demo") is None and share_state(anna)["sharing"] is False, 10, what="Anna's share ended")
    assert not anna.get_by_role("button", name="Stop the presentation of Ben", exact=True).count()  # (Anna is no host)


def test_where_only_hosts_present_a_guest_cannot_and_the_browsers_own_stop_ends_a_share(
    gateway: RunningGateway, open_participant
) -> None:
    hanna = join(open_participant, gateway, "chamber", "Hanna", None, pin="1234")
    gustav = open_participant(f"{gateway.base_url}/r/chamber?name=Gustav", None, lang="de-DE")  # (the German page)
    for page in (hanna, gustav):
        wait_until(lambda page=page: in_meeting(page), 40, what="in the meeting")
    ids = {"Hanna": participant_id(hanna), "Gustav": participant_id(gustav)}

    # The guest's button is there, says why it does nothing, and does nothing.
    only_hosts = "In dieser Besprechung darf nur die Moderation den Bildschirm teilen."
    button = share_button(gustav)
    assert button.is_visible() and button.get_attribute("aria-disabled") == "true"
    assert button.text_content() == "Bildschirm teilen"
    reason = gustav.locator("#share-reason")
    assert reason.is_visible() and reason.text_content() == only_hosts
    assert button.get_attribute("aria-describedby") == "share-reason"
    button.focus()  # (focusable: a keyboard user reaches it, and hears the reason)
    gustav.keyboard.press("Enter")
    wait_until(lambda: only_hosts in toasts(gustav), 5, what="the reason shown on Enter")
    assert share_state(gustav)["sharing"] is False and presentation(gateway, "chamber") is None
    # Asked anyway (an old page, a hand-made message): the gateway refuses with the usual error.
    gustav.evaluate("() => window.gatewayClient.send({type: 'present', on: true})")
    wait_until(lambda: (gustav.evaluate("() => window.gatewayClient.lastError") or {}).get("request") == "present", 5, what="the refusal")
    assert gustav.evaluate("() => window.gatewayClient.lastError")["code"] == "not_allowed"
    assert presentation(gateway, "chamber") is None

    # The host may; stopping from the browser's own "Stop sharing" (the track ends) ends the presentation.
    assert share_button(hanna).get_attribute("aria-disabled") is None
    hanna.get_by_role("button", name="Share screen", exact=True).click()
    wait_until(lambda: presentation(gateway, "chamber") == {"presenter": ids["Hanna"], "content": "screen"}, 15, what="Hanna presenting")
    wait_until(lambda: content_frames(gustav, ids["Hanna"]) > 5, 30, what="Gustav decodes Hanna's screen")
    wait_until(lambda: (content_tile(gustav, ids["Hanna"]) or {}).get("playing"), 10, what="Hanna's screen playing on Gustav's page")
    screen = content_tile(gustav, ids["Hanna"])
    assert screen is not None and screen["caption"] == "Hanna präsentiert" and "Geteilter Bildschirm" in screen["badges"], screen
    hanna.evaluate("() => window.gatewayClient.share.track.dispatchEvent(new Event('ended'))")
    wait_until(lambda: presentation(gateway, "chamber") is None, 10, what="the presentation ended with the capture")
    wait_until(lambda: content_tile(gustav, ids["Hanna"]) is None, 10, what="the screen tile gone from Gustav's page")
    assert share_state(hanna)["sharing"] is False
