"""A meeting recorded and streamed live: what it costs beside the meeting, and what a room system
that takes the same picture adds (the goal: no encode more, when the formats match).

    python bench/broadcast.py [--senders 2] [--warmup 8] [--window 20]

One gateway run (its own process, as `gateway run`; the far ends in processes of their own, at
--far-niceness) goes through three stages in one room:
  1. the meeting: K browsers (bench/video_peers.py browsers: aiortc peers sending a 1280x720 30 fps
     VP8 camera clip in two simulcast layers, and Opus), nothing composed;
  2. the same meeting recorded (fragmented MP4 into a temporary folder) and streamed live (RTMP to
     Debian's nginx with its RTMP module, started here on a free port): the composed picture at
     720p30 (H.264, encoded once for both), the mix encoded to AAC once;
  3. plus a SIP room system (sipp, bench/sipp/video_leg.xml: H.264 42e01f packetization-mode 1,
     video recvonly) that takes the composed picture: the same format as the broadcast's, so the
     same encoder (composed encoders 1, encodes per second 30).
Each stage measures over --window: the gateway's CPU with its child processes (compositor,
broadcast, live stream) and each kind of child alone (/proc), the composed encoders and encodes per
second (/metrics), the mixer's late ticks (the API), the recording's growth (its file) and what
nginx took in (its statistics), and at stage 3 the room system's frames per second.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import add_common_arguments, print_table, write_results  # noqa: E402
from bench.sip_legs import SIPP, TOKEN, PortPool, start_gateway, start_sipp  # noqa: E402
from bench.video_legs import (  # noqa: E402
    FAR_NICENESS,
    FPS,
    SCENARIO,
    load_figures,
    room_figures,
    sink_figures,
    start_far,
    stop_all,
    wait_in_rooms,
    window,
)
from tests.support.nginx_rtmp import NginxRtmp  # noqa: E402

ROOM = "council"
KEY = "bench-stream"
GOALS = {"extra_encoders_for_a_matching_room_system": 0, "late_tick_percent_below": 0.1}
CHILDREN = {
    "compositor": "gateway.transcode.compositor_process",
    "broadcast": "gateway.transcode.broadcast_process",
    "stream": "gateway.transcode.stream_process",
}


def children_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of the gateway's descendants by kind (the module each runs), live ones only."""
    tick = float(__import__("os").sysconf("SC_CLK_TCK"))
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int(Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            parents.setdefault(parent, []).append(int(entry.name))
    out = dict.fromkeys(CHILDREN, 0.0)
    pending = [pid]
    while pending:
        for child in parents.get(pending.pop(), []):
            pending.append(child)
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            for kind, module in CHILDREN.items():
                if module.encode() in cmdline:
                    out[kind] += (int(fields[11]) + int(fields[12])) / tick
    return out


def nginx_bytes_in(nginx: NginxRtmp) -> int:
    stat = httpx.get(f"http://127.0.0.1:{nginx.http_port}/stat", timeout=5).text
    found = re.search(r"<stream>\s*<name>" + re.escape(KEY) + r"</name>.*?<bytes_in>(\d+)</bytes_in>", stat, re.S)
    return int(found.group(1)) if found else 0


def api_post(base_url: str, path: str) -> dict[str, Any]:
    response = httpx.post(base_url + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    response.raise_for_status()
    return dict(response.json())


def run(args: argparse.Namespace) -> dict[str, Any]:
    points: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="broadcast_") as tmp:
        workdir = Path(tmp)
        folder = workdir / "recordings"
        nginx = NginxRtmp(workdir / "nginx")
        nginx.start()
        gateway = start_gateway(
            workdir,
            [ROOM],
            args.log_level,
            max_participants=args.senders + 2,
            tree=args.tree,
            extra_config=f'recording: {{folder: "{folder}"}}\nh323: {{enabled: false}}',
            room_settings=f'stream_url: "{nginx.url(KEY)}"',
        )
        browsers = rtp = None
        sipps: list[Any] = []
        try:
            ws = gateway.base_url.replace("http", "ws", 1) + "/ws"
            browsers, _ = start_far(
                "browsers", workdir, args.peers_tree,
                ["browsers", "--url", ws, "--rooms", ROOM, "--senders", str(args.senders), "--fps", str(FPS), "--camera", "clip", "--simulcast"],
                ready_timeout=120,
            )  # fmt: skip
            ports = PortPool()
            call = (ports.take(2), ports.take(2))
            rtp, _ = start_far("rtp", workdir, args.peers_tree, ["rtp", "--calls", f"{call[0]}:{call[1]}:sink"], ready_timeout=30)
            far: dict[str, list[subprocess.Popen[Any]]] = {"browsers": [browsers.process], "rtp": [rtp.process], "sipp": []}
            wait_in_rooms(gateway, [ROOM], args.senders, 60)
            recording: Path | None = None
            for stage in ("meeting", "recorded and streamed", "plus a room system"):
                if stage == "recorded and streamed":
                    api_post(gateway.base_url, f"/api/rooms/{ROOM}/recording")
                    api_post(gateway.base_url, f"/api/rooms/{ROOM}/streaming")
                    deadline = time.monotonic() + 30
                    while not nginx.publishing(KEY) and time.monotonic() < deadline:
                        time.sleep(0.2)
                    recording = next(iter(folder.glob(f"{ROOM}/*.mp4")), None)
                elif stage == "plus a room system":
                    inf = workdir / "call.csv"
                    inf.write_text(f"SEQUENTIAL\n{ROOM};{call[0]};{call[1]};recvonly;RTP/AVPF;\n")
                    hold_s = args.warmup + args.window + 60
                    sipp = start_sipp(
                        "room_system", workdir, SCENARIO, f"127.0.0.1:{gateway.sip_port}", ports,
                        ["-inf", str(inf), "-m", "1", "-l", "1", "-aa", "-d", str(int(hold_s * 1000)),
                         "-recv_timeout", "20000", "-timeout", str(int(hold_s + 60))],
                    )  # fmt: skip
                    sipps.append(sipp)
                    far["sipp"].append(sipp.process)
                    wait_in_rooms(gateway, [ROOM], args.senders + 1, 60)
                time.sleep(args.warmup)
                kinds0, file0, nginx0 = children_cpu(gateway.process.pid), _size(recording), nginx_bytes_in(nginx)
                before, after = window(gateway, [ROOM], args.window, far, browsers, rtp)
                kinds1, file1, nginx1 = children_cpu(gateway.process.pid), _size(recording), nginx_bytes_in(nginx)
                elapsed = after.at - before.at
                room = room_figures(before, after, [ROOM], elapsed)
                point: dict[str, Any] = {
                    "stage": stage,
                    "window_s": round(elapsed, 2),
                    **load_figures(before, after, elapsed),
                    "children_cores": {k: round((kinds1[k] - kinds0[k]) / elapsed, 4) for k in CHILDREN},
                    "composed_encoders": room[ROOM]["composed_encoders_gauge"],
                    "composed_encodes_per_s": room[ROOM]["per_s"]["composed_encodes"],
                    "late_tick_percent": room["_all"]["late_tick_percent"],
                    "recording_kbit_per_s": round((file1 - file0) * 8 / elapsed / 1000, 1),
                    "stream_kbit_per_s": round((nginx1 - nginx0) * 8 / elapsed / 1000, 1),
                }
                if stage == "plus a room system" and before.rtp is not None and after.rtp is not None:
                    point["room_system"] = sink_figures(before.rtp, after.rtp, [call[0]], elapsed)
                points.append(point)
                print(_line(point), flush=True)
        finally:
            stop_all(sipps, rtp, browsers, gateway, args.keep, Path(tmp))
            nginx.stop()
        problems = gateway.problems() if gateway.log_path.exists() else {}
    meeting, broadcast, plus = points
    return {
        "points": points,
        "broadcast_cores": round(broadcast["gateway_cores"] - meeting["gateway_cores"], 4),
        "room_system_cores": round(plus["gateway_cores"] - broadcast["gateway_cores"], 4),
        "extra_encoders_for_the_room_system": plus["composed_encoders"] - broadcast["composed_encoders"],
        "gateway_log": problems,
    }


def _size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path is not None else 0
    except OSError:
        return 0


def _line(p: dict[str, Any]) -> str:
    kids = ", ".join(f"{k} {v:.3f}" for k, v in p["children_cores"].items() if v)
    return (
        f"{p['stage']}: gateway {p['gateway_cores']:.3f} cores ({kids or 'no children'}), encoders {p['composed_encoders']:.0f}, "
        f"{p['composed_encodes_per_s']:.1f} encodes/s, late ticks {p['late_tick_percent']:.3f} %, "
        f"recording {p['recording_kbit_per_s']} kbit/s, stream {p['stream_kbit_per_s']} kbit/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 1)[1])  # fmt: skip
    parser.add_argument("--senders", type=int, default=2, help="K: browsers sending a 720p30 VP8 camera")
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--peers-tree", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--far-niceness", type=int, default=10)
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--keep", type=Path, help="copy the gateway's and the far ends' files here")
    add_common_arguments(parser)
    args = parser.parse_args()
    FAR_NICENESS[0] = args.far_niceness
    if shutil.which(SIPP) is None and not Path(SIPP).exists():
        raise SystemExit("sipp not found (apt install sip-tester)")
    results = run(args)
    late = max(p["late_tick_percent"] for p in results["points"])
    verdicts = [
        ["no extra encode for a room system of the broadcast's format", f"{results['extra_encoders_for_the_room_system']:.0f} more encoders",
         "met" if results["extra_encoders_for_the_room_system"] == 0 else "NOT met"],
        ["audio late ticks under 0.1 %", f"{late:.3f} % at worst", "met" if late < 0.1 else "NOT met"],
    ]  # fmt: skip
    path = write_results(
        "broadcast",
        {**results, "goals": GOALS, "verdicts": verdicts, "settings": {"senders": args.senders, "warmup": args.warmup,
         "window": args.window, "far_niceness": args.far_niceness, "output": "H.264 1280x720 30 fps (media.composed), AAC 128 kbit/s"}},
        args.json,
        args.tree,
    )  # fmt: skip
    print()
    print_table(
        ["stage", "gateway cores", "compositor", "broadcast", "stream", "encoders", "encodes/s", "late ticks %"],
        [
            [p["stage"], f"{p['gateway_cores']:.3f}", f"{p['children_cores']['compositor']:.3f}", f"{p['children_cores']['broadcast']:.3f}",
             f"{p['children_cores']['stream']:.3f}", f"{p['composed_encoders']:.0f}", f"{p['composed_encodes_per_s']:.1f}",
             f"{p['late_tick_percent']:.3f}"]
            for p in results["points"]
        ],
    )  # fmt: skip
    print(f"\nthe broadcast: {results['broadcast_cores']:.3f} cores; a room system of the same format: {results['room_system_cores']:.3f} cores")
    print_table(["goal", "measured", ""], [[v[0], v[1], v[2]] for v in verdicts])
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
