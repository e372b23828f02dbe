"""Connection quality in headless Chromium: Chromium's own network emulation (DevTools'
Network.emulateNetworkConditionsByRule, whose packetLoss applies to WebRTC) drops a quarter of one
participant's packets. The gateway grades that participant's connection poor (rooms/quality.py:
the audio it gets from her, and the browser's receiver reports on what it sends her), although she
is muted; her page shows the plain-language hint, the other participant's page marks her tile;
with the loss lifted, the grade recovers and the hint goes."""

from __future__ import annotations

from tests.support.browser import NEGLIGIBLE_LOSS, emulate_network, in_meeting, join
from tests.support.gateway import TEST_CONFIG, RunningGateway, gateway_per_module, participant, wait_until

shared_gateway, demo = gateway_per_module("demo", TEST_CONFIG)


def quality(gateway: RunningGateway, name: str) -> object:
    return (participant(gateway, "demo", name) or {}).get("quality")


def badge_texts(page, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The status badges on the tile of the participant called `name`."""
    return list(
        page.evaluate(
            """(name) => [...document.querySelectorAll('#tiles .tile')]
                .filter((t) => t.querySelector('.tile-name').textContent === name)
                .flatMap((t) => [...t.querySelectorAll('.badges .badge')].map((b) => b.textContent))""",
            name,
        )
    )


def test_a_lossy_connection_is_graded_poor_shown_to_everyone_and_hinted_to_its_owner(demo: RunningGateway, open_participant) -> None:  # type: ignore[no-untyped-def]
    anna = open_participant(f"{demo.base_url}/r/demo", 440.0)
    cdp = anna.context.new_cdp_session(anna)
    cdp.send("Network.enable")
    emulate_network(cdp, NEGLIGIBLE_LOSS)
    anna.fill("#name-input", "Anna")
    anna.get_by_role("button", name="Join", exact=True).click()
    bert = join(open_participant, demo, "demo", "Bert", 1700.0)
    wait_until(lambda: in_meeting(anna) and in_meeting(bert), 40, what="both in the meeting")
    wait_until(lambda: quality(demo, "Anna") == "good" and quality(demo, "Bert") == "good", 20, what="both graded good")
    assert anna.locator("#quality-hint").is_hidden()
    anna.click("#btn-mic")  # (muted people are measured too: their browsers still send)
    wait_until(lambda: (participant(demo, "demo", "Anna") or {}).get("muted") is True, 10, what="Anna muted")

    emulate_network(cdp, 25)
    wait_until(lambda: quality(demo, "Anna") == "poor", 20, what="Anna graded poor")
    wait_until(lambda: anna.locator("#quality-hint").is_visible(), 10, what="the hint on Anna's page")
    assert "Your connection is poor." in anna.locator("#quality-hint").inner_text()
    wait_until(lambda: "Poor connection" in badge_texts(bert, "Anna"), 10, what="Anna's tile marked on Bert's page")
    assert quality(demo, "Bert") == "good" and bert.locator("#quality-hint").is_hidden()

    emulate_network(cdp, NEGLIGIBLE_LOSS)
    wait_until(lambda: quality(demo, "Anna") == "good", 30, what="Anna graded good again")
    wait_until(lambda: anna.locator("#quality-hint").is_hidden(), 10, what="the hint gone")
    wait_until(lambda: "Poor connection" not in badge_texts(bert, "Anna"), 10, what="the mark gone")
    for page in (anna, bert):
        page.click("#btn-leave")
    wait_until(lambda: participant(demo, "demo", "Anna") is None and participant(demo, "demo", "Bert") is None, 15, what="both left")
