"""A leg over our own RTP: the media half of a SIP (and later H.323) participant.

The thin asyncio adapter around one RtpSession per media line: the audio line (`open`, `apply`)
and any number of video lines, main and content (`open_video`, `apply_video`), each on its own
UDP socket pair (RTP on an even port, RTCP on the next). Inbound audio is pushed to the Conference
once attached, the mixer's frames sent out, RTCP reports every few seconds, digits handed to the
signalling layer. Video lines push whole frames to the room as (participant, stream) sources, send
what the router forwards, and carry keyframe requests both ways (RTCP PLI/FIR). It implements the
Leg interface, so the room cannot tell it from a browser.

Before it joins a conference (voice menu, waiting room) and whenever a prompt is playing, the leg
sends what its PromptPlayer (`play`) gives instead of the mix: prompts, hold music or silence, on
its own 20 ms clock while no mixer drives it. Sequence numbers, timestamps and SSRC run on across
all of it.

Which addresses media comes from and goes to is the session's latching (`sip.rtp_latching`); the leg
sends nothing at all (no prompt, no idle silence, no RTCP) before `confirm()` or the first valid RTP
from the accepted address, and tells the two sockets apart, so RTCP is held to the RTCP rules.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import structlog

from gateway.rooms.conference import Conference
from gateway.rooms.events import RoomEvent
from gateway.rooms.leg import VideoStream
from gateway.rooms.participant import LegKind
from gateway.rtp.crypto import Crypto
from gateway.rtp.session import (
    Address,
    AudioIn,
    BitrateWanted,
    DigitIn,
    ForeignSource,
    KeyframeWanted,
    Latching,
    PictureLost,
    RtpSession,
    SourceLearned,
    VideoIn,
)
from gateway.transcode.audio import AudioCodec, AudioFormat
from gateway.transcode.codecs import StreamCodec, StreamKind
from gateway.transcode.mixer import MixedFrame
from gateway.transcode.prompt_player import PromptPlayer
from gateway.transcode.video import EncodedVideoFrame, VideoSourceId

log = structlog.get_logger(__name__)

RTCP_INTERVAL_S = 5.0
FRAME_S = 0.020


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Address], None]) -> None:
        self._on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (the selector loop's datagram transport does not subclass DatagramTransport)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._on_datagram(data, (addr[0], addr[1]))


def _show(address: Address) -> str:
    return f"[{address[0]}]:{address[1]}" if ":" in address[0] else f"{address[0]}:{address[1]}"


def bind_pair(host: str, port_min: int, port_max: int) -> tuple[socket.socket, socket.socket]:
    """Two UDP sockets on an even port and the next one (RFC 3550 11), from a random start in the range."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    first = port_min + (port_min % 2)
    count = (port_max - first) // 2
    start = secrets.randbelow(max(count, 1))
    for i in range(count):
        port = first + 2 * ((start + i) % count)
        rtp = socket.socket(family, socket.SOCK_DGRAM)
        rtcp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            rtp.bind((host, port))
            rtcp.bind((host, port + 1))
        except OSError as exc:
            rtp.close()
            rtcp.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        rtp.setblocking(False)
        rtcp.setblocking(False)
        return rtp, rtcp
    raise OSError(errno.EADDRINUSE, f"no free RTP port pair in {port_min}-{port_max}")


async def _open_pair(
    host: str, port_min: int, port_max: int, on_rtp: Callable[[bytes, Address], None], on_rtcp: Callable[[bytes, Address], None]
) -> tuple[_Receiver, _Receiver]:
    loop = asyncio.get_running_loop()
    rtp_sock, rtcp_sock = bind_pair(host, port_min, port_max)
    _, rtp = await loop.create_datagram_endpoint(lambda: _Receiver(on_rtp), sock=rtp_sock)
    _, rtcp = await loop.create_datagram_endpoint(lambda: _Receiver(on_rtcp), sock=rtcp_sock)
    return rtp, rtcp


