"""One media line's RTP and RTCP (audio, main video or content), sans-IO: datagrams in, events out;
frames in, datagrams out.

- Payload types are the negotiated codecs' (`codecs`; for audio `payload_type`, plus
  `telephone_event_pt`). RFC 4733 digits and the audio jitter buffer (the mixer's) are audio's;
  a video line reassembles whole frames (`VideoIn`, H.264 or VP8 payloads), and answers and sends
  keyframe requests over RTCP: a PLI or FIR from the remote becomes `KeyframeWanted`, a lost
  picture on our side `PictureLost`, and `keyframe_request()` writes the PLI (or FIR, when only
  "ccm fir" was agreed) that asks the remote for one. A TMMBR or REMB that limits what we send
  becomes `BitrateWanted`. H.264 goes out as the line agreed: FU-A/STAP-A (packetization-mode 1)
  or one NAL unit per packet (mode 0).

- Inbound: RTCP and RTP are told apart by payload type (RFC 5761, for rtcp-mux); SRTP/SRTCP are
  unprotected when keys were agreed; packets of unknown payload types are counted and dropped;
  telephone-events become digits; audio becomes `AudioIn` for the mixer's jitter buffer.
- Latching ("RTP bleed", as rtpengine's strict-source and Asterisk's strictrtp): media is taken
  from, and sent to, one address only. `strict`: the address the SDP names (RTCP: its a=rtcp port
  or RTP + 1, or the RTP port with rtcp-mux). `learn` (symmetric RTP for callers behind NAT, who
  send from another port than they announce): the first valid source within `learn_s` of the
  agreement, or the SDP's address whenever it shows up in that window (the signalled address beats
  a guess). Packets from anywhere else are dropped and counted, never followed, and never become
  digits. Nothing may be sent before the signalling confirmed the call or the accepted address sent
  valid RTP (`may_send`): an unacknowledged 200 must not aim 50 packets/s at whatever its INVITE named.
- Outbound: one SSRC for the whole call, sequence numbers and timestamps continuous across
  silence, the marker bit on the first packet of each talkspurt; sender reports with receiver
  blocks on request. Packet (de)serialisation and video payloads are aiortc's, through
  `gateway.rtp.aiortc_glue`.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

import pylibsrtp

from gateway.rtp.aiortc_glue import (
    RtcpPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpPacket,
    StreamStatistics,
    VideoAssembler,
    bitrate_feedback,
    fir,
    is_rtcp,
    keyframe_feedback,
    packetize,
    pli,
    tmmbr_requests,
)
from gateway.rtp.crypto import Crypto
from gateway.rtp.dtmf import DtmfReceiver
from gateway.transcode.codecs import StreamCodec, StreamKind, packetization_mode
from gateway.transcode.video import VIDEO_CLOCK, EncodedVideoFrame, VideoTimeline, is_keyframe

Address = tuple[str, int]
Latching = Literal["strict", "learn"]
_UNSPECIFIED = ("0.0.0.0", "::")  # c= of an old-style hold (RFC 2543): says nothing about the address
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


@dataclass(frozen=True)
class SourceLearned:
    """Learning latched onto a source other than the SDP's (a NAT): from now on media goes there."""

    address: Address
    rtcp: bool


@dataclass(frozen=True)
class ForeignSource:
    """The first packet of the call from an address that is not the call's: dropped (and every later
    one, counted). Reported once per session, so that the log names the address once, not per packet."""

    address: Address
    rtcp: bool


@dataclass(frozen=True)
class VideoIn:
    """A whole encoded frame of a video line (its `format` is the negotiated codec of its payload type)."""

    frame: EncodedVideoFrame


@dataclass(frozen=True)
class KeyframeWanted:
    """The remote asked for a keyframe of what we send it on this line (RTCP PLI or FIR)."""


@dataclass(frozen=True)
class PictureLost:
    """Packets of the remote's video were lost beyond repair: ask it for a keyframe."""


@dataclass(frozen=True)
class BitrateWanted:
    """The remote asked us to send at most this many bit/s on this line (RTCP TMMBR or REMB)."""

    bps: int


RtpEvent = AudioIn | DigitIn | SourceLearned | ForeignSource | VideoIn | KeyframeWanted | PictureLost | BitrateWanted


SENT_REPORTS_KEPT = 16  # our sender reports a remote's reception report may still echo (RTT)


