"""One RTP stream pair (a leg's audio), sans-IO: datagrams in, events out; frames in, datagrams out.

- Inbound: RTCP and RTP are told apart by payload type (RFC 5761, for rtcp-mux); SRTP/SRTCP are
  unprotected when keys were agreed; packets of unknown payload types are counted and dropped;
  telephone-events become digits; audio becomes `AudioIn` for the mixer's jitter buffer.
- Symmetric RTP: the first valid packet's source becomes where we send (NATed phones and room
  systems send from a different port than they announce); later ones follow a move.
- Outbound: one SSRC for the whole call, sequence numbers and timestamps continuous across
  silence, the marker bit on the first packet of each talkspurt; sender reports with receiver
  blocks on request. Packet (de)serialisation is aiortc's (`aiortc.rtp`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import pylibsrtp
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RtcpPacket,
    RtcpReceiverInfo,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpPacket,
    is_rtcp,
)

from gateway.rtp.crypto import Crypto
from gateway.rtp.dtmf import DtmfReceiver

Address = tuple[str, int]
_SRTP_POLICIES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}


@dataclass(frozen=True)
class AudioIn:
    sequence_number: int
    timestamp: int
    payload: bytes
    arrival_s: float


@dataclass(frozen=True)
class DigitIn:
    digit: str


@dataclass
class RtpStats:
    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    dropped_unknown_pt: int = 0
    dropped_undecryptable: int = 0
    dropped_malformed: int = 0
    rtcp_in: int = 0
    remote_moved: int = 0


def _srtp_session(crypto: Crypto, outbound: bool) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=crypto.key_salt,
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND,
        srtp_profile=_SRTP_POLICIES[crypto.suite],
    )
    return pylibsrtp.Session(policy=policy)


@dataclass
class RtpSession:
    payload_type: int
    clock_rate: int
    samples_per_frame: int  # RTP clock units per outbound packet (160 for 20 ms of G.711)
    remote: Address
    telephone_event_pt: int | None = None
    local_crypto: Crypto | None = None  # our key: protects what we send
    remote_crypto: Crypto | None = None  # theirs: unprotects what we receive
    ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    stats: RtpStats = field(default_factory=RtpStats)

    def __post_init__(self) -> None:
        self._seq = secrets.randbits(16)
        self._ts = secrets.randbits(32)
        self._latched = False
        self._remote_ssrc: int | None = None
        self._receive_stats: StreamStatistics | None = None
        self._dtmf = DtmfReceiver()
        self._talking = False
        self._tx = _srtp_session(self.local_crypto, True) if self.local_crypto else None
        self._rx = _srtp_session(self.remote_crypto, False) if self.remote_crypto else None
        self._last_sr_ntp_middle = 0
        self._last_sr_arrival = 0.0

    def renegotiate(
        self,
        payload_type: int,
        clock_rate: int,
        samples_per_frame: int,
        remote: Address,
        telephone_event_pt: int | None,
        local_crypto: Crypto | None,
        remote_crypto: Crypto | None,
    ) -> None:
        """A new offer/answer (re-INVITE: codec change, hold, new address): our SSRC and sequence
        numbers go on, as RFC 3264 8.3.1 wants for an unchanged stream; a new address unlatches."""
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.samples_per_frame = samples_per_frame
        self.telephone_event_pt = telephone_event_pt
        if remote != self.remote:
            self.remote = remote
            self._latched = False
        if local_crypto != self.local_crypto:
            self.local_crypto = local_crypto
            self._tx = _srtp_session(local_crypto, True) if local_crypto else None
        if remote_crypto != self.remote_crypto:
            self.remote_crypto = remote_crypto
            self._rx = _srtp_session(remote_crypto, False) if remote_crypto else None
        self._talking = False

    # -- inbound --------------------------------------------------------------------------------

    def receive(self, data: bytes, source: Address, now: float) -> list[AudioIn | DigitIn]:
        if len(data) < 12 or data[0] >> 6 != 2:
            self.stats.dropped_malformed += 1
            return []
        if is_rtcp(data):
            self._receive_rtcp(data, now)
            return []
        if self._rx is not None:
            try:
                data = self._rx.unprotect(data)
            except pylibsrtp.Error:
                self.stats.dropped_undecryptable += 1
                return []
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            self.stats.dropped_malformed += 1
            return []
        if packet.payload_type not in (self.payload_type, self.telephone_event_pt):
            self.stats.dropped_unknown_pt += 1
            return []
        self._follow(source)
        self.stats.packets_in += 1
        self.stats.bytes_in += len(packet.payload)
        if packet.ssrc != self._remote_ssrc:
            self._remote_ssrc = packet.ssrc
            self._receive_stats = StreamStatistics(self.clock_rate)
        assert self._receive_stats is not None
        self._receive_stats.add(packet)
        if packet.payload_type == self.telephone_event_pt:
            digit = self._dtmf.packet(packet.payload, packet.timestamp)
            return [DigitIn(digit)] if digit else []
        return [AudioIn(packet.sequence_number, packet.timestamp, packet.payload, now)]

    def _follow(self, source: Address) -> None:
        """Symmetric RTP: answer where the packets really come from."""
        if source != self.remote:
            if self._latched:
                self.stats.remote_moved += 1
            self.remote = source
        self._latched = True

    def _receive_rtcp(self, data: bytes, now: float) -> None:
        if self._rx is not None:
            try:
                data = self._rx.unprotect_rtcp(data)
            except pylibsrtp.Error:
                self.stats.dropped_undecryptable += 1
                return
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            self.stats.dropped_malformed += 1
            return
        self.stats.rtcp_in += 1
        for packet in packets:
            if isinstance(packet, RtcpSrPacket):
                self._last_sr_ntp_middle = (packet.sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF
                self._last_sr_arrival = now

    # -- outbound -------------------------------------------------------------------------------

    def send_audio(self, payload: bytes, speech: bool = True) -> tuple[bytes, Address]:
        """One frame's packet. `speech`: whether this frame carries speech; the first speech frame
        after silence gets the marker bit (RFC 3551 4.1)."""
        packet = RtpPacket(
            payload_type=self.payload_type,
            marker=1 if speech and not self._talking else 0,
            sequence_number=self._seq,
            timestamp=self._ts,
            ssrc=self.ssrc,
            payload=payload,
        )
        self._talking = speech
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + self.samples_per_frame) & 0xFFFFFFFF
        data = packet.serialize()
        if self._tx is not None:
            data = self._tx.protect(data)
        self.stats.packets_out += 1
        self.stats.bytes_out += len(payload)
        return data, self.remote

    def rtcp_report(self, now: float, wall: float) -> tuple[bytes, Address]:
        """A sender report with a reception block for the remote stream, for the RTCP port.
        `now` is the monotonic clock that `receive` was given, `wall` the Unix time (for NTP)."""
        ntp = int((wall + 2_208_988_800) * (1 << 32))
        reports = []
        if self._receive_stats is not None and self._remote_ssrc is not None:
            stats = self._receive_stats
            delay = int((now - self._last_sr_arrival) * 65536) if self._last_sr_ntp_middle else 0
            reports.append(
                RtcpReceiverInfo(
                    ssrc=self._remote_ssrc,
                    fraction_lost=stats.fraction_lost,
                    packets_lost=stats.packets_lost,
                    highest_sequence=stats.max_seq or 0,
                    jitter=stats.jitter,
                    lsr=self._last_sr_ntp_middle,
                    dlsr=delay,
                )
            )
        sr = RtcpSrPacket(
            ssrc=self.ssrc,
            sender_info=RtcpSenderInfo(
                ntp_timestamp=ntp,
                rtp_timestamp=self._ts,
                packet_count=self.stats.packets_out,
                octet_count=self.stats.bytes_out & 0xFFFFFFFF,
            ),
            reports=reports,
        )
        data = bytes(sr)
        if self._tx is not None:
            data = self._tx.protect_rtcp(data)
        return data, self.remote

    @property
    def packets_lost(self) -> int:
        return self._receive_stats.packets_lost if self._receive_stats else 0

    @property
    def jitter_ms(self) -> float:
        return self._receive_stats.jitter * 1000 / self.clock_rate if self._receive_stats else 0.0

