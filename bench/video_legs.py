"""Video through the gateway: the composed picture room systems receive (encode once per room and
output, whatever the number of receivers), H.264 from a room system passed through to browsers, and
a room system's content (slides, BFCP) shared with browsers and room systems.

    python bench/video_legs.py [--rooms 1] [--senders 2] [--receivers 1 4] [--passthrough] [--content]
    python bench/video_legs.py --only-content [--content-receivers 1 4] [--content-kinds ...]

The gateway runs as its own process, exactly as `gateway run` does (from this checkout or from
`--tree`); every far end runs in processes of its own (bench/video_peers.py), so their CPU is not
the gateway's:
- per room, K browser senders (--senders): aiortc peers that join over the WebSocket protocol and
  send a real camera, 1280x720 at 30 fps (FFmpeg's testsrc2 pattern, moving) in VP8, and Opus;
  they receive each other's video (counted, not decoded). The camera is a VP8 clip encoded once
  by libvpx before the run and looped (--camera clip, the default; a keyframe request restarts
  it), or encoded frame by frame by aiortc's own encoder (--camera live: about 0.3 core per
  sender, on a machine the gateway shares). They send it in two simulcast layers, as Chromium
  does for the gateway's offer (1280x720 and 640x360, RIDs h and l; --no-simulcast: one), so the
  composition decodes a camera in the strip from its lower layer ("of them lower layer/s" in the
  table);
- per room, L SIP room systems (--receivers): sipp places the calls (bench/sipp/video_leg.xml:
  PCMA audio + H.264 video, profile-level-id 42e01f, packetization-mode 1, rtcp-fb nack / nack pli
  / ccm fir, video recvonly: they receive the room's composed picture and send no camera), and an
  RTP process receives their media where it arrives: video packets, whole frames (marker bit and
  timestamp), bytes, loss, IDRs, the longest gap between frames; it sends A-law silence so the
  gateway's media timeout never ends a call.

One gateway run goes through the stages: first L = 0 (browsers only: the baseline, unless
--no-baseline), then each L of --receivers in increasing order, calls added to the ones already
there. Each stage waits until everybody is in the room, then --warmup, then measures over --window:
- the gateway's CPU (from /proc: its process and its children, the compositor processes; also its
  main thread, the event loop, alone, and the children alone), per
  room-system leg (cores / legs) and per leg above the baseline (the legs' own cost); and, since a
  starved compositor drops frames (fewer frames, less CPU), the CPU above the baseline per composed
  frame, and that times 30 fps per leg: an estimate of the full-rate cost (rough: the camera
  decodes in it follow the cameras' rate, not the output's);
- from /metrics, per room, the deltas of the video counters: composed encodes per second / output
  fps = encoders effectively running (the goal: 1 per room and output, whatever L), camera frames
  decoded for the composition per second / fps (one decode per shown camera), transcoder decodes
  (0: browsers get VP8 forwarded as it came), compositions, frames forwarded (the router's count:
  the copies of each camera to the other browsers and to the compositor);
- at each sink: frames received per second against the 30 due (the output rate), loss, IDRs; and
  frames received at all sinks / encodes (= L when one encode serves every room system);
- the mixers' late ticks (GET /api/rooms/{room}), as bench/sip_legs.py reads them;
- the far ends' CPU (browsers, RTP process, sipp) and what the browsers sent (camera frames/s), and
  the CPU of everything else on the machine over the window (from /proc/stat: busy cores minus the
  gateway and the far ends), because on a shared 2-core machine late ticks and frame rates say as
  much about the neighbours' load as about the gateway.
After the run, the first sink's first 90 frames are decoded here (PyAV), so a picture that does
not decode shows up as such.

--passthrough adds a second gateway run: one room system sends H.264 (1280x720, 30 fps, a clip of
testsrc2 made by ffmpeg with libx264, constrained baseline, an IDR every second) into a room whose
browsers (--passthrough-browsers, receiving only) negotiated H.264 for their video slots: frames go
through untouched, so transcoder and composition decodes must stay 0; frames per second at each
browser against 30.

--content adds a gateway run of its own (--only-content: that run alone, its results in
bench/results/video_legs_content.json), one room: a presenting room system (bench/video_peers.py
presenter, with tests/support's SIP caller, BFCP floor participant and H.264 RTP sender) calls with
audio, main video (recvonly), a slides line and a BFCP line over TCP, takes the floor (Hello,
FloorRequest, Granted) and sends slides (--content-size 1280x720 or 1920x1080, --content-fps 15:
testsrc2, libx264 constrained baseline, level 3.1 or 4.0, an IDR every 2 s; PLI/FIR answered with
the next IDR). Then, stage by stage (N of --content-receivers, in increasing order, added to those
already there; first N = 0, the presenter alone, unless --no-baseline), N viewers of each kind of
--content-kinds join:
- browser-vp8 / browser-h264: aiortc browsers (bench/video_peers.py) that take only VP8 / H.264 in
  their slots; they answer the screen-upload line inactive and count the frames that come on the
  slot whose value (offer, `video_slots` messages) is `<presenter id>#content`;
- slides-rs: room systems with a slides line and a BFCP line (sipp, bench/sipp/content_leg.xml: the
  offer of tests/e2e/test_sip_content.py, slides at the presenter's profile-level-id, main video
  recvonly; they never connect to the floor control server); the RTP process counts their slides
  line (and their main line, the composed picture) apart;
- legacy-rs: room systems without content lines (bench/sipp/video_leg.xml): the content reaches
  them in the composed picture (content large, people in the strip).
Per stage, over --window: the gateway's CPU and, per viewer, its CPU above the N = 0 stage divided
by the viewers; the encodes for the content: transcoders (gauge) against those expected (one per
output codec that cannot take the slides as they are: VP8 browsers, and H.264 browsers when the
slides exceed their slots' level 3.1; never one per viewer) and transcodes per second (each
transcoder decode is followed by one encode; nobody sends a camera here, so all are the content's)
per slides frame sent; the composed picture's encoders and encodes per frame time (one per output,
for the legacy systems and the main lines), the content frames decoded for it, frames forwarded;
frames per second at each kind of viewer against the rate the presenter sent (legacy: against 30,
the composed picture's rate); the presenter's rate, keyframe requests and BFCP state; the mixer's
late ticks; the gateway log's warnings and error lines. After the run the first slides room
system's first frames are decoded here.

Goals (printed beside the figures): at most 0.2 core per 720p30 room-system leg, 1 encode per room
and output whatever the number of receivers, 0 decodes for H.264 passthrough to browsers, mixer
late ticks under 0.1 %; for content, one transcode per output codec shared by all its viewers and
one composed encode per output, the slides at every viewer, late ticks under 0.1 %.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402
    ROOT,
    add_common_arguments,
    gateway_process,
    print_table,
    tree_cpu_seconds,
    write_results,
)
from bench.sip_legs import (  # noqa: E402
    SIPP,
    SIPP_DIR,
    TOKEN,
    Gateway,
    PortPool,
    Sipp,
    cpu_seconds,
    start_gateway,
    start_sipp,
)

PEERS = Path(__file__).resolve().parent / "video_peers.py"
SCENARIO = SIPP_DIR / "video_leg.xml"
CLIP_CACHE = Path(tempfile.gettempdir()) / "gateway-bench-clips"
FPS = 30  # the composed picture's rate (media.composed.fps, 30 by default) and the cameras'
GOALS = {
    "cores_per_legacy_leg_max": 0.2,
    "encoders_per_room_and_output": 1,
    "passthrough_decodes": 0,
    "late_tick_percent_below": 0.1,
}
VIDEO_METRICS = (
    "frames_forwarded",
    "frames_transcoded",
    "transcoder_decodes",
    "transcoders",
    "composed_decodes",
    "composed_lower_layer_frames",
    "compositions",
    "composed_encodes",
    "composed_encoders",
)


# -- processes ------------------------------------------------------------------------------------


def thread_cpu_seconds(pid: int, tid: int) -> float:
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores, every process), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def process_cpu(processes: list[subprocess.Popen[Any]]) -> float:
    total = 0.0
    for p in processes:
        try:
            total += cpu_seconds(p.pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


@dataclass
class Far:
    """A bench/video_peers.py process (browsers or RTP), spoken to in JSON lines."""

    name: str
    process: subprocess.Popen[str]
    log: Path

    def _reply(self, timeout: float = 120.0) -> dict[str, Any]:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.name} exited ({self.process.poll()}): {self.tail()}")
            try:
                return dict(json.loads(line))
            except ValueError:
                continue  # something printed by a library
        raise RuntimeError(f"{self.name} did not answer in {timeout} s")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def snap(self) -> dict[str, Any]:
        return self.command("snap", 30)

    def command(self, text: str, timeout: float) -> dict[str, Any]:
        """One command line (snap; the browsers' `add ...`), and its reply."""
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()
        return self._reply(timeout)

    def stop(self) -> dict[str, Any] | None:
        last = None
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write("stop\n")
                self.process.stdin.flush()
                last = self._reply(30)
                self.process.stdin.close()
                self.process.wait(15)
            except (OSError, RuntimeError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(5)
        return last


FAR_NICENESS = [10]  # (--far-niceness)


def _far_priority() -> None:
    """In a far end's process before it runs: a lower CPU priority than the gateway's. The far ends
    stand in for other machines (browsers, room systems); on this one, at the gateway's priority,
    they take its core at random moments and its audio ticks come late for reasons not its own
    (measured: 0.7-0.8 % late ticks with them at niceness 0, 0.0-0.1 % at 10, same gateway)."""
    os.nice(FAR_NICENESS[0])


def stop_all(sipps: list[Any], rtp: Far | None, browsers: Far | None, gateway: Any, keep: Path | None, tmp: Path) -> None:
    """Ends a run: sipp, the far ends, the gateway; copies the run's files to `keep` if given."""
    for sipp in sipps:
        if sipp.process.poll() is None:
            sipp.process.terminate()
            sipp.wait(5)
    if rtp is not None:
        rtp.stop()
    if browsers is not None:
        browsers.stop()
    gateway.stop()
    if keep is not None:
        shutil.copytree(tmp, keep, dirs_exist_ok=True, symlinks=True)


def start_far(name: str, workdir: Path, peers_tree: Path, args: list[str], ready_timeout: float) -> tuple[Far, dict[str, Any]]:
    command, cwd, env = gateway_process(peers_tree)  # the peers import the gateway's aiortc glue from peers_tree
    log = workdir / f"{name}.log"
    process = subprocess.Popen(
        [command[0], str(PEERS), "--tree", str(peers_tree), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
        text=True,
        cwd=workdir,
        env=env,
        preexec_fn=_far_priority,
    )
    far = Far(name, process, log)
    ready = far._reply(ready_timeout)
    if ready.get("event") != "ready":
        raise RuntimeError(f"{name} did not start: {ready}")
    return far, ready


def make_content_clip(size: str, fps: int, seconds: int = 20) -> tuple[Path, str]:
    """Slides for --content: testsrc2 at `size` and `fps` (moving: a worst case for a transcode),
    libx264 constrained baseline at the level the size needs (3.1 for 720p15, 4.0 for 1080p15), an
    IDR every 2 s with SPS/PPS in front, raw Annex B; made once in CLIP_CACHE. Also the
    profile-level-id the room systems' slides lines say."""
    width, height = (int(x) for x in size.split("x"))
    level, profile_level_id = ("3.1", "42e01f") if width * height <= 1280 * 720 else ("4.0", "42e028")
    kbps = 1000 if width * height <= 1280 * 720 else 2000
    clip = CLIP_CACHE / f"testsrc2-{size}-{fps}fps-{seconds}s-baseline-l{level}-g{2 * fps}.h264"
    if not clip.exists():
        CLIP_CACHE.mkdir(parents=True, exist_ok=True)
        partial = clip.with_name(f".{clip.name}.{os.getpid()}")
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
             "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}", "-t", str(seconds),
             "-c:v", "libx264", "-profile:v", "baseline", "-level", level, "-preset", "veryfast", "-pix_fmt", "yuv420p",
             "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{kbps}k", "-g", str(2 * fps), "-bf", "0",
             "-x264-params", "repeat-headers=1", "-f", "h264", str(partial)],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        os.replace(partial, clip)
    return clip, profile_level_id


def make_clip(seconds: int = 10) -> Path:
    """testsrc2 1280x720 30 fps, libx264 constrained baseline, 1.5 Mbit/s, IDR every second with
    SPS/PPS in front, as a raw Annex B stream; made once in CLIP_CACHE."""
    clip = CLIP_CACHE / f"testsrc2-1280x720-30fps-{seconds}s-baseline-g30.h264"
    if clip.exists():
        return clip
    CLIP_CACHE.mkdir(parents=True, exist_ok=True)
    partial = clip.with_name(f".{clip.name}.{os.getpid()}")
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-t", str(seconds),
         "-c:v", "libx264", "-profile:v", "baseline", "-level", "3.1", "-preset", "veryfast", "-pix_fmt", "yuv420p",
         "-b:v", "1500k", "-maxrate", "1500k", "-bufsize", "1500k", "-g", "30", "-bf", "0",
         "-x264-params", "repeat-headers=1", "-f", "h264", str(partial)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    os.replace(partial, clip)
    return clip


# -- the gateway's view ---------------------------------------------------------------------------

_SAMPLE = re.compile(r'^(gateway_[a-z_]+?)(?:_total)?\{room="([^"]*)"\}\s+(\S+)$')


def video_metrics(gateway: Gateway) -> tuple[dict[str, dict[str, float]], str | None]:
    """The gateway_video_* samples of /metrics, by room then by name (without gateway_video_), and
    what went wrong when /metrics did not answer (the other figures are measured all the same)."""
    import httpx

    response = httpx.get(gateway.base_url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    if response.status_code != 200:
        return {}, f"GET /metrics: HTTP {response.status_code}{gateway_exception(gateway)}"
    out: dict[str, dict[str, float]] = {}
    for line in response.text.splitlines():
        m = _SAMPLE.match(line)
        if m and m.group(1).startswith("gateway_video_"):
            out.setdefault(m.group(2), {})[m.group(1)[len("gateway_video_") :]] = float(m.group(3))
    return out, None


def gateway_exception(gateway: Gateway) -> str:
    """The last line of the last traceback the gateway logged (JSON lines), if any."""
    last = ""
    for raw in gateway.log_path.read_text(errors="replace").splitlines():
        if '"exception"' in raw:
            try:
                last = str(json.loads(raw).get("exception", "")).strip().splitlines()[-1]
            except (ValueError, IndexError, AttributeError):
                continue
    return f" ({last})" if last else ""


def rooms_state(gateway: Gateway, rooms: list[str]) -> dict[str, Any]:
    out = {}
    for room in rooms:
        mixer = gateway.api(f"/api/rooms/{room}")["mixer"]
        participants = gateway.api(f"/api/rooms/{room}/participants")
        out[room] = {"mixer": mixer, "participants": participants}
    return out


def count_in_rooms(gateway: Gateway, rooms: list[str]) -> int:
    return sum(int(r["live"]["participants"]) for r in gateway.api("/api/rooms") if r["id"] in rooms)


def wait_in_rooms(gateway: Gateway, rooms: list[str], want: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    n = count_in_rooms(gateway, rooms)
    while n < want and time.monotonic() < deadline:
        time.sleep(0.25)
        n = count_in_rooms(gateway, rooms)
    return n


# -- one window -----------------------------------------------------------------------------------


@dataclass
class Snapshot:
    at: float
    cpu: float  # the gateway's process and its children (the compositors)
    children_cpu: float
    loop_cpu: float
    machine_cpu: float
    far_cpu: dict[str, float]
    metrics: dict[str, dict[str, float]]
    metrics_error: str | None
    rooms: dict[str, Any]
    browsers: dict[str, Any] | None
    rtp: dict[str, Any] | None


def take(gateway: Gateway, rooms: list[str], far: dict[str, list[subprocess.Popen[Any]]], browsers: Far | None, rtp: Far | None) -> Snapshot:
    """CPU first (and wall time), then the API and the far ends' counters."""
    pid = gateway.process.pid
    at = time.monotonic()
    (own, children), loop_cpu, machine_cpu = tree_cpu_seconds(pid), thread_cpu_seconds(pid, pid), machine_busy_seconds()
    far_cpu = {k: process_cpu(v) for k, v in far.items()}
    return Snapshot(
        at, own + children, children, loop_cpu, machine_cpu, far_cpu, *video_metrics(gateway), rooms_state(gateway, rooms),
        browsers.snap() if browsers else None, rtp.snap() if rtp else None,
    )  # fmt: skip


def _d(after: dict[str, float], before: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def window(
    gateway: Gateway,
    rooms: list[str],
    seconds: float,
    far: dict[str, list[subprocess.Popen[Any]]],
    browsers: Far | None,
    rtp: Far | None,
) -> tuple[Snapshot, Snapshot]:
    before = take(gateway, rooms, far, browsers, rtp)
    time.sleep(seconds)
    after = take(gateway, rooms, far, browsers, rtp)
    return before, after


def load_figures(before: Snapshot, after: Snapshot, elapsed: float) -> dict[str, Any]:
    """The CPU of the gateway, of the far ends, and of everything else on this (shared) machine."""
    gateway = (after.cpu - before.cpu) / elapsed
    far = {k: round((after.far_cpu[k] - before.far_cpu[k]) / elapsed, 4) for k in after.far_cpu}
    machine = (after.machine_cpu - before.machine_cpu) / elapsed
    return {
        "gateway_cores": round(gateway, 4),
        "gateway_loop_thread_cores": round((after.loop_cpu - before.loop_cpu) / elapsed, 4),
        "gateway_children_cores": round((after.children_cpu - before.children_cpu) / elapsed, 4),  # (compositors)
        "far_cores": far,
        "machine_busy_cores": round(machine, 4),
        "other_cores": round(max(machine - gateway - sum(far.values()), 0.0), 4),  # not this benchmark's
        "machine_cores": os.cpu_count(),
    }


def room_figures(before: Snapshot, after: Snapshot, rooms: list[str], elapsed: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ticks = late = skipped = 0
    for room in rooms:
        m0, m1 = before.metrics.get(room, {}), after.metrics.get(room, {})
        per_s = {k: round(_d(m1, m0, k) / elapsed, 2) for k in VIDEO_METRICS if k not in ("transcoders", "composed_encoders")}
        mix0, mix1 = before.rooms[room]["mixer"], after.rooms[room]["mixer"]
        t = mix1["ticks"] - mix0["ticks"]
        lt = mix1["late_ticks"] - mix0["late_ticks"]
        ticks, late, skipped = ticks + t, late + lt, skipped + mix1["skipped_ticks"] - mix0["skipped_ticks"]
        out[room] = {
            "per_s": per_s,
            "encoders_effective": round(per_s["composed_encodes"] / FPS, 3),
            "composed_decoders_effective": round(per_s["composed_decodes"] / FPS, 3),
            "transcoder_decodes": _d(m1, m0, "transcoder_decodes"),
            "composed_decodes": _d(m1, m0, "composed_decodes"),
            "composed_encoders_gauge": m1.get("composed_encoders", 0.0),
            "transcoders_gauge": m1.get("transcoders", 0.0),
            "metrics_present": bool(m1),
            "metrics_error": after.metrics_error or before.metrics_error,
            "late_ticks": lt,
            "late_tick_percent": round(lt * 100 / t, 4) if t else 0.0,
            "max_lateness_ms_since_start": mix1.get("max_lateness_ms", 0.0),
            "participants": Counter(p.get("kind", "?") for p in after.rooms[room]["participants"]),
        }
    out["_all"] = {
        "ticks": ticks,
        "late_ticks": late,
        "skipped_ticks": skipped,
        "late_tick_percent": round(late * 100 / ticks, 4) if ticks else 0.0,
    }
    return out


def sink_figures(before: dict[str, Any], after: dict[str, Any], ports: list[int], elapsed: float, due: float = FPS) -> dict[str, Any]:
    fps: list[float] = []
    kbps: list[float] = []
    lost = received = keyframes = 0
    gaps: list[float] = []
    audio_sent: list[float] = []
    for port in ports:
        c0, c1 = before["calls"][str(port)], after["calls"][str(port)]
        frames = c1["frames"] - c0["frames"]
        fps.append(frames / elapsed)
        kbps.append((c1["video_bytes"] - c0["video_bytes"]) * 8 / 1000 / elapsed)
        got = c1["video_packets"] - c0["video_packets"]
        received += got
        lost += max((c1["expected"] - c0["expected"]) - got, 0)
        keyframes += c1["keyframes"] - c0["keyframes"]
        gaps.append(c1["max_gap_ms"])
        audio_sent.append((c1["audio_sent"] - c0["audio_sent"]) / elapsed / 50)
    return {
        "sinks": len(ports),
        "fps_min": round(min(fps), 2) if fps else 0.0,
        "fps_mean": round(sum(fps) / len(fps), 2) if fps else 0.0,
        "delivered_ratio_min": round(min(fps) / due, 4) if fps else 0.0,
        "kbps_mean": round(sum(kbps) / len(kbps), 1) if kbps else 0.0,
        "packets_received": received,
        "packets_lost": lost,
        "keyframes": keyframes,
        "max_frame_gap_ms": max(gaps) if gaps else 0.0,
        "audio_sent_ratio_min": round(min(audio_sent), 4) if audio_sent else 0.0,
    }


def browser_figures(before: dict[str, Any], after: dict[str, Any], elapsed: float) -> dict[str, Any]:
    cams: list[float] = []
    cams_by_room: Counter[str] = Counter()
    slots: list[float] = []
    packets: list[float] = []
    codecs: Counter[str] = Counter()
    skipped = 0
    problems = []
    for p0, p1 in zip(before["peers"], after["peers"], strict=True):
        if p1["camera"]:
            cams.append((p1["camera_frames"] - p0["camera_frames"]) / elapsed)
            cams_by_room[p1["room"]] += (p1["camera_frames"] - p0["camera_frames"]) / elapsed
            skipped += p1["camera_skipped"] - p0["camera_skipped"]
        slots.append((p1["slot_frames"] - p0["slot_frames"]) / elapsed)
        packets.append((p1["slot_packets"] - p0["slot_packets"]) / elapsed)
        for codec, n in p1["slot_codecs"].items():
            codecs[codec] += n - p0["slot_codecs"].get(codec, 0)
        if p1["connection"] != "connected" or p1["ended"] or p1["errors"]:
            problems.append({k: p1[k] for k in ("room", "connection", "ended", "errors")})
    return {
        "camera_fps_min": round(min(cams), 2) if cams else None,
        "camera_fps_mean": round(sum(cams) / len(cams), 2) if cams else None,
        "camera_frames_skipped": skipped,
        "camera_fps_by_room": {room: round(fps, 2) for room, fps in cams_by_room.items()},
        "slot_fps_min": round(min(slots), 2) if slots else 0.0,
        "slot_fps_mean": round(sum(slots) / len(slots), 2) if slots else 0.0,
        "slot_codecs": dict(codecs),
        "slot_packets_per_s_mean": round(sum(packets) / len(packets), 1) if packets else 0.0,
        "slot_payload_types": [p["slot_payload_types"] for p in after["peers"]],
        "problems": problems,
    }


def decode_capture(path: Path) -> dict[str, Any]:
    """Decodes what the first sink received first (H.264 Annex B), here, after the run."""
    if not path.exists() or path.stat().st_size == 0:
        return {"frames_decoded": 0, "note": "nothing captured"}
    import av

    decoded, errors, sizes = 0, 0, Counter[str]()
    try:
        with av.open(str(path), format="h264") as container:
            for packet in container.demux(video=0):
                try:
                    for frame in packet.decode():
                        decoded += 1
                        sizes[f"{frame.width}x{frame.height}"] += 1
                except av.error.FFmpegError:
                    errors += 1
    except av.error.FFmpegError as exc:
        return {"frames_decoded": decoded, "errors": errors + 1, "error": str(exc)}
    return {"frames_decoded": decoded, "errors": errors, "sizes": dict(sizes), "bytes": path.stat().st_size}


# -- the composed picture --------------------------------------------------------------------------


def run_composed(args: argparse.Namespace, keep: Path | None) -> dict[str, Any]:
    rooms = [f"v{i}" for i in range(args.rooms)]
    stages = ([0] if args.baseline else []) + sorted(set(n for n in args.receivers if n > 0))
    max_l = max(stages)
    per_room = args.senders + max_l
    points: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="video_legs_") as tmp:
        workdir = Path(tmp)
        gateway = start_gateway(workdir, rooms, args.log_level, max_participants=max(per_room, 2), tree=args.tree)
        browsers: Far | None = None
        rtp: Far | None = None
        sipps: list[Sipp] = []
        try:
            time.sleep(1)
            idle0, wall0 = sum(tree_cpu_seconds(gateway.process.pid)), time.monotonic()
            time.sleep(3)
            idle_cores = (sum(tree_cpu_seconds(gateway.process.pid)) - idle0) / (time.monotonic() - wall0)
            ws = gateway.base_url.replace("http", "ws", 1) + "/ws"
            began = time.monotonic()
            if args.senders:
                browsers, ready = start_far(
                    "browsers", workdir, args.peers_tree,
                    ["browsers", "--url", ws, "--rooms", *rooms, "--senders", str(args.senders), "--fps", str(FPS)]
                    + ["--camera", args.camera] + (["--simulcast"] if args.simulcast else []),
                    ready_timeout=120,
                )  # fmt: skip
                not_connected = [p for p in ready["peers"] if p["connection"] != "connected"]
                if not_connected:
                    print(f"WARNING: {len(not_connected)} browser(s) not connected: {not_connected[:2]}", flush=True)
            browsers_joined_s = time.monotonic() - began
            # Every room system's ports, for all stages; their RTP process starts now and waits.
            ports = PortPool()
            calls: dict[str, list[tuple[int, int]]] = {room: [(ports.take(2), ports.take(2)) for _ in range(max_l)] for room in rooms}
            all_calls = [f"{a}:{v}:sink" for room in rooms for a, v in calls[room]]
            capture = workdir / "first_sink.h264"
            if max_l:
                rtp, _ = start_far(
                    "rtp", workdir, args.peers_tree, ["rtp", "--calls", *all_calls, "--capture", str(capture)], ready_timeout=30
                )
            far = {
                "browsers": [browsers.process] if browsers else [],
                "rtp": [rtp.process] if rtp else [],
                "sipp": [],
            }
            placed = 0
            stage_time = args.warmup + args.window + 40
            for n, legs in enumerate(stages):
                stage_began = time.monotonic()
                if legs > placed:
                    inf = workdir / f"stage{legs}.csv"
                    inf.write_text(
                        "SEQUENTIAL\n"
                        + "".join(f"{room};{a};{v};recvonly;RTP/AVPF;\n" for room in rooms for a, v in calls[room][placed:legs])
                    )
                    count = (legs - placed) * len(rooms)
                    hold_s = stage_time * (len(stages) - n) + 60
                    sipp = start_sipp(
                        f"stage{legs}", workdir, SCENARIO, f"127.0.0.1:{gateway.sip_port}", ports,
                        ["-inf", str(inf), "-m", str(count), "-l", str(count), "-r", "5", "-aa",
                         "-d", str(int(hold_s * 1000)), "-recv_timeout", "20000", "-timeout", str(int(hold_s + 60))],
                    )  # fmt: skip
                    sipps.append(sipp)
                    far["sipp"].append(sipp.process)
                    placed = legs
                want = len(rooms) * (args.senders + legs)
                in_rooms = wait_in_rooms(gateway, rooms, want, 60)
                joined_s = time.monotonic() - stage_began
                if in_rooms < want:
                    print(f"WARNING: L={legs}: {in_rooms} of {want} participants in the rooms; measuring those", flush=True)
                time.sleep(args.warmup)
                before, after = window(gateway, rooms, args.window, far, browsers, rtp)
                elapsed = after.at - before.at
                load = load_figures(before, after, elapsed)
                cores = load["gateway_cores"]
                point: dict[str, Any] = {
                    "legacy_legs_per_room": legs,
                    "legacy_legs": legs * len(rooms),
                    "participants_in_rooms": in_rooms,
                    "participants_wanted": want,
                    "joined_after_s": round(joined_s, 2),
                    "window_s": round(elapsed, 2),
                    **load,
                    "gateway_idle_cores": round(idle_cores, 4),
                    "rooms": room_figures(before, after, rooms, elapsed),
                }
                if legs:
                    point["cores_per_legacy_leg"] = round(cores / (legs * len(rooms)), 4)
                    if points and points[0]["legacy_legs_per_room"] == 0:
                        base = points[0]["gateway_cores"]
                        point["marginal_cores_per_legacy_leg"] = round((cores - base) / (legs * len(rooms)), 4)
                    assert before.rtp is not None and after.rtp is not None
                    ports_now = [a for room in rooms for a, _ in calls[room][:legs]]
                    point["sinks"] = sink_figures(before.rtp, after.rtp, ports_now, elapsed)
                    encodes = sum(point["rooms"][room]["per_s"]["composed_encodes"] for room in rooms)
                    if "marginal_cores_per_legacy_leg" in point and encodes:
                        # The gateway's CPU above the browsers-only stage per composed frame: under
                        # contention the compositor drops frames, so cores alone understate the cost
                        # of the full rate; this unit cost times 30 fps estimates it.
                        extra = cores - points[0]["gateway_cores"]
                        point["cpu_ms_per_composed_frame_above_l0"] = round(extra * 1000 / encodes, 2)
                        point["cores_per_legacy_leg_at_30fps_estimate"] = round(
                            extra / encodes * FPS * len(rooms) / (legs * len(rooms)), 4
                        )
                    point["sink_frames_per_encode"] = (
                        round(point["sinks"]["fps_mean"] * len(ports_now) / encodes, 2) if encodes else None
                    )
                if before.browsers is not None and after.browsers is not None:
                    point["browsers"] = browser_figures(before.browsers, after.browsers, elapsed)
                    for room in rooms:  # every camera frame sent is decoded once for the composition
                        sent = point["browsers"]["camera_fps_by_room"].get(room, 0.0)
                        figures = point["rooms"][room]
                        figures["camera_fps_sent"] = sent
                        figures["composed_decodes_per_camera_frame"] = (
                            round(figures["per_s"]["composed_decodes"] / sent, 3) if sent else None
                        )
                points.append(point)
                print(_stage_line(point), flush=True)
            last_rtp = rtp.stop() if rtp else None
            rtp = None
            capture_check = decode_capture(capture)
        finally:
            stop_all(sipps, rtp, browsers, gateway, keep / "composed" if keep is not None else None, tmp)
        problems = gateway.problems() if gateway.log_path.exists() else {}
        sipp_summaries = [s.summary() for s in sipps]
    return {
        "rooms": len(rooms),
        "senders_per_room": args.senders,
        "simulcast": args.simulcast,
        "camera": args.camera,
        "stages": stages,
        "browsers_ready_after_s": round(browsers_joined_s, 2),
        "points": points,
        "first_sink_decoded": capture_check,
        "sink_payload_types": (last_rtp or {}).get("calls", {}).get(str(calls[rooms[0]][0][0]), {}).get("payload_types") if max_l else None,
        "sipp": sipp_summaries,
        "gateway_log": problems,
    }


def _stage_line(p: dict[str, Any]) -> str:
    rooms = {k: v for k, v in p["rooms"].items() if k != "_all"}
    enc = max((r["encoders_effective"] for r in rooms.values()), default=0.0)
    text = (
        f"L={p['legacy_legs_per_room']}/room: gateway {p['gateway_cores']:.3f} cores "
        f"(loop thread {p['gateway_loop_thread_cores']:.3f}, compositor processes {p.get('gateway_children_cores', 0):.3f}), "
        f"encoders/room {enc:.2f}, "
        f"late ticks {p['rooms']['_all']['late_tick_percent']:.3f} %"
    )
    if "sinks" in p:
        text += f", sinks {p['sinks']['fps_min']:.1f}-{p['sinks']['fps_mean']:.1f} fps"
    return text


# -- H.264 passthrough to browsers ---------------------------------------------------------------------


def run_passthrough(args: argparse.Namespace, keep: Path | None) -> dict[str, Any]:
    room = "p0"
    clip = make_clip()
    with tempfile.TemporaryDirectory(prefix="video_pass_") as tmp:
        workdir = Path(tmp)
        gateway = start_gateway(workdir, [room], args.log_level, max_participants=args.passthrough_browsers + 2, tree=args.tree)
        browsers: Far | None = None
        rtp: Far | None = None
        sipp: Sipp | None = None
        try:
            ws = gateway.base_url.replace("http", "ws", 1) + "/ws"
            browsers, _ = start_far(
                "browsers", workdir, args.peers_tree,
                ["browsers", "--url", ws, "--rooms", room, "--senders", "0",
                 "--receivers", str(args.passthrough_browsers), "--slot-codec", "H264"],
                ready_timeout=120,
            )  # fmt: skip
            ports = PortPool()
            audio, video = ports.take(2), ports.take(2)
            answers = workdir / "answers.txt"
            rtp, _ = start_far(
                "rtp", workdir, args.peers_tree,
                ["rtp", "--calls", f"{audio}:{video}:source", "--clip", str(clip), "--answers", str(answers)],
                ready_timeout=60,
            )  # fmt: skip
            inf = workdir / "source.csv"
            inf.write_text(f"SEQUENTIAL\n{room};{audio};{video};sendonly;RTP/AVPF;\n")
            hold_s = args.warmup + args.window + 120
            sipp = start_sipp(
                "source", workdir, SCENARIO, f"127.0.0.1:{gateway.sip_port}", ports,
                ["-inf", str(inf), "-m", "1", "-l", "1", "-r", "1", "-aa",
                 "-d", str(int(hold_s * 1000)), "-recv_timeout", "20000", "-timeout", str(int(hold_s + 60))],
            )  # fmt: skip
            want = args.passthrough_browsers + 1
            in_room = wait_in_rooms(gateway, [room], want, 60)
            time.sleep(args.warmup)
            far = {"browsers": [browsers.process], "rtp": [rtp.process], "sipp": [sipp.process]}
            before, after = window(gateway, [room], args.window, far, browsers, rtp)
            elapsed = after.at - before.at
            assert before.rtp is not None and after.rtp is not None and before.browsers and after.browsers
            source0 = before.rtp["calls"][str(audio)]
            source1 = after.rtp["calls"][str(audio)]
            load = load_figures(before, after, elapsed)
            cores = load["gateway_cores"]
            result = {
                "room": room,
                "browser_receivers": args.passthrough_browsers,
                "participants_in_room": in_room,
                "participants_wanted": want,
                "window_s": round(elapsed, 2),
                **load,
                "cores_per_browser_receiver": round(cores / args.passthrough_browsers, 4),
                "rooms": room_figures(before, after, [room], elapsed),
                "browsers": browser_figures(before.browsers, after.browsers, elapsed),
                "source_fps": round((source1["video_frames_sent"] - source0["video_frames_sent"]) / elapsed, 2),
                "source_sending": source1["video_remote"],
                "source_keyframe_requests": source1["keyframe_requests"],
                "clip": str(clip),
            }
            print(
                f"passthrough: gateway {cores:.3f} cores, decodes {result['rooms'][room]['transcoder_decodes']:.0f} "
                f"(transcoder) + {result['rooms'][room]['composed_decodes']:.0f} (composition), browsers "
                f"{result['browsers']['slot_fps_min']:.1f} fps min {result['browsers']['slot_codecs']}",
                flush=True,
            )
        finally:
            stop_all([sipp] if sipp is not None else [], rtp, browsers, gateway, keep / "passthrough" if keep is not None else None, tmp)
        result["sipp"] = [sipp.summary()] if sipp is not None else []
        result["gateway_log"] = gateway.problems()
    return result


# -- content sharing -----------------------------------------------------------------------------------

CONTENT_KINDS = ("browser-vp8", "browser-h264", "slides-rs", "legacy-rs")
CONTENT_SCENARIO = SIPP_DIR / "content_leg.xml"
CONTENT_ROOM = "c0"


def wait_presentation(gateway: Gateway, room: str, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while True:
        presentation = gateway.api(f"/api/rooms/{room}").get("presentation")
        if presentation or time.monotonic() > deadline:
            return presentation  # type: ignore[no-any-return]
        time.sleep(0.25)


def content_browser_figures(before: dict[str, Any], after: dict[str, Any], codec: str, elapsed: float, due: float) -> dict[str, Any]:
    """The browsers that took only `codec` in their slots: frames per second that came on the slot
    showing someone's content (`<participant>#content`), what codec they came in, from whom."""
    fps: list[float] = []
    codecs: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    keyframes = 0
    kbps: list[float] = []
    problems = []
    for p0, p1 in zip(before["peers"], after["peers"], strict=True):
        if p1["camera"] or p1.get("slot_codec") != codec:
            continue
        fps.append((p1["content_frames"] - p0["content_frames"]) / elapsed)
        kbps.append((p1["content_bytes"] - p0["content_bytes"]) * 8 / 1000 / elapsed)
        keyframes += p1["content_keyframes"] - p0["content_keyframes"]
        for name, n in p1["content_codecs"].items():
            codecs[name] += n - p0["content_codecs"].get(name, 0)
        for value, n in p1["content_sources"].items():
            sources[value] += n - p0["content_sources"].get(value, 0)
        if p1["connection"] != "connected" or p1["ended"] or p1["errors"]:
            problems.append({k: p1[k] for k in ("room", "connection", "ended", "errors")})
    return {
        "sinks": len(fps),
        "fps_min": round(min(fps), 2) if fps else 0.0,
        "fps_mean": round(sum(fps) / len(fps), 2) if fps else 0.0,
        "delivered_ratio_min": round(min(fps) / due, 4) if fps and due else 0.0,
        "kbps_mean": round(sum(kbps) / len(kbps), 1) if kbps else 0.0,
        "keyframes": keyframes,
        "codecs": dict(codecs),
        "sources": dict(sources),
        "problems": problems,
    }


def presenter_figures(before: dict[str, Any], after: dict[str, Any], elapsed: float) -> dict[str, Any]:
    return {
        "slides_fps_sent": round((after["frames_sent"] - before["frames_sent"]) / elapsed, 2),
        "slides_kbps_sent": round((after["octets_sent"] - before["octets_sent"]) * 8 / 1000 / elapsed, 1),
        "keyframes_sent": after["key_frames_sent"] - before["key_frames_sent"],
        "keyframe_requests": (after["pli_received"] + after["fir_received"]) - (before["pli_received"] + before["fir_received"]),
        "keyframe_requests_since_start": {"pli": after["pli_received"], "fir": after["fir_received"]},
        "main_video_fps_received": round((after["main_video_frames"] - before["main_video_frames"]) / elapsed, 2),
        "audio_sent_ratio": round((after["audio_sent"] - before["audio_sent"]) / elapsed / 50, 4),
        "sip_requests_from_gateway": after["sip_requests"],
        "bfcp_statuses": after["bfcp_statuses"],
        "bfcp_problems": after["bfcp_problems"],
    }


def slides_of(snap: dict[str, Any], ports: list[int]) -> dict[str, Any]:
    """The RTP process's snap with each call's slides line in the place of its main one."""
    calls = snap["calls"]
    return {"calls": {str(p): {**calls[str(p)]["slides"], "audio_sent": calls[str(p)]["audio_sent"]} for p in ports}}


def expected_transcoders(kinds: list[str], profile_level_id: str, viewers: int) -> int:
    """Transcoders the content should need (one per output codec that cannot take it as it is):
    VP8 browsers, one; H.264 browsers none while the slides fit their slots' level (aiortc: 3.1,
    so 720p15), else one; room systems with slides none (same profile and level); legacy room
    systems none (the content goes into the composed picture instead)."""
    if not viewers:
        return 0
    return int("browser-vp8" in kinds) + int("browser-h264" in kinds and profile_level_id != "42e01f")


def run_content(args: argparse.Namespace, keep: Path | None) -> dict[str, Any]:
    room = CONTENT_ROOM
    kinds = list(dict.fromkeys(args.content_kinds))
    stages = ([0] if args.baseline else []) + sorted(set(n for n in args.content_receivers if n > 0))
    max_n = max(stages)
    clip, profile_level_id = make_content_clip(args.content_size, args.content_fps)
    browser_codecs = [k.split("-")[1].upper() for k in kinds if k.startswith("browser-")]
    n_slides = max_n if "slides-rs" in kinds else 0
    n_legacy = max_n if "legacy-rs" in kinds else 0
    points: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    run_began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="video_content_") as tmp:
        workdir = Path(tmp)
        gateway = start_gateway(workdir, [room], args.log_level, max_participants=2 + max_n * len(kinds), tree=args.tree)
        presenter: Far | None = None
        browsers: Far | None = None
        rtp: Far | None = None
        sipps: list[Sipp] = []
        capture = workdir / "first_content_sink.h264"
        capture_check: dict[str, Any] = {"frames_decoded": 0, "note": "no room system receiving"}
        try:
            time.sleep(1)
            idle0, wall0 = sum(tree_cpu_seconds(gateway.process.pid)), time.monotonic()
            time.sleep(3)
            idle_cores = (sum(tree_cpu_seconds(gateway.process.pid)) - idle0) / (time.monotonic() - wall0)
            ports = PortPool()
            p_audio, p_video, p_slides = ports.take(2), ports.take(2), ports.take(2)
            began = time.monotonic()
            presenter, ready = start_far(
                "presenter", workdir, args.peers_tree,
                ["presenter", "--sip-port", str(gateway.sip_port), "--room", room, "--clip", str(clip),
                 "--fps", str(args.content_fps), "--profile-level-id", profile_level_id,
                 "--audio-port", str(p_audio), "--video-port", str(p_video), "--slides-port", str(p_slides)],
                ready_timeout=60,
            )  # fmt: skip
            presentation = wait_presentation(gateway, room, 15)
            timings["presenter_granted_after_s"] = round(time.monotonic() - began, 2)
            if not presentation:
                print(f"WARNING: the presenter was granted the floor ({ready}) but the room has no presentation", flush=True)
            presenter_id = str((presentation or {}).get("presenter", "?"))
            ws = gateway.base_url.replace("http", "ws", 1) + "/ws"
            browsers, _ = start_far(
                "browsers", workdir, args.peers_tree, ["browsers", "--url", ws, "--rooms", room, "--senders", "0"], ready_timeout=60
            )
            slides_calls = [(ports.take(2), ports.take(2), ports.take(2)) for _ in range(n_slides)]
            legacy_calls = [(ports.take(2), ports.take(2)) for _ in range(n_legacy)]
            specs = [f"{a}:{v}:sink:{sl}" for a, v, sl in slides_calls] + [f"{a}:{v}:sink" for a, v in legacy_calls]
            if specs:
                rtp, _ = start_far(
                    "rtp", workdir, args.peers_tree,
                    ["rtp", "--calls", *specs, "--capture", str(capture), "--capture-stream", "slides" if slides_calls else "video"],
                    ready_timeout=30,
                )  # fmt: skip
            far: dict[str, list[subprocess.Popen[Any]]] = {
                "presenter": [presenter.process], "browsers": [browsers.process], "rtp": [rtp.process] if rtp else [], "sipp": []
            }
            placed = 0
            stage_time = args.warmup + args.window + 90
            for n, viewers in enumerate(stages):
                stage_began = time.monotonic()
                not_connected: list[Any] = []
                if viewers > placed:
                    count = viewers - placed
                    hold_s = stage_time * (len(stages) - n) + 60
                    sipp_args = ["-r", "5", "-aa", "-d", str(int(hold_s * 1000)), "-recv_timeout", "20000", "-timeout", str(int(hold_s + 60))]
                    if slides_calls:  # their calls first: sipp places them while the browsers connect
                        inf = workdir / f"content{viewers}.csv"
                        inf.write_text("SEQUENTIAL\n" + "".join(
                            f"{room};{a};{v};recvonly;{sl};recvonly;{profile_level_id};5070;\n" for a, v, sl in slides_calls[placed:viewers]
                        ))  # fmt: skip
                        sipps.append(start_sipp(f"content{viewers}", workdir, CONTENT_SCENARIO, f"127.0.0.1:{gateway.sip_port}", ports,
                                                ["-inf", str(inf), "-m", str(count), "-l", str(count), *sipp_args]))  # fmt: skip
                    if legacy_calls:
                        inf = workdir / f"legacy{viewers}.csv"
                        inf.write_text("SEQUENTIAL\n" + "".join(f"{room};{a};{v};recvonly;RTP/AVPF;\n" for a, v in legacy_calls[placed:viewers]))
                        sipps.append(start_sipp(f"legacy{viewers}", workdir, SCENARIO, f"127.0.0.1:{gateway.sip_port}", ports,
                                                ["-inf", str(inf), "-m", str(count), "-l", str(count), *sipp_args]))  # fmt: skip
                    far["sipp"] = [s.process for s in sipps]
                    for codec in browser_codecs:
                        added = browsers.command(f"add {room} {count} {codec}", 180)
                        not_connected += [p for p in added.get("peers", []) if p["connection"] != "connected"]
                    if not_connected:
                        print(f"WARNING: {len(not_connected)} browser(s) not connected: {not_connected[:2]}", flush=True)
                    placed = viewers
                want = 1 + viewers * len(kinds)
                in_room = wait_in_rooms(gateway, [room], want, 90)
                joined_s = time.monotonic() - stage_began
                if in_room < want:
                    print(f"WARNING: N={viewers}: {in_room} of {want} participants in the room; measuring those", flush=True)
                time.sleep(args.warmup)
                p0 = presenter.snap()
                before, after = window(gateway, [room], args.window, far, browsers, rtp)
                p1 = presenter.snap()
                elapsed = after.at - before.at
                load = load_figures(before, after, elapsed)
                cores = load["gateway_cores"]
                rooms = room_figures(before, after, [room], elapsed)
                r = rooms[room]
                m0, m1 = before.metrics.get(room, {}), after.metrics.get(room, {})
                sender = presenter_figures(p0, p1, elapsed)
                due = sender["slides_fps_sent"] or float(args.content_fps)
                point: dict[str, Any] = {
                    "viewers_per_kind": viewers,
                    "viewers": viewers * len(kinds),
                    "participants_in_room": in_room,
                    "participants_wanted": want,
                    "browsers_not_connected": len(not_connected),
                    "joined_after_s": round(joined_s, 2),
                    "window_s": round(elapsed, 2),
                    **load,
                    "gateway_idle_cores": round(idle_cores, 4),
                    "rooms": rooms,
                    "presentation": gateway.api(f"/api/rooms/{room}").get("presentation"),
                    "presenter": sender,
                    "video_problems": {k: _d(m1, m0, k) for k in ("frames_undecodable", "compositor_restarts", "composed_frames_not_sent")},
                }
                # Encodes for the content: every transcoder decode is followed by one encode (the
                # transcoders have no other source here: nobody sends a camera); the composed picture
                # is encoded once per output at 30 fps.
                want_transcoders = expected_transcoders(kinds, profile_level_id, viewers)
                point["encodes"] = {
                    "transcoders": r["transcoders_gauge"],
                    "transcoders_expected": want_transcoders,
                    "transcodes_per_s": r["per_s"]["transcoder_decodes"],
                    "transcodes_per_content_frame": round(r["per_s"]["transcoder_decodes"] / due, 3) if due else None,
                    "composed_encoders": r["composed_encoders_gauge"],
                    "composed_encodes_per_s": r["per_s"]["composed_encodes"],
                    "composed_encodes_per_frame_time": r["encoders_effective"],
                    "composed_decodes_per_s": r["per_s"]["composed_decodes"],
                    "content_encodes_per_s": round(r["per_s"]["transcoder_decodes"] + r["per_s"]["composed_encodes"], 2),
                    "frames_forwarded_per_s": r["per_s"]["frames_forwarded"],
                    "frames_transcoded_per_s": r["per_s"]["frames_transcoded"],
                    "frames_forwarded_untouched_per_s": round(r["per_s"]["frames_forwarded"], 2),  # (as they came)
                }
                if viewers:
                    point["cores_per_viewer"] = round(cores / (viewers * len(kinds)), 4)
                    if points and points[0]["viewers"] == 0:
                        point["cores_per_viewer_above_n0"] = round((cores - points[0]["gateway_cores"]) / (viewers * len(kinds)), 4)
                sinks: dict[str, Any] = {}
                for codec in browser_codecs:
                    assert before.browsers is not None and after.browsers is not None
                    sinks[f"browser-{codec.lower()}"] = content_browser_figures(before.browsers, after.browsers, codec, elapsed, due)
                if viewers and rtp is not None:
                    assert before.rtp is not None and after.rtp is not None
                    if slides_calls:
                        ports_now = [a for a, _, _ in slides_calls[:viewers]]
                        sinks["slides-rs"] = sink_figures(
                            slides_of(before.rtp, ports_now), slides_of(after.rtp, ports_now), ports_now, elapsed, due
                        )
                        sinks["slides-rs"]["main_video"] = sink_figures(before.rtp, after.rtp, ports_now, elapsed)
                    if legacy_calls:
                        sinks["legacy-rs"] = sink_figures(before.rtp, after.rtp, [a for a, _ in legacy_calls[:viewers]], elapsed)
                point["sinks"] = sinks
                points.append(point)
                print(_content_stage_line(point, kinds), flush=True)
            timings["stages_s"] = round(time.monotonic() - began, 1)
            if rtp is not None:
                rtp.stop()
                rtp = None
                capture_check = decode_capture(capture)
        finally:
            stop_all(sipps, rtp, browsers, gateway if presenter is None else _Both(presenter, gateway),
                     keep / "content" if keep is not None else None, workdir)  # fmt: skip
        problems = gateway.problems() if gateway.log_path.exists() else {}
        errors = gateway_error_lines(gateway.log_path) if gateway.log_path.exists() else []
        sipp_summaries = [s.summary() for s in sipps]
    timings["run_s"] = round(time.monotonic() - run_began, 1)
    return {
        "room": room,
        "kinds": kinds,
        "stages": stages,
        "presenter_id": presenter_id,
        "content_value": f"{presenter_id}#content",
        "slides": {"size": args.content_size, "fps": args.content_fps, "profile_level_id": profile_level_id, "clip": str(clip)},
        "timings": timings,
        "points": points,
        "first_content_sink_decoded": capture_check,
        "sipp": sipp_summaries,
        "gateway_log": problems,
        "gateway_error_lines": errors,
    }


@dataclass
class _Both:
    """stop_all ends one `gateway`: the presenter first (its BYE while the gateway still answers)."""

    presenter: Far
    gateway: Gateway

    def stop(self) -> None:
        self.presenter.stop()
        self.gateway.stop()


def gateway_error_lines(path: Path, limit: int = 20) -> list[str]:
    """The gateway's error and critical lines (JSON), short: event, and the exception's last line."""
    out = []
    for raw in path.read_text(errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict) and line.get("level") in ("error", "critical"):
            text = f"{line.get('level')}: {line.get('event')}"
            if line.get("exception"):
                text += f" ({str(line['exception']).strip().splitlines()[-1]})"
            out.append(text[:300])
            if len(out) >= limit:
                break
    return out


def _content_stage_line(p: dict[str, Any], kinds: list[str]) -> str:
    e = p["encodes"]
    text = (
        f"N={p['viewers_per_kind']}/kind ({p['viewers']} viewers): gateway {p['gateway_cores']:.3f} cores, "
        f"transcoders {e['transcoders']:.0f} (want {e['transcoders_expected']}) {e['transcodes_per_s']:.1f}/s, "
        f"composed {e['composed_encoders']:.0f} encoder(s) {e['composed_encodes_per_s']:.1f}/s, "
        f"slides sent {p['presenter']['slides_fps_sent']:.1f} fps, late ticks {p['rooms']['_all']['late_tick_percent']:.3f} %"
    )
    for kind, sink in p["sinks"].items():
        if sink.get("sinks"):
            text += f", {kind} {sink['fps_min']:.1f}-{sink['fps_mean']:.1f} fps"
    return text


# -- main -----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 2)[2])  # fmt: skip
    parser.add_argument("--rooms", type=int, default=1)
    parser.add_argument("--senders", type=int, default=2, help="K: browsers per room sending a 720p30 VP8 camera")
    parser.add_argument("--camera", choices=["clip", "live"], default="clip",
                        help="browser cameras: a VP8 clip encoded once and looped, or encoded live by aiortc")
    parser.add_argument("--no-simulcast", dest="simulcast", action="store_false",
                        help="browsers send their camera in one layer (default: two, as Chromium does for the gateway's offer)")
    parser.add_argument("--receivers", type=int, nargs="+", default=[1, 4], help="L: room systems per room (several: stages of one run)")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip the L = 0 stage")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds after everybody joined, before each window")
    parser.add_argument("--window", type=float, default=20.0, help="measurement window, seconds")
    parser.add_argument("--passthrough", action="store_true", help="also measure H.264 from a room system to browsers")
    parser.add_argument("--passthrough-browsers", type=int, default=2, help="browsers receiving the room system's H.264")
    parser.add_argument("--only-passthrough", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--content", action="store_true", help="also measure content sharing (a gateway run of its own)")
    parser.add_argument("--only-content", action="store_true",
                        help="measure content sharing only (results in bench/results/video_legs_content.json)")
    parser.add_argument("--content-receivers", type=int, nargs="+", default=[1, 4],
                        help="N: content viewers of each kind (several: stages of one run)")
    parser.add_argument("--content-kinds", nargs="+", choices=CONTENT_KINDS, default=list(CONTENT_KINDS),
                        help="kinds of content viewers (default: all)")
    parser.add_argument("--content-size", default="1280x720", choices=["1280x720", "1920x1080"], help="the slides' size")
    parser.add_argument("--content-fps", type=int, default=15, help="the slides' frame rate")
    parser.add_argument("--peers-tree", type=Path, default=ROOT, help="tree whose aiortc glue and probe the far ends use")
    parser.add_argument("--far-niceness", type=int, default=10, help="CPU niceness of the far ends' processes (0: the gateway's)")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--keep", type=Path, help="copy the gateway's, sipp's and the far ends' files here")
    add_common_arguments(parser)
    args = parser.parse_args()
    FAR_NICENESS[0] = args.far_niceness
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    if shutil.which(SIPP) is None and not Path(SIPP).exists():
        raise SystemExit("sipp not found (apt install sip-tester)")
    only = args.only_passthrough or args.only_content
    composed = None if only else run_composed(args, args.keep)
    passthrough = run_passthrough(args, args.keep) if (args.passthrough and not args.only_content) or args.only_passthrough else None
    content = run_content(args, args.keep) if (args.content and not args.only_passthrough) or args.only_content else None
    path = write_results(
        "video_legs_content" if args.only_content else "video_legs",
        {
            "composed": composed,
            "passthrough": passthrough,
            "content": content,
            "goals": GOALS,
            "verdicts": verdicts(composed, passthrough) + content_verdicts(content),
            "settings": {
                "rooms": args.rooms,
                "senders": args.senders,
                "receivers": args.receivers,
                "baseline": args.baseline,
                "warmup": args.warmup,
                "window": args.window,
                "far_niceness": args.far_niceness,
                "passthrough_browsers": args.passthrough_browsers if passthrough else None,
                "content_receivers": args.content_receivers if content else None,
                "content_kinds": args.content_kinds if content else None,
                "content_slides": f"{args.content_size} {args.content_fps} fps H.264 constrained baseline" if content else None,
                "camera": "testsrc2 1280x720 30 fps, aiortc VP8 encoder (in the browsers' process)",
                "room_systems": "sipp (bench/sipp/video_leg.xml): PCMA + H.264 42e01f mode 1, video recvonly; "
                "media counted by bench/video_peers.py rtp",
                "output_fps_due": FPS,
                "sipp": subprocess.run([SIPP, "-v"], capture_output=True, text=True).stdout.strip().splitlines()[0],
                "peers_tree": str(args.peers_tree.resolve()),
            },
        },
        args.json,
        args.tree,
    )
    report(composed, passthrough)
    report_content(content)
    print("\nGoals (issues: room systems see and are seen; content sharing):")
    print_table(["goal", "where", "measured", ""], verdicts(composed, passthrough) + content_verdicts(content))
    print(f"\nresults: {path}")


def content_verdicts(content: dict[str, Any] | None) -> list[list[str]]:
    """The content goals beside what was measured: one encode per output (one transcode per codec
    that cannot take the slides as they are, shared by all its viewers; none toward room systems
    that forward; one composed encode per output), the slides at every viewer, late ticks."""
    rows: list[list[str]] = []
    if content is None:
        return rows

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    for p in content["points"]:
        where = f"content N={p['viewers_per_kind']}"
        e = p["encodes"]
        due = p["presenter"]["slides_fps_sent"] or content["slides"]["fps"]
        if p["viewers"]:
            ok = e["transcoders"] == e["transcoders_expected"] and e["transcodes_per_s"] <= 1.05 * due * max(e["transcoders_expected"], 0)
            rows.append(["content: 1 transcode per output codec, shared", where,
                         f"{e['transcoders']:.0f} transcoder(s) (want {e['transcoders_expected']}), "
                         f"{e['transcodes_per_content_frame']} per slides frame", met(ok)])  # fmt: skip
            # (every room system's main line here is H.264 42e01f: one output, so one encoder)
            rows.append(["content: 1 composed encode per output", where,
                         f"{e['composed_encoders']:.0f} encoder(s) (want 1), {e['composed_encodes_per_frame_time']:.2f} per frame time",
                         met(e["composed_encoders"] == 1 and e["composed_encodes_per_frame_time"] <= 1.05)])  # fmt: skip
            for kind, sink in p["sinks"].items():
                wanted = FPS if kind == "legacy-rs" else due
                rows.append([f"content reaches each {kind} ({wanted:.0f} fps)", where,
                             f"min {sink['fps_min']:.1f} fps ({sink['delivered_ratio_min']:.0%})",
                             met(sink["sinks"] > 0 and sink["delivered_ratio_min"] >= 0.9)])  # fmt: skip
        late = p["rooms"]["_all"]["late_tick_percent"]
        rows.append([f"late audio ticks < {GOALS['late_tick_percent_below']} %", where, f"{late:.3f} %",
                     met(late < GOALS["late_tick_percent_below"])])  # fmt: skip
    return rows


def _sink_fps(sinks: dict[str, Any], kind: str) -> str:
    sink = sinks.get(kind)
    return _fmt(sink["fps_min"], 1) if sink and sink.get("sinks") else "-"


def report_content(content: dict[str, Any] | None) -> None:
    if content is None:
        return
    slides = content["slides"]
    print(
        f"\nContent sharing: 1 room system presenting {slides['size']} {slides['fps']} fps H.264 "
        f"({slides['profile_level_id']}) over BFCP; N viewers of each kind: {', '.join(content['kinds'])}"
    )
    rows = []
    for p in content["points"]:
        e = p["encodes"]
        fps = functools.partial(_sink_fps, p["sinks"])

        rows.append([
            p["viewers_per_kind"], p["viewers"],
            _fmt(p["gateway_cores"]), _fmt(p.get("gateway_children_cores")),
            _fmt(p.get("cores_per_viewer_above_n0")),
            f"{e['transcoders']:.0f}/{e['transcoders_expected']}", _fmt(e["transcodes_per_s"], 1),
            _fmt(e["composed_encoders"], 0), _fmt(e["composed_encodes_per_s"], 1), _fmt(e["composed_decodes_per_s"], 1),
            _fmt(e["frames_forwarded_untouched_per_s"], 1), _fmt(e["frames_transcoded_per_s"], 1),
            _fmt(p["presenter"]["slides_fps_sent"], 1),
            fps("browser-vp8"), fps("browser-h264"), fps("slides-rs"), fps("legacy-rs"),
            _fmt(p["rooms"]["_all"]["late_tick_percent"]),
            _fmt(sum(p["far_cores"].values()), 2), _fmt(p["other_cores"], 2),
        ])  # fmt: skip
    print_table(
        ["N/kind", "viewers", "gw cores", "compositor", "/viewer over N=0", "transcoders (got/want)", "transcodes/s",
         "comp. encoders", "comp. encodes/s", "comp. decodes/s", "untouched/s", "transcoded/s", "slides sent fps",
         "VP8 browser fps min", "H264 browser fps min", "slides RS fps min", "legacy fps min", "late ticks %",
         "far ends", "other load"],
        rows,
    )  # fmt: skip
    print(
        f"(slides due at each content viewer at the rate sent; legacy room systems' composed picture at {FPS} fps; "
        "untouched/s: frames delivered as they came, transcoded/s: deliveries of transcoded frames)"
    )
    print(f"first room system's slides decoded after the run: {content['first_content_sink_decoded']}")
    for p in content["points"]:
        for kind, sink in p["sinks"].items():
            extra = {k: sink[k] for k in ("codecs", "sources") if k in sink}
            if "main_video" in sink:
                extra["main_video_fps_min"] = sink["main_video"]["fps_min"]
            if sink.get("problems"):
                extra["problems"] = sink["problems"][:2]
            if extra:
                print(f"  N={p['viewers_per_kind']} {kind}: {extra}")
        if any(p["video_problems"].values()):
            print(f"  N={p['viewers_per_kind']} video problems: {p['video_problems']}")
        if p["participants_in_room"] < p["participants_wanted"]:
            print(f"  INCOMPLETE at N={p['viewers_per_kind']}: {p['participants_in_room']} of {p['participants_wanted']} in the room")
        pres = p["presenter"]
        if pres["bfcp_problems"] or not p["presentation"]:
            print(f"  N={p['viewers_per_kind']} presenter: presentation {p['presentation']}, BFCP {pres['bfcp_statuses']} {pres['bfcp_problems']}")
    log = content["gateway_log"]
    if log and (log.get("levels") or log.get("other_count")):
        print(f"gateway log (content): {log['levels']} {log['events']}, {log['other_count']} other lines {log['other_lines'][:3]}")
    for line in content["gateway_error_lines"][:5]:
        print(f"  {line}")
    for s in content["sipp"]:
        if s["failed"] or s["unexpected_answers"] or s["error_lines"]:
            print(f"sipp: {s['failed']} failed {s['failures']} {s['unexpected_answers']} {s['error_lines'][:2]}")
    print(f"timings: {content['timings']}")


def verdicts(composed: dict[str, Any] | None, passthrough: dict[str, Any] | None) -> list[list[str]]:
    """Each goal of the issue beside what was measured: [goal, where, measured, met?]."""
    rows: list[list[str]] = []

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    for p in (composed or {}).get("points", []):
        legs = p["legacy_legs_per_room"]
        rooms = {k: v for k, v in p["rooms"].items() if k != "_all"}
        if legs:
            per_leg = p["cores_per_legacy_leg"]
            over = p.get("marginal_cores_per_legacy_leg")
            text = f"{per_leg:.3f} (above L=0: {over:.3f})" if over is not None else f"{per_leg:.3f}"
            full_rate = p["sinks"]["delivered_ratio_min"] >= 0.9  # else the CPU is that of a lesser picture
            # A leg's cost is what the gateway spends above the browsers-only stage (their own legs'
            # forwarding is measured by bench/webrtc_legs.py); without that stage, all of it.
            own = over if over is not None else per_leg
            rows.append([f"<= {GOALS['cores_per_legacy_leg_max']} core per 720p30 room-system leg (its own: above L=0)", f"L={legs}", text,
                         met(own <= GOALS["cores_per_legacy_leg_max"]) if full_rate
                         else f"not comparable (sinks at {p['sinks']['fps_min']:.1f} fps)"])  # fmt: skip
            worst = max(rooms.values(), key=lambda r: (r["composed_encoders_gauge"], r["encoders_effective"]))
            shared = p.get("sink_frames_per_encode")
            # One encoder per output (the gauge), never more than one encode per frame time, and every
            # encoded frame reaching all L sinks (frames received at the sinks / encodes = L).
            ok = (
                worst["composed_encoders_gauge"] == 1
                and worst["encoders_effective"] <= 1.05
                and shared is not None
                and shared >= 0.9 * legs
            )
            rows.append(["1 encode per room and output, whatever L", f"L={legs}",
                         f"{worst['composed_encoders_gauge']:.0f} encoder(s), {worst['encoders_effective']:.2f} encodes "
                         f"per frame time, each to {shared if shared is not None else '-'} sinks",
                         met(ok) if worst["metrics_present"] else "no metrics"])  # fmt: skip
            sinks = p["sinks"]
            rows.append([f"{FPS} fps at each sink (frames delivered vs due)", f"L={legs}",
                         f"min {sinks['fps_min']:.1f} fps ({sinks['delivered_ratio_min']:.0%})",
                         met(sinks["delivered_ratio_min"] >= 0.95)])  # fmt: skip
        late = p["rooms"]["_all"]["late_tick_percent"]
        rows.append([f"late audio ticks < {GOALS['late_tick_percent_below']} %", f"L={legs}", f"{late:.3f} %",
                     met(late < GOALS["late_tick_percent_below"])])  # fmt: skip
    if passthrough is not None:
        room = passthrough["rooms"][passthrough["room"]]
        decodes = room["transcoder_decodes"] + room["composed_decodes"]
        rows.append(["0 decodes for H.264 passthrough to browsers", "passthrough", f"{decodes:.0f}",
                     met(decodes == 0 and room["metrics_present"])])  # fmt: skip
        late = passthrough["rooms"]["_all"]["late_tick_percent"]
        rows.append([f"late audio ticks < {GOALS['late_tick_percent_below']} %", "passthrough", f"{late:.3f} %",
                     met(late < GOALS["late_tick_percent_below"])])  # fmt: skip
    return rows


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def report(composed: dict[str, Any] | None, passthrough: dict[str, Any] | None) -> None:
    if composed is not None:
        print(
            f"\nComposed picture: {composed['rooms']} room(s), {composed['senders_per_room']} VP8 720p30 browser "
            f"camera(s) per room ({composed.get('camera', 'live')}{', two simulcast layers' if composed.get('simulcast') else ''}), "
            f"L H.264 room systems per room receiving it (720p{FPS} due)"
        )
        rows = []
        for p in composed["points"]:
            rooms = {k: v for k, v in p["rooms"].items() if k != "_all"}
            worst = max(rooms.values(), key=lambda r: r["encoders_effective"])
            sinks = p.get("sinks", {})
            per_frame = [r.get("composed_decodes_per_camera_frame") for r in rooms.values()]
            rows.append([
                p["legacy_legs_per_room"],
                _fmt(p["gateway_cores"]),
                _fmt(p["gateway_loop_thread_cores"]),
                _fmt(p.get("gateway_children_cores")),
                _fmt(p.get("cores_per_legacy_leg")),
                _fmt(p.get("marginal_cores_per_legacy_leg")),
                _fmt(p.get("cpu_ms_per_composed_frame_above_l0"), 1),
                _fmt(p.get("cores_per_legacy_leg_at_30fps_estimate")),
                _fmt(worst["per_s"]["composed_encodes"], 1),
                _fmt(worst["encoders_effective"], 2),
                _fmt(worst["composed_encoders_gauge"], 0),
                _fmt(p.get("sink_frames_per_encode"), 2),
                _fmt(max(r["per_s"]["composed_decodes"] for r in rooms.values()), 1),
                _fmt(max((x for x in per_frame if x is not None), default=None), 2),
                _fmt(max(r["per_s"].get("composed_lower_layer_frames", 0.0) for r in rooms.values()), 1),
                _fmt(sum(r["transcoder_decodes"] for r in rooms.values()), 0),
                _fmt(sinks.get("fps_min"), 1) if sinks else "-",
                _fmt(sinks.get("fps_mean"), 1) if sinks else "-",
                sinks.get("packets_lost", "-"),
                _fmt(sinks.get("max_frame_gap_ms"), 0) if sinks else "-",
                _fmt(p["rooms"]["_all"]["late_tick_percent"]),
                _fmt((p.get("browsers") or {}).get("camera_fps_min"), 1),
                _fmt(sum(p["far_cores"].values()), 2),
                _fmt(p["other_cores"], 2),
            ])  # fmt: skip
        print_table(
            ["L/room", "gw cores", "loop thr", "compositor procs", "cores/leg", "over L=0/leg", "ms/frame over L=0", "at 30fps/leg", "encodes/s", "/30 fps", "encoders", "sink frames/encode",
             "cam decodes/s", "per cam frame", "of them lower layer/s", "transc. dec", "sink fps min", "mean", "lost", "max gap ms",
             "late ticks %", "cam fps min", "far ends", "other load"],
            rows,
        )  # fmt: skip
        print(
            f"goals: <= {GOALS['cores_per_legacy_leg_max']} core per 720p30 room-system leg; "
            f"{GOALS['encoders_per_room_and_output']} encode per room and output whatever L; "
            f"late ticks < {GOALS['late_tick_percent_below']} %; {FPS} fps at each sink"
        )
        check = composed["first_sink_decoded"]
        print(f"first sink's first frames decoded after the run: {check}")
        log = composed["gateway_log"]
        if log and (log.get("levels") or log.get("other_count")):
            print(f"gateway log: {log['levels']} {log['events']}, {log['other_count']} other lines {log['other_lines'][:3]}")
        for p in composed["points"]:
            browsers = p.get("browsers") or {}
            if browsers.get("problems"):
                print(f"browsers at L={p['legacy_legs_per_room']}: {browsers['problems'][:3]}")
            if p["participants_in_rooms"] < p["participants_wanted"]:
                print(f"INCOMPLETE at L={p['legacy_legs_per_room']}: {p['participants_in_rooms']} of {p['participants_wanted']} in the rooms")
            for room, r in p["rooms"].items():
                if room != "_all" and not r["metrics_present"]:
                    print(
                        f"no gateway_video_* metrics for room {room} at L={p['legacy_legs_per_room']}: "
                        f"{r['metrics_error'] or 'not in /metrics'} (encodes and decodes above read as 0)"
                    )
        for s in composed["sipp"]:
            if s["failed"] or s["unexpected_answers"] or s["error_lines"]:
                print(f"sipp: {s['failed']} failed {s['failures']} {s['unexpected_answers']} {s['error_lines'][:2]}")
    if passthrough is not None:
        room = passthrough["rooms"][passthrough["room"]]
        print(
            f"\nH.264 passthrough: 1 room system sending 1280x720 30 fps H.264 to "
            f"{passthrough['browser_receivers']} browsers that negotiated H.264"
        )
        print_table(
            ["gw cores", "cores/browser", "transc. decodes", "composed decodes", "forwarded/s", "transcoded/s",
             "browser fps min", "mean", "codecs at browsers", "source fps", "late ticks %", "far ends", "other load"],
            [[
                _fmt(passthrough["gateway_cores"]),
                _fmt(passthrough["cores_per_browser_receiver"]),
                _fmt(room["transcoder_decodes"], 0),
                _fmt(room["composed_decodes"], 0),
                _fmt(room["per_s"]["frames_forwarded"], 1),
                _fmt(room["per_s"]["frames_transcoded"], 1),
                _fmt(passthrough["browsers"]["slot_fps_min"], 1),
                _fmt(passthrough["browsers"]["slot_fps_mean"], 1),
                ",".join(f"{k}:{v}" for k, v in passthrough["browsers"]["slot_codecs"].items()) or "-",
                _fmt(passthrough["source_fps"], 1),
                _fmt(passthrough["rooms"]["_all"]["late_tick_percent"]),
                _fmt(sum(passthrough["far_cores"].values()), 2),
                _fmt(passthrough["other_cores"], 2),
            ]],
        )  # fmt: skip
        print(f"goal: {GOALS['passthrough_decodes']} decodes (transcoder and composition) for H.264 passthrough to browsers")
        if passthrough["browsers"]["problems"]:
            print(f"browsers: {passthrough['browsers']['problems'][:3]}")
        log = passthrough["gateway_log"]
        if log and (log.get("levels") or log.get("other_count")):
            print(f"gateway log (passthrough): {log['levels']} {log['events']}")


if __name__ == "__main__":
    main()
