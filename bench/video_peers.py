"""The far ends of bench/video_legs.py, in processes of their own (their CPU is not the gateway's).

Two modes, each one process driven by its parent over stdin/stdout (JSON lines, as in
bench/rtp_phones.py: `{"event": "ready"}` once started; on `snap` in stdin, `{"event": "snap", ...}`
with its counters; `stop`, or the end of stdin, ends it after a last snap):

- `browsers`: aiortc peers that join rooms over the gateway's WebSocket protocol, like
  gateway/webrtc/probe.py does. A *sender* sends a real camera: 1280x720 at 30 fps from FFmpeg's
  testsrc2 pattern (colour bars, a moving gradient, a running clock; made in this process by
  libavfilter, about 1 ms a frame), encoded by aiortc's own VP8 encoder here, plus pre-encoded
  Opus with an RFC 6464 level (the room's first sender talks, the others are quiet, so the active
  speaker does not flap). Every peer receives the video slots the gateway offers, counted as whole
  encoded frames (gateway.rtp.aiortc_glue.VideoTap: no decode in this process); a *receiver* sends
  no camera and may insist on H.264 for its slots (the passthrough check). Two things differ from
  gateway/webrtc/probe.py on purpose: the peer connection is max-bundle (aiortc 1.16's default,
  balanced, leaves every video m-line after the first of an offer on a DTLS transport that never
  connects, so an aiortc answerer receives no video at all), and the audio level is set in the
  unit aiortc's sender expects (dBov, negative; `aiortc_glue.send_audio_level` hands it a positive
  number, which reaches the gateway as silence: -20 dBov arrives as -108).
- `rtp`: the media of SIP calls whose signalling sipp does (bench/sipp/video_leg.xml). Each call is
  an audio socket pair and a video socket pair, the ports its SDP offer names. Audio: A-law silence
  every 20 ms to where the gateway's audio comes from (symmetric RTP), so the gateway's media
  timeout never ends the call. A *sink* call counts the gateway's video RTP where it arrives:
  packets, bytes, lost (by sequence number), whole frames (marker bit, distinct timestamps),
  IDRs (H.264, what the calls offer) and the longest gap between frames; the first sink also
  writes the first frames it gets, depacketized (H.264 Annex B; VP8 in IVF), for the parent to
  decode after the run. A *source* call sends H.264 RTP (packetization mode 1) from a clip, 30 fps,
  to the gateway's video port (which sipp writes, with the call's audio port, to an answers file),
  jumping to the next IDR of the clip when RTCP PLI/FIR asks for one.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import random
import selectors
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

VIDEO_CLOCK = 90_000

# -- browsers ---------------------------------------------------------------------------------------


def camera_frames(width: int, height: int, fps: int) -> Any:
    """An endless generator of yuv420p av.VideoFrames of testsrc2 (libavfilter, in this process)."""
    import av

    while True:
        container = av.open(f"testsrc2=size={width}x{height}:rate={fps}", format="lavfi")
        try:
            for frame in container.decode(video=0):
                yield frame if frame.format.name == "yuv420p" else frame.reformat(format="yuv420p")
        finally:
            container.close()


def make_camera_track(width: int, height: int, fps: int) -> Any:
    from gateway.rtp.aiortc_glue import MediaStreamError, MediaStreamTrack

    class CameraTrack(MediaStreamTrack):
        """A camera paced in real time on the loop's clock; late frames are skipped, not bunched."""

        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self._frames = camera_frames(width, height, fps)
            self._period = 1 / fps
            self._start: float | None = None
            self._n = 0
            self.frames = 0  # handed to aiortc's sender (which encodes each one)
            self.skipped = 0

        async def recv(self) -> Any:
            if self.readyState != "live":
                raise MediaStreamError
            loop = asyncio.get_running_loop()
            if self._start is None:
                self._start = loop.time()
            due = self._start + self._n * self._period
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay > self._period:  # behind: skip the frames that are already too old
                behind = int(-delay / self._period)
                self._n += behind
                self.skipped += behind
            frame = next(self._frames)
            frame.pts = self._n * VIDEO_CLOCK // fps
            frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
            self._n += 1
            self.frames += 1
            return frame

    return CameraTrack()


