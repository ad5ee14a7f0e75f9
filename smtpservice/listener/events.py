"""One log line per SMTP session end and per AUTH failure, in a stable key=value format for tools.

fail2ban (deploy/fail2ban/) and log shippers read these lines, so their shape is an interface: keys are
never renamed or reordered, new keys go at the end. ``client`` comes right after ``event`` so that
nothing a client sends (its login) can appear before it and be mistaken for another address. Values are
quoted when they hold a space, a quote or an equals sign, or are empty. With LOG_FORMAT=json the same
fields are the JSON object's keys.

The listener calls ``auth_failed`` for each refused AUTH and ``session_ended`` when a session closes.
"""
import logging
import logging.handlers
import re
from collections.abc import Iterable, Mapping
from typing import Any

log = logging.getLogger("smtpservice.listener.events")

AUTH_FAILED = "auth_failed"
SESSION_END = "session_end"
BARE = re.compile(r"[A-Za-z0-9._:@/+\-]+")
"""Values written without quotes: addresses, numbers, rule names, ordinary logins."""


def quote(value: Any) -> str:
    """A value as it appears after ``key=``: bare when safe, else in double quotes with \\ and " escaped."""
    text = "" if value is None else str(value)
    if BARE.fullmatch(text):
        return text
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r").replace("\n", "\\n")
    return f'"{text}"'


def line(event: str, fields: Iterable[tuple[str, Any]]) -> str:
    """``event=NAME key=value ...`` in the order given."""
    return " ".join([f"event={event}", *(f"{key}={quote(value)}" for key, value in fields)])


def emit(level: int, event: str, fields: list[tuple[str, Any]]) -> None:
    log.log(level, "%s", line(event, fields), extra={"event": event, **dict(fields)})


BUFFERED_RECORDS = 500
"""INFO lines a listener keeps before writing them out (``buffer_info_lines``)."""


def buffer_info_lines() -> None:
    """In a listener process: INFO lines are written out in batches, every ``ListenerService.poll_interval`` (a
    quarter of a second) or every ``BUFFERED_RECORDS`` lines, a WARNING or worse at once, with what was kept
    before it.

    One INFO line ends every session; written one by one, each was a system call, during which the database
    thread took the GIL from the event loop (docs/performance.md). The console's own processes and the tests
    write as they log.
    """
    listener = logging.getLogger("smtpservice")
    for handler in list(listener.handlers):
        if not isinstance(handler, logging.handlers.MemoryHandler):
            listener.removeHandler(handler)
            listener.addHandler(logging.handlers.MemoryHandler(BUFFERED_RECORDS, logging.WARNING, handler))
    # Neither the thread's name nor the caller's file and line are in any of the listener's formats.
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging._srcfile = None


def flush() -> None:
    """Write out the lines ``buffer_info_lines`` keeps."""
    for handler in logging.getLogger("smtpservice").handlers:
        handler.flush()


def auth_failed(client: str, port: int, login: str, rule: str) -> None:
    """A refused AUTH (wrong password, unknown login, throttled): one WARNING line, what fail2ban counts."""
    emit(logging.WARNING, AUTH_FAILED, [("client", client or "-"), ("port", port), ("login", login), ("rule", rule)])


def refusal_rule(events: Iterable[Mapping[str, Any]]) -> str:
    """The rule of the session's last 4xx or 5xx reply, or "" when nothing was refused."""
    rule = ""
    for event in events or ():
        if str(event.get("reply") or "")[:1] in ("4", "5"):
            rule = event.get("rule") or ""
    return rule


def session_ended(record: Any) -> None:
    """A session closed: one INFO line with who, where, as whom, how many messages, and the last refusal's rule.

    ``record`` is what ``storage.session_record`` makes of the session (written later). The line is built
    only when INFO is logged: under load it is the commonest line of all.
    """
    if not log.isEnabledFor(logging.INFO):
        return
    emit(logging.INFO, SESSION_END, [
        ("client", record["client_address"] or "-"),
        ("port", record["local_port"]),
        ("login", record["authenticated_as"]),
        ("rule", refusal_rule(record["events"])),
        ("session", record["session_id"]),
        ("tls", "yes" if record["tls"] else "no"),
        ("messages", record["messages_accepted"]),
        ("reply", record["last_reply"]),
    ])
