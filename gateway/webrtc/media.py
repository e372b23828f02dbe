"""One browser's peer connection: microphone up and meeting mix down, camera and shared screen up,
video slots down.

The gateway always offers. The offer has one sendrecv audio m-line, one recvonly video m-line
for the camera, one recvonly video m-line for the shared screen, and a fixed number of sendonly
video "slots", each of which carries one other participant's forwarded video (a camera, or the
content someone presents); what a slot carries is signalled over the WebSocket, so people joining
and leaving, and sharing starting and stopping, never need an SDP renegotiation.

As a leg, a browser has two video streams: its main one (the camera is its source in the router,
(participant, main); the slots take the codecs the browser agreed on them, with their profiles)
and its content (the shared screen is its source, (participant, content); it receives nothing on
it: someone else's content comes in a slot, through the main stream).
The camera comes in simulcast: the offer asks for two layers (RFC 8853; the browser sends the first
at half the size of the second), both go to the router, and each browser receives the layer its
session picks for it (its REMB against what the layers send; small tiles take the lower one).

Everything aiortc goes through `gateway.rtp.aiortc_glue`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.config import WebRtcConfig
from gateway.rooms.leg import VideoStream
from gateway.rtp.aiortc_glue import (
    AudioPacketSink,
    EncodedTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoTap,
    codec_capabilities,
    far_end_report,
    negotiated_codecs,
    offer_rid_extension,
    offer_simulcast,
    on_keyframe_request,
    on_receiver_estimate,
    route_by_mid,
    send_any_codec,
    tap_audio,
)
from gateway.transcode.codecs import StreamCodec, StreamKind, can_forward, codec_names
from gateway.transcode.mixer import MixedFrame
from gateway.transcode.video import EncodedVideoFrame, VideoSourceId, VideoTimeline, is_keyframe
from gateway.webrtc.signalling import content_slot_value

FRAME_SAMPLES_48K = 960
# The camera in simulcast (RFC 8853): two layers, lowest first (the browser sends the first at half
# the size of the second), each forwarded to the browsers whose bandwidth and tiles need it.
SIMULCAST_RIDS = ("l", "h")

route_by_mid()  # (the layers come with no SSRCs announced: routed by their MID)
offer_rid_extension()


@dataclass
class VideoSlot:
    mid: str
    track: EncodedTrack
    source: VideoSourceId | None = None
    timeline: VideoTimeline = field(default_factory=VideoTimeline)
    # What the browser agreed on this slot; each frame goes out in its own codec (send_any_codec)
    codecs: tuple[StreamCodec, ...] = ()
    layer: int = 0  # the simulcast layer it forwards now
    # the payload type each stream's frames go out with (by its negotiated descriptor, or its name)
    payload_types: dict[StreamCodec | str, int | None] = field(default_factory=dict)

    def agree(self, codecs: tuple[StreamCodec, ...]) -> None:
        """What the browser agreed on for the slot (each answer): the payload types chosen so far
        were for the codecs before."""
        self.codecs = codecs
        self.payload_types.clear()

    def sends(self, codec: str) -> bool:
        return any(c.name.upper() == codec for c in self.codecs)

    def show(self, source: VideoSourceId | None) -> None:
        self.source = source
        self.timeline.restart()

    def push(self, frame: EncodedVideoFrame) -> None:
        # Timestamps move forward only, even when the slot changes source or simulcast layer (each
        # layer has a timestamp base of its own).
        if frame.layer != self.layer:
            self.layer = frame.layer
            self.timeline.restart()
        self.track.push(frame.data, self.timeline.next(frame.timestamp), self.payload_type(frame))

    def payload_type(self, frame: EncodedVideoFrame) -> int | None:
        """The first payload type agreed on the slot that takes the frame's stream as it is (an
        H.264 one whose profile decodes it), else the first of its codec's name (None: none)."""
        stream = frame.format or frame.codec
        if stream not in self.payload_types:
            fitting = [c for c in self.codecs if can_forward(stream, c)] or [c for c in self.codecs if c.name.upper() == frame.codec]
            self.payload_types[stream] = fitting[0].payload_type if fitting else None
        return self.payload_types[stream]


def _slot_value(source: VideoSourceId | None) -> str | None:
    if source is None:
        return None
    if source.stream is StreamKind.CONTENT:
        return content_slot_value(source.participant)
    return source.participant