def _send_rtcp(session: RtpSession, rtp: _Receiver | None, rtcp: _Receiver | None, data: bytes | None) -> None:
    """RTCP to where the session says it goes (over the RTP socket when muxed); nothing without an address."""
    destination = session.rtcp_destination()
    if data is None or destination is None:
        return
    remote, muxed = destination
    target = rtp if muxed else rtcp
    if target is not None and target.transport is not None:
        target.transport.sendto(data, remote)


@dataclass(eq=False)
class _VideoLine:
    """One video m-line of the leg: its sockets, its session once agreed, and what the room sees of it."""

    stream: VideoStream
    rtp: _Receiver | None = None
    rtcp: _Receiver | None = None
    session: RtpSession | None = None
    sending: bool = True
    receiving: bool = True
    last_source: VideoSourceId | None = None  # whose frames went out last (a PLI asks that source)
    # How to ask the remote for a keyframe when no RTCP feedback was agreed (SIP INFO
    # picture_fast_update), and when we last did: at most one a second.
    ask_by_signalling: Callable[[], None] | None = None
    last_signalled_ask: float = -1e9

    @property
    def local_port(self) -> int:
        assert self.rtp is not None and self.rtp.transport is not None
        return int(self.rtp.transport.get_extra_info("sockname")[1])


