"""Debian's PostgreSQL as the shared store of gateway nodes in tests (../shared/PEERS.md): a cluster
made by initdb in a folder of its own (owned by the postgres user: the server refuses to run as
root), the server in the foreground on a free loopback port, one database for the gateway; stopped
and its folder removed after the test."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.support.baresip import free_port
from tests.support.gateway import end_process, wait_until

PASSWORD = "pg-test-password-4711"  # (trust authentication: the server ignores it; it must not show anywhere)


def _binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise AssertionError(f"PostgreSQL's {name} is not installed (Debian package postgresql)")
    return found[-1]


class Postgres:
    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        # (as root: the programs run as the postgres user themselves, so that a signal reaches the server)
        self._as_postgres: dict[str, object] = {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql://gateway:{PASSWORD}@127.0.0.1:{self.port}/gateway"

    def start(self) -> None:
        data = self.directory / "data"
        subprocess.run(
            [_binary("initdb"), "-D", str(data), "-U", "gateway", "-A", "trust", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
            cwd=self.directory,
            **self._as_postgres,  # type: ignore[call-overload]
        )
        self.process = subprocess.Popen(
            [_binary("postgres"), "-D", str(data), "-k", str(self.directory), "-p", str(self.port),
             "-h", "127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off"],
            stdout=subprocess.DEVNULL,
            stderr=(self.directory.parent / f"{self.directory.name}.log").open("ab"),
            cwd=self.directory,
            **self._as_postgres,  # type: ignore[call-overload]
        )  # fmt: skip
        wait_until(self._answers, 30, what="PostgreSQL accepting connections")
        with psycopg.connect(f"postgresql://gateway@127.0.0.1:{self.port}/postgres", autocommit=True) as admin:
            admin.execute("CREATE DATABASE gateway")

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"PostgreSQL exited: {self.log()[-2000:]}")
        try:
            with psycopg.connect(f"postgresql://gateway@127.0.0.1:{self.port}/postgres", connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def log(self) -> str:
        path = self.directory.parent / f"{self.directory.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        end_process(self.process)
        self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)
        (self.directory.parent / f"{self.directory.name}.log").unlink(missing_ok=True)
