"""Prometheus metrics, read from the live state at each scrape (prometheus_client's custom collector):
participants by room and leg kind, the lobby, mixer ticks (late and skipped), packet loss and
jitter, how video is carried (frames forwarded untouched, transcoded, decodes and encodes of the
transcoders and of the composed picture), SIP calls and their failures by reason, and the event
loop's lag.

Protocol-free: the SIP side hands in a function that returns its counters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from gateway.rooms.directory import Directory


@dataclass
class CallCounters:
    """What a signalling side reports: calls now, attempts by direction, failures by reason."""

    active: int = 0
    attempts: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    trunks: list[dict[str, Any]] = field(default_factory=list)  # registration states (no secrets)
    # REGISTERs of room systems to the gateway, by outcome (registered, challenged, refused)
    registrations: dict[str, int] = field(default_factory=dict)


@dataclass
class H323Counters:
    """What H.323 reports: calls now, attempts by direction, failures by Q.850 cause, and the
    gatekeeper registration (None: no gatekeeper configured)."""

    active: int = 0
    attempts: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    gatekeeper_registered: bool | None = None


@dataclass
class MqttCounters:
    """What the MQTT bridge reports: connected now, events published and dropped (queue full while the
    broker was away), events waiting, reconnections, commands by result (accepted / refused)."""

    connected: bool = False
    published: int = 0
    dropped: int = 0
    queued: int = 0
    reconnects: int = 0
    commands: dict[str, int] = field(default_factory=dict)


@dataclass
class BroadcastCounters:
    """Recordings and live streams: rooms recorded now, live streams by room (True while connected),
    interruptions of each room's live streams, and failures by what failed (recording, streaming)."""

    recording: list[str] = field(default_factory=list)
    streaming: dict[str, bool] = field(default_factory=dict)
    interruptions: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)


