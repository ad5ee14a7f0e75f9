"""The SMTP listener of one Server document, obeying the directory live.

``ListenerService`` owns the ports: it keeps an immutable settings snapshot, checks the directory's
revision a few times a second (one cheap query, never per connection), rebinds ports whose number or
status changed without touching sessions in progress, reports bind failures and retries them. Each
connection is a ``protocol.SmtpProtocol`` driving the one session machine (``core.session``); this
module does the work the machine asks for that needs the process: the AUTH throttle and password
hashing in a thread pool, the durable store in the one database thread. The event loop never waits on
either.

The listener also protects itself, whatever the documents say (``core.limits.Limits``;
docs/design/security.md): connections past the session limits are refused before a session is built (or,
at the global limit, the longest-idle session makes room), AUTH failures are slowed then stopped,
sessions and DATA have time limits, and a locked or failing database gets the client a 451, never a
250.
"""
import asyncio
import collections
import contextlib
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.db import InterfaceError, OperationalError
from django.utils.translation import gettext as _

from smtpservice import metrics
from smtpservice.core import policy, replies, throttle
from smtpservice.core.limits import Limits
from smtpservice.core.message import message_headers
from smtpservice.core.session import CheckCredentials, CheckFailed, Envelope, Throttled
from smtpservice.listener import events, resolve
from smtpservice.listener.counts import SessionCounts
from smtpservice.listener.protocol import SmtpProtocol
from smtpservice.listener.tlscontext import server_context
from smtpservice.store import storage
from smtpservice.store import throttle as stored_throttle

log = logging.getLogger("smtpservice.listener")
T = TypeVar("T")

POLL_INTERVAL = 0.25
"""Seconds between checks of the directory's revision: a saved change applies within one second (spec 3.10)."""
MAX_PENDING_SESSION_LOGS = 10_000
"""Finished sessions kept in memory while the database cannot take them."""
THROTTLE_OUTCOMES = {
    "wrong_password": throttle.WRONG_PASSWORD,
    "unknown_login": throttle.UNKNOWN_ACCOUNT,
    "no_internet_password": throttle.NO_PASSWORD,
}
"""The policy's AUTH refusals that tried a password, as the throttle counts them (a refused server access does not)."""
LISTEN_BACKLOG = 1024
"""Connections the kernel queues before the listener accepts them (asyncio's default of 100 drops SYNs in a burst)."""
PRESSURE = 0.8
"""Above this share of ``max_sessions`` open, idle sessions get ``PRESSURE_IDLE_TIMEOUT`` (Postfix's anvil and postscreen)."""
PRESSURE_IDLE_TIMEOUT = 10.0
"""Seconds a session may stay idle while the listener is near its session limit."""
MAX_BATCH = 500
"""Messages committed in one transaction at most (group commit)."""
EVICTABLE_IDLE = 1.0
"""At the session limit, a new client takes the place of the longest-idle session idle at least this long."""


