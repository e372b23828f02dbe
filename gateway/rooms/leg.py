"""The one interface every participant connection implements, whatever protocol it came in on.

The conference never knows whether a leg is a browser, a SIP room system, a phone or an H.323
system: it pushes mixed audio and routed video out through these methods and shows state changes
through `on_room_event`; legs push their inbound media into the Conference.
"""

from __future__ import annotations

from typing import Any, Protocol

from gateway.rooms.events import RoomEvent
from gateway.rooms.participant import LegKind
from gateway.transcode.audio import AudioCodec, AudioFormat
from gateway.transcode.mixer import MixedFrame
from gateway.transcode.video import EncodedVideoFrame


class Leg(Protocol):
    participant_id: str
    kind: LegKind
    audio_in_codec: AudioCodec
    audio_out_format: AudioFormat
    video_codecs: tuple[str, ...]  # codecs it can receive, preferred first; () = no video

    def send_audio(self, frame: MixedFrame) -> None:
        """The mixer's frame for this listener (already encoded in audio_out_format)."""

    def send_video(self, source_id: str, frame: EncodedVideoFrame) -> None:
        """An encoded frame of another participant's video, in one of video_codecs."""

    def request_keyframe(self) -> None:
        """Ask this leg's sender for a new keyframe (RTCP PLI, SIP INFO, H.245 fast update)."""

    def on_room_event(self, event: RoomEvent) -> None:
        """Show a state change to the person (UI message, voice prompt, indication)."""

    async def hang_up(self, reason: str) -> None:
        """End the connection; reason is a room code (removed, meeting_ended, ...)."""

    def media_counters(self) -> dict[str, Any]:
        """Transport-level counters (packets and bytes in and out)."""
