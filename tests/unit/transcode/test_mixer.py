"""The audio mixer: mix-minus, top-N speakers, mute enforced before mixing, shared encodes."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.transcode.audio import FRAME_SAMPLES, AudioCodec, AudioFormat, make_decoder, make_encoder
from gateway.transcode.mixer import MixedFrame, Mixer

RAW = AudioFormat(AudioCodec.PCMU, bitrate=0, complexity=0)  # stands for "raw PCM" with the fake codec


class RawDecoder:
    """PCM in the payload as it is: lets the tests check the mix sample by sample."""

    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    def probe_level(self, payload: bytes) -> None:
        return None

    def decode(self, payload: bytes) -> np.ndarray:
        self.log.append(self.name)
        return np.frombuffer(payload, dtype=np.int16).copy()

    def conceal(self) -> np.ndarray:
        return np.zeros(FRAME_SAMPLES, dtype=np.int16)


class RawEncoder:
    def __init__(self, counter: list[int]) -> None:
        self.counter = counter

    def encode(self, pcm: np.ndarray) -> bytes:
        self.counter.append(1)
        return pcm.astype(np.int16).tobytes()


class Harness:
    def __init__(self, max_speakers: int = 3, hangover_ms: int = 0) -> None:
        self.decoded: list[str] = []
        self.encodes: list[int] = []
        self._names = iter([])
        self.mixer = Mixer(
            max_speakers=max_speakers,
            speaker_floor_dbov=-60,
            speaker_hangover_ms=hangover_ms,
            jitter_min_ms=20,
            jitter_max_ms=200,
            encoder_factory=lambda fmt: RawEncoder(self.encodes),
            decoder_factory=lambda codec: RawDecoder(self.decoded, self._pending_name),
            max_frame_bytes=2 * FRAME_SAMPLES,  # raw PCM stands in for a codec here
        )
        self.received: dict[str, list[MixedFrame]] = {}
        self.seq: dict[str, int] = {}
        self._pending_name = ""

    def add(self, name: str, fmt: AudioFormat = RAW) -> None:
        self._pending_name = name
        self.received[name] = []
        self.seq[name] = 0
        self.mixer.add(name, AudioCodec.PCMU, fmt, self.received[name].append)

    def speak(self, name: str, value: int, level: float | None = None) -> None:
        """Pushes one frame of constant `value` (a recognisable 'voice')."""
        pcm = np.full(FRAME_SAMPLES, value, dtype=np.int16)
        if level is None:
            level = -127.0 if value == 0 else 20 * np.log10(abs(value) / 32768)
        self.mixer.push(name, self.seq[name], pcm.tobytes(), level, self.seq[name] * 0.02)
        self.seq[name] += 1

    def heard(self, name: str) -> int:
        """The constant sample value of the last frame `name` received."""
        pcm = np.frombuffer(self.received[name][-1].payload, dtype=np.int16)
        assert (pcm == pcm[0]).all()
        return int(pcm[0])


def test_each_speaker_hears_everyone_but_itself_and_listeners_hear_all() -> None:
    h = Harness()
    for name in ("a", "b", "c", "listener"):
        h.add(name)
    for _ in range(3):
        h.speak("a", 1000)
        h.speak("b", 300)
        h.speak("c", 100)
        h.mixer.tick()
    assert h.heard("a") == 400
    assert h.heard("b") == 1100
    assert h.heard("c") == 1300
    assert h.heard("listener") == 1400


def test_only_the_n_loudest_are_mixed_and_only_they_are_decoded() -> None:
    h = Harness(max_speakers=2)
    volumes = {"v1": 1000, "v2": 3000, "v3": 2000, "v4": 500, "v5": 100}
    for name in volumes:
        h.add(name)
    h.add("listener")
    for name, value in volumes.items():
        h.speak(name, value)
    h.mixer.tick()
    h.decoded.clear()
    for name, value in volumes.items():
        h.speak(name, value)
    result = h.mixer.tick()
    assert set(result.speakers) == {"v2", "v3"}
    assert sorted(h.decoded) == ["v2", "v3"]  # levels came from RFC 6464 values: no other decode
    assert h.heard("listener") == 5000
    assert h.heard("v1") == 5000  # a quieter participant hears the two speakers
    assert h.heard("v2") == 2000  # mix-minus
    assert h.heard("v3") == 3000


def test_full_mix_is_encoded_once_per_format_and_mix_minus_only_for_speakers() -> None:
    h = Harness(max_speakers=3)
    opus_like = AudioFormat(AudioCodec.OPUS)
    for i in range(20):
        h.add(f"g711-{i}")
    for i in range(20):
        h.add(f"opus-{i}", opus_like)
    h.speak("g711-0", 1000)
    h.speak("opus-0", 2000)
    h.mixer.tick()
    h.encodes.clear()
    h.speak("g711-0", 1000)
    h.speak("opus-0", 2000)
    h.mixer.tick()
    # 2 shared full mixes (one per format) + 2 mix-minus for the speakers, not 40 encodes.
    assert len(h.encodes) == 4
    full = {id(f.payload) for name, frames in h.received.items() if name not in ("g711-0", "opus-0") for f in frames[-1:]}
    assert len(full) == 2  # everyone else got one of two shared byte strings


def test_muted_audio_is_dropped_before_mixing_and_never_decoded() -> None:
    h = Harness()
    for name in ("host", "guest", "listener"):
        h.add(name)
    h.mixer.set_muted("guest", True)
    h.decoded.clear()
    for _ in range(5):
        h.speak("host", 100)
        h.speak("guest", 5000)
        h.mixer.tick()
    assert "guest" not in h.decoded
    assert h.heard("listener") == 100
    assert h.heard("host") == 0
    assert h.mixer.stats("guest").frames_dropped_muted == 5  # type: ignore[union-attr]
    jitter = h.mixer.jitter("guest")  # (never played, but its connection is still measured)
    assert jitter is not None and jitter.received == 5 and jitter.depth == 0


def test_audio_buffered_before_a_mute_never_leaks_after_it() -> None:
    h = Harness()
    h.add("guest")
    h.add("listener")
    for _ in range(5):  # buffered, not yet played out
        h.speak("guest", 700)
    h.mixer.set_muted("guest", True)
    for _ in range(6):
        h.mixer.tick()
    assert all(np.frombuffer(f.payload, dtype=np.int16).max() == 0 for f in h.received["listener"])


def test_unmuted_participant_is_heard_again() -> None:
    h = Harness()
    h.add("guest")
    h.add("listener")
    h.mixer.set_muted("guest", True)
    h.speak("guest", 500)
    h.mixer.tick()
    h.mixer.set_muted("guest", False)
    for _ in range(3):
        h.speak("guest", 500)
        h.mixer.tick()
    assert h.heard("listener") == 500


def test_silence_is_not_a_speaker_and_clipping_saturates() -> None:
    h = Harness()
    for name in ("a", "b", "quiet", "listener"):
        h.add(name)
    for _ in range(2):
        h.speak("a", 30000)
        h.speak("b", 30000)
        h.speak("quiet", 0)
        result = h.mixer.tick()
    assert "quiet" not in result.speakers
    assert h.heard("listener") == 32767


def test_speaking_changes_are_reported_once_with_hangover() -> None:
    h = Harness(hangover_ms=100)  # 5 ticks
    h.add("a")
    h.add("listener")
    changes = []
    for i in range(20):
        h.speak("a", 1000 if i < 5 else 0)
        changes += h.mixer.tick().speaking_changed
    assert changes == [("a", True), ("a", False)]


def test_real_codecs_carry_a_tone_through_the_mix() -> None:
    """Opus in, G.711 out and back: the listener's decoded audio has the speaker's frequency."""
    mixer = Mixer(max_speakers=3, jitter_min_ms=20)
    out: list[MixedFrame] = []
    mixer.add("speaker", AudioCodec.OPUS, AudioFormat(AudioCodec.OPUS), None)
    mixer.add("phone", AudioCodec.PCMA, AudioFormat(AudioCodec.PCMA), out.append)
    encoder = make_encoder(AudioFormat(AudioCodec.OPUS))
    t = np.arange(FRAME_SAMPLES * 50) / 48_000
    tone = (np.sin(2 * np.pi * 600 * t) * 8000).astype(np.int16)
    for i in range(50):
        mixer.push("speaker", i, encoder.encode(tone[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]), None, i * 0.02)
        mixer.tick()
    decoder = make_decoder(AudioCodec.PCMA)
    heard = np.concatenate([decoder.decode(f.payload) for f in out[-25:]]).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(heard))
    peak_hz = np.argmax(spectrum) * 48_000 / heard.size
    assert peak_hz == pytest.approx(600, abs=10)
    assert all(len(f.payload) == 160 for f in out)  # 20 ms of G.711


def test_a_sender_claiming_a_false_level_cannot_hold_a_speaker_slot() -> None:
    h = Harness(max_speakers=1)
    h.add("liar")
    h.add("talker")
    h.add("listener")
    for _ in range(3):
        h.speak("liar", 10, level=-1.0)  # nearly silent, claims to be very loud
        h.speak("talker", 3000)
        h.mixer.tick()
    assert h.heard("listener") == 3000  # after the first decode, the claim is no longer believed


def test_a_room_of_g711_phones_mixes_at_8_khz_and_goes_wideband_when_a_browser_joins() -> None:
    """Phones only: no resampling at all (the mix is done on the 8 kHz samples), still mix-minus;
    an Opus member switches the room to 48 kHz, and leaving switches it back."""
    mixer = Mixer(max_speakers=3, jitter_min_ms=20)
    heard: dict[str, list[MixedFrame]] = {"a": [], "b": [], "c": []}
    for name in heard:
        mixer.add(name, AudioCodec.PCMA, AudioFormat(AudioCodec.PCMA), heard[name].append)
    assert mixer.narrowband
    encoders = {name: make_encoder(AudioFormat(AudioCodec.PCMA)) for name in ("a", "b")}  # one per phone
    t = np.arange(FRAME_SAMPLES * 50) / 48_000
    tones = {"a": 500.0, "b": 1300.0}
    frames = {n: (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16) for n, hz in tones.items()}
    for i in range(50):
        for name, pcm in frames.items():
            mixer.push(name, i, encoders[name].encode(pcm[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]), None, i * 0.02)
        mixer.tick()

    def peaks(frames_out: list[MixedFrame]) -> set[int]:
        decoder = make_decoder(AudioCodec.PCMA)  # (fresh: one decoder per stream)
        pcm = np.concatenate([decoder.decode(f.payload) for f in frames_out[-25:]]).astype(np.float64)
        spectrum = np.abs(np.fft.rfft(pcm))
        hz = np.fft.rfftfreq(pcm.size, 1 / 48_000)
        strong = hz[spectrum > spectrum.max() / 10]
        return {int(round(h / 100) * 100) for h in strong}

    assert peaks(heard["c"]) == {500, 1300}  # the listener hears both
    assert peaks(heard["a"]) == {1300}  # each talker hears the other only
    assert peaks(heard["b"]) == {500}
    assert all(len(f.payload) == 160 for f in heard["c"])

    mixer.add("browser", AudioCodec.OPUS, AudioFormat(AudioCodec.OPUS), None)
    assert not mixer.narrowband
    for i in range(50, 70):
        for name, pcm in frames.items():
            j = i - 50
            mixer.push(name, i, encoders[name].encode(pcm[j * FRAME_SAMPLES : (j + 1) * FRAME_SAMPLES]), None, i * 0.02)
        mixer.tick()
    assert peaks(heard["c"]) == {500, 1300}  # the same through the 48 kHz path
    mixer.remove("browser")
    assert mixer.narrowband


# -- malformed frames: this sender's problem only ---------------------------------------------------


def tone(hz: float, frames: int, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(FRAME_SAMPLES * frames) / 48_000
    return (np.sin(2 * np.pi * hz * t) * amplitude).astype(np.int16)


def peak_and_level(codec: AudioCodec, frames: list[MixedFrame]) -> tuple[float, float]:
    decoder = make_decoder(codec)
    pcm = np.concatenate([decoder.decode(f.payload) for f in frames]).astype(np.float64)
    return float(np.argmax(np.abs(np.fft.rfft(pcm))) * 48_000 / pcm.size), float(np.sqrt(np.mean(pcm**2)))


def test_garbage_truncated_empty_and_oversized_frames_are_concealed_and_cost_nobody_else() -> None:
    """An Opus talker and a listener share the room with three senders of bad frames (Opus that
    libopus rejects, empty frames, 64 KB frames, in Opus, G.722 and G.711). Every tick runs, every
    listener gets every frame, the listener hears the talker's tone, the bad frames are counted per
    sender; an empty frame never reaches a decoder (to libavcodec it means 'flush', after which the
    decoder refuses everything), so the Opus sender's next good frame is decoded again."""
    mixer = Mixer(max_speakers=3, jitter_min_ms=20)
    heard: dict[str, list[MixedFrame]] = {name: [] for name in ("talker", "opus", "g722", "pcmu", "listener")}
    for name, codec in (("talker", AudioCodec.OPUS), ("opus", AudioCodec.OPUS), ("g722", AudioCodec.G722)):
        mixer.add(name, codec, AudioFormat(codec), heard[name].append)
    mixer.add("pcmu", AudioCodec.PCMU, AudioFormat(AudioCodec.PCMU), heard["pcmu"].append)
    mixer.add("listener", AudioCodec.PCMU, AudioFormat(AudioCodec.PCMU), heard["listener"].append)
    opus = make_encoder(AudioFormat(AudioCodec.OPUS))
    voice = tone(440, 60)
    talk = [opus.encode(voice[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]) for i in range(60)]
    bad_opus = [b"\xff", b"", b"\x00" * 65_000, bytes(range(256)) * 4, talk[5][:1]]  # (the last decodes: a loss)
    for tick in range(60):
        mixer.push("talker", tick, talk[tick], None, tick * 0.02)
        mixer.push("opus", tick, bad_opus[tick % len(bad_opus)], -5.0, tick * 0.02)  # claims to be loud
        mixer.push("g722", tick, b"" if tick % 2 else b"\x00" * 65_000, None, tick * 0.02)
        mixer.push("pcmu", tick, b"" if tick % 2 else b"\xff" * 20_000, None, tick * 0.02)
        mixer.tick()
    assert all(len(frames) == 60 for frames in heard.values())
    hz, level = peak_and_level(AudioCodec.PCMU, heard["listener"][-25:])
    assert hz == pytest.approx(440, abs=10) and level > 1000, (hz, level)
    malformed = {name: mixer.stats(name).frames_malformed for name in heard}  # type: ignore[union-attr]
    assert malformed["talker"] == malformed["listener"] == 0
    assert malformed["g722"] == malformed["pcmu"] == 60
    assert malformed["opus"] >= 36, malformed  # 12 empty + 12 oversized at push, the rest in decoding
    decoded = mixer.stats("opus").frames_decoded  # type: ignore[union-attr]
    mixer.push("opus", 60, talk[10], -5.0, 1.2)
    for _ in range(3):
        mixer.tick()
    assert mixer.stats("opus").frames_decoded > decoded  # type: ignore[union-attr]
    assert mixer.stats("opus").frames_malformed == malformed["opus"]  # type: ignore[union-attr]


