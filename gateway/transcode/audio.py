"""Audio codecs to and from the room's internal format: 48 kHz, mono, signed 16-bit, 20 ms frames.

Opus and G.722 go through PyAV (libopus, ffmpeg's g722); G.711 uses 256- and 65536-entry numpy
tables (faster than any codec call). Narrow- and wideband codecs are resampled with PyAV's
AudioResampler, one per decoder or encoder, so a stream's filter state is never shared.
"""

from __future__ import annotations

import enum
import fractions
import functools
import math
from dataclasses import dataclass
from typing import Protocol, cast, runtime_checkable

import av
import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 48_000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 960

Pcm = npt.NDArray[np.int16]
SILENCE: Pcm = np.zeros(FRAME_SAMPLES, dtype=np.int16)
SILENCE.setflags(write=False)
NARROW_RATE = 8_000
NARROW_FRAME_SAMPLES = NARROW_RATE * FRAME_MS // 1000  # 160: a G.711 frame, for rooms that mix at 8 kHz
NARROW_SILENCE: Pcm = np.zeros(NARROW_FRAME_SAMPLES, dtype=np.int16)
NARROW_SILENCE.setflags(write=False)
# The largest encoded frame taken from a sender: one Ethernet MTU. No 20 ms frame of the codecs we
# speak comes near it (G.711 160, G.722 160, Opus at most a few hundred bytes); a 64 KB UDP payload
# of G.722 would be 4 s of audio to decode and resample in one tick.
MAX_FRAME_BYTES = 1500


class MalformedFrame(ValueError):
    """An encoded frame no decoder should be given (empty: to libavcodec that means 'flush', after
    which the decoder refuses everything)."""


class AudioCodec(enum.StrEnum):
    OPUS = "opus"
    PCMU = "pcmu"
    PCMA = "pcma"
    G722 = "g722"
    # The room's own samples, big-endian (RFC 3551's L16 at 48 kHz, mono): only between the workers
    # of one machine (gateway/cluster/), where a codec would cost CPU and save nothing
    L16 = "l16"

    @property
    def sample_rate(self) -> int:
        """The rate the codec really samples at (not the RTP clock rate, which is 8000 for G.722)."""
        return {"opus": 48_000, "pcmu": 8_000, "pcma": 8_000, "g722": 16_000, "l16": 48_000}[self.value]


@dataclass(frozen=True)
class AudioFormat:
    """What an encoder produces; legs that share a format share one encode of the full mix."""

    codec: AudioCodec
    bitrate: int = 32_000
    complexity: int = 5


def level_dbov(pcm: Pcm) -> float:
    """RMS level in dBov (0 = full scale square wave, -127 = digital silence), as RFC 6464 counts it."""
    if pcm.size == 0:
        return -127.0
    samples = pcm.astype(np.float32)
    rms = math.sqrt(float(np.dot(samples, samples)) / pcm.size)
    if rms < 1.0:
        return -127.0
    return max(-127.0, 20.0 * math.log10(rms / 32768.0))


class AudioDecoder(Protocol):
    def probe_level(self, payload: bytes) -> float | None:
        """The frame's level in dBov if it is cheap to know without a full decode, else None."""
        ...

    def decode(self, payload: bytes) -> Pcm: ...

    def conceal(self) -> Pcm: ...


@runtime_checkable
class NarrowbandDecoder(Protocol):
    """A decoder that can also hand out its 8 kHz samples as they are (G.711)."""

    def decode_narrow(self, payload: bytes) -> Pcm: ...

    def conceal_narrow(self) -> Pcm: ...


@runtime_checkable
class NarrowbandEncoder(Protocol):
    def encode_narrow(self, pcm: Pcm) -> bytes: ...


class AudioEncoder(Protocol):
    def encode(self, pcm: Pcm) -> bytes: ...


# -- G.711 ----------------------------------------------------------------------------------------


def _ulaw_decode_table() -> Pcm:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_decode_table() -> Pcm:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


def _encode_table(decode_table: Pcm) -> npt.NDArray[np.uint8]:
    """For every int16 value, the code whose decoded value is nearest (exact inverse on the grid)."""
    order = np.argsort(decode_table.astype(np.int32), kind="stable")
    levels = decode_table[order].astype(np.int32)
    values = np.arange(-32768, 32768, dtype=np.int32)
    idx = np.clip(np.searchsorted(levels, values), 1, len(levels) - 1)
    nearer_low = (values - levels[idx - 1]) <= (levels[idx] - values)
    best = np.where(nearer_low, idx - 1, idx)
    # Indexed by the int16 sample's bit pattern (a uint16 view), so encoding needs no arithmetic.
    return np.roll(order[best].astype(np.uint8), 32768)


_ULAW_DEC = _ulaw_decode_table()
_ALAW_DEC = _alaw_decode_table()
_ULAW_ENC = _encode_table(_ULAW_DEC)
_ALAW_ENC = _encode_table(_ALAW_DEC)


