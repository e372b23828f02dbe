"""Audio legs per core that the mixer sustains in real time, without network I/O.

For each codec (G.711 u-law legs as from phones, Opus legs as from browsers) and each room size N:
every 20 ms tick, every leg pushes one encoded frame (3 of them talking, the rest silent, as in a
real meeting), the mixer pops, picks the speakers, decodes only them, mixes, encodes the full mix
once per format plus a mix-minus per speaker, and hands every leg its frame. We measure the CPU
time per tick (process time, one core) and derive legs per core = legs that fit in 20 ms of CPU.

Opus legs carry RFC 6464 levels (browsers send them); G.711 legs do not (phones don't), so their
level is probed on the 8 kHz samples.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import print_table, write_results  # noqa: E402
from gateway.transcode.audio import FRAME_SAMPLES, AudioCodec, AudioFormat, make_encoder  # noqa: E402
from gateway.transcode.mixer import MixedFrame, Mixer  # noqa: E402

TALKERS = 3


def encoded_frames(codec: AudioCodec, hz: float, seconds: float = 2.0) -> list[bytes]:
    encoder = make_encoder(AudioFormat(codec))
    t = np.arange(int(48_000 * seconds)) / 48_000
    # a tone with a slow amplitude envelope, roughly speech-like in level
    pcm = (np.sin(2 * np.pi * hz * t) * (6000 + 4000 * np.sin(2 * np.pi * 3 * t))).astype(np.int16)
    return [encoder.encode(pcm[i : i + FRAME_SAMPLES]) for i in range(0, pcm.size - FRAME_SAMPLES + 1, FRAME_SAMPLES)]


def run(codec: AudioCodec, legs: int, ticks: int, talkers: int = TALKERS) -> dict[str, float]:
    fmt = AudioFormat(codec, 32_000, 5)
    mixer = Mixer(max_speakers=3, jitter_min_ms=20)
    delivered = [0]

    def sink(_frame: MixedFrame) -> None:
        delivered[0] += 1

    for i in range(legs):
        mixer.add(f"leg{i}", codec, fmt, sink)
    talk = [encoded_frames(codec, 300 + 150 * i) for i in range(min(talkers, 8))]
    silence = encoded_frames(codec, 0)[0] if codec is AudioCodec.OPUS else b"\xff" * 160
    with_levels = codec is AudioCodec.OPUS
    ids = [f"leg{i}" for i in range(legs)]
    costs = []
    for tick in range(ticks):
        began = time.process_time()
        for i, pid in enumerate(ids):
            if i < talkers:
                voice = talk[i % len(talk)]
                payload = voice[tick % len(voice)]
                level = -20.0 if with_levels else None
            else:
                payload = silence
                level = -127.0 if with_levels else None
            mixer.push(pid, tick, payload, level, tick * 0.02)
        mixer.tick()
        costs.append(time.process_time() - began)
    steady = costs[ticks // 5 :]
    mean = statistics.fmean(steady)
    return {
        "legs": legs,
        "tick_cpu_ms_mean": mean * 1000,
        "tick_cpu_ms_p99": sorted(steady)[int(len(steady) * 0.99)] * 1000,
        "us_per_leg": mean / legs * 1e6,
        "delivered_ratio": delivered[0] / (legs * ticks),
    }


def legs_per_core(points: list[dict[str, float]]) -> float:
    """Least-squares cost(N) = fixed + per_leg * N over the measured sizes, solved for 20 ms."""
    xs = np.array([p["legs"] for p in points])
    ys = np.array([p["tick_cpu_ms_mean"] for p in points])
    per_leg, fixed = np.polyfit(xs, ys, 1)
    return float((20.0 - fixed) / per_leg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=250)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 500])
    args = parser.parse_args()
    results: dict[str, object] = {"talkers": TALKERS, "ticks": args.ticks, "codecs": {}}
    rows = []
    goals = {AudioCodec.PCMU: 500, AudioCodec.OPUS: 200}
    for codec in (AudioCodec.PCMU, AudioCodec.OPUS):
        for scenario, talkers in (("3 talking", TALKERS), ("all talking", 10**6)):
            points = [run(codec, n, args.ticks, talkers) for n in args.sizes]
            capacity = legs_per_core(points)
            results["codecs"][f"{codec.value}, {scenario}"] = {  # type: ignore[index]
                "points": points,
                "legs_per_core": round(capacity),
                "goal": goals[codec],
            }
            for p in points:
                rows.append([codec.value, scenario, p["legs"], p["tick_cpu_ms_mean"], p["tick_cpu_ms_p99"], p["us_per_leg"], ""])
            rows.append([codec.value, scenario, "capacity", "", "", "", f"{capacity:.0f} legs/core (goal {goals[codec]})"])
    path = write_results("mixer", results)
    print_table(["codec", "scenario", "legs", "tick ms (mean)", "tick ms (p99)", "us/leg", "real-time capacity"], rows)
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