def keep_codec(transceiver: Any, name: str) -> None:
    """Answer only `name` (and its RTX) on this transceiver. After setRemoteDescription, which is
    when aiortc makes the transceivers of an offer; setCodecPreferences would come too late."""
    kept = [c for c in transceiver._codecs if c.mimeType.upper() == f"VIDEO/{name}"]
    types = {c.payloadType for c in kept}
    rtx = [c for c in transceiver._codecs if c.mimeType.lower() == "video/rtx" and c.parameters.get("apt") in types]
    if kept:
        transceiver._codecs = kept + rtx


def set_audio_level(sender: Any, level_dbov: int) -> None:
    """The RFC 6464 level of every packet a sender sends pre-encoded, as browsers send it. aiortc's
    sender writes `-encoded.audio_level` into the header, so the level goes in as dBov (negative)."""
    next_frame = sender._next_encoded_frame

    async def with_level(codec: Any) -> Any:
        encoded = await next_frame(codec)
        if encoded is not None:
            encoded.audio_level = max(-127, min(0, level_dbov))
        return encoded

    sender._next_encoded_frame = with_level


class BrowserPeer:
    """One headless browser: joins, answers the gateway's offer, sends what its role says, counts."""

    def __init__(
        self, url: str, room: str, name: str, camera: bool, speaking: bool, slot_codec: str | None, size: tuple[int, int, int]
    ) -> None:
        self.url, self.room, self.name = url, room, name
        self.camera = camera
        self.speaking = speaking
        self.slot_codec = slot_codec  # None: whatever the gateway offers first
        self.size = size
        self.ws: Any = None
        self.pc: Any = None
        self.track: Any = None
        self.joined = asyncio.Event()
        self.answered = asyncio.Event()
        self.ended: str | None = None
        self.errors: list[str] = []
        self.audio_packets = 0
        self.slot_frames = 0
        self.slot_keyframes = 0
        self.slot_bytes = 0
        self.slot_codecs: dict[str, int] = {}
        self.slot_packets = 0
        self.slot_payload_types: dict[int, int] = {}
        self.camera_codec: str | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        import websockets

        self.ws = await websockets.connect(self.url, max_size=2**22)
        await self.ws.send(json.dumps({"type": "join", "room": self.room, "name": self.name, "pin": ""}))
        self._tasks.append(asyncio.create_task(self._read()))

    async def _read(self) -> None:
        import websockets

        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                kind = msg.get("type")
                if kind == "joined":
                    self.joined.set()
                elif kind == "offer":
                    try:
                        await self._answer(msg)
                    except Exception as exc:  # reported to the parent, not fatal for the others
                        self.errors.append(f"answer: {exc!r}")
                elif kind == "ended":
                    self.ended = msg.get("reason")
                elif kind == "error":
                    self.errors.append(f"{msg.get('code')}: {msg.get('message')}")
        except websockets.ConnectionClosed:
            pass

    async def _answer(self, msg: dict[str, Any]) -> None:
        from gateway.rtp.aiortc_glue import (
            RTCBundlePolicy,
            RTCConfiguration,
            RTCPeerConnection,
            RTCSessionDescription,
            VideoTap,
            tap_audio,
        )
        from gateway.webrtc.probe import EncodedToneTrack

        # max-bundle, as browsers do: with aiortc's default (balanced), an answerer that gets more
        # than one video m-line keeps every video line after the first on a DTLS transport that never
        # connects (aiortc 1.16), so the slots would receive nothing.
        pc = self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        await pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "offer"))
        for transceiver in pc.getTransceivers():
            if transceiver.mid == msg["audio_mid"]:
                transceiver.sender.replaceTrack(EncodedToneTrack(440.0 + 110 * (hash(self.name) % 5)))
                set_audio_level(transceiver.sender, -20 if self.speaking else -70)
                tap_audio(transceiver.receiver, self._count_audio)
                transceiver.direction = "sendrecv"
            elif transceiver.mid == msg["video_mid"]:
                if self.camera:
                    self.track = make_camera_track(*self.size)
                    transceiver.sender.replaceTrack(self.track)
                    keep_codec(transceiver, "VP8")
                    transceiver.direction = "sendonly"
                else:
                    transceiver.direction = "inactive"
            else:  # a video slot: another participant's video, forwarded (counted, never decoded)
                VideoTap(transceiver.receiver, self._count_frame)
                self._count_packets(transceiver.receiver)
                if self.slot_codec is not None:
                    keep_codec(transceiver, self.slot_codec)
                transceiver.direction = "recvonly"
        await pc.setLocalDescription(await pc.createAnswer())
        for transceiver in pc.getTransceivers():
            if transceiver.mid == msg["video_mid"] and self.camera and transceiver._codecs:
                self.camera_codec = transceiver._codecs[0].mimeType
        await self.ws.send(json.dumps({"type": "answer", "sdp": pc.localDescription.sdp}))
        self.answered.set()

    def _count_packets(self, receiver: Any) -> None:
        """RTP packets arriving at a slot (before reassembly), by payload type."""
        original = receiver._handle_rtp_packet

        async def handle(packet: Any, arrival_time_ms: int) -> None:
            self.slot_packets += 1
            self.slot_payload_types[packet.payload_type] = self.slot_payload_types.get(packet.payload_type, 0) + 1
            await original(packet, arrival_time_ms)

        receiver._handle_rtp_packet = handle

    def _count_audio(self, *_args: object) -> None:
        self.audio_packets += 1

    def _count_frame(self, codec: Any, data: bytes, _timestamp: int) -> None:
        self.slot_frames += 1
        self.slot_bytes += len(data)
        name = str(codec.name).upper()
        self.slot_codecs[name] = self.slot_codecs.get(name, 0) + 1
        if is_keyframe(name, data):
            self.slot_keyframes += 1

    def counters(self) -> dict[str, Any]:
        return {
            "room": self.room,
            "camera": self.camera,
            "camera_frames": self.track.frames if self.track is not None else 0,
            "camera_skipped": self.track.skipped if self.track is not None else 0,
            "camera_codec": self.camera_codec,
            "audio_packets": self.audio_packets,
            "slot_frames": self.slot_frames,
            "slot_keyframes": self.slot_keyframes,
            "slot_bytes": self.slot_bytes,
            "slot_codecs": self.slot_codecs,
            "slot_packets": self.slot_packets,
            "slot_payload_types": self.slot_payload_types,
            "connection": self.pc.connectionState if self.pc is not None else "new",
            "ended": self.ended,
            "errors": self.errors[:5],
        }

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.track is not None:
            self.track.stop()
        if self.pc is not None:
            await self.pc.close()
        if self.ws is not None:
            await self.ws.close()


