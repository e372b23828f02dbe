"""What a caller heard, checked against the prompts the gateway ships: a prompt file is decoded with
PyAV to mono at the recording's rate and searched for in the recording by normalised
cross-correlation (FFT). A prompt the caller heard scores near 1 at the offset it was heard; a
different prompt stays below MATCH (tests/unit/calls/test_prompt_matching.py checks both on the
shipped prompts themselves).

Also an RTP recorder for the raw SIP caller (sip_client.RawCaller): it decodes the G.711 the
gateway sends to the caller's RTP socket, so a test can tell what that caller heard.
"""

from __future__ import annotations

import functools
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import av
import numpy as np

from tests.support.baresip import Baresip, recording_so_far
from tests.support.gateway import RunningGateway, wait_until
from tests.support.sip_client import Dialog, RawCaller, Response

MATCH = 0.6  # a prompt counts as heard at or above this score

_PACKAGES = ("gateway.calls", "gateway.sip")  # where the prompts live now, and where they lived


@functools.cache
def prompt_directory() -> Path:
    """The folder that holds <language>/<name>.flac: found in the gateway package wherever it is."""
    for package in _PACKAGES:
        try:
            candidate = Path(str(resources.files(package) / "prompts"))
        except ModuleNotFoundError:
            continue
        if (candidate / "en" / "welcome.flac").is_file():
            return candidate
    gateway = Path(str(resources.files("gateway")))
    found = sorted(gateway.glob("**/prompts/en/welcome.flac"))
    assert found, f"no shipped prompts under {gateway}"
    return found[0].parent.parent


def prompt_names(language: str = "en") -> list[str]:
    return sorted(path.stem for path in (prompt_directory() / language).glob("*.flac"))


@functools.cache
def load_prompt(name: str, rate: int, language: str = "en") -> np.ndarray:
    """A shipped prompt as mono float samples (int16 scale) at `rate`."""
    path = prompt_directory() / language / f"{name}.flac"
    assert path.is_file(), f"no prompt {name!r} ({language}) at {path}"
    chunks = []
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        for frame in container.decode(audio=0):
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
        chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    samples = np.concatenate(chunks).astype(np.float64)
    # The trailing silence carries nothing to match on.
    loud = np.flatnonzero(np.abs(samples) > 0.01 * np.abs(samples).max())
    return samples[: loud[-1] + 1] if loud.size else samples


@dataclass(frozen=True)
class Found:
    score: float  # the peak normalised cross-correlation, -1..1
    offset_s: float  # where in the recording the prompt starts at that peak


def correlate(template: np.ndarray, recording: np.ndarray) -> np.ndarray:
    """Pearson correlation of `template` with every window of `recording` of its length."""
    m = template.size
    if recording.size < m:
        recording = np.concatenate((recording, np.zeros(m - recording.size)))
    t = template - template.mean()
    if not np.any(t):
        return np.zeros(recording.size - m + 1)
    n = 1 << int(np.ceil(np.log2(recording.size + m)))
    products = np.fft.irfft(np.fft.rfft(recording, n) * np.conj(np.fft.rfft(t, n)), n)[: recording.size - m + 1]
    sums = np.concatenate(([0.0], np.cumsum(recording)))
    squares = np.concatenate(([0.0], np.cumsum(recording * recording)))
    window_sum = sums[m:] - sums[:-m]
    window_energy = np.maximum(squares[m:] - squares[:-m] - window_sum * window_sum / m, 0.0)
    # A window of (near) digital silence correlates with nothing: a floor of one int16 step RMS.
    denominator = np.linalg.norm(t) * np.sqrt(np.maximum(window_energy, float(m)))
    return np.asarray(products / denominator)


