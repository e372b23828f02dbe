"""The one interface every participant connection implements, whatever protocol it came in on.

The conference never knows whether a leg is a browser, a SIP room system, a phone or an H.323
system: it pushes mixed audio and routed video out through these methods and shows state changes
through `on_room_event`; legs push their inbound media into the Conference.

A leg owns one audio stream (`audio_in_codec`, `audio_out_format`, `send_audio`) and any number of
video streams (`video_streams`: main, content), each with its negotiated codecs and the way to ask
its sender for a keyframe (RTCP PLI/FIR, SIP INFO picture_fast_update; H.245 fast update fits the
same slot). A stream that is `composed` receives the room's composed picture (`COMPOSED` as its
source) instead of forwarded participants.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.rooms.events import RoomEvent
from gateway.rooms.participant import LegKind
from gateway.transcode.audio import AudioCodec, AudioFormat
from gateway.transcode.codecs import StreamCodec, StreamKind, codec_names
from gateway.transcode.mixer import MixedFrame
from gateway.transcode.video import EncodedVideoFrame, VideoSourceId

KeyframeRequest = Callable[[], None]


def _no_keyframe() -> None:
    """A stream whose sender cannot be asked (yet)."""


@dataclass(eq=False)
class VideoStream:
    """One video stream of a leg. `codecs`: what it takes from the room, preferred first (() while
    not negotiated, or when it only sends); `request_keyframe`: asks the leg's sender of this
    stream for a keyframe; `sends`: whether the leg sends video on it (a source for the router)."""

    kind: StreamKind
    codecs: tuple[StreamCodec | str, ...] = ()
    request_keyframe: KeyframeRequest = _no_keyframe
    sends: bool = True
    # Whether it takes the room's composed picture (a room system's one main stream) rather than
    # other participants' streams forwarded one by one (a browser's slots).
    composed: bool = False

    @property
    def codec_names(self) -> tuple[str, ...]:
        return codec_names(self.codecs)


class Leg(Protocol):
    participant_id: str
    kind: LegKind
    audio_in_codec: AudioCodec
    audio_out_format: AudioFormat

    @property
    def video_streams(self) -> Mapping[StreamKind, VideoStream]:
        """Its video streams by kind (empty: audio only). After a renegotiation the leg calls
        `Conference.attach_video_receiver` so the room reads them again."""

    def send_audio(self, frame: MixedFrame) -> None:
        """The mixer's frame for this listener (already encoded in audio_out_format)."""

    def send_video(self, source: VideoSourceId, frame: EncodedVideoFrame) -> None:
        """An encoded frame of another participant's stream `source`, in a codec one of the leg's
        video streams takes (the stream by `source.stream`: main video to main, content to content)."""

    def on_room_event(self, event: RoomEvent) -> None:
        """Show a state change to the person (UI message, voice prompt, indication)."""

    async def hang_up(self, reason: str) -> None:
        """End the connection; reason is a room code (removed, meeting_ended, ...)."""

    def media_counters(self) -> dict[str, Any]:
        """Transport-level counters (packets and bytes in and out)."""
