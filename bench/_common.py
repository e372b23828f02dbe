"""Helpers shared by the benchmarks: machine facts, which gateway source tree is measured, and
writing results (JSON plus a printed table).

Every benchmark can be pointed at another source tree of the gateway (`--tree PATH`, e.g. an older
revision extracted by bench/compare.py): the gateway process it starts, or the gateway modules it
imports in process, then come from that tree, while the benchmark's own code (load generators,
measurement) stays the one of this checkout, so two versions are measured by the same yardstick.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
REVISION_FILE = ".bench-revision"  # written by bench/compare.py into trees that are not git checkouts


def _stat_fields(pid: int | str) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def tree_cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds of a process (all its threads) and of its descendants: the live ones (utime +
    stime, and what they reaped) and those it reaped itself (cutime + cstime), so a child that ends
    between two readings moves from one term to the other instead of vanishing. The gateway's
    compositors run in child processes: a figure of the gateway's CPU without them is wrong."""
    tick = os.sysconf("SC_CLK_TCK")
    own = _stat_fields(pid)
    parents: dict[int, list[tuple[int, list[str]]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = _stat_fields(entry.name)
            except OSError:  # (gone meanwhile)
                continue
            parents.setdefault(int(fields[1]), []).append((int(entry.name), fields))
    children = int(own[13]) + int(own[14])
    pending = [pid]
    while pending:
        for child, fields in parents.get(pending.pop(), []):
            children += sum(int(fields[i]) for i in (11, 12, 13, 14))
            pending.append(child)
    return (int(own[11]) + int(own[12])) / tick, children / tick


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tree",
        type=Path,
        default=ROOT,
        help="gateway source tree to measure (default: this checkout); the benchmark code stays this one",
    )
    parser.add_argument("--json", type=Path, help="write the results here instead of bench/results/<name>.json")


def tree_from_argv(argv: list[str] | None = None) -> Path:
    """`--tree` read before argparse runs: in-process benchmarks must put it on sys.path before
    they import the gateway."""
    argv = sys.argv[1:] if argv is None else argv
    for i, arg in enumerate(argv):
        if arg == "--tree" and i + 1 < len(argv):
            return Path(argv[i + 1]).resolve()
        if arg.startswith("--tree="):
            return Path(arg.split("=", 1)[1]).resolve()
    return ROOT


def import_gateway_from(tree: Path) -> None:
    """Makes `import gateway` load the package of `tree` (before this checkout and the editable install)."""
    if "gateway" in sys.modules:
        raise RuntimeError("gateway was imported before its tree was chosen")
    sys.path.insert(0, str(tree.resolve()))
    import gateway

    where = Path(gateway.__file__).resolve().parent
    if where != tree.resolve() / "gateway":
        raise RuntimeError(f"gateway imported from {where}, not from {tree}")


def gateway_process(tree: Path) -> tuple[list[str], Path, dict[str, str]]:
    """Command, working directory and environment that run `python -m gateway` from `tree`."""
    tree = tree.resolve()
    path = os.pathsep.join(p for p in (str(tree), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
    return [sys.executable, "-m", "gateway"], tree, env


def git_state(tree: Path = ROOT) -> dict[str, Any]:
    """The commit measured, and whether the work tree differed from it (files changed)."""
    tree = tree.resolve()
    marker = tree / REVISION_FILE
    if marker.exists():
        return {"tree": str(tree), "commit": marker.read_text().strip(), "changed_files": []}

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tree, capture_output=True, text=True).stdout

    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines() if line]
    return {"tree": str(tree), "commit": git("rev-parse", "--short", "HEAD").strip(), "changed_files": changed}


def write_results(name: str, results: dict[str, Any], path: Path | None = None, tree: Path | None = None) -> Path:
    path = path if path is not None else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {"benchmark": name, "machine": machine()}
    if tree is not None:
        document["gateway"] = git_state(tree)
    path.write_text(json.dumps({**document, **results}, indent=2))
    return path


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [headers, *[[f"{c:.1f}" if isinstance(c, float) else str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for i, row in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def sum_mixers(mixers: list[dict[str, Any]]) -> dict[str, Any]:
    """One room's mixer figures (GET /api/rooms/{room} "mixer") over the workers that mix it: each
    worker serving someone of the room runs a mixer of its own."""
    return {
        "ticks": sum(m["ticks"] for m in mixers),
        "late_ticks": sum(m["late_ticks"] for m in mixers),
        "skipped_ticks": sum(m.get("skipped_ticks", 0) for m in mixers),
        "max_lateness_ms": max(m.get("max_lateness_ms", 0.0) for m in mixers),
        "tick_cpu_ms_mean": max(m.get("tick_cpu_ms_mean", 0.0) for m in mixers),
    }


def worker_urls(get: Any, node: str, workers: int) -> dict[str, str]:
    """Each worker's own address by its node name (`get(path)`: the gateway's API), from GET
    /api/node; one process: {} (its shared address is its own)."""
    if workers == 1:
        return {}
    return {f"{node}-{w['index']}": w["url"] for w in get("/api/node")["workers"]}


def capacities(points: list[dict[str, Any]], good: Any) -> dict[str, dict[str, Any]]:
    """Per worker count ("workers" of each point): the most legs ("legs") of a point that is
    `good(point)`, and its ratio to one worker's."""
    out: dict[str, dict[str, Any]] = {}
    for workers in sorted({p["workers"] for p in points}):
        legs = max((p["legs"] for p in points if p["workers"] == workers and good(p)), default=0)
        out[str(workers)] = {"workers": workers, "legs": legs}
    base = out.get("1", {}).get("legs") or 0
    for row in out.values():
        row["ratio"] = round(row["legs"] / base, 2) if base else None
    return out


def print_capacities(capacity: dict[str, dict[str, Any]], what: str) -> None:
    if len(capacity) > 1:
        print(f"\ncapacity ({what}):")
        for row in capacity.values():
            print(f"  {row['workers']} worker(s): {row['legs']} legs, {row['ratio']}x one worker's")
