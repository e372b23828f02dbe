"""Every core: `gateway run` with `server.workers` above 1 runs a supervisor and one worker process
per core (or as many as configured). The workers are the nodes of a backplane on the machine's
loopback (gateway/cluster/): a room's participants meet whichever worker took them.

The supervisor binds the ports every worker shares before it starts them, and each worker inherits
them (file descriptors), so a worker's restart never moves another's traffic:
- HTTP (the meeting page, its WebSocket, the API), SIP over TCP and TLS, and H.323's call
  signalling: one listening socket each, whose connections any worker accepts;
- SIP over UDP: one socket per worker on the same port (SO_REUSEPORT), so the kernel hashes each
  sender (a phone, a trunk) to one worker and a dialog's requests all reach the worker that holds
  it. The supervisor keeps every worker's socket open, so a restarted worker takes its senders back.
Each worker gets its own share of the RTP ports, its own backplane port, its own node name
(`<mqtt.node>-<index>`: its open calls, MQTT presence) and, unless `cluster.secret` is set, a secret
the supervisor made for this run (resume tokens: a browser whose worker died comes back on another).

The supervisor restarts a worker that died (at once, then backing off while it keeps dying), logs
it, and writes the workers' state to a file in its runtime folder that every worker reads
(`/api/node`, `/metrics`). A drain started through any worker is written there too, and every worker
follows it. SIGTERM or SIGINT to the supervisor stops the workers gracefully (meetings are ended as
at any shutdown) and then itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from gateway.config import GatewayConfig

log = structlog.get_logger(__name__)

PLAN_ENV = "MEETING_GATEWAY_WORKER_PLAN"  # (not GATEWAY_...: those are configuration overrides)
RESTART_BACKOFF_S = (0.0, 1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_S = 30.0  # a worker that ran this long starts its backoff anew when it dies
STOP_TIMEOUT_S = 30.0


def worker_count(config: GatewayConfig) -> int:
    workers = config.server.workers
    return max(1, os.cpu_count() or 1) if workers == "auto" else int(workers)


@dataclass(frozen=True)
class WorkerPlan:
    """What the supervisor hands a worker (JSON in the environment, PLAN_ENV)."""

    index: int
    count: int
    fds: dict[str, int]  # inherited sockets: http, http_own, sip_udp, sip_tcp, sip_tls, h323, backplane_tcp/udp
    backplane: str  # this worker's backplane address
    peers: list[str]  # every worker's
    secret: str  # cluster.secret, or the run's own
    runtime: str  # the supervisor's folder: workers.json, drain.json
    observe: bool  # workers show every meeting (no backplane to other machines)

    @classmethod
    def from_environment(cls) -> WorkerPlan | None:
        text = os.environ.get(PLAN_ENV)
        return cls(**json.loads(text)) if text else None

    def sockets(self) -> dict[str, socket.socket]:
        return {name: socket.socket(fileno=fd) for name, fd in self.fds.items()}

    def configure(self, config: GatewayConfig) -> GatewayConfig:
        """The worker's own configuration: its node name, RTP ports, backplane and secret."""
        sip = config.sip
        span = (sip.rtp_port_max - sip.rtp_port_min + 1) // self.count
        span -= span % 2
        low = sip.rtp_port_min + self.index * span
        cluster = config.cluster.model_copy(
            update={"secret": _secret(self.secret), "backplane": self.backplane, "peers": self.peers}
        )
        h323 = config.h323
        if self.index != 0 and h323.gatekeeper is not None:
            h323 = h323.model_copy(update={"gatekeeper": None})  # (one registration: worker 0's)
        return config.model_copy(
            update={
                "sip": sip.model_copy(update={"rtp_port_min": low, "rtp_port_max": low + span - 1}),
                "mqtt": config.mqtt.model_copy(update={"node": f"{config.mqtt.node}-{self.index}"}),
                "cluster": cluster,
                "h323": h323,
            }
        )


