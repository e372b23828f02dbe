"""Debian's dnsmasq (package dnsmasq-base) as a trunk's DNS in tests: NAPTR, SRV and A records
from the command line, on 127.0.0.1 and a free port, nothing else (no /etc/hosts, no upstream,
no config file). Names under `local` that it does not know are NXDOMAIN, as from an authoritative
server. `--no-daemon` keeps it in the foreground and, run as root (CI), keeps it from changing to
the user nobody; it needs no privilege on a port above 1024, so a plain user runs it as well.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

import dns.exception
import dns.resolver

from tests.support.gateway import wait_until
from tests.support.sipp import free_udp_port

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"  # (/usr/sbin: not on every PATH)


class Dnsmasq:
    def __init__(
        self,
        directory: Path,
        *,
        srv: Sequence[tuple[str, str, int, int, int]] = (),  # (_sip._udp.domain, target, port, priority, weight)
        hosts: dict[str, str] | None = None,  # name -> IPv4 address (A record)
        naptr: Sequence[tuple[str, int, int, str, str, str]] = (),  # (name, order, preference, flags, service, replacement)
        local: str = "test",  # the domain it answers for alone
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = free_udp_port()
        self.records = [
            *(f"--srv-host={name},{target},{port},{priority},{weight}" for name, target, port, priority, weight in srv),
            *(f"--host-record={name},{address}" for name, address in (hosts or {}).items()),
            *(f"--naptr-record={name},{order},{pref},{flags},{service},,{repl}" for name, order, pref, flags, service, repl in naptr),
        ]
        self.local = local
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def server(self) -> str:
        """As sip.dns_servers takes it."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.directory / "dnsmasq.log").open("wb")
        self.process = subprocess.Popen(
            [
                DNSMASQ, "--no-daemon", f"--port={self.port}", "--listen-address=127.0.0.1", "--bind-interfaces",
                "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--pid-file=", "--log-facility=-",
                "--log-queries", f"--local=/{self.local}/", *self.records,
            ],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        wait_until(lambda: self.answers() or self.process is None or self.process.poll() is not None, 10, what="dnsmasq answering")
        assert self.process.poll() is None, self.log()

    def answers(self) -> bool:
        """Whether it answers a query (any answer: NXDOMAIN for a name it does not know is one)."""
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        try:
            resolver.resolve(f"ready-probe.{self.local}.", "A", lifetime=0.5)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return True
        except dns.exception.DNSException:
            return False
        return True

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def log(self) -> str:
        path = self.directory / "dnsmasq.log"
        return path.read_text(errors="replace") if path.exists() else ""
