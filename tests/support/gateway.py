"""A real gateway process for end-to-end tests: its test configuration, start-up on free ports, its
JSON log, and the check that it stopped without logging an error."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ADMIN_TOKEN = "test-admin-token-0123456789"

TEST_CONFIG = f"""
server: {{host: 127.0.0.1, port: 0}}
admin: {{token: {ADMIN_TOKEN}}}
logging: {{level: debug, format: json}}
sip: {{host: 127.0.0.1, port: 0, language: en, digit_timeout_s: 2}}
storage: {{path: null}}
# Chromium and the other peers share the machine's two cores with the gateway: their load is not the
# gateway's overload, so tests refuse newcomers only when the loop is a whole second late.
admission: {{max_loop_lag_ms: 1000}}
rooms:
  - {{id: demo, name: Demo, host_pin: "1234", aliases: ["4711"]}}
  - {{id: lobby, name: Citizen office, host_pin: "1234", lobby: true}}
  - {{id: secret, name: Council, host_pin: "1234", guest_pin: "5555"}}
  - {{id: small, host_pin: "1234", max_participants: 2}}
"""


@dataclass
class RunningGateway:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    sip_port: int = 0
    h323_port: int = 0
    token: str = ADMIN_TOKEN  # the admin token its configuration names

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http", "ws", 1) + "/ws"

    def log_lines(self) -> list[dict[str, object]]:
        lines = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
        return lines

    def api(self, method: str, path: str, token: str | None = "", base_url: str | None = None, **kwargs: object):  # type: ignore[no-untyped-def]
        """`token` "": its admin token, None: none; `base_url`: another address of it (a worker's own)."""
        import httpx

        token = self.token if token == "" else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, (base_url or self.base_url) + path, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]


def start_gateway(
    tmp_path: Path, config_text: str = TEST_CONFIG, env: dict[str, str] | None = None, token: str = ADMIN_TOKEN
) -> RunningGateway:
    """`gateway run` with this configuration (`env`: more environment, e.g. overrides), once it
    logged "gateway started" (JSON logging)."""
    if "\nh323:" not in config_text:
        config_text += "\nh323: {port: 0}\n"  # (never the default 1720: gateways of parallel tests)
    config = tmp_path / "gateway.yaml"
    config.write_text(config_text)
    log_path = tmp_path / "gateway.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(config)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for raw in log_path.read_text(errors="replace").splitlines():
            if '"gateway started"' in raw:
                started = json.loads(raw)
                sip_port = (started.get("sip") or {}).get("udp", 0)
                return RunningGateway(process, started["url"], log_path, sip_port, started.get("h323") or 0, token)
        if process.poll() is not None:
            raise RuntimeError("gateway exited during start-up:\n" + log_path.read_text())
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("gateway did not start in 30 s:\n" + log_path.read_text())


