"""Shared fixtures: a real gateway process on a free port, and real headless Chromium participants."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import CHROMIUM, chromium_args
from tests.support.gateway import RunningGateway, start_gateway, stop_and_check, write_tone


@pytest.fixture(autouse=True)
def _no_kamailio_left() -> Iterator[None]:
    """A test that failed before stopping its kamailio must not leave it running (and its port taken)."""
    yield
    from tests.support.kamailio import RUNNING

    for left in list(RUNNING):
        left.stop()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[RunningGateway]:
    running = start_gateway(tmp_path)
    yield running
    stop_and_check(running)


@pytest.fixture(scope="module")
def playwright_instance():  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture
def open_participant(playwright_instance, tmp_path: Path):  # type: ignore[no-untyped-def]
    """open_participant(url, tone_hz=None, lang='en-US', allow_media=True, video_file=None, device=None, cameras=1) -> a
    Playwright page in its own Chromium (each its own process, so each can have its own fake microphone
    tone and, with video_file (Y4M), its own fake camera picture); `device` names one of Playwright's
    device descriptors (a phone's viewport, touch and user agent: "Pixel 7"); `cameras`: how many fake
    cameras the browser lists."""
    browsers = []

    def open_(  # type: ignore[no-untyped-def]
        url: str,
        tone_hz: float | None = None,
        lang: str = "en-US",
        allow_media: bool = True,
        video_file: Path | None = None,
        device: str | None = None,
        cameras: int = 1,
    ):
        wav = write_tone(tmp_path / f"tone-{tone_hz}.wav", tone_hz) if tone_hz else None
        browser = playwright_instance.chromium.launch(
            executable_path=CHROMIUM, args=chromium_args(wav, allow_media, video_file, cameras), headless=True
        )
        browsers.append(browser)
        emulated = dict(playwright_instance.devices[device]) if device else {}
        emulated.pop("default_browser_type", None)
        context = browser.new_context(locale=lang, **emulated)
        page = context.new_page()
        page.goto(url)
        return page

    yield open_
    for browser in browsers:
        browser.close()


# Run one after another on one worker when the suite runs on two (make test: pytest -n 2 --dist
# loadgroup): the tests that drive Chromium or aiortc peers (their CPU would starve a gateway the
# other worker's test is timing) and the tests that time the gateway's answers themselves. The rest
# (unit tests, SIP peers, the API) run beside them on the other worker.
SERIAL_FILES = {"test_webrtc_media.py", "test_rtp_leg.py", "test_sip_torture.py"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "open_participant" in getattr(item, "fixturenames", ()) or item.path.name in SERIAL_FILES:
            item.add_marker(pytest.mark.xdist_group("serial"))


@pytest.fixture
def h323_peers() -> Iterator[list[Any]]:
    """The H.323 endpoints a test makes (tests/support/h323_peer.py; append them): closed after it."""
    made: list[Any] = []
    yield made
    for peer in made:
        peer.close()