def _stdin_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str]) -> None:
    """A thread: the parent's commands, handed to the loop (end of stdin is a stop)."""
    for line in sys.stdin:
        loop.call_soon_threadsafe(queue.put_nowait, line.strip())
    loop.call_soon_threadsafe(queue.put_nowait, "stop")


async def browsers_main(args: argparse.Namespace) -> None:
    size = (args.width, args.height, args.fps)
    peers: list[BrowserPeer] = []
    for room in args.rooms:
        for i in range(args.senders):
            peers.append(BrowserPeer(args.url, room, f"{room}-cam{i}", True, i == 0, None, size))
        for i in range(args.receivers):
            speaking = args.senders == 0 and i == 0
            peers.append(BrowserPeer(args.url, room, f"{room}-view{i}", False, speaking, args.slot_codec, size))
    for peer in peers:
        await peer.start()
        await asyncio.sleep(0.1)
    try:
        await asyncio.wait_for(asyncio.gather(*(p.answered.wait() for p in peers)), 60)
    except TimeoutError:
        pass
    for _ in range(150):  # up to 30 s for ICE and DTLS
        if all(p.pc is not None and p.pc.connectionState == "connected" for p in peers):
            break
        await asyncio.sleep(0.2)
    print(json.dumps({"event": "ready", "peers": [p.counters() for p in peers]}), flush=True)
    queue: asyncio.Queue[str] = asyncio.Queue()
    threading.Thread(target=_stdin_lines, args=(asyncio.get_running_loop(), queue), daemon=True).start()
    while True:
        command = await queue.get()
        if command in ("snap", "stop"):
            print(json.dumps({"event": "snap", "at": time.monotonic(), "peers": [p.counters() for p in peers]}), flush=True)
        if command == "stop":
            break
    await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)


