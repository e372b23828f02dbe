"""Video in tests: the test clip room systems send (ffmpeg testsrc2), what a received picture shows
(PNG snapshots of baresip, frames drawn from a page), and H.264 RTP / RTCP feedback on the wire as
tshark decodes it (an independent decoder: Wireshark's RTP, RTCP and H.264 dissectors).

Pictures are numpy arrays (height, width, 3) of uint8 RGB, read with PyAV (any image or video
file FFmpeg reads, PNG included)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FFMPEG = "ffmpeg"
TSHARK = "tshark"
DUMPCAP = "dumpcap"

# Clips made once per parameters and shared by the tests of a run (and of later runs): the folder
# of this machine's temp dir, overridable for CI caches.
CLIP_CACHE = Path(os.environ.get("GATEWAY_TEST_CLIP_CACHE", Path(tempfile.gettempdir()) / "gateway-test-clips"))

_CLIP_RECIPE = 2  # bump when _make_clip's arguments change
_CONTAINERS = {"libx264": "mp4", "h264": "mp4", "libvpx": "webm", "libvpx-vp9": "webm"}


# -- the test clip --------------------------------------------------------------------------------


def _make_clip(cached: Path, size: str, rate: int, seconds: int, codec: str) -> None:
    partial = cached.with_name(f".{cached.stem}.{os.getpid()}.{time.monotonic_ns()}{cached.suffix}")
    args = [
        FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
        "-t", str(seconds), "-c:v", codec, "-pix_fmt", "yuv420p", "-g", str(rate),
        *(["-bf", "0", "-preset", "veryfast"] if codec in ("libx264", "h264") else []),
        str(partial),
    ]  # fmt: skip
    try:
        subprocess.run(args, check=True, capture_output=True, timeout=300)
        os.replace(partial, cached)  # atomic: nobody sees half a clip
    finally:
        partial.unlink(missing_ok=True)


def make_test_clip(
    path: Path | None = None, size: str = "640x360", rate: int = 15, seconds: int = 30, codec: str = "libx264"
) -> Path:
    """ffmpeg's testsrc2 pattern (colour bars, a moving gradient, a clock and frame counter) as a clip
    of `seconds`, 4:2:0, a key frame every second. Made once per parameters in CLIP_CACHE (written
    to a temp name, then renamed: tests in parallel never see half a file); with `path`, that file
    gets a copy (a hard link where it can) and is returned, else the cached clip itself.

    For baresip's avformat source the clip must outlast the call: at its end avformat starts it
    again, but baresip then skips the frames (their timestamps start again) and its video stops."""
    container = _CONTAINERS.get(codec, "mkv")
    # (the recipe's version in the name: a changed recipe makes new clips)
    key = hashlib.sha1(f"testsrc2 {size} {rate} {seconds} {codec} {_CLIP_RECIPE}".encode()).hexdigest()[:12]
    cached = CLIP_CACHE / f"testsrc2-{size}-{rate}fps-{seconds}s-{codec}-{key}.{container}"
    if not cached.exists():
        CLIP_CACHE.mkdir(parents=True, exist_ok=True)
        # one maker per clip at a time (test workers in parallel): the others wait, then find it
        with open(cached.with_name(f".{cached.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not cached.exists():
                _make_clip(cached, size, rate, seconds, codec)
    if path is None:
        return cached
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    try:
        os.link(cached, partial)
    except OSError:
        shutil.copyfile(cached, partial)
    os.replace(partial, path)
    return path


# -- pictures -------------------------------------------------------------------------------------


def load_rgb(path: Path) -> np.ndarray:
    """The (first) picture of an image or video file as an RGB array (height, width, 3) of uint8."""
    import av

    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            picture: np.ndarray = frame.to_ndarray(format="rgb24")
            return picture
    raise ValueError(f"no picture in {path}")


def region(rgb: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """The part of the picture between these fractions of its width (x) and height (y): (0, 0, 0.5,
    0.5) is the top left quarter."""
    height, width = rgb.shape[:2]
    assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, (x0, y0, x1, y1)
    top, left = int(y0 * height + 0.5), int(x0 * width + 0.5)
    bottom, right = max(int(y1 * height + 0.5), top + 1), max(int(x1 * width + 0.5), left + 1)
    return rgb[top:bottom, left:right]


def hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue (degrees, 0-360), saturation (0-1) and value (0-1) of each pixel."""
    pixels = rgb.astype(np.float64) / 255.0
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    high, low = pixels.max(axis=-1), pixels.min(axis=-1)
    spread = high - low
    safe = np.where(spread == 0, 1, spread)
    hue = np.where(
        high == r, (g - b) / safe % 6, np.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4)
    ) * 60.0
    hue = np.where(spread == 0, 0.0, hue)
    saturation = np.where(high == 0, 0.0, spread / np.where(high == 0, 1, high))
    return hue, saturation, high


