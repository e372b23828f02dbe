"""sipp (Debian sip-tester) against the gateway in tests, what sipp saw of a call (its exit code and
its message trace, written as the call runs), and what the gateway says about a call (its
participants API, its metrics, its log lines)."""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.gateway import RunningGateway, participant

SIPP = "/usr/bin/sipp"
TSHARK = "tshark"
SCENARIOS = Path(__file__).resolve().parents[1] / "sipp"
SIPP_PCAPS = Path("/usr/share/sip-tester")  # g711a.pcap, dtmf_2833_<key>.pcap (Debian sip-tester)
DTMF_EVENTS = "0123456789*#ABCD"


# -- sipp ---------------------------------------------------------------------------------------------


def udp_port_bound(port: int) -> bool:
    """Whether some process has bound this local UDP port (from /proc/net/udp and udp6)."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        if any(int(line.split()[1].rsplit(":", 1)[1], 16) == port for line in lines):
            return True
    return False


# Ports that peers are told to bind (sipp's media, baresip's RTP) come from above the kernel's
# ephemeral range (32768-60999) and the gateway's RTP range (20000-39999): a port that is free when
# picked can otherwise be taken, before the peer binds it, by any socket bound to port 0 or by a
# gateway of a test running beside (CI met both: "Address already in use").
# Each pytest-xdist worker picks from its own share of them: two workers picking at the same moment
# could otherwise both find one free and hand it to two peers (CI met that too).
PEER_PORTS = (61000, 65535)


def _worker_share() -> tuple[int, int]:
    low, high = PEER_PORTS
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1 ... ("" without xdist)
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or "1")
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    if count <= 1 or index >= count:
        return low, high
    size = (high - low + 1) // count
    return low + index * size, low + (index + 1) * size - 1


_HANDED_OUT: dict[int, float] = {}  # port -> when free_udp_port gave it out (this process)
_HANDED_OUT_LOCK = threading.Lock()
_KEEP_S = 120.0  # a port given out is not given out again for this long: its taker may not have bound it yet


def free_udp_port(span: int = 1, even: bool = False) -> int:
    """A local UDP port that is free together with the `span - 1` ports after it (`even`: an even
    first one), from this worker's share of PEER_PORTS, and none of them given out by this function
    in the last _KEEP_S seconds: runs side by side in one worker (threads) never get the same
    ports between the pick and their bind (CI failed twice so: sipp's "Unable to bind ... Address
    already in use")."""
    low, high = _worker_share()
    with _HANDED_OUT_LOCK:
        now = time.monotonic()
        for port, at in list(_HANDED_OUT.items()):
            if now - at > _KEEP_S:
                del _HANDED_OUT[port]
        for _ in range(200):
            port = random.randrange(low, high - span + 1)
            if even:
                port &= ~1
            if any(p in _HANDED_OUT for p in range(port, port + span)):
                continue
            held: list[socket.socket] = []
            try:
                for offset in range(span):
                    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    held.append(sock)
                    sock.bind(("127.0.0.1", port + offset))
            except OSError:
                continue
            finally:
                for sock in held:
                    sock.close()
            for taken in range(port, port + span):
                _HANDED_OUT[taken] = now
            return port
    raise RuntimeError("no free UDP port")


@dataclass(frozen=True)
class SipMessage:
    """One SIP message of sipp's trace: `sent` by sipp or received from the gateway."""

    sent: bool
    text: str

    @property
    def start_line(self) -> str:
        return self.text.split("\r\n", 1)[0]

    def header(self, name: str) -> str | None:
        head = self.text.split("\r\n\r\n", 1)[0]
        for line in head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None

    @property
    def body(self) -> str:
        return self.text.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in self.text else ""


# sipp's -trace_msg entry: a dashed line with the time, "UDP message sent (551 bytes):" or
# "UDP message received [637] bytes :", an empty line, then the message's bytes.
_TRACE_ENTRY = re.compile(rb"^-{20,}[^\n]*\n\w+ message (sent|received) (?:\((\d+) bytes\)|\[(\d+)\] bytes ?):\n\n", re.M)


def trace_messages(path: Path) -> list[SipMessage]:
    """The whole messages in a sipp message trace so far (one still being written is left out)."""
    data = path.read_bytes() if path.exists() else b""
    found = []
    for entry in _TRACE_ENTRY.finditer(data):
        size = int(entry.group(2) or entry.group(3))
        raw = data[entry.end() : entry.end() + size]
        if len(raw) < size:
            break
        found.append(SipMessage(entry.group(1) == b"sent", raw.decode("utf-8", errors="replace")))
    return found


@dataclass
class SippResult:
    returncode: int
    output: str
    errors: str
    messages: str

    def describe(self) -> str:
        return f"sipp exit code {self.returncode}\n--- errors ---\n{self.errors[-4000:]}\n--- output ---\n{self.output[-3000:]}"


class Sipp:
    """One sipp run against the gateway, in the background: one call (-m 1), or `calls` at once
    (`host`: where the gateway, or the proxy standing for it, listens)."""

    def __init__(
        self,
        gateway: RunningGateway,
        directory: Path,
        scenario: str,
        service: str,
        *,
        cwd: Path | None = None,
        media_port: int | None = None,
        calls: int = 1,
        host: str = "127.0.0.1",
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.media_port = media_port or free_udp_port(span=4)  # sipp binds audio and video media ports
        scenario_args = ["-sf", str(SCENARIOS / scenario)] if scenario.endswith(".xml") else ["-sn", scenario]
        self._output = (directory / "sipp.out").open("wb")
        self.process = subprocess.Popen(
            [
                SIPP,
                f"{host}:{gateway.sip_port}",
                *scenario_args,
                "-s", service,
                "-i", "127.0.0.1",
                "-p", str(free_udp_port()),
                "-mp", str(self.media_port),
                "-m", str(calls),
                *(["-l", str(calls), "-r", "50"] if calls > 1 else []),
                "-nostdin",
                "-timeout", "30s",
                "-trace_err", "-error_file", str(directory / "errors.log"),
                "-trace_msg", "-message_file", str(directory / "messages.log"),
            ],
            cwd=cwd or directory,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    @property
    def call_id(self) -> str:
        """The Call-ID of the (first) call (sipp's default [call_id]: <call number>-<pid>@<local ip>)."""
        return f"1-{self.process.pid}@127.0.0.1"

    def messages(self) -> list[SipMessage]:
        """The SIP messages sipp has sent and received so far (its trace is written as the call runs)."""
        return trace_messages(self.directory / "messages.log")

    def received(self, start: str, cseq: str) -> list[SipMessage]:
        """What sipp has received from the gateway so far whose first line starts with `start` (e.g.
        "SIP/2.0 200") and whose CSeq is `cseq` (e.g. "3 INVITE"), retransmissions included."""
        return [
            m for m in self.messages() if not m.sent and m.start_line.startswith(start) and m.header("CSeq") == cseq
        ]

    def wait(self, timeout: float = 60) -> SippResult:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._output.close()

        def read(name: str) -> str:
            path = self.directory / name
            return path.read_text(errors="replace") if path.exists() else ""

        return SippResult(self.process.returncode, read("sipp.out"), read("errors.log"), read("messages.log"))


def sipp_uas(directory: Path, port: int, scenario: str = "uas", timeout_s: int = 60) -> subprocess.Popen[bytes]:
    """sipp answering one call on 127.0.0.1:`port` (the gateway dials it): its built-in uas, or a
    scenario file of tests/sipp; its messages traced to directory/messages.log, its errors to
    directory/errors.log."""
    directory.mkdir(parents=True, exist_ok=True)
    scenario_args = ["-sf", str(SCENARIOS / scenario)] if scenario.endswith(".xml") else ["-sn", scenario]
    return subprocess.Popen(
        [SIPP, *scenario_args, "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_udp_port(span=4)), "-m", "1",
         "-nostdin", "-timeout", f"{timeout_s}s", "-trace_err", "-error_file", str(directory / "errors.log"),
         "-trace_msg", "-message_file", str(directory / "messages.log")],
        cwd=directory, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip


def stop_uas(process: subprocess.Popen[bytes]) -> None:
    """Ends a sipp_uas that has not ended by itself (a test that failed half-way)."""
    if process.poll() is None:
        process.kill()
    process.wait()


def uas_errors(directory: Path) -> str:
    """What a sipp_uas wrote to its error file (for an assertion's message)."""
    path = directory / "errors.log"
    return path.read_text(errors="replace") if path.exists() else ""


def run_sipp(gateway: RunningGateway, directory: Path, scenario: str, service: str) -> tuple[Sipp, SippResult]:
    sipp = Sipp(gateway, directory, scenario, service)
    result = sipp.wait()
    assert result.returncode == 0, result.describe()
    return sipp, result


# -- what the gateway says ----------------------------------------------------------------------------


def sip_calls_active(gateway: RunningGateway) -> int:
    """The SIP calls the gateway holds now (its gateway_sip_calls_active gauge): a call counts from
    the INVITE until the gateway has finished with it (BYE, CANCEL, refusal)."""
    response = gateway.api("GET", "/metrics")
    assert response.status_code == 200, response.text
    match = re.search(r"^gateway_sip_calls_active ([0-9.e+]+)$", response.text, re.M)
    assert match, "no gateway_sip_calls_active in /metrics"
    return int(float(match.group(1)))


def media(gateway: RunningGateway, room: str, name: str) -> dict[str, object]:
    found = participant(gateway, room, name)
    assert found is not None, f"{name} is not in {room}"
    counters = found["media"]
    assert isinstance(counters, dict)
    return counters


def packets_out(gateway: RunningGateway, room: str, name: str) -> int:
    value = media(gateway, room, name)["rtp_packets_out"]
    assert isinstance(value, int)
    return value


def answer_sdp(messages: str) -> tuple[int, int]:
    """(RTP port, payload type) of the gateway's SDP in its 200 OK to the first INVITE, from sipp's
    message trace."""
    match = re.search(r"SIP/2\.0 200 OK.*?CSeq: *1 INVITE.*?\nm=audio (\d+) RTP/AVP (\d+)", messages, re.S)
    assert match, "no 200 OK with SDP to the INVITE in sipp's messages"
    return int(match.group(1)), int(match.group(2))


