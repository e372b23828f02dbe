"""A live meeting: binds a Room's rules to its media (mixer, video router, compositor, media
clock) and its legs.

Protocol-free. Legs attach once admitted; the conference keeps the mixer's mute flags equal to
the room's mute state on every event, so enforcement never depends on any client; removes and
ends hang the affected legs up; speaking detected by the mixer flows back into the room.

Video: browsers get other participants' streams forwarded one by one (the router); legs whose main
stream is `composed` (room systems, which take one picture) get the room's composed picture. The
compositor exists while such a leg is in the room: it takes every participant's camera from the
router like one more receiver, composes the room's layout once, and encodes it once per distinct
output (codec, profile, size, rate), in a process of its own (`CompositorProcess`: no lock shared
with the audio tick, and a codec crash costs a restarted picture, not the gateway). Self-view policy: a room system's own tile is left out only
while it is the only room system in the room (then there is one output and leaving it out costs
nothing); with several, all see the same picture, themselves included, and share its encodes.

Content (rooms/floor.py): only the participant holding the room's presentation floor feeds its
content source ((participant, content)); the conference drops anyone else's. The presenter's
content goes to every leg with a content line of its own (BFCP room systems: a router receiver
`<participant>#content` per leg, forwarded or transcoded once per codec), to browsers through their
slots (their session subscribes), and, while some composed leg has no content line, into the
composed picture: content large in the spotlight's place, the people in the strip. Legs with a
content line then see it in their main picture too (one composition per room: the price of
serving legacy systems in the same encode).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

import structlog

from gateway.config import MediaConfig
from gateway.rooms.events import RoomEvent
from gateway.rooms.leg import Leg
from gateway.rooms.quality import LinkSample, QualityMeter
from gateway.rooms.room import Room
from gateway.transcode.audio import AudioFormat, Pcm
from gateway.transcode.broadcast_process import BroadcastProcess
from gateway.transcode.clock import ClockDriver, MediaClock
from gateway.transcode.codecs import StreamCodec, StreamKind, codec_names
from gateway.transcode.compositor import OutputSpec, Tile
from gateway.transcode.compositor_process import CompositorProcess
from gateway.transcode.layout import Layout
from gateway.transcode.mixer import MixedFrame, Mixer
from gateway.transcode.video import COMPOSED, EncodedVideoFrame, TranscodePool, VideoRouter, VideoSourceId

log = structlog.get_logger(__name__)

_MUTE_EVENTS = {"muted", "unmuted", "mute_changed", "participant_joined"}
QUALITY_INTERVAL_S = 2.0
_SCENE_EVENTS = {
    "participant_joined",
    "participant_left",
    "participant_removed",
    "video_changed",
    "connection_changed",
    "speaking_started",
    "speaking_stopped",
    "layout_changed",
    "spotlight_changed",
    "presentation_started",
    "presentation_stopped",
    "meeting_ended",
    "recording_started",
    "recording_stopped",
    "streaming_started",
    "streaming_stopped",
}
# The mark in the composed picture while the meeting is recorded or streamed (everyone is told)
_NOTICES = {"recording": "● REC", "streaming": "● LIVE"}
_COMPOSITOR = "#compositor"  # the compositor's receiver id in the router
# The room's broadcast (recording, live stream): its output of the compositor, its tap of the mixer
_BROADCAST = "#broadcast"
# The broadcast's picture: H.264 constrained baseline as room systems most often take it (an equal
# spec shares their encode), at the room's composed size, rate and bitrate
BROADCAST_CODEC = StreamCodec("H264", 0, 90_000, fmtp=(("profile-level-id", "42e01f"), ("packetization-mode", "1")))
# A participant's content: its receiver id in the router (a room system's content line) and its
# source's name in the compositor, `<participant>#content`.
_CONTENT = "#content"
_HANG_UP_EVENTS = {"participant_removed": "removed"}


class Conference:
    def __init__(
        self,
        room: Room,
        media: MediaConfig,
        video_router: VideoRouter | None = None,
        clock_driver: ClockDriver | None = None,
    ) -> None:
        self.room = room
        self.legs: dict[str, Leg] = {}
        self.links: set[str] = set()  # other nodes' shares of the meeting, each one voice in the mixer
        self._hang_ups: set[asyncio.Task[None]] = set()
        self.mixer = Mixer(
            max_speakers=media.mixer.max_speakers,
            speaker_floor_dbov=media.mixer.speaker_floor_dbov,
            speaker_hangover_ms=media.mixer.speaker_hangover_ms,
            jitter_min_ms=media.jitter.min_delay_ms,
            jitter_max_ms=media.jitter.max_delay_ms,
        )
        self._transcoders: TranscodePool | None = None
        self.video = video_router or VideoRouter(transcode=self._transcode)
        self._composed = media.composed
        self.compositor: CompositorProcess | None = None
        self.broadcast: BroadcastProcess | None = None
        self._composed_legs: dict[str, OutputSpec] = {}
        self._content_legs: set[str] = set()  # legs with a content line of their own (BFCP room systems)
        self._source_watchers: list[Callable[[VideoSourceId], None]] = []
        self.video.source_codec_changed = self._source_codec_changed
        self._video_watchers: list[Callable[[str, VideoSourceId], None]] = []
        self.video.changed = self._video_changed
        self.clock = MediaClock(
            self._tick,
            period_s=media.mixer.tick_ms / 1000,
            late_tolerance_s=media.mixer.late_tick_tolerance_ms / 1000,
            name=f"mixer:{room.id}",
            log_context={"room": room.id},
            driver=clock_driver,
        )
        # Connection quality: every participant's measured once per QUALITY_INTERVAL_S, on the tick.
        self._quality: dict[str, QualityMeter] = {}
        self._ticks = 0
        self._quality_every = max(1, round(QUALITY_INTERVAL_S / (media.mixer.tick_ms / 1000)))
        # Media figures of legs that went, for the call record written when their participant leaves.
        self.last_media: dict[str, dict[str, Any]] = {}
        self._unsubscribe = room.subscribe(self._on_room_event)
        self._log = log.bind(room=room.id)
        self.on_attached: Callable[[Conference], None] | None = None  # (a leg joined the media)

    # -- legs -----------------------------------------------------------------------------------

    def attach(self, leg: Leg) -> None:
        pid = leg.participant_id
        participant = self.room.get(pid)
        self.legs[pid] = leg
        self.mixer.add(pid, leg.audio_in_codec, leg.audio_out_format, leg.send_audio)
        self.mixer.set_muted(pid, participant.audio_muted)
        self.attach_video_receiver(leg)
        if not self.clock.running:
            self.clock.start()
        self._log.info("leg attached", participant=pid, kind=leg.kind.value, legs=len(self.legs))
        if self.on_attached is not None:
            self.on_attached(self)

    def attach_link(self, link_id: str, sink: Callable[[MixedFrame], None], fmt: AudioFormat) -> None:
        """Another node's share of the meeting (gateway/cluster/): one more voice in the mixer, which
        sends it this node's mix-minus (everyone here, but not the link) and takes its mix in
        (everyone there). Never muted here: whoever is muted there is dropped by that node's mixer."""
        self.links.add(link_id)
        self.mixer.add(link_id, fmt.codec, fmt, sink)
        if not self.clock.running:
            self.clock.start()
        self._log.info("node link attached", link=link_id)

    def detach_link(self, link_id: str) -> None:
        if link_id in self.links:
            self.links.discard(link_id)
            self.mixer.remove(link_id)
            self._log.info("node link detached", link=link_id)
            if not self.legs:
                self.clock.stop_now()

    def attach_remote_video(self, source: VideoSourceId, request_keyframe: Callable[[], None]) -> None:
        """A camera of another node's participant (a mirror), whose frames a node link brings
        (push_video): a source like a leg's, so browsers and the composed picture show it."""
        self.video.add_source(source, request_keyframe)
        if self.compositor is not None:
            self._feed_compositor()
            self._update_scene()

    def detach_remote_video(self, source: VideoSourceId) -> None:
        self.video.remove_source(source)
        if self.compositor is not None:
            self._update_scene()

    def watch_video(self, listener: Callable[[str, VideoSourceId], None]) -> Callable[[], None]:
        """`listener(kind, source)`: a source came or went ("source"), or got its first subscriber
        or lost its last ("demand"). Returns the way to stop watching."""
        self._video_watchers.append(listener)
        return lambda: self._video_watchers.remove(listener) if listener in self._video_watchers else None

    def _video_changed(self, kind: str, source: VideoSourceId) -> None:
        for listener in list(self._video_watchers):
            try:
                listener(kind, source)
            except Exception:
                self._log.exception("a video watcher failed", source=source.participant)

    def reattach_audio(self, leg: Leg) -> None:
        """The leg's audio codec changed (a re-INVITE): the mixer decodes and encodes anew."""
        pid = leg.participant_id
        if self.legs.get(pid) is not leg:
            return
        self.mixer.remove(pid)
        self.mixer.add(pid, leg.audio_in_codec, leg.audio_out_format, leg.send_audio)
        self.mixer.set_muted(pid, self.room.get(pid).audio_muted)
        self._log.info("leg audio format changed", participant=pid, codec=leg.audio_in_codec.value)

    def attach_video_receiver(self, leg: Leg) -> None:
        """(Re-)registers a leg's video streams: each one it sends on is a source keyed by
        (participant, stream); the codecs of its main stream (else its first) are what it receives.
        Legs that negotiate later call this then."""
        pid = leg.participant_id
        streams = leg.video_streams
        sending = {VideoSourceId(pid, kind): s for kind, s in streams.items() if s.sends}
        for source in self.video.sources_of(pid):
            if source not in sending:  # a line declined or put on hold: its subscribers wait on
                self.video.remove_source(source)
        for source, stream in sending.items():
            self.video.add_source(source, stream.request_keyframe)
        receiving = [s for s in streams.values() if s.codecs]
        receiving.sort(key=lambda s: s.kind is not StreamKind.MAIN)
        composed = receiving[0] if receiving and receiving[0].composed else None
        if composed is not None:
            self.video.remove_receiver(pid)
            self._compose_for(leg, composed.codecs[0])
        else:
            self._stop_composing_for(pid)
            if receiving:
                self.video.add_receiver(pid, receiving[0].codecs, leg.send_video)
        content = streams.get(StreamKind.CONTENT)
        if content is not None and content.codecs:
            self.video.add_receiver(pid + _CONTENT, content.codecs, leg.send_video)
            self._content_legs.add(pid)
        elif pid in self._content_legs:
            self._content_legs.discard(pid)
            self.video.remove_receiver(pid + _CONTENT)
        self._route_content()
        if self.compositor is not None:
            self._feed_compositor()
            self._update_scene()

    # -- content ----------------------------------------------------------------------------------

    def _route_content(self) -> None:
        """The presenter's content goes to every content line (room systems with BFCP), forwarded
        as it is where the line takes its codec, else transcoded once per codec by the router; a
        new viewer waits for a keyframe, which the router asks of the presenter."""
        presentation = self.room.presentation
        source = VideoSourceId(presentation.presenter, StreamKind.CONTENT) if presentation is not None else None
        for pid in self._content_legs:
            wanted = {source} if source is not None and source.participant != pid else set()
            receiver = pid + _CONTENT
            for old in self.video.subscriptions(receiver) - wanted:
                self.video.unsubscribe(receiver, old)
            for new in wanted:
                self.video.subscribe(receiver, new)

    def _content_in_picture(self) -> VideoSourceId | None:
        """The presenter's content when it belongs in the composed picture: someone presents and a
        room system takes the composition without a content line of its own (no BFCP), so content
        large with the people small is the only way it sees the presentation (as Pexip does)."""
        presentation = self.room.presentation
        if presentation is None:
            return None
        # (the recording and the live stream show it too: they have no content line of their own)
        if not self._compositor_needed_by_broadcast() and all(pid in self._content_legs for pid in self._composed_legs):
            return None
        return VideoSourceId(presentation.presenter, StreamKind.CONTENT)

    # -- the composed picture ---------------------------------------------------------------------

    def _compose_for(self, leg: Leg, codec: StreamCodec | str) -> None:
        config = self._composed
        if isinstance(codec, str):
            codec = StreamCodec(codec, 0, 90_000)
        spec = OutputSpec.for_codec(
            codec, width=config.width, height=config.height, fps=config.fps, max_kbps=config.bitrate_kbps
        )
        pid = leg.participant_id
        if self._composed_legs.get(pid) == spec:
            return
        compositor = self._start_compositor()
        self._composed_legs[pid] = spec
        compositor.add_output(pid, spec, lambda frame: leg.send_video(COMPOSED, frame))
        self._log.info("composed picture for a leg", participant=pid, output=f"{spec.codec} {spec.width}x{spec.height}@{spec.fps}")

    def _start_compositor(self) -> CompositorProcess:
        if self.compositor is None:
            config = self._composed
            self.compositor = CompositorProcess(
                max_fps=config.fps,
                speaker_hold_s=config.speaker_hold_s,
                canvas=(config.width, config.height),
                room=self.room.id,
                request_keyframe_from=self._compositor_lost_picture,
                on_tiles=self._compositor_tiles,
            )
            self.video.add_receiver(_COMPOSITOR, ("VP8", "H264"), self._to_compositor)
            self._feed_compositor()
        return self.compositor

    def _compositor_needed(self) -> bool:
        """Someone takes the composed picture: a room system, or the broadcast."""
        return bool(self._composed_legs) or self._compositor_needed_by_broadcast()

    def _stop_composing_for(self, pid: str) -> None:
        if self._composed_legs.pop(pid, None) is not None and self.compositor is not None:
            self.compositor.remove_output(pid)
            self._update_scene()

    def _to_compositor(self, source: VideoSourceId, frame: EncodedVideoFrame) -> None:
        if self.compositor is not None:
            content = source.stream is StreamKind.CONTENT
            self.compositor.on_frame(source.participant + _CONTENT if content else source.participant, frame)

    def _compositor_lost_picture(self, name: str) -> None:
        participant, content, _ = name.partition(_CONTENT)
        self.video.request_keyframe(VideoSourceId(participant, StreamKind.CONTENT if content else StreamKind.MAIN))

    def _compositor_tiles(self, tiles: dict[str, tuple[int, int]]) -> None:
        """The size of each camera's tile in the picture: a camera shown small (the strip, a grid
        of many) comes in the lowest simulcast layer that is large enough for its tile. Sizes of
        cameras no longer shown stay: such frames are not decoded, and shown again they most
        likely return where they were."""
        for name, size in tiles.items():
            if _CONTENT not in name:  # (the presentation: no simulcast)
                self.video.shown_size(_COMPOSITOR, VideoSourceId(name), size)

    def _feed_compositor(self) -> None:
        """The compositor takes every participant's camera (subscribing again is a no-op) and the
        presentation while it belongs in the picture."""
        content = self._content_in_picture()
        for source in self.video.source_ids():
            if source.stream is StreamKind.MAIN or source == content:
                self.video.subscribe(_COMPOSITOR, source)
        for source in self.video.subscriptions(_COMPOSITOR):
            if source.stream is StreamKind.CONTENT and source != content:
                self.video.unsubscribe(_COMPOSITOR, source)

    def _update_scene(self) -> None:
        compositor = self.compositor
        if compositor is None:
            return
        room = self.room
        sources = set(self.video.source_ids())
        tiles = [
            Tile(p.id, p.name, has_video=not p.video_off and VideoSourceId(p.id) in sources)
            for p in room.participants.values()
        ]
        speaking = {p.id for p in room.participants.values() if p.speaking}
        # (a room system alone leaves itself out; the broadcast shows everyone, and shares its picture)
        alone = len(self._composed_legs) == 1 and not self._compositor_needed_by_broadcast()
        exclude = next(iter(self._composed_legs)) if alone else None
        spotlight = room.spotlight
        content = self._content_in_picture()
        if content is not None:  # content large (the spotlight's place), the people in the strip
            presenter = room.participants.get(content.participant)
            name = presenter.name if presenter is not None else ""
            spotlight = content.participant + _CONTENT
            tiles.insert(0, Tile(spotlight, name, has_video=content in sources))
        notice = "  ".join(text for what, text in _NOTICES.items() if what in room.broadcasting) or None
        compositor.set_scene(tiles, Layout(room.layout), spotlight, speaking, exclude=exclude, notice=notice)

    # -- the broadcast (recording, live stream) ----------------------------------------------------

    def _compositor_needed_by_broadcast(self) -> bool:
        return self.broadcast is not None and self.broadcast.video_enabled

    def has_video(self) -> bool:
        """Some leg of the room can send or take video (a phone-only room has none)."""
        return any(leg.video_streams for leg in self.legs.values())

    def start_broadcast(
        self,
        name: str,
        url: str,
        kind: str,
        *,
        video: bool | None = None,
        size: tuple[int, int, int, int] | None = None,
        on_started: Callable[[float], None] | None = None,
        on_ended: Callable[[str | None, int], None] | None = None,
        on_interrupted: Callable[[str | None], None] | None = None,
    ) -> bool:
        """Records the room (`kind` mp4, `url` a file's absolute path) or streams it (flv, an
        rtmp(s) URL): its composed picture (encoded once, shared with room systems of the same
        format) and its full mix. `on_ended(reason, bytes)` follows once: reason None when
        stopped, else why it failed (never the URL). `video`: None means the room's picture if any
        leg has video (else audio only); it is fixed while any target of the room runs, and so is
        `size` (width, height, fps, kbps; default the room's composed picture's). Returns
        whether the broadcast has a picture. Raises ValueError for a target it cannot take. A live
        stream that loses its server reconnects with backoff: `on_interrupted(why)`, and
        `on_interrupted(None)` each time it is connected."""
        broadcast = self.broadcast
        if broadcast is None:
            with_video = self.has_video() if video is None else video
            compositor = self._start_compositor() if with_video else None
            broadcast = self.broadcast = BroadcastProcess(
                epoch=compositor.epoch if compositor is not None else time.monotonic(),
                video=with_video,
                room=self.room.id,
                on_keyframe_wanted=self._broadcast_keyframe,
            )
            if compositor is not None:
                config = self._composed
                width, height, fps, kbps = size or (config.width, config.height, config.fps, config.bitrate_kbps)
                spec = OutputSpec.for_codec(BROADCAST_CODEC, width=width, height=height, fps=fps, max_kbps=kbps)
                compositor.add_output(_BROADCAST, spec, broadcast.video)
                self._feed_compositor()  # (the presentation belongs in the broadcast's picture)
                self._update_scene()
            self.mixer.add_tap(_BROADCAST, self._to_broadcast)
            self._log.info("broadcast started", video=with_video)

        def ended(reason: str | None, written: int) -> None:
            if on_ended is not None:
                on_ended(reason, written)
            if self.broadcast is broadcast and not broadcast.targets():
                self._stop_broadcast()

        try:
            broadcast.add_target(name, url, kind, on_started, ended, on_interrupted)
        except ValueError:
            if not broadcast.targets():
                self._stop_broadcast()
            raise
        return broadcast.video_enabled

    def stop_broadcast(self, name: str) -> None:
        """Stops a target; its on_ended(None, bytes) follows when its file is complete."""
        if self.broadcast is not None:
            self.broadcast.remove_target(name)

    def broadcast_targets(self) -> list[str]:
        return list(self.broadcast.targets()) if self.broadcast is not None else []

    def _to_broadcast(self, _tick: int, pcm: Pcm) -> None:
        if self.broadcast is not None:
            self.broadcast.audio(pcm)

    def _broadcast_keyframe(self) -> None:
        if self.compositor is not None:
            self.compositor.request_keyframe(_BROADCAST)

    def _stop_broadcast(self) -> None:
        """The last target ended: the process, the tap and the picture's output go."""
        broadcast, self.broadcast = self.broadcast, None
        if broadcast is None:
            return
        self.mixer.remove_tap(_BROADCAST)
        if self.compositor is not None:
            self.compositor.remove_output(_BROADCAST)
            if not self._compositor_needed():
                self._close_compositor()
            else:
                self._feed_compositor()
                self._update_scene()
        self._background(broadcast.close())
        self._log.info("broadcast stopped")

    def request_keyframe(self, pid: str, source: VideoSourceId) -> None:
        """A leg's remote lost the picture it receives from `source`: the encoder serving that leg
        (the composition) or the forwarded stream's sender is asked for a keyframe."""
        if source == COMPOSED:
            if self.compositor is not None:
                self.compositor.request_keyframe(pid)
        else:
            self.video.request_keyframe(source)

    def limit_video_bitrate(self, pid: str, bps: int) -> None:
        """The leg's remote asked for at most this bit rate (RTCP TMMBR or REMB)."""
        if self.compositor is not None and pid in self._composed_legs:
            self.compositor.set_bitrate(pid, bps)

    def video_counters(self) -> dict[str, Any]:
        """How the room's video is carried: frames forwarded untouched, transcoded, decodes and
        encodes (by the transcoders and the compositor)."""
        transcoders = self._transcoders.counters() if self._transcoders is not None else {}
        composed = self.compositor.counters() if self.compositor is not None else {}
        return {
            "frames_forwarded": self.video.frames_forwarded,
            "frames_transcoded": self.video.frames_transcoded,
            "frames_undecodable": self.video.frames_undecodable,
            "transcoder_decodes": transcoders.get("decodes", 0),
            "transcoders": transcoders.get("transcoders", 0),
            "composed_decodes": composed.get("decodes", 0),
            "composed_lower_layer_frames": self.video.frames_below_top(_COMPOSITOR),
            "compositions": composed.get("compositions", 0),
            "composed_encodes": composed.get("encodes", 0),
            "composed_encoders": composed.get("encoders", 0),
            "compositor_restarts": composed.get("restarts", 0),
            "composed_frames_not_sent": composed.get("frames_not_sent", 0),
        }

    def detach(self, participant_id: str) -> None:
        if participant_id in self.legs:
            self.last_media[participant_id] = self.media_summary(participant_id)
            while len(self.last_media) > 1000:  # never read when the room keeps no records
                del self.last_media[next(iter(self.last_media))]
        leg = self.legs.pop(participant_id, None)
        self.mixer.remove(participant_id)
        self.video.remove_receiver(participant_id)
        self.video.remove_receiver(participant_id + _CONTENT)
        self._content_legs.discard(participant_id)
        self._stop_composing_for(participant_id)
        if participant_id in self.room.participants:
            self.video.remove_sources(participant_id)  # may reconnect: others stay subscribed
        else:
            self.video.remove(participant_id)
        if self.compositor is not None:
            self.compositor.remove_source(participant_id)
            self.compositor.remove_source(participant_id + _CONTENT)
            if not self._compositor_needed():
                self._close_compositor()
        if leg is not None:
            self._log.info("leg detached", participant=participant_id, legs=len(self.legs))
        if not self.legs:
            self.clock.stop_now()
            for name in self.broadcast_targets():  # (a recording covers a meeting: it ends with it)
                self.stop_broadcast(name)

    def _transcode(self, source: VideoSourceId, codec: str, frame: EncodedVideoFrame, done: Any) -> None:
        if self._transcoders is None:
            self._transcoders = TranscodePool(asyncio.get_running_loop())
        self._transcoders(source, codec, frame, done)

    def set_video_subscriptions(
        self,
        receiver_id: str,
        source_ids: Sequence[VideoSourceId],
        codecs: Mapping[VideoSourceId, Sequence[StreamCodec | str]] | None = None,
    ) -> None:
        """What a receiver shows: these sources (`codecs`: what it takes of each, where that is
        not what it takes as a whole, e.g. a browser's slot that sends one codec)."""
        current = self.video.subscriptions(receiver_id)
        for source in current - set(source_ids):
            self.video.unsubscribe(receiver_id, source)
        for source in source_ids:
            self.video.subscribe(receiver_id, source, codecs.get(source) if codecs else None)

    def video_source_codec(self, source: VideoSourceId) -> str | None:
        """The codec a source sends, once its first frame came."""
        return self.video.source_codec(source)

    def watch_video_sources(self, listener: Callable[[VideoSourceId], None]) -> Callable[[], None]:
        """`listener(source)` is called when a source's codec becomes known or changes (a receiver
        may then show it where it can be forwarded as it is). Returns the way to stop watching."""
        self._source_watchers.append(listener)
        return lambda: self._source_watchers.remove(listener) if listener in self._source_watchers else None

    def _source_codec_changed(self, source: VideoSourceId) -> None:
        for listener in list(self._source_watchers):
            try:
                listener(source)
            except Exception:
                self._log.exception("a video source watcher failed", source=source.participant)

    # -- media in -------------------------------------------------------------------------------

    def push_audio(self, pid: str, seq: int, payload: bytes, level_dbov: float | None, arrival_s: float) -> None:
        self.mixer.push(pid, seq, payload, level_dbov, arrival_s)

    def push_video(self, pid: str, frame: EncodedVideoFrame, stream: StreamKind = StreamKind.MAIN) -> None:
        participant = self.room.participants.get(pid)
        if participant is None or (participant.video_off and stream is StreamKind.MAIN):
            return
        if stream is StreamKind.CONTENT:
            presentation = self.room.presentation
            if presentation is None or presentation.presenter != pid:
                return  # (content flows only from whoever holds the room's floor: the gateway enforces it)
        self.video.on_frame(VideoSourceId(pid, stream), frame)

    # -- clock and events -----------------------------------------------------------------------

    def _tick(self) -> None:
        result = self.mixer.tick()
        for pid, speaking in result.speaking_changed:
            self.room.set_speaking(pid, speaking)
        self._ticks += 1
        if self.legs:
            self._measure_quality(self._ticks % self._quality_every)

    def _measure_quality(self, turn: int) -> None:
        """Grades the connections of one share of the participants (every `_quality_every`th leg,
        from `turn`): each is measured once per QUALITY_INTERVAL_S, and no tick does them all. From
        the audio we get from it (packets that never came or came too late to play, the jitter;
        muted ones are measured too) and what its leg knows of the way back (the far end's receiver
        reports: `remote_loss` 0..1 and `rtt_ms` in the leg's media counters)."""
        for pid, leg in list(itertools.islice(self.legs.items(), turn, None, self._quality_every)):
            jitter = self.mixer.jitter(pid)
            if jitter is None:
                continue
            try:
                counters = leg.media_counters()
            except Exception:
                self._log.exception("a leg's media counters failed", participant=pid)
                counters = {}
            sample = LinkSample(
                received=jitter.received - jitter.late,
                lost=jitter.missing + jitter.late,
                jitter_ms=jitter.jitter_ms,
                remote_loss=counters.get("remote_loss"),
                rtt_ms=counters.get("rtt_ms"),
            )
            measured = self._quality.setdefault(pid, QualityMeter()).update(sample)
            if measured is not None:
                self.room.set_quality(pid, measured)

    def _on_room_event(self, event: RoomEvent) -> None:
        pid = event.participant
        if event.type in _MUTE_EVENTS and pid in self.room.participants:
            self.mixer.set_muted(pid, self.room.participants[pid].audio_muted)
        if event.type in ("participant_left", "participant_removed") and pid is not None:
            self._quality.pop(pid, None)
            self.video.remove(pid)
            if self._transcoders is not None:
                self._transcoders.drop(pid)
        if event.type in ("presentation_started", "presentation_stopped"):
            self._route_content()
            if self.compositor is not None:
                self._feed_compositor()
        if event.type in _SCENE_EVENTS and self.compositor is not None:
            self._update_scene()
        for leg in list(self.legs.values()):
            try:
                leg.on_room_event(event)
            except Exception:
                self._log.exception("leg failed to show an event", participant=leg.participant_id, event=event.type)
        if event.type in _HANG_UP_EVENTS and pid in self.legs:
            self._hang_up(self.legs[pid], _HANG_UP_EVENTS[event.type])
        elif event.type == "meeting_ended":
            for leg in list(self.legs.values()):
                self._hang_up(leg, event.data.get("reason", "meeting_ended"))
            for pid in event.data.get("participants", []):
                self.video.remove(pid)
                if self._transcoders is not None:
                    self._transcoders.drop(pid)

    def _hang_up(self, leg: Leg, reason: str) -> None:
        self.detach(leg.participant_id)
        task = asyncio.get_running_loop().create_task(leg.hang_up(reason))
        # Owned until done (the loop keeps only weak references), and a failure is logged with the
        # participant rather than as "Task exception was never retrieved".
        self._hang_ups.add(task)
        task.add_done_callback(lambda done: self._hang_up_done(done, leg.participant_id))

    def _hang_up_done(self, task: asyncio.Task[None], pid: str) -> None:
        self._hang_ups.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("hanging up a leg failed", participant=pid, exc_info=task.exception())

    def participant_view(self, pid: str) -> dict[str, Any]:
        """A participant with its media counters, for the admin API."""
        participant = self.room.get(pid)
        view = participant.public()
        if participant.number:  # (a caller's whole number: administrators and hosts, never the room)
            view["number"] = participant.number
        stats = self.mixer.stats(pid)
        jitter = self.mixer.jitter(pid)
        leg = self.legs.get(pid)
        video_in, video_undecodable = self.video.participant_stats(pid)
        view["media"] = {
            "audio_packets_in": stats.packets_in if stats else 0,
            "audio_frames_mixed": stats.frames_mixed if stats else 0,
            "audio_frames_dropped_muted": stats.frames_dropped_muted if stats else 0,
            "audio_frames_lost": stats.frames_lost if stats else 0,
            "audio_frames_malformed": stats.frames_malformed if stats else 0,
            "audio_frames_out": stats.frames_out if stats else 0,
            "audio_level_dbov": round(stats.level_dbov, 1) if stats else None,
            "jitter_ms": round(jitter.jitter_ms, 2) if jitter else None,
            "video_frames_in": video_in,
            "video_frames_undecodable": video_undecodable,
            "video_frames_out": self.video.receiver_stats(pid),
            # Which simulcast layer of the camera the room's composed picture takes (0 the lowest;
            # None: nothing composed, or no frame yet)
            "composed_layer": self.video.layer_of(_COMPOSITOR, VideoSourceId(pid)) if self.compositor else None,
            **(leg.media_counters() if leg else {}),
        }
        return view

    def media_summary(self, pid: str) -> dict[str, Any]:
        """Codecs, loss and jitter of a participant's leg, for its call record."""
        leg = self.legs.get(pid)
        if leg is None:
            return self.last_media.get(pid, {})
        stats = self.mixer.stats(pid)
        jitter = self.mixer.jitter(pid)
        counters = leg.media_counters()
        received = stats.packets_in if stats else 0
        lost = stats.frames_lost if stats else 0
        return {
            "audio_codec": leg.audio_in_codec.value,
            "video_codecs": ",".join(codec_names(c for s in leg.video_streams.values() for c in s.codecs)),
            "audio_packets_in": received,
            "audio_frames_lost": lost,
            "loss_percent": round(100.0 * lost / (received + lost), 2) if received + lost else 0.0,
            "jitter_ms": round(jitter.jitter_ms, 2) if jitter else counters.get("rtp_jitter_ms"),
        }

    def _close_compositor(self) -> None:
        compositor, self.compositor = self.compositor, None
        self.video.remove_receiver(_COMPOSITOR)
        if compositor is not None:
            self._background(compositor.close())

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """Work that outlives the call that started it (closing a child process), owned until done."""
        task = asyncio.get_running_loop().create_task(work)
        self._hang_ups.add(task)
        task.add_done_callback(self._hang_ups.discard)

    async def close(self) -> None:
        self._unsubscribe()
        if self._transcoders is not None:
            self._transcoders.close()
        if self.broadcast is not None:  # (its files are completed, their owners told)
            broadcast, self.broadcast = self.broadcast, None
            await broadcast.close()
        if self.compositor is not None:
            compositor, self.compositor = self.compositor, None
            await compositor.close()
        if self._hang_ups:  # (hang-ups and child processes that were closing: none left behind)
            await asyncio.wait(set(self._hang_ups), timeout=15.0)
        await self.clock.stop()
