"""Database work of the listener: loading settings, storing messages, reporting status and sessions.

Plain synchronous functions, called by the listener through ``sync_to_async`` in its one ORM thread.
A message is committed (local deliveries and relay queue entries with it, all or nothing) before the
listener answers 250. A locked or failing database makes the store raise, after a bounded wait, and
the client gets 451: it keeps the message and tries again later (RFC 5321 s 4.2.5).
"""
import contextlib
import datetime
import fcntl
import functools
import logging
import os
import select
import stat
import time
from collections.abc import Callable, Iterator

from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, OperationalError, connection, connections, models, transaction
from django.db import close_old_connections as django_close_old_connections
from django.utils import timezone

from directory.models import Person, Server
from smtpservice.core import policy
from smtpservice.core.safe_text import db_safe, db_safe_json
from smtpservice.models import ListenerStatus, MailboxEntry, QueuedRecipient, ReceivedMessage, SessionLog
from smtpservice.store import snapshot as snapshots
from smtpservice.store.rows import Rows

log = logging.getLogger("smtpservice.listener")

current_revision = snapshots.current_revision


def close_old_connections() -> None:
    django_close_old_connections()


def close_all_connections() -> None:
    """Close this thread's connections when the listener stops (a test database can then be dropped)."""
    connections.close_all()


def load(server_name: str) -> tuple[policy.SettingsSnapshot, int]:
    """The settings snapshot and the Server document's id."""
    snap = snapshots.load_snapshot(server_name)
    return snap, Server.objects.only("pk").get(name=snap.server_name).pk


class StorageUnavailable(Exception):
    """The database failed a moment ago: the message is refused at once rather than waiting for it again."""


_lock_waits: dict[str, tuple[object, int]] = {}
"""Per database alias, the driver connection and the wait last set on it: set again only for a new connection
or another wait."""


def _wait_for_locks(seconds: float) -> None:
    """Bound how long this connection's statements wait for locks held elsewhere (and run, on PostgreSQL)."""
    milliseconds = max(1, int(seconds * 1000))
    connection = connections[DEFAULT_DB_ALIAS]  # once: each use of the proxy looks it up again
    connection.ensure_connection()
    raw = connection.connection
    known, waits = _lock_waits.get(connection.alias, (None, None))
    if known is raw and waits == milliseconds:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"PRAGMA busy_timeout = {milliseconds}")
        elif connection.vendor == "postgresql":
            cursor.execute(f"SET lock_timeout = {milliseconds}")
            cursor.execute(f"SET statement_timeout = {milliseconds}")
    _lock_waits[connection.alias] = (raw, milliseconds)


def bounded(seconds: float, function: Callable, *args) -> object:
    """Run ``function(*args)`` in this thread with every wait on the database bounded by ``seconds``.

    The listener's database work all runs in one thread: a statement stuck on a lock would hold up
    every message behind it. After a failure a broken connection is closed, so the next call opens
    a new one (the database came back, or was restarted).
    """
    try:
        _wait_for_locks(seconds)
        return function(*args)
    except DatabaseError:
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()
        raise


WRITER_LOCK_SUFFIX = "-listener-writer"
"""Beside an SQLite database file: the lock the listener's workers take in turn to write (``one_writer``)."""
WAKE_SUFFIX = "-listener-writer-wake"
"""Beside it, a named pipe: a worker that lets the lock go writes a byte there, which wakes the one waiting."""
WAKE_CAP = 0.005
"""Seconds a waiting worker sleeps at most between tries: a worker that died holding the lock wakes nobody."""
_writer_locks: dict[str, tuple[int, int | None]] = {}


