"""CPU per SIP leg: N concurrent G.711 calls (sipp, in processes of its own) in rooms of a given size.

The gateway runs as its own process, exactly as `gateway run` does (from this checkout or from
`--tree`), with one room per `--room-size` callers (no PIN: a call joins its room as soon as it is
answered). sipp places the calls with a scenario derived from bench/sipp/g711_leg.xml: INVITE
offering PCMA, ACK, BYE after the hold time; the SDP offer names the RTP port of a phone in
bench/rtp_phones.py (one such process per sipp process), which sends an A-law file (the payload of
sipp's g711a.pcap) in 20 ms RTP packets, looped, and counts every RTP packet the gateway sends it
where it arrives. Once every caller is in its room and a warm-up has passed, we measure over a
window: the gateway process's CPU time (from /proc), the mixers' late ticks (GET
/api/rooms/{room}), and RTP both ways against the 50 packets per second due:
- gateway -> phone, counted at the receiver (the phone's socket): packets received, and packets
  lost = expected from the sequence numbers - received. The gateway's own sent counter is reported
  beside it, as the sender's view.
- phone -> gateway: the phones' sent counts, and the gateway's inbound counter (the receiver there).

The helpers for the gateway and sipp are shared with bench/sip_setup.py.
"""

from __future__ import annotations

import argparse
import csv
import errno
import json
import math
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402
    ROOT,
    add_common_arguments,
    capacities,
    gateway_process,
    git_state,
    print_capacities,
    print_table,
    sum_mixers,
    tree_cpu_seconds,
    worker_urls,
    write_results,
)

__all__ = ["git_state"]  # bench/sip_setup.py imports it from here

TOKEN = "bench-admin-token-0123456789"
SIPP = shutil.which("sipp") or "/usr/bin/sipp"
SIPP_DIR = Path(__file__).resolve().parent / "sipp"
PCAP_DIRS = (Path("/usr/share/sip-tester/pcap"), Path("/usr/share/sip-tester"))
GATEWAY_RTP = (20000, 39999)  # the gateway's RTP ports; sipp's own stay out of this range
SIPP_PORTS = (41000, 49999)


# -- the gateway ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _port_free(port: int, kinds: tuple[int, ...] = (socket.SOCK_DGRAM,)) -> bool:
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return False
                raise
    return True


def free_port(tcp_too: bool = False) -> int:
    """A port free for UDP (and TCP) on 127.0.0.1, picked by the system."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp_too else socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if _port_free(port, (socket.SOCK_DGRAM, socket.SOCK_STREAM) if tcp_too else (socket.SOCK_DGRAM,)):
            return port
    raise RuntimeError("no free port")


class PortPool:
    """UDP ports for sipp (signalling port, media port and the three after it), outside the
    gateway's RTP range and never handed out twice in one run."""

    def __init__(self, low: int = SIPP_PORTS[0], high: int = SIPP_PORTS[1]) -> None:
        self._next = low
        self._high = high

    def take(self, count: int = 1) -> int:
        """`count` consecutive free ports, the first one even (RTP's convention)."""
        self._next += self._next % 2
        while self._next + count <= self._high:
            port, self._next = self._next, self._next + count + (count % 2)
            if all(_port_free(p) for p in range(port, port + count)):
                return port
        raise RuntimeError("no free UDP ports left for sipp")


def gateway_config(
    rooms: list[str],
    http_port: int,
    sip_port: int,
    log_level: str | None = "warning",
    max_participants: int = 100,
    extra: str = "",
    room_settings: str = "",
    workers: int = 1,
    store: Path | None = None,
) -> str:
    """The gateway's configuration; `log_level` None leaves logging at the gateway's default level;
    `room_settings`: more settings of every room (YAML flow mapping entries); `workers`: worker
    processes (more than one needs a `store` file they share)."""
    level = f"level: {log_level}, " if log_level else ""
    more = f", {room_settings}" if room_settings else ""
    room_lines = "\n".join(
        f'  - {{id: {room}, aliases: ["{room}"], max_participants: {max_participants}{more}}}' for room in rooms
    )
    return f"""
server: {{host: 127.0.0.1, port: {http_port}, workers: {workers}}}
admin: {{token: {TOKEN}}}
logging: {{{level}format: json}}
storage: {{path: {store or "null"}}}
mqtt: {{enabled: false, node: bench}}
sip: {{host: 127.0.0.1, port: {sip_port}, transports: [udp], language: en, max_calls: 4000,
       rtp_port_min: {GATEWAY_RTP[0]}, rtp_port_max: {GATEWAY_RTP[1]},
       trunk_sources: ["127.0.0.1/32"]}}  # sipp calls like a carrier trunk: no per-address limit
admission: {{max_loop_lag_ms: 100000, max_cpu: 1.0}}  # measure the load, do not refuse it
{extra or "h323: {enabled: false}"}
rooms:
{room_lines}
"""