class RtpLeg:
    def __init__(
        self,
        kind: LegKind,
        on_digit: Callable[[str], None] | None = None,
        on_event: Callable[[RoomEvent], None] | None = None,
        on_hang_up: Callable[[str], Awaitable[None]] | None = None,
        log_context: dict[str, Any] | None = None,
        latching: Latching = "learn",
        learn_s: float = 3.0,
    ) -> None:
        self.participant_id = ""
        self.latching: Latching = latching  # strict | learn (sip.rtp_latching)
        self.learn_s = learn_s
        self._confirmed = False
        self.kind = kind
        self.session: RtpSession | None = None  # the audio line's
        self.audio_in_codec = AudioCodec.PCMU
        self.audio_out_format = AudioFormat(AudioCodec.PCMU)
        self.conference: Conference | None = None
        self.sending = True  # what the SDP agreed: False on hold (recvonly, inactive)
        self.receiving = True
        self._on_digit = on_digit
        self._on_event = on_event
        self._on_hang_up = on_hang_up
        self._rtp: _Receiver | None = None
        self._rtcp: _Receiver | None = None
        self._video: dict[StreamKind, _VideoLine] = {}
        self._tasks: list[asyncio.Task[None]] = []
        loop = asyncio.get_running_loop()
        self._clock_wakeup = asyncio.Event()
        self.prompts = PromptPlayer(loop.call_soon, self._clock_wakeup.set)
        self.last_packet_at = loop.time()  # RTP or RTCP: the remote is alive
        self.remote_sends = True  # what the SDP agreed: False when the remote will not send (hold)
        self._log = log.bind(**(log_context or {}))

    # -- sockets and negotiation ----------------------------------------------------------------

    async def open(self, host: str, port_min: int = 20000, port_max: int = 39999) -> int:
        """Binds the audio line's socket pair and returns its RTP port."""
        loop = asyncio.get_running_loop()
        self._rtp, self._rtcp = await _open_pair(host, port_min, port_max, self._on_rtp, self._on_rtcp)
        self._tasks = [loop.create_task(self._report_loop()), loop.create_task(self._own_clock())]
        return self.local_port

    def confirm(self) -> None:
        """The signalling confirmed the call (ACK of our 200, or the 200 to our INVITE): from now on
        the leg may send to the address the SDP named (or the source learnt meanwhile)."""
        self._confirmed = True
        now = asyncio.get_running_loop().time()
        if self.session is not None:
            self.session.confirm(now)
        for line in self._video.values():
            if line.session is not None:
                line.session.confirm(now)
        self._clock_wakeup.set()

    @property
    def local_port(self) -> int:
        assert self._rtp is not None and self._rtp.transport is not None
        return int(self._rtp.transport.get_extra_info("sockname")[1])

    def apply(
        self,
        codec: AudioCodec,
        payload_type: int,
        clock_rate: int,
        remote: Address,
        remote_rtcp: Address,
        *,
        ptime_ms: int = 20,
        telephone_event_pt: int | None = None,
        direction: str = "sendrecv",
        local_crypto: Crypto | None = None,
        remote_crypto: Crypto | None = None,
        out_format: AudioFormat | None = None,
    ) -> None:
        """What an offer/answer agreed, first or again (hold, resume, codec change)."""
        samples = clock_rate * FRAME_S
        now = asyncio.get_running_loop().time()
        if self.session is None:
            self.session = RtpSession(
                payload_type,
                clock_rate,
                int(samples),
                remote,
                telephone_event_pt=telephone_event_pt,
                local_crypto=local_crypto,
                remote_crypto=remote_crypto,
                remote_rtcp=remote_rtcp,
                latching=self.latching,
                learn_s=self.learn_s,
                agreed_at=now,
            )
            if self._confirmed:
                self.session.confirm(now)
        else:
            self.session.renegotiate(
                payload_type,
                clock_rate,
                int(samples),
                remote,
                telephone_event_pt,
                local_crypto,
                remote_crypto,
                remote_rtcp=remote_rtcp,
                now=now,
            )
        if ptime_ms != 20:
            self._log.info("remote asked for another ptime; we send 20 ms", ptime_ms=ptime_ms)
        self.sending = direction in ("sendrecv", "sendonly") and remote[0] not in ("0.0.0.0", "::")
        self.receiving = direction in ("sendrecv", "recvonly")
        self.remote_sends = self.receiving
        self.last_packet_at = now  # a new agreement starts the count anew
        self._clock_wakeup.set()
        changed = codec is not self.audio_in_codec or (out_format or AudioFormat(codec)) != self.audio_out_format
        self.audio_in_codec = codec
        self.audio_out_format = out_format or AudioFormat(codec)
        if changed and self.conference is not None:
            self.conference.reattach_audio(self)

    # -- inbound --------------------------------------------------------------------------------

    def _on_rtp(self, data: bytes, source: Address) -> None:
        self._on_datagram(data, source, False)

    def _on_rtcp(self, data: bytes, source: Address) -> None:
        self._on_datagram(data, source, True)

    def _on_datagram(self, data: bytes, source: Address, rtcp_port: bool) -> None:
        session = self.session
        if session is None:
            return
        now = asyncio.get_running_loop().time()
        could_send = session.may_send
        for event in session.receive(data, source, now, rtcp_port):
            if isinstance(event, AudioIn):
                if self.conference is not None and self.receiving:
                    self.conference.push_audio(self.participant_id, event.sequence_number, event.payload, None, now)
            elif isinstance(event, DigitIn):
                # (not logged here: in the voice menu digits are PINs; the signalling logs what it may)
                if self._on_digit is not None:
                    self._on_digit(event.digit)
            elif isinstance(event, SourceLearned):
                self._log.info("media source learned", source=_show(event.address), rtcp=event.rtcp)
            elif isinstance(event, ForeignSource):
                # once per call: every packet after it is only counted (rtp_dropped_foreign)
                self._log.warning(
                    "media from a foreign address dropped",
                    source=_show(event.address),
                    rtcp=event.rtcp,
                    expected=_show(session.destination),
                )
        if session.last_heard_at == now:  # only the call's own packets prove the remote alive
            self.last_packet_at = now
        if not could_send and session.may_send:
            self._clock_wakeup.set()

    async def _report_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(RTCP_INTERVAL_S)
            session = self.session
            if session is not None and self.sending and session.may_send:
                _send_rtcp(session, self._rtp, self._rtcp, session.rtcp_report(loop.time(), time.time()))
            for line in self._video.values():
                video = line.session
                if video is not None and line.sending and video.may_send:
                    _send_rtcp(video, line.rtp, line.rtcp, video.rtcp_report(loop.time(), time.time()))

    # -- video lines ----------------------------------------------------------------------------

    async def open_video(self, kind: StreamKind, host: str, port_min: int = 20000, port_max: int = 39999) -> int:
        """Binds a socket pair for a video line (main or content) and returns its RTP port."""
        if not kind.is_video:
            raise ValueError(f"{kind} is not a video stream")
        line = self._video.get(kind)
        if line is None:
            # A room system takes one picture on its main line: the room's composition.
            line = self._video[kind] = _VideoLine(
                VideoStream(
                    kind,
                    request_keyframe=functools.partial(self._ask_keyframe, kind),
                    sends=False,
                    composed=kind is StreamKind.MAIN,
                )
            )
        if line.rtp is None:
            line.rtp, line.rtcp = await _open_pair(
                host,
                port_min,
                port_max,
                functools.partial(self._on_video_datagram, line, False),
                functools.partial(self._on_video_datagram, line, True),
            )
        return line.local_port

    def video_port(self, kind: StreamKind) -> int | None:
        line = self._video.get(kind)
        return line.local_port if line is not None and line.rtp is not None else None

    def apply_video(
        self,
        kind: StreamKind,
        codecs: tuple[StreamCodec, ...],
        remote: Address,
        remote_rtcp: Address,
        *,
        direction: str = "sendrecv",
        local_crypto: Crypto | None = None,
        remote_crypto: Crypto | None = None,
        ask_keyframe_by_signalling: Callable[[], None] | None = None,
    ) -> None:
        """What an offer/answer agreed for a video line opened with `open_video`, first or again.
        The first codec is the one we send; all of them are taken from the remote. Without RTCP
        feedback agreed, keyframes are asked for with `ask_keyframe_by_signalling` (SIP INFO)."""
        line = self._video.get(kind)
        if line is None or line.rtp is None:
            raise RuntimeError(f"the {kind} video line is not open")
        now = asyncio.get_running_loop().time()
        if line.session is None:
            line.session = RtpSession.for_video(
                kind,
                codecs,
                remote,
                local_crypto=local_crypto,
                remote_crypto=remote_crypto,
                remote_rtcp=remote_rtcp,
                latching=self.latching,
                learn_s=self.learn_s,
                agreed_at=now,
            )
            if self._confirmed:
                line.session.confirm(now)
        else:
            line.session.renegotiate(
                codecs[0].payload_type,
                codecs[0].clock_rate,
                0,
                remote,
                None,
                local_crypto,
                remote_crypto,
                remote_rtcp=remote_rtcp,
                now=now,
                codecs=codecs,
            )
        line.sending = direction in ("sendrecv", "sendonly") and remote[0] not in ("0.0.0.0", "::")
        line.receiving = direction in ("sendrecv", "recvonly")
        line.ask_by_signalling = ask_keyframe_by_signalling
        line.stream.codecs = codecs if line.sending else ()
        line.stream.sends = line.receiving
        if self.conference is not None:
            self.conference.attach_video_receiver(self)

    def remove_video(self, kind: StreamKind) -> None:
        """A video line was declined or removed (port 0): its sockets close, the room forgets it."""
        line = self._video.pop(kind, None)
        if line is None:
            return
        for receiver in (line.rtp, line.rtcp):
            if receiver is not None and receiver.transport is not None:
                receiver.transport.close()
        if self.conference is not None:
            self.conference.attach_video_receiver(self)

    @property
    def video_streams(self) -> Mapping[StreamKind, VideoStream]:
        return {kind: line.stream for kind, line in self._video.items() if line.session is not None}

    def _ask_keyframe(self, kind: StreamKind) -> None:
        """The room wants a keyframe of what the remote sends on this line: RTCP PLI (or FIR), or a
        SIP INFO where no RTCP feedback was agreed (rate-limited: one a second)."""
        line = self._video.get(kind)
        if line is None or line.session is None or not line.session.may_send:
            return
        if line.ask_by_signalling is not None:
            now = asyncio.get_running_loop().time()
            if now - line.last_signalled_ask >= 1.0:
                line.last_signalled_ask = now
                line.session.stats.keyframes_asked += 1
                line.ask_by_signalling()
            return
        _send_rtcp(line.session, line.rtp, line.rtcp, line.session.keyframe_request())

    def keyframe_wanted(self, kind: StreamKind = StreamKind.MAIN) -> None:
        """The remote asked for a full picture of what we send on this line (RTCP PLI/FIR, or a
        SIP INFO picture_fast_update): its source (the composition, or a forwarded one) is asked."""
        line = self._video.get(kind)
        if line is not None and self.conference is not None and line.last_source is not None:
            self.conference.request_keyframe(self.participant_id, line.last_source)

    def _on_video_datagram(self, line: _VideoLine, rtcp_port: bool, data: bytes, source: Address) -> None:
        session = line.session
        if session is None:
            return
        now = asyncio.get_running_loop().time()
        for event in session.receive(data, source, now, rtcp_port):
            if isinstance(event, VideoIn):
                if self.conference is not None and line.receiving:
                    self.conference.push_video(self.participant_id, event.frame, line.stream.kind)
            elif isinstance(event, KeyframeWanted):
                self.keyframe_wanted(line.stream.kind)
            elif isinstance(event, BitrateWanted):
                if self.conference is not None:
                    self.conference.limit_video_bitrate(self.participant_id, event.bps)
            elif isinstance(event, PictureLost):
                self._ask_keyframe(line.stream.kind)
            elif isinstance(event, SourceLearned):
                self._log.info("media source learned", source=_show(event.address), rtcp=event.rtcp, stream=line.stream.kind.value)
            elif isinstance(event, ForeignSource):
                self._log.warning(
                    "media from a foreign address dropped",
                    source=_show(event.address),
                    rtcp=event.rtcp,
                    expected=_show(session.destination),
                    stream=line.stream.kind.value,
                )
        if session.last_heard_at == now:
            self.last_packet_at = now

    # -- outbound: prompts and the leg's own clock ----------------------------------------------

    def play(
        self, frames: list[bytes], *, loop: bool = False, done: Callable[[], None] | None = None
    ) -> None:
        """Sends these payloads (already in audio_out_format) instead of the mix, from now on."""
        self.prompts.play(frames, loop=loop, done=done)

    def stop_playing(self) -> None:
        self.prompts.stop()

    def set_idle(self, payload: bytes | None) -> None:
        """What the leg sends on its own clock when nothing plays (encoded silence), None for nothing."""
        self.prompts.set_idle(payload)

    @property
    def playing(self) -> bool:
        return self.prompts.playing

    def _send(self, payload: bytes, speech: bool) -> None:
        if self.session is None or not self.sending or self._rtp is None or self._rtp.transport is None:
            return
        if not self.session.may_send:
            return
        data, remote = self.session.send_audio(payload, speech)
        self._rtp.transport.sendto(data, remote)

    async def _own_clock(self) -> None:
        """20 ms ticks while no mixer drives the leg and there is something to send."""
        loop = asyncio.get_running_loop()
        prompts = self.prompts
        next_at = loop.time()
        while True:
            if (
                self.conference is not None
                or (not prompts.playing and prompts.idle is None)
                or self.session is None
                or not self.session.may_send  # prompts wait: they start when they can be heard
            ):
                self._clock_wakeup.clear()
                await self._clock_wakeup.wait()
                next_at = loop.time()
                continue
            prompt = prompts.next_frame()
            if prompt is not None:
                self._send(prompt, True)
            elif prompts.idle is not None:
                self._send(prompts.idle, False)
            next_at += FRAME_S
            delay = next_at - loop.time()
            if delay < -0.2:  # the loop stalled: do not burst to catch up
                next_at = loop.time()
                delay = 0
            await asyncio.sleep(max(delay, 0))

    # -- conference ------------------------------------------------------------------------------

    def attach(self, conference: Conference, participant_id: str) -> None:
        self.participant_id = participant_id
        self.conference = conference
        self._log = self._log.bind(participant=participant_id)
        conference.attach(self)

    def detach(self) -> None:
        conference, self.conference = self.conference, None
        if conference is not None:
            conference.detach(self.participant_id)
        self._clock_wakeup.set()

    # -- the Leg interface ----------------------------------------------------------------------

    def send_audio(self, frame: MixedFrame) -> None:
        prompt = self.prompts.next_frame()
        if prompt is not None:
            self._send(prompt, True)
        else:
            self._send(frame.payload, frame.speech)

    def send_video(self, source: VideoSourceId, frame: EncodedVideoFrame) -> None:
        """A forwarded frame for the line of the source's stream kind (main to main, content to content)."""
        line = self._video.get(source.stream)
        if line is None or line.session is None or not line.sending or line.rtp is None or line.rtp.transport is None:
            return
        session = line.session
        if not session.may_send:
            return
        if source != line.last_source:
            line.last_source = source
            session.restart_timeline()
        try:
            packets, remote = session.send_video(frame)
        except ValueError:
            return  # not a codec of this line (the router sends only what the line agreed)
        for data in packets:
            line.rtp.transport.sendto(data, remote)

    def on_room_event(self, event: RoomEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

    async def hang_up(self, reason: str) -> None:
        self.conference = None  # the conference detached us already
        self._clock_wakeup.set()
        if self._on_hang_up is not None:
            await self._on_hang_up(reason)
        else:
            self.close()

    def media_counters(self) -> dict[str, Any]:
        if self.session is None:
            return {}
        stats = self.session.stats
        counters: dict[str, Any] = {
            "rtp_packets_in": stats.packets_in,
            "rtp_packets_out": stats.packets_out,
            "rtp_dropped": stats.dropped_unknown_pt
            + stats.dropped_malformed
            + stats.dropped_undecryptable
            + stats.dropped_foreign
            + stats.rtcp_dropped_foreign,
            "rtp_dropped_foreign": stats.dropped_foreign,
            "rtcp_dropped_foreign": stats.rtcp_dropped_foreign,
            "rtp_packets_lost": self.session.packets_lost,
            "rtcp_packets_in": stats.rtcp_in,
            "rtp_jitter_ms": round(self.session.jitter_ms, 2),
            # (the remote's reports on the audio we send: for the connection quality, rooms/quality.py)
            "remote_loss": self.session.remote_loss,
            "rtt_ms": None if self.session.rtt_ms is None else round(self.session.rtt_ms, 1),
            "codec": self.audio_in_codec.value,
        }
        for kind, line in self._video.items():
            if line.session is not None:
                video = line.session.stats
                counters[f"video_{kind.value}"] = {
                    "rtp_packets_in": video.packets_in,
                    "rtp_packets_out": video.packets_out,
                    "rtp_dropped": video.dropped_unknown_pt
                    + video.dropped_malformed
                    + video.dropped_undecryptable
                    + video.dropped_foreign
                    + video.rtcp_dropped_foreign,
                    "keyframes_asked": video.keyframes_asked,
                    "keyframes_wanted": video.keyframes_wanted,
                    "codec": line.session.codecs[0].name if line.session.codecs else None,
                }
        return counters

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        self.prompts.close()
        receivers = [self._rtp, self._rtcp]
        for line in self._video.values():
            receivers += [line.rtp, line.rtcp]
        for receiver in receivers:
            if receiver is not None and receiver.transport is not None:
                receiver.transport.close()


