"""Debian's kamailio as a carrier's registrar and authenticating proxy in tests (../shared/PEERS.md).

A small config: REGISTER needs digest (auth_db over SQLite with plain passwords, the algorithm
MD5 or SHA-256 as asked) and is saved in memory (usrloc); an INVITE or a BYE from one of its own users
(From in its domain: a trunk calling out) needs proxy authentication (407); INVITE and OPTIONS to a
registered user are looked up and relayed to its contact, record-routed, so a whole call goes
through the proxy; anything else is 405. `probe(user)` asks, with an OPTIONS through the proxy, whether a binding is
there: 200 from the registered contact, 404 from the proxy when none.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

from tests.support.gateway import wait_until
from tests.support.sipp import free_udp_port, udp_port_bound

KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"  # (/usr/sbin: not on every PATH)
MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
DOMAIN = "kamailio.test"

CONFIG = """#!KAMAILIO
debug=2
log_stderror=yes
children=1
listen=udp:{host}:{port}
alias="{domain}"
mpath="{modules}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "db_sqlite.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
modparam("auth_db", "db_url", "sqlite://{database}")
modparam("auth_db", "calculate_ha1", yes)
modparam("auth_db", "password_column", "password")
modparam("auth_db", "load_credentials", "")
modparam("auth", "algorithm", "{algorithm}")
modparam("registrar", "min_expires", {min_expires})
modparam("usrloc", "db_mode", 0)
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        # its own users' BYEs need proxy authentication too, as some carriers demand
        if (is_method("BYE") && $fd == "{domain}") {{
            if (!proxy_authorize("{domain}", "subscriber")) {{ proxy_challenge("{domain}", "1"); exit; }}
            consume_credentials();
        }}
        # (along the route set where there is one; sipp's built-in uas copies no Record-Route into
        # its 200, so in-dialog requests may come without one: relayed to their Request-URI)
        loose_route();
        t_relay();
        exit;
    }}
    if (is_method("REGISTER")) {{
        if (!www_authorize("{domain}", "subscriber")) {{ www_challenge("{domain}", "1"); exit; }}
        if (!save("location")) {{ sl_reply_error(); }}
        exit;
    }}
    if (is_method("INVITE|OPTIONS")) {{
        # calls from our own users (a trunk's number: From in our domain) need proxy authentication
        if (is_method("INVITE") && $fd == "{domain}") {{
            if (!proxy_authorize("{domain}", "subscriber")) {{ proxy_challenge("{domain}", "1"); exit; }}
            consume_credentials();
        }}
{static_routes}
        if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
        if (is_method("INVITE")) {{ record_route(); }}
        t_relay();
        exit;
    }}
    if (is_method("ACK|CANCEL")) {{ t_relay(); exit; }}
    sl_send_reply("405", "Method Not Allowed");
}}
"""


class Kamailio:
    def __init__(
        self,
        directory: Path,
        users: dict[str, str],
        algorithm: str = "SHA-256",
        min_expires: int = 10,
        static_routes: dict[str, int] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        """`static_routes`: user -> a port on 127.0.0.1 that INVITEs to that user are relayed to
        (a callee behind the carrier that does not register, e.g. sipp's uas). `host`: the loopback
        address it listens on (127.0.0.2, 127.0.0.3 ...: two registrars of one trunk)."""
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.host = host
        self.port = free_udp_port()
        self.users = users
        self.algorithm = algorithm
        self.min_expires = min_expires
        self.static_routes = static_routes or {}
        self.process: subprocess.Popen[bytes] | None = None
        self._runs = 0

    def _write(self) -> Path:
        database = self.directory / "kamailio.sqlite"
        with sqlite3.connect(database) as db:
            db.executescript(
                """
                CREATE TABLE IF NOT EXISTS version (table_name TEXT PRIMARY KEY, table_version INTEGER);
                INSERT OR REPLACE INTO version VALUES ('subscriber', 7);
                CREATE TABLE IF NOT EXISTS subscriber (id INTEGER PRIMARY KEY, username TEXT, domain TEXT,
                    password TEXT, ha1 TEXT DEFAULT '', ha1b TEXT DEFAULT '');
                DELETE FROM subscriber;
                """
            )
            db.executemany(
                "INSERT INTO subscriber (username, domain, password) VALUES (?, ?, ?)",
                [(user, DOMAIN, password) for user, password in self.users.items()],
            )
        config = self.directory / "kamailio.cfg"
        config.write_text(
            CONFIG.format(
                host=self.host, port=self.port, domain=DOMAIN, modules=MODULES, database=database,
                algorithm=self.algorithm, min_expires=self.min_expires,
                static_routes="\n".join(
                    f'        if ($rU == "{user}") {{ $du = "sip:127.0.0.1:{port}"; if (is_method("INVITE")) {{ record_route(); }} t_relay(); exit; }}'
                    for user, port in self.static_routes.items()
                ),
            )
        )  # fmt: skip
        return config

    def start(self) -> None:
        config = self._write()
        self._runs += 1
        log = (self.directory / f"kamailio-{self._runs}.log").open("wb")
        self.process = subprocess.Popen(
            [KAMAILIO, "-DD", "-E", "-f", str(config), "-P", str(self.directory / "kamailio.pid"), "-Y", str(self.directory)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # (its children too are stopped, by the group)
        )
        wait_until(lambda: udp_port_bound(self.port) or self.process is None or self.process.poll() is not None, 15, what="kamailio listening")
        assert self.process.poll() is None, self.log()

    def stop(self) -> None:
        """Stops kamailio and its children (the whole process group: a child that outlives the main
        process would keep the port)."""
        if self.process is not None:
            for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, sig)
                try:
                    self.process.wait(wait)
                except subprocess.TimeoutExpired:
                    continue
                if not udp_port_bound(self.port):
                    break
        wait_until(lambda: not udp_port_bound(self.port), 10, what="kamailio's port free")

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.directory.glob("kamailio-*.log")))

    def probe(self, user: str, timeout: float = 2.0) -> int | None:
        """An OPTIONS to sip:user@kamailio.test through the proxy: its final status (200 from the
        registered contact, 404 when there is no binding), None without any answer."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(timeout)
            port = sock.getsockname()[1]
            branch = "z9hG4bK" + secrets.token_hex(8)
            request = (
                f"OPTIONS sip:{user}@{DOMAIN} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport\r\n"
                "Max-Forwards: 10\r\n"
                f"From: <sip:probe@127.0.0.1:{port}>;tag={secrets.token_hex(4)}\r\n"
                f"To: <sip:{user}@{DOMAIN}>\r\n"
                f"Call-ID: {secrets.token_hex(8)}@127.0.0.1\r\n"
                "CSeq: 1 OPTIONS\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            sock.sendto(request.encode(), (self.host, self.port))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    data = sock.recv(65535)
                except TimeoutError:
                    return None
                status = int(data.split(b" ", 2)[1])
                if status >= 200:
                    return status
            return None
