"""Database work of the listener: loading settings, storing messages, reporting status and sessions.

Plain synchronous functions, called by the listener through ``sync_to_async`` in its one ORM thread.
A message is committed (local deliveries and relay queue entries with it, all or nothing) before the
listener answers 250. A locked or failing database makes the store raise, after a bounded wait, and
the client gets 451: it keeps the message and tries again later (RFC 5321 s 4.2.5).
"""
import datetime

from django.db import DatabaseError, connection, connections, transaction
from django.db import close_old_connections as django_close_old_connections
from django.utils import timezone

from directory.models import Person, Server
from smtpservice.models import ListenerStatus, MailboxEntry, QueuedRecipient, ReceivedMessage, SessionLog
from smtpservice.store import snapshot as snapshots

current_revision = snapshots.current_revision


def close_old_connections():
    django_close_old_connections()


def close_all_connections():
    """Close this thread's connections when the listener stops (a test database can then be dropped)."""
    connections.close_all()


def load(server_name):
    """The settings snapshot and the Server document's id."""
    snap = snapshots.load_snapshot(server_name)
    return snap, Server.objects.only("pk").get(name=snap.server_name).pk


class StorageUnavailable(Exception):
    """The database failed a moment ago: the message is refused at once rather than waiting for it again."""


def _wait_for_locks(seconds):
    """Bound how long this connection's statements wait for locks held elsewhere (and run, on PostgreSQL)."""
    milliseconds = max(1, int(seconds * 1000))
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"PRAGMA busy_timeout = {milliseconds}")
        elif connection.vendor == "postgresql":
            cursor.execute(f"SET lock_timeout = {milliseconds}")
            cursor.execute(f"SET statement_timeout = {milliseconds}")


def bounded(seconds, function, *args):
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


@transaction.atomic
def store_message(server_id, fields):
    """Store one accepted message with its local deliveries and relay queue entries; return its id."""
    return _store(server_id, dict(fields))


def _store(server_id, fields):
    deliveries = fields.pop("deliveries")
    message = ReceivedMessage.objects.create(
        server_id=server_id, recipients=list(dict.fromkeys(address for address, _kind, _person in deliveries)),
        size=len(fields["data"]), **fields,
    )
    # Mail to postmaster with no administrator to receive it waits in the postmaster mailbox (no person).
    local = [(address, person) for address, kind, person in deliveries if kind in ("local", "postmaster")]
    people = dict(Person.objects.filter(full_name__in={person for _address, person in local if person}).values_list("full_name", "pk"))
    MailboxEntry.objects.bulk_create(
        MailboxEntry(person_id=people.get(person), message=message, recipient=address) for address, person in local
    )
    QueuedRecipient.objects.bulk_create(
        QueuedRecipient(message=message, recipient=address) for address, kind, _person in deliveries if kind == "relay"
    )
    return message.pk


def session_record(server_id, session):
    """An unsaved SessionLog for a finished session (``core.session.SmtpSession``; saved in batches with the heartbeat)."""
    facts = session.facts
    return SessionLog(
        server_id=server_id,
        session_id=session.session_id,
        started_at=datetime.datetime.fromtimestamp(session.started_at, tz=datetime.UTC),
        ended_at=timezone.now(),
        client_address=(facts.client_ip or None) if facts else None,
        local_address=(facts.local_ip or None) if facts else None,
        local_port=facts.local_port if facts else 0,
        port_kind=facts.port if facts else "",
        tls=bool(facts and facts.tls),
        authenticated_as=(facts.authenticated_as or "") if facts else "",
        helo=session.helo[:255],
        messages_accepted=session.messages_accepted,
        last_reply=session.last_reply[:300],
        events=session.events,
        revision=session.snap.revision,
    )


@transaction.atomic
def heartbeat(server_id, status, finished_sessions):
    """Write the listener's status row and the sessions that ended since the last heartbeat."""
    now = timezone.now()
    ListenerStatus.objects.update_or_create(server_id=server_id, defaults={**status, "heartbeat_at": now})
    if finished_sessions:
        SessionLog.objects.bulk_create(finished_sessions)
