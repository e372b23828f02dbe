"""Debian's kamailio as a carrier's registrar and authenticating proxy in tests (../shared/PEERS.md).

A small config: REGISTER needs digest (auth_db over SQLite with plain passwords, the algorithm
MD5 or SHA-256 as asked) and is saved in memory (usrloc); an INVITE or a BYE from one of its own users
(From in its domain: a trunk calling out) needs proxy authentication (407); INVITE and OPTIONS to a
registered user are looked up and relayed to its contact, record-routed, so a whole call goes
through the proxy; anything else is 405. `probe(user)` asks, with an OPTIONS through the proxy, whether a binding is
there: 200 from the registered contact, 404 from the proxy when none.

Over TCP and TLS too when asked (`tcp`, `tls`: a certificate and key; kamailio-tls-modules): it
takes the RFC 5923 alias of its clients' Vias (tcp_accept_aliases), so calls to a contact
registered over a connection go back over that connection, and answers CRLF pings (its default).
`KamailioProxy`: a second kamailio as an outbound proxy in front of the registrar (loose routing,
Path for REGISTERs: RFC 3327), logging each request it relays with its Route header.
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
RUNNING: list[Kamailio] = []  # started and not stopped yet (tests/conftest.py stops them after each test)

# What both configurations start with: the listeners and the modules every route here uses.
_LISTEN = """#!KAMAILIO
debug=2
log_stderror=yes
children=1
listen=udp:{host}:{port}
{listen_streams}
"""
_MODULES = """mpath="{modules}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
"""

CONFIG = _LISTEN + """alias="{domain}"
""" + _MODULES + """loadmodule "usrloc.so"
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
modparam("registrar", "use_path", 1)
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