def find_prompt(recording: np.ndarray, rate: int, name: str, language: str = "en") -> Found:
    """Where prompt `name` is best found in `recording` (mono samples at `rate`), and how well.

    The whole prompt correlated at once would let the words two prompts share carry the score
    ("your microphone is muted" / "... is on" reach 0.78): so the prompt is found as a whole, then
    followed piece by piece (CHUNK_S each, every piece searched within SLACK_S of where the one
    before it ended, which also absorbs a jitter buffer's dropped or added frames), and the score
    is the worst piece's. Pieces of near silence (pauses between sentences) are not scored."""
    template = load_prompt(name, rate, language)
    signal = np.asarray(recording, dtype=np.float64)
    if signal.size < template.size:
        signal = np.concatenate((signal, np.zeros(template.size - signal.size)))
    whole = correlate(template, signal)
    best = Found(-1.0, 0.0)
    for start in _peaks(whole, int(0.5 * rate), 5):
        score = _followed(template, signal, start, rate)
        if score > best.score:
            best = Found(score, start / rate)
    return best


CHUNK_S = 0.3
SLACK_S = 0.04


def _peaks(scores: np.ndarray, apart: int, count: int) -> list[int]:
    """The positions of the `count` highest scores at least `apart` from each other."""
    order = np.argsort(scores)[::-1]
    chosen: list[int] = []
    for position in order[: 50 * count]:
        if all(abs(int(position) - c) >= apart for c in chosen):
            chosen.append(int(position))
            if len(chosen) == count:
                break
    return chosen


def _followed(template: np.ndarray, signal: np.ndarray, start: int, rate: int) -> float:
    size, slack, step = int(CHUNK_S * rate), int(SLACK_S * rate), int(0.05 * rate)
    loudness = np.sqrt(np.mean(template * template))
    shift, worst = 0, 1.0
    for begin in range(0, template.size - size // 2, size):
        piece = template[begin : begin + size]
        if np.sqrt(np.mean(piece * piece)) < 0.25 * loudness:
            continue
        score, moved = _piece(piece, signal, start + begin + shift, slack)
        if score < 0.9:
            # A jitter buffer dropped or added a frame inside the piece: split there, and both
            # sides match on their own (tried at each 50 ms, each side at least 100 ms long).
            for split in range(2 * step, piece.size - 2 * step + 1, step):
                first, moved_first = _piece(piece[:split], signal, start + begin + shift, slack)
                second, moved_second = _piece(piece[split:], signal, start + begin + split + shift + moved_first, slack)
                if min(first, second) > score:
                    score, moved = min(first, second), moved_first + moved_second
        worst = min(worst, score)
        shift += moved
    return worst


def _piece(piece: np.ndarray, signal: np.ndarray, expected: int, slack: int) -> tuple[float, int]:
    """The best score of `piece` within `slack` of `expected`, and how far from it that was."""
    low = max(0, expected - slack)
    window = signal[low : expected + piece.size + slack]
    if window.size < piece.size:
        return -1.0, 0
    scores = correlate(piece, window)
    at = int(np.argmax(scores))
    return float(scores[at]), (low + at) - expected


def scores(recording: np.ndarray, rate: int, language: str = "en") -> dict[str, float]:
    """Every shipped prompt's best score in the recording (for messages that say what was heard)."""
    return {name: round(find_prompt(recording, rate, name, language).score, 2) for name in prompt_names(language)}


def heard(recording: np.ndarray, rate: int, name: str, language: str = "en") -> bool:
    return find_prompt(recording, rate, name, language).score >= MATCH


def assert_heard(recording: np.ndarray, rate: int, *names: str, language: str = "en", in_order: bool = True) -> list[Found]:
    """Asserts that each prompt is in the recording (and, by default, in this order)."""
    found = [find_prompt(recording, rate, name, language) for name in names]
    missing = [name for name, f in zip(names, found, strict=True) if f.score < MATCH]
    if missing:
        detail = {k: v for k, v in sorted(scores(recording, rate, language).items(), key=lambda kv: -kv[1])[:6]}
        raise AssertionError(
            f"the caller did not hear {missing} ({len(recording) / rate:.1f} s recorded); "
            f"best scores: {detail}; wanted {dict(zip(names, (round(f.score, 2) for f in found), strict=True))}"
        )
    if in_order:
        offsets = [f.offset_s for f in found]
        assert offsets == sorted(offsets), f"prompts heard out of order: {dict(zip(names, offsets, strict=True))}"
    return found


def assert_not_heard(recording: np.ndarray, rate: int, *names: str, language: str = "en") -> None:
    for name in names:
        found = find_prompt(recording, rate, name, language)
        assert found.score < MATCH, f"the caller heard {name!r} (score {found.score:.2f} at {found.offset_s:.1f} s)"


# -- what a raw SIP caller hears ---------------------------------------------------------------


def _ulaw_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.uint8)
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = ((mantissa.astype(np.int32) << 3) + 0x84) << exponent
    return np.where(codes & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.float64)


