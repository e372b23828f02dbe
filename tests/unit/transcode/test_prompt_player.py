"""The prompt player: frames instead of the mix, loops, idle payload, done callbacks run once."""

from __future__ import annotations

from collections.abc import Callable

from gateway.transcode.prompt_player import PromptPlayer


class Deferred:
    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []

    def __call__(self, callback: Callable[[], None]) -> None:
        self.pending.append(callback)

    def run(self) -> None:
        pending, self.pending = self.pending, []
        for callback in pending:
            callback()


def test_a_prompt_plays_once_and_its_done_runs_later_not_inside_the_frame() -> None:
    deferred, changes, done = Deferred(), [], []
    player = PromptPlayer(deferred, lambda: changes.append(1))
    player.play([b"a", b"b"], done=lambda: done.append("prompt"))
    assert player.playing and changes == [1]
    assert player.next_frame() == b"a"
    assert player.next_frame() == b"b"
    assert done == [] and not player.playing  # deferred: the sender finishes its frame first
    deferred.run()
    assert done == ["prompt"]
    assert player.next_frame() is None  # the mix (or idle) goes out again
    deferred.run()
    assert done == ["prompt"]


def test_music_loops_and_a_new_prompt_ends_the_one_playing() -> None:
    deferred, done = Deferred(), []
    player = PromptPlayer(deferred)
    player.play([b"m1", b"m2"], loop=True, done=lambda: done.append("music"))
    assert [player.next_frame() for _ in range(5)] == [b"m1", b"m2", b"m1", b"m2", b"m1"]
    assert done == [] and player.playing
    player.play([b"p"], done=lambda: done.append("prompt"))
    assert done == ["music"]  # replaced: told at once
    player.stop()
    assert done == ["music", "prompt"] and player.next_frame() is None


def test_idle_payload_and_close() -> None:
    changes: list[int] = []
    player = PromptPlayer(Deferred(), lambda: changes.append(1))
    player.set_idle(b"\xd5" * 160)
    assert player.idle == b"\xd5" * 160 and not player.playing and changes == [1]
    done: list[bool] = []
    player.play([b"x"] * 3, done=lambda: done.append(True))
    player.close()
    assert done == [True] and not player.playing