def tcp_port_listening(port: int) -> bool:
    """Whether some process listens on this local TCP port (from /proc/net/tcp and tcp6)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # (0A: LISTEN)
                return True
    return False


def stream_listen_lines(host: str, port: int, tls_port: int | None, directory: Path, tls: tuple[Path, Path] | None, tcp: bool) -> str:
    """kamailio's core lines for TCP (and TLS) listeners, with the TLS module's configuration."""
    lines = [f"listen=tcp:{host}:{port}", "tcp_accept_aliases=yes"] if tcp or tls else []
    if tls is not None:
        cert, key = tls
        settings = directory / "tls.cfg"
        settings.write_text(
            "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n"
            f"private_key = {key}\ncertificate = {cert}\n\n"
            "[client:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n"
        )
        lines += [f"listen=tls:{host}:{tls_port}", "enable_tls=yes", f'loadmodule "{MODULES}tls.so"', f'modparam("tls", "config", "{settings}")']
    return "\n".join(lines)


class Kamailio:
    def __init__(
        self,
        directory: Path,
        users: dict[str, str],
        algorithm: str = "SHA-256",
        min_expires: int = 10,
        static_routes: dict[str, int] | None = None,
        host: str = "127.0.0.1",
        tcp: bool = False,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        """`static_routes`: user -> a port on 127.0.0.1 that INVITEs to that user are relayed to
        (a callee behind the carrier that does not register, e.g. sipp's uas). `host`: the loopback
        address it listens on (127.0.0.2, 127.0.0.3 ...: two registrars of one trunk). `tcp`: also
        TCP on `port`; `tls`: (certificate, key) for TLS on `tls_port` (and TCP on `port`)."""
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.host = host
        self.port = free_udp_port()
        self.tcp = tcp or tls is not None
        self.tls = tls
        self.tls_port = free_udp_port() if tls is not None else None
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
                listen_streams=stream_listen_lines(self.host, self.port, self.tls_port, self.directory, self.tls, self.tcp),
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
        RUNNING.append(self)  # (stopped after the test even when the test fails before its stop)
        log = (self.directory / f"kamailio-{self._runs}.log").open("wb")
        self.process = subprocess.Popen(
            [KAMAILIO, "-DD", "-E", "-f", str(config), "-P", str(self.directory / "kamailio.pid"), "-Y", str(self.directory)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # (its children too are stopped, by the group)
        )
        wait_until(lambda: self._listening() or self.process is None or self.process.poll() is not None, 15, what="kamailio listening")
        assert self.process.poll() is None, self.log()

    def _listening(self) -> bool:
        return (
            udp_port_bound(self.port)
            and (not self.tcp or tcp_port_listening(self.port))
            and (self.tls_port is None or tcp_port_listening(self.tls_port))
        )

    def stop(self) -> None:
        """Stops kamailio and its children (the whole process group: a child that outlives the main
        process would keep the port)."""
        while self in RUNNING:
            RUNNING.remove(self)
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
        wait_until(lambda: not udp_port_bound(self.port) and not tcp_port_listening(self.port), 10, what="kamailio's port free")

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


PROXY_CONFIG = _LISTEN + _MODULES + """loadmodule "path.so"
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    xlog("L_NOTICE", "PROXIED $rm $ru route=[$hdr(Route)] proto=$pr\\n");
    if (has_totag()) {{
        loose_route();
        t_relay();
        exit;
    }}
    # a first request: the Route that named us is ours, taken off; toward the carrier's registrar
    # (REGISTER, and the trunk's calls out: not for a contact of ours) or to the contact it names
    remove_hf("Route");
    if (is_method("REGISTER")) {{ add_path(); }}
    if (is_method("REGISTER") || $rd == "{domain}" || $rp == "{registrar_port}") {{
        $du = "sip:{host}:{registrar_port};transport={registrar_transport}";
    }}
    if (is_method("INVITE")) {{ record_route(); }}
    t_relay();
}}
"""


class KamailioProxy(Kamailio):
    """kamailio as a trunk's outbound proxy in front of `registrar` (a Kamailio): relays to it, or to
    the contact a request from it names; every request it relays is logged ("PROXIED ...")."""

    def __init__(self, directory: Path, registrar: Kamailio, registrar_transport: str = "udp", tcp: bool = True) -> None:
        super().__init__(directory, {}, tcp=tcp)
        self.registrar = registrar
        self.registrar_transport = registrar_transport

    def _write(self) -> Path:
        config = self.directory / "kamailio.cfg"
        config.write_text(
            PROXY_CONFIG.format(
                host=self.host, port=self.port, modules=MODULES, domain=DOMAIN,
                listen_streams=stream_listen_lines(self.host, self.port, None, self.directory, None, self.tcp),
                registrar_port=self.registrar.port, registrar_transport=self.registrar_transport,
            )
        )  # fmt: skip
        return config

    def proxied(self) -> list[str]:
        """The requests it relayed so far, as it logged them: "<method> <uri> route=[...] proto=..."."""
        return [line.split("PROXIED ", 1)[1] for line in self.log().splitlines() if "PROXIED " in line]


DISPATCHER_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "kamailio-dispatcher.cfg"


class KamailioDispatcher(Kamailio):
    """The shipped configs/kamailio-dispatcher.cfg in front of gateway nodes: its listen address and
    node list defined ahead of it (the file's own #!ifndef defaults give way), nothing else changed.
    `nodes`: each node's (address, SIP port), in the list's order."""

    def __init__(self, directory: Path, nodes: list[tuple[str, int]]) -> None:
        super().__init__(directory, {})
        self.nodes = nodes

    def _write(self) -> Path:
        listing = self.directory / "gateway-nodes.list"
        listing.write_text("".join(f"1 sip:{host}:{port}\n" for host, port in self.nodes))
        config = self.directory / "kamailio.cfg"
        shipped = DISPATCHER_CONFIG.read_text()
        first, rest = shipped.split("\n", 1)
        config.write_text(
            f'{first}\n#!define LISTEN udp:{self.host}:{self.port}\n#!define DISPATCHER_LIST "{listing}"\n{rest}'
        )
        return config

    def routed(self) -> list[str]:
        """Where it sent each call, as it logged them: "call <Call-ID> to <user>: node sip:host:port"."""
        return [line.split("call ", 1)[1] for line in self.log().splitlines() if ": node sip:" in line]

    def probe_state(self, host: str, port: int) -> str | None:
        """What the dispatcher thinks of a node now (`kamcmd dispatcher.list`): "active" (AP, AX),
        "inactive" (IP, IX), None when the node is not listed."""
        listing = subprocess.run(
            ["kamcmd", "-s", f"unix:{self.directory / 'kamailio_ctl'}", "dispatcher.list"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        uri = f"sip:{host}:{port}"
        lines = listing.stdout.splitlines()
        for index, line in enumerate(lines):
            if line.strip() == f"URI: {uri}":
                for following in lines[index + 1 : index + 4]:
                    if following.strip().startswith("FLAGS:"):
                        return "active" if following.split(":", 1)[1].strip().startswith("A") else "inactive"
        return None
