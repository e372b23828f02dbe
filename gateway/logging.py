"""structlog set-up: JSON lines when not on a terminal, readable coloured lines on one."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from gateway.config import LoggingConfig

_active = LoggingConfig()


def active_config() -> LoggingConfig:
    """The configuration of the last configure_logging (worker processes log the same way)."""
    return _active


def configure_logging(config: LoggingConfig, stream: Any = None) -> None:
    global _active
    _active = config
    stream = stream or sys.stderr
    level = getattr(logging, config.level.upper())
    use_json = config.format == "json" or (config.format == "auto" and not stream.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # One write per line (PrintLogger writes the line and its newline apart): the gateway's child
        # processes share its stream, and a line of theirs must never land inside one of ours.
        logger_factory=structlog.WriteLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # Libraries (uvicorn, aiortc, aioice) log through the standard library: render their lines the
    # same way, so the stream stays one JSON object per line; keep them at warning and above.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder()],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.format_exc_info, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.WARNING))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def get_logger(name: str, **bound: Any) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name).bind(**bound)  # type: ignore[no-any-return]