class ListenerService:
    """Runs the listener of one Server document until asked to stop."""

    def __init__(self, server_name: str, *, poll_interval: float = POLL_INTERVAL, heartbeat_interval: float = 2.0,
                 retry_interval: float = 2.0, idle_timeout: float = 300.0, shutdown_grace: float = 10.0,
                 limits: Limits | None = None, throttle_limits: throttle.Limits | None = None,
                 worker: int | None = None, workers: int = 1, sessions_table: int | None = None) -> None:
        self.server_name = server_name
        self.worker = worker
        """This process's index among the workers sharing the ports (``runsmtp --workers``), None when alone."""
        self.limits = limits or Limits()
        self.throttle_limits = throttle_limits or throttle.DEFAULT_LIMITS
        self.storage_retry_at = 0.0
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.retry_interval = retry_interval
        self.idle_timeout = idle_timeout
        self.shutdown_grace = shutdown_grace
        self.snapshot = None
        self.server_id = None
        self.loop = None
        self.servers = {}
        self.bind_errors = {}
        self.last_bind_attempt = 0.0
        self.sessions = set()
        self.counts = SessionCounts(sessions_table, workers, worker or 0)
        """Sessions open per client address and in all: the whole listener's, with the supervisor's table."""
        self.refused_clients = set()
        self.finished_sessions = []
        self.tls_contexts = {}
        self.names_needed = False
        self.mapped_names: tuple[str, ...] = ()
        self.pending_stores: collections.deque[tuple[dict, asyncio.Future]] = collections.deque()
        """Appended to by the event loop, taken from by the database thread (a deque is safe for both)."""
        self.writer: asyncio.Future | None = None
        self.hash_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="smtp-auth")
        self.db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smtp-db")
        """The one thread, and so the one connection, that does the listener's database work."""
        self.stopping = None
        self.stop_requested = False
        self.ready = None

    # --- database work, in the one database thread ---------------------------------------------------

    async def db(self, function: Callable[..., T], *args: object) -> T:
        """``function(*args)`` in the database thread, every wait bounded. A plain executor rather than
        ``sync_to_async``: this hop is made for every batch of messages, and needs no context copied."""
        return await asyncio.get_running_loop().run_in_executor(self.db_thread, storage.bounded, self.limits.store_wait, function, *args)

    async def db_write(self, function: Callable[..., T], *args: object) -> T:
        """``db`` for a write, taking its turn among the workers (``storage.one_writer``)."""
        return await asyncio.get_running_loop().run_in_executor(
            self.db_thread, storage.bounded_write, self.limits.store_wait, function, *args,
        )

    async def check_credentials(self, protocol: SmtpProtocol, request: CheckCredentials) -> object:
        """The AUTH throttle (shared by every worker and kept across restarts in the database), then the
        password hash in the hashing pool: an ``AuthDecision``, ``Throttled`` or ``CheckFailed``."""
        session = protocol.session
        snap, client = session.snap, session.facts.client_ip
        account = throttle.account_for(snap, request.login)
        try:
            counts = await self.db(stored_throttle.counts, client, account, self.throttle_limits.window)
        except Exception as error:
            log.exception("%s reading the AUTH throttle failed", client)
            return CheckFailed(_("The credentials could not be checked: %(error)s") % {"error": type(error).__name__})
        verdict = throttle.decide(counts, self.throttle_limits)
        if verdict.refuse:
            return Throttled(verdict.detail)
        if verdict.delay:
            await asyncio.sleep(verdict.delay)
        try:
            decision = await self.loop.run_in_executor(
                self.hash_pool, policy.authenticate, snap, session.facts, request.login, request.password,
            )
            if decision.allowed:
                await self.db_write(stored_throttle.forgive, client, account)
            elif throttle.counts_as_failure(THROTTLE_OUTCOMES.get(decision.rule, "")):
                await self.db_write(stored_throttle.record_failure, client, account)
        except Exception as error:
            log.exception("%s checking AUTH credentials failed", client)
            return CheckFailed(_("The credentials could not be checked: %(error)s") % {"error": type(error).__name__})
        return decision

    async def store(self, protocol: SmtpProtocol, envelope: Envelope) -> tuple[object | None, str]:
        """Store a message durably: (its id, "") once committed, or (None, why) when the client must get 451."""
        session = protocol.session
        subject, message_id = message_headers(envelope.data)
        facts = session.facts
        began = time.monotonic()
        try:
            stored = await self.commit({
                "mail_from": envelope.mail_from,
                "deliveries": list(envelope.deliveries),
                "data": envelope.data,
                "subject": subject,
                "message_id": message_id,
                "client_address": facts.client_ip or None,
                "client_helo": envelope.helo[:255],
                "local_port": facts.local_port,
                "tls": facts.tls,
                "authenticated_as": facts.authenticated_as or "",
                "session_id": envelope.session_id,
            })
        except Exception as error:
            if isinstance(error, storage.StorageUnavailable):
                log.warning("%s message refused with 451: %s", facts.client_ip, error)
            else:
                log.exception("%s storing a message failed", facts.client_ip)
            return None, _("Storing the message failed.")
        metrics.message_stored(len(envelope.data), time.monotonic() - began)
        return stored, ""

    async def commit(self, fields: dict) -> object:
        """The id of the message once the transaction holding it has committed (group commit).

        Messages wait in ``pending_stores`` while a commit is on disk; the database thread then commits
        all of them in one transaction. Each client still gets its 250 only after the commit that holds
        its message, and a failed commit fails every message of its batch (each client gets 451, nothing
        is stored).
        """
        future = self.loop.create_future()
        self.pending_stores.append((fields, future))
        if self.writer is None or self.writer.done():
            self.writer = asyncio.ensure_future(self.write_batches())
        return await future

    async def write_batches(self) -> None:
        while self.pending_stores:
            await self.loop.run_in_executor(self.db_thread, self.store_all_pending)

    def store_all_pending(self) -> None:
        """In the database thread: commit batches while messages are waiting, handing each result to the event
        loop as soon as it is known. The thread goes on to the next batch without waiting for the loop to ask:
        under load a message would otherwise wait for that hop as well as for the commit before it."""
        while self.pending_stores:
            self.loop.call_soon_threadsafe(self.answer, *self.store_pending())

    def answer(self, batch: list, ids: list, error: Exception | None) -> None:
        """On the event loop: each message of a batch gets its id (250) or the batch's error (451)."""
        if error is None:
            metrics.store_batch(len(batch))
        for index, (_fields, future) in enumerate(batch):
            if future.done():
                continue
            if error is None:
                future.set_result(ids[index])
            else:
                future.set_exception(error)

    def store_pending(self) -> tuple[list, list, Exception | None]:
        """In the database thread: commit the messages waiting; (the batch, its ids, None) or (the batch, [],
        the error every client of it gets 451 for).

        The batch is prepared before this worker's turn to write (``storage.one_writer``), so that the other
        workers wait only for the statements and the commit; the messages that arrived while waiting for the
        turn join it. While the database is known to be down, the batch fails at once: otherwise each
        batch would wait out the lock timeout in turn and the last client would wait for all of them.
        """
        batch = self.take_pending(MAX_BATCH)
        try:
            if time.monotonic() < self.storage_retry_at:
                raise storage.StorageUnavailable(_("The database failed a moment ago; not trying again yet."))
            prepared = storage.prepare_messages(self.server_id, [fields for fields, _future in batch])
            with storage.one_writer(self.limits.store_wait):
                late = self.take_pending(MAX_BATCH - len(batch))
                if late:
                    batch += late
                    prepared += storage.prepare_messages(self.server_id, [fields for fields, _future in late])
                ids = storage.bounded(self.limits.store_wait, storage.store_prepared, prepared)
            return batch, ids, None
        except Exception as error:
            if isinstance(error, OperationalError | InterfaceError):
                self.storage_retry_at = time.monotonic() + self.limits.storage_backoff
            return batch, [], error

    def take_pending(self, most: int) -> list[tuple[dict, asyncio.Future]]:
        pending = self.pending_stores
        return [pending.popleft() for _ in range(min(len(pending), most))]

    # --- sessions --------------------------------------------------------------------------------

    def admission(self, client: str) -> replies.Reply | None:
        """None when a new connection from ``client`` may have a session, else the 421 it gets.

        Logged once per address while it stays over its limit, not once per connection of a flood.
        """
        if (from_client := self.counts.from_client(client)) >= self.limits.max_sessions_per_client:
            refused, key, count = replies.TOO_MANY_FROM_CLIENT, client, from_client
        elif (in_all := self.counts.in_all()) >= self.limits.max_sessions and not self.make_room():
            refused, key, count = replies.TOO_MANY_SESSIONS, "*", in_all
        else:
            self.refused_clients.discard(client)
            self.refused_clients.discard("*")
            return None
        if key not in self.refused_clients:
            if len(self.refused_clients) >= self.limits.tracked_keys:
                self.refused_clients.clear()
            self.refused_clients.add(key)
            log.warning("%s refused with 421 until fewer sessions are open (%s open %s)", client, count,
                        "in all" if key == "*" else "from this address")
        return refused

    def make_room(self) -> bool:
        """At the session limit, close the longest-idle session (421) so a new client can connect."""
        now = time.monotonic()
        idle = [session for session in self.sessions if session.task is None and session.data_started is None]
        if not idle:
            return False
        idlest = max(idle, key=lambda session: session.idle_for(now))
        if idlest.idle_for(now) < EVICTABLE_IDLE:
            return False
        idlest.expire(replies.BUSY_CLOSING, "idle_evicted", _(
            "The listener reached its session limit; this session was the longest idle (%(seconds)d seconds)."
        ) % {"seconds": idlest.idle_for(now)})
        return True

    def session_opened(self, protocol: SmtpProtocol) -> None:
        self.sessions.add(protocol)
        self.counts.opened(protocol.session.facts.client_ip)
        metrics.session_opened(protocol.session.facts.local_port)

    def session_closed(self, protocol: SmtpProtocol) -> None:
        if protocol in self.sessions:
            self.sessions.discard(protocol)
            client = protocol.session.facts.client_ip
            self.counts.closed(client)
            metrics.session_closed(protocol.session.facts.local_port)
            record = storage.session_record(self.server_id, protocol.session)
            events.session_ended(record)
            self.finished_sessions.append(record)

    async def watch_sessions(self) -> None:
        """Close sessions past their lifetime or under the minimum data rate; forget old AUTH failures."""
        while True:
            await asyncio.sleep(self.limits.watch_interval)
            now = time.monotonic()
            pressure = self.counts.in_all() >= PRESSURE * self.limits.max_sessions
            idle_timeout = min(self.idle_timeout, PRESSURE_IDLE_TIMEOUT) if pressure else self.idle_timeout
            for session in list(self.sessions):
                session.check_time_limits(now, idle_timeout)

    def tls_context_for(self, snap: policy.SettingsSnapshot, facts: policy.SessionFacts) -> ssl.SSLContext | None:
        """The TLS context of the credentials that serve the session's local address, per its own snapshot."""
        choice = policy.tls_credentials_for(snap, facts.local_ip)
        return self.tls_contexts.get(choice.name)

    # --- settings and ports ----------------------------------------------------------------------

    async def refresh(self, force: bool = False) -> bool:
        revision = await self.db(storage.current_revision)
        if not force and self.snapshot is not None and revision == self.snapshot.revision:
            return False
        snapshot, server_id = await self.db(storage.load, self.server_name)
        self.tls_contexts = self.build_tls_contexts(snapshot)
        self.names_needed = resolve.needs_names(snapshot)
        self.mapped_names = resolve.mapped_names(snapshot)
        resolve.clear_cache()
        metrics.settings_loaded(snapshot.revision, reload=self.snapshot is not None)
        self.snapshot, self.server_id = snapshot, server_id
        log.info("settings revision %s loaded for %s", snapshot.revision, self.server_name)
        return True

    def build_tls_contexts(self, snapshot: policy.SettingsSnapshot) -> dict[str, ssl.SSLContext]:
        """SSL contexts per credentials, reusing those whose PEM text did not change."""
        contexts = {}
        for name, credentials in snapshot.credentials.items():
            key = (credentials.certificate_pem, credentials.private_key_pem)
            previous = self.tls_contexts.get(name)
            if previous is not None and getattr(previous, "_pem_key", None) == key:
                contexts[name] = previous
                continue
            try:
                context = server_context(*key)
            except Exception as error:
                log.error("TLS credentials %s cannot be loaded: %s", name, error)
                continue
            context._pem_key = key
            contexts[name] = context
        return contexts

    def desired_ports(self) -> dict[tuple, policy.Binding]:
        wanted = {}
        for binding in policy.bindings(self.snapshot):
            if binding.enabled:
                for address in binding.addresses or (None,):
                    wanted[(binding.port_kind, address, binding.port)] = binding
        return wanted

    async def reconcile(self, retry: bool = False) -> None:
        """Bind what the settings ask for and unbind the rest; sessions in progress are not touched."""
        wanted = self.desired_ports()
        for key in [key for key in self.servers if key not in wanted]:
            self.servers.pop(key).close()
            log.info("unbound %s port %s on %s", key[0], key[2], key[1] or "*")
        for key in list(self.bind_errors):
            if key not in wanted:
                del self.bind_errors[key]
        missing = [key for key in wanted if key not in self.servers]
        if not missing or (retry and time.monotonic() - self.last_bind_attempt < self.retry_interval):
            return
        self.last_bind_attempt = time.monotonic()
        for key in missing:
            kind, address, port = key
            try:
                self.servers[key] = await self.loop.create_server(
                    lambda kind=kind: SmtpProtocol(self, kind), host=address, port=port, reuse_address=True,
                    # Workers share each port; the kernel spreads the connections among them (SO_REUSEPORT).
                    reuse_port=self.worker is not None, backlog=LISTEN_BACKLOG,
                )
            except OSError as error:
                if self.bind_errors.get(key) != str(error):
                    log.error("cannot bind %s port %s on %s: %s", kind, port, address or "*", error)
                    metrics.bind_failed(port)
                self.bind_errors[key] = error.strerror or str(error)
            else:
                self.bind_errors.pop(key, None)
                log.info("listening on %s port %s on %s", kind, port, address or "*")

    def port_report(self) -> list[dict]:
        """Per inbound port: configured state next to what is actually bound, and any bind error."""
        report = []
        for binding in policy.bindings(self.snapshot):
            for address in binding.addresses or (None,):
                key = (binding.port_kind, address, binding.port)
                report.append({
                    "kind": binding.port_kind, "port": binding.port, "address": address or "*",
                    "configured": binding.enabled, "bound": key in self.servers,
                    "error": self.bind_errors.get(key, ""), "detail": str(binding.detail),
                })
        return report

    async def heartbeat(self, running: bool = True) -> None:
        """Write the status and the finished sessions; if the database fails, keep them for the next try."""
        sessions, self.finished_sessions = self.finished_sessions, []
        try:
            prepared = await self.db(storage.prepare_sessions, sessions) if sessions else None
            await self.db_write(storage.heartbeat, self.server_id, {
                "pid": os.getpid(), "host": socket.gethostname(), "revision": self.snapshot.revision,
                "open_sessions": len(self.sessions), "running": running, "ports": self.port_report(),
                **({} if self.worker is None else {"worker": self.worker}),
            }, sessions, prepared)
        except Exception:
            self.finished_sessions = (sessions + self.finished_sessions)[-MAX_PENDING_SESSION_LOGS:]
            raise

    # --- main loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        if self.stop_requested:
            self.stopping.set()
        await self.refresh(force=True)
        await self.reconcile()
        await self.heartbeat()
        if self.ready is not None:
            self.ready.set()
        watcher = asyncio.ensure_future(self.watch_sessions())
        next_heartbeat = time.monotonic() + self.heartbeat_interval
        failing = False
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.stopping.wait(), self.poll_interval)
                break
            except TimeoutError:
                pass
            events.flush()
            try:
                changed = await self.refresh()
                await self.reconcile(retry=not changed)
                if time.monotonic() >= next_heartbeat:
                    await self.heartbeat()
                    await self.db(storage.close_old_connections)
                    next_heartbeat = time.monotonic() + self.heartbeat_interval
            except Exception:
                if not failing:
                    log.exception("listener housekeeping failed; retrying until the database answers")
                failing = True
                with contextlib.suppress(Exception):
                    await self.db(storage.close_old_connections)
            else:
                if failing:
                    log.warning("listener housekeeping works again")
                failing = False
        watcher.cancel()
        await self.shutdown()
        events.flush()

    def stop(self) -> None:
        """Ask the listener to stop, from any thread, even before ``run`` has begun."""
        self.stop_requested = True
        if self.stopping is not None:
            self.loop.call_soon_threadsafe(self.stopping.set)

    async def shutdown(self) -> None:
        """Stop accepting, let sessions finish within the grace period, then close the rest."""
        for server in self.servers.values():
            server.close()
        self.servers.clear()
        deadline = time.monotonic() + self.shutdown_grace
        while self.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for session in list(self.sessions):
            session.close()
        await asyncio.sleep(0)
        try:
            await self.heartbeat(running=False)
        except Exception:
            log.exception("final status could not be written")
        await self.db(storage.close_all_connections)
        self.hash_pool.shutdown(wait=False)
        self.db_thread.shutdown(wait=False)
        self.counts.close()
