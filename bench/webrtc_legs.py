"""CPU per browser leg, audio only, all legs in one room: N real WebRTC peers (aiortc, separate process).

The peers send and receive Opus audio and no video.

What this does not measure: video (no peer sends or receives a video track, so no forwarding, no
keyframe requests, no compositing) and several rooms (one mixer, one room's fan-out). Its figures
are the cost of audio browser legs in one room, not of browser legs in general.

The gateway runs as its own process, exactly as `gateway run` does. A second process starts N
audio-only peers (pre-encoded Opus up, packets counted down without decoding, so the load
generator stays light) and joins them to one room. Over a measurement window we read the gateway
process's CPU time from /proc and, at each peer (the receiver), the audio packets it received, and
report the gateway's CPU per leg, the share of due frames delivered at the receivers, the frames
the gateway's senders counted (the sender's side, for comparison) and the mixer's late ticks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402
    ROOT,
    add_common_arguments,
    capacities,
    gateway_process,
    import_gateway_from,
    print_capacities,
    print_table,
    sum_mixers,
    tree_cpu_seconds,
    worker_urls,
    write_results,
)

SCOPE = "audio only (Opus, no video tracks), all legs in one room"

TOKEN = "bench-admin-token-0123456789"
CONFIG = f"""
server: {{host: 127.0.0.1, port: 0, joins_per_minute: 10000, sockets_per_address: 10000}}
admin: {{token: {TOKEN}}}
logging: {{level: warning, format: json}}
storage: {{path: null}}
mqtt: {{enabled: false, node: bench}}
admission: {{max_loop_lag_ms: 100000, max_cpu: 1.0}}  # measure the load, do not refuse it
rooms: [{{id: bench, host_pin: "1234", max_participants: 1000}}]
"""


def cpu_seconds(pid: int) -> float:
    """The gateway's CPU: its process and every child (its workers), live or reaped."""
    own, children = tree_cpu_seconds(pid)
    return own + children


