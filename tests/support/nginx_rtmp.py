"""Debian's nginx with its RTMP module (packages nginx-light and libnginx-mod-rtmp) as the town's
streaming server in tests: an `rtmp://127.0.0.1:<port>/live/<key>` ingest that players pull from
as well, and its statistics page over HTTP (who publishes). Started in the foreground by the test
(no master process, no daemon, everything under the test's directory), on free ports; stopped and
started again on the same port to take the server away in the middle of a stream. With `tls`
(certificate and key pairs), RTMPS as platforms take it: nginx's stream module ends TLS on a port
of its own per pair and hands the connection to the RTMP server.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx

from tests.support.baresip import free_port
from tests.support.gateway import end_process, wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


def temp_paths(directory: Path) -> str:
    """nginx's temporary folders under the test's directory (not /var/lib/nginx)."""
    return " ".join(f"{kind}_temp_path {directory / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))


def start_nginx(directory: Path) -> subprocess.Popen[bytes]:
    """nginx in the foreground with `directory`/nginx.conf, its output in `directory`/nginx.out."""
    return subprocess.Popen(
        [NGINX, "-c", str(directory / "nginx.conf"), "-p", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=(directory / "nginx.out").open("ab"),
    )


class NginxRtmp:
    def __init__(self, directory: Path, tls: list[tuple[Path, Path]] | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = free_port()
        self.http_port = free_port()
        self.tls_ports = [free_port() for _ in tls or []]
        self.process: subprocess.Popen[bytes] | None = None
        temp = temp_paths(directory)
        tls_servers = "".join(
            f"  server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {cert}; ssl_certificate_key {key}; "
            f"proxy_pass 127.0.0.1:{self.port}; }}\n"
            for port, (cert, key) in zip(self.tls_ports, tls or [], strict=True)
        )
        stream = f"load_module {STREAM_MODULE};\n" if tls else ""
        (directory / "nginx.conf").write_text(
            f"""
load_module {MODULE};
{stream}daemon off;
master_process off;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} info;
events {{ worker_connections 64; }}
rtmp {{
  server {{
    listen 127.0.0.1:{self.port};
    chunk_size 4096;
    application live {{ live on; record off; }}
  }}
}}
http {{
  access_log off;
  {temp}
  server {{ listen 127.0.0.1:{self.http_port}; location /stat {{ rtmp_stat all; }} }}
}}
"""
            + (f"stream {{\n{tls_servers}}}\n" if tls else "")
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def url(self, key: str, tls: int | None = None) -> str:
        """The ingest of `live/<key>`; `tls`: over RTMPS, through the n-th TLS port."""
        if tls is not None:
            return f"rtmps://127.0.0.1:{self.tls_ports[tls]}/live/{key}"
        return f"rtmp://127.0.0.1:{self.port}/live/{key}"

    def start(self) -> None:
        self.process = start_nginx(self.directory)
        wait_until(self._answers, 10, what="nginx's RTMP server")

    def _answers(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.http_port}/stat", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def publishing(self, key: str) -> bool:
        """Someone publishes to `live/<key>` now (nginx's statistics say so)."""
        try:
            stat = httpx.get(f"http://127.0.0.1:{self.http_port}/stat", timeout=2).text
        except httpx.HTTPError:
            return False
        stream = re.search(rf"<stream>\s*<name>{re.escape(key)}</name>(.*?)</stream>", stat, re.S)
        return stream is not None and "<publishing/>" in stream.group(1)

    def pull(self, key: str, seconds: float, out: Path) -> Path:
        """ffmpeg, as a viewer: `seconds` of the stream, copied into an MP4 file."""
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-rw_timeout", "15000000", "-i", self.url(key), "-t", str(seconds), "-c", "copy", str(out)],
            check=True,
            timeout=seconds + 30,
            capture_output=True,
        )
        return out

    def stop(self) -> None:
        end_process(self.process)
        self.process = None
