"""Before joining (the page's static/precheck.js) in headless Chromium with its fake camera and a
440 Hz microphone: the form shows the camera's moving preview and a live microphone level, lists
camera, microphone and speaker, plays a test sound, remembers the chosen microphone on this device,
and joins with the microphone and the camera off when asked (the room shows the participant muted
and without video from the start). A one-click link with a name still joins at once."""

from __future__ import annotations

import json

from tests.support.browser import in_meeting
from tests.support.gateway import TEST_CONFIG, RunningGateway, gateway_per_module, participant, wait_until

shared_gateway, demo = gateway_per_module("demo", TEST_CONFIG)


# Whether the preview shows a live stream again (after a device switch stopped the old one)
PREVIEW_LIVE_JS = """
() => {
  const stream = document.getElementById('preview-video').srcObject;
  return !!stream && stream.getTracks().length > 0 && stream.getTracks().every((t) => t.readyState === 'live');
}
"""


def test_the_device_check_before_joining_and_joining_muted_without_camera(demo: RunningGateway, open_participant) -> None:  # type: ignore[no-untyped-def]
    page = open_participant(f"{demo.base_url}/r/demo", 440.0)  # (no name: the form, with the check)
    wait_until(lambda: page.evaluate("() => document.getElementById('preview-video').videoWidth") > 0, 20, what="the preview")
    shown = page.evaluate("() => document.getElementById('preview-video').currentTime")
    wait_until(lambda: page.evaluate("() => document.getElementById('preview-video').currentTime") > shown + 0.5, 10, what="moving frames")
    levels = []
    for _ in range(10):
        levels.append(page.evaluate("() => document.getElementById('mic-level').value"))
        page.wait_for_timeout(150)
    assert max(levels) > 0.05 and len(set(levels)) > 1, levels  # (the tone is heard, the meter moves)
    for select in ("camera-select", "microphone-select", "speaker-select"):
        assert page.locator(f"#{select} option").count() >= 1, select
    page.click("#speaker-test")
    assert page.locator("#speaker-test").get_attribute("data-played") == "1"
    microphone = page.locator("#microphone-select option").first.get_attribute("value")
    page.select_option("#microphone-select", microphone)
    assert json.loads(page.evaluate("() => localStorage.getItem('gateway.devices')"))["microphone"] == microphone
    # (the choice restarts the preview: its old tracks end, the new ones show, the form moves a
    # little; a click in between can miss, as it did once under CI load)
    wait_until(lambda: page.evaluate(PREVIEW_LIVE_JS), 15, what="the preview back on the chosen microphone")

    page.check("#precheck-mic-off")
    page.check("#precheck-cam-off")
    page.fill("#name-input", "Vorab")
    page.get_by_role("button", name="Join", exact=True).click()
    wait_until(lambda: in_meeting(page), 40, what="in the meeting")
    member = wait_until(lambda: participant(demo, "demo", "Vorab"), 10, what="the participant")
    wait_until(lambda: (participant(demo, "demo", "Vorab") or {}).get("muted") is True, 10, what="muted")
    assert isinstance(member, dict)
    wait_until(lambda: (participant(demo, "demo", "Vorab") or {}).get("video_off") is True, 10, what="camera off")
    assert page.evaluate("() => window.gatewayClient.micTrack.enabled") is False
    page.click("#btn-leave")
    wait_until(lambda: participant(demo, "demo", "Vorab") is None, 15, what="left")
