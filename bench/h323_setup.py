"""H.323 call set-up rate with calls held: fastStart calls placed at a fixed rate over TCP, each
held (default 3 s) before its ReleaseComplete, so set-up is measured while earlier calls are up and
the gateway sends their rooms' mix, as in a real meeting.

The gateway runs as its own process (`gateway run`, from this checkout or `--tree`) at its default
log level, with rooms of --room-size without a PIN (a call joins when answered); consecutive calls
go to consecutive rooms, dialled by their h323-ID alias. The load generator is asyncio in this
process: per call one TCP connection, a Setup with fastStart (G.711 A-law both ways, H.245
tunnelling offered), the time until the gateway's Connect (with its fastStart answer), the hold,
then ReleaseComplete. For each rate: calls attempted, succeeded, failed (with what came instead),
the rate achieved, the calls up at once, set-up time from Setup to Connect (p50/p95/p99/max) and
the gateway's CPU over the run. (The Setups are written with the gateway's own H.225.0 and H.245
modules: correctness is the tests' business, this measures speed.)
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402
    add_common_arguments,
    import_gateway_from,
    print_table,
    tree_from_argv,
    write_results,
)

import_gateway_from(tree_from_argv())

from bench.sip_legs import cpu_seconds, free_port, percentile, start_gateway  # noqa: E402
from gateway.h323 import h225, h245, q931  # noqa: E402
from gateway.h323.h245 import Channel  # noqa: E402

ROOM_PREFIX = "h323setup"
DEFAULT_HOLD_S = 3.0


def setup_message(room: str, reference: int, rtp_port: int) -> bytes:
    """A Setup to `room` with fastStart: G.711 A-law to send and to receive."""
    address = ("127.0.0.1", rtp_port)
    control = ("127.0.0.1", rtp_port + 1)
    channels = [
        Channel(1, 1, h245.G711A, control=control),
        Channel(2, 1, h245.G711A, reverse=True, media=address, control=control),
    ]
    signal = h225.Signal(
        "setup",
        call_reference=reference,
        call_identifier=os.urandom(16),
        conference_id=os.urandom(16),
        source_aliases=(h225.Alias("h323-ID", f"bench {reference}"),),
        destination_aliases=(h225.alias_of(room),),
        tunnelling=True,
        fast_start=tuple(h245.fast_start_element(c) for c in channels),
    )
    return q931.tpkt(q931.serialize(h225.write(signal, [q931.BEARER_VIDEO])))


def release_message(reference: int) -> bytes:
    signal = h225.Signal("releaseComplete", call_reference=reference, call_identifier=bytes(16), cause=16)
    return q931.tpkt(q931.serialize(h225.write(signal)))


class Run:
    def __init__(self, port: int, rooms: list[str], hold_s: float) -> None:
        self.port = port
        self.rooms = rooms
        self.hold_s = hold_s
        self.setup_ms: list[float] = []
        self.failures: dict[str, int] = {}
        self.up = 0
        self.up_max = 0
        self.fast_start_answered = 0

    def fail(self, why: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1

    async def call(self, index: int) -> None:
        room = self.rooms[index % len(self.rooms)]
        reference = 1 + index % 0x7FFE
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 10)
        except (OSError, TimeoutError) as exc:
            self.fail(f"connect: {type(exc).__name__}")
            return
        frames = q931.TpktReader()
        try:
            started = time.perf_counter()
            writer.write(setup_message(room, reference, 40000 + 2 * (index % 10000)))
            connected = None
            deadline = started + 10
            while connected is None and time.perf_counter() < deadline:
                data = await asyncio.wait_for(reader.read(65536), max(0.01, deadline - time.perf_counter()))
                if not data:
                    break
                for frame in frames.feed(data):
                    message = q931.parse(frame)
                    if message.type == q931.MessageType.CONNECT:
                        connected = message
                    elif message.type == q931.MessageType.RELEASE_COMPLETE:
                        self.fail(f"released with cause {message.cause}")
                        return
            if connected is None:
                self.fail("no Connect")
                return
            self.setup_ms.append((time.perf_counter() - started) * 1000)
            if h225.read(connected).fast_start:
                self.fast_start_answered += 1
            self.up += 1
            self.up_max = max(self.up_max, self.up)
            await asyncio.sleep(self.hold_s)
            self.up -= 1
            writer.write(release_message(reference))
            await writer.drain()
        except (OSError, TimeoutError, q931.Q931Error, h225.H225Error) as exc:
            self.fail(f"{type(exc).__name__}")
        finally:
            writer.close()

    async def place(self, rate: int, calls: int) -> None:
        tasks = []
        start = time.perf_counter()
        for index in range(calls):
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.call(index)))
        await asyncio.gather(*tasks)


def measure(rate: int, calls: int, hold_s: float, room_size: int, tree: Path) -> dict[str, Any]:
    room_count = max(1, math.ceil(rate * hold_s / room_size))
    rooms = [f"{ROOM_PREFIX}{i}" for i in range(room_count)]
    port = free_port(tcp_too=True)
    extra = f"h323: {{host: 127.0.0.1, port: {port}, max_calls: 4000, max_calls_per_source: 4000, max_connections: 8000}}"
    with tempfile.TemporaryDirectory(prefix="h323_setup_") as tmp:
        gateway = start_gateway(Path(tmp), rooms, None, max_participants=1000, tree=tree, extra_config=extra)
        try:
            time.sleep(1)
            run = Run(port, rooms, hold_s)
            cpu0, wall0 = cpu_seconds(gateway.process.pid), time.monotonic()
            asyncio.run(run.place(rate, calls))
            cpu1, wall1 = cpu_seconds(gateway.process.pid), time.monotonic()
            time.sleep(2)
            left = sum(int(r["live"]["participants"]) for r in gateway.api("/api/rooms") if r["id"] in rooms)
            problems = gateway.problems()
        finally:
            gateway.stop()
    ok = len(run.setup_ms)
    elapsed = wall1 - wall0
    return {
        "target_cps": rate,
        "attempted": calls,
        "succeeded": ok,
        "failed": calls - ok,
        "failures": run.failures,
        "fast_start_answered": run.fast_start_answered,
        "achieved_cps": round(calls / max(elapsed - hold_s, 1e-9), 1),
        "calls_up_max": run.up_max,
        "setup_ms_p50": percentile(run.setup_ms, 50),
        "setup_ms_p95": percentile(run.setup_ms, 95),
        "setup_ms_p99": percentile(run.setup_ms, 99),
        "setup_ms_max": max(run.setup_ms, default=0.0),
        "gateway_cores": (cpu1 - cpu0) / elapsed,
        "gateway_cpu_ms_per_call": round((cpu1 - cpu0) * 1000 / max(ok, 1), 2),
        "participants_left_in_rooms": left,
        "gateway_log": problems,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-r", "--rates", type=int, nargs="+", default=[50, 100], help="calls per second (one run each)")
    parser.add_argument("-m", "--calls", type=int, default=500, help="calls per run")
    parser.add_argument("--hold-s", type=float, default=DEFAULT_HOLD_S, help="seconds each call stays up")
    parser.add_argument("--room-size", type=int, default=10, help="calls up at once per room")
    add_common_arguments(parser)
    args = parser.parse_args()
    points = []
    for rate in args.rates:
        point = measure(rate, args.calls, args.hold_s, args.room_size, args.tree)
        points.append(point)
        print(f"{rate} cps: {point['succeeded']}/{point['attempted']} succeeded, p99 set-up {point['setup_ms_p99']:.1f} ms", flush=True)
    path = write_results(
        "h323_setup",
        {"points": points, "goal": {"cps": 50, "failed": 0}, "settings": {"calls": args.calls, "hold_s": args.hold_s,
                                                                          "room_size": args.room_size}},
        args.json,
        args.tree,
    )  # fmt: skip
    print()
    print_table(
        ["target cps", "attempted", "succeeded", "failed", "achieved cps", "p50 ms", "p95 ms", "p99 ms", "max ms",
         "calls up (max)", "gw cores", "CPU ms/call", "left in rooms"],
        [[p["target_cps"], p["attempted"], p["succeeded"], p["failed"], p["achieved_cps"], f"{p['setup_ms_p50']:.2f}",
          f"{p['setup_ms_p95']:.2f}", f"{p['setup_ms_p99']:.2f}", f"{p['setup_ms_max']:.2f}", p["calls_up_max"],
          f"{p['gateway_cores']:.3f}", p["gateway_cpu_ms_per_call"], p["participants_left_in_rooms"]] for p in points],
    )  # fmt: skip
    for p in points:
        if p["failed"]:
            print(f"\n{p['target_cps']} cps: {p['failed']} failed: {p['failures']}")
        if p["gateway_log"]["levels"]:
            print(f"{p['target_cps']} cps: gateway logged {p['gateway_log']['events']}")
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