def _alaw_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.uint8) ^ 0x55
    exponent = (codes >> 4) & 0x07
    mantissa = (codes & 0x0F).astype(np.int32)
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(codes & 0x80, magnitude, -magnitude).astype(np.float64)


_G711 = {0: _ulaw_table(), 8: _alaw_table()}


class RtpRecorder:
    """Reads a caller's RTP socket in a thread and keeps the G.711 audio it receives."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.packets: list[tuple[int, int, bytes]] = []  # (payload type, timestamp, payload)
        self.sources: set[tuple[str, int]] = set()  # where the packets came from
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) < 12 or data[0] >> 6 != 2:
                continue
            pt = data[1] & 0x7F
            if pt not in _G711:
                continue  # telephone-event, comfort noise
            count = data[0] & 0x0F
            start = 12 + 4 * count
            if data[0] & 0x10 and len(data) >= start + 4:  # a header extension
                start += 4 + 4 * struct.unpack("!H", data[start + 2 : start + 4])[0]
            self.sources.add(source)
            self.packets.append((pt, struct.unpack("!I", data[4:8])[0], data[start:]))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def recording(self) -> tuple[np.ndarray, int]:
        """What the caller heard so far, as float samples at 8 kHz (packets in arrival order: on
        loopback that is the sending order, and a pause in sending is no pause in the recording)."""
        packets = list(self.packets)
        if not packets:
            return np.zeros(0), 8000
        return np.concatenate([_G711[pt][np.frombuffer(payload, dtype=np.uint8)] for pt, _, payload in packets]), 8000


class Phone:
    """A raw SIP caller from `host` that records what the gateway sends to its RTP socket."""

    def __init__(self, gateway: RunningGateway, host: str, number: str = "+4930555", display: str = "Caller") -> None:
        self.caller = RawCaller(gateway.sip_port, host=host, number=number, display=display)
        self.recorder = RtpRecorder(self.caller.rtp)
        self.dialog: Dialog | None = None

    def call(self, room: str, from_uri: str | None = None) -> Response:
        self.dialog, answer = self.caller.call(room, from_uri=from_uri)
        return answer

    def keys(self, keys: str) -> None:
        assert self.dialog is not None
        for key in keys:
            self.caller.info(self.dialog, f"Signal={key}\r\nDuration=160\r\n")
            time.sleep(0.15)

    def recording(self):  # type: ignore[no-untyped-def]
        return self.recorder.recording()

    def hears(self, prompt: str) -> bool:
        return heard(*self.recording(), prompt)

    def wait_to_hear(self, prompt: str, timeout: float = 20.0) -> None:
        wait_until(lambda: self.hears(prompt), timeout, interval=0.5, what=f"the caller to hear {prompt!r}")

    def hang_up(self) -> None:
        if self.dialog is not None and not any(r.method == "BYE" for r in self.caller.requests):
            try:
                self.caller.bye(self.dialog)
            except AssertionError:
                pass  # the gateway ended it meanwhile

    def close(self) -> None:
        self.hang_up()
        self.recorder.stop()
        self.caller.close()


@contextmanager
def phones() -> Iterator[list[Phone]]:
    made: list[Phone] = []
    try:
        yield made
    finally:
        for phone in made:
            phone.close()


def wait_heard(phone: Baresip, name: str, timeout: float = 15.0, language: str = "en") -> None:
    """Waits until baresip `phone` has heard the whole prompt `name` (a key pressed or an action
    taken before a prompt ends cuts it short, so tests wait for it before the next step)."""
    wait_until(lambda: heard(*recording_so_far(phone), name, language), timeout, interval=0.5, what=f"{name!r} heard")