class BrowserMedia:
    def __init__(
        self,
        config: WebRtcConfig,
        slots: int,
        on_audio: AudioPacketSink,
        on_video: Callable[[EncodedVideoFrame], None],
        on_keyframe_wanted: Callable[[VideoSourceId], None],
        on_content: Callable[[EncodedVideoFrame], None] | None = None,
    ) -> None:
        servers = [RTCIceServer(urls=url) for url in config.ice_servers]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self._config = config
        self._on_video = on_video
        self._on_content = on_content
        self._on_keyframe_wanted = on_keyframe_wanted
        self.audio_track = EncodedTrack("audio", max_queue=8, max_backlog=2)
        self.audio = self.pc.addTransceiver(self.audio_track, direction="sendrecv")
        self.camera = self.pc.addTransceiver("video", direction="recvonly")
        # The shared screen: the page answers it sendonly and puts a track on it only while sharing.
        self.screen = self.pc.addTransceiver("video", direction="recvonly")
        self.slots: list[VideoSlot] = []
        self._slot_transceivers = []
        for _ in range(slots):
            track = EncodedTrack("video", max_queue=30)
            transceiver = self.pc.addTransceiver(track, direction="sendonly")
            send_any_codec(transceiver.sender, track)
            self._slot_transceivers.append(transceiver)
            self.slots.append(VideoSlot(mid="", track=track))
        self._prefer_codecs()
        tap_audio(self.audio.receiver, on_audio)
        self._video_tap = VideoTap(self.camera.receiver, self._camera_frame, SIMULCAST_RIDS)
        self._screen_tap = VideoTap(self.screen.receiver, self._screen_frame)
        for slot, transceiver in zip(self.slots, self._slot_transceivers, strict=True):
            on_keyframe_request(transceiver.sender, functools.partial(self._slot_wants_keyframe, slot))
            on_receiver_estimate(transceiver.sender, self._downlink)
        # What the browser says it can receive (its REMB), and who wants to know when it changes
        self.downlink_bps: int | None = None
        self.on_downlink: Callable[[int], None] | None = None
        self.video_frames_in = 0
        self.camera_layers: dict[int, int] = {}  # simulcast layer -> frames of the camera received
        self.content_frames_in = 0
        # The main stream: the camera comes in on it, the slots take what the browser agreed on them.
        self.main_video = VideoStream(StreamKind.MAIN, request_keyframe=self._video_tap.request_keyframe)
        # The content stream: the shared screen comes in on it (a source the router can ask for a
        # keyframe when a viewer starts watching); nothing goes out on it.
        self.content_video = VideoStream(StreamKind.CONTENT, request_keyframe=self._screen_tap.request_keyframe, sends=True)

    @property
    def video_streams(self) -> Mapping[StreamKind, VideoStream]:
        return {StreamKind.MAIN: self.main_video, StreamKind.CONTENT: self.content_video}

    @property
    def video_codecs(self) -> tuple[str, ...]:
        """The names of the codecs the slots agreed on, preferred first (() before the answer)."""
        return codec_names(self.main_video.codecs)

    def _prefer_codecs(self) -> None:
        audio_caps = codec_capabilities("audio")
        self.audio.setCodecPreferences([c for c in audio_caps if c.mimeType.lower() == "audio/opus"])
        video_caps = codec_capabilities("video")
        names: list[str] = list(self._config.video_codecs)

        def preferred(order: list[str]) -> list[Any]:
            chosen = [c for name in order for c in video_caps if c.mimeType.upper() == f"VIDEO/{name}"]
            return chosen + [c for c in video_caps if c.mimeType.lower() == "video/rtx"]

        for transceiver in (self.camera, self.screen, *self._slot_transceivers):
            transceiver.setCodecPreferences(preferred(names))

    async def create_offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        for slot, transceiver in zip(self.slots, self._slot_transceivers, strict=True):
            slot.mid = transceiver.mid or ""
        return offer_simulcast(self.pc.localDescription.sdp, self.camera_mid, SIMULCAST_RIDS)

    async def accept_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        for slot, transceiver in zip(self.slots, self._slot_transceivers, strict=True):
            slot.agree(negotiated_codecs(transceiver))
        # What this browser receives at all (each slot sends any of its codecs: `slot_codecs`)
        self.main_video.codecs = tuple(dict.fromkeys(c for slot in self.slots for c in slot.codecs))

    @property
    def audio_mid(self) -> str:
        return self.audio.mid or ""

    @property
    def camera_mid(self) -> str:
        return self.camera.mid or ""

    @property
    def screen_mid(self) -> str:
        return self.screen.mid or ""

    def slot_map(self) -> dict[str, str | None]:
        """What each slot shows, by mid (what the page is told): a participant id for its camera,
        `"<participant id>#content"` for its content, None for nothing."""
        return {slot.mid: _slot_value(slot.source) for slot in self.slots}

    def _camera_frame(self, codec: StreamCodec, data: bytes, timestamp: int) -> None:
        self.video_frames_in += 1
        name = codec.name.upper()
        layer = self._video_tap.layer
        self.camera_layers[layer] = self.camera_layers.get(layer, 0) + 1
        self._on_video(EncodedVideoFrame(name, data, timestamp, is_keyframe(name, data), codec, layer))

    def _downlink(self, bps: int) -> None:
        changed = self.downlink_bps != bps
        self.downlink_bps = bps
        if changed and self.on_downlink is not None:
            self.on_downlink(bps)

    def _screen_frame(self, codec: StreamCodec, data: bytes, timestamp: int) -> None:
        self.content_frames_in += 1
        if self._on_content is not None:
            name = codec.name.upper()
            self._on_content(EncodedVideoFrame(name, data, timestamp, is_keyframe(name, data), codec))

    def _slot_wants_keyframe(self, slot: VideoSlot) -> None:
        if slot.source is not None:
            self._on_keyframe_wanted(slot.source)

    # -- media out ------------------------------------------------------------------------------

    def send_audio(self, frame: MixedFrame) -> None:
        self.audio_track.push(frame.payload, frame.tick * FRAME_SAMPLES_48K)

    def send_video(self, source: VideoSourceId, frame: EncodedVideoFrame) -> None:
        for slot in self.slots:
            if slot.source == source:
                slot.push(frame)
                return

    def assign_slots(
        self,
        wanted: Sequence[str | VideoSourceId],
        codec_of: Callable[[VideoSourceId], str | None] = lambda source: None,
    ) -> bool:
        """Puts the wanted sources (most wanted first; a participant id means its main video) into
        slots, keeping ones already shown. A source goes where its codec (`codec_of`, None while
        unknown) is what the slot sends, so it is forwarded as it is; one already shown moves there
        when such a slot is free. Returns whether the mapping changed."""
        sources = [VideoSourceId(w) if isinstance(w, str) else w for w in wanted[: len(self.slots)]]
        changed = False
        for slot in self.slots:
            if slot.source is not None and slot.source not in sources:
                slot.show(None)
                changed = True
        for slot in self.slots:
            codec = codec_of(slot.source) if slot.source is not None else None
            if codec is not None and not slot.sends(codec):
                better = next((s for s in self.slots if s.source is None and s.sends(codec)), None)
                if better is not None:
                    better.show(slot.source)
                    slot.show(None)
                    changed = True
        shown = {slot.source for slot in self.slots}
        first = self._config.video_codecs[0] if self._config.video_codecs else None
        for source in sources:
            free = [slot for slot in self.slots if slot.source is None]
            if source in shown or not free:
                continue
            # its own codec's slot, else (codec unknown yet) one of the browser's first codec
            codec = codec_of(source) or first
            pick = next((slot for slot in free if codec is not None and slot.sends(codec)), free[0])
            pick.show(source)
            changed = True
        return changed

    def slot_codecs(self) -> dict[VideoSourceId, tuple[StreamCodec, ...]]:
        """What each shown source's slot takes as it is: every codec agreed on it."""
        return {slot.source: slot.codecs for slot in self.slots if slot.source is not None and slot.codecs}

    def counters(self) -> dict[str, Any]:
        remote_loss, rtt_ms = far_end_report(self.audio.sender)  # (the browser's reports on the meeting's audio)
        return {
            "audio_frames_sent": self.audio_track.pushed,
            "audio_frames_dropped_send": self.audio_track.dropped,
            "video_frames_received": self.video_frames_in,
            "content_frames_received": self.content_frames_in,
            "video_frames_sent": sum(slot.track.pushed for slot in self.slots),
            "camera_layers_in": {str(k): v for k, v in sorted(self.camera_layers.items())},
            "downlink_bps": self.downlink_bps,
            "remote_loss": remote_loss,
            "rtt_ms": None if rtt_ms is None else round(rtt_ms, 1),
        }

    async def close(self) -> None:
        await self.pc.close()
