"""One browser's peer connection: microphone up and meeting mix down, camera up, video slots down.

The gateway always offers. The offer has one sendrecv audio m-line, one recvonly video m-line
for the camera and a fixed number of sendonly video "slots", each of which carries one other
participant's forwarded video; which participant a slot carries is signalled over the WebSocket,
so people joining and leaving never need an SDP renegotiation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy

from gateway.config import WebRtcConfig
from gateway.transcode.mixer import MixedFrame
from gateway.transcode.video import VIDEO_CLOCK, EncodedVideoFrame, is_keyframe
from gateway.webrtc.aiortc_glue import (
    AudioPacketSink,
    EncodedTrack,
    VideoTap,
    negotiated_codecs,
    on_keyframe_request,
    tap_audio,
)

FRAME_SAMPLES_48K = 960


@dataclass
class VideoSlot:
    mid: str
    track: EncodedTrack
    source: str | None = None
    last_source_ts: int | None = None
    out_ts: int = 0

    def push(self, frame: EncodedVideoFrame) -> None:
        # Rewrite timestamps so a slot's timeline only moves forward, even when it changes source.
        if self.last_source_ts is None:
            step = VIDEO_CLOCK // 30
        else:
            step = (frame.timestamp - self.last_source_ts) & 0xFFFFFFFF
            if step >= 1 << 31:  # an older frame: keep the timeline monotonic
                step = 0
        self.last_source_ts = frame.timestamp
        self.out_ts += step
        self.track.push(frame.data, self.out_ts)


class BrowserMedia:
    def __init__(
        self,
        config: WebRtcConfig,
        slots: int,
        on_audio: AudioPacketSink,
        on_video: Callable[[EncodedVideoFrame], None],
        on_keyframe_wanted: Callable[[str], None],
    ) -> None:
        servers = [RTCIceServer(urls=url) for url in config.ice_servers]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self._config = config
        self._on_video = on_video
        self._on_keyframe_wanted = on_keyframe_wanted
        self.audio_track = EncodedTrack("audio", max_queue=8, max_backlog=2)
        self.audio = self.pc.addTransceiver(self.audio_track, direction="sendrecv")
        self.camera = self.pc.addTransceiver("video", direction="recvonly")
        self.slots: list[VideoSlot] = []
        self._slot_transceivers = []
        for _ in range(slots):
            track = EncodedTrack("video", max_queue=30)
            transceiver = self.pc.addTransceiver(track, direction="sendonly")
            self._slot_transceivers.append(transceiver)
            self.slots.append(VideoSlot(mid="", track=track))
        self._prefer_codecs()
        tap_audio(self.audio.receiver, on_audio)
        self._video_tap = VideoTap(self.camera.receiver, self._camera_frame)
        for slot, transceiver in zip(self.slots, self._slot_transceivers, strict=True):
            on_keyframe_request(transceiver.sender, functools.partial(self._slot_wants_keyframe, slot))
        self.video_frames_in = 0
        self.video_codecs: tuple[str, ...] = ()

    def _prefer_codecs(self) -> None:
        audio_caps = RTCRtpSender.getCapabilities("audio")
        self.audio.setCodecPreferences([c for c in audio_caps.codecs if c.mimeType.lower() == "audio/opus"])
        video_caps = RTCRtpSender.getCapabilities("video")
        preferred = []
        for name in self._config.video_codecs:
            preferred += [c for c in video_caps.codecs if c.mimeType.upper() == f"VIDEO/{name}"]
        preferred += [c for c in video_caps.codecs if c.mimeType.lower() == "video/rtx"]
        for transceiver in (self.camera, *self._slot_transceivers):
            transceiver.setCodecPreferences(preferred)

    async def create_offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        for slot, transceiver in zip(self.slots, self._slot_transceivers, strict=True):
            slot.mid = transceiver.mid or ""
        return self.pc.localDescription.sdp

    async def accept_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        # All slots were offered alike: the first one says what this browser receives.
        self.video_codecs = negotiated_codecs(self._slot_transceivers[0]) if self._slot_transceivers else ()

    @property
    def audio_mid(self) -> str:
        return self.audio.mid or ""

    @property
    def camera_mid(self) -> str:
        return self.camera.mid or ""

    def slot_map(self) -> dict[str, str | None]:
        return {slot.mid: slot.source for slot in self.slots}

    def _camera_frame(self, codec: str, data: bytes, timestamp: int) -> None:
        self.video_frames_in += 1
        self._on_video(EncodedVideoFrame(codec, data, timestamp, is_keyframe(codec, data)))

    def _slot_wants_keyframe(self, slot: VideoSlot) -> None:
        if slot.source is not None:
            self._on_keyframe_wanted(slot.source)

    # -- media out ------------------------------------------------------------------------------

    def send_audio(self, frame: MixedFrame) -> None:
        self.audio_track.push(frame.payload, frame.tick * FRAME_SAMPLES_48K)

    def send_video(self, source_id: str, frame: EncodedVideoFrame) -> None:
        for slot in self.slots:
            if slot.source == source_id:
                slot.push(frame)
                return

    def request_keyframe(self) -> None:
        self._video_tap.request_keyframe()

    def assign_slots(self, wanted: list[str]) -> bool:
        """Puts the wanted sources (most wanted first) into slots, keeping ones already shown.
        Returns whether the mapping changed."""
        wanted = wanted[: len(self.slots)]
        changed = False
        for slot in self.slots:
            if slot.source is not None and slot.source not in wanted:
                slot.source, slot.last_source_ts = None, None
                changed = True
        shown = {slot.source for slot in self.slots}
        free = [slot for slot in self.slots if slot.source is None]
        for source in wanted:
            if source not in shown and free:
                slot = free.pop(0)
                slot.source, slot.last_source_ts = source, None
                changed = True
        return changed

    def counters(self) -> dict[str, int]:
        return {
            "audio_frames_sent": self.audio_track.pushed,
            "audio_frames_dropped_send": self.audio_track.dropped,
            "video_frames_received": self.video_frames_in,
            "video_frames_sent": sum(slot.track.pushed for slot in self.slots),
        }

    async def close(self) -> None:
        await self.pc.close()
