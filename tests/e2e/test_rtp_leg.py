"""Two phones over real UDP sockets in one conference: RTP in, mixer, RTP out, DTMF, host mute."""

from __future__ import annotations

import asyncio
import fractions
import itertools
from typing import Any, cast

import av
import numpy as np
from aiortc.rtp import RtpPacket

from gateway.config import MediaConfig
from gateway.rooms.conference import Conference
from gateway.rooms.participant import LegKind
from gateway.rooms.room import Room
from gateway.rtp.dtmf import encode as dtmf
from gateway.rtp.leg import RtpLeg
from gateway.rtp.session import AudioIn, KeyframeWanted, RtpSession, VideoIn
from gateway.transcode.audio import FRAME_SAMPLES, AudioCodec, AudioFormat, make_decoder, make_encoder
from gateway.transcode.codecs import StreamKind, h264
from gateway.transcode.video import EncodedVideoFrame, VideoSourceId, is_keyframe


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


async def add_phone(room: Room, conference: Conference, name: str, digits: list[str]) -> tuple[Phone, RtpLeg]:
    loop = asyncio.get_running_loop()
    _, phone = await loop.create_datagram_endpoint(Phone, local_addr=("127.0.0.1", 0))
    participant = room.request_join(name, None, LegKind.PHONE).participant
    assert participant is not None
    leg = RtpLeg(LegKind.PHONE, on_digit=digits.append)
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
    pcm = decode(frames)
    spectrum = np.abs(np.fft.rfft(pcm))
    return float(np.argmax(spectrum) * 48_000 / pcm.size), float(np.sqrt(np.mean(pcm**2)))


def decode(frames: list[AudioIn]) -> np.ndarray:
    assert frames, "no audio arrived at all"
    decoder = make_decoder(AudioCodec.PCMA)
    return np.concatenate([decoder.decode(f.payload) for f in frames]).astype(np.float64)


def share_near(frames: list[AudioIn], hz: float, width: float = 20.0) -> float:
    """The share (0..1) of the received signal's energy within `width` Hz of `hz`."""
    pcm = decode(frames)
    power = np.abs(np.fft.rfft(pcm * np.hanning(pcm.size))) ** 2
    freqs = np.fft.rfftfreq(pcm.size, 1 / 48_000)
    return float(power[np.abs(freqs - hz) < width].sum() / (power.sum() + 1e-9))


async def talk(phone1: Phone, hz1: float | None, phone2: Phone, hz2: float | None, seconds: float) -> None:
    """Both phones send at once for `seconds`, 20 ms apart: their tones, or A-law silence (None)."""
    silence = [b"\xd5" * 160] * int(seconds / 0.02)
    for f1, f2 in zip(tone_frames(hz1, seconds) if hz1 else silence, tone_frames(hz2, seconds) if hz2 else silence, strict=False):
        phone1.send(f1)
        phone2.send(f2)
        await asyncio.sleep(0.02)


async def test_two_phones_hear_each_other_send_dtmf_and_a_host_mute_silences_one() -> None:
    room = Room("town-hall")
    conference = Conference(room, MediaConfig())
    digits: list[str] = []
    phone1, leg1 = await add_phone(room, conference, "+49 30 1234", digits)
    phone2, leg2 = await add_phone(room, conference, "+49 40 5678", [])
    try:
        # Both talk at once, each its own tone: each hears the other's, and not its own (mix-minus).
        await talk(phone1, 600, phone2, 900, 1.5)
        for listener, hears_hz, own_hz in ((phone2, 600, 900), (phone1, 900, 600)):
            assert len(listener.received) > 60, len(listener.received)
            heard = listener.received[-40:]
            hz, level = peak_hz_and_level(heard)
            assert abs(hz - hears_hz) < 10 and level > 1000, (hears_hz, hz, level)
            assert share_near(heard, hears_hz) > 0.5, share_near(heard, hears_hz)
            assert share_near(heard, own_hz) < 0.01, f"a phone hears its own {own_hz} Hz"

        phone1.send_digit("5", seq=40_000)
        await asyncio.sleep(0.1)
        assert digits == ["5"]

        # The host mutes phone 1: phone 2 keeps receiving audio, silent of phone 1's tone, while
        # phone 1 still hears phone 2 (the mute is on phone 1's media, not on the call).
        room.mute(None, leg1.participant_id)
        phone1.received.clear()
        phone2.received.clear()
        await talk(phone1, 600, phone2, 900, 1.0)
        assert len(phone2.received) >= 40, f"phone 2's audio stopped: {len(phone2.received)} frames in 1 s"
        assert peak_hz_and_level(phone2.received[-25:])[1] < 50  # silence: the mute is on the media
        assert share_near(phone1.received[-25:], 900) > 0.5, "the muted phone no longer hears the other"
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


