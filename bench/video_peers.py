"""The far ends of bench/video_legs.py, in processes of their own (their CPU is not the gateway's).

Three modes, each one process driven by its parent over stdin/stdout (JSON lines, as in
bench/rtp_phones.py: `{"event": "ready"}` once started; on `snap` in stdin, `{"event": "snap", ...}`
with its counters; `stop`, or the end of stdin, ends it after a last snap):

- `browsers`: aiortc peers that join rooms over the gateway's WebSocket protocol, like
  gateway/webrtc/probe.py does. A *sender* sends a real camera: 1280x720 at 30 fps from FFmpeg's
  testsrc2 pattern (colour bars, a moving gradient, a running clock; made in this process by
  libavfilter), in VP8: `--camera live` encodes every frame with aiortc's own VP8 encoder here
  (about 10 ms a 720p frame: two senders take most of a core), `--camera clip` sends a 10 s clip
  encoded once at the start by libvpx in realtime mode and looped (aiortc only packetizes it; a
  keyframe request restarts it), so that the far ends leave the machine's cores to the gateway.
  With --simulcast in two layers, as Chromium sends a camera when the gateway's offer asks for
  simulcast: the full picture and one at half its width and height, each an SSRC of its own named
  by the RID header extension, `l` and `h`; aiortc sends no simulcast, so a second RTCRtpSender on
  the same transport sends the lower layer, unannounced, as Chromium's layers are; plus pre-encoded
  Opus with an RFC 6464 level (the room's first sender talks, the others are quiet, so the active
  speaker does not flap). Every peer receives the video slots the gateway offers, counted as whole
  encoded frames (gateway.rtp.aiortc_glue.VideoTap: no decode in this process); a *receiver* sends
  no camera and may insist on H.264 for its slots (the passthrough check). Two things differ from
  gateway/webrtc/probe.py on purpose: the peer connection is max-bundle (aiortc 1.16's default,
  balanced, leaves every video m-line after the first of an offer on a DTLS transport that never
  connects, so an aiortc answerer receives no video at all), and the audio level is set in the
  unit aiortc's sender expects (dBov, negative; `aiortc_glue.send_audio_level` hands it a positive
  number, which reaches the gateway as silence: -20 dBov arrives as -108). The line the offer names
  `screen_mid` (a shared screen's upload) is answered inactive: these peers never share. Each peer
  keeps what every slot carries (the offer's `video_slots`, then `video_slots` messages) and counts
  apart the frames that arrive on a slot showing someone's content (`<participant id>#content`).
  `add <room> <count> <VP8|H264|any>` on stdin joins more receivers (answered `{"event": "added"}`
  once they are connected).
- `rtp`: the media of SIP calls whose signalling sipp does (bench/sipp/video_leg.xml). Each call is
  an audio socket pair and a video socket pair, the ports its SDP offer names. Audio: A-law silence
  every 20 ms to where the gateway's audio comes from (symmetric RTP), so the gateway's media
  timeout never ends the call. A *sink* call counts the gateway's video RTP where it arrives:
  packets, bytes, lost (by sequence number), whole frames (marker bit, distinct timestamps),
  IDRs (H.264, what the calls offer) and the longest gap between frames; the first sink also
  writes the first frames it gets, depacketized (H.264 Annex B; VP8 in IVF), for the parent to
  decode after the run. A *source* call sends H.264 RTP (packetization mode 1) from a clip, 30 fps,
  to the gateway's video port (which sipp writes, with the call's audio port, to an answers file),
  jumping to the next IDR of the clip when RTCP PLI/FIR asks for one. A call may have a slides line
  too (`audio:video:role:slides_port`: a room system with a content line), counted apart.
- `presenter`: a room system that presents (`presenter_main`): SIP, BFCP and its slides.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import functools
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


class LiveCamera:
    """testsrc2 frames (libavfilter, in this process) that aiortc's sender encodes: each sender
    pays a real VP8 encode (about 10 ms a 720p frame). `lower`: a LowerLayer that gets each frame
    too, at half the size (simulcast)."""

    def __init__(self, width: int, height: int, fps: int, lower: Any = None) -> None:
        self._frames = camera_frames(width, height, fps)
        self._lower = lower

    def next(self) -> Any:
        frame = next(self._frames)
        if self._lower is not None:
            self._lower.put(frame)
        return frame

    def keyframe(self) -> None:
        """(aiortc's sender encodes a keyframe itself when asked)"""


class ClipCamera:
    """A pre-encoded VP8 clip sent as it is (aiortc's sender only packetizes it), looped: what a
    browser's encoder would send, at none of its cost here, so that many senders fit beside the
    gateway on one machine. A keyframe request restarts the clip (its first frame is its only
    keyframe, as a browser sends none unasked)."""

    def __init__(self, clip: list[bytes]) -> None:
        self._clip = clip
        self._at = 0

    def next(self) -> Any:
        import av

        packet = av.Packet(self._clip[self._at])
        self._at = (self._at + 1) % len(self._clip)
        return packet

    def keyframe(self) -> None:
        self._at = 0


def vp8_clip(width: int, height: int, fps: int, bitrate: int, seconds: int = 10) -> list[bytes]:
    """testsrc2 encoded once by libvpx in realtime mode, as a browser encodes its camera; one
    keyframe, at the start."""
    import av

    from gateway.transcode.video import open_encoder

    encoder = open_encoder("VP8", width, height, bitrate, fps, gop_size=fps * seconds * 2)
    frames = camera_frames(width, height, fps)
    clip: list[bytes] = []
    for n in range(fps * seconds):
        frame = next(frames)
        frame.pts, frame.time_base = n * VIDEO_CLOCK // fps, fractions.Fraction(1, VIDEO_CLOCK)
        frame.pict_type = av.video.frame.PictureType.NONE  # (lavfi marks every frame I: a keyframe each)
        clip.extend(bytes(packet) for packet in encoder.encode(frame))
    return clip


def make_camera_track(source: Any, fps: int) -> Any:
    """A camera track paced in real time on the loop's clock (late frames are skipped, not
    bunched), handing out what `source` (LiveCamera, ClipCamera) makes."""
    from gateway.rtp.aiortc_glue import MediaStreamError, MediaStreamTrack

    class CameraTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self.source = source
            self._period = 1 / fps
            self._start: float | None = None
            self._n = 0
            self.frames = 0  # handed to aiortc's sender
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
            item = source.next()
            item.pts = self._n * VIDEO_CLOCK // fps
            item.time_base = fractions.Fraction(1, VIDEO_CLOCK)
            self._n += 1
            self.frames += 1
            return item

    return CameraTrack()


def make_lower_layer() -> Any:
    """The live camera's lower simulcast layer: the frames the camera track hands out, at half its
    width and height (as Chromium scales the lower of two layers)."""
    from gateway.rtp.aiortc_glue import MediaStreamError, MediaStreamTrack

    class LowerLayer(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=2)
            self.frames = 0

        def put(self, frame: Any) -> None:
            if self._queue.full():  # (its encoder fell behind: the oldest goes)
                self._queue.get_nowait()
            small = frame.reformat(width=frame.width // 2, height=frame.height // 2)
            small.pts, small.time_base = frame.pts, frame.time_base
            self._queue.put_nowait(small)

        async def recv(self) -> Any:
            if self.readyState != "live":
                raise MediaStreamError
            frame = await self._queue.get()
            self.frames += 1
            return frame

    return LowerLayer()


def on_keyframe_request(sender: Any, track: Any) -> None:
    """A PLI or FIR for this sender's SSRC makes its camera source send a keyframe."""
    original = sender._send_keyframe
    source = getattr(track, "source", None)  # (a LowerLayer has none: its own encoder makes the keyframe)

    def send_keyframe() -> None:
        if source is not None:
            source.keyframe()
        original()

    sender._send_keyframe = send_keyframe


def name_layer(sender: Any, rid: str) -> None:
    """Every RTP packet of this sender carries the RID header extension (RFC 8852) with `rid`:
    set before the sender starts (it configures its extension map when it does)."""
    from aiortc.rtp import HeaderExtensionsMap

    class Named(HeaderExtensionsMap):
        def set(self, values: Any) -> Any:
            values.rtp_stream_id = rid
            return super().set(values)

    sender._RTCRtpSender__rtp_header_extensions_map = Named()


async def send_lower_layer(transceiver: Any, track: Any) -> Any:
    """A second RTCRtpSender for the camera's lower layer, on the connected transport of the
    camera's transceiver: same MID and codec, its own SSRC (not in the SDP), RID `l`. Without RTX
    (a lost packet is resent as it was, RID and all)."""
    from aiortc import RTCRtpSender
    from aiortc.rtcrtpparameters import RTCRtcpParameters, RTCRtpSendParameters

    sender = RTCRtpSender(track, transceiver.sender.transport)
    name_layer(sender, "l")
    on_keyframe_request(sender, track)
    codecs = [c for c in transceiver._codecs if c.mimeType.lower() != "video/rtx"]
    await sender.send(
        RTCRtpSendParameters(
            codecs=codecs,
            headerExtensions=transceiver._headerExtensions,
            muxId=transceiver.mid,
            rtcp=RTCRtcpParameters(cname=f"low-{sender._ssrc}", ssrc=sender._ssrc, mux=True),
        )
    )
    return sender


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
        self,
        url: str,
        room: str,
        name: str,
        camera: bool,
        speaking: bool,
        slot_codec: str | None,
        size: tuple[int, int, int],
        simulcast: bool = False,
        clips: tuple[list[bytes], list[bytes]] | None = None,
    ) -> None:
        """`clips`: the camera as pre-encoded VP8 (full size, half size) instead of encoded live."""
        self.url, self.room, self.name = url, room, name
        self.camera = camera
        self.speaking = speaking
        self.slot_codec = slot_codec  # None: whatever the gateway offers first
        self.size = size
        self.simulcast = simulcast and camera
        self.clips = clips
        self.ws: Any = None
        self.pc: Any = None
        self.track: Any = None
        self.lower: Any = None  # (simulcast) the lower layer's track and sender
        self.lower_sender: Any = None
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
        # What each slot carries now (the offer's `video_slots`, then the `video_slots` messages):
        # a participant id, `"<participant id>#content"` (someone's content), or None.
        self.slot_values: dict[str, str | None] = {}
        self.screen_mid: str | None = None
        self.content_frames = 0  # frames that arrived on a slot whose value was someone's content
        self.content_keyframes = 0
        self.content_bytes = 0
        self.content_codecs: dict[str, int] = {}
        self.content_sources: dict[str, int] = {}  # frames by slot value (`<presenter>#content`)
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
                elif kind == "video_slots":
                    self.slot_values = dict(msg.get("video_slots") or {})
                elif kind == "offer":
                    self.slot_values = dict(msg.get("video_slots") or {})
                    self.screen_mid = msg.get("screen_mid") or None
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
            offer_rid_extension,
            tap_audio,
        )
        from gateway.webrtc.probe import EncodedToneTrack

        if self.simulcast:
            offer_rid_extension()  # (answered only when aiortc knows the RID extension too)
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
                    width, height, fps = self.size
                    if self.clips is not None:
                        self.track = make_camera_track(ClipCamera(self.clips[0]), fps)
                        if self.simulcast:
                            self.lower = make_camera_track(ClipCamera(self.clips[1]), fps)
                    else:
                        if self.simulcast:
                            self.lower = make_lower_layer()
                        self.track = make_camera_track(LiveCamera(width, height, fps, self.lower), fps)
                    if self.simulcast:
                        name_layer(transceiver.sender, "h")
                    on_keyframe_request(transceiver.sender, self.track)
                    transceiver.sender.replaceTrack(self.track)
                    keep_codec(transceiver, "VP8")
                    transceiver.direction = "sendonly"
                else:
                    transceiver.direction = "inactive"
            elif transceiver.mid == self.screen_mid:
                # the upload of a shared screen (offered recvonly): the page answers it sendonly and
                # fills it only while it shares; these peers never share: inactive
                transceiver.direction = "inactive"
            else:  # a video slot: another participant's video, forwarded (counted, never decoded)
                VideoTap(transceiver.receiver, functools.partial(self._count_frame, transceiver.mid))
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

    async def start_lower_layer(self) -> None:
        """(simulcast, once connected: aiortc's sender stops at once on a transport not yet up)"""
        if self.lower is None or self.lower_sender is not None or self.pc is None:
            return
        camera = next((t for t in self.pc.getTransceivers() if t.sender.track is self.track), None)
        if camera is not None and self.pc.connectionState == "connected":
            self.lower_sender = await send_lower_layer(camera, self.lower)

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

    def _count_frame(self, mid: str | None, codec: Any, data: bytes, _timestamp: int) -> None:
        self.slot_frames += 1
        self.slot_bytes += len(data)
        name = str(codec.name).upper()
        self.slot_codecs[name] = self.slot_codecs.get(name, 0) + 1
        key = is_keyframe(name, data)
        if key:
            self.slot_keyframes += 1
        value = self.slot_values.get(mid or "")
        if value is not None and value.endswith("#content"):
            self.content_frames += 1
            self.content_bytes += len(data)
            self.content_codecs[name] = self.content_codecs.get(name, 0) + 1
            self.content_sources[value] = self.content_sources.get(value, 0) + 1
            if key:
                self.content_keyframes += 1

    def counters(self) -> dict[str, Any]:
        return {
            "room": self.room,
            "camera": self.camera,
            "camera_frames": self.track.frames if self.track is not None else 0,
            "camera_skipped": self.track.skipped if self.track is not None else 0,
            "lower_layer_frames": self.lower.frames if self.lower is not None else 0,
            "camera_codec": self.camera_codec,
            "audio_packets": self.audio_packets,
            "slot_frames": self.slot_frames,
            "slot_keyframes": self.slot_keyframes,
            "slot_bytes": self.slot_bytes,
            "slot_codecs": self.slot_codecs,
            "slot_packets": self.slot_packets,
            "slot_payload_types": self.slot_payload_types,
            "slot_codec": self.slot_codec,
            "content_frames": self.content_frames,
            "content_keyframes": self.content_keyframes,
            "content_bytes": self.content_bytes,
            "content_codecs": self.content_codecs,
            "content_sources": self.content_sources,
            "connection": self.pc.connectionState if self.pc is not None else "new",
            "ended": self.ended,
            "errors": self.errors[:5],
        }

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.track is not None:
            self.track.stop()
        if self.lower_sender is not None:
            await self.lower_sender.stop()
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
    clips = None
    if args.camera == "clip" and args.senders:
        clips = (
            vp8_clip(args.width, args.height, args.fps, args.clip_kbps * 1000),
            vp8_clip(args.width // 2, args.height // 2, args.fps, args.clip_kbps * 1000 // 3) if args.simulcast else [],
        )
    peers: list[BrowserPeer] = []
    for room in args.rooms:
        for i in range(args.senders):
            peers.append(BrowserPeer(args.url, room, f"{room}-cam{i}", True, i == 0, None, size, args.simulcast, clips))
        for i in range(args.receivers):
            speaking = args.senders == 0 and i == 0
            peers.append(BrowserPeer(args.url, room, f"{room}-view{i}", False, speaking, args.slot_codec, size))
    await connect_peers(peers)
    print(json.dumps({"event": "ready", "peers": [p.counters() for p in peers]}), flush=True)
    queue: asyncio.Queue[str] = asyncio.Queue()
    threading.Thread(target=_stdin_lines, args=(asyncio.get_running_loop(), queue), daemon=True).start()
    added = 0
    while True:
        command = await queue.get()
        if command.startswith("add "):
            # `add <room> <count> <slot codec: VP8, H264 or any>`: more receivers (no camera) join;
            # answered `{"event": "added", "peers": [...]}` (the new ones) once they are connected
            _, room, count, codec = command.split()
            new = [
                BrowserPeer(args.url, room, f"{room}-{codec.lower()}{added + i}", False, False, None if codec == "any" else codec, size)
                for i in range(int(count))
            ]
            added += len(new)
            peers.extend(new)
            await connect_peers(new)
            print(json.dumps({"event": "added", "peers": [p.counters() for p in new]}), flush=True)
        if command in ("snap", "stop"):
            print(json.dumps({"event": "snap", "at": time.monotonic(), "peers": [p.counters() for p in peers]}), flush=True)
        if command == "stop":
            break
    await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)


