"""A live stream (RTMP, RTMPS) in a process of its own, reconnected with backoff.

FFmpeg's RTMP client blocks: connecting, its handshake and every write wait on the server, and
PyAV passes no timeout to it (measured: a server that accepts the connection and never answers
kept `start_encoding` waiting for more than a minute). So each live stream of a room runs in a
child of the broadcast's process (`StreamProcess`, supervised as `child.ChildProcess`): the
broadcast sends it the picture (H.264) and the sound (AAC, already encoded once for every target),
and the child muxes them to FLV on its connection. When the server refuses, goes away or stops
taking the stream, the child ends (it says why first), and the next one connects again after the
supervisor's backoff (0, 1, 2, 5, 10 s, then every 10 s). A child that is stuck (not connected
after CONNECT_TIMEOUT_S, or connected with more than MAX_BACKLOG bytes not taken) is killed.
Nothing of this blocks the broadcast's loop, its recording or the meeting.

The URL holds the stream key: it goes to the child over the pipe (never in its command line,
which every user of the machine may read) and into no log line. RTMPS goes through `TlsRelay`:
FFmpeg's own TLS, as PyAV opens it (no options), checks neither the server's certificate nor its
name, so a stream key would go to whoever answers; the relay (a process: tls_relay) speaks TLS
with Python's ssl (the system's certificate authorities, or SSL_CERT_FILE's; the name checked) and
FFmpeg plain RTMP to it on loopback.

Messages to the child: init {url, video}, v {at, k} + an H.264 access unit, a {at} + an AAC
packet, close. From it: connected {at}, lost {reason}, stats {bytes}.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import av
import structlog

from gateway.transcode.broadcast import Muxer, failure_reason, parameter_sets
from gateway.transcode.child import ChildExit, ChildProcess, ChildWriter, ProtocolError, run_child

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT_S = 10.0  # a child not connected by then is stuck (a server that never answers)
MAX_BACKLOG = 2 * 1024 * 1024  # bytes the child has not taken (~10 s of a 1.5 Mbit/s stream)
STATS_PERIOD_S = 1.0


class StreamProcess(ChildProcess):
    """One live stream, pushed by a child process; see the module's docstring. Runs on the
    broadcast process's loop; `on_connected()` and `on_lost(reason)` are called on it, and
    `on_keyframe_wanted()` when a new child waits for a keyframe to start."""

    module = "gateway.transcode.stream_process"
    what = "live stream process"
    restart_level = "warning"

    def __init__(
        self,
        url: str,
        *,
        video: bool,
        on_connected: Callable[[], None] | None = None,
        on_lost: Callable[[str], None] | None = None,
        on_keyframe_wanted: Callable[[], None] | None = None,
        room: str | None = None,
    ) -> None:
        self._url = url
        self._video = video
        self.on_connected = on_connected
        self.on_lost = on_lost
        self.on_keyframe_wanted = on_keyframe_wanted
        self.connected = False
        self._child_started = 0.0
        self._reason: str | None = None  # why the running child lost its stream (it says so)
        self.bytes_sent = 0  # (the children before the running one)
        self._child_bytes = 0
        self.connects = 0
        self._down_said = False  # on_lost was called, and no connect since: said once per outage
        super().__init__(room)

    def video(self, data: bytes, at: float, keyframe: bool) -> None:
        if self._stuck():
            return
        self._send({"op": "v", "at": at, "k": keyframe}, data)

    def audio(self, data: bytes, at: float) -> None:
        if self._stuck():
            return
        self._send({"op": "a", "at": at}, data)

    def _stuck(self) -> bool:
        """No child to send to, or one that is stuck (then it is killed)."""
        if not self.running:
            return True
        if self.connected:
            stuck = self._buffered() > MAX_BACKLOG
            why = "the streaming server does not take the stream"
        else:
            stuck = time.monotonic() - self._child_started > CONNECT_TIMEOUT_S
            why = "the streaming server did not answer"
        if stuck:
            self._reason = self._reason or why
            self._kill()
        return stuck

    def _started(self) -> None:
        self.connected, self._reason, self._child_bytes = False, None, 0
        self._child_started = time.monotonic()
        self._send({"op": "init", "url": self._url, "video": self._video})
        if self._video and self.on_keyframe_wanted is not None:
            self.on_keyframe_wanted()

    def _received(self, header: dict[str, Any], payload: bytes) -> None:
        op = header["op"]
        if op == "connected":
            self.connected, self._down_said = True, False
            self.connects += 1
            if self.on_connected is not None:
                self.on_connected()
        elif op == "lost":
            reason = header.get("reason")
            if not isinstance(reason, str):
                raise ProtocolError("bad lost message")
            self._reason = reason[:200]
        elif op == "stats":
            sent = header.get("bytes")
            if not isinstance(sent, int):
                raise ProtocolError("bad stats message")
            self._child_bytes = sent
        else:
            raise ProtocolError(f"unknown op {op!r}")

    def _gone(self) -> None:
        self.bytes_sent += self._child_bytes
        self._child_bytes = 0
        self.connected = False
        if not self._closed and not self._down_said and self.on_lost is not None:
            self._down_said = True  # (the children that fail to connect after it say nothing new)
            self.on_lost(self._reason or "the live stream process ended")

    @property
    def bytes_written(self) -> int:
        return self.bytes_sent + self._child_bytes


# -- the child's side --------------------------------------------------------------------------------


class TlsRelay:
    """The rtmps:// way: FFmpeg speaks plain RTMP to a relay process (gateway.transcode.tls_relay)
    on loopback, which speaks TLS to the server (its certificate and name checked)."""

    def __init__(self, host: str, port: int) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "gateway.transcode.tls_relay", host, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().split()
        if line[:1] != ["port"]:
            self.close()
            raise OSError("the TLS relay did not start")
        self.port = int(line[1])
        os.set_blocking(self._process.stdout.fileno(), False)

    @classmethod
    def for_url(cls, url: str) -> tuple[TlsRelay | None, str]:
        """A relay for an rtmps:// URL and the URL FFmpeg then opens; (None, url) for rtmp://."""
        parts = urlsplit(url)
        if parts.scheme != "rtmps" or not parts.hostname:
            return None, url
        relay = cls(parts.hostname, parts.port or 443)
        return relay, urlunsplit(("rtmp", f"127.0.0.1:{relay.port}", parts.path, parts.query, ""))

    @property
    def error(self) -> str | None:
        """Why the last connection to the server failed, if one did."""
        assert self._process.stdout is not None
        lines = (self._process.stdout.read() or "").splitlines()
        errors = [line.removeprefix("error ") for line in lines if line.startswith("error ")]
        return errors[-1] if errors else None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self._process.stdin is not None
            self._process.stdin.close()
        try:
            self._process.wait(2)
        except subprocess.TimeoutExpired:
            self._process.kill()


