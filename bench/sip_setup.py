"""SIP call set-up rate with calls held: sipp places calls at a fixed rate, each stays up for the
hold time (default 3 s) before its BYE, so set-up is measured while earlier calls are up and their
media runs, as in a real meeting, not against an empty gateway.

The gateway runs as its own process, exactly as `gateway run` does (from this checkout or from
`--tree`), at its default log level (what a deployment logs per call; --log-level overrides it),
with rooms of --room-size without a PIN (a call joins as soon as it is answered: no digits to
send); consecutive calls go to consecutive rooms. sipp (a scenario derived from
bench/sipp/setup_call.xml: the room comes from an injection file) sends an INVITE offering PCMA,
ACKs the 200, holds the call for --hold-s (no RTP from sipp; the gateway sends its mix to sipp's
media port), and hangs up with a BYE. For each rate we report the calls attempted, succeeded and
failed (with the answers the failed ones got), the rate achieved, the calls up at once (sampled),
the set-up time from the INVITE to its 200 OK (p50/p95/p99), and the gateway's CPU over the run.

Set-up times come from sipp's message trace (-trace_msg, microsecond timestamps of each message
sent and received). sipp's own response times (-trace_rtt) are reported too, but they are whole
milliseconds from sipp's coarse clock tick (most calls show 0 ms), so the trace is the measure.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import add_common_arguments, print_table, write_results  # noqa: E402
from bench.sip_legs import (  # noqa: E402
    SIPP,
    SIPP_DIR,
    Gateway,
    PortPool,
    cpu_seconds,
    percentile,
    start_gateway,
    start_sipp,
)

ROOM_PREFIX = "setup"
DEFAULT_HOLD_S = 3.0
_BLOCK = re.compile(r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\s*$", re.M)


def setup_times(message_file: Path) -> dict[str, Any]:
    """From sipp's message trace: per call, the first INVITE sent and the first 200 to it received."""
    invites: dict[str, float] = {}
    answered: dict[str, float] = {}
    text = message_file.read_text(errors="replace") if message_file.exists() else ""
    marks = list(_BLOCK.finditer(text))
    for i, mark in enumerate(marks):
        block = text[mark.end() : marks[i + 1].start() if i + 1 < len(marks) else len(text)]
        at = datetime.strptime(mark.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if len(lines) < 2:
            continue
        direction, first = lines[0], lines[1]
        call_id = next((line.split(":", 1)[1].strip() for line in lines if line.lower().startswith(("call-id:", "i:"))), "")
        cseq = next((line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("cseq:")), "")
        if not call_id:
            continue
        if "sent" in direction and first.startswith("INVITE "):
            invites.setdefault(call_id, at)
        elif "received" in direction and first.startswith("SIP/2.0 200") and cseq.endswith("INVITE"):
            answered.setdefault(call_id, at)
    times = [(answered[c] - invites[c]) * 1000 for c in answered if c in invites]
    first_invite = min(invites.values()) if invites else 0.0
    last_invite = max(invites.values()) if invites else 0.0
    last_answer = max(answered.values()) if answered else 0.0
    return {
        "invites": len(invites),
        "answered": len(answered),
        "setup_ms": times,
        "offered_cps": (len(invites) - 1) / (last_invite - first_invite) if len(invites) > 1 and last_invite > first_invite else 0.0,
        "answered_cps": len(answered) / (last_answer - first_invite) if answered and last_answer > first_invite else 0.0,
    }


def sipp_rtt(workdir: Path) -> list[float]:
    """sipp's own response times (-trace_rtt), whole milliseconds."""
    values: list[float] = []
    for path in workdir.glob("setup_call_*_rtt.csv"):
        with path.open() as f:
            for row in csv.DictReader(f, delimiter=";"):
                try:
                    values.append(float(row["response_time_ms"]))
                except (KeyError, ValueError):
                    continue
    return values


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def in_rooms(gateway: Gateway, rooms: list[str]) -> int:
    return sum(int(r["live"]["participants"]) for r in gateway.api("/api/rooms") if r["id"] in rooms)


def room_scenario(workdir: Path) -> Path:
    """bench/sipp/setup_call.xml with the room from field 0 of the injection file instead of -s."""
    text = (SIPP_DIR / "setup_call.xml").read_text().replace("[service]", "[field0]")
    path = workdir / "setup_call_rooms.xml"
    path.write_text(text)
    return path


class CallsUp(threading.Thread):
    """Samples the number of callers in the rooms while sipp runs (one API request per interval)."""

    def __init__(self, gateway: Gateway, rooms: list[str], interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.gateway, self.rooms, self.interval = gateway, rooms, interval
        self.samples: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            try:
                self.samples.append(in_rooms(self.gateway, self.rooms))
            except Exception:  # noqa: BLE001 (a slow answer under load: skip the sample)
                continue


def measure(
    rate: int, calls: int, hold_s: float, room_size: int, log_level: str | None, keep: Path | None, tree: Path
) -> dict[str, Any]:
    hold_ms = int(hold_s * 1000)
    room_count = max(1, math.ceil(rate * hold_s / room_size))
    rooms = [f"{ROOM_PREFIX}{i}" for i in range(room_count)]
    with tempfile.TemporaryDirectory(prefix="sip_setup_") as tmp:
        workdir = Path(tmp)
        gateway = start_gateway(workdir, rooms, log_level, max_participants=1000, tree=tree)
        try:
            time.sleep(1)
            fds0 = open_fds(gateway.process.pid)
            injection = workdir / "rooms.csv"
            injection.write_text("SEQUENTIAL\n" + "".join(f"{room};\n" for room in rooms))
            sampler = CallsUp(gateway, rooms)
            cpu0, wall0 = cpu_seconds(gateway.process.pid), time.monotonic()
            sipp = start_sipp(
                "setup",
                workdir,
                room_scenario(workdir),
                f"127.0.0.1:{gateway.sip_port}",
                PortPool(),
                [
                    "-inf", str(injection),
                    "-m", str(calls),
                    "-r", str(rate),
                    "-l", str(max(calls, 1)),  # no limit on open calls: the rate alone paces sipp
                    "-d", str(hold_ms),
                    "-recv_timeout", "10000",
                    "-timeout", str(int(calls / rate + hold_ms / 1000 + 60)),
                    "-trace_rtt", "-rtt_freq", "1",
                    "-trace_msg", "-message_file", str(workdir / "messages.log"),
                ],
            )  # fmt: skip
            sampler.start()
            exit_code = sipp.wait(calls / rate + hold_ms / 1000 + 90)
            cpu1, wall1 = cpu_seconds(gateway.process.pid), time.monotonic()
            sampler.done.set()
            sampler.join()
            time.sleep(2)  # calls still ending (BYE of the last ones) have ended now
            left_in_room = in_rooms(gateway, rooms)
            fds1 = open_fds(gateway.process.pid)
            summary = sipp.summary()
            times = setup_times(workdir / "messages.log")
            rtt = sipp_rtt(workdir)
            problems = gateway.problems()
        finally:
            gateway.stop()
            if keep is not None:
                shutil.copytree(tmp, keep / f"rate{rate}", dirs_exist_ok=True, symlinks=True)

    elapsed = wall1 - wall0
    cores = (cpu1 - cpu0) / elapsed
    setup = times["setup_ms"]
    ok = summary["successful"]
    return {
        "target_cps": rate,
        "calls": calls,
        "hold_s": hold_s,
        "rooms": room_count,
        "room_size_target": room_size,
        "calls_up_max": max(sampler.samples, default=0),
        "calls_up_median": round(percentile([float(n) for n in sampler.samples], 50), 1),
        "calls_up_expected": round(min(rate * hold_s, calls), 1),
        "sipp_exit_code": exit_code,
        "attempted": summary["calls_created"],
        "succeeded": ok,
        "failed": summary["failed"],
        "failures": summary["failures"],
        "failed_answers": summary["unexpected_answers"],
        "retransmissions": summary["retransmissions"],
        "offered_cps": round(times["offered_cps"], 2),
        "achieved_cps": round(times["answered_cps"], 2),
        "setup_ms_p50": round(percentile(setup, 50), 2),
        "setup_ms_p95": round(percentile(setup, 95), 2),
        "setup_ms_p99": round(percentile(setup, 99), 2),
        "setup_ms_max": round(max(setup), 2) if setup else 0.0,
        "setup_ms_mean": round(sum(setup) / len(setup), 2) if setup else 0.0,
        "setup_times_measured": len(setup),
        "sipp_rtt_ms_p50": percentile(rtt, 50),
        "sipp_rtt_ms_p95": percentile(rtt, 95),
        "sipp_rtt_ms_p99": percentile(rtt, 99),
        "run_s": round(elapsed, 2),
        "gateway_cores": round(cores, 4),
        "gateway_cpu_ms_per_call": round((cpu1 - cpu0) * 1000 / ok, 3) if ok else None,
        "gateway_cpu_ms_per_attempt": (
            round((cpu1 - cpu0) * 1000 / summary["calls_created"], 3) if summary["calls_created"] else None
        ),
        "participants_left_in_room": left_in_room,
        "gateway_fds_before": fds0,
        "gateway_fds_after": fds1,
        "sipp_error_lines": summary["error_lines"],
        "gateway_log": problems,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-r", "--rates", type=int, nargs="+", default=[50, 100], help="calls per second (one run each)")
    parser.add_argument("-m", "--calls", type=int, default=1000, help="calls per run")
    parser.add_argument(
        "--hold-s", type=float, default=DEFAULT_HOLD_S, help="seconds each call stays up between ACK and BYE"
    )
    parser.add_argument("--room-size", type=int, default=10, help="calls up at once per room (rooms = rate x hold / this)")
    parser.add_argument(
        "--log-level",
        default=None,
        choices=["debug", "info", "warning", "error"],
        help="default: the gateway's own default level (not set in its configuration)",
    )
    parser.add_argument("--keep", type=Path, help="copy the gateway's and sipp's files (logs, traces) here")
    add_common_arguments(parser)
    args = parser.parse_args()
    log_level = args.log_level or "the gateway's default"
    print(f"calls held {args.hold_s:g} s each; gateway log level: {log_level}", flush=True)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    points = []
    for rate in args.rates:
        point = measure(rate, args.calls, args.hold_s, args.room_size, args.log_level, args.keep, args.tree)
        points.append(point)
        print(
            f"{rate} cps: {point['succeeded']}/{point['attempted']} succeeded, p99 set-up {point['setup_ms_p99']:.1f} ms "
            f"with up to {point['calls_up_max']} calls up (held {args.hold_s:g} s)",
            flush=True,
        )
    goal = {"cps": 50, "failed": 0}
    path = write_results(
        "sip_setup",
        {
            "points": points,
            "goal": goal,
            "settings": {
                "calls": args.calls,
                "hold_s": args.hold_s,
                "room_size": args.room_size,
                "log_level": log_level,
                "sipp": subprocess.run([SIPP, "-v"], capture_output=True, text=True).stdout.strip().splitlines()[0],
            },
        },
        args.json,
        args.tree,
    )
    print()
    print_table(
        ["target cps", "attempted", "succeeded", "failed", "achieved cps", "p50 ms", "p95 ms", "p99 ms", "max ms",
         "sipp rtt p99", "calls up (max)", "gw cores", "CPU ms/call ok", "CPU ms/attempt", "left in rooms"],
        [
            [
                p["target_cps"],
                p["attempted"],
                p["succeeded"],
                p["failed"],
                p["achieved_cps"],
                f"{p['setup_ms_p50']:.2f}",
                f"{p['setup_ms_p95']:.2f}",
                f"{p['setup_ms_p99']:.2f}",
                f"{p['setup_ms_max']:.2f}",
                p["sipp_rtt_ms_p99"],
                p["calls_up_max"],
                f"{p['gateway_cores']:.3f}",
                p["gateway_cpu_ms_per_call"],
                p["gateway_cpu_ms_per_attempt"],
                p["participants_left_in_room"],
            ]
            for p in points
        ],
    )  # fmt: skip
    for p in points:
        if p["failed"] or p["sipp_exit_code"] != 0:
            print(
                f"\n{p['target_cps']} cps: sipp exit {p['sipp_exit_code']}, {p['failed']} failed: {p['failures']}, "
                f"answers {p['failed_answers']}"
            )
        log = p["gateway_log"]
        if log["levels"] or log["other_count"]:
            print(f"gateway log at {p['target_cps']} cps: {log['levels']} {log['events']}, {log['other_count']} other lines")
    print(f"\nresults: {path} (goal: {goal['cps']} calls per second sustained with no failures)")


if __name__ == "__main__":
    main()
