"""Log output: plain text or one JSON object per line, the session id picked out, secrets masked.

Every module logs through :mod:`logging` with a logger of its own (``actors.service``,
``actors.supervisor``...), and every line about a session starts ``session <id>: ``. These
formatters are what the command line installs (``--log-format text|json``); an application
may install them too::

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.getLogger("actors").addHandler(handler)

A JSON line holds ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``, ``message``,
``thread``, ``session_id`` when the line is about a session (taken from a ``session_id`` extra,
else from the message's ``session <id>:`` prefix, else from a connector thread's name) and
``exception`` when there is one. Both formatters pass what they write through
:func:`~actors.redaction.redact_text`: a safety net behind the rule that secrets never reach a
log call.
"""

from __future__ import annotations

import json
import logging
import re
import time

from .redaction import redact_text

__all__ = ["JsonFormatter", "TextFormatter", "session_of"]

_SESSION_PREFIX = re.compile(r"session ([A-Za-z0-9_-]{6,})(?=[:\s]|$)")
_CONNECTOR_THREAD = re.compile(r"connector-([A-Za-z0-9_-]{6,})$")


def session_of(record: logging.LogRecord, message: str | None = None) -> str | None:
    """The id of the session a log record is about, or None."""
    given = getattr(record, "session_id", None)
    if isinstance(given, str) and given:
        return given
    text = record.getMessage() if message is None else message
    found = _SESSION_PREFIX.match(text)
    if found is not None:
        return found.group(1)
    found = _CONNECTOR_THREAD.match(record.threadName or "")
    return None if found is None else found.group(1)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message``, secrets masked."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring), secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        created = time.gmtime(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", created) + f".{int(record.msecs):03d}Z"
        entry: dict[str, object] = {
            "time": stamp,
            "level": record.levelname,
            "logger": record.name,
            "message": redact_text(message),
            "thread": record.threadName,
        }
        session_id = session_of(record, message)
        if session_id is not None:
            entry["session_id"] = session_id
        if record.exc_info:
            entry["exception"] = redact_text(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact_text(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact_text(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)