def start_gateway(workdir: Path, tree: Path, workers: int = 1) -> tuple[subprocess.Popen[bytes], str]:
    """`gateway run` from the source tree `tree`; at level info it logs its URL when it is up (with
    workers: once every worker is)."""
    config = workdir / "gateway.yaml"
    text = CONFIG.replace("level: warning", "level: info")
    if workers > 1:  # (they share a store file)
        text = text.replace("port: 0,", f"port: 0, workers: {workers},").replace("path: null", f"path: {workdir / 'gw.sqlite'}")
    config.write_text(text)
    log = workdir / "gateway.log"
    command, cwd, env = gateway_process(tree)
    proc = subprocess.Popen(
        [*command, "run", "--config", str(config)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        started = [json.loads(line)["url"] for line in log.read_text().splitlines() if '"gateway started"' in line]
        if len(started) >= workers:
            return proc, started[0]
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(log.read_text())


async def peers_main(url: str, legs: int, warmup: float, window: float) -> None:
    """Runs in the load-generator process: prints one JSON line with what the peers received."""
    from gateway.webrtc.probe import Probe

    probes = [Probe(url, "bench", f"peer{i}", "", 300 + i, light=True) for i in range(legs)]
    for probe in probes:
        await probe.start()
        await asyncio.sleep(0.05)
    await asyncio.gather(*(asyncio.wait_for(p.joined.wait(), 60) for p in probes))
    await asyncio.sleep(warmup)
    before = [p.audio_packets for p in probes]
    print(json.dumps({"event": "window_start"}), flush=True)
    await asyncio.sleep(window)
    after = [p.audio_packets for p in probes]
    print(json.dumps({"event": "window_end", "received": [b - a for a, b in zip(before, after, strict=True)]}), flush=True)
    await asyncio.sleep(2)  # the gateway's counters are read now, while every leg is still there
    for probe in probes:
        await probe.close()


def api(base: str, path: str) -> object:
    import httpx

    return httpx.get(base + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).json()


def sent_per_leg(workers: dict[str, str]) -> dict[str, int]:
    """Frames the gateway handed to each browser leg's sender (the gateway's side of delivery), from
    the worker serving it."""
    sent = {}
    for node, url in workers.items():
        for p in api(url, "/api/rooms/bench/participants"):  # type: ignore[attr-defined]
            if p.get("node", node) == node:
                sent[p["id"]] = p["media"].get("audio_frames_sent", 0)
    return sent


def mixer(workers: dict[str, str]) -> dict[str, Any]:
    return sum_mixers([api(url, "/api/rooms/bench")["mixer"] for url in workers.values()])  # type: ignore[index]


def measure(legs: int, warmup: float, window: float, tree: Path, peers_tree: Path, workers: int = 1) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        gateway, base = start_gateway(Path(tmp), tree, workers)
        own = worker_urls(lambda path: api(base, path), "bench", workers) or {"bench": base}
        try:
            ws = base.replace("http", "ws", 1) + "/ws"
            # The load generator (gateway.webrtc.probe) comes from `peers_tree`: by default this
            # checkout's, so that two gateway versions are driven by the same peers.
            command, cwd, env = gateway_process(peers_tree)
            peers = subprocess.Popen(
                [command[0], str(Path(__file__).resolve()), "--peers", ws, "--legs", str(legs),
                 "--warmup", str(warmup), "--window", str(window), "--tree", str(peers_tree)],
                stdout=subprocess.PIPE,
                text=True,
                cwd=cwd,
                env=env,
            )  # fmt: skip
            assert peers.stdout is not None
            cpu0 = wall0 = 0.0
            mixer0: dict[str, float] = {}
            received: list[int] = []
            for line in peers.stdout:
                event = json.loads(line)
                if event["event"] == "window_start":
                    cpu0, wall0 = cpu_seconds(gateway.pid), time.monotonic()
                    mixer0 = mixer(own)
                    sent0 = sent_per_leg(own)
                elif event["event"] == "window_end":
                    cpu1, wall1 = cpu_seconds(gateway.pid), time.monotonic()
                    mixer1 = mixer(own)
                    sent1 = sent_per_leg(own)
                    received = event["received"]
            peers.wait(60)
        finally:
            gateway.terminate()
            gateway.wait(10)
    elapsed = wall1 - wall0
    cores = (cpu1 - cpu0) / elapsed
    due = window / 0.020
    ticks = mixer1["ticks"] - mixer0["ticks"]
    late = mixer1["late_ticks"] - mixer0["late_ticks"]
    sent = [sent1[pid] - sent0.get(pid, 0) for pid in sent1]
    return {
        "workers": workers,
        "legs": legs,
        "rooms": 1,
        "media": "audio",
        "gateway_cores": cores,
        "cpu_ms_per_leg_per_s": cores * 1000 / legs,
        "cpu_us_per_leg_frame": cores * 20_000 / legs,
        "delivered_ratio_min": min(received) / due if received else 0.0,
        "delivered_ratio_mean": sum(received) / len(received) / due if received else 0.0,
        "late_tick_ratio": late / ticks if ticks else 0.0,
        "late_tick_percent": late * 100 / ticks if ticks else 0.0,
        "max_lateness_ms": mixer1.get("max_lateness_ms", 0.0),
        "gateway_sent_ratio_min": min(sent) / ticks if sent and ticks else 0.0,
        "mixer_ticks_ratio": ticks / due,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--peers", help=argparse.SUPPRESS)
    parser.add_argument("--legs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--peers-tree", type=Path, default=ROOT, help="tree whose gateway.webrtc.probe drives the peers")
    parser.add_argument("--workers", type=int, nargs="+", default=[1], help="worker processes (server.workers); several: each")
    add_common_arguments(parser)
    args = parser.parse_args()
    if args.peers:
        import_gateway_from(args.tree)  # the probe the peers run
        asyncio.run(peers_main(args.peers, args.legs, args.warmup, args.window))
        return
    print(f"WebRTC legs: {SCOPE}", flush=True)
    points = [measure(n, args.warmup, args.window, args.tree, args.peers_tree, w) for w in args.workers for n in args.sizes]
    capacity = capacities(points, lambda p: p["delivered_ratio_min"] >= 0.99 and p["late_tick_percent"] < 0.1)
    path = write_results(
        "webrtc_legs",
        {
            "scope": SCOPE,
            "points": points,
            "capacity_by_workers": capacity,
            "goal_legs_per_core": 50,
            "settings": {"warmup": args.warmup, "window": args.window, "peers_tree": str(args.peers_tree.resolve())},
        },
        args.json,
        args.tree,
    )
    print(f"\n{SCOPE}:")
    print_table(
        ["workers", "legs (1 room, audio)", "gateway cores", "us CPU/leg/frame", "sent min (gw counter)",
         "delivered min (at peers)", "delivered mean (at peers)", "late ticks %", "max late ms"],
        [
            [
                p["workers"],
                p["legs"],
                f"{p['gateway_cores']:.2f}",
                p["cpu_us_per_leg_frame"],
                f"{p['gateway_sent_ratio_min']:.3f}",
                f"{p['delivered_ratio_min']:.3f}",
                f"{p['delivered_ratio_mean']:.3f}",
                f"{p['late_tick_percent']:.2f}",
                p["max_lateness_ms"],
            ]
            for p in points
        ],
    )  # fmt: skip
    print_capacities(capacity, "the most legs measured with 99 % of the frames delivered to every peer, under 0.1 % late ticks")
    print(f"\nresults: {path} (goal: 50 audio legs per core in one room, every frame delivered at the peers)")


if __name__ == "__main__":
    main()