class FailingDecoder(RawDecoder):
    """Raises on b'boom', decodes b'short' to too few samples: what a broken codec might do."""

    def decode(self, payload: bytes) -> np.ndarray:
        if payload == b"boom":
            raise RuntimeError("codec exploded")
        if payload == b"short":
            return np.zeros(100, dtype=np.int16)
        return super().decode(payload)


def test_a_decoder_that_raises_or_returns_the_wrong_size_costs_only_its_sender() -> None:
    h = Harness()
    h.mixer._make_decoder = lambda codec: FailingDecoder(h.decoded, "bad")  # type: ignore[method-assign]
    h.add("bad")
    h.mixer._make_decoder = lambda codec: RawDecoder(h.decoded, "ok")  # type: ignore[method-assign]
    for name in ("a", "listener"):
        h.add(name)
    for i in range(6):
        h.speak("a", 1000)
        h.mixer.push("bad", i, b"boom" if i % 2 else b"short", -3.0, i * 0.02)
        h.mixer.tick()
        assert h.heard("listener") == 1000  # every tick, exactly the good voice
        assert h.heard("a") == 0
    assert h.mixer.stats("bad").frames_malformed == 6  # type: ignore[union-attr]


def test_a_sink_that_raises_costs_no_other_listener() -> None:
    h = Harness()
    h.add("a")
    h.mixer.add("broken", AudioCodec.PCMU, RAW, lambda frame: 1 / 0)  # type: ignore[func-returns-value]
    h.add("listener")
    for _ in range(3):
        h.speak("a", 700)
        h.mixer.tick()
    assert h.heard("listener") == 700 and len(h.received["listener"]) == 3
    assert h.mixer.stats("broken").send_failures == 3  # type: ignore[union-attr]


