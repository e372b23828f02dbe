"""The room's audio mixer: one tick per 20 ms, the N loudest unmuted speakers, mix-minus for them.

Sans-IO and protocol-free: legs push encoded frames in (`push`), a clock calls `tick()`, and each
tick hands every listener its encoded frame through the sink it registered. Per tick:

1. one frame is popped from every participant's jitter buffer; a muted participant's frame is
   dropped here, before anything else (moderator mute is enforced on the media, not the UI);
2. levels come from the RFC 6464 header value when the sender set it, or a cheap probe (G.711),
   or a decode; the N loudest above the floor (with a hangover, so speech tails are kept) are
   the speakers; only they are decoded (and resampled);
3. the full mix is encoded once per output format and the same bytes go to every non-speaker;
   each speaker gets its own mix-minus (everyone but itself), encoded just for it; a tap (a
   recording, a live stream: `add_tap`) gets the full mix as 48 kHz PCM, not encoded here.

So the cost grows with the number of legs (a pop each) plus N decodes and (formats + N) encodes,
never with legs squared. A room whose every member sends and hears G.711 mixes at 8 kHz: no
resampling at all, the largest cost of a phone conference at 48 kHz.

Frames come from the network and are untrusted: an empty or oversized one is dropped at `push`, one
the codec cannot decode is concealed like a lost one; both are counted (`frames_malformed`). Neither
raises out of `tick`, so one sender's garbage never costs anyone else's audio or the tick.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import structlog

from gateway.transcode.audio import (
    FRAME_MS,
    FRAME_SAMPLES,
    L16_FRAME_BYTES,
    MAX_FRAME_BYTES,
    NARROW_FRAME_SAMPLES,
    NARROW_SILENCE,
    SILENCE,
    AudioCodec,
    AudioDecoder,
    AudioEncoder,
    AudioFormat,
    NarrowbandDecoder,
    NarrowbandEncoder,
    Pcm,
    level_dbov,
    make_decoder,
    make_encoder,
)
from gateway.transcode.jitter import LOSS, AudioJitterBuffer, BufferedFrame

log = structlog.get_logger(__name__)

# (L16: a link between the workers of one machine, which carries 8 kHz samples from such a room)
_NARROW_CODECS = (AudioCodec.PCMU, AudioCodec.PCMA, AudioCodec.L16)


@dataclass(frozen=True, slots=True)
class MixedFrame:
    """One tick's encoded output for a listener. `payload` is shared between listeners of a format."""

    payload: bytes
    tick: int
    format: AudioFormat
    speech: bool  # someone (other than the listener) is in this mix: the start of a talkspurt is marked


Sink = Callable[[MixedFrame], None]
PcmSink = Callable[[int, Pcm], None]  # (tick, the full mix: 48 kHz mono, one 20 ms frame)


@dataclass
class InputStats:
    packets_in: int = 0
    frames_mixed: int = 0
    frames_dropped_muted: int = 0
    frames_lost: int = 0
    frames_decoded: int = 0
    frames_malformed: int = 0  # empty, oversized or undecodable: concealed
    frames_out: int = 0
    send_failures: int = 0  # the listener's sink raised
    level_dbov: float = -127.0


@dataclass
class _Member:
    id: str
    input_codec: AudioCodec
    output: AudioFormat
    sink: Sink | None
    jitter: AudioJitterBuffer
    decoder: AudioDecoder
    max_frame_bytes: int  # (a frame larger than this is refused as it comes in)
    muted: bool = False
    last_active_tick: int = -(10**9)
    speaking: bool = False  # voice activity, with hangover: what the room shows
    mixed: bool = False  # among the N mixed at the last tick
    own_encoder: AudioEncoder | None = None
    # Set when the level a sender claims (RFC 6464) proved far louder than its decoded audio: from
    # then on its level is measured, so a modified client cannot hold a speaker slot by claiming.
    claims_untrusted: bool = False
    stats: InputStats = field(default_factory=InputStats)


@dataclass(frozen=True)
class TickResult:
    tick: int
    speakers: tuple[str, ...]  # mixed at this tick
    speaking_changed: tuple[tuple[str, bool], ...]