@dataclass
class RtpStats:
    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    dropped_unknown_pt: int = 0
    dropped_undecryptable: int = 0
    dropped_malformed: int = 0
    dropped_foreign: int = 0  # RTP from an address that is not the call's
    rtcp_in: int = 0
    rtcp_dropped_foreign: int = 0
    remote_moved: int = 0  # learning replaced a latched NAT source with the SDP's address
    keyframes_asked: int = 0  # PLI/FIR we sent
    keyframes_wanted: int = 0  # PLI/FIR the remote sent


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
    remote: Address  # the RTP address the SDP names
    telephone_event_pt: int | None = None
    local_crypto: Crypto | None = None  # our key: protects what we send
    remote_crypto: Crypto | None = None  # theirs: unprotects what we receive
    ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    stats: RtpStats = field(default_factory=RtpStats)
    remote_rtcp: Address | None = None  # the SDP's RTCP address; None or `remote`: rtcp-mux
    latching: Latching = "learn"
    learn_s: float = 3.0
    agreed_at: float = 0.0  # when the offer/answer agreed on this media (the clock of `receive`)
    kind: StreamKind = StreamKind.AUDIO
    # The negotiated codecs (video: every payload type taken and sent; audio may leave it empty
    # and use payload_type and telephone_event_pt alone)
    codecs: tuple[StreamCodec, ...] = ()

    @classmethod
    def for_video(cls, kind: StreamKind, codecs: tuple[StreamCodec, ...], remote: Address, **kwargs: Any) -> RtpSession:
        """A video line (main or content): the first codec is the one we send."""
        if not codecs:
            raise ValueError("a video line needs at least one codec")
        return cls(codecs[0].payload_type, VIDEO_CLOCK, 0, remote, kind=kind, codecs=codecs, **kwargs)

    def __post_init__(self) -> None:
        self._seq = secrets.randbits(16)
        self._ts = secrets.randbits(32)
        self._latched: Address | None = None  # learn: the source media is taken from and sent to
        self._rtcp_latched: Address | None = None
        self._learn_until = self.agreed_at + self.learn_s if self.latching == "learn" else -math.inf
        self._heard = False  # valid RTP came from the accepted address
        self.confirmed = False  # the signalling confirmed the call (ACK of our 200, or the callee's 200)
        self._foreign_reported = False
        self.last_heard_at = -math.inf  # the last packet (RTP or RTCP) from the accepted addresses
        self._remote_ssrc: int | None = None
        self._receive_stats: StreamStatistics | None = None
        self._dtmf = DtmfReceiver()
        self._talking = False
        self._tx = _srtp_session(self.local_crypto, True) if self.local_crypto else None
        self._rx = _srtp_session(self.remote_crypto, False) if self.remote_crypto else None
        self._last_sr_ntp_middle = 0
        self._last_sr_arrival = 0.0
        # Our recent sender reports: their NTP middle 32 bits -> when sent (a report echoes one of
        # them, not always the last: the remote reports on its own schedule)
        self._sent_srs: dict[int, float] = {}
        self.remote_loss: float | None = None  # the remote's last report on what we send: share lost, 0..1
        self.rtt_ms: float | None = None  # the round trip that report gives (RFC 3550 6.4.1)
        self._video = self.kind is not StreamKind.AUDIO
        self._by_pt: dict[int, StreamCodec] = {}
        self._assembler: VideoAssembler | None = None
        self._frame_codecs: dict[int, StreamCodec] = {}  # RTP timestamp -> codec, of frames in the making
        self._timeline = VideoTimeline(self._ts)
        self._picture_id = secrets.randbits(15)
        self._fir_seq = 0
        self._set_codecs(self.codecs)

    def _set_codecs(self, codecs: tuple[StreamCodec, ...]) -> None:
        self.codecs = codecs
        # (audio lines keep their payload types in payload_type and telephone_event_pt: the audio
        # packet path stays as it was)
        self._by_pt = {c.payload_type: c for c in codecs} if self._video else {}
        if self._video and self._assembler is None:
            self._assembler = VideoAssembler()

    def renegotiate(
        self,
        payload_type: int,
        clock_rate: int,
        samples_per_frame: int,
        remote: Address,
        telephone_event_pt: int | None,
        local_crypto: Crypto | None,
        remote_crypto: Crypto | None,
        remote_rtcp: Address | None = None,
        now: float = 0.0,
        codecs: tuple[StreamCodec, ...] | None = None,
    ) -> None:
        """A new offer/answer (re-INVITE: codec change, hold, new address): our SSRC and sequence
        numbers go on, as RFC 3264 8.3.1 wants for an unchanged stream. A new address (from within
        the dialog, so as trusted as the first) is learnt anew; an old-style hold (c=0.0.0.0) keeps
        the address, so that the resume needs no new learning. `codecs`: a video line's new codecs."""
        if codecs is not None:
            self._set_codecs(codecs)
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.samples_per_frame = samples_per_frame
        self.telephone_event_pt = telephone_event_pt
        if remote[0] not in _UNSPECIFIED:
            if remote != self.remote or (self.latching == "learn" and self._latched is None):
                # (nothing came yet, e.g. a call that started on hold: the new agreement opens a window)
                self.remote = remote
                self._latched = self._rtcp_latched = None
                if self.latching == "learn":
                    self._learn_until = now + self.learn_s
            if remote_rtcp != self.remote_rtcp:
                self.remote_rtcp = remote_rtcp
                self._rtcp_latched = None
        if local_crypto != self.local_crypto:
            self.local_crypto = local_crypto
            self._tx = _srtp_session(local_crypto, True) if local_crypto else None
        if remote_crypto != self.remote_crypto:
            self.remote_crypto = remote_crypto
            self._rx = _srtp_session(remote_crypto, False) if remote_crypto else None
        self._talking = False

    # -- inbound --------------------------------------------------------------------------------

    def confirm(self, now: float) -> None:
        """The signalling confirmed the call: we may send. Learning runs on for `learn_s` from here
        too (a caller cannot send before it has our answer, and the ACK may come late)."""
        self.confirmed = True
        if self.latching == "learn" and self._latched != self.remote:
            self._learn_until = max(self._learn_until, now + self.learn_s)

    @property
    def may_send(self) -> bool:
        """Only once the call is confirmed or the accepted address has sent valid RTP: before that
        the SDP's address is only a claim (a spoofed INVITE would make us flood a victim)."""
        return self.confirmed or self._heard

    @property
    def destination(self) -> Address:
        """Where our RTP goes: the learnt source, else the SDP's address."""
        return self._latched or self.remote

    def rtcp_destination(self) -> tuple[Address, bool] | None:
        """Where our RTCP goes, and whether over the RTP port (rtcp-mux). None while the RTP moved to
        a learnt NAT address and no RTCP came yet: the NAT's RTCP port is unknown, and a guess
        would be media to an unconfirmed address."""
        if self.remote_rtcp is None or self.remote_rtcp == self.remote:
            return self.destination, True
        if self._rtcp_latched is not None:
            return self._rtcp_latched, False
        if self.destination == self.remote:
            return self.remote_rtcp, False
        return None

    def receive(self, data: bytes, source: Address, now: float, rtcp_port: bool = False) -> list[RtpEvent]:
        """One datagram from `source`, on the RTP port or (`rtcp_port`) on the RTCP port."""
        if len(data) < 12 or data[0] >> 6 != 2:
            self.stats.dropped_malformed += 1
            return []
        if is_rtcp(data):
            return self._receive_rtcp(data, source, now, rtcp_port)
        if rtcp_port:
            self.stats.dropped_malformed += 1  # RTP has no business on the RTCP port
            return []
        learning = False
        if source != self._latched:
            if self.latching == "strict":
                if source != self.remote:
                    return self._foreign(source, False)
            elif self._latched is None:
                # outside the window only the SDP's address may still latch
                if source != self.remote and now > self._learn_until:
                    return self._foreign(source, False)
                learning = True
            elif source == self.remote and now <= self._learn_until:
                learning = True  # the signalled address beats a source learnt before it showed up
            else:
                return self._foreign(source, False)
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
        if packet.payload_type not in (self.payload_type, self.telephone_event_pt) and (
            packet.payload_type not in self._by_pt
        ):
            self.stats.dropped_unknown_pt += 1
            return []
        events: list[RtpEvent] = []
        if learning:
            # Only a packet that decrypted and carries the call's payload type may latch.
            if self._latched is not None:
                self.stats.remote_moved += 1
            self._latched, self._rtcp_latched = source, None
            if source == self.remote:
                self._learn_until = -math.inf  # the signalled address: final
            else:
                events.append(SourceLearned(source, False))
        self._heard = True
        self.last_heard_at = now
        self.stats.packets_in += 1
        self.stats.bytes_in += len(packet.payload)
        if packet.ssrc != self._remote_ssrc:
            self._remote_ssrc = packet.ssrc
            self._receive_stats = StreamStatistics(self.clock_rate)
        assert self._receive_stats is not None
        self._receive_stats.add(packet)
        if packet.payload_type == self.telephone_event_pt:
            digit = self._dtmf.packet(packet.payload, packet.timestamp)
            if digit:
                events.append(DigitIn(digit))
            return events
        if self._video:
            return self._video_in(packet, events)
        events.append(AudioIn(packet.sequence_number, packet.timestamp, packet.payload, now))
        return events

    def _video_in(self, packet: RtpPacket, events: list[RtpEvent]) -> list[RtpEvent]:
        codec = self._by_pt.get(packet.payload_type) or self.codecs[0]
        assert self._assembler is not None
        try:
            lost, whole = self._assembler.add(packet, codec.name.upper())
        except ValueError:
            self.stats.dropped_malformed += 1
            return events
        # A frame comes out when the next one starts: its codec is that of its own packets.
        frame_codecs = self._frame_codecs
        frame_codecs.setdefault(packet.timestamp, codec)
        if len(frame_codecs) > 64:
            del frame_codecs[next(iter(frame_codecs))]
        if lost:
            events.append(PictureLost())
        if whole is not None:
            data, timestamp = whole
            codec = frame_codecs.pop(timestamp, codec)
            name = codec.name.upper()
            events.append(VideoIn(EncodedVideoFrame(name, data, timestamp, is_keyframe(name, data), codec)))
        return events

    def _foreign(self, source: Address, rtcp: bool) -> list[RtpEvent]:
        if rtcp:
            self.stats.rtcp_dropped_foreign += 1
        else:
            self.stats.dropped_foreign += 1
        if self._foreign_reported:
            return []
        self._foreign_reported = True
        return [ForeignSource(source, rtcp)]

    def _rtcp_source(self, source: Address, rtcp_port: bool) -> Literal["accept", "learn", "refuse"]:
        """Whether RTCP from `source` is the call's ("learn": yes, a new address to latch once valid)."""
        if not rtcp_port:  # muxed (or sent to the RTP port anyway): only from the accepted RTP source
            return "accept" if source == self.destination else "refuse"
        if source == self._rtcp_latched:
            return "accept"
        if self._rtcp_latched is not None:
            return "refuse"
        if source == self._signalled_rtcp:
            return "learn"
        # Behind a NAT the RTCP port is another mapping than the RTP one: learnt from the host
        # whose RTP was accepted. RTCP comes every few seconds, often after the RTP window closed.
        if self.latching == "learn" and self._latched is not None and source[0] == self._latched[0]:
            return "learn"
        return "refuse"

    def _receive_rtcp(self, data: bytes, source: Address, now: float, rtcp_port: bool) -> list[RtpEvent]:
        verdict = self._rtcp_source(source, rtcp_port)
        if verdict == "refuse":
            return self._foreign(source, True)
        if self._rx is not None:
            try:
                data = self._rx.unprotect_rtcp(data)
            except pylibsrtp.Error:
                self.stats.dropped_undecryptable += 1
                return []
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            self.stats.dropped_malformed += 1
            return []
        self.stats.rtcp_in += 1
        self.last_heard_at = now
        events: list[RtpEvent] = []
        for packet in packets:
            if isinstance(packet, RtcpSrPacket | RtcpRrPacket):
                if isinstance(packet, RtcpSrPacket):
                    self._last_sr_ntp_middle = (packet.sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF
                    self._last_sr_arrival = now
                self._read_reports(packet.reports, now)
            elif self._video and keyframe_feedback(packet, self.ssrc):
                self.stats.keyframes_wanted += 1
                if not any(isinstance(e, KeyframeWanted) for e in events):
                    events.append(KeyframeWanted())
            elif self._video and (bps := bitrate_feedback(packet, self.ssrc)) is not None:
                events.append(BitrateWanted(bps))
        if self._video:
            events += [BitrateWanted(bps) for bps in tmmbr_requests(data, self.ssrc)]
        if verdict == "learn":
            self._rtcp_latched = source
            if source != self._signalled_rtcp:
                events.insert(0, SourceLearned(source, True))
        return events

    def _read_reports(self, reports: list[RtcpReceiverInfo], now: float) -> None:
        """The remote's reception report on our stream: how much of it was lost and, when it echoes
        our last sender report, the round trip (arrival - sent - the remote's delay since)."""
        for report in reports:
            if report.ssrc != self.ssrc:
                continue
            self.remote_loss = report.fraction_lost / 256
            sent = self._sent_srs.get(report.lsr) if report.lsr else None
            if sent is not None:
                rtt = now - sent - report.dlsr / 65536
                if 0 <= rtt < 60:
                    self.rtt_ms = rtt * 1000

    @property
    def _signalled_rtcp(self) -> Address:
        """The SDP's RTCP address on the RTCP port: its a=rtcp, or the RTP port + 1 (RFC 3550 11)."""
        if self.remote_rtcp is not None and self.remote_rtcp != self.remote:
            return self.remote_rtcp
        return self.remote[0], self.remote[1] + 1

    # -- outbound -------------------------------------------------------------------------------

    def send_audio(self, payload: bytes, speech: bool = True) -> tuple[bytes, Address]:
        """One frame's packet and where it goes. `speech`: whether this frame carries speech; the
        first speech frame after silence gets the marker bit (RFC 3551 4.1). The caller checks
        `may_send` first."""
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
        return data, self.destination

    def send_video(self, frame: EncodedVideoFrame) -> tuple[list[bytes], Address]:
        """A whole frame's packets (the marker bit on the last) and where they go, in the negotiated
        codec of the frame's name (the caller sends only frames in a codec of this line). Timestamps
        run on one timeline whichever source the frames come from. The caller checks `may_send`."""
        name = frame.codec
        codec = next((c for c in self.codecs if c.name.upper() == name), None)
        if codec is None:
            raise ValueError(f"{name} was not agreed on this line")
        payloads = packetize(name, frame.data, self._picture_id, single_nal=packetization_mode(codec) == 0)
        self._picture_id = (self._picture_id + 1) & 0x7FFF
        self._ts = self._timeline.next(frame.timestamp) & 0xFFFFFFFF
        out = []
        last = len(payloads) - 1
        for i, payload in enumerate(payloads):
            data = RtpPacket(
                payload_type=codec.payload_type,
                marker=1 if i == last else 0,
                sequence_number=self._seq,
                timestamp=self._ts,
                ssrc=self.ssrc,
                payload=payload,
            ).serialize()
            self._seq = (self._seq + 1) & 0xFFFF
            if self._tx is not None:
                data = self._tx.protect(data)
            out.append(data)
            self.stats.packets_out += 1
            self.stats.bytes_out += len(payload)
        return out, self.destination

    def restart_timeline(self) -> None:
        """The next frames come from another source: their timestamps say nothing about the last ones."""
        self._timeline.restart()

    def keyframe_request(self) -> bytes | None:
        """The RTCP that asks the remote for a keyframe of what it sends on this line: a PLI, or a
        FIR when only "ccm fir" was agreed (with no rtcp-fb at all, a PLI all the same: receivers
        ignore feedback they do not know). None before the remote sent anything (no SSRC to name).
        Goes to `rtcp_destination()`."""
        if self._remote_ssrc is None:
            return None
        if self.codecs and not any(c.feedback("nack pli") for c in self.codecs) and any(
            c.feedback("ccm fir") for c in self.codecs
        ):
            self._fir_seq = (self._fir_seq + 1) & 0xFF
            data = fir(self.ssrc, self._remote_ssrc, self._fir_seq)
        else:
            data = pli(self.ssrc, self._remote_ssrc)
        self.stats.keyframes_asked += 1
        if self._tx is not None:
            data = self._tx.protect_rtcp(data)
        return data

    def rtcp_report(self, now: float, wall: float) -> bytes:
        """A sender report with a reception block for the remote stream, for `rtcp_destination()`.
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
        self._sent_srs[(ntp >> 16) & 0xFFFFFFFF] = now
        while len(self._sent_srs) > SENT_REPORTS_KEPT:
            del self._sent_srs[next(iter(self._sent_srs))]
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
        return data

    @property
    def packets_lost(self) -> int:
        return self._receive_stats.packets_lost if self._receive_stats else 0

    @property
    def jitter_ms(self) -> float:
        return self._receive_stats.jitter * 1000 / self.clock_rate if self._receive_stats else 0.0

