"""Audio legs per core that the mixer sustains in real time, without network I/O.

For each codec (G.711 u-law legs as from phones, Opus legs as from browsers) and each room size N:
every 20 ms tick, every leg pushes one encoded frame (3 of them talking, the rest silent, as in a
real meeting), the mixer pops, picks the speakers, decodes only them, mixes, encodes the full mix
once per format plus a mix-minus per speaker, and hands every leg its frame. We measure the CPU
time of every tick (process time, one core) and report its p50, p99 and maximum per room size.

Capacity is read from the p99 tick, not the mean: the largest room size measured whose p99 tick CPU
stays under the 20 ms budget. Unless --no-search, sizes are searched (doubling, then bisection) for
where the p99 crosses the budget, so the capacity is a measured point, not an extrapolation. This
is the mixer alone, in one process, with no network I/O and no event loop: an upper bound for a
room, not the legs a gateway process carries (see bench/sip_legs.py and bench/webrtc_legs.py).

Opus legs carry RFC 6464 levels (browsers send them); G.711 legs do not (phones don't), so their
level is probed on the 8 kHz samples.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402
    add_common_arguments,
    import_gateway_from,
    print_table,
    tree_from_argv,
    write_results,
)

import_gateway_from(tree_from_argv())  # --tree: the gateway modules measured come from that tree

from gateway.transcode.audio import FRAME_SAMPLES, AudioCodec, AudioFormat, make_encoder  # noqa: E402
from gateway.transcode.mixer import MixedFrame, Mixer  # noqa: E402

TALKERS = 3
BUDGET_MS = 20.0  # one tick of 20 ms audio


def encoded_frames(codec: AudioCodec, hz: float, seconds: float = 2.0) -> list[bytes]:
    encoder = make_encoder(AudioFormat(codec))
    t = np.arange(int(48_000 * seconds)) / 48_000
    # a tone with a slow amplitude envelope, roughly speech-like in level
    pcm = (np.sin(2 * np.pi * hz * t) * (6000 + 4000 * np.sin(2 * np.pi * 3 * t))).astype(np.int16)
    return [encoder.encode(pcm[i : i + FRAME_SAMPLES]) for i in range(0, pcm.size - FRAME_SAMPLES + 1, FRAME_SAMPLES)]


def run(codec: AudioCodec, legs: int, ticks: int, talkers: int = TALKERS) -> dict[str, Any]:
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
    steady = sorted(costs[ticks // 5 :])
    mean = statistics.fmean(steady)

    def quantile(q: float) -> float:
        return steady[min(len(steady) - 1, int(len(steady) * q))] * 1000

    return {
        "legs": legs,
        "ticks_measured": len(steady),
        "tick_cpu_ms_mean": mean * 1000,
        "tick_cpu_ms_p50": quantile(0.50),
        "tick_cpu_ms_p99": quantile(0.99),
        "tick_cpu_ms_max": steady[-1] * 1000,
        "us_per_leg": mean / legs * 1e6,
        "us_per_leg_p99": quantile(0.99) * 1000 / legs,
        "within_budget": quantile(0.99) < BUDGET_MS,
        "delivered_ratio": delivered[0] / (legs * ticks),
    }


def capacity(measure: Callable[[int], dict[str, Any]], points: list[dict[str, Any]], search: bool, limit: int) -> dict[str, Any]:
    """Largest measured size with the p99 tick under budget; with `search`, sizes are added by
    doubling past the largest size under budget, then bisecting to within 5 %."""
    def fits() -> list[int]:
        return [p["legs"] for p in points if p["within_budget"]]

    def over() -> list[int]:
        return [p["legs"] for p in points if not p["within_budget"]]

    while search:
        if not over():  # all fit so far: double
            top = max(fits(), default=0)
            if top == 0 or top >= limit:
                break
            points.append(measure(min(top * 2, limit)))
            continue
        high = min(over())
        low = max((n for n in fits() if n < high), default=0)
        if low == 0 or high - low <= max(2, 0.05 * high):
            break
        points.append(measure((low + high) // 2))
    points.sort(key=lambda p: p["legs"])
    first_over = min(over(), default=None)
    under = [n for n in fits() if first_over is None or n < first_over]
    return {
        "legs_p99_under_budget": max(under, default=0),
        "first_legs_p99_over_budget": first_over,
        "bounded": first_over is not None,  # False: every size measured fits; capacity is at least that
        "searched": search,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=250)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 500])
    parser.add_argument("--no-search", dest="search", action="store_false", help="measure --sizes only")
    parser.add_argument("--max-legs", type=int, default=16_000, help="the search stops here")
    add_common_arguments(parser)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "talkers": TALKERS,
        "ticks": args.ticks,
        "budget_ms": BUDGET_MS,
        "capacity_from": "p99 tick CPU under the budget, measured sizes only",
        "codecs": {},
    }
    rows = []
    goals = {AudioCodec.PCMU: 500, AudioCodec.OPUS: 200}
    for codec in (AudioCodec.PCMU, AudioCodec.OPUS):
        for scenario, talkers in (("3 talking", TALKERS), ("all talking", 10**6)):
            def measure(n: int, codec: AudioCodec = codec, talkers: int = talkers) -> dict[str, Any]:
                return run(codec, n, args.ticks, talkers)

            points = [measure(n) for n in args.sizes]
            found = capacity(measure, points, args.search, args.max_legs)
            results["codecs"][f"{codec.value}, {scenario}"] = {"points": points, **found, "goal": goals[codec]}
            for p in points:
                rows.append([codec.value, scenario, p["legs"], f"{p['tick_cpu_ms_p50']:.3f}", f"{p['tick_cpu_ms_p99']:.3f}",
                             f"{p['tick_cpu_ms_max']:.3f}", f"{p['us_per_leg']:.2f}", "yes" if p["within_budget"] else "NO"])
            bound = "" if found["bounded"] else " (every size measured fits: at least)"
            rows.append([codec.value, scenario, "capacity", "", "", "", "",
                         f"{found['legs_p99_under_budget']} legs{bound}, goal {goals[codec]}"])  # fmt: skip
    path = write_results("mixer", results, args.json, args.tree)
    print_table(["codec", "scenario", "legs", "tick ms p50", "tick ms p99", "tick ms max", "us/leg (mean)",
                 f"p99 < {BUDGET_MS:.0f} ms"], rows)  # fmt: skip
    print(f"\nresults: {path} (capacity: the largest room size measured with its p99 tick under {BUDGET_MS:.0f} ms of CPU)")


if __name__ == "__main__":
    main()
