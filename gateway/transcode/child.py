"""Media work of a room in a process of its own, restarted when it dies: the pipe protocol and the
supervision that the compositor's process and the broadcast's process share.

The parent (`ChildProcess`, on the gateway's event loop) starts `python -m <module>` and talks to
it over the child's stdin and stdout, both ways in messages of
[u32 length][u16 header length][header: a JSON object with an "op"][payload bytes]. No pickle
either way: a child handles untrusted media (camera frames from the internet), so what it says is
read as data only, bounded in size, and a child that says something malformed is killed and
started again (backoff 0, 1, 2, 5, 10 s; a child that ran a minute starts the backoff afresh).

The child (`run_child`) gets stdout's pipe to itself (anything else that writes to fd 1 lands in
stderr, beside the logs), runs at a lower priority than the gateway (its work yields to the 20 ms
audio tick), logs as the gateway does, and ends with exit code 2 and one log line when the parent
sends something malformed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import structlog

from gateway.logging import active_config
from gateway.transcode.video import lower_priority

log = structlog.get_logger(__name__)

MAX_MESSAGE = 8 * 1024 * 1024  # a 1080p keyframe is well under 1 MB
MAX_HEADER = 64 * 1024
RESTART_BACKOFF_S = (0.0, 1.0, 2.0, 5.0, 10.0)
HEALTHY_AFTER_S = 60.0  # a child that ran this long starts the backoff afresh when it dies
_LENGTH = struct.Struct(">I")
_HEADER_LENGTH = struct.Struct(">H")


class ProtocolError(Exception):
    """A message that breaks the framing or the header format."""


class ChildExit(Exception):
    """Raised by a child's handler to end the child on purpose (its work cannot go on, e.g. a live
    stream's server went away): a warning with `reason`, exit code 3, and the parent starts it again."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode_message(header: dict[str, Any], payload: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    if len(head) > MAX_HEADER:
        raise ProtocolError("header too long")
    return (
        _LENGTH.pack(_HEADER_LENGTH.size + len(head) + len(payload))
        + _HEADER_LENGTH.pack(len(head))
        + head
        + payload
    )


async def read_message(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes] | None:
    """The next message, None at the end of the stream. Raises ProtocolError."""
    try:
        (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("stream ended inside a length") from None
        return None
    if not _HEADER_LENGTH.size <= length <= MAX_MESSAGE:
        raise ProtocolError(f"message length {length} out of bounds")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise ProtocolError("stream ended inside a message") from None
    (head_length,) = _HEADER_LENGTH.unpack_from(body)
    if _HEADER_LENGTH.size + head_length > length:
        raise ProtocolError("header longer than its message")
    try:
        header = json.loads(body[_HEADER_LENGTH.size : _HEADER_LENGTH.size + head_length])
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("header is not JSON") from None
    if not isinstance(header, dict) or not isinstance(header.get("op"), str):
        raise ProtocolError("header is not an object with an op")
    return header, body[_HEADER_LENGTH.size + head_length :]


# -- the parent's side (the gateway's event loop) ------------------------------------------------


class ChildProcess:
    """Supervises one child process. A subclass names its `module` and `what` (for the log),
    sends a fresh child the state it needs in `_started()`, handles the child's messages in
    `_received()` (raising ProtocolError for a malformed one) and settles what a child leaves
    behind in `_gone()`. Every method runs on the event loop."""

    module = ""
    what = "child process"
    restart_level = "error"  # (how a restart is logged: a live stream's reconnects are warnings)

    def __init__(self, room: str | None = None) -> None:
        logging = active_config()  # (the child logs as the gateway does, to the same stderr)
        self._env = {**os.environ, "GATEWAY_LOG_LEVEL": logging.level, "GATEWAY_LOG_FORMAT": logging.format}
        root = str(Path(__file__).resolve().parents[2])  # (the child imports this very gateway)
        self._env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        self._log = log.bind(room=room) if room else log
        self._process: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._closed = False
        self.restarts = 0
        self._task = asyncio.get_running_loop().create_task(self._supervise())

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self._process is not None and self._process.returncode is None else None

    @property
    def running(self) -> bool:
        """A child runs and takes messages."""
        return self._writer is not None and not self._writer.is_closing()

    def _buffered(self) -> int:
        """Bytes written to the child that it has not read yet."""
        writer = self._writer
        return writer.transport.get_write_buffer_size() if writer is not None else 0

    def _send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        writer = self._writer
        if writer is None or writer.is_closing():
            return  # (the next child gets the whole state when it starts)
        writer.write(encode_message(header, payload))

    def _kill(self) -> None:
        """Ends the running child now (it is stuck); the supervisor starts the next one."""
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    def _started(self) -> None:
        """A new child runs: send it what it needs."""

    def _received(self, header: dict[str, Any], payload: bytes) -> None:
        raise ProtocolError(f"unknown op {header['op']!r}")

    def _gone(self) -> None:
        """The child is gone (died, or closed)."""

    async def _supervise(self) -> None:
        failures = 0
        while not self._closed:
            started = time.monotonic()
            try:
                await self._run_child()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log.exception(f"{self.what} failed")
            if self._closed:
                return
            self.restarts += 1
            failures = 0 if time.monotonic() - started >= HEALTHY_AFTER_S else failures + 1
            delay = RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S)) - 1] if failures else 0.0
            getattr(self._log, self.restart_level)(
                f"{self.what} ended; starting it again",
                exit_code=self._process.returncode if self._process is not None else None,
                restarts=self.restarts,
                in_s=delay,
            )
            await asyncio.sleep(delay)

    async def _run_child(self) -> None:
        process = self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=self._env,
            start_new_session=True,  # (a terminal's Ctrl-C goes to the gateway, which closes it)
            limit=MAX_MESSAGE + 16,
        )
        assert process.stdin is not None and process.stdout is not None
        try:
            if self._closed:  # (closed while the child was being started)
                return
            self._writer = process.stdin
            self._started()
            while True:
                try:
                    message = await read_message(process.stdout)
                    if message is None:
                        break
                    self._received(*message)
                except ProtocolError as exc:
                    self._log.error(f"{self.what} sent a malformed message", error=str(exc))
                    break
        finally:
            self._writer = None
            try:
                self._gone()
            finally:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                await process.wait()

    async def close(self, timeout_s: float = 5.0) -> None:
        """Asks the child to finish (it closes what it has open) and waits for it, at most
        `timeout_s`; then kills it."""
        if self._closed:
            return
        self._closed = True
        process, writer = self._process, self._writer
        if writer is not None and not writer.is_closing():
            with contextlib.suppress(Exception):
                writer.write(encode_message({"op": "close"}))
                writer.close()
        if process is not None and process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        # (what the child said last, before it ended, is read before the reading stops)
        await asyncio.wait({self._task}, timeout=2.0)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