async def add_phone_unattached(confirm: bool = True, **latching: Any) -> tuple[Phone, RtpLeg]:
    loop = asyncio.get_running_loop()
    _, phone = await loop.create_datagram_endpoint(Phone, local_addr=("127.0.0.1", 0))
    leg = RtpLeg(LegKind.PHONE, **latching)
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


class Camera(asyncio.DatagramProtocol):
    """A room system's main video line in the test: an RtpSession on a real UDP socket."""

    def __init__(self) -> None:
        self.session: RtpSession | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.frames: list[EncodedVideoFrame] = []
        self.keyframes_wanted = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.session is None:
            return
        for event in self.session.receive(data, addr, 0.0):
            if isinstance(event, VideoIn):
                self.frames.append(event.frame)
            elif isinstance(event, KeyframeWanted):
                self.keyframes_wanted += 1

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def send(self, frame: EncodedVideoFrame) -> None:
        assert self.session is not None and self.transport is not None
        packets, to = self.session.send_video(frame)
        for data in packets:
            self.transport.sendto(data, to)

    def ask_keyframe(self) -> None:
        assert self.session is not None and self.transport is not None
        request = self.session.keyframe_request()
        assert request is not None
        self.transport.sendto(request, self.session.remote)  # (rtcp-mux)


async def add_video_system(room: Room, conference: Conference, name: str) -> tuple[Phone, Camera, RtpLeg]:
    phone, leg = await add_phone_unattached()
    loop = asyncio.get_running_loop()
    _, camera = await loop.create_datagram_endpoint(Camera, local_addr=("127.0.0.1", 0))
    port = await leg.open_video(StreamKind.MAIN, "127.0.0.1", 40000, 40999)
    codecs = (h264(97, "42e01f"),)
    leg.apply_video(StreamKind.MAIN, codecs, camera.address, camera.address)  # rtcp-mux
    camera.session = RtpSession.for_video(StreamKind.MAIN, codecs, ("127.0.0.1", port))
    participant = room.request_join(name, None, LegKind.SIP_ROOM_SYSTEM).participant
    assert participant is not None
    leg.attach(conference, participant.id)
    return phone, camera, leg


