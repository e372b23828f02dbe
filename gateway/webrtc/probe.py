"""A headless participant built on aiortc: joins a room over the WebSocket protocol and sends a tone.

Used by the benchmarks (many of them in a separate process) and by smoke tests of a deployment;
it measures what it receives (audio frames and the strongest frequency, video frames).
"""

from __future__ import annotations

import asyncio
import fractions
import json
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
import websockets

from gateway.rtp.aiortc_glue import (
    AUDIO_TIME_BASE,
    MediaStreamError,
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    send_audio_level,
    tap_audio,
)
from gateway.transcode.audio import FRAME_SAMPLES, AudioCodec, AudioFormat, make_encoder


class ToneTrack(MediaStreamTrack):
    """20 ms mono frames of a sine tone, paced in real time."""

    kind = "audio"

    def __init__(self, frequency: float, amplitude: int = 8000) -> None:
        super().__init__()
        self._frequency = frequency
        self._amplitude = amplitude
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        due = self._start + self._pts / 48_000
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (np.arange(960) + self._pts) / 48_000
        samples = (np.sin(2 * np.pi * self._frequency * t) * self._amplitude).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48_000
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, 48_000)
        self._pts += 960
        return frame


class EncodedToneTrack(MediaStreamTrack):
    """The same tone as ToneTrack, encoded to Opus once up front: a load generator that costs no encode."""

    kind = "audio"

    def __init__(self, frequency: float, amplitude: int = 8000) -> None:
        super().__init__()
        encoder = make_encoder(AudioFormat(AudioCodec.OPUS))
        t = np.arange(FRAME_SAMPLES * 50) / 48_000
        pcm = (np.sin(2 * np.pi * frequency * t) * amplitude).astype(np.int16)
        self._payloads = [encoder.encode(pcm[i : i + FRAME_SAMPLES]) for i in range(0, pcm.size, FRAME_SAMPLES)]
        self._n = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet[Any]:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        delay = self._start + self._n * 0.020 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(self._payloads[self._n % len(self._payloads)])
        packet.pts = self._n * FRAME_SAMPLES
        packet.time_base = AUDIO_TIME_BASE
        self._n += 1
        return packet


@dataclass
class ProbeStats:
    audio_frames: int = 0
    video_frames: int = 0
    spectrum: np.ndarray = field(default_factory=lambda: np.zeros(24_001))
    messages: list[dict[str, Any]] = field(default_factory=list)

    def strongest_hz(self, top: int = 3) -> list[int]:
        return [int(i) for i in np.argsort(self.spectrum)[::-1][:top]]

    def energy_near(self, hz: float, width: float = 15.0) -> float:
        lo, hi = int(hz - width), int(hz + width) + 1
        return float(self.spectrum[lo:hi].sum() / (self.spectrum.sum() + 1e-9))


class Probe:
    def __init__(
        self, url: str, room: str, name: str, pin: str = "", tone_hz: float | None = 440.0, light: bool = False
    ) -> None:
        """light=True: send pre-encoded audio and count received packets without decoding (load tests)."""
        self.url, self.room, self.name, self.pin = url, room, name, pin
        self.tone_hz = tone_hz
        self.light = light
        self.audio_packets = 0
        self.stats = ProbeStats()
        self.pc: RTCPeerConnection | None = None
        self.ws: Any = None
        self.you: dict[str, Any] | None = None
        self.analyse = True
        self._tasks: list[asyncio.Task[Any]] = []
        self.joined = asyncio.Event()
        self.ended: str | None = None

    async def start(self) -> None:
        self.ws = await websockets.connect(self.url, max_size=2**20)
        await self.ws.send(json.dumps({"type": "join", "room": self.room, "name": self.name, "pin": self.pin}))
        self._tasks.append(asyncio.create_task(self._read()))

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                self.stats.messages.append(msg)
                if msg["type"] == "joined":
                    self.you = msg["you"]
                    self.joined.set()
                elif msg["type"] == "state":
                    self.you = msg["you"]
                elif msg["type"] == "offer":
                    await self._answer(msg)
                elif msg["type"] == "ended":
                    self.ended = msg["reason"]
        except websockets.ConnectionClosed:
            pass

    async def _answer(self, msg: dict[str, Any]) -> None:
        # (max-bundle, as browsers: aiortc's default policy would leave the video lines after the
        # first on transports that never connect, and their packets would be thrown away)
        pc = self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        pc.on("track", self._on_track)
        await pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "offer"))
        for transceiver in pc.getTransceivers():
            if transceiver.mid == msg["audio_mid"]:
                if self.tone_hz is not None:
                    track = EncodedToneTrack(self.tone_hz) if self.light else ToneTrack(self.tone_hz)
                    transceiver.sender.replaceTrack(track)
                    if self.light:  # like a browser: every packet says how loud it is
                        send_audio_level(transceiver.sender, lambda: -20.0)
                transceiver.direction = "sendrecv"
                if self.light:
                    tap_audio(transceiver.receiver, self._count_packet)
            else:
                transceiver.direction = "inactive" if transceiver.mid in (msg["video_mid"], msg.get("screen_mid")) else "recvonly"
        await pc.setLocalDescription(await pc.createAnswer())
        await self.send({"type": "answer", "sdp": pc.localDescription.sdp})

    def _count_packet(self, *_args: object) -> None:
        self.audio_packets += 1

    def _on_track(self, track: MediaStreamTrack) -> None:
        if self.light:
            return
        self._tasks.append(asyncio.create_task(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if isinstance(frame, av.AudioFrame):
                    self.stats.audio_frames += 1
                    if self.analyse:
                        pcm: np.ndarray[Any, np.dtype[np.float32]] = frame.to_ndarray().reshape(-1)[:: len(frame.layout.channels)].astype(np.float32)
                        if pcm.size == 960:
                            window = np.concatenate((pcm, np.zeros(48_000 - 960, dtype=np.float32)))
                            self.stats.spectrum += np.abs(np.fft.rfft(window))
                else:
                    self.stats.video_frames += 1
        except MediaStreamError:
            pass

    def reset_spectrum(self) -> None:
        self.stats.spectrum[:] = 0

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.pc is not None:
            await self.pc.close()
        if self.ws is not None:
            await self.ws.close()