# -- SIP calls' media -----------------------------------------------------------------------------


def is_keyframe(codec: str, data: bytes) -> bool:
    """An H.264 access unit (Annex B) holding an IDR slice, or a VP8 key frame."""
    if codec == "VP8":
        return bool(data) and not data[0] & 0x01
    i = data.find(b"\x00\x00\x01")
    while 0 <= i < len(data) - 3:
        if data[i + 3] & 0x1F == 5:
            return True
        i = data.find(b"\x00\x00\x01", i + 3)
    return False


def h264_payload_is_idr(payload: bytes) -> bool:
    """Whether an H.264 RTP payload (RFC 6184) starts or carries an IDR slice."""
    if not payload:
        return False
    nal = payload[0] & 0x1F
    if nal == 5:
        return True
    if nal == 28 and len(payload) > 1:  # FU-A: the start fragment says what it carries
        return bool(payload[1] & 0x80) and payload[1] & 0x1F == 5
    if nal == 24:  # STAP-A
        pos = 1
        while pos + 2 < len(payload):
            size = struct.unpack_from("!H", payload, pos)[0]
            if payload[pos + 2] & 0x1F == 5:
                return True
            pos += 2 + size
    return False


class H264Depayloader:
    """RFC 6184 payloads (single NAL, STAP-A, FU-A) to Annex B."""

    def __init__(self) -> None:
        self.fragment = bytearray()

    def add(self, payload: bytes) -> bytes:
        if not payload:
            return b""
        nal = payload[0] & 0x1F
        if 1 <= nal <= 23:
            return b"\x00\x00\x00\x01" + payload
        out = bytearray()
        if nal == 24:
            pos = 1
            while pos + 2 <= len(payload):
                size = struct.unpack_from("!H", payload, pos)[0]
                out += b"\x00\x00\x00\x01" + payload[pos + 2 : pos + 2 + size]
                pos += 2 + size
        elif nal == 28 and len(payload) > 1:
            start, end = payload[1] & 0x80, payload[1] & 0x40
            if start:
                self.fragment = bytearray([(payload[0] & 0xE0) | (payload[1] & 0x1F)])
            self.fragment += payload[2:]
            if end:
                out += b"\x00\x00\x00\x01" + bytes(self.fragment)
                self.fragment = bytearray()
        return bytes(out)


def vp8_descriptor_size(payload: bytes) -> int:
    """Length of the VP8 payload descriptor (RFC 7741 4.2)."""
    size = 1
    if payload[0] & 0x80 and len(payload) > 1:
        ext = payload[1]
        size += 1
        if ext & 0x80:
            size += 2 if len(payload) > size and payload[size] & 0x80 else 1
        if ext & 0x40:
            size += 1
        if ext & 0x30:
            size += 1
    return size


