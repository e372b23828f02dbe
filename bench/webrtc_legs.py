"""CPU per browser leg: N real WebRTC peers (aiortc, in a separate process) in one room.

The gateway runs as its own process, exactly as `gateway run` does. A second process starts N
audio-only peers (pre-encoded Opus up, packets counted down without decoding, so the load
generator stays light) and joins them to one room. Over a measurement window we read the gateway
process's CPU time from /proc and the frames each peer received, and report the gateway's CPU per
leg, legs per core, the share of due frames delivered, and the mixer's late ticks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import print_table, write_results  # noqa: E402

TOKEN = "bench-admin-token-0123456789"
CONFIG = f"""
server: {{host: 127.0.0.1, port: 0, joins_per_minute: 10000, sockets_per_address: 10000}}
admin: {{token: {TOKEN}}}
logging: {{level: warning, format: json}}
storage: {{path: null}}
admission: {{max_loop_lag_ms: 100000, max_cpu: 1.0}}  # measure the load, do not refuse it
rooms: [{{id: bench, host_pin: "1234", max_participants: 1000}}]
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_gateway(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    config = workdir / "gateway.yaml"
    config.write_text(CONFIG.replace("level: warning", "level: info"))
    log = workdir / "gateway.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(config)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if '"gateway started"' in line:
                return proc, json.loads(line)["url"]
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


def sent_per_leg(base: str) -> dict[str, int]:
    """Frames the gateway handed to each browser leg's sender (the gateway's side of delivery)."""
    participants = api(base, "/api/rooms/bench/participants")
    return {p["id"]: p["media"].get("audio_frames_sent", 0) for p in participants}  # type: ignore[attr-defined,index]


def measure(legs: int, warmup: float, window: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        gateway, base = start_gateway(Path(tmp))
        try:
            ws = base.replace("http", "ws", 1) + "/ws"
            peers = subprocess.Popen(
                [sys.executable, __file__, "--peers", ws, "--legs", str(legs), "--warmup", str(warmup), "--window", str(window)],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert peers.stdout is not None
            cpu0 = wall0 = 0.0
            mixer0: dict[str, float] = {}
            received: list[int] = []
            for line in peers.stdout:
                event = json.loads(line)
                if event["event"] == "window_start":
                    cpu0, wall0 = cpu_seconds(gateway.pid), time.monotonic()
                    mixer0 = api(base, "/api/rooms/bench")["mixer"]  # type: ignore[index]
                    sent0 = sent_per_leg(base)
                elif event["event"] == "window_end":
                    cpu1, wall1 = cpu_seconds(gateway.pid), time.monotonic()
                    mixer1 = api(base, "/api/rooms/bench")["mixer"]  # type: ignore[index]
                    sent1 = sent_per_leg(base)
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
        "legs": legs,
        "gateway_cores": cores,
        "cpu_ms_per_leg_per_s": cores * 1000 / legs,
        "cpu_us_per_leg_frame": cores * 20_000 / legs,
        "legs_per_core": legs / cores if cores else float("inf"),
        "delivered_ratio_min": min(received) / due if received else 0.0,
        "delivered_ratio_mean": sum(received) / len(received) / due if received else 0.0,
        "late_tick_ratio": late / ticks if ticks else 0.0,
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
    args = parser.parse_args()
    if args.peers:
        asyncio.run(peers_main(args.peers, args.legs, args.warmup, args.window))
        return
    points = [measure(n, args.warmup, args.window) for n in args.sizes]
    path = write_results("webrtc_legs", {"points": points, "goal_legs_per_core": 50})
    print_table(
        ["legs", "gateway cores", "us CPU/leg/frame", "legs/core", "sent min", "delivered min", "delivered mean", "late ticks"],
        [
            [
                p["legs"],
                f"{p['gateway_cores']:.2f}",
                p["cpu_us_per_leg_frame"],
                p["legs_per_core"],
                f"{p['gateway_sent_ratio_min']:.3f}",
                f"{p['delivered_ratio_min']:.3f}",
                f"{p['delivered_ratio_mean']:.3f}",
                f"{p['late_tick_ratio']:.4f}",
            ]
            for p in points
        ],
    )
    print(f"\nresults: {path} (goal: 50 legs per core, every frame delivered)")


if __name__ == "__main__":
    main()