async def connect_peers(peers: list[BrowserPeer]) -> None:
    """Joins them one after the other, then waits until each answered and connected (or gave up)."""
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
    for peer in peers:
        await peer.start_lower_layer()


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


class VideoIn:
    """What arrives on one video line of a call: packets, bytes, loss (by sequence number), whole
    frames (marker bit), distinct timestamps, IDRs (H.264, what the calls offer), the longest gap
    between frames since the last snap, and the payload types."""

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0
        self.frames = 0  # packets with the marker bit: frames completed
        self.timestamps = 0  # distinct RTP timestamps seen
        self.keyframes = 0
        self.first_seq: int | None = None
        self.max_seq = 0
        self.last_ts: int | None = None
        self.last_key_ts: int | None = None
        self.last_frame_at: float | None = None
        self.max_gap_s = 0.0
        self.payload_types: dict[int, int] = {}
        self.remote: tuple[str, int] | None = None

    def take(self, data: bytes, source: tuple[str, int], now: float) -> tuple[bytes, bool, int] | None:
        """Counts an RTP packet; its payload, marker and timestamp (None when it is not RTP)."""
        if len(data) < 12 or data[0] >> 6 != 2 or 72 <= data[1] & 0x7F <= 76:
            return None
        if self.remote is None:
            self.remote = source
        first = data[0]
        header = 12 + 4 * (first & 0x0F)
        if first & 0x10 and len(data) >= header + 4:  # header extension
            header += 4 + 4 * struct.unpack_from("!H", data, header + 2)[0]
        end = len(data) - (data[-1] if first & 0x20 and data else 0)
        payload = data[header:end]
        pt = data[1] & 0x7F
        marker = bool(data[1] & 0x80)
        seq, ts = struct.unpack_from("!HI", data, 2)
        self.packets += 1
        self.bytes += len(payload)
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
        if marker:
            self.frames += 1
            if self.last_frame_at is not None:
                self.max_gap_s = max(self.max_gap_s, now - self.last_frame_at)
            self.last_frame_at = now
        return payload, marker, ts

    def expected(self) -> int:
        return 0 if self.first_seq is None else self.max_seq - self.first_seq + 1

    def snap(self) -> dict[str, Any]:
        out = {
            "video_packets": self.packets,
            "video_bytes": self.bytes,
            "frames": self.frames,
            "timestamps": self.timestamps,
            "keyframes": self.keyframes,
            "expected": self.expected(),
            "max_gap_ms": round(self.max_gap_s * 1000, 1),
            "payload_types": self.payload_types,
        }
        self.max_gap_s = 0.0
        return out


