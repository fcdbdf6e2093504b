"""Structured logs: one JSON object a line, carrying the request id of the request at hand
and the trace id when one is known (a caller's ``traceparent``, or an extra ``trace_id``).

``AGENTBOARD_LOG_FORMAT=text`` (``Settings.log_format``) gives plain lines for a person at
a terminal instead.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

from infra.tracecontext import trace_id

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = request_id.get()
        if current is not None:
            entry["request_id"] = current
        trace = trace_id.get()
        if trace is not None:
            entry["trace_id"] = trace
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: int = logging.INFO, *, text: bool = False) -> None:
    handler = logging.StreamHandler()
    if text:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access",):  # requests are logged by the API, with their id
        logging.getLogger(noisy).disabled = True
    # a line per request the webhooks send: their failures are logged with their ids
    logging.getLogger("httpx").setLevel(logging.WARNING)
