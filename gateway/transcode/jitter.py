"""Adaptive playout buffer for one inbound audio stream (one encoded frame per packet).

Protocol-free: it orders frames by their (16-bit, wrapping) sequence number, measures arrival
jitter the RFC 3550 way, and holds a playout delay between the configured bounds that follows the
jitter. The mixer pops one frame per tick; a missing frame pops as a loss to conceal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BufferedFrame:
    payload: bytes
    level_dbov: float | None  # from the RFC 6464 header extension when the sender set it


class Loss:
    """Returned by pop() when the frame due now never arrived (conceal it)."""


LOSS = Loss()


class AudioJitterBuffer:
    def __init__(self, frame_ms: int = 20, min_delay_ms: int = 20, max_delay_ms: int = 200) -> None:
        self._frame_s = frame_ms / 1000
        self._min_frames = max(1, math.ceil(min_delay_ms / frame_ms))
        self._max_frames = max(self._min_frames, math.ceil(max_delay_ms / frame_ms))
        self._frames: dict[int, BufferedFrame] = {}
        self._highest: int | None = None  # extended sequence number
        self._next: int | None = None  # extended sequence number due at the next pop
        self._buffering = True
        self._jitter_s = 0.0
        self._last_arrival: float | None = None
        self._last_seq: int | None = None
        self._seen: int | None = None  # the highest extended sequence number that arrived (observe)
        self.received = 0
        self.missing = 0  # packets the sequence numbers say were sent and never came (network loss)
        self.late = 0
        self.lost = 0
        self.dropped_to_catch_up = 0
        self.underruns = 0

    # -- input ----------------------------------------------------------------------------------

    @staticmethod
    def _extend(seq: int, near: int | None) -> int:
        """The extended sequence number of `seq` closest to `near` (wraps at 65536)."""
        if near is None:
            return seq
        base = near & ~0xFFFF
        candidates = (base - 0x10000 + seq, base + seq, base + 0x10000 + seq)
        return min(candidates, key=lambda c: abs(c - near))

    def observe(self, seq: int, arrival_s: float) -> int:
        """Counts a packet that arrived (received, jitter, the gaps in its sequence numbers) without
        buffering it: a muted participant's, whose connection is still measured. Returns its
        extended sequence number (one numbering for everything the buffer compares)."""
        ext = self._extend(seq & 0xFFFF, self._seen)
        self.received += 1
        if self._last_arrival is not None and self._last_seq is not None and abs(ext - self._last_seq) <= 3000:
            transit_diff = (arrival_s - self._last_arrival) - (ext - self._last_seq) * self._frame_s
            self._jitter_s += (abs(transit_diff) - self._jitter_s) / 16
        self._last_arrival, self._last_seq = arrival_s, ext
        if self._seen is None or abs(ext - self._seen) > 3000:
            self._seen = ext  # (the first packet, or the sender started its sequence over)
        elif ext > self._seen:
            self.missing += ext - self._seen - 1
            self._seen = ext
        elif self.missing:
            self.missing -= 1  # (a reordered packet filled a gap)
        return ext

    def put(self, seq: int, payload: bytes, level_dbov: float | None, arrival_s: float) -> None:
        ext = self.observe(seq, arrival_s)
        if self._next is not None and ext < self._next:
            self.late += 1
            return
        if self._highest is not None and ext - self._highest > 3000:
            # The sender restarted its sequence (or jumped): start over rather than wait for a minute.
            self.reset()
        if self._highest is None or ext > self._highest:
            self._highest = ext
        self._frames[ext] = BufferedFrame(payload, level_dbov)

    def reset(self) -> None:
        self._frames.clear()
        self._highest = self._next = None
        self._buffering = True

    # -- output ---------------------------------------------------------------------------------

    @property
    def target_frames(self) -> int:
        # round() first: a jitter of a few nanoseconds must not cost a whole frame of delay
        wanted = math.ceil(round(3 * self._jitter_s / self._frame_s, 3)) + 1
        return min(self._max_frames, max(self._min_frames, wanted))

    @property
    def depth(self) -> int:
        if self._highest is None or self._next is None:
            return len(self._frames)
        return self._highest - self._next + 1

    @property
    def jitter_ms(self) -> float:
        return self._jitter_s * 1000

    def pop(self) -> BufferedFrame | Loss | None:
        """The frame due at this tick, LOSS if it is missing, None while (re)buffering or idle."""
        if not self._frames:
            if not self._buffering and self._next is not None:
                self.underruns += 1
                self._buffering = True
            return None
        if self._buffering:
            first = min(self._frames)
            if self._highest is not None and self._highest - first + 1 < self.target_frames:
                return None
            self._buffering = False
            if self._next is None or self._next < first:
                self._next = first
        assert self._next is not None
        # Too much delay built up (a burst, or jitter fell): drop the oldest frame to catch up.
        if len(self._frames) > self.target_frames + 2 and self._next in self._frames:
            del self._frames[self._next]
            self._next += 1
            self.dropped_to_catch_up += 1
        frame = self._frames.pop(self._next, None)
        self._next += 1
        if frame is None:
            self.lost += 1
            return LOSS
        return frame
