"""A browser's video slots: each sends one codec (aiortc), so a sender goes into a slot of its own
codec when one is free, and moves there once its codec is known."""

from __future__ import annotations

import asyncio

from gateway.config import WebRtcConfig
from gateway.transcode.codecs import h264, vp8
from gateway.transcode.video import VideoSourceId
from gateway.webrtc.media import BrowserMedia


def media(slots: int = 4) -> BrowserMedia:
    made = BrowserMedia(WebRtcConfig(), slots, on_audio=lambda *a: None, on_video=lambda f: None, on_keyframe_wanted=lambda s: None)
    for i, slot in enumerate(made.slots):  # as the browser agreed: the turns of the offer
        slot.mid = str(i)
        slot.codecs = (vp8(96), h264(97)) if i % 2 == 0 else (h264(97), vp8(96))
    return made


def test_senders_go_to_slots_of_their_codec() -> None:
    async def run() -> None:
        m = media()
        codecs = {"a": "H264", "b": "VP8", "c": None}
        assert m.assign_slots(["a", "b", "c"], lambda s: codecs[s.participant])
        shown = {slot.source.participant: slot.codecs[0].name for slot in m.slots if slot.source}
        assert shown == {"a": "H264", "b": "VP8", "c": "VP8"}  # unknown yet: the first configured codec
        assert m.slot_codecs()[VideoSourceId("a")] == (h264(97),)
        # c turns out to send H.264: it moves to the free H.264 slot
        codecs["c"] = "H264"
        assert m.assign_slots(["a", "b", "c"], lambda s: codecs[s.participant])
        assert {slot.source.participant: slot.codecs[0].name for slot in m.slots if slot.source}["c"] == "H264"
        assert not m.assign_slots(["a", "b", "c"], lambda s: codecs[s.participant])  # settled
        await m.close()

    asyncio.run(run())


def test_the_slots_take_turns_in_which_codec_they_offer_first() -> None:
    async def run() -> None:
        m = BrowserMedia(WebRtcConfig(), 3, on_audio=lambda *a: None, on_video=lambda f: None, on_keyframe_wanted=lambda s: None)
        sdp = await m.create_offer()
        video = sdp.split("m=video")[3:]  # the slots (after the camera and the shared screen)
        firsts = [section.split("\r\n")[0].split()[2] for section in video]
        names = [next(line.split()[1].split("/")[0] for line in section.split("\r\n") if line.startswith(f"a=rtpmap:{pt} ")) for pt, section in zip(firsts, video, strict=True)]
        assert names == ["VP8", "H264", "VP8"]
        await m.close()

    asyncio.run(run())
