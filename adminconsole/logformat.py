"""Log formatting shared by the console and the daemons: JSON lines, and no traceback for a client's error."""
import json
import logging
from datetime import UTC, datetime

STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
"""Attributes every LogRecord has; anything else was passed with ``extra=`` and goes into the JSON object."""


class JsonFormatter(logging.Formatter):
    """One JSON object a line (LOG_FORMAT=json): time, level, logger, message, and the fields given as ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in STANDARD_ATTRIBUTES and not key.startswith("_") and key not in entry:
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class ClientErrorsWithoutTraceback(logging.Filter):
    """A refused request (403, 404) is the client's doing: log its one line, not a traceback.

    Django's ``log_response`` attaches the exception to every 4xx it logs; a 5xx keeps its traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if status is not None and status < 500:
            record.exc_info = None
            record.exc_text = None
        return True