class Call:
    """The media of one SIP call: audio (port, port + 1), video (vport, vport + 1) and, for a room
    system with a content line, its slides (sport, sport + 1)."""

    def __init__(self, index: int, audio_port: int, video_port: int, role: str, slides_port: int | None = None) -> None:
        self.index = index
        self.audio_port, self.video_port, self.role = audio_port, video_port, role
        self.slides_port = slides_port
        self.sockets: list[socket.socket] = []
        ports = [audio_port, audio_port + 1, video_port, video_port + 1]
        if slides_port is not None:
            ports += [slides_port, slides_port + 1]
        for port in ports:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", port))
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            self.sockets.append(s)
        self.audio_rtp, self.audio_rtcp, self.video_rtp, self.video_rtcp = self.sockets[:4]
        self.slides_rtp: socket.socket | None = self.sockets[4] if slides_port is not None else None
        self.slides_rtcp: socket.socket | None = self.sockets[5] if slides_port is not None else None
        self.audio_remote: tuple[str, int] | None = None
        self.video_remote: tuple[str, int] | None = None
        self.audio_ssrc = random.getrandbits(32)
        self.video_ssrc = random.getrandbits(32)
        self.audio_seq = random.getrandbits(16)
        self.audio_ts = random.getrandbits(32)
        self.audio_sent = 0
        self.audio_in = 0
        # video in (sinks): the main line, and the slides line of a room system with content
        self.video_in = VideoIn()
        self.slides_in = VideoIn() if slides_port is not None else None
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
        taken = self.video_in.take(data, source, now)
        if taken is None:
            return
        if self.video_remote is None and self.role == "sink":
            self.video_remote = source
        if capture is not None and capture.call is self and capture.stream == "video":
            capture.add(*taken)

    def take_slides(self, data: bytes, source: tuple[str, int], now: float, capture: Any) -> None:
        assert self.slides_in is not None
        taken = self.slides_in.take(data, source, now)
        if taken is not None and capture is not None and capture.call is self and capture.stream == "slides":
            capture.add(*taken)

    def snap(self) -> dict[str, Any]:
        out = {
            "role": self.role,
            "audio_sent": self.audio_sent,
            "audio_in": self.audio_in,
            **self.video_in.snap(),
            "rtcp_in": self.rtcp_in,
            "keyframe_requests": self.keyframe_requests,
            "video_frames_sent": self.video_frames_sent,
            "video_packets_sent": self.video_packets_sent,
            "video_remote": self.video_remote is not None,
        }
        if self.slides_in is not None:
            out["slides"] = self.slides_in.snap()
        return out

    def audio_packet(self) -> bytes:
        header = struct.pack("!BBHII", 0x80, 8, self.audio_seq & 0xFFFF, self.audio_ts & 0xFFFFFFFF, self.audio_ssrc)
        self.audio_seq += 1
        self.audio_ts += 160
        return header + b"\xd5" * 160


