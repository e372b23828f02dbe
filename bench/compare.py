"""Two versions of the gateway, one benchmark, one run: ratios measured on the same machine.

    python bench/compare.py REVISION BENCH [--rounds N] [--new PATH] [-- bench arguments]

The gateway at REVISION (any git revision: a commit, a tag, HEAD~3) is extracted read-only with
`git archive` into a directory under /tmp (the repository, its index and its work trees are not
touched); the other side is this checkout as it is (uncommitted changes included) or `--new PATH`.
BENCH (mixer, sip_legs, webrtc_legs, sip_setup) then runs alternately against the two trees, old
and new, `--rounds` times (A B A B ...), each run with this checkout's benchmark code and `--tree`
pointing at the gateway measured, so drift of the machine's load hits both sides alike. The
figures that say "worse" (CPU per leg, p99 tick or set-up time, late ticks, RTP lost at the
receiver, failed calls) are printed per side as the median and range over the rounds, with the
ratio new / old of the medians, and written to bench/results/compare_<bench>.json together with
every run's own JSON.

The issue's before/after check is:
    python bench/compare.py <before> mixer -- --no-search
    python bench/compare.py <before> sip_legs -- --legs 200
    python bench/compare.py <before> webrtc_legs -- --sizes 50
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import RESULTS, REVISION_FILE, ROOT, git_state, machine, print_table  # noqa: E402

Metrics = dict[str, float]


def _mixer(doc: dict[str, Any]) -> Metrics:
    out: Metrics = {}
    for scenario, data in doc["codecs"].items():
        for p in data["points"]:
            out[f"{scenario}, {p['legs']} legs: tick CPU p99 ms"] = p["tick_cpu_ms_p99"]
            out[f"{scenario}, {p['legs']} legs: tick CPU mean us/leg"] = p["us_per_leg"]
        if data.get("searched"):
            out[f"{scenario}: legs with p99 under budget (higher is better)"] = data["legs_p99_under_budget"]
    return out


def _sip_legs(doc: dict[str, Any]) -> Metrics:
    out: Metrics = {}
    for p in doc["points"]:
        n = p["legs"]
        out[f"{n} legs: gateway CPU % of a core per leg"] = p["cpu_percent_per_leg"]
        out[f"{n} legs: late ticks %"] = p["late_tick_percent"]
        out[f"{n} legs: max tick lateness ms (run)"] = p["max_lateness_ms_since_start"]
        out[f"{n} legs: RTP to phones lost (at the phones)"] = p["rtp_to_phones_lost"]
        out[f"{n} legs: RTP to phones received, min leg (higher is better)"] = p["rtp_to_phones_received_ratio_min"]
        out[f"{n} legs: RTP from phones received by gateway, min leg (higher is better)"] = p[
            "rtp_from_phones_received_by_gateway_ratio_min"
        ]
        out[f"{n} legs: failed calls"] = p["calls_failed"]
    return out


def _webrtc_legs(doc: dict[str, Any]) -> Metrics:
    out: Metrics = {}
    for p in doc["points"]:
        n = p["legs"]
        out[f"{n} audio legs, 1 room: gateway CPU us per leg per frame"] = p["cpu_us_per_leg_frame"]
        out[f"{n} audio legs, 1 room: late ticks %"] = p["late_tick_percent"]
        out[f"{n} audio legs, 1 room: delivered at peers, min (higher is better)"] = p["delivered_ratio_min"]
    return out


def _sip_setup(doc: dict[str, Any]) -> Metrics:
    out: Metrics = {}
    for p in doc["points"]:
        r = p["target_cps"]
        out[f"{r} cps: set-up p50 ms"] = p["setup_ms_p50"]
        out[f"{r} cps: set-up p99 ms"] = p["setup_ms_p99"]
        out[f"{r} cps: gateway CPU ms per call"] = p["gateway_cpu_ms_per_call"] or 0.0
        out[f"{r} cps: failed calls"] = p["failed"]
    return out


BENCHES: dict[str, Callable[[dict[str, Any]], Metrics]] = {
    "mixer": _mixer,
    "sip_legs": _sip_legs,
    "webrtc_legs": _webrtc_legs,
    "sip_setup": _sip_setup,
}


def extract(revision: str, into: Path | None) -> tuple[Path, str]:
    """The tree of `revision`, from `git archive` (read-only for the repository)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", f"{revision}^{{commit}}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    tree = into or Path(tempfile.gettempdir()) / f"gateway-{commit}"
    if not (tree / REVISION_FILE).exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.Popen(["git", "archive", commit], cwd=ROOT, stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(tree)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise RuntimeError(f"git archive {commit} failed")
        (tree / REVISION_FILE).write_text(commit + "\n")
    return tree, commit


def run_bench(bench: str, tree: Path, out: Path, args: list[str]) -> dict[str, Any]:
    command = [sys.executable, str(ROOT / "bench" / f"{bench}.py"), "--tree", str(tree), "--json", str(out), *args]
    print(f"\n$ {' '.join(command)}", flush=True)
    began = time.monotonic()
    subprocess.run(command, check=True, cwd=ROOT)
    print(f"({time.monotonic() - began:.0f} s)", flush=True)
    return dict(json.loads(out.read_text()))


def summarize(old: list[Metrics], new: list[Metrics]) -> list[dict[str, Any]]:
    keys = [k for k in old[0] if all(k in m for m in old + new)]
    rows = []
    for key in keys:
        a = [m[key] for m in old]
        b = [m[key] for m in new]
        ma, mb = statistics.median(a), statistics.median(b)
        higher_better = "higher is better" in key
        ratio = mb / ma if ma else None
        if mb == ma or (ratio is not None and abs(ratio - 1) < 0.005):
            verdict = "same"
        elif len(a) > 1 and max(a) >= min(b) and max(b) >= min(a):
            verdict = "within spread"  # the rounds of the two sides overlap: not a difference yet
        else:
            verdict = "better" if (mb > ma) == higher_better else "worse"
        rows.append({"metric": key, "old": a, "new": b, "old_median": ma, "new_median": mb, "ratio": ratio, "verdict": verdict})
    return rows


def _show(values: list[float]) -> str:
    median = statistics.median(values)
    text = f"{median:.4g}"
    if len(values) > 1 and min(values) != max(values):
        text += f" ({min(values):.4g}-{max(values):.4g})"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 2)[2])  # fmt: skip
    parser.add_argument("revision", help="the old version: a git revision of this repository")
    parser.add_argument("bench", choices=sorted(BENCHES))
    parser.add_argument("--rounds", type=int, default=2, help="runs per side, alternating old and new")
    parser.add_argument("--new", type=Path, default=ROOT, help="the new tree (default: this checkout as it is)")
    parser.add_argument("--old-dir", type=Path, help="where to extract the old tree (default: /tmp/gateway-<commit>)")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    bench_args = argv[split + 1 :]  # after --: arguments for the benchmark
    old_tree, commit = extract(args.revision, args.old_dir)
    new_tree = args.new.resolve()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    runs_dir = RESULTS / f"compare_{args.bench}_{stamp}"
    old_docs: list[dict[str, Any]] = []
    new_docs: list[dict[str, Any]] = []
    for i in range(args.rounds):
        old_docs.append(run_bench(args.bench, old_tree, runs_dir / f"{i + 1}_old_{commit}.json", bench_args))
        new_docs.append(run_bench(args.bench, new_tree, runs_dir / f"{i + 1}_new.json", bench_args))
    metrics = BENCHES[args.bench]
    rows = summarize([metrics(d) for d in old_docs], [metrics(d) for d in new_docs])
    path = RESULTS / f"compare_{args.bench}.json"
    path.write_text(
        json.dumps(
            {
                "benchmark": f"compare_{args.bench}",
                "machine": machine(),
                "old": {"revision": args.revision, **git_state(old_tree)},
                "new": git_state(new_tree),
                "rounds": args.rounds,
                "order": "old, new, alternating",
                "bench_args": bench_args,
                "runs": str(runs_dir),
                "metrics": rows,
            },
            indent=2,
        )
    )
    print(f"\n{args.bench}: old = {args.revision} ({commit}), new = {new_tree}; median over {args.rounds} alternating runs each")
    print_table(
        ["metric", "old", "new", "new / old", ""],
        [[r["metric"], _show(r["old"]), _show(r["new"]), "n/a" if r["ratio"] is None else f"{r['ratio']:.3f}", r["verdict"]]
         for r in rows],
    )  # fmt: skip
    worse = [r["metric"] for r in rows if r["verdict"] == "worse"]
    print(f"\nresults: {path} (each run's JSON in {runs_dir})")
    if worse:
        print(f"WORSE in the new tree, outside the spread of the rounds ({len(worse)}): " + "; ".join(worse))


if __name__ == "__main__":
    main()
