"""baresip as a SIP room system or phone in tests (Debian baresip-core, see ../shared/PEERS.md).

It sends a WAV file as its microphone, records what it hears (sndfile), and is driven while a call
runs through ctrl_tcp (netstring JSON commands: dial, sndcode, hangup).

With `video=` (Debian baresip-ffmpeg) it also sends video: H.264 (avcodec, libx264) or VP8/VP9
(libvpx) of ffmpeg's testsrc2 clip (avformat) or of fakevideo's red/green/blue bars, shows what it
receives on a null display, and saves received pictures as PNG (snapshot module) for the test to
look at. What baresip 1.0.0 can be told about video (seen in its binaries and in real calls):
- config: video_size, video_fps, video_bitrate, videnc_format; rtcp_mux yes|no; rtp_ports a-b;
  rtp_bandwidth; jitter_buffer_delay; avcodec_h264enc / avcodec_h264dec (FFmpeg codec names),
  avcodec_h265enc / _h265dec, avcodec_hwaccel. No key frame interval, profile or packetization
  knob: avcodec registers H264 packetization-mode=0 and H264 packetization-mode=1 (both
  profile-level-id 42e01f, libx264 Constrained Baseline, NAL units of at most 1024 octets:
  single NAL units in mode 0, FU-A in mode 1), then H263, MP4V-ES, H265. With no video_codecs in
  the account it offers them all (pm=0 first) and accepts either mode; the account parameter
  video_codecs=H264 keeps only the first H264, packetization-mode=0: an offer of mode 1 alone then
  has its video declined (port 0).
- account: video_codecs=H264,VP8,... (names as in SDP), mediaenc=srtp|srtp-mand|srtp-mandf
  (RTP/SAVPF)|dtls_srtp. No RTP/AVPF: baresip offers RTP/AVP with a=rtcp-fb:* nack pli,
  a=rtcp-rsize, a=framerate and a=content:main on its video, and declines (port 0) video offered
  as RTP/AVPF. It sends a key frame on RTCP PLI, FIR or generic NACK, and asks for one (PLI when
  the peer's SDP has rtcp-fb nack, else RFC 2032 FIR) when its decoder fails.
- commands: snapshot, snapshot_recv <path>, snapshot_send <path>, vidsrc, video_dir, reinvite,
  video_debug (frame counters, key frames received, picture updates asked for, ports), callstat.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.support.gateway import wait_until
from tests.support.sipp import free_udp_port


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_tone(path: Path, frequency: float, rate: int, seconds: float = 120.0, channels: int = 1) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    samples = np.repeat((np.sin(2 * np.pi * frequency * t) * 9000).astype("<i2"), channels)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())
    return path


CLIP_SECONDS = 150  # the testsrc2 clip of video="clip"

# baresip's video codec modules by the codec's SDP name
VIDEO_CODEC_MODULES = {"H264": "avcodec.so", "H265": "avcodec.so", "H263": "avcodec.so", "VP8": "vp8.so", "VP9": "vp9.so"}

# The status line baresip's menu prints several times a second during a call (to its log here):
# "[0:00:19] audio=64000/64000 video=377301/840 (bit/s) efps=15.4/15.0" (sent/received)
# (audio-only calls: "[0:00:03] audio=64000/64000 (bit/s)")
_STATUS = re.compile(
    r"\[(\d+):(\d\d):(\d\d)\] audio=(\d+)/(\d+)(?: video=(\d+)/(\d+))? \(bit/s\)(?: efps=([\d.]+)/([\d.]+))?"
)


@dataclass(frozen=True)
class CallStatus:
    """baresip's own view of the running call (its status line): bit rates sent/received and the
    effective video frame rates (frames sent and frames decoded per second)."""

    seconds: int
    audio_bps_sent: int
    audio_bps_received: int
    video_bps_sent: int
    video_bps_received: int
    fps_sent: float
    fps_received: float


@dataclass(frozen=True)
class VideoStats:
    """baresip's video stream (its video_debug report): frames its source gave the encoder, frames
    it decoded and displayed, key frames it received, picture updates (PLI/FIR) it asked for, and
    the addresses of the stream."""

    frames_sent: int
    frames_received: int
    key_frames_received: int
    picture_updates_requested: int
    encoder: str
    decoder: str
    local_port: int
    remote_rtp: str
    remote_rtcp: str
    ssrc: int  # of the video baresip sends
    text: str

    @classmethod
    def parse(cls, text: str) -> VideoStats:
        def find(pattern: str, default: str = "") -> str:
            match = re.search(pattern, text)
            return match.group(1) if match else default

        return cls(
            frames_sent=int(find(r"source: .*? frames=(\d+)", "0")),
            frames_received=int(find(r"vidisp: .*? frames=(\d+)", "0")),
            key_frames_received=int(find(r"n_keyframes=(\d+)", "0")),
            picture_updates_requested=int(find(r"n_picup=(\d+)", "0")),
            encoder=find(r"tx: encode: (\S+)"),
            decoder=find(r"rx: decode: (\S+)"),
            local_port=int(find(r"local: [^ ]*?:(\d+),", "0")),
            remote_rtp=find(r"remote: ([^/\s]+)/"),
            remote_rtcp=find(r"remote: [^/\s]+/(\S+)"),
            ssrc=int(find(r"Encode: seq=\d+ ssrc=0x([0-9a-fA-F]+)", "0"), 16),
            text=text,
        )


def free_rtp_ports(streams: int = 2) -> tuple[int, int]:
    """A range for baresip's rtp_ports: an even first port (baresip puts RTP on even ports, RTCP on
    the next one) and room for `streams` RTP/RTCP pairs, all free now (see sipp.PEER_PORTS)."""
    base = free_udp_port(2 * streams, even=True)
    return base, base + 2 * streams - 1


class Baresip:
    def __init__(
        self,
        directory: Path,
        tone_hz: float,
        name: str = "Room 123",
        codecs: tuple[str, ...] = ("g722", "g711"),
        extra_config: str = "",
        account_params: str = "",
        *,
        video: str | Path | None = None,
        video_codecs: tuple[str, ...] | None = None,
        video_size: str = "640x360",
        video_fps: int = 15,
        video_bitrate: int = 800_000,
        rtp_ports: tuple[int, int] | None = None,
        rtcp_mux: bool = False,
        register: tuple[str, str] | None = None,
    ) -> None:
        """`video`: None (audio only, no video module loaded), "clip" (testsrc2 of video_size at
        video_fps for CLIP_SECONDS, made by tests.support.video.make_test_clip, sent with avformat;
        baresip's video stops where a clip ends: calls must be shorter), "fakevideo"
        (fakevideo's red/green/blue bars at video_size), "none" (video offered and received, nothing
        sent), a Path of a clip for avformat, or a "module,device" string. `video_codecs`: None
        (avcodec's H.264 in both packetization modes, H.263, MPEG-4, H.265), or the account's video
        codecs in order of preference ("H264" means packetization-mode=0 only; "VP8", "VP9": the
        libvpx modules). `rtp_ports`: the range baresip takes its media ports from, e.g. from
        free_rtp_ports() (RTP on even ports, RTCP on the next unless rtcp_mux). `register`: (address
        of record, password): the account registers there (its host:port is the registrar) every
        60 s with digest, instead of only listening."""
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._settings = (tone_hz, name, codecs, extra_config, account_params)
        self._register = register
        self._video = (video, video_codecs, video_size, video_fps, video_bitrate, rtp_ports, rtcp_mux)
        self._configure()
        self.log_path = directory / "baresip.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._snapshots = 0

    @property
    def video(self) -> bool:
        return self._video[0] is not None

    def _video_config(self) -> tuple[str, str]:
        """(config lines, account parameters) of the video settings."""
        source, video_codecs, size, fps, bitrate, rtp_ports, rtcp_mux = self._video
        lines = [f"rtcp_mux {'yes' if rtcp_mux else 'no'}"] if rtcp_mux else []
        if rtp_ports:
            lines.append(f"rtp_ports {rtp_ports[0]}-{rtp_ports[1]}")
        if source is None:
            return "\n".join(lines), ""
        if source == "clip":
            from tests.support.video import make_test_clip

            # (longer than a call's default 120 s: baresip's video stops where the clip ends)
            source = f"avformat,{make_test_clip(size=size, rate=fps, seconds=CLIP_SECONDS)}"
        elif source == "fakevideo":
            source = "fakevideo,nil"
        elif isinstance(source, Path):
            source = f"avformat,{source.resolve()}"
        modules = dict.fromkeys(VIDEO_CODEC_MODULES[c.upper()] for c in video_codecs or ("H264",))
        if source != "none":
            lines.append(f"video_source {source}")
        lines += [
            "video_display fakevideo,nil",
            f"video_size {size}",
            f"video_fps {fps}",
            f"video_bitrate {bitrate}",
            *(f"module {m}" for m in modules),
            "module avformat.so",
            "module fakevideo.so",
            "module snapshot.so",
            "avcodec_h264enc libx264",
            "avcodec_h264dec h264",
        ]
        return "\n".join(lines), f";video_codecs={','.join(video_codecs)}" if video_codecs else ""

    def _configure(self) -> None:
        """Ports free now, and the config and account files that use them."""
        tone_hz, name, codecs, extra_config, account_params = self._settings
        directory = self.directory
        self.sip_port = free_port()
        self.ctrl_port = free_port()
        video_config, video_params = self._video_config()
        # aufile wants the sample rate of the codec in use
        rate = {"g722": 16000, "g711": 8000, "opus": 48000}[codecs[0]]
        # (baresip's Opus is stereo: its audio source must be too)
        tone = write_tone(directory / "tone.wav", tone_hz, rate, channels=2 if codecs[0] == "opus" else 1)
        modules = "\n".join(f"module {codec}.so" for codec in codecs)
        (directory / "config").write_text(
            f"""poll_method epoll
sip_listen 127.0.0.1:{self.sip_port}
net_interface 127.0.0.1
audio_source aufile,{tone}
audio_player aubridge,A
audio_alert aubridge,A
module_path /usr/lib/baresip/modules
{modules}
module aufile.so
module aubridge.so
module sndfile.so
module_tmp uuid.so
module_tmp account.so
module_app contact.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}
snd_path {directory}
{video_config}
{extra_config}
"""
        )
        if self._register is not None:
            aor, password = self._register
            account = f'"{name}" <{aor}>;auth_pass={password};regint=60'
        else:
            account = f'"{name}" <sip:A@127.0.0.1:{self.sip_port}>;regint=0'
        (directory / "accounts").write_text(f"{account};answermode=auto{video_params}{account_params}\n")

    def start(self, dial: str | None = None, seconds: int = 120) -> None:
        args = ["baresip", "-f", str(self.directory), "-t", str(seconds)] + (["-s"] if os.environ.get("BARESIP_TRACE") else [])
        if dial:
            args += ["-e", f"/dial {dial}"]
        for _ in range(3):
            # (in its own folder: the snapshot module writes its pictures to the working folder)
            process = self.process = subprocess.Popen(
                args, stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT, cwd=self.directory
            )
            wait_until(lambda p=process: self._ctrl_ready() or p.poll() is not None, 30, what="baresip's control port")
            if process.poll() is None:
                return
            # It exited at once: a port free when chosen was taken meanwhile (tests run in parallel).
            self._configure()
        raise AssertionError(f"baresip did not start: {self.log()[-2000:]}")

    def _ctrl_ready(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def command(self, name: str, params: str = "") -> dict[str, object]:
        """Runs a command (as typed after / in baresip's menu) and returns ctrl_tcp's response:
        {"response": true, "ok": ..., "data": <the command's output>}. (Events baresip sends on the
        same connection before the response are skipped.)"""
        data = json.dumps({"command": name, "params": params, "token": "t"}).encode()
        buffer = b""
        # (15 s: on a loaded machine baresip's loop can be slow to answer; a CI run timed out at 5 s)
        with socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=15) as conn:
            conn.sendall(str(len(data)).encode() + b":" + data + b",")
            while True:
                length, colon, rest = buffer.partition(b":")
                if colon and len(rest) > int(length):
                    message = dict(json.loads(rest[: int(length)]))
                    buffer = rest[int(length) + 1 :]
                    if message.get("response") or "event" not in message:
                        return message
                    continue
                chunk = conn.recv(65536)
                if not chunk:
                    raise ConnectionError(f"baresip closed the control connection during {name!r}")
                buffer += chunk

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def established(self) -> bool:
        return "Call established" in self.log()

    def send_keys(self, keys: str) -> None:
        for key in keys:
            self.command("sndcode", key)

    # -- video -----------------------------------------------------------------------------------

    def snapshot(self, timeout: float = 20.0, sent: bool = False) -> Path:
        """The next video frame baresip decodes (with `sent`: the next it sends) as a PNG file,
        returned once written whole. The snapshot module saves it on the next frame, at the path
        given (snapshot_recv / snapshot_send <path>): here snapshot-recv-<n>.png in the
        baresip's folder. (The plain `snapshot` command saves both as
        snapshot-recv-<date-time>.png / snapshot-send-... in baresip's working folder, one per
        second at most: same-second names overwrite each other.) No frame within `timeout` (no
        video received, or none decoded): AssertionError."""
        assert self.video, "baresip was started without video"
        kind = "send" if sent else "recv"
        self._snapshots += 1
        path = self.directory / f"snapshot-{kind}-{self._snapshots}.png"
        path.unlink(missing_ok=True)
        deadline = time.monotonic() + timeout
        asked = 0.0
        while not _png_complete(path):
            now = time.monotonic()
            if now > deadline:
                raise AssertionError(f"baresip saved no {'sent' if sent else 'received'} picture in {timeout} s: {self.log()[-2000:]}")
            if now - asked > 4.0:  # (asked again, in case a request was lost)
                # (relative to its working folder, its own: baresip cuts a path at 99 characters)
                reply = self.command(f"snapshot_{kind}", path.name)
                assert reply.get("ok") is not False, reply
                asked = now
            time.sleep(0.1)
        return path

    def status(self) -> CallStatus | None:
        """baresip's last status line of the call (None before one, printed about once a second):
        bit rates (its average of the last seconds) and video frame rates (sent, and decoded, over
        its last 5 s window; 0 in the first 5 s of a call)."""
        found = _STATUS.findall(self.log())
        if not found:
            return None
        h, m, sec, a_tx, a_rx, v_tx, v_rx, fps_tx, fps_rx = found[-1]
        return CallStatus(
            int(h) * 3600 + int(m) * 60 + int(sec),
            int(a_tx),
            int(a_rx),
            int(v_tx or 0),
            int(v_rx or 0),
            float(fps_tx or 0),
            float(fps_rx or 0),
        )

    def receiving_video(self) -> bool:
        """baresip decodes video: its log says "video: receiving with resolution ..."."""
        return "video: receiving with resolution" in self.log()

    def received_resolution(self) -> tuple[int, int] | None:
        """The resolution of the video baresip last started decoding (its log), or None."""
        found = re.findall(r"video: receiving with resolution (\d+) x (\d+)", self.log())
        return (int(found[-1][0]), int(found[-1][1])) if found else None

    def video_codec(self) -> str | None:
        """The video encoder baresip uses, as its log says: e.g. "H264 packetization-mode=1"."""
        found = re.findall(r"Set video encoder: (.+?) \(\d+ bit/s", self.log())
        return found[-1].strip() if found else None

    def video_debug(self) -> str:
        """baresip's video stream report (command video_debug): codecs, frame counters, addresses,
        RTP/RTCP counters."""
        return str(self.command("video_debug").get("data", ""))

    def video_stats(self) -> VideoStats:
        """baresip's video stream now, from its video_debug report."""
        return VideoStats.parse(self.video_debug())

    def media_port(self, kind: str = "video") -> int:
        """baresip's local RTP port of the call's audio or video (its audio_debug / video_debug)."""
        text = str(self.command(f"{kind}_debug").get("data", ""))
        found = re.search(r"local: [^ ]*?:(\d+),", text)
        assert found, f"no local address in baresip's {kind}_debug: {text[-1500:]}"
        return int(found.group(1))

    def recording(self) -> tuple[np.ndarray, int]:
        """What baresip heard (sndfile's decoded stream) as float samples, and its rate."""
        files = sorted(self.directory.glob("dump-*-dec.wav"))
        assert files, f"baresip recorded nothing: {self.log()[-2000:]}"
        with wave.open(str(files[-1])) as wav:
            rate, channels = wav.getframerate(), wav.getnchannels()
            samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64)
        return samples[::channels], rate  # the first channel

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                self.command("quit")
            except OSError:
                pass
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _png_complete(path: Path) -> bool:
    """A PNG file written to its end (its IEND chunk: baresip writes in several steps)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return data.startswith(b"\x89PNG") and data[-12:-8] == b"\x00\x00\x00\x00" and data[-8:-4] == b"IEND"


def tone_level(samples: np.ndarray, rate: int, frequency: float) -> float:
    """How far (dB) the tone stands above the rest of the spectrum of these samples."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    hz = np.fft.rfftfreq(samples.size, 1 / rate)
    band = (hz > frequency - 15) & (hz < frequency + 15)
    rest = (hz > 100) & ~((hz > frequency - 60) & (hz < frequency + 60))
    return float(20 * np.log10(spectrum[band].max() / (np.median(spectrum[rest]) + 1e-9)))


def recording_so_far(phone: Baresip) -> tuple[np.ndarray, int]:
    """What baresip has heard until now, while the call still runs (sndfile writes the WAV header's
    lengths only when the call ends: the samples are read from the file as it grows)."""
    files = sorted(phone.directory.glob("dump-*-dec.wav"))
    if not files:
        return np.zeros(0), 8000
    data = files[-1].read_bytes()
    fmt = data.find(b"fmt ")
    chunk = data.find(b"data", fmt)
    if fmt < 0 or chunk < 0:
        return np.zeros(0), 8000
    channels, rate = int.from_bytes(data[fmt + 10 : fmt + 12], "little"), int.from_bytes(data[fmt + 12 : fmt + 16], "little")
    body = data[chunk + 8 :]
    samples = np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2").astype(np.float64)
    return samples[:: max(channels, 1)], rate


def menu_speaking(phone: Baresip) -> bool:
    """The gateway's first prompt reaches the caller (before it, the gateway sends only silence): the
    voice menu runs and takes keys (a key sent before the ACK is through would find no menu)."""
    samples, _ = recording_so_far(phone)
    return samples.size > 0 and float(abs(samples).max()) > 5000  # (the prompt peaks near 20000; no frame before it reaches 2000)