def sip_options_ping(port: int, timeout: float = 0.5) -> bool:
    """True when something answers a SIP OPTIONS on 127.0.0.1:port (pjsua answers it itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
        request = (
            f"OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-bench-{time.monotonic_ns()}\r\n"
            f"From: <sip:bench@127.0.0.1:{local}>;tag=bench\r\n"
            f"To: <sip:ping@127.0.0.1:{port}>\r\n"
            f"Call-ID: bench-ping-{time.monotonic_ns()}@127.0.0.1\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        s.settimeout(timeout)
        s.sendto(request.encode(), ("127.0.0.1", port))
        try:
            data = s.recv(65535)
        except OSError:
            return False
        return data.startswith(b"SIP/2.0")


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    base_url: str
    sip_port: int
    log_path: Path
    workers: int = 1

    def api(self, path: str, base_url: str | None = None) -> Any:
        import httpx

        response = httpx.get((base_url or self.base_url) + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        response.raise_for_status()
        return response.json()

    def worker_urls(self) -> dict[str, str]:
        """Each worker's own address by its node name (one process: its own)."""
        return worker_urls(self.api, "bench", self.workers) or {"bench": self.base_url}

    def cpu_seconds(self) -> float:
        """The gateway's CPU: its process and every child (workers, compositors), live or reaped."""
        own, children = tree_cpu_seconds(self.process.pid)
        return own + children

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def problems(self) -> dict[str, Any]:
        """Warnings and errors the gateway logged (JSON lines), by event, plus anything not JSON that
        came after start-up (pjsua's own console lines, tracebacks)."""
        levels: Counter[str] = Counter()
        events: Counter[str] = Counter()
        other: list[str] = []
        started = False
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                if started and raw.strip():
                    other.append(raw[:300])
                continue
            if not isinstance(line, dict):
                continue
            started = True
            level = str(line.get("level", ""))
            if level in ("warning", "error", "critical"):
                levels[level] += 1
                events[f"{level}: {line.get('event')}"] += 1
        return {"levels": dict(levels), "events": dict(events.most_common(20)), "other_lines": other[:20], "other_count": len(other)}


