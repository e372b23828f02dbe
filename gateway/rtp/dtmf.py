"""RFC 4733 telephone-events: decode incoming DTMF (once per key press) and encode outgoing ones.

A key press is sent as several packets with the same RTP timestamp (its start), growing duration
and, at the end, the E bit, usually three times. The decoder reports each press once, when it
first sees it (so a lost end packet does not lose the digit), and ignores repeats and retransmits.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

EVENTS = "0123456789*#ABCD"


@dataclass(frozen=True)
class DtmfEvent:
    digit: str
    end: bool
    duration: int  # in RTP clock units
    volume: int  # dBm0 below 0 (0-63)


def decode(payload: bytes) -> DtmfEvent | None:
    """One telephone-event payload, or None when it is not a DTMF digit (other events, too short)."""
    if len(payload) < 4:
        return None
    event, flags, duration = struct.unpack("!BBH", payload[:4])
    if event >= len(EVENTS):
        return None
    return DtmfEvent(EVENTS[event], bool(flags & 0x80), duration, flags & 0x3F)


class DtmfReceiver:
    """Turns a stream of telephone-event packets into digits, each reported exactly once."""

    def __init__(self, remember: int = 32) -> None:
        self._seen: list[int] = []
        self._remember = remember

    def packet(self, payload: bytes, rtp_timestamp: int) -> str | None:
        """The digit when this packet starts a new press (the RTP timestamp identifies a press)."""
        event = decode(payload)
        if event is None or rtp_timestamp in self._seen:
            return None
        self._seen.append(rtp_timestamp)
        del self._seen[: -self._remember]
        return event.digit


def encode(digit: str, duration: int, end: bool, volume: int = 10) -> bytes:
    """One telephone-event payload for a digit (0-9, *, #, A-D)."""
    if len(digit) != 1 or digit.upper() not in EVENTS:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return struct.pack("!BBH", EVENTS.index(digit.upper()), (0x80 if end else 0) | (volume & 0x3F), duration & 0xFFFF)
