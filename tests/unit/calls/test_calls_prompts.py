"""The prompt catalogue (gateway.calls.prompts): shipped as package data, encoded once per codec."""

from __future__ import annotations

import pytest

from gateway.calls.prompts import Prompt, PromptLibrary
from gateway.transcode.audio import AudioCodec, AudioFormat


def test_every_prompt_ships_in_both_languages_and_encodes_for_every_codec() -> None:
    library = PromptLibrary()
    for prompt in Prompt:
        for language in ("de", "en"):
            assert 0.5 < library.duration_s(prompt, language) < 10, (prompt, language)
    for codec in AudioCodec:
        frames = library.frames(Prompt.WELCOME, "de", AudioFormat(codec))
        assert len(frames) == round(library.duration_s(Prompt.WELCOME, "de") * 50)
        assert library.frames(Prompt.WELCOME, "de", AudioFormat(codec)) is frames  # encoded once, shared
    assert library.duration_s("hold_music", "") == pytest.approx(12.0, abs=0.05)