class Capture:
    """The first frames one sink receives, depacketized into a file the parent decodes later."""

    def __init__(self, path: Path, codec: str, frames: int, stream: str = "video") -> None:
        self.path, self.codec, self.limit = path, codec, frames
        self.call: Call | None = None
        self.stream = stream  # the call's main line (video) or its slides
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
        audio, video, role, *slides = spec.split(":")
        calls.append(Call(i, int(audio), int(video), role, int(slides[0]) if slides else None))
    by_audio_port = {c.audio_port: c for c in calls}
    sinks = [c for c in calls if c.role == "sink" and (args.capture_stream == "video" or c.slides_port is not None)]
    capture: Any = None
    if args.capture is not None and sinks:
        capture = Capture(args.capture, args.capture_codec, args.capture_frames, args.capture_stream)
        capture.call = sinks[0]
    else:
        capture = argparse.Namespace(codec=args.capture_codec, call=None, stream=None)
    clip = Clip(args.clip) if args.clip is not None and any(c.role == "source" for c in calls) else None
    selector = selectors.DefaultSelector()
    for call in calls:
        selector.register(call.audio_rtp, selectors.EVENT_READ, (call, "audio"))
        selector.register(call.audio_rtcp, selectors.EVENT_READ, (call, "rtcp"))
        selector.register(call.video_rtp, selectors.EVENT_READ, (call, "video"))
        selector.register(call.video_rtcp, selectors.EVENT_READ, (call, "vrtcp"))
        if call.slides_rtp is not None and call.slides_rtcp is not None:
            selector.register(call.slides_rtp, selectors.EVENT_READ, (call, "slides"))
            selector.register(call.slides_rtcp, selectors.EVENT_READ, (call, "srtcp"))
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
                elif what == "slides":
                    call.take_slides(data, source, now, capture)
                elif what == "srtcp":
                    call.rtcp_in += 1
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