class LoopLag:
    """How late the event loop runs a callback that asked to run now: every audio tick waits that long."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self.last_s = 0.0
        self.max_s = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self.interval_s)
            self.last_s = max(0.0, loop.time() - started - self.interval_s)
            self.max_s = max(self.max_s, self.last_s)


class GatewayCollector(Collector):
    def __init__(
        self,
        directory: Directory,
        calls: Callable[[], CallCounters] | None,
        lag: LoopLag,
        mqtt: Callable[[], MqttCounters] | None = None,
        h323: Callable[[], H323Counters] | None = None,
        broadcasts: Callable[[], BroadcastCounters] | None = None,
        draining: Callable[[], bool] | None = None,
    ) -> None:
        self._directory = directory
        self._draining = draining
        self._calls = calls
        self._lag = lag
        self._mqtt = mqtt
        self._h323 = h323
        self._broadcasts = broadcasts

    def collect(self) -> Iterator[Metric]:
        participants = GaugeMetricFamily(
            "gateway_participants", "Participants in a room by leg kind", labels=["room", "kind"]
        )
        lobby = GaugeMetricFamily("gateway_lobby_waiting", "Participants waiting in a room's lobby", labels=["room"])
        ticks = CounterMetricFamily("gateway_mixer_ticks", "Mixer ticks of a room", labels=["room"])
        late = CounterMetricFamily("gateway_mixer_late_ticks", "Mixer ticks started late (> tolerance)", labels=["room"])
        skipped = CounterMetricFamily("gateway_mixer_skipped_ticks", "Mixer ticks skipped (loop far behind)", labels=["room"])
        lost = CounterMetricFamily(
            "gateway_audio_frames_lost", "Audio frames lost before the mixer (current participants)", labels=["room"]
        )
        jitter = GaugeMetricFamily("gateway_audio_jitter_ms", "Worst inbound audio jitter of a room's participants", labels=["room"])
        video: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "frames_forwarded": CounterMetricFamily(
                "gateway_video_frames_forwarded", "Video frames forwarded to receivers as they came (no decode)", labels=["room"]
            ),
            "frames_transcoded": CounterMetricFamily(
                "gateway_video_frames_transcoded", "Video frames delivered after a transcode", labels=["room"]
            ),
            "transcoder_decodes": CounterMetricFamily(
                "gateway_video_transcoder_decodes", "Video frames decoded to be transcoded for receivers", labels=["room"]
            ),
            "transcoders": GaugeMetricFamily(
                "gateway_video_transcoders", "Transcoders running (one per sender and output codec)", labels=["room"]
            ),
            "composed_decodes": CounterMetricFamily(
                "gateway_video_composed_decodes", "Camera frames decoded for the composed picture", labels=["room"]
            ),
            "composed_lower_layer_frames": CounterMetricFamily(
                "gateway_video_composed_lower_layer_frames",
                "Camera frames the composed picture took from a browser's lower simulcast layer (shown small: less to decode)",
                labels=["room"],
            ),
            "compositions": CounterMetricFamily(
                "gateway_video_compositions", "Composed pictures made for room systems", labels=["room"]
            ),
            "composed_encodes": CounterMetricFamily(
                "gateway_video_composed_encodes", "Composed pictures encoded (once per output, however many receive it)", labels=["room"]
            ),
            "composed_encoders": GaugeMetricFamily(
                "gateway_video_composed_encoders", "Encoders of the composed picture (one per distinct output)", labels=["room"]
            ),
            "compositor_restarts": CounterMetricFamily(
                "gateway_video_compositor_restarts", "Times the room's compositor process died and was started again", labels=["room"]
            ),
            "composed_frames_not_sent": CounterMetricFamily(
                "gateway_video_composed_frames_not_sent",
                "Camera frames not handed to the compositor process because it fell behind (dropped to the next keyframe)",
                labels=["room"],
            ),
        }
        for conference in self._directory:
            room = conference.room
            by_kind: dict[str, int] = {}
            for p in room.participants.values():
                if p.extra.get("via") is None:  # (another node's participant: counted there)
                    by_kind[p.kind.value] = by_kind.get(p.kind.value, 0) + 1
            for kind, count in sorted(by_kind.items()):
                participants.add_metric([room.id, kind], count)
            lobby.add_metric([room.id], len(room.lobby))
            stats = conference.clock.stats
            ticks.add_metric([room.id], stats.ticks)
            late.add_metric([room.id], stats.late_ticks)
            skipped.add_metric([room.id], stats.skipped_ticks)
            frames_lost, worst = 0, 0.0
            for pid in list(room.participants):
                mixer_stats = conference.mixer.stats(pid)
                buffer = conference.mixer.jitter(pid)
                if mixer_stats is not None:
                    frames_lost += mixer_stats.frames_lost
                if buffer is not None:
                    worst = max(worst, buffer.jitter_ms)
            lost.add_metric([room.id], frames_lost)
            jitter.add_metric([room.id], round(worst, 3))
            for name, value in conference.video_counters().items():
                if name in video:
                    video[name].add_metric([room.id], value)
        yield from (participants, lobby, ticks, late, skipped, lost, jitter, *video.values())

        if self._calls is not None:
            counters = self._calls()
            yield GaugeMetricFamily("gateway_sip_calls_active", "SIP calls in progress", value=counters.active)
            yield _counts("gateway_sip_call_attempts", "SIP call attempts", "direction", counters.attempts)
            yield _counts("gateway_sip_call_failures", "SIP calls refused or failed", "reason", counters.failures)
            registered = GaugeMetricFamily("gateway_sip_trunk_registered", "1 while the trunk's registration is up", labels=["trunk"])
            trunk_failures = CounterMetricFamily(
                "gateway_sip_trunk_registration_failures", "REGISTERs of the trunk that failed (by any status, or none)", labels=["trunk"]
            )
            for trunk in counters.trunks:
                registered.add_metric([trunk["id"]], int(trunk["status"] == "registered"))
                trunk_failures.add_metric([trunk["id"]], trunk["failures"])
            yield registered
            yield trunk_failures
            yield _counts(
                "gateway_sip_registrations",
                "REGISTERs of room systems to the gateway by outcome (refused: a wrong password or an unknown device)",
                "outcome",
                counters.registrations,
            )

        if self._h323 is not None:
            h323 = self._h323()
            yield GaugeMetricFamily("gateway_h323_calls_active", "H.323 calls in progress", value=h323.active)
            yield _counts("gateway_h323_call_attempts", "H.323 call attempts", "direction", h323.attempts)
            yield _counts("gateway_h323_call_failures", "H.323 calls refused or failed, by Q.850 cause", "cause", h323.failures)
            if h323.gatekeeper_registered is not None:
                yield GaugeMetricFamily(
                    "gateway_h323_gatekeeper_registered", "1 while registered with the gatekeeper", value=int(h323.gatekeeper_registered)
                )

        if self._mqtt is not None:
            mqtt = self._mqtt()
            yield GaugeMetricFamily("gateway_mqtt_connected", "1 while connected to the MQTT broker", value=int(mqtt.connected))
            yield CounterMetricFamily("gateway_mqtt_events_published", "Events published to MQTT", value=mqtt.published)
            yield CounterMetricFamily(
                "gateway_mqtt_events_dropped", "Events dropped (oldest first) while the broker was away", value=mqtt.dropped
            )
            yield GaugeMetricFamily("gateway_mqtt_events_queued", "Events waiting for the broker", value=mqtt.queued)
            yield CounterMetricFamily("gateway_mqtt_reconnects", "Reconnections to the MQTT broker", value=mqtt.reconnects)
            commands = CounterMetricFamily("gateway_mqtt_commands", "MQTT commands by result", labels=["result"])
            for result, count in sorted(mqtt.commands.items()):
                commands.add_metric([result], count)
            yield commands

        if self._broadcasts is not None:
            broadcasts = self._broadcasts()
            recording = GaugeMetricFamily("gateway_recording_active", "1 while the room is recorded", labels=["room"])
            for room_id in sorted(broadcasts.recording):
                recording.add_metric([room_id], 1)
            yield recording
            connected = GaugeMetricFamily(
                "gateway_streaming_connected", "Live streams: 1 while connected to the server, 0 while reconnecting", labels=["room"]
            )
            for room_id, up in sorted(broadcasts.streaming.items()):
                connected.add_metric([room_id], int(up))
            yield connected
            yield _counts(
                "gateway_streaming_interruptions", "Times a room's live stream lost its server", "room", broadcasts.interruptions
            )
            yield _counts(
                "gateway_broadcast_failures", "Recordings and live streams that failed (an alert), by what", "what", broadcasts.failures
            )

        if self._draining is not None:
            yield GaugeMetricFamily(
                "gateway_node_draining", "1 while this node drains (new participants refused, meetings carry on)", value=int(self._draining())
            )
        yield GaugeMetricFamily("gateway_event_loop_lag_seconds", "Event loop lag, last measured", value=self._lag.last_s)
        yield GaugeMetricFamily("gateway_event_loop_lag_max_seconds", "Event loop lag, worst since start", value=self._lag.max_s)


def _counts(name: str, documentation: str, label: str, counts: dict[str, int]) -> CounterMetricFamily:
    """A counter with one sample per `label` value."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family