def _secret(text: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(text)


# -- the state every worker reads ------------------------------------------------------------------


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Whole or not at all: a reader never sees half a file."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- the supervisor --------------------------------------------------------------------------------


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    failures_in_a_row: int = 0
    last_exit: str | None = None
    restart_at: float | None = None


def _bound(kind: int, host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if kind == socket.SOCK_STREAM:
        sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def _end_with_parent() -> None:
    """In the worker before it runs: SIGTERM when the supervisor dies, even by SIGKILL (Linux's
    PR_SET_PDEATHSIG), so no orphaned worker keeps the ports."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # (1: PR_SET_PDEATHSIG)


def _loopback_pair() -> tuple[socket.socket, socket.socket]:
    """A worker's backplane on the loopback: a listening TCP socket and a UDP one of the same port,
    held by the supervisor so a restarted worker finds its port again."""
    while True:
        tcp = _bound(socket.SOCK_STREAM, "127.0.0.1", 0)
        try:
            udp = _bound(socket.SOCK_DGRAM, "127.0.0.1", tcp.getsockname()[1])
        except OSError:
            tcp.close()
            continue
        return tcp, udp


class Supervisor:
    def __init__(self, config: GatewayConfig, config_path: Path, count: int) -> None:
        self.config = config
        self.config_path = config_path
        self.count = count
        self.runtime = Path(tempfile.mkdtemp(prefix="gateway-workers-"))
        self.workers = [_Worker(i) for i in range(count)]
        self.shared: dict[str, socket.socket] = {}  # sockets every worker inherits
        self.own_http: list[socket.socket] = []  # each worker's own HTTP port (to reach one worker)
        self.udp: list[socket.socket] = []  # SIP over UDP: one per worker
        self._stopping = False
        self._secret = config.cluster.secret.get_secret_value() if config.cluster.secret else secrets.token_urlsafe(32)
        self.loopback: list[tuple[socket.socket, socket.socket]] = []  # each worker's backplane, when local
        self._backplanes = self._plan_backplanes()

    def _plan_backplanes(self) -> tuple[list[str], bool]:
        cluster = self.config.cluster
        if cluster.backplane is None:
            self.loopback = [_loopback_pair() for _ in range(self.count)]
            return [f"127.0.0.1:{tcp.getsockname()[1]}" for tcp, _ in self.loopback], True
        # Workers of several machines: worker i of every node at its port + i (nodes run as many)
        host, _, port = cluster.backplane.rpartition(":")
        return [f"{host}:{int(port) + i}" for i in range(self.count)], False

    def _peers(self) -> list[str]:
        ours, _ = self._backplanes
        cluster = self.config.cluster
        theirs = []
        for peer in cluster.peers:
            host, _, port = peer.rpartition(":")
            theirs += [f"{host}:{int(port) + i}" for i in range(self.count)]
        return sorted(set(ours) | set(theirs))

    def bind(self) -> None:
        """Binds what the workers share (port 0: a free port, then the same for all)."""
        config = self.config
        server = config.server
        self.shared["http"] = _bound(socket.SOCK_STREAM, server.host, server.port)
        base = server.worker_ports
        self.own_http = [_bound(socket.SOCK_STREAM, server.host, base + i if base else 0) for i in range(self.count)]
        sip = config.sip
        if sip.enabled:
            port = sip.port
            for _ in range(20 if port == 0 else 1):
                try:
                    first = _bound(socket.SOCK_DGRAM, sip.host, port, reuse_port=True) if "udp" in sip.transports else None
                    chosen = first.getsockname()[1] if first is not None else port
                    self.udp = [first] if first is not None else []
                    if first is not None:
                        self.udp += [_bound(socket.SOCK_DGRAM, sip.host, chosen, reuse_port=True) for _ in range(self.count - 1)]
                    if "tcp" in sip.transports:
                        self.shared["sip_tcp"] = _bound(socket.SOCK_STREAM, sip.host, chosen)
                    break
                except OSError:
                    for sock in self.udp:
                        sock.close()
                    self.udp = []
                    if port != 0:
                        raise
            if sip.tls is not None:
                self.shared["sip_tls"] = _bound(socket.SOCK_STREAM, sip.host, sip.tls.port)
        if config.h323.enabled:
            self.shared["h323"] = _bound(socket.SOCK_STREAM, config.h323.host, config.h323.port)

    def _plan(self, index: int) -> WorkerPlan:
        fds = {name: sock.fileno() for name, sock in self.shared.items()}
        fds["http_own"] = self.own_http[index].fileno()
        if self.loopback:
            fds["backplane_tcp"], fds["backplane_udp"] = (sock.fileno() for sock in self.loopback[index])
        if self.udp:
            fds["sip_udp"] = self.udp[index].fileno()
        addresses, observe = self._backplanes
        return WorkerPlan(
            index=index, count=self.count, fds=fds, backplane=addresses[index], peers=self._peers(),
            secret=self._secret, runtime=str(self.runtime), observe=observe,
        )  # fmt: skip

    def _start(self, worker: _Worker) -> None:
        plan = self._plan(worker.index)
        env = {**os.environ, PLAN_ENV: json.dumps(dataclasses.asdict(plan))}
        worker.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(self.config_path)],
            env=env,
            pass_fds=tuple(plan.fds.values()),
            preexec_fn=_end_with_parent,  # (the supervisor is single-threaded: safe here)
        )
        worker.started_at = time.monotonic()
        worker.restart_at = None
        log.info("worker started", worker=worker.index, pid=worker.process.pid)

    def state(self) -> dict[str, Any]:
        scheme = "https" if self.config.server.tls else "http"
        host = self.config.server.host
        return {
            "supervisor": os.getpid(),
            "count": self.count,
            "workers": [
                {
                    "index": w.index,
                    "pid": w.process.pid if w.process is not None else None,
                    "alive": w.process is not None and w.process.poll() is None,
                    "restarts": w.restarts,
                    "last_exit": w.last_exit,
                    "url": f"{scheme}://{host}:{self.own_http[w.index].getsockname()[1]}",
                }
                for w in self.workers
            ],
        }

    def _publish(self) -> None:
        write_json(self.runtime / "workers.json", self.state())

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        self.bind()
        log.info("supervisor starting workers", workers=self.count, runtime=str(self.runtime))
        for worker in self.workers:
            self._start(worker)
        self._publish()
        while not self._stopping:
            time.sleep(0.1)
            changed = False
            for worker in self.workers:
                changed |= self._watch(worker)
            if changed:
                self._publish()
        return self._stop_workers()

    def _watch(self, worker: _Worker) -> bool:
        now = time.monotonic()
        if worker.process is not None:
            code = worker.process.poll()
            if code is None:
                return False
            worker.last_exit = f"signal {-code}" if code < 0 else f"exit {code}"
            ran_s = now - worker.started_at
            worker.failures_in_a_row = 0 if ran_s >= STABLE_S else worker.failures_in_a_row + 1
            delay = RESTART_BACKOFF_S[min(worker.failures_in_a_row, len(RESTART_BACKOFF_S) - 1)]
            log.error("worker died; restarting it", worker=worker.index, pid=worker.process.pid, how=worker.last_exit,
                      ran_s=round(ran_s, 1), restart_in_s=delay)  # fmt: skip
            worker.process = None
            worker.restart_at = now + delay
            return True
        if worker.restart_at is not None and now >= worker.restart_at:
            worker.restarts += 1
            self._start(worker)
            log.warning("worker restarted", worker=worker.index, restarts=worker.restarts)
            return True
        return False

    def _stop(self, signum: int, _frame: Any) -> None:
        if self._stopping:  # a second signal: now
            for worker in self.workers:
                if worker.process is not None and worker.process.poll() is None:
                    worker.process.kill()
        self._stopping = True

    def _stop_workers(self) -> int:
        log.info("supervisor stopping workers")
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for worker in self.workers:
            if worker.process is None:
                continue
            try:
                worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker did not stop in time; killed", worker=worker.index)
                worker.process.kill()
                worker.process.wait()
        for sock in [*self.shared.values(), *self.udp, *self.own_http, *(s for pair in self.loopback for s in pair)]:
            sock.close()
        for path in self.runtime.iterdir():
            path.unlink(missing_ok=True)
        self.runtime.rmdir()
        log.info("supervisor stopped")
        return 0


# -- a worker's side -------------------------------------------------------------------------------


class WorkerRuntime:
    """A worker's part in the supervisor's folder: publishes its figures every second, reads the
    others' and the supervisor's, and follows a drain any worker started."""

    FRESH_S = 5.0  # another worker's figures older than this are not counted (it died)

    def __init__(self, plan: WorkerPlan, drain: Any, directory: Any) -> None:
        self.plan = plan
        self.folder = Path(plan.runtime)
        self._drain = drain
        self._directory = directory
        self._seen_drain: Any = None
        drain.elsewhere = self.elsewhere
        drain.announce = self.announce

    def announce(self, deadline: float | None) -> None:
        state = {"deadline": deadline, "serial": time.time_ns(), "by": self.plan.index}
        self._seen_drain = state["serial"]
        write_json(self.folder / "drain.json", state)

    def _mine(self) -> dict[str, Any]:
        meetings = self._directory.meetings()
        return {
            "index": self.plan.index,
            "pid": os.getpid(),
            "at": time.time(),
            "meetings": len(meetings),
            "participants": sum(c.room.own_people for c in meetings),
            "draining": self._drain.draining,
        }

    def elsewhere(self) -> dict[str, Any]:
        supervisor = read_json(self.folder / "workers.json") or {"workers": []}
        meetings = participants = 0
        workers = []
        for entry in supervisor.get("workers", []):
            index = entry.get("index")
            figures = self._mine() if index == self.plan.index else read_json(self.folder / f"worker-{index}.json") or {}
            fresh = figures.get("at", 0) > time.time() - self.FRESH_S
            if index != self.plan.index and fresh:
                meetings += int(figures.get("meetings", 0))
                participants += int(figures.get("participants", 0))
            workers.append({**entry, **{k: figures.get(k) for k in ("meetings", "participants", "draining")}, "this": index == self.plan.index})
        return {"meetings": meetings, "participants": participants, "workers": workers}

    def supervisor_state(self) -> dict[str, Any] | None:
        return read_json(self.folder / "workers.json")

    def follow(self) -> None:
        """Once a second: publish, and take up a drain another worker announced."""
        write_json(self.folder / f"worker-{self.plan.index}.json", self._mine())
        drain = read_json(self.folder / "drain.json")
        if drain is None or drain.get("serial") == self._seen_drain:
            return
        self._seen_drain = drain.get("serial")
        deadline = drain.get("deadline")
        who = f"worker {drain.get('by')}"
        if isinstance(deadline, int | float):
            self._drain.start(max(0.0, deadline - time.time()), who, announce=False)
        else:
            self._drain.cancel(who, announce=False)

    async def run(self) -> None:
        import asyncio

        while True:
            try:
                self.follow()
            except OSError as exc:
                log.warning("the workers' shared folder is not usable", error=str(exc))
            await asyncio.sleep(1.0)
