"""The prompt matcher the e2e tests use to tell what a caller heard (tests/support/prompts.py),
checked on the shipped prompts themselves: each prompt is found where it was played, through the
G.711 a phone hears and a frame lost on the way; no other prompt reaches the threshold (except a
prompt whose words another says in full: "Goodbye." ends "The meeting has ended. Goodbye.")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.prompts import _G711, MATCH, find_prompt, load_prompt, prompt_names

RATE = 8000
TEXTS = Path(__file__).resolve().parents[3] / "scripts" / "prompts.tsv"


def through_g711(samples: np.ndarray) -> np.ndarray:
    """µ-law encode and decode (the nearest code of each sample), as a phone hears it."""
    table = _G711[0]
    order = np.argsort(table)
    ordered = table[order]
    at = np.clip(np.searchsorted(ordered, samples), 1, len(ordered) - 1)
    nearer = np.where(np.abs(ordered[at - 1] - samples) < np.abs(ordered[at] - samples), at - 1, at)
    return ordered[nearer]


def texts(language: str) -> dict[str, str]:
    lines = [line.split("\t") for line in TEXTS.read_text().splitlines() if line.strip()]
    return {name: text.strip().rstrip(".") for name, lang, text in lines if lang == language}


def says_in_full(language: str, name: str) -> set[str]:
    """The other prompts that contain all of `name`'s words."""
    words = texts(language)
    return {other for other, text in words.items() if other != name and words[name] in text}


def programme(language: str, names: list[str]) -> tuple[np.ndarray, dict[str, float]]:
    """The prompts one after another with pauses, quieter than shipped, and where each starts."""
    parts, starts, at = [], {}, 0
    for name in names:
        pause = np.zeros(int(0.7 * RATE))
        parts += [pause, 0.4 * load_prompt(name, RATE, language)]
        at += pause.size
        starts[name] = at / RATE
        at += parts[-1].size
    return through_g711(np.concatenate(parts + [np.zeros(RATE)])), starts


@pytest.mark.parametrize("language", ["en", "de"])
def test_each_prompt_is_found_where_it_was_played(language: str) -> None:
    names = prompt_names(language)
    assert len(names) >= 20 and "welcome" in names and "wrong_pin" in names
    recording, starts = programme(language, names)
    for name in names:
        found = find_prompt(recording, RATE, name, language)
        assert found.score >= 0.95, (name, found)
        assert abs(found.offset_s - starts[name]) < 0.01, (name, found, starts[name])


@pytest.mark.parametrize("language", ["en", "de"])
def test_a_lost_or_added_frame_does_not_hide_a_prompt(language: str) -> None:
    """A jitter buffer that drops a 20 ms frame, or plays one of silence, inside a prompt."""
    for name in ["welcome", "enter_pin", "wrong_pin", "unknown_conference", "meeting_locked", "host_muted_you"]:
        prompt = 0.4 * load_prompt(name, RATE, language)
        cut = prompt.size // 2
        dropped = np.concatenate((np.zeros(RATE), prompt[:cut], prompt[cut + 160 :], np.zeros(RATE)))
        added = np.concatenate((np.zeros(RATE), prompt[:cut], np.zeros(160), prompt[cut:], np.zeros(RATE)))
        for recording in (dropped, added):
            assert find_prompt(through_g711(recording), RATE, name, language).score >= MATCH + 0.1, name


@pytest.mark.parametrize("language", ["en", "de"])
def test_no_other_prompt_reaches_the_threshold(language: str) -> None:
    names = prompt_names(language)
    assert set(texts(language)) >= set(names) - {"hold_music"}
    scores = {}
    for name in names:
        others = [n for n in names if n != name and n not in says_in_full(language, name)]
        recording, _ = programme(language, others)
        scores[name] = find_prompt(recording, RATE, name, language).score
    too_close = {name: round(score, 2) for name, score in scores.items() if score >= MATCH}
    assert not too_close, f"prompts found where they were not played: {too_close}"
    # The near pairs stay well apart from a real match (muted / unmuted, locked / unlocked).
    assert max(scores.values()) < 0.5, scores


def test_silence_and_noise_match_nothing() -> None:
    rng = np.random.default_rng(7)
    for recording in (np.zeros(5 * RATE), rng.normal(0, 3000, 5 * RATE)):
        assert find_prompt(recording, RATE, "welcome").score < 0.3