class Call:
    """The media of one SIP call: audio (port, port + 1) and video (vport, vport + 1)."""

    def __init__(self, index: int, audio_port: int, video_port: int, role: str) -> None:
        self.index = index
        self.audio_port, self.video_port, self.role = audio_port, video_port, role
        self.sockets: list[socket.socket] = []
        for port in (audio_port, audio_port + 1, video_port, video_port + 1):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", port))
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            self.sockets.append(s)
        self.audio_rtp, self.audio_rtcp, self.video_rtp, self.video_rtcp = self.sockets
        self.audio_remote: tuple[str, int] | None = None
        self.video_remote: tuple[str, int] | None = None
        self.audio_ssrc = random.getrandbits(32)
        self.video_ssrc = random.getrandbits(32)
        self.audio_seq = random.getrandbits(16)
        self.audio_ts = random.getrandbits(32)
        self.audio_sent = 0
        self.audio_in = 0
        # video in (sinks)
        self.video_packets = 0
        self.video_bytes = 0
        self.frames = 0  # packets with the marker bit: frames completed
        self.timestamps = 0  # distinct RTP timestamps seen
        self.keyframes = 0
        self.first_seq: int | None = None
        self.max_seq = 0
        self.last_ts: int | None = None
        self.last_key_ts: int | None = None
        self.last_frame_at: float | None = None
        self.max_gap_s = 0.0  # longest time between two frames since the last snap
        self.payload_types: dict[int, int] = {}
        self.rtcp_in = 0
        self.keyframe_requests = 0
        # video out (sources)
        self.video_seq = random.getrandbits(16)
        self.video_ts = random.getrandbits(32)
        self.video_frames_sent = 0
        self.video_packets_sent = 0
        self.frame_index = 0
        self.jump_to_keyframe = False

    def take_audio(self, data: bytes, source: tuple[str, int]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2 or 72 <= data[1] & 0x7F <= 76:
            return
        self.audio_in += 1
        if self.audio_remote is None:
            self.audio_remote = source

    def take_video(self, data: bytes, source: tuple[str, int], now: float, capture: Any) -> None:
        if len(data) < 12 or data[0] >> 6 != 2 or 72 <= data[1] & 0x7F <= 76:
            return
        if self.video_remote is None and self.role == "sink":
            self.video_remote = source
        first = data[0]
        header = 12 + 4 * (first & 0x0F)
        if first & 0x10 and len(data) >= header + 4:  # header extension
            header += 4 + 4 * struct.unpack_from("!H", data, header + 2)[0]
        end = len(data) - (data[-1] if first & 0x20 and data else 0)
        payload = data[header:end]
        pt = data[1] & 0x7F
        marker = data[1] & 0x80
        seq, ts = struct.unpack_from("!HI", data, 2)
        self.video_packets += 1
        self.video_bytes += len(payload)
        self.payload_types[pt] = self.payload_types.get(pt, 0) + 1
        if self.first_seq is None:
            self.first_seq = self.max_seq = seq
        else:
            delta = (seq - self.max_seq) & 0xFFFF
            if delta < 0x8000:
                self.max_seq += delta
        if ts != self.last_ts:
            self.timestamps += 1
            self.last_ts = ts
        if h264_payload_is_idr(payload) and ts != self.last_key_ts:  # (H.264: what the sinks offer)
            self.keyframes += 1
            self.last_key_ts = ts
        if capture is not None and capture.call is self:
            capture.add(payload, marker != 0, ts)
        if marker:
            self.frames += 1
            if self.last_frame_at is not None:
                self.max_gap_s = max(self.max_gap_s, now - self.last_frame_at)
            self.last_frame_at = now

    def expected(self) -> int:
        return 0 if self.first_seq is None else self.max_seq - self.first_seq + 1

    def snap(self) -> dict[str, Any]:
        out = {
            "role": self.role,
            "audio_sent": self.audio_sent,
            "audio_in": self.audio_in,
            "video_packets": self.video_packets,
            "video_bytes": self.video_bytes,
            "frames": self.frames,
            "timestamps": self.timestamps,
            "keyframes": self.keyframes,
            "expected": self.expected(),
            "max_gap_ms": round(self.max_gap_s * 1000, 1),
            "payload_types": self.payload_types,
            "rtcp_in": self.rtcp_in,
            "keyframe_requests": self.keyframe_requests,
            "video_frames_sent": self.video_frames_sent,
            "video_packets_sent": self.video_packets_sent,
            "video_remote": self.video_remote is not None,
        }
        self.max_gap_s = 0.0
        return out

    def audio_packet(self) -> bytes:
        header = struct.pack("!BBHII", 0x80, 8, self.audio_seq & 0xFFFF, self.audio_ts & 0xFFFFFFFF, self.audio_ssrc)
        self.audio_seq += 1
        self.audio_ts += 160
        return header + b"\xd5" * 160


class Capture:
    """The first frames one sink receives, depacketized into a file the parent decodes later."""

    def __init__(self, path: Path, codec: str, frames: int) -> None:
        self.path, self.codec, self.limit = path, codec, frames
        self.call: Call | None = None
        self.h264 = H264Depayloader()
        self.frame = bytearray()
        self.frames: list[tuple[int, bytes]] = []
        self.started = False
        self.done = False

    def add(self, payload: bytes, marker: bool, ts: int) -> None:
        if self.done or not payload:
            return
        if self.codec == "H264":
            self.frame += self.h264.add(payload)
        else:
            self.frame += payload[vp8_descriptor_size(payload) :]
        if marker:
            data, self.frame = bytes(self.frame), bytearray()
            if not self.started and is_keyframe(self.codec, data):
                self.started = True
            if self.started:
                self.frames.append((ts, data))
            if len(self.frames) >= self.limit:
                self.write()

    def write(self) -> None:
        if self.done:
            return
        self.done = True
        if self.codec == "H264":
            self.path.write_bytes(b"".join(d for _, d in self.frames))
            return
        # VP8 in IVF (32-byte file header, 12-byte frame headers)
        out = bytearray(b"DKIF" + struct.pack("<HHIHHIII", 0, 32, 0x30385056, 0, 0, 30, 1, len(self.frames)) + b"\x00" * 4)
        for n, (_, data) in enumerate(self.frames):
            out += struct.pack("<IQ", len(data), n) + data
        self.path.write_bytes(bytes(out))


class Clip:
    """An H.264 clip (Annex B) split into access units, each pre-packetized for RTP (mode 1)."""

    def __init__(self, path: Path) -> None:
        import av

        from gateway.rtp.aiortc_glue import packetize

        self.frames: list[tuple[list[bytes], bool]] = []
        with av.open(str(path)) as container:
            for packet in container.demux(video=0):
                data = bytes(packet)
                if data:
                    self.frames.append((packetize("H264", data), is_keyframe("H264", data)))
        if not self.frames or not self.frames[0][1]:
            raise RuntimeError(f"{path}: no frames, or the first one is not an IDR")
        self.keyframes = [i for i, (_, key) in enumerate(self.frames) if key]

    def next_keyframe(self, index: int) -> int:
        return next((k for k in self.keyframes if k >= index), 0)


def read_answers(path: Path, calls: dict[int, Call]) -> None:
    """Lines `our_audio_port gateway_audio_port gateway_video_port` written by sipp per answered call."""
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        try:
            ours, _audio, video = int(fields[0]), int(fields[1]), int(fields[2])
        except ValueError:
            continue
        call = calls.get(ours)
        if call is not None and call.video_remote is None and video > 0:
            call.video_remote = ("127.0.0.1", video)


def rtp_main(args: argparse.Namespace) -> None:
    calls: list[Call] = []
    for i, spec in enumerate(args.calls):
        audio, video, role = spec.split(":")
        calls.append(Call(i, int(audio), int(video), role))
    by_audio_port = {c.audio_port: c for c in calls}
    sinks = [c for c in calls if c.role == "sink"]
    capture: Any = None
    if args.capture is not None and sinks:
        capture = Capture(args.capture, args.capture_codec, args.capture_frames)
        capture.call = sinks[0]
    else:
        capture = argparse.Namespace(codec=args.capture_codec, call=None)
    clip = Clip(args.clip) if args.clip is not None and any(c.role == "source" for c in calls) else None
    selector = selectors.DefaultSelector()
    for call in calls:
        selector.register(call.audio_rtp, selectors.EVENT_READ, (call, "audio"))
        selector.register(call.audio_rtcp, selectors.EVENT_READ, (call, "rtcp"))
        selector.register(call.video_rtp, selectors.EVENT_READ, (call, "video"))
        selector.register(call.video_rtcp, selectors.EVENT_READ, (call, "vrtcp"))
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    selector.register(stdin, selectors.EVENT_READ, None)
    pending = b""
    next_audio = time.monotonic()
    video_period = 1 / args.fps
    next_video = time.monotonic()
    next_answers = time.monotonic()
    late_sends = 0

    def snap() -> None:
        state = {"late_sends": late_sends, "capture_frames": len(capture.frames) if hasattr(capture, "frames") else 0}
        print(json.dumps({"event": "snap", "at": time.monotonic(), "calls": {c.audio_port: c.snap() for c in calls}, **state}), flush=True)

    print(json.dumps({"event": "ready"}), flush=True)
    while True:
        timeout = max(0.0, min(next_audio, next_video if clip else next_audio) - time.monotonic())
        for key, _ in selector.select(timeout):
            if key.data is None:
                chunk = os.read(stdin, 4096)
                if not chunk:
                    pending += b"\nstop\n"
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip() == b"snap":
                        snap()
                    elif line.strip() == b"stop":
                        if hasattr(capture, "write"):
                            capture.write()
                        snap()
                        return
                continue
            call, what = key.data
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            now = time.monotonic()
            while True:
                try:
                    data, source = sock.recvfrom(65536)
                except BlockingIOError:
                    break
                except OSError:
                    break
                if what == "audio":
                    call.take_audio(data, source)
                elif what == "video":
                    call.take_video(data, source, now, capture)
                elif what == "vrtcp":
                    call.rtcp_in += 1
                    if call.role == "source" and _asks_keyframe(data):
                        call.keyframe_requests += 1
                        call.jump_to_keyframe = True
        now = time.monotonic()
        if now >= next_audio:
            if now - next_audio > 0.005:
                late_sends += 1
            for call in calls:
                if call.audio_remote is not None:
                    try:
                        call.audio_rtp.sendto(call.audio_packet(), call.audio_remote)
                        call.audio_sent += 1
                    except OSError:
                        pass
            next_audio += 0.020
            if now - next_audio > 0.1:
                next_audio = now + 0.020
        if clip is not None and now >= next_answers:
            read_answers(args.answers, by_audio_port)
            next_answers = now + 0.5
        if clip is not None and now >= next_video:
            for call in calls:
                if call.role != "source" or call.video_remote is None:
                    continue
                if call.jump_to_keyframe:
                    call.frame_index = clip.next_keyframe(call.frame_index)
                    call.jump_to_keyframe = False
                payloads, _key = clip.frames[call.frame_index % len(clip.frames)]
                call.frame_index = (call.frame_index + 1) % len(clip.frames)
                for n, payload in enumerate(payloads):
                    marker = 0x80 if n == len(payloads) - 1 else 0
                    header = struct.pack(
                        "!BBHII", 0x80, marker | args.video_pt, call.video_seq & 0xFFFF, call.video_ts & 0xFFFFFFFF, call.video_ssrc
                    )
                    call.video_seq += 1
                    try:
                        call.video_rtp.sendto(header + payload, call.video_remote)
                        call.video_packets_sent += 1
                    except OSError:
                        pass
                call.video_frames_sent += 1
                call.video_ts += VIDEO_CLOCK // args.fps
            next_video += video_period
            if now - next_video > 0.2:
                next_video = now + video_period


def _asks_keyframe(data: bytes) -> bool:
    """A compound RTCP datagram with a PLI (PSFB 1) or FIR (PSFB 4) in it."""
    pos = 0
    while pos + 4 <= len(data):
        first, packet_type, words = struct.unpack_from("!BBH", data, pos)
        if first >> 6 != 2:
            return False
        if packet_type == 206 and first & 0x1F in (1, 4):
            return True
        pos += 4 + 4 * words
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", type=Path, help="gateway tree whose aiortc glue and probe the peers use")
    sub = parser.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("browsers")
    b.add_argument("--url", required=True, help="the gateway's meeting WebSocket (ws://host:port/ws)")
    b.add_argument("--rooms", nargs="+", required=True)
    b.add_argument("--senders", type=int, default=2, help="camera senders per room")
    b.add_argument("--receivers", type=int, default=0, help="browsers per room that only receive")
    b.add_argument("--slot-codec", choices=["H264", "VP8"], help="receivers accept only this codec in their slots")
    b.add_argument("--width", type=int, default=1280)
    b.add_argument("--height", type=int, default=720)
    b.add_argument("--fps", type=int, default=30)
    r = sub.add_parser("rtp")
    r.add_argument("--calls", nargs="+", required=True, help="audio_port:video_port:sink|source per call")
    r.add_argument("--fps", type=int, default=30, help="frame rate of a source")
    r.add_argument("--clip", type=Path, help="H.264 Annex B clip a source sends")
    r.add_argument("--video-pt", type=int, default=97)
    r.add_argument("--answers", type=Path, help="where sipp writes the gateway's ports per call")
    r.add_argument("--capture", type=Path, help="the first sink's first frames go here")
    r.add_argument("--capture-codec", default="H264", choices=["H264", "VP8"])
    r.add_argument("--capture-frames", type=int, default=90)
    args = parser.parse_args()
    if args.tree is not None:
        sys.path.insert(0, str(args.tree.resolve()))
    if args.mode == "browsers":
        asyncio.run(browsers_main(args))
    else:
        rtp_main(args)


if __name__ == "__main__":
    main()