def _writer_lock() -> tuple[int, int | None] | None:
    """This process's descriptors of the writer lock of the database in use and of its wake-up pipe (None when
    the file system has no named pipes), or None when not on an SQLite file."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "sqlite":
        return None
    name = str(connection.settings_dict["NAME"])
    if connection.is_in_memory_db() or not os.path.isabs(name):
        return None
    if name not in _writer_locks:
        lock = os.open(name + WRITER_LOCK_SUFFIX, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        _writer_locks[name] = (lock, _wake_pipe(name + WAKE_SUFFIX))
    return _writer_locks[name]


def _wake_pipe(path: str) -> int | None:
    """The named pipe at ``path`` (made if missing), opened for reading and writing without ever blocking."""
    try:
        with contextlib.suppress(FileExistsError):
            os.mkfifo(path, 0o600)
        descriptor = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        log.warning("no wake-up pipe at %s (%s): the listener's workers poll the writer lock instead", path, error)
        return None
    if not stat.S_ISFIFO(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        log.warning("%s is not a named pipe: the listener's workers poll the writer lock instead", path)
        return None
    return descriptor


@contextlib.contextmanager
def one_writer(seconds: float) -> Iterator[None]:
    """On an SQLite file, wait at most ``seconds`` for the listener's other workers to finish writing.

    SQLite lets one writer in at a time and makes the others retry after sleeping 1, 2, 5, 10 ms and
    more: two workers writing batches that take a quarter of a millisecond spent most of their time
    asleep (docs/performance.md). A file lock is free the moment its holder lets go, and the kernel
    releases it when the holder dies. A waiting worker sleeps on the wake-up pipe, which the holder
    writes to as it lets go: no polling, which cost CPU and the GIL under load, and a bounded wait (451,
    never a hang) even if a holder were stopped. PostgreSQL needs none of this.
    """
    descriptors = _writer_lock()
    if descriptors is None:
        yield
        return
    lock, wake = descriptors
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OperationalError("database is locked (another listener worker is writing)") from None
            _sleep_until_woken(wake, min(remaining, WAKE_CAP))
    try:
        yield
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        if wake is not None:
            with contextlib.suppress(BlockingIOError):  # full: nobody has waited for a while
                os.write(wake, b"\0")


def _sleep_until_woken(wake: int | None, seconds: float) -> None:
    """Sleep until a worker lets the lock go, or ``seconds`` at most; without a pipe, a short sleep."""
    if wake is None:
        time.sleep(min(seconds, 0.0002))
        return
    if select.select([wake], [], [], seconds)[0]:
        with contextlib.suppress(BlockingIOError):
            os.read(wake, 65536)  # every byte written since, the pipe's whole buffer at most


def bounded_write(seconds: float, function: Callable, *args) -> object:
    """``bounded`` for a write: the workers of the listener take turns (``one_writer``) within the same bound."""
    with one_writer(seconds):
        return bounded(seconds, function, *args)


def safe_fields(model: type[models.Model], fields: dict) -> dict:
    """``fields`` of ``model`` with every text (cut to its column's length) and JSON value made safe to store.

    Whatever the listener passes, a client's text (HELO, addresses, AUTH names, header fields) can hold
    NUL or other control characters that PostgreSQL refuses; this is the one place they are made safe.
    """
    safe = {}
    for name, value in fields.items():
        kind, max_length = _field_kind(model, name)
        if kind == "text" and value is not None:
            value = db_safe(value, max_length)
        elif kind == "json":
            # The session log's events hold stored explanations (core.texts): their marks are kept.
            value = db_safe_json(value, marks=(model, name) == (SessionLog, "events"))
        safe[name] = value
    return safe


@functools.cache
def _field_kind(model: type[models.Model], name: str) -> tuple[str, int | None]:
    """("text", its length), ("json", None) or ("other", None): asked once per field, not once per value."""
    field = model._meta.get_field(name)
    if isinstance(field, models.CharField | models.TextField):
        return "text", field.max_length
    return ("json" if isinstance(field, models.JSONField) else "other"), None


def store_message(server_id: int, fields: dict) -> int:
    """Store one accepted message with its local deliveries and relay queue entries; return its id."""
    return store_messages(server_id, [fields])[0]


MESSAGES, QUEUE, SESSIONS = Rows(ReceivedMessage), Rows(QueuedRecipient), Rows(SessionLog)
MAILBOX = Rows(MailboxEntry, looked_up={"person_id": (Person, "full_name")})
"""A mailbox entry names its person by full name; the INSERT finds the id (none: the postmaster mailbox)."""


def store_messages(server_id: int, batch: list[dict]) -> list[int]:
    """Store messages in one transaction, all or nothing, and return their ids in order."""
    return store_prepared(prepare_messages(server_id, batch))


PreparedMessage = tuple[list, list[tuple[str, str, str]]]
"""A message's row values, adapted for the database, and its deliveries (address, kind, person)."""


def prepare_messages(server_id: int, batch: list[dict]) -> list[PreparedMessage]:
    """The rows of a batch of messages, safe and adapted for the database, for ``store_prepared``.

    The listener prepares them before its worker's turn to write (``one_writer``): the other workers wait
    for that turn, so it should hold only the statements and the commit.
    """
    rows = []
    for fields in batch:
        fields = dict(fields)
        deliveries = [(db_safe(address, 512), kind, person) for address, kind, person in fields.pop("deliveries")]
        message = {"server_id": server_id, **safe_fields(ReceivedMessage, {
            "recipients": list(dict.fromkeys(address for address, _kind, _person in deliveries)), "size": len(fields["data"]),
            **fields,
        })}
        rows.append((message, deliveries))
    values = MESSAGES.prepare([message for message, _deliveries in rows])
    return [(row, deliveries) for row, (_message, deliveries) in zip(values, rows, strict=True)]


@transaction.atomic
def store_prepared(messages: list[PreparedMessage]) -> list[int]:
    """Store prepared messages in one transaction, all or nothing, and return their ids in order.

    The listener's group commit: the messages that arrived while the previous commit was on disk are
    committed together, each still before its own 250. A constant number of statements per batch,
    prepared once (``store.rows``), since this runs for every message the listener accepts.
    """
    ids = MESSAGES.insert_prepared_returning_ids([values for values, _deliveries in messages])
    # Mail to postmaster with no administrator to receive it waits in the postmaster mailbox (no person), as does
    # mail to a person deleted since the session began.
    MAILBOX.insert([
        {"person_id": person or None, "message_id": message_id, "recipient": address}
        for message_id, (_values, deliveries) in zip(ids, messages, strict=True)
        for address, kind, person in deliveries if kind in ("local", "postmaster")
    ])
    QUEUE.insert([
        {"message_id": message_id, "recipient": address}
        for message_id, (_values, deliveries) in zip(ids, messages, strict=True)
        for address, kind, _person in deliveries if kind == "relay"
    ])
    return ids


def session_record(server_id: int, session: object) -> dict:
    """The SessionLog fields of a finished session (``core.session.SmtpSession``; written in batches with the
    heartbeat), safe to store. A plain dict: one is built at the end of every session, on the event loop."""
    facts = session.facts
    return {"server_id": server_id, **safe_fields(SessionLog, {
        "session_id": session.session_id,
        "started_at": datetime.datetime.fromtimestamp(session.started_at, tz=datetime.UTC),
        "ended_at": timezone.now(),
        "client_address": (facts.client_ip or None) if facts else None,
        "local_address": (facts.local_ip or None) if facts else None,
        "local_port": facts.local_port if facts else 0,
        "port_kind": facts.port if facts else "",
        "tls": bool(facts and facts.tls),
        "authenticated_as": (facts.authenticated_as or "") if facts else "",
        "helo": session.helo,
        "messages_accepted": session.messages_accepted,
        "last_reply": session.last_reply,
        "events": session.events,
        "revision": session.snap.revision,
    })}


def _worker_heartbeat(server_id: int, worker: int, status: dict, now: datetime.datetime) -> None:
    """One worker of several sharing the ports: its own entry in ``workers``, and open sessions summed over
    the workers whose heartbeat is fresh. Worker 0 also reports the ports, the revision and the process.

    The row is locked while it is read and written back, so two workers never overwrite each other.
    """
    try:
        with transaction.atomic():  # two workers starting together both try to create the row
            ListenerStatus.objects.get_or_create(server_id=server_id)
    except IntegrityError:
        pass
    row = ListenerStatus.objects.select_for_update().get(server_id=server_id)
    workers = dict(row.workers or {})
    workers[str(worker)] = {
        "pid": status["pid"], "open_sessions": status["open_sessions"], "running": status["running"],
        "heartbeat_at": now.isoformat(),
    }
    fresh_since = now - datetime.timedelta(seconds=ListenerStatus.STALE_AFTER_SECONDS)
    fresh = {key: entry for key, entry in workers.items()
             if entry["running"] and datetime.datetime.fromisoformat(entry["heartbeat_at"]) >= fresh_since}
    row.workers = workers
    row.open_sessions = sum(entry["open_sessions"] for entry in fresh.values())
    row.running = bool(fresh)
    row.heartbeat_at = now
    if worker == 0:
        for name, value in safe_fields(ListenerStatus, status).items():
            if name not in ("open_sessions", "running"):
                setattr(row, name, value)
    row.save()


def prepare_sessions(finished_sessions: list[dict]) -> list[list]:
    """The values of session records for ``heartbeat``, prepared before the worker's turn to write."""
    return SESSIONS.prepare(finished_sessions)


@transaction.atomic
def heartbeat(server_id: int, status: dict, finished_sessions: list[dict], prepared: list[list] | None = None) -> list[dict]:
    """Write the listener's status row and the sessions that ended since the last heartbeat (``session_record``;
    ``prepared`` holds their values when ``prepare_sessions`` made them already).

    One bad session record never blocks the others, nor the status: when the batch fails, each record is
    written on its own and one that still fails is set aside (logged, not written, never retried). Returns
    the records set aside.
    """
    now = timezone.now()
    status = dict(status)
    worker = status.pop("worker", None)
    if worker is None:
        ListenerStatus.objects.update_or_create(
            server_id=server_id, defaults={**safe_fields(ListenerStatus, status), "heartbeat_at": now},
        )
    else:
        _worker_heartbeat(server_id, worker, status, now)
    if not finished_sessions:
        return []
    try:
        with transaction.atomic():  # a savepoint: a failed batch leaves the status update standing
            SESSIONS.insert_prepared(SESSIONS.prepare(finished_sessions) if prepared is None else prepared)
        return []
    except DatabaseError:
        if _connection_lost():
            raise
    set_aside = []
    for record in finished_sessions:
        try:
            with transaction.atomic():
                SESSIONS.insert([record])
        except DatabaseError as error:
            if _connection_lost():
                raise
            set_aside.append(record)
            log.error("session log record %s of %s set aside, it cannot be written: %s; record: %r",
                      record.get("session_id"), record.get("client_address"), error, record)
    return set_aside


def _connection_lost() -> bool:
    """After a failed write: is the database itself gone (then the listener keeps the records for later)?"""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return True
    return False