def test_a_phone_sending_30_ms_frames_in_a_g711_room_does_not_break_the_8_khz_mix() -> None:
    """ptime 30 (240 samples a frame) beside 20 ms phones: the 8 kHz mix adds arrays of one size."""
    mixer = Mixer(max_speakers=3, jitter_min_ms=20)
    heard: dict[str, list[MixedFrame]] = {"p20": [], "p30": [], "listener": []}
    for name in heard:
        mixer.add(name, AudioCodec.PCMU, AudioFormat(AudioCodec.PCMU), heard[name].append)
    assert mixer.narrowband
    for i in range(20):
        mixer.push("p20", i, b"\x20" * 160, None, i * 0.02)
        mixer.push("p30", i, b"\x30" * 240, None, i * 0.02)
        mixer.tick()
    assert all(len(f.payload) == 160 for frames in heard.values() for f in frames)
    assert len(heard["listener"]) == 20


def test_a_tap_gets_the_full_mix_as_48_khz_pcm_without_the_muted() -> None:
    """What a recording or live stream takes: everyone the mix holds (no mix-minus), as PCM; a muted
    participant is not in it; an all-G.711 room mixes at 48 kHz while it has a tap; a tap that
    raises costs the participants nothing."""
    mixer = Mixer(max_speakers=3, jitter_min_ms=20)
    heard: dict[str, list[MixedFrame]] = {"a": [], "b": []}
    for name in heard:
        mixer.add(name, AudioCodec.PCMA, AudioFormat(AudioCodec.PCMA), heard[name].append)
    assert mixer.narrowband
    tapped: list[tuple[int, np.ndarray]] = []
    mixer.add_tap("recording", lambda tick, pcm: tapped.append((tick, pcm.copy())))
    mixer.add_tap("broken", lambda tick, pcm: 1 / 0)
    assert not mixer.narrowband
    encoders = {name: make_encoder(AudioFormat(AudioCodec.PCMA)) for name in heard}
    tones = {"a": tone(500.0, 60), "b": tone(1300.0, 60)}

    def run(ticks: range) -> None:
        for i in ticks:
            for name, pcm in tones.items():
                mixer.push(name, i, encoders[name].encode(pcm[(i % 60) * FRAME_SAMPLES : (i % 60 + 1) * FRAME_SAMPLES]), None, i * 0.02)
            mixer.tick()

    def peaks(frames: list[tuple[int, np.ndarray]]) -> set[int]:
        pcm = np.concatenate([f for _, f in frames[-25:]]).astype(np.float64)
        spectrum = np.abs(np.fft.rfft(pcm))
        hz = np.fft.rfftfreq(pcm.size, 1 / 48_000)
        return {int(round(h / 100) * 100) for h in hz[spectrum > spectrum.max() / 10]}

    run(range(0, 50))
    assert all(pcm.shape == (FRAME_SAMPLES,) and pcm.dtype == np.int16 for _, pcm in tapped)
    assert [tick for tick, _ in tapped] == list(range(1, 51))
    assert peaks(tapped) == {500, 1300}  # both speakers: the full mix
    assert len(heard["a"]) == 50 and mixer.tap_failures == 50  # (the broken tap cost nobody)
    mixer.set_muted("b", True)
    run(range(50, 100))
    assert peaks(tapped) == {500}  # muted: not in the recording either
    mixer.remove_tap("recording")
    mixer.remove_tap("broken")
    assert mixer.narrowband