def _hue_near(centre: float, width: float = 30.0) -> Callable[[np.ndarray], np.ndarray]:
    def predicate(rgb: np.ndarray) -> np.ndarray:
        hue, saturation, value = hsv(rgb)
        distance = np.abs((hue - centre + 180.0) % 360.0 - 180.0)
        mask: np.ndarray = (distance < width) & (saturation > 0.4) & (value > 0.3)
        return mask

    return predicate


def _white(rgb: np.ndarray) -> np.ndarray:
    _, saturation, value = hsv(rgb)
    mask: np.ndarray = (saturation < 0.2) & (value > 0.75)
    return mask


def _grey(rgb: np.ndarray) -> np.ndarray:
    _, saturation, value = hsv(rgb)
    mask: np.ndarray = (saturation < 0.2) & (value >= 0.15) & (value <= 0.75)
    return mask


def _black(rgb: np.ndarray) -> np.ndarray:
    mask: np.ndarray = rgb.max(axis=-1) < 40
    return mask


# Named colours as pixel predicates: a hue within 30 degrees of the colour's (saturated, not dark),
# or white / grey / black by brightness. testsrc2's bars are red, green, yellow, blue, magenta, cyan.
COLOURS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "red": _hue_near(0),
    "yellow": _hue_near(60),
    "green": _hue_near(120),
    "cyan": _hue_near(180),
    "blue": _hue_near(240),
    "magenta": _hue_near(300),
    "white": _white,
    "grey": _grey,
    "black": _black,
}
HUES = ("red", "yellow", "green", "cyan", "blue", "magenta")


def colour_fraction(rgb: np.ndarray, colour: str | Callable[[np.ndarray], np.ndarray]) -> float:
    """The fraction of the picture's pixels of this colour: a name of COLOURS, or a predicate taking
    the (..., 3) RGB array and giving a boolean mask."""
    predicate = COLOURS[colour] if isinstance(colour, str) else colour
    mask = np.asarray(predicate(rgb))
    return float(mask.mean()) if mask.size else 0.0


def green_fraction(rgb: np.ndarray) -> float:
    return colour_fraction(rgb, "green")


def colours_seen(rgb: np.ndarray, min_fraction: float = 0.03, names: Iterable[str] = COLOURS) -> dict[str, float]:
    """The named colours covering at least `min_fraction` of the picture, with their fractions."""
    found = {name: colour_fraction(rgb, name) for name in names}
    return {name: share for name, share in found.items() if share >= min_fraction}


def is_black(rgb: np.ndarray, max_bright_fraction: float = 0.01) -> bool:
    """Black (or nearly: a decoder's empty frame, a muted camera): at most `max_bright_fraction` of
    the pixels have a channel at 40 or above."""
    return (1.0 - colour_fraction(rgb, "black")) <= max_bright_fraction


def mean_colour(rgb: np.ndarray) -> tuple[int, int, int]:
    r, g, b = (round(float(v)) for v in rgb.reshape(-1, 3).mean(axis=0))
    return r, g, b


