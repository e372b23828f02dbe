"""A browser's video slots send each frame in its own codec (any the browser agreed on for the
slot), so any sender can be shown in any slot untouched; where slots agreed on different codecs,
a sender goes into a slot that takes its codec, and moves there once its codec is known."""

from __future__ import annotations

import asyncio

from gateway.config import WebRtcConfig
from gateway.transcode.codecs import h264, vp8
from gateway.transcode.video import VideoSourceId
from gateway.webrtc.media import BrowserMedia


def media(slots: int = 4) -> BrowserMedia:
    return BrowserMedia(WebRtcConfig(), slots, on_audio=lambda *a: None, on_video=lambda f: None, on_keyframe_wanted=lambda s: None)


def test_every_slot_takes_every_codec_the_browser_agreed_on() -> None:
    async def run() -> None:
        m = media()
        for i, slot in enumerate(m.slots):
            slot.mid, slot.codecs = str(i), (vp8(96), h264(102))
        codecs = {p: "VP8" for p in "abcd"}  # four VP8 cameras in four slots: none transcoded
        assert m.assign_slots(list("abcd"), lambda s: codecs[s.participant])
        assert all(slot.source is not None for slot in m.slots)
        assert all(m.slot_codecs()[VideoSourceId(p)] == (vp8(96), h264(102)) for p in "abcd")
        codecs["d"] = "H264"  # (a room system: it stays where it is)
        assert not m.assign_slots(list("abcd"), lambda s: codecs[s.participant])
        await m.close()

    asyncio.run(run())


def test_where_slots_agreed_on_different_codecs_a_sender_goes_to_one_of_its_own() -> None:
    async def run() -> None:
        m = media()
        for i, slot in enumerate(m.slots):
            slot.mid = str(i)
            slot.codecs = (vp8(96),) if i % 2 == 0 else (vp8(96), h264(102))
        codecs = {"a": "H264", "b": "VP8", "c": None}
        assert m.assign_slots(["a", "b", "c"], lambda s: codecs[s.participant])
        takes_h264 = {slot.source.participant for slot in m.slots if slot.source and slot.sends("H264")}
        assert "a" in takes_h264
        # c turns out to send H.264: it moves to the free slot that takes it
        codecs["c"] = "H264"
        if "c" not in takes_h264:
            assert m.assign_slots(["a", "b", "c"], lambda s: codecs[s.participant])
        assert "c" in {slot.source.participant for slot in m.slots if slot.source and slot.sends("H264")}
        assert not m.assign_slots(["a", "b", "c"], lambda s: codecs[s.participant])  # settled
        await m.close()

    asyncio.run(run())


def test_the_slots_offer_the_configured_codecs_in_order() -> None:
    async def run() -> None:
        m = BrowserMedia(WebRtcConfig(), 3, on_audio=lambda *a: None, on_video=lambda f: None, on_keyframe_wanted=lambda s: None)
        sdp = await m.create_offer()
        video = sdp.split("m=video")[3:]  # the slots (after the camera and the shared screen)
        for section in video:
            types = section.split("\r\n")[0].split()[2:]
            names = [next(line.split()[1].split("/")[0] for line in section.split("\r\n") if line.startswith(f"a=rtpmap:{pt} ")) for pt in types]
            media_names = [n for n in names if n != "rtx"]
            assert media_names[0] == "VP8" and "H264" in media_names
        await m.close()

    asyncio.run(run())


def test_a_frame_goes_out_with_the_payload_type_that_takes_its_stream() -> None:
    from gateway.transcode.video import EncodedVideoFrame

    async def run() -> None:
        m = media(1)
        (slot,) = m.slots
        slot.codecs = (vp8(96), h264(102, "42e01f"), h264(106, "640c1f"))  # constrained baseline, high

        def frame(codec: str, format: object = None) -> EncodedVideoFrame:
            return EncodedVideoFrame(codec, b"\x00", 0, True, format=format)  # type: ignore[arg-type]

        assert slot.payload_type(frame("VP8", vp8(100))) == 96
        assert slot.payload_type(frame("H264", h264(97, "42e01f"))) == 102
        assert slot.payload_type(frame("H264", h264(98, "640c1f"))) == 106  # (only the high one decodes it)
        assert slot.payload_type(frame("H264")) == 102  # (the name alone: the first H.264)
        slot.agree((vp8(96),))
        assert slot.payload_type(frame("H264", h264(97))) is None  # not agreed: the router transcodes
        await m.close()

    asyncio.run(run())
