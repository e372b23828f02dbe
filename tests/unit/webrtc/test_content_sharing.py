"""Content sharing on the browser side (issue 12), without sockets: real BrowserSessions joined over
their message handler, their media taken as answered (the slots' codecs set as a browser agrees them).

- someone else's presentation comes first into a browser's video slots, ahead of the spotlight and
  the cameras, and the page is told a content slot apart from a camera slot ("<id>#content");
- the `present` message starts and stops one's presentation; the room's refusals come back as the
  usual error; an end that was not one's own is told (taken over, stopped by a host or operator);
- a browser's shared screen is a content source of the router, and its frames count only while
  it holds the floor.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.config import parse_config
from gateway.rooms.directory import Directory
from gateway.rooms.floor import Content
from gateway.rooms.pinguard import PinGuard
from gateway.transcode.codecs import StreamKind, h264, vp8
from gateway.transcode.video import EncodedVideoFrame, VideoSourceId
from gateway.webrtc.session import BrowserHub, BrowserSession

CONFIG = parse_config(
    """
server: {joins_per_minute: 10000}
sip: {enabled: false}
storage: {path: null}
webrtc: {video_slots: 3}
rooms:
  - {id: demo, name: Demo, host_pin: "1234"}
  - {id: council, name: Council, host_pin: "1234", presenters: hosts}
"""
)


class Browser:
    """A BrowserSession and everything it sent, as parsed JSON."""

    def __init__(self, hub: BrowserHub) -> None:
        self.sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any] | str) -> None:
            self.sent.append(json.loads(message) if isinstance(message, str) else message)

        async def close(_code: int, _reason: str) -> None:
            return None

        self.session = BrowserSession(hub, send, close, "198.51.100.7:5000", "198.51.100.7")

    async def say(self, **message: Any) -> None:
        await self.session.handle_text(json.dumps(message))
        await settle()

    @property
    def id(self) -> str:
        return self.session.participant_id

    def answered(self) -> None:
        """As after the browser's answer: the slots agreed VP8 first and H.264 by turns."""
        media = self.session.media
        assert media is not None
        for i, slot in enumerate(media.slots):
            slot.codecs = (vp8(96), h264(97)) if i % 2 == 0 else (h264(97), vp8(96))
        media.main_video.codecs = (vp8(96), h264(97))  # (what accept_answer reads off the slots)
        self.session.video_codecs = media.video_codecs
        assert self.session.conference is not None
        self.session.conference.attach_video_receiver(self.session)  # (as the session after the answer)
        self.session._update_video_slots(force=True)

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["type"] == type_]

    def slots(self) -> dict[str, str | None]:
        """What the page was last told its slots carry."""
        told = self.of_type("video_slots")
        assert told, "the page was never told its video slots"
        return told[-1]["video_slots"]  # type: ignore[no-any-return]


async def settle() -> None:
    """Lets the sessions' spawned sends and state flushes run."""
    for _ in range(5):
        await asyncio.sleep(0)


def run(test: Callable[[BrowserHub], Awaitable[None]]) -> None:
    async def main() -> None:
        hub = BrowserHub(CONFIG, Directory(CONFIG), PinGuard.from_config(CONFIG.security))
        try:
            await test(hub)
        finally:
            await hub.close()

    asyncio.run(main())


async def joined(hub: BrowserHub, name: str, room: str = "demo", pin: str = "") -> Browser:
    browser = Browser(hub)
    await browser.say(type="join", room=room, name=name, pin=pin)
    assert browser.of_type("joined"), browser.sent
    return browser


# -- what a browser sees ------------------------------------------------------------------------------