# -- the child's side --------------------------------------------------------------------------------


class ChildHandler(Protocol):
    """What a child runs: `handle` each message of the parent (ProtocolError, KeyError, TypeError,
    ValueError: it was malformed), `run` beside that until the end (reports), `close` at the end."""

    def handle(self, header: dict[str, Any], payload: bytes) -> None: ...

    async def run(self) -> None: ...

    async def close(self) -> None: ...


class ChildWriter:
    """The child's way to the parent."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    def __call__(self, header: dict[str, Any], payload: bytes = b"") -> None:
        if not self._writer.is_closing():
            self._writer.write(encode_message(header, payload))


async def _serve(out: Any, make: Callable[[ChildWriter], ChildHandler]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_MESSAGE + 16)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, out)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    handler = make(ChildWriter(writer))
    beside = loop.create_task(handler.run())
    try:
        while (message := await read_message(reader)) is not None:
            header, payload = message
            if header["op"] == "close":
                break
            try:
                handler.handle(header, payload)
            except (ProtocolError, ChildExit):
                raise
            except (KeyError, TypeError, ValueError) as exc:
                raise ProtocolError(f"bad {header['op']!r} message: {exc}") from None
    finally:
        beside.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beside
        await handler.close()
        with contextlib.suppress(Exception):
            await writer.drain()
            writer.close()


def run_child(make: Callable[[ChildWriter], ChildHandler], what: str) -> None:
    """The child's main: serves the parent's messages until it closes stdin (or says close)."""
    from gateway.config import LoggingConfig
    from gateway.logging import configure_logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The protocol gets stdout's pipe to itself; anything else that writes to fd 1 (a library's
    # printf) lands in stderr, beside the logs, instead of in the middle of a message.
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    lower_priority()  # (threads inherit it: all of the child's work yields to the gateway's loop)
    level = os.environ.get("GATEWAY_LOG_LEVEL", "info")
    fmt = os.environ.get("GATEWAY_LOG_FORMAT", "auto")
    configure_logging(LoggingConfig.model_validate({"level": level, "format": fmt}))
    try:
        asyncio.run(_serve(out, make))
    except ChildExit as exc:
        log.warning(f"{what} ended", reason=exc.reason)
        sys.exit(3)
    except ProtocolError as exc:
        log.error(f"{what} stopped: malformed message from the gateway", error=str(exc))
        sys.exit(2)
    except Exception:
        log.exception(f"{what} failed")
        sys.exit(1)