def camera_frames(rgb: tuple[int, int, int], count: int) -> list[EncodedVideoFrame]:
    """A room system's camera: H.264 (constrained baseline, one IDR then P frames) of one colour."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 640, 360, "yuv420p"
    encoder.time_base = fractions.Fraction(1, 90_000)
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline"}
    picture = np.zeros((360, 640, 3), np.uint8)
    picture[:] = rgb
    out = []
    for i in range(count):
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        frame.pts = i * 3000
        for packet in encoder.encode(frame):
            data = bytes(packet)
            out.append(EncodedVideoFrame("H264", data, int(packet.pts or 0), is_keyframe("H264", data)))
    return out


async def test_room_systems_see_the_composed_room_and_keyframe_requests_reach_its_encoder() -> None:
    """Two legs with an audio and a main video line each: each room system's camera (H.264) goes
    into the room's composed picture, which each of them receives over RTP (one encode for both:
    the same output); a PLI from a room system makes the encoder send a keyframe, and the new
    camera's receivers' keyframe requests reach it as a PLI."""
    room = Room("board-room")
    conference = Conference(room, MediaConfig())
    phone1, camera1, leg1 = await add_video_system(room, conference, "Board room A")
    phone2, camera2, leg2 = await add_video_system(room, conference, "Board room B")
    try:
        source = VideoSourceId(leg1.participant_id, StreamKind.MAIN)
        assert set(leg1.video_streams) == {StreamKind.MAIN} and leg1.video_streams[StreamKind.MAIN].composed
        assert conference.video.sources_of(leg1.participant_id) == [source]
        green = camera_frames((0, 200, 0), 20)  # board room A's camera: green, an IDR every 20 frames

        async def film() -> None:
            for i in itertools.count():
                camera1.send(green[i % len(green)])
                await asyncio.sleep(0.02)

        filming = asyncio.create_task(film())
        decoder = av.CodecContext.create("h264", "r")
        decoded = 0
        rgb = None
        for _ in range(300):  # (the compositor's process starts first: up to a few seconds)
            await asyncio.sleep(0.05)
            for f in camera2.frames[decoded:]:
                for picture in decoder.decode(av.Packet(f.data)):
                    rgb = picture.to_ndarray(format="rgb24")
            decoded = len(camera2.frames)
            if rgb is not None and (rgb[..., 1].astype(int) - rgb[..., 0] > 80).mean() > 0.2 and len(camera1.frames) >= 5:
                break
        filming.cancel()
        # both receive the composed picture, from one encoder; it starts with a keyframe
        assert camera2.frames[0].keyframe and camera1.frames[0].keyframe
        assert conference.video_counters()["composed_encoders"] == 1
        assert rgb is not None and rgb.shape == (720, 1280, 3)
        assert (rgb[..., 1].astype(int) - rgb[..., 0] > 80).mean() > 0.2, "board room A's green camera is not in the picture"
        # a PLI from board room B: its encoder sends a keyframe soon
        await asyncio.sleep(0.6)  # (an encoder makes at most one requested keyframe in 0.5 s)
        seen = len(camera2.frames)
        camera2.ask_keyframe()
        for _ in range(60):
            await asyncio.sleep(0.05)
            if any(f.keyframe for f in camera2.frames[seen:]):
                break
        assert any(f.keyframe for f in camera2.frames[seen:])
        counters = leg2.media_counters()["video_main"]
        assert counters["keyframes_wanted"] == 1 and counters["rtp_packets_out"] >= 5
        # a receiver of board room A's camera lost its picture (a browser's PLI): a PLI to the camera
        conference.video.request_keyframe(source, force=True)
        for _ in range(50):
            await asyncio.sleep(0.01)
            if camera1.keyframes_wanted:
                break
        # (at least one: under load the compositor, a subscriber of that camera too, may have asked as well)
        assert camera1.keyframes_wanted >= 1 and leg1.media_counters()["video_main"]["keyframes_asked"] >= 1
        # a re-INVITE sets the line inactive, then back: the source goes and returns, the
        # compositor's subscription stays; declining the line (port 0) removes it for good
        codecs = (h264(97, "42e01f"),)
        leg1.apply_video(StreamKind.MAIN, codecs, camera1.address, camera1.address, direction="inactive")
        assert conference.video.sources_of(leg1.participant_id) == []
        leg1.apply_video(StreamKind.MAIN, codecs, camera1.address, camera1.address)
        assert conference.video.sources_of(leg1.participant_id) == [source]
        leg1.remove_video(StreamKind.MAIN)
        assert conference.video.sources_of(leg1.participant_id) == [] and leg1.video_streams == {}
        assert conference.video_counters()["composed_encoders"] == 1  # board room B still gets its picture
    finally:
        for leg in (leg1, leg2):
            leg.detach()
            leg.close()
        for endpoint in (phone1, phone2, camera1, camera2):
            assert endpoint.transport is not None
            endpoint.transport.close()
        await conference.close()
