"""An audio leg over our own RTP: the media half of a SIP (and later H.323) participant.

The thin asyncio adapter around RtpSession: a UDP socket pair (RTP on an even port, RTCP on the
next), inbound audio pushed to the Conference once attached, the mixer's frames sent out, RTCP
reports every few seconds, digits handed to the signalling layer. It implements the Leg interface,
so the room cannot tell it from a browser.

Before it joins a conference (voice menu, waiting room) and whenever a prompt is playing, the leg
sends what `play` gave it instead of the mix: prompts, hold music or silence, on its own 20 ms clock
while no mixer drives it. Sequence numbers, timestamps and SSRC run on across all of it.

Which addresses media comes from and goes to is the session's latching (`sip.rtp_latching`); the leg
sends nothing at all (no prompt, no idle silence, no RTCP) before `confirm()` or the first valid RTP
from the accepted address, and tells the two sockets apart, so RTCP is held to the RTCP rules.
"""

from __future__ import annotations

import asyncio
import errno
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import structlog

from gateway.rooms.conference import Conference
from gateway.rooms.events import RoomEvent
from gateway.rooms.participant import LegKind
from gateway.rtp.crypto import Crypto
from gateway.rtp.session import Address, AudioIn, DigitIn, ForeignSource, Latching, RtpSession, SourceLearned
from gateway.transcode.audio import AudioCodec, AudioFormat
from gateway.transcode.mixer import MixedFrame
from gateway.transcode.video import EncodedVideoFrame

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


class RtpAudioLeg:
    video_codecs: tuple[str, ...] = ()

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
        self.session: RtpSession | None = None
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
        self._tasks: list[asyncio.Task[None]] = []
        self._playing: list[bytes] = []
        self._play_at = 0
        self._play_loop = False
        self._play_done: Callable[[], None] | None = None
        self._idle: bytes | None = None  # what to send when nothing plays and no mixer drives us
        self._clock_wakeup = asyncio.Event()
        self.last_packet_at = asyncio.get_running_loop().time()  # RTP or RTCP: the remote is alive
        self.remote_sends = True  # what the SDP agreed: False when the remote will not send (hold)
        self._log = log.bind(**(log_context or {}))

    # -- sockets and negotiation ----------------------------------------------------------------

    async def open(self, host: str, port_min: int = 20000, port_max: int = 39999) -> int:
        """Binds the socket pair and returns the RTP port."""
        loop = asyncio.get_running_loop()
        rtp_sock, rtcp_sock = bind_pair(host, port_min, port_max)
        _, self._rtp = await loop.create_datagram_endpoint(lambda: _Receiver(self._on_rtp), sock=rtp_sock)
        _, self._rtcp = await loop.create_datagram_endpoint(lambda: _Receiver(self._on_rtcp), sock=rtcp_sock)
        self._tasks = [loop.create_task(self._report_loop()), loop.create_task(self._own_clock())]
        return self.local_port

    def confirm(self) -> None:
        """The signalling confirmed the call (ACK of our 200, or the 200 to our INVITE): from now on
        the leg may send to the address the SDP named (or the source learnt meanwhile)."""
        self._confirmed = True
        if self.session is not None:
            self.session.confirm(asyncio.get_running_loop().time())
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
            if session is None or not self.sending or not session.may_send:
                continue
            destination = session.rtcp_destination()
            if destination is None:
                continue
            remote, muxed = destination
            target = self._rtp if muxed else self._rtcp
            if target is not None and target.transport is not None:
                target.transport.sendto(session.rtcp_report(loop.time(), time.time()), remote)

    # -- outbound: prompts and the leg's own clock ----------------------------------------------

    def play(
        self, frames: list[bytes], *, loop: bool = False, done: Callable[[], None] | None = None
    ) -> None:
        """Sends these payloads (already in audio_out_format) instead of the mix, from now on."""
        previous = self._play_done
        self._playing, self._play_at, self._play_loop, self._play_done = frames, 0, loop, done
        self._clock_wakeup.set()
        if previous is not None:
            previous()

    def stop_playing(self) -> None:
        self.play([])

    def set_idle(self, payload: bytes | None) -> None:
        """What the leg sends on its own clock when nothing plays (encoded silence), None for nothing."""
        self._idle = payload
        self._clock_wakeup.set()

    @property
    def playing(self) -> bool:
        return self._play_at < len(self._playing)

    def _next_prompt_frame(self) -> bytes | None:
        if self._play_at >= len(self._playing):
            return None
        payload = self._playing[self._play_at]
        self._play_at += 1
        if self._play_at >= len(self._playing):
            if self._play_loop:
                self._play_at = 0
            else:
                done, self._play_done = self._play_done, None
                if done is not None:
                    asyncio.get_running_loop().call_soon(done)
        return payload

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
        next_at = loop.time()
        while True:
            if (
                self.conference is not None
                or (not self.playing and self._idle is None)
                or self.session is None
                or not self.session.may_send  # prompts wait: they start when they can be heard
            ):
                self._clock_wakeup.clear()
                await self._clock_wakeup.wait()
                next_at = loop.time()
                continue
            prompt = self._next_prompt_frame()
            if prompt is not None:
                self._send(prompt, True)
            elif self._idle is not None:
                self._send(self._idle, False)
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
        prompt = self._next_prompt_frame()
        if prompt is not None:
            self._send(prompt, True)
        else:
            self._send(frame.payload, frame.speech)

    def send_video(self, source_id: str, frame: EncodedVideoFrame) -> None:
        """Audio only (video for room systems comes with its own m-line later)."""

    def request_keyframe(self) -> None:
        """No video."""

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
        return {
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
            "rtp_jitter_ms": round(self.session.jitter_ms, 2),
            "codec": self.audio_in_codec.value,
        }

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        done, self._play_done = self._play_done, None
        self._playing = []
        if done is not None:
            done()
        for receiver in (self._rtp, self._rtcp):
            if receiver is not None and receiver.transport is not None:
                receiver.transport.close()