# -- a presenting room system --------------------------------------------------------------------


def sdp_lines(sdp: str) -> list[dict[str, Any]]:
    """The m-lines of an SDP body: kind, port, proto and their a= attributes (name -> values)."""
    lines: list[dict[str, Any]] = []
    for raw in sdp.replace("\r\n", "\n").split("\n"):
        if raw.startswith("m="):
            kind, port, proto, *_formats = raw[2:].split()
            lines.append({"kind": kind, "port": int(port), "proto": proto, "a": {}})
        elif lines and raw.startswith("a="):
            name, _, value = raw[2:].partition(":")
            lines[-1]["a"].setdefault(name, []).append(value)
    return lines


class Drain:
    """Reads what arrives on UDP sockets in a thread: RTP video frames (marker bits) and packets on
    the first, anything on the others (so the gateway's packets never meet a closed port)."""

    def __init__(self, *sockets: socket.socket) -> None:
        self.sockets = sockets
        self.packets = self.frames = self.other = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        for each in self.sockets:
            each.setblocking(False)
            selector.register(each, selectors.EVENT_READ)
        while not self._stop.is_set():
            for key, _ in selector.select(0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                while True:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        break
                    if sock is self.sockets[0] and len(data) >= 12 and data[0] >> 6 == 2 and not 72 <= data[1] & 0x7F <= 76:
                        self.packets += 1
                        self.frames += 1 if data[1] & 0x80 else 0
                    else:
                        self.other += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def presenter_main(args: argparse.Namespace) -> None:
    """A room system that presents: calls the room (audio, main video recvonly, slides, BFCP over
    TCP), takes the floor (Hello, FloorRequest, Granted), then sends the clip on its slides line at
    --fps, answering PLI and FIR with the clip's next IDR (tests/support: the same SIP caller, BFCP
    floor participant and H.264 RTP sender the end-to-end tests use); A-law silence on its audio so
    the gateway's media timeout never ends the call; requests from the gateway answered 200."""
    sys.path.append(str(Path(__file__).resolve().parent.parent))  # tests.support (after --tree's gateway)
    from tests.support.bfcp_peer import GRANTED, BfcpClient
    from tests.support.rtp_video import H264RtpSender
    from tests.support.sip_client import RawCaller, Request, sdp_offer

    pt = args.video_pt
    # main video as the other room systems of the bench offer it (their composed picture: one output);
    # the slides at the level their size needs
    main = f"a=rtpmap:{pt} H264/90000\r\na=fmtp:{pt} profile-level-id=42e01f;packetization-mode=1\r\n"
    h264 = f"a=rtpmap:{pt} H264/90000\r\na=fmtp:{pt} profile-level-id={args.profile_level_id};packetization-mode=1\r\n"
    feedback = f"a=rtcp-fb:{pt} nack\r\na=rtcp-fb:{pt} nack pli\r\na=rtcp-fb:{pt} ccm fir\r\n"
    sockets = {}
    for name, port in (("audio", args.audio_port), ("audio_rtcp", args.audio_port + 1), ("video", args.video_port),
                       ("video_rtcp", args.video_port + 1), ("slides", args.slides_port)):  # fmt: skip
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", port))
        sockets[name] = sock
    caller = RawCaller(args.sip_port, display=args.name)
    extra = (
        f"m=video {args.video_port} RTP/AVPF {pt}\r\nb=AS:2048\r\n{main}{feedback}a=content:main\r\na=label:11\r\na=recvonly\r\n"
        f"m=video {args.slides_port} RTP/AVPF {pt}\r\nb=AS:2048\r\n{h264}{feedback}a=content:slides\r\na=label:12\r\na=sendrecv\r\n"
        "m=application 5070 TCP/BFCP *\r\na=floorctrl:c-s\r\na=setup:actpass\r\na=connection:new\r\na=floorid:1 mstrm:12\r\n"
    )
    offer = sdp_offer("127.0.0.1", args.audio_port, "8 101", extra)
    state: dict[str, Any] = {"requests": {}, "errors": []}
    dialog, response = caller.call(args.room, offer)
    if response.status != 200:
        print(json.dumps({"event": "failed", "error": f"INVITE answered {response.status} {response.reason}"}), flush=True)
        return
    lines = sdp_lines(response.body.decode(errors="replace"))
    kinds = [m["kind"] for m in lines]
    if kinds != ["audio", "video", "video", "application"] or not lines[2]["port"] or not lines[3]["port"]:
        print(json.dumps({"event": "failed", "error": f"the answer's lines: {[(m['kind'], m['port']) for m in lines]}"}), flush=True)
        caller.bye(dialog)
        return
    audio_to = ("127.0.0.1", lines[0]["port"])
    slides_to = ("127.0.0.1", lines[2]["port"])
    bfcp_line = lines[3]
    conference, user = int(bfcp_line["a"]["confid"][0]), int(bfcp_line["a"]["userid"][0])
    floor = int(bfcp_line["a"]["floorid"][0].split()[0])

    stop = threading.Event()
    audio_sent = [0]

    def send_audio() -> None:  # A-law silence every 20 ms
        seq, ts, ssrc = random.getrandbits(16), random.getrandbits(32), random.getrandbits(32)
        due = time.monotonic()
        while not stop.wait(max(0.0, due - time.monotonic())):
            header = struct.pack("!BBHII", 0x80, 8, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
            try:
                sockets["audio"].sendto(header + b"\xd5" * 160, audio_to)
                audio_sent[0] += 1
            except OSError:
                pass
            seq, ts, due = seq + 1, ts + 160, max(due + 0.020, time.monotonic() - 0.1)

    def answer_sip() -> None:  # the gateway's INFO, OPTIONS, BYE ...: 200 (RawCaller.receive does it)
        while not stop.is_set():
            try:
                message = caller.receive(0.3)
            except OSError:
                return
            if isinstance(message, Request):
                state["requests"][message.method] = state["requests"].get(message.method, 0) + 1

    threads = [threading.Thread(target=send_audio, daemon=True), threading.Thread(target=answer_sip, daemon=True)]
    for thread in threads:
        thread.start()
    drain = Drain(sockets["video"], sockets["audio"], sockets["audio_rtcp"], sockets["video_rtcp"])
    floor_client = BfcpClient.tcp("127.0.0.1", bfcp_line["port"], conference, user)
    sender = None
    try:
        floor_client.hello()
        request = floor_client.floor_request(floor)
        floor_client.wait_status(request, GRANTED, 15)
        sender = H264RtpSender(slides_to, pt, fps=args.fps, clip=args.clip, source=sockets["slides"], rtcp=True).start()
        ready = {"event": "ready", "conference": conference, "user": user, "floor": floor, "frames_in_clip": len(sender.access_units)}
    except (AssertionError, OSError) as exc:
        ready = {"event": "failed", "error": str(exc)[:500]}
    print(json.dumps(ready), flush=True)

    def counters() -> dict[str, Any]:
        return {
            "frames_sent": sender.frames_sent if sender else 0,
            "packets_sent": sender.packets_sent if sender else 0,
            "octets_sent": sender.octets_sent if sender else 0,
            "key_frames_sent": sender.key_frames_sent if sender else 0,
            "pli_received": sender.pli_received if sender else 0,
            "fir_received": sender.fir_received if sender else 0,
            "audio_sent": audio_sent[0],
            "main_video_packets": drain.packets,
            "main_video_frames": drain.frames,
            "sip_requests": state["requests"],
            "bfcp_problems": floor_client.problems[:5],
            "bfcp_statuses": floor_client.statuses(request) if ready["event"] == "ready" else [],
        }

    for line in sys.stdin:
        command = line.strip()
        if command in ("snap", "stop"):
            print(json.dumps({"event": "snap", "at": time.monotonic(), **counters()}), flush=True)
        if command == "stop":
            break
    else:
        print(json.dumps({"event": "snap", "at": time.monotonic(), **counters()}), flush=True)
    if sender is not None:
        sender.stop()
    floor_client.close()
    stop.set()
    for thread in threads:
        thread.join(2)
    drain.stop()
    try:
        caller.bye(dialog)
    except AssertionError:
        pass
    caller.close()


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
    b.add_argument("--simulcast", action="store_true", help="senders send their camera in two layers, as Chromium does")
    b.add_argument("--camera", choices=["clip", "live"], default="live",
                   help="clip: a VP8 clip encoded once at start, sent as it is; live: aiortc encodes every frame")
    b.add_argument("--clip-kbps", type=int, default=1500, help="the clip's bit rate (its lower layer: a third)")
    r = sub.add_parser("rtp")
    r.add_argument("--calls", nargs="+", required=True,
                   help="audio_port:video_port:sink|source[:slides_port] per call (slides: a content line, counted apart)")
    r.add_argument("--fps", type=int, default=30, help="frame rate of a source")
    r.add_argument("--clip", type=Path, help="H.264 Annex B clip a source sends")
    r.add_argument("--video-pt", type=int, default=97)
    r.add_argument("--answers", type=Path, help="where sipp writes the gateway's ports per call")
    r.add_argument("--capture", type=Path, help="the first sink's first frames go here")
    r.add_argument("--capture-codec", default="H264", choices=["H264", "VP8"])
    r.add_argument("--capture-frames", type=int, default=90)
    r.add_argument("--capture-stream", default="video", choices=["video", "slides"],
                   help="capture the first sink's main line, or the first call with slides' slides line")
    pr = sub.add_parser("presenter", help="a room system that takes the floor and sends slides")
    pr.add_argument("--sip-port", type=int, required=True, help="the gateway's SIP port (127.0.0.1, UDP)")
    pr.add_argument("--room", required=True)
    pr.add_argument("--name", default="Presenter")
    pr.add_argument("--clip", type=Path, required=True, help="H.264 Annex B clip sent as the slides")
    pr.add_argument("--fps", type=float, default=15)
    pr.add_argument("--video-pt", type=int, default=97)
    pr.add_argument("--profile-level-id", default="42e01f", help="of the slides line (the main line says 42e01f)")
    pr.add_argument("--audio-port", type=int, required=True, help="audio (RTP, and RTCP on the next port)")
    pr.add_argument("--video-port", type=int, required=True, help="main video, receiving (RTCP on the next port)")
    pr.add_argument("--slides-port", type=int, required=True, help="the slides line (its sender takes the next port for RTCP)")
    args = parser.parse_args()
    if args.tree is not None:
        sys.path.insert(0, str(args.tree.resolve()))
    if args.mode == "browsers":
        asyncio.run(browsers_main(args))
    elif args.mode == "presenter":
        presenter_main(args)
    else:
        rtp_main(args)


if __name__ == "__main__":
    main()