class Mixer:
    def __init__(
        self,
        max_speakers: int = 3,
        speaker_floor_dbov: float = -60.0,
        speaker_hangover_ms: int = 300,
        jitter_min_ms: int = 40,
        jitter_max_ms: int = 200,
        encoder_factory: Callable[[AudioFormat], AudioEncoder] = make_encoder,
        decoder_factory: Callable[[AudioCodec], AudioDecoder] = make_decoder,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        self.max_speakers = max_speakers
        self.max_frame_bytes = max_frame_bytes
        self.floor = speaker_floor_dbov
        self._hangover_ticks = speaker_hangover_ms // FRAME_MS
        self._jitter_bounds = (jitter_min_ms, jitter_max_ms)
        self._make_encoder = encoder_factory
        self._make_decoder = decoder_factory
        self._members: dict[str, _Member] = {}
        self._taps: dict[str, PcmSink] = {}
        self.tap_failures = 0
        self._shared_encoders: dict[AudioFormat, AudioEncoder] = {}
        self.tick_count = 0
        self.encodes_last_tick = 0
        self.decodes_last_tick = 0
        self.narrowband = False  # every member speaks and hears G.711: the room mixes at 8 kHz

    # -- membership -----------------------------------------------------------------------------

    def add(self, id: str, input_codec: AudioCodec, output: AudioFormat, sink: Sink | None) -> None:
        """A participant that sends `input_codec` and listens in `output` through `sink` (None: deaf)."""
        self._members[id] = _Member(
            id=id,
            input_codec=input_codec,
            output=output,
            sink=sink,
            jitter=AudioJitterBuffer(FRAME_MS, *self._jitter_bounds),
            decoder=self._make_decoder(input_codec),
            # (L16, a link between workers, carries the samples: larger than any codec's frame)
            max_frame_bytes=L16_FRAME_BYTES if input_codec is AudioCodec.L16 else self.max_frame_bytes,
        )
        self._choose_rate()

    def remove(self, id: str) -> None:
        self._members.pop(id, None)
        still_used = {m.output for m in self._members.values()}
        for fmt in list(self._shared_encoders):
            if fmt not in still_used:
                del self._shared_encoders[fmt]
        self._choose_rate()

    def add_tap(self, id: str, sink: PcmSink) -> None:
        """A listener of the full mix as PCM (48 kHz mono, every tick, silence included): what the
        room's recording and live stream carry. It is nobody's mix-minus, and muted participants
        are not in it (the mixer's mute is the only one). A room with a tap mixes at 48 kHz."""
        self._taps[id] = sink
        self._choose_rate()

    def remove_tap(self, id: str) -> None:
        self._taps.pop(id, None)
        self._choose_rate()

    def _shared_encoder(self, fmt: AudioFormat) -> AudioEncoder:
        encoder = self._shared_encoders.get(fmt)
        if encoder is None:
            encoder = self._shared_encoders[fmt] = self._make_encoder(fmt)
        return encoder

    def _choose_rate(self) -> None:
        members = list(self._members.values())
        self.narrowband = bool(members) and not self._taps and all(
            m.input_codec in _NARROW_CODECS
            and m.output.codec in _NARROW_CODECS
            and isinstance(m.decoder, NarrowbandDecoder)
            and isinstance(self._shared_encoder(m.output), NarrowbandEncoder)
            for m in members
        )

    def __contains__(self, id: str) -> bool:
        return id in self._members

    def __len__(self) -> int:
        return len(self._members)

    def set_muted(self, id: str, muted: bool) -> None:
        member = self._members.get(id)
        if member is not None:
            member.muted = muted
            if muted:
                # Nothing buffered before the mute may leak out after it.
                member.jitter.reset()

    def stats(self, id: str) -> InputStats | None:
        member = self._members.get(id)
        return member.stats if member else None

    def jitter(self, id: str) -> AudioJitterBuffer | None:
        member = self._members.get(id)
        return member.jitter if member else None

    # -- input ----------------------------------------------------------------------------------

    def push(self, id: str, seq: int, payload: bytes, level_dbov: float | None, arrival_s: float) -> None:
        member = self._members.get(id)
        if member is None:
            return
        member.stats.packets_in += 1
        if member.muted:
            member.stats.frames_dropped_muted += 1
            member.jitter.observe(seq, arrival_s)  # (not played, but its connection is still measured)
            return
        if not payload or len(payload) > member.max_frame_bytes:
            self._malformed(member, "empty" if not payload else "oversized")
            return  # (it plays out as a lost frame: concealed)
        member.jitter.put(seq, payload, level_dbov, arrival_s)

    # -- the tick -------------------------------------------------------------------------------

    def tick(self) -> TickResult:
        self.tick_count += 1
        tick = self.tick_count
        frames: list[tuple[_Member, BufferedFrame | None, float, Pcm | None]] = []
        for member in self._members.values():
            if member.muted:
                continue
            popped = member.jitter.pop()
            if popped is None and tick - member.last_active_tick > self._hangover_ticks:
                continue
            if popped is None or popped is LOSS:
                # A talker whose frame is late or lost stays a speaker (concealed): dropping out of the
                # speakers for a tick would switch it to the shared full-mix stream, whose encoder still
                # holds the talker's own voice from the tick before (codec look-ahead), an audible echo.
                if popped is LOSS:
                    member.stats.frames_lost += 1
                if tick - member.last_active_tick <= self._hangover_ticks:
                    frames.append((member, None, member.stats.level_dbov, None))
                continue
            assert isinstance(popped, BufferedFrame)
            level, pcm = (None if member.claims_untrusted else popped.level_dbov), None
            if level is None:
                level = member.decoder.probe_level(popped.payload)
            if level is None:
                pcm = self._decode(member, popped.payload)
                member.stats.frames_decoded += 1
                level = level_dbov(pcm)
            member.stats.level_dbov = level
            if level >= self.floor:
                member.last_active_tick = tick
            frames.append((member, popped, level, pcm))

        # The N loudest among those active now or within the hangover. Those already in the mix get
        # a 6 dB head start, so near-equal voices do not flap in and out (and swap encoders) per tick.
        eligible = [f for f in frames if tick - f[0].last_active_tick <= self._hangover_ticks]
        eligible.sort(key=lambda f: f[2] + (6.0 if f[0].mixed else 0.0), reverse=True)
        chosen = eligible[: self.max_speakers]

        decodes = 0
        voices: list[tuple[_Member, Pcm]] = []
        for member, frame, _level, pcm in chosen:
            if pcm is None:
                if frame is None:
                    pcm = self._conceal(member)
                else:
                    pcm = self._decode(member, frame.payload)
                    member.stats.frames_decoded += 1
                    decodes += 1
                    if frame.level_dbov is not None and frame.level_dbov - level_dbov(pcm) > 20:
                        member.claims_untrusted = True
            member.stats.frames_mixed += 1
            voices.append((member, pcm))
        self.decodes_last_tick = decodes

        mixed_ids = {m.id for m, _ in voices}
        changed = []
        for member in self._members.values():
            member.mixed = member.id in mixed_ids
            speaking = not member.muted and tick - member.last_active_tick <= self._hangover_ticks
            if speaking != member.speaking:
                member.speaking = speaking
                changed.append((member.id, speaking))

        self._deliver(tick, voices)
        return TickResult(tick, tuple(m.id for m, _ in voices), tuple(changed))

    # (narrowband is only chosen when every decoder and encoder of the room can do it)
    def _decode(self, member: _Member, payload: bytes) -> Pcm:
        try:
            if self.narrowband:
                pcm = cast(NarrowbandDecoder, member.decoder).decode_narrow(payload)
            else:
                pcm = member.decoder.decode(payload)
        except Exception as exc:  # whatever a codec raises on garbage: this sender's problem only
            self._malformed(member, f"{type(exc).__name__}: {exc}")
            return self._conceal(member)
        if pcm.shape != ((NARROW_FRAME_SAMPLES if self.narrowband else FRAME_SAMPLES),):
            self._malformed(member, f"decoded to {pcm.shape} samples")  # would break the sum of the mix
            return self._conceal(member)
        return pcm

    def _malformed(self, member: _Member, why: str) -> None:
        member.stats.frames_malformed += 1
        if member.stats.frames_malformed == 1:  # once per participant; the counter tells the rest
            log.warning("malformed audio frame concealed", participant=member.id, why=why)

    def _conceal(self, member: _Member) -> Pcm:
        if self.narrowband:
            return cast(NarrowbandDecoder, member.decoder).conceal_narrow()
        return member.decoder.conceal()

    def _encode(self, encoder: AudioEncoder, pcm: Pcm) -> bytes:
        if self.narrowband:
            return cast(NarrowbandEncoder, encoder).encode_narrow(pcm)
        return encoder.encode(pcm)

    def _deliver(self, tick: int, voices: list[tuple[_Member, Pcm]]) -> None:
        encodes = 0
        if voices:
            total = np.sum([pcm for _, pcm in voices], axis=0, dtype=np.int32)
            full = np.clip(total, -32768, 32767).astype(np.int16)
        else:
            total, full = None, (NARROW_SILENCE if self.narrowband else SILENCE)
        shared: dict[AudioFormat, MixedFrame] = {}
        speakers = {m.id: pcm for m, pcm in voices}
        for member in self._members.values():
            if member.sink is None:
                continue
            own = speakers.get(member.id)
            if own is not None and total is not None:
                if member.own_encoder is None:
                    member.own_encoder = self._make_encoder(member.output)
                minus = np.clip(total - own, -32768, 32767).astype(np.int16)
                out = MixedFrame(self._encode(member.own_encoder, minus), tick, member.output, len(voices) > 1)
                encodes += 1
            else:
                out = shared.get(member.output)  # type: ignore[assignment]
                if out is None:
                    encoder = self._shared_encoder(member.output)
                    out = MixedFrame(self._encode(encoder, full), tick, member.output, bool(voices))
                    shared[member.output] = out
                    encodes += 1
            member.stats.frames_out += 1
            try:
                member.sink(out)
            except Exception:  # one listener's broken leg must not cost the listeners after it
                member.stats.send_failures += 1
                if member.stats.send_failures == 1:
                    log.exception("sending mixed audio failed", participant=member.id)
        for id, tap in self._taps.items():
            try:
                tap(tick, full)
            except Exception:  # a broken recording must not cost the meeting its sound
                self.tap_failures += 1
                if self.tap_failures == 1:
                    log.exception("handing the mix to a tap failed", tap=id)
        self.encodes_last_tick = encodes
