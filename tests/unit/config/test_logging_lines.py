"""The log stream is one JSON object per line, written whole: the gateway's child processes (the
compositor, the broadcast, live streams) share it, so a line must reach the stream in one write, or
a child's line can land between a line and its newline (it did, and a test lost a log line)."""

from __future__ import annotations

import json
import logging

import structlog

from gateway.config import LoggingConfig
from gateway.logging import active_config, configure_logging


class Writes:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def test_every_line_is_one_write_of_a_whole_json_object() -> None:
    before = active_config()
    stream = Writes()
    try:
        configure_logging(LoggingConfig(level="info", format="json"), stream)
        structlog.get_logger("test").warning("live stream interrupted; reconnecting", room="live", reason="refused")
        logging.getLogger("uvicorn.error").warning("a library's line")
        assert len(stream.writes) == 2
        for write in stream.writes:
            assert write.endswith("\n") and write.count("\n") == 1
            json.loads(write)
    finally:
        configure_logging(before)
