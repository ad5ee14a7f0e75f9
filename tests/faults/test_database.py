"""The database locked, unavailable or full: clients get 4xx and never a 250 for a message that was not
stored, nothing is half-written, and the listener recovers by itself when the database comes back.

A 4xx keeps the message with the client, which tries again later (RFC 5321 s 4.2.5 and 6.1); the
faults are real: another connection holding the lock, the server ending our connection, SQLite's
SQLITE_FULL, a trigger failing the last insert of a message.
"""
import asyncio
import contextlib
import fcntl
import os
import select
import smtplib
import socket
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, transaction
from prometheus_client import REGISTRY

from smtpservice.core.limits import Limits
from smtpservice.models import MailboxEntry, QueuedRecipient, ReceivedMessage, SessionLog
from smtpservice.store import storage
from tests.smtpservice.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

LOCAL = "127.0.0.1"
STORE_WAIT = 0.5
BACKOFF = 0.3


def message(message_id, body_lines=3):
    body = b"".join(b"line %d of the message\r\n" % n for n in range(body_lines))
    return (
        f"From: sender@example.org\r\nTo: jane@acme.test\r\nSubject: {message_id}\r\nMessage-ID: {message_id}\r\n\r\n"
    ).encode() + body


def deliver(port, message_id, recipients=("jane@acme.test",), body_lines=3):
    """The final reply (code, text) to one message, or (None, error) when the session broke before it."""
    try:
        with smtplib.SMTP(LOCAL, port, local_hostname="client.example.org", timeout=15) as client:
            client.ehlo()
            assert client.mail("sender@example.org")[0] == 250
            for recipient in recipients:
                assert client.rcpt(recipient)[0] == 250
            return client.data(message(message_id, body_lines))
    except (OSError, smtplib.SMTPException) as error:
        return None, str(error)


def stored_ids():
    return list(ReceivedMessage.objects.values_list("message_id", flat=True))


def nothing_half_written():
    """Every mailbox entry and queued recipient belongs to a stored message, and every stored message is whole."""
    messages = {pk: bytes(data) for pk, data in ReceivedMessage.objects.values_list("pk", "data")}
    assert set(MailboxEntry.objects.values_list("message", flat=True)) <= set(messages)
    assert set(QueuedRecipient.objects.values_list("message", flat=True)) <= set(messages)
    for data in messages.values():
        assert data.endswith(b"line 2 of the message\r\n")


@pytest.fixture
def listener(make_server, configuration, jane, run_listener):
    server = make_server()
    running = run_listener(server, limits=Limits(store_wait=STORE_WAIT, storage_backoff=BACKOFF))
    return server.smtp_inbound_tcp_port, running.service


def deliver_until_accepted(port, prefix, timeout=10):
    """Send messages until one gets 250 (bounded); returns the replies by Message-ID."""
    replies = {}

    def accepted():
        message_id = f"<{prefix}-{len(replies)}@example.org>"
        replies[message_id] = deliver(port, message_id)
        return replies[message_id][0] == 250

    wait_until(accepted, timeout=timeout, message="the listener did not recover")
    return replies


def assert_only_250_stored(replies):
    """Each 250 is stored exactly once; nothing else is stored; every other reply is a 4xx."""
    assert all(code == 250 or (code is not None and 400 <= code < 500) for code, _text in replies.values()), replies
    stored = stored_ids()
    accepted = [message_id for message_id, (code, _text) in replies.items() if code == 250]
    assert sorted(message_id for message_id in stored if message_id in replies) == sorted(accepted)


@contextlib.contextmanager
def database_locked(table="smtpservice_receivedmessage"):
    """Another connection holds the write lock: SQLite BEGIN EXCLUSIVE, PostgreSQL LOCK TABLE on ``table``."""
    if connection.vendor == "sqlite":
        other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None, timeout=5)
        other.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
    else:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            yield


def test_a_locked_database_gets_451_at_once_for_everyone_and_the_listener_recovers_when_it_is_released(listener):
    port, _service = listener
    with database_locked():
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=6) as pool:
            ids = [f"<locked-{n}@example.org>" for n in range(6)]
            locked = dict(zip(ids, pool.map(lambda message_id: deliver(port, message_id), ids)))
        elapsed = time.monotonic() - started
    assert {code for code, _text in locked.values()} == {451}, locked
    assert elapsed < 2 * STORE_WAIT + 1.5, f"clients waited {elapsed:.1f} s: the stores queued behind the lock"

    replies = {**locked, **deliver_until_accepted(port, "released")}
    assert_only_250_stored(replies)
    nothing_half_written()


