"""structlog set-up: JSON lines when not on a terminal, readable coloured lines on one."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from gateway.config import LoggingConfig


def configure_logging(config: LoggingConfig, stream: Any = None) -> None:
    stream = stream or sys.stderr
    level = getattr(logging, config.level.upper())
    use_json = config.format == "json" or (config.format == "auto" and not stream.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # Libraries (aiortc, aioice, uvicorn) log through the standard library: keep them quiet but visible.
    logging.basicConfig(level=max(level, logging.WARNING), stream=stream, format="%(name)s %(levelname)s %(message)s")


def get_logger(name: str, **bound: Any) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name).bind(**bound)  # type: ignore[no-any-return]