class _Resampler:
    """PyAV resampler from one mono s16 rate to another, fed and drained in whole frames."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self._from = from_rate
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=to_rate)
        self._pts = 0

    def __call__(self, pcm: Pcm) -> Pcm:
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self._from
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self._from)
        self._pts += pcm.size
        # the resampler was made for s16 output
        out = [cast(Pcm, f.to_ndarray().reshape(-1)) for f in self._resampler.resample(frame)]
        if not out:
            return np.zeros(0, dtype=np.int16)
        return out[0] if len(out) == 1 else np.concatenate(out)


class _FrameFitter:
    """Keeps a resampler's output at exactly one frame per call (it lags by a few samples at first)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._pending = np.zeros(0, dtype=np.int16)

    def __call__(self, pcm: Pcm) -> Pcm:
        if self._pending.size == 0 and pcm.size == self._size:
            return pcm
        data = np.concatenate((self._pending, pcm)) if self._pending.size else pcm
        if data.size < self._size:
            self._pending = data
            return np.concatenate((np.zeros(self._size - data.size, dtype=np.int16), data))
        self._pending = data[self._size :]
        if self._pending.size > self._size:  # never let latency build up
            self._pending = self._pending[-self._size :]
        return data[: self._size]


class _Concealing:
    """Loss concealment shared by the decoders: the last frame once at half level, then silence."""

    _last: Pcm = SILENCE
    _concealed = 0

    def _remember(self, pcm: Pcm) -> Pcm:
        self._last = pcm
        self._concealed = 0
        return pcm

    def conceal(self) -> Pcm:
        return self._conceal(SILENCE)

    def _conceal(self, silence: Pcm) -> Pcm:
        self._concealed += 1
        if self._concealed == 1 and self._last.size == silence.size:
            return (self._last >> 1).astype(np.int16)
        return silence


class G711Decoder(_Concealing):
    def __init__(self, codec: AudioCodec) -> None:
        self._table = _ULAW_DEC if codec is AudioCodec.PCMU else _ALAW_DEC
        self._up = _Resampler(8_000, SAMPLE_RATE)
        self._fit = _FrameFitter(FRAME_SAMPLES)
        self._fit_narrow = _FrameFitter(NARROW_FRAME_SAMPLES)

    def probe_level(self, payload: bytes) -> float:
        return level_dbov(self._table[np.frombuffer(payload, dtype=np.uint8)])

    def decode(self, payload: bytes) -> Pcm:
        if not payload:
            raise MalformedFrame("empty G.711 frame")
        narrow = self._table[np.frombuffer(payload, dtype=np.uint8)]
        return self._remember(self._fit(self._up(narrow)))

    # A room whose every member speaks G.711 mixes at 8 kHz: no resampling at all (the largest cost
    # of a phone conference otherwise: ~25 us per resample, 7 per room and tick). Frames of another
    # length (a 30 ms ptime) are fitted to 20 ms, as the wideband path does, so the mix never meets
    # arrays of different sizes.
    def decode_narrow(self, payload: bytes) -> Pcm:
        if not payload:
            raise MalformedFrame("empty G.711 frame")
        return self._remember(self._fit_narrow(self._table[np.frombuffer(payload, dtype=np.uint8)]))

    def conceal_narrow(self) -> Pcm:
        return self._conceal(NARROW_SILENCE)