def test_sessions_that_end_while_the_database_is_locked_are_logged_once_it_is_back(listener):
    port, _service = listener
    with database_locked("smtpservice_sessionlog"):
        for _session in range(3):
            with smtplib.SMTP(LOCAL, port, local_hostname="client.example.org", timeout=10) as client:
                assert client.noop()[0] == 250
        time.sleep(3 * STORE_WAIT)  # several heartbeats try to write them, and fail
        assert not SessionLog.objects.exists()
    wait_until(lambda: SessionLog.objects.count() == 3, message="sessions logged during the outage were lost")


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="SQLite has no server to lose: the lock above is its outage")
def test_a_database_connection_cut_by_the_server_gets_4xx_and_the_listener_reconnects_by_itself(listener):
    port, _service = listener
    assert deliver(port, "<before@example.org>")[0] == 250
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchall(), "no listener connection to cut"
    replies = {"<before@example.org>": (250, b""), **deliver_until_accepted(port, "after-cut")}
    assert_only_250_stored(replies)


def run_in_listener_thread(service, function):
    """Run ``function`` on the listener's own database connection (a PRAGMA is per connection)."""
    return asyncio.run_coroutine_threadsafe(service.db(function), service.loop).result(10)


def limit_database_size(pages=None):
    """Let the database file grow to ``pages`` pages (None: not at all); return the bytes still free inside it."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA page_count")
        current = cursor.fetchone()[0]
        cursor.execute(f"PRAGMA max_page_count = {pages or current}")
        cursor.execute("PRAGMA freelist_count")
        free = cursor.fetchone()[0]
        cursor.execute("PRAGMA page_size")
        return free * cursor.fetchone()[0]


@pytest.mark.skipif("connection.vendor != 'sqlite'", reason="SQLITE_FULL is SQLite's; PostgreSQL's disk_full is raised below")
def test_a_full_disk_answers_451_stores_nothing_and_the_next_message_is_stored_once_there_is_room(listener):
    port, service = listener
    free = run_in_listener_thread(service, limit_database_size)
    lines = free // 20 + 2000
    full = {"<full@example.org>": deliver(port, "<full@example.org>", body_lines=lines)}
    assert full["<full@example.org>"][0] == 451, full

    run_in_listener_thread(service, lambda: limit_database_size(1_073_741_823))
    time.sleep(BACKOFF)
    replies = {**full, **deliver_until_accepted(port, "room-again")}
    assert_only_250_stored(replies)
    nothing_half_written()


@pytest.fixture
def last_insert_fails(transactional_db):
    """A trigger fails the relay queue insert, the last write of a message: a full disk on PostgreSQL
    (SQLSTATE 53100 disk_full), an aborted write on SQLite. Call the result to remove it."""
    create, drop = {
        "sqlite": (
            ["CREATE TRIGGER fail_queue BEFORE INSERT ON smtpservice_queuedrecipient "
             "BEGIN SELECT RAISE(ABORT, 'write error'); END"],
            ["DROP TRIGGER IF EXISTS fail_queue"],
        ),
        "postgresql": (
            ["CREATE FUNCTION fail_queue() RETURNS trigger LANGUAGE plpgsql AS "
             "$$ BEGIN RAISE EXCEPTION 'could not extend file' USING ERRCODE = 'disk_full'; END $$",
             "CREATE TRIGGER fail_queue BEFORE INSERT ON smtpservice_queuedrecipient "
             "FOR EACH ROW EXECUTE FUNCTION fail_queue()"],
            ["DROP TRIGGER IF EXISTS fail_queue ON smtpservice_queuedrecipient", "DROP FUNCTION IF EXISTS fail_queue()"],
        ),
    }[connection.vendor]

    def execute(statements):
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)

    execute(create)
    yield lambda: execute(drop)
    execute(drop)


def test_a_write_error_on_the_last_insert_answers_451_and_rolls_back_the_whole_message(listener, last_insert_fails):
    port, _service = listener
    both = ("jane@acme.test", "partner@other.test")
    failed = {"<half@example.org>": deliver(port, "<half@example.org>", recipients=both)}
    assert failed["<half@example.org>"][0] == 451
    assert not ReceivedMessage.objects.exists() and not MailboxEntry.objects.exists()

    last_insert_fails()
    time.sleep(BACKOFF)
    replies = {**failed, "<whole@example.org>": deliver(port, "<whole@example.org>", recipients=both)}
    assert_only_250_stored(replies)
    assert MailboxEntry.objects.get().message.message_id == "<whole@example.org>"
    assert QueuedRecipient.objects.get().recipient == "partner@other.test"
    nothing_half_written()


# --- group commit ------------------------------------------------------------------------------------


def deliver_together(port, message_ids, recipients=("jane@acme.test",)):
    """Send the messages from parallel clients; their final replies by Message-ID."""
    with ThreadPoolExecutor(max_workers=len(message_ids)) as pool:
        replies = pool.map(lambda message_id: deliver(port, message_id, recipients=recipients), message_ids)
        return dict(zip(message_ids, replies, strict=True))


def batches_committed():
    return REGISTRY.get_sample_value("smtp_listener_store_batch_messages_count") or 0


def test_messages_that_arrive_together_are_committed_together_each_acknowledged_after_its_commit(listener):
    port, _service = listener
    message_ids = [f"<together-{n}@example.org>" for n in range(10)]
    before = batches_committed()
    with database_locked():
        # While another writer holds the database, the messages wait for the commit that will hold them.
        sending = ThreadPoolExecutor(max_workers=1).submit(deliver_together, port, message_ids)
        time.sleep(STORE_WAIT / 2)
        assert not sending.done(), "a message was acknowledged before the database could commit it"
    replies = sending.result(timeout=30)
    assert_only_250_stored(replies)
    assert all(code == 250 for code, _text in replies.values()), replies
    assert batches_committed() - before < len(message_ids), "every message had a transaction of its own"


def test_a_failing_commit_fails_every_message_of_its_batch_and_the_listener_keeps_serving(listener, last_insert_fails):
    port, _service = listener
    both = ("jane@acme.test", "partner@other.test")
    replies = deliver_together(port, [f"<batch-{n}@example.org>" for n in range(8)], recipients=both)
    assert [code for code, _text in replies.values()] == [451] * 8, replies
    assert not ReceivedMessage.objects.exists() and not MailboxEntry.objects.exists()

    last_insert_fails()
    time.sleep(BACKOFF)
    replies = {**replies, **deliver_together(port, [f"<after-{n}@example.org>" for n in range(4)], recipients=both)}
    assert_only_250_stored(replies)
    nothing_half_written()


@contextlib.contextmanager
def another_worker_writing():
    """Another worker of the listener holds the turn to write (``storage.one_writer``), and wakes whoever waits
    for it when it lets it go: SQLite only."""
    descriptor = os.open(connection.settings_dict["NAME"] + storage.WRITER_LOCK_SUFFIX, os.O_RDWR | os.O_CREAT)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)
        with wake_pipe() as wake:
            os.write(wake, b"\0")


@contextlib.contextmanager
def wake_pipe():
    """The named pipe on which the workers waiting for the turn to write sleep, opened as a worker opens it."""
    descriptor = storage._wake_pipe(connection.settings_dict["NAME"] + storage.WAKE_SUFFIX)
    assert descriptor is not None, "the wake-up pipe could not be made"
    try:
        yield descriptor
    finally:
        os.close(descriptor)


def batch_sizes():
    return REGISTRY.get_sample_value("smtp_listener_store_batch_messages_sum") or 0


@pytest.mark.skipif("connection.vendor != 'sqlite'", reason="the workers take turns only on SQLite")
def test_messages_that_arrive_while_another_worker_writes_all_go_into_the_next_commit(listener):
    port, _service = listener
    message_ids = [f"<turn-{n}@example.org>" for n in range(6)]
    before, before_sizes = batches_committed(), batch_sizes()
    with another_worker_writing():
        sending = ThreadPoolExecutor(max_workers=1).submit(deliver_together, port, message_ids)
        time.sleep(STORE_WAIT / 2)
        assert not sending.done(), "a message was acknowledged while another worker held the turn to write"
    replies = sending.result(timeout=30)
    assert all(code == 250 for code, _text in replies.values()), replies
    assert_only_250_stored(replies)
    # All six were waiting when the turn came: they share one commit, not one each.
    assert batch_sizes() - before_sizes == 6
    assert batches_committed() - before == 1


@pytest.mark.skipif("connection.vendor != 'sqlite'", reason="the workers take turns only on SQLite")
def test_a_worker_that_keeps_the_turn_to_write_too_long_gets_the_clients_a_451_never_a_hang(listener):
    port, _service = listener
    with another_worker_writing():
        started = time.monotonic()
        held = {"<held@example.org>": deliver(port, "<held@example.org>")}
        elapsed = time.monotonic() - started
    assert held["<held@example.org>"][0] == 451, held
    assert elapsed < STORE_WAIT + 2, f"the client waited {elapsed:.1f} s"
    replies = {**held, **deliver_until_accepted(port, "turn-back")}
    assert_only_250_stored(replies)


@pytest.mark.skipif("connection.vendor != 'sqlite'", reason="the workers take turns only on SQLite")
def test_a_worker_waiting_for_the_turn_to_write_takes_it_as_soon_as_it_is_let_go_and_wakes_the_next(
    transactional_db, monkeypatch,
):
    """The waiting worker sleeps on the wake-up pipe, not on a timer. With the longest sleep set to 5 s, it takes
    the turn well within a second of the holder letting it go; and letting its own turn go, it wakes the next."""
    monkeypatch.setattr(storage, "WAKE_CAP", 5.0)
    took = []

    def wait_for_the_turn():
        with storage.one_writer(10):
            took.append(time.monotonic())

    waiter = threading.Thread(target=wait_for_the_turn)
    with another_worker_writing():
        waiter.start()
        time.sleep(0.5)
        assert not took, "the turn was taken while another worker held it"
        released = time.monotonic()
    waiter.join(10)
    assert took and took[0] - released < 1.0, "the waiting worker slept on after the turn was let go"

    with wake_pipe() as wake:
        with contextlib.suppress(BlockingIOError):
            os.read(wake, 4096)
        with storage.one_writer(1):
            assert not select.select([wake], [], [], 0)[0]
        assert select.select([wake], [], [], 0)[0], "letting the turn go woke nobody"


def read_replies(sock, count, timeout=10):
    """The first ``count`` reply lines the listener sends (final lines only: no continuation)."""
    sock.settimeout(timeout)
    buffer = b""
    while buffer.count(b"\r\n") < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer += chunk
    return [line.decode() for line in buffer.split(b"\r\n")[:count]]


def test_a_transaction_sent_ahead_while_a_message_is_being_stored_is_answered_after_it_in_order(listener):
    """Reading is not paused for every store: what a client sends ahead of its replies (here a whole second
    message of 100 KiB, past the 64 KiB after which reading pauses) waits in the session and is answered in
    order once the first message is committed; nothing of it is lost."""
    port, _service = listener
    with socket.create_connection((LOCAL, port)) as sock:
        read_replies(sock, 1)
        sock.sendall(b"HELO client.example.org\r\nMAIL FROM:<sender@example.org>\r\nRCPT TO:<jane@acme.test>\r\nDATA\r\n")
        assert [line[:3] for line in read_replies(sock, 4)] == ["250", "250", "250", "354"]
        with another_worker_writing() if connection.vendor == "sqlite" else database_locked():
            sock.sendall(message("<first@example.org>") + b".\r\n"
                         + b"MAIL FROM:<sender@example.org>\r\nRCPT TO:<jane@acme.test>\r\nDATA\r\n"
                         + message("<second@example.org>", body_lines=4000) + b".\r\nQUIT\r\n")
            time.sleep(STORE_WAIT / 2)  # shorter than the store's wait: the first message is committed after it
        replies = read_replies(sock, 6, timeout=20)
    assert [line[:3] for line in replies] == ["250", "250", "250", "354", "250", "221"], replies
    assert sorted(stored_ids()) == ["<first@example.org>", "<second@example.org>"]
    second = bytes(ReceivedMessage.objects.get(message_id="<second@example.org>").data)
    assert second.endswith(b"line 3999 of the message\r\n")