def build_registry(
    directory: Directory,
    calls: Callable[[], CallCounters] | None,
    lag: LoopLag,
    mqtt: Callable[[], MqttCounters] | None = None,
    h323: Callable[[], H323Counters] | None = None,
    broadcasts: Callable[[], BroadcastCounters] | None = None,
    draining: Callable[[], bool] | None = None,
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(directory, calls, lag, mqtt, h323, broadcasts, draining))
    return registry


class WorkersCollector(Collector):
    """One worker of several (gateway/workers.py): which one answered the scrape, and the
    supervisor's view of them all (alive, restarts)."""

    def __init__(self, index: int, state: Callable[[], dict[str, Any] | None]) -> None:
        self._index = index
        self._state = state

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("gateway_worker_index", "The worker that answered this scrape", value=self._index)
        workers = (self._state() or {}).get("workers", [])
        alive = GaugeMetricFamily("gateway_worker_up", "1 while the worker process runs", labels=["worker"])
        restarts = CounterMetricFamily("gateway_worker_restarts", "Times the supervisor restarted the worker after it died", labels=["worker"])
        for worker in workers:
            alive.add_metric([str(worker.get("index"))], int(bool(worker.get("alive"))))
            restarts.add_metric([str(worker.get("index"))], int(worker.get("restarts", 0)))
        yield alive
        yield restarts