def looks_like_testsrc2(rgb: np.ndarray) -> bool:
    """At least four of testsrc2's six bar colours, each on 5 % of the picture or more (a picture
    scaled into a tile of a composed picture: ask about that tile's region)."""
    return len(colours_seen(rgb, 0.05, HUES)) >= 4


# -- capture ----------------------------------------------------------------------------------------


def _pcapng_packets(path: Path) -> int:
    """Packets in a pcapng file so far (its Enhanced Packet Blocks); a block still being written is
    not counted."""
    data = path.read_bytes() if path.exists() else b""
    count = at = 0
    while at + 8 <= len(data):
        kind, length = struct.unpack_from("<II", data, at)
        if length < 12 or at + length > len(data):
            break
        count += kind == 6
        at += length
    return count


class PacketCapture:
    """dumpcap on an interface (loopback by default) writing a pcapng file until stopped, for the UDP
    `ports` given (either direction; RTCP on port + 1 is not added by itself). A probe socket of the
    capture's own, inside its filter, proves when the capture is live and when what came before it
    is in the file (dumpcap writes in batches); analyses by port never see the probes.

        with PacketCapture(tmp_path / "v.pcap", [port, port + 1]) as cap:
            ...                 # the call
            cap.flush()         # everything sent until now is in cap.path
    """

    def __init__(self, path: Path, ports: Iterable[int], interface: str = "lo", extra_filter: str = "") -> None:
        self.path = Path(path)
        self._sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sink.bind(("127.0.0.1", 0))
        self._probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.probe_port = int(self._sink.getsockname()[1])
        wanted = sorted(set(ports)) + [self.probe_port]
        self.capture_filter = "udp and (" + " or ".join(f"port {p}" for p in wanted) + ")"
        if extra_filter:
            self.capture_filter = f"({self.capture_filter}) or ({extra_filter})"
        self._stderr = self.path.with_suffix(".capture.log")
        tool = shutil.which(DUMPCAP) or shutil.which(TSHARK) or TSHARK
        with self._stderr.open("wb") as stderr:
            self.process = subprocess.Popen(
                [tool, "-i", interface, "-f", self.capture_filter, "-w", str(self.path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        try:
            deadline = time.monotonic() + 20
            while "Capturing on" not in self._stderr.read_text(errors="replace"):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"capture did not start: {self._stderr.read_text(errors='replace')}")
                time.sleep(0.05)
            # "Capturing on" can come before the filter catches packets: a probe in the file proves it.
            self.flush()
        except BaseException:
            self.stop()
            raise

    def packets(self) -> int:
        """Packets in the file so far, probes included."""
        return _pcapng_packets(self.path)

    def flush(self, timeout: float = 20) -> None:
        """Returns once a probe sent now is in the file: everything captured before it is too."""
        written = self.packets()
        deadline = time.monotonic() + timeout
        while True:
            self._probe.sendto(b"probe", ("127.0.0.1", self.probe_port))
            time.sleep(0.1)
            if self.packets() > written:
                return
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"the capture did not write a probe in {timeout} s: {self._stderr.read_text(errors='replace')}")

    def stop(self) -> Path:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for sock in (self._sink, self._probe):
            sock.close()
        return self.path

    def __enter__(self) -> PacketCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def capture(ports: Iterable[int], seconds: float, interface: str = "lo", path: Path | None = None) -> Path:
    """Captures the UDP traffic of these ports for `seconds` (blocking) and returns the pcapng file
    (a new temp file unless `path` is given)."""
    if path is None:
        handle, name = tempfile.mkstemp(suffix=".pcapng", prefix="capture-")
        os.close(handle)
        path = Path(name)
    with PacketCapture(path, ports, interface) as cap:
        time.sleep(seconds)  # deliberate: the window to capture
        cap.flush()
    return path


# -- H.264 over RTP (RFC 6184) as tshark sees it ----------------------------------------------------

NAL_NAMES = {1: "slice", 5: "IDR slice", 6: "SEI", 7: "SPS", 8: "PPS", 9: "AUD", 24: "STAP-A", 25: "STAP-B", 26: "MTAP16", 27: "MTAP24", 28: "FU-A", 29: "FU-B"}


def _tshark_fields(pcap: Path, decode_as: list[str], display_filter: str, fields: list[str]) -> list[list[str]]:
    args = [TSHARK, "-n", "-r", str(pcap), "-o", "rtp.heuristic_rtp:FALSE"]
    for rule in decode_as:
        args += ["-d", rule]
    args += ["-Y", display_filter, "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for name in fields:
        args += ["-e", name]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"tshark failed ({done.returncode}): {' '.join(args)}\n{done.stderr[-2000:]}")
    return [line.split("\t") for line in done.stdout.splitlines() if line.strip()]


def _port_filter(port: int, direction: str) -> str:
    return {"to": f"udp.dstport=={port}", "from": f"udp.srcport=={port}", "any": f"udp.port=={port}"}[direction]


@dataclass
class H264StreamReport:
    """One H.264 RTP stream on the wire (packets of one payload type towards or from one port)."""

    packets: int = 0
    ssrcs: set[int] = field(default_factory=set)
    # the type in each packet's first octet: 1-23 a single NAL unit, 24 STAP-A, 28 FU-A
    packet_types: Counter[int] = field(default_factory=Counter)
    # the NAL units carried (inside STAP-A, and FU-A by their FU header): 5 IDR, 7 SPS, 8 PPS, 1 slice ...
    nal_types: Counter[int] = field(default_factory=Counter)
    # NAL unit types tshark's H.264 dissector named (h264.nal_unit_hdr, all occurrences)
    dissected_types: Counter[int] = field(default_factory=Counter)
    frames: int = 0  # distinct RTP timestamps
    key_frames: int = 0  # timestamps with an IDR slice
    key_frame_times: list[float] = field(default_factory=list)  # capture time (epoch s) of each key frame's first packet
    timestamp_steps: Counter[int] = field(default_factory=Counter)  # between consecutive frames (90 kHz)
    frames_without_marker: int = 0  # whose last packet lacks the marker bit (the capture's last frame excepted)
    markers_inside_frames: int = 0  # marker bits on a packet that is not its frame's last
    sequence_gaps: int = 0  # missing sequence numbers
    fu_errors: list[str] = field(default_factory=list)  # FU-A fragments out of order (no start, no end, mixed)
    forbidden_bit: int = 0  # packets whose NAL header has the F bit set
    max_payload: int = 0  # the largest RTP payload in octets
    duration: float = 0.0  # seconds between the first and last packet
    malformed: list[str] = field(default_factory=list)  # frames tshark calls malformed (number: info)
    expert_errors: list[str] = field(default_factory=list)  # tshark's error-level expert notes

    @property
    def frame_rate(self) -> float:
        """Frames per second from the most common timestamp step (0 if unknown)."""
        if not self.timestamp_steps:
            return 0.0
        step = self.timestamp_steps.most_common(1)[0][0]
        return 90000.0 / step if step else 0.0

    def problems(self) -> list[str]:
        """What is wrong with the stream (empty: a well-formed H.264 RTP stream)."""
        found = []
        if self.packets == 0:
            found.append("no packets")
        if len(self.ssrcs) > 1:
            found.append(f"{len(self.ssrcs)} SSRCs: {sorted(self.ssrcs)}")
        odd = sorted(t for t in self.packet_types if not (1 <= t <= 24 or t == 28))
        if odd:
            found.append(f"packets of NAL types {odd} (want single NAL 1-23, STAP-A 24, FU-A 28)")
        if self.packets and not {7, 8} <= set(self.nal_types):
            found.append(f"no SPS and PPS (NAL units {sorted(self.nal_types)})")
        if self.packets and not self.key_frames:
            found.append("no IDR frame")
        if self.frames_without_marker:
            found.append(f"{self.frames_without_marker} frames without the marker bit on their last packet")
        if self.markers_inside_frames:
            found.append(f"{self.markers_inside_frames} marker bits inside frames")
        if self.forbidden_bit:
            found.append(f"{self.forbidden_bit} packets with the forbidden bit")
        found += self.fu_errors[:5]
        if self.malformed:
            found.append(f"tshark: malformed {self.malformed[:5]}")
        return found

    def describe(self) -> str:
        names = {t: NAL_NAMES.get(t, str(t)) for t in self.nal_types}
        return (
            f"{self.packets} packets, SSRCs {[hex(s) for s in sorted(self.ssrcs)]}, packet types {dict(self.packet_types)}, "
            f"NAL units {dict((names[t], n) for t, n in self.nal_types.items())}, {self.frames} frames "
            f"({self.key_frames} key), steps {dict(self.timestamp_steps.most_common(5))} (~{self.frame_rate:.1f} fps), "
            f"{self.sequence_gaps} lost, max payload {self.max_payload}, problems {self.problems()}"
        )


@dataclass(frozen=True)
class RtpPacket:
    number: int  # (the capture's frame number)
    time: float
    ssrc: int
    seq: int
    timestamp: int
    marker: bool
    payload: bytes


def _nal_units(payload: bytes) -> tuple[int, list[int], tuple[int, bool, bool] | None, bool]:
    """(packet type, NAL unit types it carries, FU (type, start, end) or None, forbidden bit)."""
    if not payload:
        return 0, [], None, False
    kind = payload[0] & 0x1F
    forbidden = bool(payload[0] & 0x80)
    if kind == 24:  # STAP-A: (16-bit size, NAL unit) ...
        carried, at = [], 1
        while at + 2 < len(payload):
            size = int.from_bytes(payload[at : at + 2], "big")
            if size == 0 or at + 2 + size > len(payload):
                break
            carried.append(payload[at + 2] & 0x1F)
            forbidden = forbidden or bool(payload[at + 2] & 0x80)
            at += 2 + size
        return kind, carried, None, forbidden
    if kind == 28 and len(payload) >= 2:  # FU-A: FU indicator, FU header (S, E, R, type)
        header = payload[1]
        return kind, [header & 0x1F] if header & 0x80 else [], (header & 0x1F, bool(header & 0x80), bool(header & 0x40)), forbidden
    return kind, [kind], None, forbidden


def rtp_packets(pcap: Path, port: int, payload_type: int, direction: str = "to") -> list[RtpPacket]:
    """The RTP packets of one payload type towards (or from) a port, in capture order."""
    rows = _tshark_fields(
        pcap,
        [f"udp.port=={port},rtp"],
        f"{_port_filter(port, direction)} && rtp.version==2 && rtp.p_type=={payload_type}",
        ["frame.number", "frame.time_epoch", "rtp.ssrc", "rtp.seq", "rtp.timestamp", "rtp.marker", "rtp.payload"],
    )
    packets = []
    for row in rows:
        number, when, ssrc, seq, stamp, marker, payload = (row + [""] * 7)[:7]
        data = bytes.fromhex(payload.replace(":", ""))
        packets.append(RtpPacket(int(number), float(when), int(ssrc, 0), int(seq), int(stamp), marker in ("1", "True", "true"), data))
    return packets


def h264_rtp_check(pcap_path: Path, port: int, payload_type: int, direction: str = "to") -> H264StreamReport:
    """The H.264 RTP stream of `payload_type` in a capture, towards `port` (direction "to"; "from":
    sent from it; "any": both). The port's UDP is decoded as RTP (-d udp.port==<port>,rtp) and the
    payload type as H.264 (-d rtp.pt==<pt>,h264: Wireshark 4.0 has no h264.dynamic.payload.types
    preference any more); NAL units are read from the RTP payloads, malformed packets from tshark."""
    decode = [f"udp.port=={port},rtp", f"rtp.pt=={payload_type},h264"]
    where = f"{_port_filter(port, direction)} && rtp.p_type=={payload_type} && rtp.version==2"
    rows = _tshark_fields(
        pcap_path,
        decode,
        where,
        ["frame.number", "frame.time_epoch", "rtp.ssrc", "rtp.seq", "rtp.timestamp", "rtp.marker", "rtp.payload", "h264.nal_unit_hdr"],
    )
    report = H264StreamReport()
    packets: list[RtpPacket] = []
    for row in rows:
        row += [""] * (8 - len(row))
        number, when, ssrc, seq, stamp, marker, payload, dissected = row[:8]
        data = bytes.fromhex(payload.replace(":", ""))
        packets.append(RtpPacket(int(number), float(when), int(ssrc, 0), int(seq), int(stamp), marker in ("1", "True", "true"), data))
        for value in filter(None, dissected.split(",")):
            report.dissected_types[int(value, 0)] += 1
    report.packets = len(packets)
    if not packets:
        return report
    report.ssrcs = {p.ssrc for p in packets}
    report.duration = packets[-1].time - packets[0].time
    # the main SSRC's packets in sequence order (16-bit sequence numbers unwrapped)
    main = Counter(p.ssrc for p in packets).most_common(1)[0][0]
    ordered: list[tuple[int, RtpPacket]] = []
    last: int | None = None
    base = 0
    for p in packets:
        if p.ssrc != main:
            continue
        if last is not None and p.seq < last and last - p.seq > 30000:
            base += 65536
        last = p.seq
        ordered.append((base + p.seq, p))
    ordered.sort(key=lambda item: item[0])
    seqs = [s for s, _ in ordered]
    report.sequence_gaps = sum(max(0, b - a - 1) for a, b in zip(seqs, seqs[1:], strict=False))

    frames: list[list[RtpPacket]] = []  # runs of one timestamp, in sequence order
    for _, p in ordered:
        if not frames or frames[-1][0].timestamp != p.timestamp:
            frames.append([])
        frames[-1].append(p)
    report.frames = len({frame[0].timestamp for frame in frames})
    for index, frame in enumerate(frames):
        ts, final = frame[0].timestamp, index == len(frames) - 1  # (the capture may end inside the last)
        markers = [p.marker for p in frame]
        if not markers[-1] and not final:
            report.frames_without_marker += 1
        report.markers_inside_frames += sum(markers[:-1])
        key = False
        open_fu: int | None = None  # the NAL type of an FU-A whose end is still to come
        for p in frame:
            report.max_payload = max(report.max_payload, len(p.payload))
            kind, carried, fragment, forbidden = _nal_units(p.payload)
            report.packet_types[kind] += 1
            report.forbidden_bit += forbidden
            for nal in carried:
                report.nal_types[nal] += 1
                key = key or nal == 5
            if fragment is not None:
                nal, start, end = fragment
                if start and open_fu is not None:
                    report.fu_errors.append(f"FU-A start inside an open FU-A (timestamp {ts})")
                if not start and open_fu != nal:
                    report.fu_errors.append(f"FU-A fragment without its start (timestamp {ts})")
                open_fu = None if end else nal
            elif open_fu is not None:
                report.fu_errors.append(f"FU-A without its end before another NAL unit (timestamp {ts})")
                open_fu = None
        if open_fu is not None and not final:
            report.fu_errors.append(f"FU-A without its end at the end of its frame (timestamp {ts})")
        if key:
            report.key_frames += 1
            report.key_frame_times.append(frame[0].time)
    stamps = [frame[0].timestamp for frame in frames]
    report.timestamp_steps = Counter((b - a) % 2**32 for a, b in zip(stamps, stamps[1:], strict=False))

    # what tshark's dissectors flag
    flagged = _tshark_fields(
        pcap_path,
        decode,
        f"({where}) && (_ws.malformed || _ws.expert.severity == \"Error\")",
        ["frame.number", "_ws.malformed", "_ws.expert.message", "_ws.col.Info"],
    )
    for row in flagged:
        row += [""] * (4 - len(row))
        number, malformed, message, info = row[:4]
        if malformed or "Malformed" in info:
            report.malformed.append(f"{number}: {info}")
        elif message:
            report.expert_errors.append(f"{number}: {message}")
    return report


def rtp_streams(pcap_path: Path, port: int, direction: str = "to") -> dict[int, Counter[int]]:
    """The RTP on a port: {SSRC: Counter of payload types}. Finds which payload type a peer used."""
    rows = _tshark_fields(pcap_path, [f"udp.port=={port},rtp"], f"{_port_filter(port, direction)} && rtp.version==2", ["rtp.ssrc", "rtp.p_type"])
    found: dict[int, Counter[int]] = {}
    for row in rows:
        if len(row) >= 2 and row[0] and row[1]:
            found.setdefault(int(row[0], 0), Counter())[int(row[1])] += 1
    return found


# -- RTCP feedback (RFC 4585, RFC 5104) ---------------------------------------------------------------


@dataclass
class RtcpFeedbackReport:
    """The RTCP towards (or from) a port: compound packets, and the feedback messages in them."""

    packets: int = 0  # UDP datagrams of RTCP
    sender_reports: int = 0
    receiver_reports: int = 0
    pli: int = 0  # PSFB (206) FMT 1
    fir: int = 0  # PSFB FMT 4 (RFC 5104)
    legacy_fir: int = 0  # RFC 2032's FIR packet (PT 192): what baresip sends for a key frame to a peer without rtcp-fb nack
    remb: int = 0  # PSFB FMT 15 (application layer feedback)
    nack: int = 0  # RTPFB (205) FMT 1
    media_ssrcs: set[int] = field(default_factory=set)  # the SSRCs PLIs and NACKs asked about
    fir_ssrcs: set[int] = field(default_factory=set)  # the SSRCs FIRs asked about (in their FCI)
    times: list[float] = field(default_factory=list)  # epoch seconds of each PLI or FIR
    malformed: list[str] = field(default_factory=list)

    @property
    def picture_requests(self) -> int:
        """PLIs and FIRs of either kind: requests for a key frame."""
        return self.pli + self.fir + self.legacy_fir


def rtcp_feedback_check(pcap_path: Path, port: int, direction: str = "to", rtcp_mux: bool = False) -> RtcpFeedbackReport:
    """The RTCP towards `port` (its own port: usually the RTP port + 1; with `rtcp_mux` the RTP port
    itself) in a capture: sender/receiver reports, PLI (PSFB FMT 1), FIR (PSFB FMT 4, or RFC 2032's
    PT 192), REMB, generic NACK (RTPFB FMT 1)."""
    decode = [f"udp.port=={port},{'rtp' if rtcp_mux else 'rtcp'}"]
    rows = _tshark_fields(
        pcap_path,
        decode,
        f"{_port_filter(port, direction)} && rtcp",
        [
            "frame.number", "frame.time_epoch", "rtcp.pt", "rtcp.psfb.fmt", "rtcp.rtpfb.fmt",
            "rtcp.mediassrc", "rtcp.psfb.fir.fci.ssrc", "_ws.malformed", "_ws.col.Info",
        ],
    )  # fmt: skip
    report = RtcpFeedbackReport()
    for row in rows:
        row += [""] * (9 - len(row))
        number, when, kinds, psfb, rtpfb, media, fir_ssrcs, malformed, info = row[:9]
        report.packets += 1
        if malformed or "Malformed" in info:
            report.malformed.append(f"{number}: {info}")
        types = [int(v) for v in kinds.split(",") if v]
        report.sender_reports += types.count(200)
        report.receiver_reports += types.count(201)
        report.legacy_fir += types.count(192)
        payload_specific = [int(v) for v in psfb.split(",") if v]  # (one FMT per PSFB packet of the compound)
        transport = [int(v) for v in rtpfb.split(",") if v]
        report.pli += payload_specific.count(1)
        report.fir += payload_specific.count(4)
        report.remb += payload_specific.count(15)
        report.nack += transport.count(1)
        report.media_ssrcs.update(s for s in (int(v, 0) for v in media.split(",") if v) if s)
        report.fir_ssrcs.update(int(v, 0) for v in fir_ssrcs.split(",") if v)
        if 1 in payload_specific or 4 in payload_specific or 192 in types:
            report.times.append(float(when))
    return report