class G711Encoder:
    def __init__(self, codec: AudioCodec) -> None:
        self._table = _ULAW_ENC if codec is AudioCodec.PCMU else _ALAW_ENC
        self._down = _Resampler(SAMPLE_RATE, 8_000)
        self._fit = _FrameFitter(FRAME_SAMPLES // 6)

    def encode(self, pcm: Pcm) -> bytes:
        narrow = self._fit(self._down(pcm))
        return self._table[narrow.view(np.uint16)].tobytes()

    def encode_narrow(self, pcm: Pcm) -> bytes:
        return self._table[pcm.view(np.uint16)].tobytes()


class _PyAvDecoder(_Concealing):
    def __init__(self, name: str, rate: int) -> None:
        self._ctx = cast(av.AudioCodecContext, av.CodecContext.create(name, "r"))
        self._ctx.sample_rate = rate
        self._ctx.layout = "mono"
        self._up = _Resampler(rate, SAMPLE_RATE) if rate != SAMPLE_RATE else None
        self._fit = _FrameFitter(FRAME_SAMPLES)

    def probe_level(self, payload: bytes) -> None:
        return None

    def decode(self, payload: bytes) -> Pcm:
        """Raises on a frame the codec cannot read (av.error.InvalidDataError, MalformedFrame): the
        mixer conceals and counts it; the decoder itself carries on with the next one."""
        if not payload:
            raise MalformedFrame("empty frame")
        frames = self._ctx.decode(av.Packet(payload))
        if not frames:
            return self.conceal()
        parts = [f.to_ndarray() for f in frames]
        pcm: npt.NDArray[np.generic] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        if pcm.dtype != np.int16:  # planar float from some decoders
            pcm = np.clip(pcm.astype(np.float32) * 32768.0, -32768, 32767).astype(np.int16)
        mono = pcm[0] if pcm.shape[0] == 1 else pcm.mean(axis=0).astype(np.int16)
        if self._up is not None:
            mono = self._up(mono)
        return self._remember(self._fit(mono))


class OpusDecoder(_PyAvDecoder):
    def __init__(self) -> None:
        super().__init__("libopus", SAMPLE_RATE)


class G722Decoder(_PyAvDecoder):
    def __init__(self) -> None:
        super().__init__("g722", 16_000)


class _PyAvEncoder:
    def __init__(self, name: str, rate: int, bitrate: int | None, options: dict[str, str]) -> None:
        ctx = cast(av.AudioCodecContext, av.CodecContext.create(name, "w"))
        ctx.sample_rate = rate
        ctx.layout = "mono"
        ctx.format = "s16"
        if bitrate:
            ctx.bit_rate = bitrate
        ctx.time_base = fractions.Fraction(1, rate)
        ctx.options = options
        ctx.open()
        self._ctx = ctx
        self._rate = rate
        self._down = _Resampler(SAMPLE_RATE, rate) if rate != SAMPLE_RATE else None
        self._fit = _FrameFitter(rate * FRAME_MS // 1000)
        self._pts = 0

    def encode(self, pcm: Pcm) -> bytes:
        if self._down is not None:
            pcm = self._fit(self._down(pcm))
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self._rate
        frame.pts = self._pts
        self._pts += pcm.size
        return b"".join(bytes(p) for p in self._ctx.encode(frame))


class OpusEncoder(_PyAvEncoder):
    def __init__(self, bitrate: int = 32_000, complexity: int = 5) -> None:
        super().__init__(
            "libopus",
            SAMPLE_RATE,
            bitrate,
            {"application": "voip", "frame_duration": str(FRAME_MS), "compression_level": str(complexity)},
        )


class G722Encoder(_PyAvEncoder):
    def __init__(self) -> None:
        super().__init__("g722", 16_000, None, {})


L16_FRAME_BYTES = FRAME_SAMPLES * 2
L16_NARROW_FRAME_BYTES = NARROW_FRAME_SAMPLES * 2


class L16Decoder(_Concealing):
    """The samples as they are, at 48 kHz (1920 bytes) or, from a room that mixes at 8 kHz (every
    member G.711), at 8 kHz (320 bytes): resampled only where the two rooms' rates differ."""

    def __init__(self) -> None:
        self._up = _Resampler(8_000, SAMPLE_RATE)
        self._fit = _FrameFitter(FRAME_SAMPLES)
        self._down = _Resampler(SAMPLE_RATE, 8_000)
        self._fit_narrow = _FrameFitter(NARROW_FRAME_SAMPLES)

    def probe_level(self, payload: bytes) -> float | None:
        return None  # (decoding is as cheap as probing)

    @staticmethod
    def _samples(payload: bytes) -> Pcm:
        if len(payload) not in (L16_FRAME_BYTES, L16_NARROW_FRAME_BYTES):
            raise MalformedFrame(f"an L16 frame of {len(payload)} bytes, not {L16_FRAME_BYTES} or {L16_NARROW_FRAME_BYTES}")
        return np.frombuffer(payload, dtype=">i2").astype(np.int16)

    def decode(self, payload: bytes) -> Pcm:
        pcm = self._samples(payload)
        return self._remember(pcm if pcm.size == FRAME_SAMPLES else self._fit(self._up(pcm)))

    def decode_narrow(self, payload: bytes) -> Pcm:
        pcm = self._samples(payload)
        return self._remember(pcm if pcm.size == NARROW_FRAME_SAMPLES else self._fit_narrow(self._down(pcm)))

    def conceal_narrow(self) -> Pcm:
        return self._conceal(NARROW_SILENCE)


class L16Encoder:
    def encode(self, pcm: Pcm) -> bytes:
        return pcm.astype(">i2").tobytes()

    encode_narrow = encode  # (the samples as they are, at whichever rate the room mixes)


def make_decoder(codec: AudioCodec) -> AudioDecoder:
    if codec is AudioCodec.L16:
        return L16Decoder()
    if codec is AudioCodec.OPUS:
        return OpusDecoder()
    if codec is AudioCodec.G722:
        return G722Decoder()
    return G711Decoder(codec)


def make_encoder(fmt: AudioFormat) -> AudioEncoder:
    if fmt.codec is AudioCodec.L16:
        return L16Encoder()
    if fmt.codec is AudioCodec.OPUS:
        return OpusEncoder(fmt.bitrate, fmt.complexity)
    if fmt.codec is AudioCodec.G722:
        return G722Encoder()
    return G711Encoder(fmt.codec)


@functools.cache
def silence_payload(fmt: AudioFormat) -> bytes:
    """One frame of silence encoded as `fmt`: what a leg sends while nothing else is to be sent."""
    return make_encoder(fmt).encode(SILENCE)
