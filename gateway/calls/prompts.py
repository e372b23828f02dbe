"""The spoken prompts and hold music callers hear (SIP and H.323 phones and room systems), encoded
once per codec and shared.

The audio ships with the package (gateway/calls/prompts/, made once by scripts/make-prompts.sh); it is
decoded at start-up into 20 ms frames of the internal format, and each prompt is encoded the first
time a codec needs it. A call then only sends packets: a thousand callers hearing "welcome" cost one
encode per codec.
"""

from __future__ import annotations

import enum
from importlib import resources
from pathlib import Path

import av
import numpy as np

from gateway.transcode.audio import FRAME_SAMPLES, SAMPLE_RATE, AudioFormat, Pcm, make_encoder

HOLD_MUSIC = "hold_music"
LANGUAGES = ("de", "en")


class Prompt(enum.StrEnum):
    WELCOME = "welcome"
    ENTER_CONFERENCE = "enter_conference"
    UNKNOWN_CONFERENCE = "unknown_conference"
    ENTER_PIN = "enter_pin"
    ENTER_PIN_OPTIONAL = "enter_pin_optional"
    WRONG_PIN = "wrong_pin"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    WAITING_FOR_HOST = "waiting_for_host"
    JOINED = "joined"
    YOU_ARE_MUTED = "you_are_muted"
    YOU_ARE_UNMUTED = "you_are_unmuted"
    HOST_MUTED_YOU = "host_muted_you"
    UNMUTE_ALLOWED = "unmute_allowed"
    HAND_RAISED = "hand_raised"
    HAND_LOWERED = "hand_lowered"
    ALL_GUESTS_MUTED = "all_guests_muted"
    ALL_GUESTS_UNMUTED = "all_guests_unmuted"
    MEETING_LOCKED = "meeting_locked"
    MEETING_UNLOCKED = "meeting_unlocked"
    MEETING_FULL = "meeting_full"
    MEETING_ENDED = "meeting_ended"
    REMOVED = "removed"
    DENIED = "denied"
    NOT_ALLOWED = "not_allowed"
    GOODBYE = "goodbye"
    CLOSED = "closed"
    SHUTTING_DOWN = "shutting_down"
    RECORDING = "recording"  # "This meeting is being recorded." (when it starts, and to each newcomer)
    RECORDING_STOPPED = "recording_stopped"
    STREAMING = "streaming"  # "This meeting is being streamed live."
    STREAMING_STOPPED = "streaming_stopped"


def _decode(path: Path) -> list[Pcm]:
    """A sound file as 20 ms frames of 48 kHz mono s16 (the last one padded with silence)."""
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        chunks = []
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    pcm = np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, np.int16)
    pad = (-pcm.size) % FRAME_SAMPLES
    pcm = np.concatenate((pcm, np.zeros(pad, np.int16)))
    return [pcm[i : i + FRAME_SAMPLES] for i in range(0, pcm.size, FRAME_SAMPLES)]


class PromptLibrary:
    def __init__(self, directory: Path | None = None) -> None:
        root = directory or Path(str(resources.files("gateway.calls") / "prompts"))
        self._pcm: dict[tuple[str, str], list[Pcm]] = {}
        for language in LANGUAGES:
            for prompt in Prompt:
                path = root / language / f"{prompt.value}.flac"
                if not path.exists():
                    raise FileNotFoundError(f"prompt {prompt.value!r} ({language}) is missing: {path}")
                self._pcm[(prompt.value, language)] = _decode(path)
        self._pcm[(HOLD_MUSIC, "")] = _decode(root / f"{HOLD_MUSIC}.flac")
        self._encoded: dict[tuple[str, str, AudioFormat], list[bytes]] = {}

    def frames(self, prompt: Prompt | str, language: str, fmt: AudioFormat) -> list[bytes]:
        """The prompt's packets' payloads in `fmt`, encoded on first use and then shared."""
        name = str(prompt)
        key = (name, "" if name == HOLD_MUSIC else language, fmt)
        encoded = self._encoded.get(key)
        if encoded is None:
            encoder = make_encoder(fmt)  # fresh: a prompt always starts from a clean codec state
            encoded = [encoder.encode(pcm) for pcm in self._pcm[key[:2]]]
            self._encoded[key] = encoded
        return encoded

    def duration_s(self, prompt: Prompt | str, language: str) -> float:
        name = str(prompt)
        return len(self._pcm[(name, "" if name == HOLD_MUSIC else language)]) * FRAME_SAMPLES / SAMPLE_RATE