def start_gateway(
    workdir: Path,
    rooms: list[str],
    log_level: str | None = "warning",
    max_participants: int = 100,
    tree: Path = ROOT,
    extra_config: str = "",
    room_settings: str = "",
    workers: int = 1,
) -> Gateway:
    """Starts `gateway run` from the source tree `tree` on free ports. At level warning the "gateway
    started" line is not logged, so readiness is the admin API answering and the SIP core answering
    an OPTIONS."""
    http_port, sip_port = free_port(tcp_too=True), free_port()
    config = workdir / "gateway.yaml"
    store = workdir / "gateway.sqlite" if workers > 1 else None
    config.write_text(
        gateway_config(rooms, http_port, sip_port, log_level, max_participants, extra_config, room_settings, workers, store)
    )
    log_path = workdir / "gateway.log"
    command, cwd, env = gateway_process(tree)
    process = subprocess.Popen(
        [*command, "run", "--config", str(config)],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env=env,
    )
    gateway = Gateway(process, f"http://127.0.0.1:{http_port}", sip_port, log_path, workers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("gateway exited during start-up:\n" + log_path.read_text(errors="replace"))
        try:
            gateway.api("/api/rooms")
        except Exception:  # noqa: BLE001 (not up yet)
            time.sleep(0.1)
            continue
        if sip_options_ping(sip_port) and (workers == 1 or _all_workers_up(gateway)):
            return gateway
    process.kill()
    raise RuntimeError("gateway did not start in 60 s:\n" + log_path.read_text(errors="replace"))


# -- sipp -----------------------------------------------------------------------------------------


def alaw_from_pcap(pcap: Path, out: Path) -> float:
    """Writes the RTP payloads of a pcap of one G.711 stream as raw audio; returns its seconds."""
    data = pcap.read_bytes()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    link = struct.unpack(endian + "I", data[20:24])[0]
    link_header = {1: 14, 113: 16, 0: 4}.get(link, 14)  # ethernet, linux cooked, BSD loopback
    payload = bytearray()
    offset = 24
    while offset + 16 <= len(data):
        _, _, captured, _ = struct.unpack(endian + "IIII", data[offset : offset + 16])
        packet = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        ip = packet[link_header:]
        if not ip or ip[0] >> 4 != 4:
            continue
        udp = ip[(ip[0] & 0x0F) * 4 :]
        rtp = udp[8:]
        if len(rtp) < 12 or rtp[0] >> 6 != 2:
            continue
        header = 12 + 4 * (rtp[0] & 0x0F)
        payload += rtp[header:]
    out.write_bytes(bytes(payload))
    return len(payload) / 8000


def sipp_workdir(workdir: Path) -> Path:
    """A directory sipp runs in: `pcap` -> sipp's pcaps, and g711a.alaw for rtp_stream."""
    pcaps = next((d for d in PCAP_DIRS if (d / "g711a.pcap").exists()), None)
    if pcaps is None:
        raise RuntimeError(f"g711a.pcap not found in {', '.join(map(str, PCAP_DIRS))} (apt install sip-tester)")
    link = workdir / "pcap"
    if not link.exists():
        link.symlink_to(pcaps)
    alaw_from_pcap(pcaps / "g711a.pcap", workdir / "g711a.alaw")
    return workdir


@dataclass
class Sipp:
    name: str
    process: subprocess.Popen[bytes]
    workdir: Path
    stat_file: Path
    error_file: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                return self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                return self.process.wait(5)

    def stats(self) -> dict[str, str]:
        """The last line of sipp's -trace_stat file, by column."""
        if not self.stat_file.exists():
            return {}
        rows = list(csv.reader(self.stat_file.open(), delimiter=";"))
        if len(rows) < 2:
            return {}
        return dict(zip(rows[0], rows[-1], strict=False))

    def summary(self) -> dict[str, Any]:
        stats = self.stats()

        def number(key: str) -> int:
            try:
                return int(stats.get(key, "0") or 0)
            except ValueError:
                return 0

        failures = {
            key[len("Failed") : -len("(C)")]: number(key)
            for key in stats
            if key.startswith("Failed") and key.endswith("(C)") and key != "FailedCall(C)" and number(key)
        }
        text = self.error_file.read_text(errors="replace") if self.error_file.exists() else ""
        errors = text.splitlines()
        # What the failed calls got instead of what the scenario expected: "486 Busy Here" x 96 ...
        answers = Counter(f"{m.group(1)} {m.group(2).strip()}" for m in re.finditer(r"received 'SIP/2\.0 (\d{3}) ([^\r\n']*)", text))
        return {
            "exit_code": self.process.returncode,
            "calls_created": number("TotalCallCreated"),
            "successful": number("SuccessfulCall(C)"),
            "failed": number("FailedCall(C)"),
            "failures": failures,
            "retransmissions": number("Retransmissions(C)"),
            "unexpected_or_dead_messages": number("OutOfCallMsgs(C)") + number("DeadCallMsgs(C)"),
            "unexpected_answers": dict(answers),
            "error_lines": [line for line in errors if line.strip()][:6],
        }


def start_sipp(
    name: str,
    workdir: Path,
    scenario: Path,
    target: str,
    ports: PortPool,
    args: list[str],
) -> Sipp:
    """One sipp process in `workdir` (which holds its injection files and writes its traces)."""
    sip_port = ports.take(1)
    media_port = ports.take(4)  # sipp binds media_port and media_port + 2 (audio and video)
    stat_file = workdir / f"{name}_stat.csv"
    error_file = workdir / f"{name}_errors.log"
    command = [
        SIPP, target,
        "-sf", str(scenario),
        "-i", "127.0.0.1",
        "-p", str(sip_port),
        "-mp", str(media_port),
        "-nostdin",
        "-trace_stat", "-stf", str(stat_file), "-fd", "1",
        "-trace_err", "-error_file", str(error_file),
        *args,
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=(workdir / f"{name}_screen.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    return Sipp(name, process, workdir, stat_file, error_file, {"sip_port": sip_port, "media_port": media_port})


# -- the phones' media (bench/rtp_phones.py) --------------------------------------------------------


def signalling_scenario(workdir: Path) -> Path:
    """bench/sipp/g711_leg.xml with sipp's own RTP taken out: the SDP offer names the phone's RTP port
    (field 1 of the injection file) and sipp streams nothing; bench/rtp_phones.py does the media."""
    text = (SIPP_DIR / "g711_leg.xml").read_text()
    text = text.replace("m=audio [rtpstream_audio_port] ", "m=audio [field1] ")
    text = re.sub(r"\s*<nop>\s*<action>\s*<exec rtp_stream=[^>]*/>\s*</action>\s*</nop>", "", text)
    if "[field1]" not in text or "<exec rtp_stream" in text:
        raise RuntimeError("bench/sipp/g711_leg.xml changed: cannot derive the signalling-only scenario")
    path = workdir / "g711_leg_signalling.xml"
    path.write_text(text)
    return path


@dataclass
class Phones:
    """One bench/rtp_phones.py process: the RTP side of the calls of one sipp process."""

    process: subprocess.Popen[str]
    ports: list[int]

    def _reply(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"rtp_phones exited ({self.process.poll()})")
        return dict(json.loads(line))

    def snap(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write("snap\n")
        self.process.stdin.flush()
        return self._reply()

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write("stop\n")
                self.process.stdin.close()
                self.process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(5)


def start_phones(name: str, workdir: Path, ports: list[int]) -> Phones:
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve().parent / "rtp_phones.py"), "--audio", str(workdir / "g711a.alaw"),
         *map(str, ports)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=(workdir / f"{name}.log").open("wb"),
        text=True,
    )  # fmt: skip
    phones = Phones(process, ports)
    if phones._reply().get("event") != "ready":
        raise RuntimeError("rtp_phones did not start")
    return phones


def phones_delta(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, Any]:
    """Per leg over the window, from the phones' snapshots: packets sent, received, and lost on the
    way to the phone (expected by sequence number - received); each against the packets due."""
    sent: list[float] = []
    received: list[float] = []
    lost = received_total = legs_with_loss = 0
    for old, new in zip(before, after, strict=True):
        due = (new["at"] - old["at"]) / 0.020
        for port, (s1, r1, e1, _) in new["legs"].items():
            s0, r0, e0, _ = old["legs"][port]
            sent.append((s1 - s0) / due)
            received.append((r1 - r0) / due)
            leg_lost = max((e1 - e0) - (r1 - r0), 0)
            lost += leg_lost
            received_total += r1 - r0
            legs_with_loss += leg_lost > 0
    return {
        "sent": sent,
        "received": received,
        "lost": lost,
        "received_total": received_total,
        "legs_with_loss": legs_with_loss,
        "late_sends": sum(a["late_sends"] for a in after),
        "max_send_late_ms": max((a["max_send_late_ms"] for a in after), default=0.0),
    }


# -- the measurement --------------------------------------------------------------------------------


def _all_workers_up(gateway: Gateway) -> bool:
    workers = gateway.api("/api/node").get("workers") or []
    return len(workers) == gateway.workers and all(w["alive"] for w in workers)


def room_snapshot(gateway: Gateway, room: str, node: str = "bench", url: str | None = None) -> dict[str, Any]:
    """A room on one worker (`url`): its mixer there, and the media of the participants it serves."""
    began = time.monotonic()
    mixer = gateway.api(f"/api/rooms/{room}", url)["mixer"]
    participants = gateway.api(f"/api/rooms/{room}/participants", url)
    at = (began + time.monotonic()) / 2
    media = {p["id"]: p["media"] for p in participants if p.get("connected", True) and p.get("node", node) == node}
    return {"at": at, "mixer": mixer, "media": media}


def snapshot(gateway: Gateway, rooms: list[str]) -> dict[str, dict[str, Any]]:
    """Every room, summed over the workers (each has a mixer for a room it serves someone of)."""
    urls = gateway.worker_urls()
    out: dict[str, dict[str, Any]] = {}
    for room in rooms:
        parts = [room_snapshot(gateway, room, node, url) for node, url in urls.items()]
        out[room] = {
            "at": sum(p["at"] for p in parts) / len(parts),
            "media": {pid: media for p in parts for pid, media in p["media"].items()},
            "mixer": sum_mixers([p["mixer"] for p in parts]),
        }
    return out


def joined(gateway: Gateway, rooms: list[str]) -> int:
    return sum(int(r["live"]["participants"]) for r in gateway.api("/api/rooms") if r["id"] in rooms)


def sipp_cpu(sipps: list[Sipp] | list[Phones]) -> float:
    """CPU seconds of load-generator processes (sipp or rtp_phones)."""
    total = 0.0
    for sipp in sipps:
        try:
            total += cpu_seconds(sipp.process.pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def wait_for_callers(gateway: Gateway, rooms: list[str], sipps: list[Sipp], legs: int, deadline: float) -> int:
    """Waits until every caller is in its room, or until every call was placed and the number in
    the rooms has not moved for 3 s (calls refused), or the deadline; returns the number in."""
    last, last_change = -1, time.monotonic()
    while True:
        now = time.monotonic()
        in_rooms = joined(gateway, rooms)
        if in_rooms != last:
            last, last_change = in_rooms, now
        if in_rooms >= legs or now > deadline:
            return in_rooms
        placed = sum(int(s.stats().get("TotalCallCreated", "0") or 0) for s in sipps)
        if (placed >= legs or all(s.process.poll() is not None for s in sipps)) and now - last_change > 3:
            return in_rooms
        time.sleep(0.25)


def measure(
    legs: int,
    room_size: int,
    seconds: float,
    warmup: float,
    rate: float,
    calls_per_sipp: int,
    log_level: str | None,
    keep: Path | None,
    idle_seconds: float = 3.0,
    tree: Path = ROOT,
    workers: int = 1,
) -> dict[str, Any]:
    room_count = math.ceil(legs / room_size)
    rooms = [f"r{i}" for i in range(room_count)]
    procs = math.ceil(legs / calls_per_sipp)
    with tempfile.TemporaryDirectory(prefix="sip_legs_") as tmp:
        workdir = sipp_workdir(Path(tmp))
        gateway = start_gateway(workdir, rooms, log_level, max_participants=max(room_size, 1), tree=tree, workers=workers)
        sipps: list[Sipp] = []
        phones: list[Phones] = []
        try:
            # The idle gateway's own cost (SIP thread polling, HTTP server): subtracted for the
            # marginal cost of a leg.
            time.sleep(1)
            idle0, idle_wall0 = gateway.cpu_seconds(), time.monotonic()
            time.sleep(idle_seconds)
            idle_cores = (gateway.cpu_seconds() - idle0) / (time.monotonic() - idle_wall0)
            # The calls: leg i dials room i // room_size; sipp process k places a contiguous slice.
            per_proc_rate = max(1, round(rate / procs))
            ramp = legs / (per_proc_rate * procs)
            hold_s = ramp + warmup + seconds + 20  # every call lasts beyond the window (checked below)
            ports = PortPool()
            target = f"127.0.0.1:{gateway.sip_port}"
            scenario = signalling_scenario(workdir)
            for k in range(procs):
                first, last = k * calls_per_sipp, min(legs, (k + 1) * calls_per_sipp)
                rtp_ports = [ports.take(2) for _ in range(first, last)]
                phones.append(start_phones(f"phones{k}", workdir, rtp_ports))
                inf = workdir / f"legs{k}.csv"
                inf.write_text(
                    "SEQUENTIAL\n" + "".join(f"r{i // room_size};{port};\n" for i, port in zip(range(first, last), rtp_ports, strict=True))
                )
                sipps.append(
                    start_sipp(
                        f"legs{k}",
                        workdir,
                        scenario,
                        target,
                        ports,
                        [
                            "-inf", str(inf),
                            "-m", str(last - first),
                            "-l", str(last - first),
                            "-r", str(per_proc_rate),
                            "-d", str(int(hold_s * 1000)),
                            "-recv_timeout", "20000",
                            "-timeout", str(int(hold_s + 60)),
                        ],
                    )  # fmt: skip
                )
            calls_started = time.monotonic()
            in_rooms = wait_for_callers(gateway, rooms, sipps, legs, calls_started + ramp + 30)
            all_joined_s = time.monotonic() - calls_started
            if in_rooms == 0:
                raise RuntimeError(
                    f"no caller joined in {all_joined_s:.0f} s; sipp: {[s.summary() for s in sipps]}; "
                    f"gateway: {gateway.problems()}"
                )
            if in_rooms < legs:
                print(f"WARNING: only {in_rooms} of {legs} callers are in their rooms; measuring those", flush=True)
            time.sleep(warmup)
            # The window: API snapshots outside the CPU readings, so their cost is not counted.
            before = snapshot(gateway, rooms)
            phones0 = [ph.snap() for ph in phones]
            cpu0, sipp0, wall0 = gateway.cpu_seconds(), sipp_cpu(sipps), time.monotonic()
            phones_cpu0 = sipp_cpu(phones)
            time.sleep(seconds)
            cpu1, sipp1, wall1 = gateway.cpu_seconds(), sipp_cpu(sipps), time.monotonic()
            phones_cpu1 = sipp_cpu(phones)
            phones1 = [ph.snap() for ph in phones]
            after = snapshot(gateway, rooms)
            window_end_s = time.monotonic() - calls_started
            still_in = joined(gateway, rooms)
            for sipp in sipps:
                sipp.wait(max(hold_s + 60 - window_end_s, 10))
            sipp_summaries = [s.summary() for s in sipps]
            problems = gateway.problems()
        finally:
            for sipp in sipps:
                if sipp.process.poll() is None:
                    sipp.process.terminate()
                    sipp.wait(5)
            for ph in phones:
                ph.stop()
            gateway.stop()
            if keep is not None:
                shutil.copytree(tmp, keep / f"legs{legs}", dirs_exist_ok=True, symlinks=True)

    elapsed = wall1 - wall0
    cores = (cpu1 - cpu0) / elapsed
    ticks = sum(after[r]["mixer"]["ticks"] - before[r]["mixer"]["ticks"] for r in rooms)
    late = sum(after[r]["mixer"]["late_ticks"] - before[r]["mixer"]["late_ticks"] for r in rooms)
    skipped = sum(after[r]["mixer"]["skipped_ticks"] - before[r]["mixer"]["skipped_ticks"] for r in rooms)
    sent: list[float] = []
    received: list[float] = []
    lost = 0
    missing = 0
    for room in rooms:
        span = after[room]["at"] - before[room]["at"]
        due = span / 0.020
        for pid, media in after[room]["media"].items():
            old = before[room]["media"].get(pid)
            if old is None or "rtp_packets_out" not in media:
                missing += 1
                continue
            sent.append((media["rtp_packets_out"] - old["rtp_packets_out"]) / due)
            received.append((media["rtp_packets_in"] - old["rtp_packets_in"]) / due)
            lost += media.get("audio_frames_lost", 0) - old.get("audio_frames_lost", 0)
    measured = len(sent)
    to_phones = phones_delta(phones0, phones1)
    phone_received, phone_sent = to_phones["received"], to_phones["sent"]
    per_leg = cores / measured if measured else 0.0
    marginal = max(cores - idle_cores, 0.0) / measured if measured else 0.0
    active_rooms = sum(1 for r in rooms if after[r]["media"])
    return {
        "workers": workers,
        "legs": legs,
        "legs_in_rooms": in_rooms,
        "legs_measured": measured,
        "complete": measured == legs and missing == 0 and still_in >= legs,
        "room_size": room_size,
        "rooms": room_count,
        "rooms_with_callers": active_rooms,
        "sipp_processes": procs,
        "call_rate": per_proc_rate * procs,
        "all_joined_after_s": round(all_joined_s, 2),
        "window_s": round(elapsed, 2),
        "legs_missing_in_window": missing,
        "legs_still_in_rooms_after_window": still_in,
        "gateway_idle_cores": round(idle_cores, 4),
        "gateway_cores": round(cores, 4),
        "cpu_percent_per_leg": round(per_leg * 100, 4),
        "marginal_cpu_percent_per_leg": round(marginal * 100, 4),
        "sipp_cores": round((sipp1 - sipp0) / elapsed, 4),
        "phones_cores": round((phones_cpu1 - phones_cpu0) / elapsed, 4),
        "mixer_ticks": ticks,
        "late_ticks": late,
        "late_tick_percent": round(late * 100 / ticks, 4) if ticks else 0.0,
        "skipped_ticks": skipped,
        "max_lateness_ms_since_start": max(after[r]["mixer"]["max_lateness_ms"] for r in rooms),
        "tick_cpu_ms_mean": round(
            sum(after[r]["mixer"]["tick_cpu_ms_mean"] for r in rooms if after[r]["media"]) / max(active_rooms, 1), 4
        ),
        # gateway -> phones: counted at the phones' sockets (the receiver); the gateway's sent
        # counter beside it is the sender's view only.
        "rtp_to_phones_received_ratio_mean": _mean(phone_received),
        "rtp_to_phones_received_ratio_min": round(min(phone_received), 4) if phone_received else 0.0,
        "rtp_to_phones_received": to_phones["received_total"],
        "rtp_to_phones_lost": to_phones["lost"],
        "rtp_to_phones_loss_percent": (
            round(to_phones["lost"] * 100 / (to_phones["lost"] + to_phones["received_total"]), 4)
            if to_phones["lost"] + to_phones["received_total"]
            else 0.0
        ),
        "rtp_to_phones_legs_with_loss": to_phones["legs_with_loss"],
        "rtp_to_phones_sent_by_gateway_ratio_mean": _mean(sent),
        "rtp_to_phones_sent_by_gateway_ratio_min": round(min(sent), 4) if sent else 0.0,
        # phones -> gateway: the phones' sent counts, and the gateway's inbound counter (the receiver)
        "rtp_from_phones_sent_ratio_mean": _mean(phone_sent),
        "rtp_from_phones_received_by_gateway_ratio_mean": _mean(received),
        "rtp_from_phones_received_by_gateway_ratio_min": round(min(received), 4) if received else 0.0,
        "phones_late_sends": to_phones["late_sends"],
        "phones_max_send_late_ms": to_phones["max_send_late_ms"],
        "audio_frames_lost": lost,
        "calls_successful": sum(s["successful"] for s in sipp_summaries),
        "calls_failed": sum(s["failed"] for s in sipp_summaries),
        "refused_answers": dict(sum((Counter(s["unexpected_answers"]) for s in sipp_summaries), Counter())),
        "sipp": sipp_summaries,
        "gateway_log": problems,
    }


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--legs", type=int, nargs="+", default=[100], help="concurrent calls (several: one run each)")
    parser.add_argument("--room-size", type=int, default=10, help="callers per room")
    parser.add_argument("--seconds", type=float, default=30.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=5.0, help="wait after the last caller joined")
    parser.add_argument("--rate", type=float, default=50.0, help="calls per second while setting up")
    parser.add_argument("--calls-per-sipp", type=int, default=100, help="calls (RTP streams) per sipp process")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--keep", type=Path, help="copy the gateway's and sipp's files (logs, traces) here")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1],
        help="worker processes (server.workers); several: every leg count with each, and the capacity ratio",
    )  # fmt: skip
    add_common_arguments(parser)
    args = parser.parse_args()
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    points = []
    for workers in args.workers:
        for legs in args.legs:
            point = measure(
                legs, args.room_size, args.seconds, args.warmup, args.rate, args.calls_per_sipp, args.log_level, args.keep,
                tree=args.tree, workers=workers,
            )  # fmt: skip
            points.append(point)
            print(
                f"{workers} worker(s), {legs} legs: {point['legs_measured']} measured, {point['gateway_cores']:.3f} gateway cores, "
            f"{point['late_tick_percent']:.3f} % late ticks, RTP to phones {point['rtp_to_phones_lost']} lost "
                f"(at the phones), {point['calls_failed']} failed calls",
                flush=True,
            )
    goal = {"legs": 200, "gateway_cores_below": 1.0, "late_tick_percent_below": 0.1, "rtp_to_phones_lost": 0}
    capacity = capacities(
        points,
        lambda p: p["complete"] and p["late_tick_percent"] < goal["late_tick_percent_below"] and p["rtp_to_phones_lost"] == 0,
    )
    path = write_results(
        "sip_legs",
        {
            "points": points,
            "capacity_by_workers": capacity,
            "goal": goal,
            "settings": {
                "room_size": args.room_size,
                "seconds": args.seconds,
                "warmup": args.warmup,
                "rate": args.rate,
                "calls_per_sipp": args.calls_per_sipp,
                "log_level": args.log_level,
                "codec": "PCMA, 20 ms",
                "media": "bench/rtp_phones.py (RTP sent and counted at the phones); sipp for signalling only",
                "sipp": subprocess.run([SIPP, "-v"], capture_output=True, text=True).stdout.strip().splitlines()[0],
            },
        },
        args.json,
        args.tree,
    )
    print()
    print_table(
        ["workers", "legs", "in rooms", "gw cores", "idle", "% core/leg", "late ticks %", "max late ms (run)",
         "to phones: recv mean", "recv min", "lost", "gw sent mean", "from phones: gw recv mean", "recv min",
         "sipp+phones cores", "failed calls"],
        [
            [
                p["workers"],
                p["legs"],
                p["legs_measured"],
                f"{p['gateway_cores']:.3f}",
                f"{p['gateway_idle_cores']:.3f}",
                f"{p['cpu_percent_per_leg']:.3f}",
                f"{p['late_tick_percent']:.3f}",
                p["max_lateness_ms_since_start"],
                f"{p['rtp_to_phones_received_ratio_mean']:.4f}",
                f"{p['rtp_to_phones_received_ratio_min']:.4f}",
                p["rtp_to_phones_lost"],
                f"{p['rtp_to_phones_sent_by_gateway_ratio_mean']:.4f}",
                f"{p['rtp_from_phones_received_by_gateway_ratio_mean']:.4f}",
                f"{p['rtp_from_phones_received_by_gateway_ratio_min']:.4f}",
                f"{p['sipp_cores'] + p['phones_cores']:.3f}",
                p["calls_failed"],
            ]
            for p in points
        ],
    )  # fmt: skip
    for p in points:
        if not p["complete"]:
            print(
                f"\nINCOMPLETE at {p['legs']} legs: {p['legs_measured']} measured, "
                f"{p['legs_still_in_rooms_after_window']} still in rooms after the window; "
                f"failed calls were answered {p['refused_answers']}"
            )
        log = p["gateway_log"]
        if log["levels"] or log["other_count"]:
            print(f"gateway log at {p['legs']} legs: {log['levels']} {log['events']}, {log['other_count']} other lines")
        for s in p["sipp"]:
            if s["failed"] or s["exit_code"] != 0:
                print(f"sipp at {p['legs']} legs: exit {s['exit_code']}, {s['failed']} failed: {s['failures']} {s['unexpected_answers']}")
    print_capacities(capacity, "the most legs measured under the goal's late ticks, no RTP lost, every caller in")
    print(
        f"\nresults: {path} (goal: {goal['legs']} G.711 legs in one process under "
        f"{goal['late_tick_percent_below']} % late ticks, no RTP lost at the phones; ratios are against the "
        "packets due, 50 per second per leg)"
    )


if __name__ == "__main__":
    main()
