"""Two phones over real UDP sockets in one conference: RTP in, mixer, RTP out, DTMF, host mute."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import numpy as np
from aiortc.rtp import RtpPacket

from gateway.config import MediaConfig
from gateway.rooms.conference import Conference
from gateway.rooms.participant import LegKind
from gateway.rooms.room import Room
from gateway.rtp.dtmf import encode as dtmf
from gateway.rtp.leg import RtpAudioLeg
from gateway.rtp.session import AudioIn, RtpSession
from gateway.transcode.audio import FRAME_SAMPLES, AudioCodec, AudioFormat, make_decoder, make_encoder


class Phone(asyncio.DatagramProtocol):
    """A phone in the test: its own RtpSession on a real UDP socket."""

    def __init__(self) -> None:
        self.received: list[AudioIn] = []
        self.session: RtpSession | None = None
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (the selector loop's datagram transport does not subclass DatagramTransport)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.session is not None:
            self.received += [e for e in self.session.receive(data, addr, 0.0) if isinstance(e, AudioIn)]

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def send(self, payload: bytes) -> None:
        assert self.session is not None and self.transport is not None
        data, to = self.session.send_audio(payload)
        self.transport.sendto(data, to)

    def send_digit(self, digit: str, seq: int) -> None:
        """One key press as a phone sends it: several packets, one RTP timestamp, the end repeated."""
        assert self.session is not None and self.transport is not None
        for i, (duration, end) in enumerate(((160, False), (320, False), (480, True), (480, True), (480, True))):
            packet = RtpPacket(payload_type=101, sequence_number=seq + i, timestamp=123_456, ssrc=self.session.ssrc)
            packet.payload = dtmf(digit, duration, end)
            packet.marker = 1 if i == 0 else 0
            self.transport.sendto(packet.serialize(), self.session.remote)


async def add_phone(room: Room, conference: Conference, name: str, digits: list[str]) -> tuple[Phone, RtpAudioLeg]:
    loop = asyncio.get_running_loop()
    _, phone = await loop.create_datagram_endpoint(Phone, local_addr=("127.0.0.1", 0))
    participant = room.request_join(name, None, LegKind.PHONE).participant
    assert participant is not None
    leg = RtpAudioLeg(LegKind.PHONE, on_digit=digits.append)
    port = await leg.open("127.0.0.1", 40000, 40999)
    assert port % 2 == 0  # RTP on an even port, RTCP on the next
    rtcp = (phone.address[0], phone.address[1] + 1)
    leg.apply(AudioCodec.PCMA, 8, 8000, phone.address, rtcp, telephone_event_pt=101)
    leg.confirm()  # (what the SIP call does on the ACK)
    phone.session = RtpSession(8, 8000, 160, remote=("127.0.0.1", port), telephone_event_pt=101)
    leg.attach(conference, participant.id)
    return phone, leg


def tone_frames(hz: float, seconds: float) -> list[bytes]:
    encoder = make_encoder(AudioFormat(AudioCodec.PCMA))
    t = np.arange(int(48_000 * seconds)) / 48_000
    pcm = (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)
    return [encoder.encode(pcm[i : i + FRAME_SAMPLES]) for i in range(0, pcm.size - FRAME_SAMPLES + 1, FRAME_SAMPLES)]


def peak_hz_and_level(frames: list[AudioIn]) -> tuple[float, float]:
    decoder = make_decoder(AudioCodec.PCMA)
    pcm = np.concatenate([decoder.decode(f.payload) for f in frames]).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(pcm))
    return float(np.argmax(spectrum) * 48_000 / pcm.size), float(np.sqrt(np.mean(pcm**2)))


async def test_two_phones_hear_each_other_send_dtmf_and_a_host_mute_silences_one() -> None:
    room = Room("town-hall")
    conference = Conference(room, MediaConfig())
    digits: list[str] = []
    phone1, leg1 = await add_phone(room, conference, "+49 30 1234", digits)
    phone2, leg2 = await add_phone(room, conference, "+49 40 5678", [])
    try:
        for frame in tone_frames(600, 1.5):
            phone1.send(frame)
            phone2.send(b"\xd5" * 160)  # A-law silence
            await asyncio.sleep(0.02)
        heard = phone2.received[-40:]
        hz, level = peak_hz_and_level(heard)
        assert abs(hz - 600) < 10 and level > 1000, (hz, level)
        assert len(phone2.received) > 60
        # the speaker does not hear itself
        assert peak_hz_and_level(phone1.received[-40:])[1] < 50

        phone1.send_digit("5", seq=40_000)
        await asyncio.sleep(0.1)
        assert digits == ["5"]

        room.mute(None, leg1.participant_id)
        phone2.received.clear()
        for frame in tone_frames(600, 1.0):
            phone1.send(frame)
            await asyncio.sleep(0.02)
        assert peak_hz_and_level(phone2.received[-25:])[1] < 50  # silence: the mute is on the media
        counters = conference.participant_view(leg1.participant_id)["media"]
        assert counters["rtp_packets_in"] > 100 and counters["audio_frames_dropped_muted"] > 20
    finally:
        for leg in (leg1, leg2):
            leg.detach()
            leg.close()
        for phone in (phone1, phone2):
            assert phone.transport is not None
            phone.transport.close()
        await conference.close()


async def test_prompts_play_on_the_legs_own_clock_then_give_way_to_the_mix() -> None:
    """Before a leg joins (voice menu, lobby), what `play` gave it goes out every 20 ms with one
    SSRC and running sequence numbers; a prompt started in the meeting replaces the mix while it lasts."""
    room = Room("town-hall")
    conference = Conference(room, MediaConfig())
    phone, leg = await add_phone_unattached()
    done: list[bool] = []
    try:
        prompt = tone_frames(1000, 0.4)
        leg.play(prompt, done=lambda: done.append(True))
        await asyncio.sleep(0.6)
        assert done == [True]
        got = phone.received
        assert 18 <= len(got) <= 21, len(got)
        seqs = [f.sequence_number for f in got]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert abs(peak_hz_and_level(got)[0] - 1000) < 10
        participant = room.request_join("+49 89 1", None, LegKind.PHONE).participant
        assert participant is not None
        leg.attach(conference, participant.id)
        phone.received.clear()
        leg.play(tone_frames(700, 0.3))
        await asyncio.sleep(0.5)
        hz, level = peak_hz_and_level(phone.received[:12])
        assert abs(hz - 700) < 10 and level > 1000  # the prompt, over the (silent) mix
        assert peak_hz_and_level(phone.received[-5:])[1] < 50  # then the mix again
    finally:
        leg.detach()
        leg.close()
        assert phone.transport is not None
        phone.transport.close()
        await conference.close()


async def add_phone_unattached(confirm: bool = True, **latching: Any) -> tuple[Phone, RtpAudioLeg]:
    loop = asyncio.get_running_loop()
    _, phone = await loop.create_datagram_endpoint(Phone, local_addr=("127.0.0.1", 0))
    leg = RtpAudioLeg(LegKind.PHONE, **latching)
    port = await leg.open("127.0.0.1", 40000, 40999)
    leg.apply(AudioCodec.PCMA, 8, 8000, phone.address, (phone.address[0], phone.address[1] + 1))
    if confirm:
        leg.confirm()
    phone.session = RtpSession(8, 8000, 160, remote=("127.0.0.1", port))
    return phone, leg


async def test_nothing_is_sent_before_the_call_is_confirmed_or_the_phone_is_heard() -> None:
    """An answered but unconfirmed call (no ACK yet) sends no prompt, no idle silence: the SDP's
    address is only a claim until then. A packet from elsewhere changes nothing; the first valid
    RTP from the SDP's address, or the confirmation, starts the prompt."""
    for start_by in ("rtp", "confirm"):
        phone, leg = await add_phone_unattached(confirm=False, latching="strict")
        loop = asyncio.get_running_loop()
        _, stranger = await loop.create_datagram_endpoint(Phone, local_addr=("127.0.0.1", 0))
        try:
            leg.set_idle(b"\xd5" * 160)
            leg.play(tone_frames(1000, 1.0))
            assert phone.session is not None and stranger.transport is not None
            stranger.transport.sendto(phone.session.send_audio(b"\xd5" * 160)[0], phone.session.remote)
            await asyncio.sleep(0.3)
            assert phone.received == [] and stranger.received == []
            assert leg.media_counters()["rtp_packets_out"] == 0
            if start_by == "rtp":
                phone.send(b"\xd5" * 160)
            else:
                leg.confirm()
            await asyncio.sleep(0.3)
            assert len(phone.received) >= 10, (start_by, len(phone.received))
            assert stranger.received == []
            assert leg.media_counters()["rtp_dropped_foreign"] == 1
        finally:
            leg.close()
            for transport in (phone.transport, stranger.transport):
                assert transport is not None
                transport.close()