def test_someone_elses_presentation_comes_first_before_the_spotlight_and_the_cameras() -> None:
    async def test(hub: BrowserHub) -> None:
        hanna = await joined(hub, "Hanna", pin="1234")
        ben = await joined(hub, "Ben")
        cem = await joined(hub, "Cem")
        dora = await joined(hub, "Dora")
        for browser in (hanna, ben, cem, dora):
            browser.answered()
        room = hanna.session.room
        room.set_spotlight(hanna.id, dora.id)
        await settle()
        assert hanna.session.wanted_video() == [VideoSourceId(dora.id), VideoSourceId(ben.id), VideoSourceId(cem.id)]

        await cem.say(type="present", on=True)
        assert room.presentation is not None and room.presentation.presenter == cem.id
        assert room.presentation.content is Content.SCREEN
        content = VideoSourceId(cem.id, StreamKind.CONTENT)
        # Hanna: Cem's content first, then the spotlight (Dora), then the cameras by when they joined;
        # three slots: Ben's camera waits, Cem's camera comes before it no longer.
        assert hanna.session.wanted_video() == [content, VideoSourceId(dora.id), VideoSourceId(ben.id), VideoSourceId(cem.id)]
        assert sorted(v for v in hanna.slots().values() if v) == sorted([f"{cem.id}#content", dora.id, ben.id])
        assert f"{cem.id}#content" in ben.slots().values() and f"{cem.id}#content" in dora.slots().values()
        # The presenter does not get its own content back; it sees the three others' cameras.
        assert cem.session.wanted_video()[0] == VideoSourceId(dora.id)
        assert sorted(v for v in cem.slots().values() if v) == sorted([hanna.id, ben.id, dora.id])
        # The router forwards the content to the slot the page was told of.
        media = hanna.session.media
        assert media is not None
        mid = next(mid for mid, value in hanna.slots().items() if value == f"{cem.id}#content")
        assert next(slot for slot in media.slots if slot.mid == mid).source == content
        conference = hanna.session.conference
        assert conference is not None
        assert content in conference.video.subscriptions(hanna.id)

        # Cem stops: the content slot goes, Ben's camera comes back into view.
        await cem.say(type="present", on=False)
        assert room.presentation is None
        assert sorted(v for v in hanna.slots().values() if v) == sorted([dora.id, ben.id, cem.id])
        assert not any(v and v.endswith("#content") for v in hanna.slots().values())
        assert content not in conference.video.subscriptions(hanna.id)

    run(test)


def test_a_room_systems_slides_come_in_as_content_too() -> None:
    async def test(hub: BrowserHub) -> None:
        hanna = await joined(hub, "Hanna", pin="1234")
        ben = await joined(hub, "Ben")
        hanna.answered()
        room = hanna.session.room
        room.start_presenting(ben.id, Content.SLIDES)  # (as BFCP would, for a room system)
        await settle()
        assert list(hanna.slots().values()).count(f"{ben.id}#content") == 1
        assert list(hanna.slots().values()).count(ben.id) == 1  # and the camera beside it

    run(test)


# -- the present message ------------------------------------------------------------------------------


def test_where_only_hosts_present_a_guest_is_refused_with_the_usual_error() -> None:
    async def test(hub: BrowserHub) -> None:
        hanna = await joined(hub, "Hanna", room="council", pin="1234")
        gustav = await joined(hub, "Gustav", room="council")
        assert gustav.of_type("joined")[0]["room"]["presenters"] == "hosts"
        await gustav.say(type="present", on=True)
        assert gustav.session.room.presentation is None
        error = gustav.of_type("error")[-1]
        assert (error["code"], error["request"]) == ("not_allowed", "present")
        # The host may.
        await hanna.say(type="present", on=True)
        presentation = hanna.session.room.presentation
        assert presentation is not None and presentation.presenter == hanna.id
        assert not hanna.of_type("error")
        state = hanna.of_type("state")[-1]["room"]
        assert state["presentation"]["presenter"] == hanna.id and state["presentation"]["content"] == "screen"

    run(test)


def test_a_host_stops_someone_elses_presentation_and_a_guest_cannot() -> None:
    async def test(hub: BrowserHub) -> None:
        hanna = await joined(hub, "Hanna", pin="1234")
        gustav = await joined(hub, "Gustav")
        greta = await joined(hub, "Greta")
        await gustav.say(type="present", on=True)
        await greta.say(type="stop_presentation", participant=gustav.id)
        assert (greta.of_type("error")[-1]["code"], gustav.session.room.presentation is not None) == ("not_allowed", True)
        await hanna.say(type="stop_presentation", participant=gustav.id)
        assert gustav.session.room.presentation is None and not hanna.of_type("error")
        told = [n for n in gustav.of_type("notice") if n["code"] == "presentation_stopped"]
        assert told and told[-1]["reason"] == "stopped_by_host"

    run(test)


