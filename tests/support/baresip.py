"""baresip as a SIP room system or phone in tests (Debian baresip-core, see ../shared/PEERS.md).

It sends a WAV file as its microphone, records what it hears (sndfile), and is driven while a call
runs through ctrl_tcp (netstring JSON commands: dial, sndcode, hangup).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import wave
from pathlib import Path

import numpy as np

from tests.support.gateway import wait_until


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


class Baresip:
    def __init__(
        self,
        directory: Path,
        tone_hz: float,
        name: str = "Room 123",
        codecs: tuple[str, ...] = ("g722", "g711"),
        extra_config: str = "",
        account_params: str = "",
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._settings = (tone_hz, name, codecs, extra_config, account_params)
        self._configure()
        self.log_path = directory / "baresip.log"
        self.process: subprocess.Popen[bytes] | None = None

    def _configure(self) -> None:
        """Ports free now, and the config and account files that use them."""
        tone_hz, name, codecs, extra_config, account_params = self._settings
        directory = self.directory
        self.sip_port = free_port()
        self.ctrl_port = free_port()
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
{extra_config}
"""
        )
        (directory / "accounts").write_text(f'"{name}" <sip:A@127.0.0.1:{self.sip_port}>;regint=0;answermode=auto{account_params}\n')

    def start(self, dial: str | None = None, seconds: int = 120) -> None:
        args = ["baresip", "-f", str(self.directory), "-t", str(seconds)] + (["-s"] if os.environ.get("BARESIP_TRACE") else [])
        if dial:
            args += ["-e", f"/dial {dial}"]
        for _ in range(3):
            process = self.process = subprocess.Popen(args, stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT)
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
        data = json.dumps({"command": name, "params": params, "token": "t"}).encode()
        with socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=5) as conn:
            conn.sendall(str(len(data)).encode() + b":" + data + b",")
            reply = conn.recv(65536)
        length, _, rest = reply.partition(b":")
        return dict(json.loads(rest[: int(length)]))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def established(self) -> bool:
        return "Call established" in self.log()

    def send_keys(self, keys: str) -> None:
        for key in keys:
            self.command("sndcode", key)

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