class _Child:
    """Pushes the stream the parent sends to the server at its URL."""

    def __init__(self, write: ChildWriter) -> None:
        self._write = write
        self._url: str | None = None
        self._video = True
        self._muxer: Muxer | None = None
        self._relay: TlsRelay | None = None

    def handle(self, header: dict[str, Any], payload: bytes) -> None:
        op = header["op"]
        if op == "init":
            self._relay, self._url = TlsRelay.for_url(str(header["url"]))
            self._video = bool(header["video"])
            return
        if self._url is None:
            raise ProtocolError(f"{op!r} before init")
        at = float(header["at"])
        if op == "v":
            keyframe = bool(header["k"])
            if self._muxer is None:
                if not (self._video and keyframe and parameter_sets(payload) is not None):
                    return  # (a stream starts at a keyframe)
                self._connect(at, payload)
            self._do(lambda muxer: muxer.write_video(payload, at, keyframe))
        elif op == "a":
            if self._muxer is None:
                if self._video:
                    return
                self._connect(at, None)
            self._do(lambda muxer: muxer.write_audio(av.Packet(payload), at))
        else:
            raise ProtocolError(f"unknown op {op!r}")

    def _connect(self, at: float, keyframe: bytes | None) -> None:
        assert self._url is not None
        muxer = Muxer("stream", self._url, "flv", self._video)
        self._do(lambda _: muxer.start(at, keyframe), muxer)
        self._muxer = muxer
        self._write({"op": "connected", "at": at})

    def _do(self, work: Callable[[Muxer], None], muxer: Muxer | None = None) -> None:
        muxer = muxer or self._muxer
        assert muxer is not None
        try:
            work(muxer)
        except Exception as exc:  # refused, gone, reset: this child ends, the next one connects again
            reason = (self._relay.error if self._relay is not None else None) or failure_reason(exc)
            self._write({"op": "lost", "reason": reason})
            raise ChildExit(reason) from None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(STATS_PERIOD_S)
            if self._muxer is not None:
                self._write({"op": "stats", "bytes": self._muxer.state.bytes_written})

    async def close(self) -> None:
        if self._relay is not None:
            self._relay.close()
        muxer, self._muxer = self._muxer, None
        if muxer is not None:
            try:
                muxer.close()
            except Exception as exc:
                log.warning("closing the live stream failed", reason=failure_reason(exc))


def main() -> None:
    """The child: pushes the stream until the parent closes its stdin (or says close)."""
    run_child(_Child, "live stream process")


if __name__ == "__main__":
    main()