def end_process(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """Ends a peer's process (nginx, mosquitto): SIGTERM, then SIGKILL if it does not go in time."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def stop_and_check(running: RunningGateway, expected_exit: int = 0, expected_errors: Collection[str] = ()) -> None:
    """Stops a gateway (SIGTERM: the graceful shutdown `gateway run` answers with exit code 0) and
    fails the test that caused it on a crash: an error or critical line in its log, a raw traceback
    (a line that is not JSON: something bypassed the logging), a shutdown that hangs, or an exit code
    other than `expected_exit` (a test that killed the gateway itself names the code it expects).
    `expected_errors`: the events of error lines the test caused on purpose (an alert it checks)."""
    if running.process.poll() is None:
        running.process.terminate()
    try:
        running.process.wait(30)
    except subprocess.TimeoutExpired:
        running.process.kill()
        running.process.wait(10)
        raise AssertionError("gateway did not stop within 30 s of SIGTERM:\n" + running.log_path.read_text()[-4000:]) from None
    errors = [
        line
        for line in running.log_lines()
        if line.get("level") in ("error", "critical") and not (line.get("level") == "error" and line.get("event") in expected_errors)
    ]
    assert not errors, f"gateway logged errors: {errors}"
    raw = running.log_path.read_text(errors="replace").splitlines()
    tracebacks = [i for i, line in enumerate(raw) if "Traceback" in line and not _is_json(line)]
    assert not tracebacks, "gateway wrote a raw traceback:\n" + "\n".join(raw[tracebacks[0] : tracebacks[0] + 40])
    assert running.process.returncode == expected_exit, (
        f"gateway exited with {running.process.returncode}, expected {expected_exit}:\n" + "\n".join(raw[-30:])
    )


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def write_tone(path: Path, frequency: float, seconds: float = 30.0, rate: int = 48_000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * frequency * t) * 9000).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())
    return path


def wait_until(condition: Callable[[], object], timeout: float = 15.0, interval: float = 0.1, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or condition} (last value {last!r})")


# -- what the gateway says: its participants (API) and its log -----------------------------------


def participants(gateway: RunningGateway, room: str) -> list[dict[str, object]]:
    return list(gateway.api("GET", f"/api/rooms/{room}/participants").json())


def logged(gateway: RunningGateway, event: str, call_id: str | None = None, **fields: object) -> list[dict[str, object]]:
    """The log lines of `event` (of one call, with these fields): read after waiting on state."""
    return [
        line
        for line in gateway.log_lines()
        if line.get("event") == event
        and (call_id is None or line.get("call_id") == call_id)
        and all(line.get(key) == value for key, value in fields.items())
    ]


def mentions(value: object, secret: str) -> bool:
    """Whether a log line or message holds `secret` (a PIN, typed digits) as a token of its own.

    Looked for in texts and numbers alike, but only where no letter, digit, `_` or `-` adjoins it
    (nor a `.` before it), so a port (55551), a time (04:15:59.555525, 1796441000.1234) or an id
    (a4f1-5555-...) that holds the same digits by chance does not count, while `"pin": "5555"` or
    `5555#` does."""
    return re.search(rf"(?<![\w.-]){re.escape(secret)}(?![\w-])", json.dumps(value, default=str)) is not None


def participant(gateway: RunningGateway, room: str, name: str) -> dict[str, object] | None:
    response = gateway.api("GET", f"/api/rooms/{room}/participants")
    assert response.status_code == 200, response.text
    return next((p for p in response.json() if p["name"] == name), None)


def metric(gateway: RunningGateway, name: str, **labels: str) -> float:
    """One sample of the gateway's /metrics (a counter's `_total` or a gauge), 0 when absent."""
    from prometheus_client.parser import text_string_to_metric_families

    text = gateway.api("GET", "/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (name, f"{name}_total") and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


@contextmanager
def room_kept_clean(gateway: RunningGateway, room: str = "demo", timeout: float = 20.0) -> Iterator[RunningGateway]:
    """For a test on a gateway shared by its module: the gateway still running, the room empty
    (within `timeout` s) before the test and again after it, and no error or critical line logged
    during it (the module's end checks the whole log and the shutdown again, with stop_and_check).
    The body of a module's per-test fixture (`gateway_per_module` makes one):

        @pytest.fixture
        def demo(shared_gateway: RunningGateway) -> Iterator[RunningGateway]:
            with room_kept_clean(shared_gateway) as gateway:
                yield gateway

    (pytest resumes a fixture after a failed test too: the checks after the test run either way.)"""
    assert gateway.process.poll() is None, "the module's gateway is gone"
    wait_until(lambda: not participants(gateway, room), timeout, what=f"{room} empty before the test")
    start = len(gateway.log_lines())
    yield gateway
    wait_until(lambda: not participants(gateway, room), timeout, what=f"{room} empty after the test")
    errors = [line for line in gateway.log_lines()[start:] if line.get("level") in ("error", "critical")]
    assert not errors, f"the gateway logged errors during the test: {errors}"


def gateway_per_module(room: str = "demo", config_text: str = TEST_CONFIG) -> tuple[object, object]:
    """The two fixtures of a test module whose tests share one gateway (on each test worker), to be
    bound at the module's top level under their names:

        shared_gateway, demo = gateway_per_module("demo")

    `shared_gateway` (module scope): a gateway started with `config_text`, stopped and checked by
    stop_and_check after the module's last test. `<room>` (each test): that gateway, with the room
    empty before and after the test and no error or critical line logged during it
    (room_kept_clean)."""

    @pytest.fixture(scope="module", name="shared_gateway")
    def shared_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
        """One gateway for the test module (on each test worker), checked when it stops."""
        running = start_gateway(tmp_path_factory.mktemp("gateway"), config_text)
        yield running
        stop_and_check(running)

    @pytest.fixture(name=room)
    def kept_clean(shared_gateway: RunningGateway) -> Iterator[RunningGateway]:
        """The module's gateway, with the room this fixture is named after empty before and after
        the test, and no error or critical line logged during it (the module's end checks the whole
        log and the shutdown again)."""
        with room_kept_clean(shared_gateway, room) as gateway:
            yield gateway

    return shared_gateway, kept_clean


def next_message(ws, kinds: tuple[str, ...]) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """The next message of a meeting WebSocket (websockets' sync client) of one of these types, or
    one that ends the wait ("ended", "error")."""
    while True:
        message = dict(json.loads(ws.recv(timeout=10)))
        if message["type"] in (*kinds, "ended", "error"):
            return message