def test_present_is_only_possible_in_the_meeting() -> None:
    async def test(hub: BrowserHub) -> None:
        browser = Browser(hub)
        await browser.say(type="present", on=True)
        error = browser.of_type("error")[-1]
        assert (error["code"], error["request"]) == ("not_in_meeting", "present")

    run(test)


def test_the_presenter_is_told_when_its_presentation_ends_and_not_by_itself() -> None:
    async def test(hub: BrowserHub) -> None:
        hanna = await joined(hub, "Hanna", pin="1234")
        ben = await joined(hub, "Ben")
        room = hanna.session.room

        def told(browser: Browser) -> list[dict[str, Any]]:
            return [m for m in browser.of_type("notice") if m["code"] == "presentation_stopped"]

        # Its own stop: nothing to tell.
        await ben.say(type="present", on=True)
        await ben.say(type="present", on=False)
        assert room.presentation is None and not told(ben)
        # Taken over by the host (the host presents).
        await ben.say(type="present", on=True)
        await hanna.say(type="present", on=True)
        assert room.presentation.presenter == hanna.id
        assert told(ben)[-1] == {"type": "notice", "code": "presentation_stopped", "reason": "taken_over", "by": "Hanna"}
        assert not told(hanna)
        # Stopped by a host from her page's controls (the room), and by an operator (the API).
        await ben.say(type="present", on=True)
        room.stop_presenting(by=hanna.id)
        await settle()
        assert told(ben)[-1]["reason"] == "stopped_by_host" and told(ben)[-1]["by"] == "Hanna"
        await ben.say(type="present", on=True)
        room.stop_presenting(None)
        await settle()
        assert told(ben)[-1]["reason"] == "stopped_by_operator" and told(ben)[-1]["by"] is None
        # Stopping what is not one's own presentation does nothing: Hanna's stays.
        await hanna.say(type="present", on=True)
        await ben.say(type="present", on=False)
        assert room.presentation is not None and room.presentation.presenter == hanna.id
        assert not ben.of_type("error")

    run(test)


# -- the shared screen as a source ----------------------------------------------------------------------


def test_the_shared_screen_is_a_content_source_whose_frames_count_only_while_presenting() -> None:
    async def test(hub: BrowserHub) -> None:
        hanna = await joined(hub, "Hanna", pin="1234")
        ben = await joined(hub, "Ben")
        media = ben.session.media
        conference = ben.session.conference
        assert media is not None and conference is not None
        streams = ben.session.video_streams
        assert set(streams) == {StreamKind.MAIN, StreamKind.CONTENT}
        assert streams[StreamKind.CONTENT].sends and streams[StreamKind.CONTENT].codecs == ()
        assert streams[StreamKind.CONTENT].request_keyframe == media._screen_tap.request_keyframe
        assert streams[StreamKind.MAIN].request_keyframe == media._video_tap.request_keyframe
        content = VideoSourceId(ben.id, StreamKind.CONTENT)
        assert set(conference.video.sources_of(ben.id)) == {VideoSourceId(ben.id), content}
        assert media.screen_mid and media.screen_mid not in (media.camera_mid, media.audio_mid)
        assert media.screen_mid not in {slot.mid for slot in media.slots}
        offer = ben.of_type("offer")[-1]
        assert offer["screen_mid"] == media.screen_mid and offer["video_mid"] == media.camera_mid

        frame = EncodedVideoFrame("VP8", b"\x10\x02\x00\x9d\x01\x2a" + bytes(20), 0, True, vp8(96))
        media._screen_frame(vp8(96), frame.data, 0)  # as the screen's receiver would
        assert conference.video.source_stats(content) == 0  # not presenting: dropped
        await ben.say(type="present", on=True)
        media._screen_frame(vp8(96), frame.data, 3000)
        assert conference.video.source_stats(content) == 1
        assert conference.video.source_codec(content) == "VP8"
        assert media.counters()["content_frames_received"] == 2
        await hanna.say(type="present", on=True)  # Hanna takes over: Ben's frames count no more
        media._screen_frame(vp8(96), frame.data, 6000)
        assert conference.video.source_stats(content) == 1

    run(test)
