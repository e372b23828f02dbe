"""An audio leg over our own RTP: the media half of a SIP (and later H.323) participant.

The thin asyncio adapter around RtpSession: a UDP socket for RTP (and one for RTCP unless
rtcp-mux), inbound audio pushed to the Conference, the mixer's frames sent out, RTCP reports every
few seconds, digits and room events handed to the signalling layer through callbacks. It
implements the Leg interface, so the room cannot tell it from a browser.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import structlog

from gateway.rooms.conference import Conference
from gateway.rooms.events import RoomEvent
from gateway.rooms.participant import LegKind
from gateway.rtp.session import Address, AudioIn, DigitIn, RtpSession
from gateway.transcode.audio import AudioCodec, AudioFormat
from gateway.transcode.mixer import MixedFrame
from gateway.transcode.video import EncodedVideoFrame

log = structlog.get_logger(__name__)

RTCP_INTERVAL_S = 5.0


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Address], None]) -> None:
        self._on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (the selector loop's datagram transport does not subclass DatagramTransport)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._on_datagram(data, (addr[0], addr[1]))


class RtpAudioLeg:
    video_codecs: tuple[str, ...] = ()

    def __init__(
        self,
        participant_id: str,
        kind: LegKind,
        session: RtpSession,
        codec: AudioCodec,
        conference: Conference,
        rtcp_remote: Address | None = None,
        on_digit: Callable[[str], None] | None = None,
        on_event: Callable[[RoomEvent], None] | None = None,
        on_hang_up: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.participant_id = participant_id
        self.kind = kind
        self.session = session
        self.audio_in_codec = codec
        self.audio_out_format = AudioFormat(codec)
        self._conference = conference
        self._rtcp_remote = rtcp_remote
        self._on_digit = on_digit
        self._on_event = on_event
        self._on_hang_up = on_hang_up
        self._rtp: _Receiver | None = None
        self._rtcp: _Receiver | None = None
        self._rtcp_task: asyncio.Task[None] | None = None
        self._log = log.bind(room=conference.room.id, participant=participant_id)

    async def open(self, host: str, port: int = 0, rtcp_mux: bool = False) -> int:
        """Binds the sockets (RTCP on port + 1 unless muxed) and returns the RTP port."""
        loop = asyncio.get_running_loop()
        _, self._rtp = await loop.create_datagram_endpoint(
            lambda: _Receiver(self._on_rtp), local_addr=(host, port)
        )
        assert self._rtp.transport is not None
        rtp_port = int(self._rtp.transport.get_extra_info("sockname")[1])
        if not rtcp_mux:
            _, self._rtcp = await loop.create_datagram_endpoint(
                lambda: _Receiver(self._on_rtp), local_addr=(host, rtp_port + 1)
            )
        self._rtcp_task = loop.create_task(self._report_loop())
        return rtp_port

    @property
    def local_port(self) -> int:
        assert self._rtp is not None and self._rtp.transport is not None
        return int(self._rtp.transport.get_extra_info("sockname")[1])

    def _on_rtp(self, data: bytes, source: Address) -> None:
        now = asyncio.get_running_loop().time()
        for event in self.session.receive(data, source, now):
            if isinstance(event, AudioIn):
                self._conference.push_audio(self.participant_id, event.sequence_number, event.payload, None, now)
            elif isinstance(event, DigitIn):
                self._log.info("DTMF received", digit=event.digit)
                if self._on_digit is not None:
                    self._on_digit(event.digit)

    async def _report_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(RTCP_INTERVAL_S)
            data, remote = self.session.rtcp_report(loop.time(), time.time())
            target = self._rtcp if self._rtcp is not None else self._rtp
            if target is not None and target.transport is not None:
                target.transport.sendto(data, self._rtcp_remote or remote)

    # -- the Leg interface ----------------------------------------------------------------------

    def send_audio(self, frame: MixedFrame) -> None:
        if self._rtp is None or self._rtp.transport is None:
            return
        data, remote = self.session.send_audio(frame.payload, frame.speech)
        self._rtp.transport.sendto(data, remote)

    def send_video(self, source_id: str, frame: EncodedVideoFrame) -> None:
        """Audio only (video for room systems comes with its own m-line later)."""

    def request_keyframe(self) -> None:
        """No video."""

    def on_room_event(self, event: RoomEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

    async def hang_up(self, reason: str) -> None:
        self.close()
        if self._on_hang_up is not None:
            await self._on_hang_up(reason)

    def media_counters(self) -> dict[str, Any]:
        stats = self.session.stats
        return {
            "rtp_packets_in": stats.packets_in,
            "rtp_packets_out": stats.packets_out,
            "rtp_dropped": stats.dropped_unknown_pt + stats.dropped_malformed + stats.dropped_undecryptable,
            "rtp_packets_lost": self.session.packets_lost,
            "rtp_jitter_ms": round(self.session.jitter_ms, 2),
        }

    def close(self) -> None:
        if self._rtcp_task is not None:
            self._rtcp_task.cancel()
            self._rtcp_task = None
        for receiver in (self._rtp, self._rtcp):
            if receiver is not None and receiver.transport is not None:
                receiver.transport.close()
