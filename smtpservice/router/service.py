"""The router of one Server document: sends the relay queue to other servers by SMTP.

The main loop claims due recipients (``claim``) in a short transaction, groups them by destination
(``outbound.destination_for``) and gives each group to a worker thread that runs one blocking
``smtplib`` session for all of it, then records each message's result (``record``) in another short
transaction. Crash safety comes from the order: a claimed recipient is ``in_flight`` with a lease
that the loop renews while its session runs; a router that dies leaves the lease to expire, and any
router then claims the recipient again. A recipient is marked delivered only after the remote
answered 250 to the end of DATA, so a crash sends a message twice at worst, never zero times.

Several routers may serve one queue on PostgreSQL: the claim locks rows with ``SELECT ... FOR UPDATE
SKIP LOCKED`` and its UPDATE re-checks that each row is still due, which also keeps SQLite (where
transactions are serialized and row locks do not exist) from sending a message twice.
"""
import itertools
import logging
import os
import random as random_module
import smtplib
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import dns.exception
import dns.name
import dns.resolver
from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from directory.choices import RelayAuth
from smtpservice import metrics
from smtpservice.core import outbound, texts
from smtpservice.core.policy import ConfigSnapshot, SettingsSnapshot
from smtpservice.models import DeliveryAttempt, QueuedRecipient, ReceivedMessage
from smtpservice.store import queue, routers, storage
from smtpservice.store import snapshot as snapshots

_ = texts.explain
"""Texts kept with their msgid and values: the queue pages show them in the reader's language."""

log = logging.getLogger("smtpservice.outbound")

State = QueuedRecipient.State
DNS_TIMEOUT = 10.0
"""Seconds for one DNS question (MX, then A/AAAA)."""
HEARTBEAT_SECONDS = 2.0
"""How often the router writes its status row and exports the queue depth."""
AUTH_PREFERENCE = ("CRAM-MD5", "PLAIN", "LOGIN")
"""SASL mechanisms the router uses with the relay host, best first (RFC 4954; CRAM-MD5 hides the password)."""


class DeliveryError(Exception):
    """A destination that cannot be reached now (temporary) or ever (``permanent``), in plain words."""

    def __init__(self, reason: str, permanent: bool = False, reply: str = "", status: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.reply = reply
        self.status = status or ("5.0.0" if permanent else "4.0.0")


class AuthRefused(DeliveryError):
    """The relay host refused our credentials; with authentication Enabled we try again without."""


@dataclass
class AttemptLog:
    """What the attempt log shows: the destination, the connection that was used or tried, and why."""

    destination: str = ""
    detail: str = ""
    started: datetime | None = None
    host: str = ""
    port: int | None = None
    tls: str = ""
    tls_policy: str = ""
    certificate: str = ""
    authentication: str = ""
    notes: list = field(default_factory=list)
    transcript: list = field(default_factory=list)


@dataclass
class Result:
    """What happened to one recipient in one attempt."""

    state: str
    reason: str
    reply: str = ""
    status: str = ""


def reply_text(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    return f"{code} {' '.join(text.split())}".strip()


class TracingSMTP(smtplib.SMTP):
    """smtplib's client keeping a transcript for the attempt log, with AUTH exchanges masked."""

    def __init__(self, transcript: list[str], **kwargs) -> None:
        self.transcript = transcript
        self.masking = False
        self.message_size = None
        super().__init__(**kwargs)

    def connect(self, host: str = "localhost", port: int = 0, source_address: tuple[str, int] | None = None) -> tuple[int, bytes]:
        self._host = host  # smtplib sets the TLS server name only in __init__
        return super().connect(host, port, source_address)

    def putcmd(self, cmd: str, args: str = "") -> None:
        if self.masking:
            line = "****"
        elif cmd.upper() == "AUTH":
            mechanism, _space, response = args.partition(" ")
            line = f"AUTH {mechanism}" + (" ****" if response else "")
            self.masking = True
        else:
            line = f"{cmd} {args}".strip()
        self.transcript.append(f"> {line}")
        super().putcmd(cmd, args)

    def getreply(self) -> tuple[int, bytes]:
        code, message = super().getreply()
        self.transcript.append(f"< {reply_text(code, message)}")
        if code != 334:
            self.masking = False
        if code == 354 and self.message_size is not None:
            size = {"size": self.message_size}
            self.transcript.append("> " + _("(the message, %(size)s bytes, then a line with a dot)") % size)
            self.message_size = None
        return code, message

    def data(self, msg: bytes) -> tuple[int, bytes]:
        self.message_size = len(msg)
        return super().data(msg)


class TracingSMTPSSL(TracingSMTP, smtplib.SMTP_SSL):
    """The same, with TLS from the first byte."""


def resolve_mx(domain: str, shuffle: Callable[[list], None] = random_module.shuffle) -> list[str]:
    """The hosts to try for ``domain``, best MX preference first and equal preferences in random order; the
    domain itself when it has no MX but an address (RFC 5321 s 5.1); a permanent error for a domain that
    does not exist or has a null MX (RFC 7505)."""
    resolver = dns.resolver.Resolver()
    resolver.lifetime = DNS_TIMEOUT
    values = {"domain": domain}
    try:
        answer = resolver.resolve(domain, "MX")
    except dns.resolver.NXDOMAIN:
        raise DeliveryError(_("The domain %(domain)s does not exist (DNS).") % values, True, status="5.1.2") from None
    except dns.resolver.NoAnswer:
        return _address_fallback(resolver, domain)
    except dns.exception.DNSException as error:
        values["error"] = error
        raise DeliveryError(_("The MX records of %(domain)s cannot be read now: %(error)s") % values) from None
    records = list(answer)
    if len(records) == 1 and records[0].exchange == dns.name.root:
        raise DeliveryError(_("%(domain)s accepts no mail (null MX, RFC 7505).") % values, True, status="5.1.10")
    return outbound.order_mx([(record.preference, record.exchange.to_text(omit_final_dot=True)) for record in records], shuffle)


def _address_fallback(resolver: dns.resolver.Resolver, domain: str) -> list[str]:
    values = {"domain": domain}
    for record_type in ("A", "AAAA"):
        try:
            resolver.resolve(domain, record_type)
            return [domain]
        except dns.resolver.NoAnswer:
            continue
        except dns.exception.DNSException as error:
            values["error"] = error
            raise DeliveryError(_("The addresses of %(domain)s cannot be read now: %(error)s") % values) from None
    raise DeliveryError(_("%(domain)s has neither MX nor address records.") % values, True, status="5.1.2")


def describe_error(error: Exception, host: str, port: int | None, timeout: float) -> str:
    """A connection problem in plain words."""
    values = {"host": host, "port": port, "timeout": timeout, "error": error}
    if isinstance(error, ConnectionRefusedError):
        return _("Connection refused by %(host)s port %(port)s: no server listens there.") % values
    if isinstance(error, (TimeoutError, socket.timeout)):
        return _("No answer from %(host)s port %(port)s within %(timeout)s seconds.") % values
    if isinstance(error, ssl.SSLCertVerificationError):
        return _("The certificate of %(host)s port %(port)s failed verification: %(error)s") % {
            **values, "error": error.verify_message or error,
        }
    if isinstance(error, ssl.SSLError):
        return _("TLS with %(host)s port %(port)s failed: %(error)s") % values
    if isinstance(error, socket.gaierror):
        return _("%(host)s cannot be resolved: %(error)s") % values
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return _("%(host)s port %(port)s closed the connection: %(error)s") % values
    return _("Connection to %(host)s port %(port)s failed: %(error)s") % values


def client_context(destination: outbound.Destination) -> ssl.SSLContext:
    """The TLS context for a destination: verified against the system store or a CA bundle, or any
    certificate under the opportunistic policy."""
    if not destination.verified:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=destination.ca_file or None)
    except (OSError, ValueError) as error:
        raise DeliveryError(_("The CA bundle %(path)s cannot be read: %(error)s") % {
            "path": destination.ca_file, "error": error,
        }) from None


def by_code(code: int, reply: str, reason: str) -> Result:
    """A recipient's result from a refusal: 5xx fails for good, anything else is tried again."""
    state = State.FAILED if code >= 500 else State.DEFERRED
    return Result(state, reason, reply, outbound.reply_status(code, reply[4:]))


class Router:
    """Delivers the relay queue of one Server document until ``stop()``.

    ``clock`` and ``random`` are injectable so tests check back-off without sleeping; ``resolver``
    answers MX questions (``resolve_mx``).
    """

    def __init__(self, server_name: str, *, clock: Callable[[], datetime] = timezone.now, random: Callable[[], float] = random_module.random,
                 resolver: Callable[[str], list[str]] = resolve_mx, workers: int = 4, batch: int = 20, poll_interval: float = 0.5,
                 lease_seconds: float | None = None, timeout: float | None = None) -> None:
        self.server_name = server_name
        self.clock = clock
        self.random = random
        self.resolver = resolver
        self.workers = workers
        self.batch = batch
        self.poll_interval = poll_interval
        self.lease = timedelta(seconds=lease_seconds or settings.ROUTER_LEASE_SECONDS)
        self.timeout = timeout or settings.ROUTER_SMTP_TIMEOUT
        self.lifetime = timedelta(hours=settings.ROUTER_MESSAGE_LIFETIME_HOURS)
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.snapshot = None
        self.server_id = None
        self.shutdown = False
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="smtp-router")
        self.futures = {}
        self.active = set()
        self.lock = threading.Lock()
        self.next_renewal = 0.0
        self.backlog = False
        self.started_at = timezone.now()
        self.last_pass_at = None
        self.last_error, self.last_error_at = "", None
        self.next_report = 0.0

    # --- main loop -------------------------------------------------------------------------------

    def start(self) -> None:
        """Load the settings (``snapshot.ServerNotFound`` when the server has no document)."""
        self.snapshot, self.server_id = storage.load(self.server_name)
        routers.prune(self.server_id)
        self.write_status(force=True)
        self.wake_held()
        log.info("router %s for %s started", self.id, self.snapshot.server_name)

    def run(self) -> None:
        """Work until ``stop()``, then let sessions in progress finish their current message."""
        if self.snapshot is None:
            self.start()
        while not self.shutdown:
            try:
                self.tick()
                self.write_status()
            except Exception as error:
                log.exception("router housekeeping failed; retrying")
                self.note_error(_("Router housekeeping failed: %(error)s") % {"error": error})
            self.pause(self.poll_interval)
        self.finish()

    def run_once(self) -> None:
        """Send everything due now and wait for the sessions (tests, ``runrouter --once``)."""
        if self.snapshot is None:
            self.start()
        self.refresh()
        while rows := self.claim(self.batch):
            self.dispatch(rows)
        wait_for_futures(list(self.futures))
        self.reap()
        self.last_pass_at = timezone.now()
        self.write_status(force=True)

    def stop(self, *args) -> None:
        self.shutdown = True

    def pause(self, seconds: float) -> None:
        """Sleep in short steps; with more mail due than workers, only until a worker is free."""
        deadline = time.monotonic() + seconds
        while not self.shutdown and time.monotonic() < deadline:
            if self.backlog and any(future.done() for future in self.futures):
                return
            time.sleep(0.05)

    def tick(self) -> None:
        close_old_connections()
        self.refresh()
        self.reap()
        self.renew_leases()
        self.backlog = False
        while not self.shutdown:
            if len(self.futures) >= self.workers:
                self.backlog = True
                break
            rows = self.claim(self.batch)
            if rows:
                self.dispatch(rows)
            if len(rows) < self.batch:
                break
        self.last_pass_at = timezone.now()

    def finish(self) -> None:
        """Stop: sessions in progress end after their current message; unstarted groups go back to the queue."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        cancelled = [ids for future, ids in self.futures.items() if future.cancelled()]
        self.give_back(list(itertools.chain.from_iterable(cancelled)))
        self.futures.clear()
        try:
            self.write_status(running=False, force=True)
        except Exception:
            log.exception("the router's last status could not be written")
        connections.close_all()
        log.info("router %s stopped", self.id)

    def write_status(self, running: bool = True, force: bool = False) -> None:
        """Heartbeat row for the console, and the queue depth for /metrics, every HEARTBEAT_SECONDS."""
        if not force and time.monotonic() < self.next_report:
            return
        self.next_report = time.monotonic() + HEARTBEAT_SECONDS
        now = timezone.now()
        counts, oldest = queue.depth(self.server_id)
        metrics.queue_depth(counts, State.values, (now - oldest).total_seconds() if oldest else None)
        if self.last_pass_at is not None:
            metrics.router_pass(self.last_pass_at.timestamp(), self.snapshot.revision)
        routers.heartbeat(self.id, self.server_id, {
            "pid": os.getpid(), "host": socket.gethostname(), "started_at": self.started_at, "running": running,
            "last_pass_at": self.last_pass_at, "revision": self.snapshot.revision,
            "last_error": self.last_error, "last_error_at": self.last_error_at,
        })

    def note_error(self, text: str) -> None:
        """Keep the last problem for the console's router panel."""
        self.last_error, self.last_error_at = texts.keep(text)[:2000], timezone.now()

    def refresh(self) -> None:
        """Reload the settings when the directory changed, and look again at mail they held."""
        snapshot = snapshots.refreshed(self.snapshot)
        if snapshot is not self.snapshot:
            self.snapshot = snapshot
            log.info("settings revision %s loaded", snapshot.revision)
            self.wake_held()

    def wake_held(self) -> None:
        """Mail held because the settings allowed no outbound SMTP waits for a change of the settings
        (or the end of its lifetime), not for a timer: look at it again now."""
        woken = QueuedRecipient.objects.filter(
            message__server_id=self.server_id, state=State.HELD, held_by=QueuedRecipient.HeldBy.ROUTER,
        ).update(next_attempt_at=self.clock())
        if woken:
            log.info("%s recipients held by the settings are looked at again", woken)

    def reap(self) -> None:
        for future in [future for future in self.futures if future.done()]:
            self.futures.pop(future)

    def renew_leases(self) -> None:
        if time.monotonic() < self.next_renewal:
            return
        self.next_renewal = time.monotonic() + self.lease.total_seconds() / 3
        with self.lock:
            active = list(self.active)
        if active:
            QueuedRecipient.objects.filter(pk__in=active, claimed_by=self.id, state=State.IN_FLIGHT).update(
                lease_expires_at=self.clock() + self.lease,
            )

    # --- claiming --------------------------------------------------------------------------------

    def due(self, now: datetime) -> Q:
        """Recipients to send now: queued or deferred and due, held by the router and due for another
        look, or in flight with an expired lease (their router stopped)."""
        return (
            Q(state__in=[State.QUEUED, State.DEFERRED], next_attempt_at__lte=now)
            | Q(state=State.HELD, held_by=QueuedRecipient.HeldBy.ROUTER, next_attempt_at__lte=now)
            | Q(state=State.IN_FLIGHT, lease_expires_at__lt=now)
        )

    def claim(self, limit: int) -> list[QueuedRecipient]:
        """Take up to ``limit`` due recipients of this server for this router, in one short transaction."""
        now = self.clock()
        with self.lock:
            active = list(self.active)
        with transaction.atomic():
            ids = list(
                QueuedRecipient.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(self.due(now), message__server_id=self.server_id)
                .exclude(pk__in=active)
                .order_by("next_attempt_at", "pk")
                .values_list("pk", flat=True)[:limit]
            )
            if not ids:
                return []
            QueuedRecipient.objects.filter(self.due(now), pk__in=ids).update(
                state=State.IN_FLIGHT, claimed_by=self.id, lease_expires_at=now + self.lease,
            )
            rows = list(QueuedRecipient.objects.filter(pk__in=ids, state=State.IN_FLIGHT, claimed_by=self.id).order_by("pk"))
        with self.lock:
            self.active.update(row.pk for row in rows)
        return rows

    def dispatch(self, rows: list[QueuedRecipient]) -> None:
        """One worker task per destination, carrying all of its recipients."""
        groups = {}
        for row in rows:
            groups.setdefault(outbound.destination_for(self.snapshot, row.recipient), []).append(row)
        for destination, group in groups.items():
            future = self.pool.submit(self.deliver, self.snapshot, destination, group)
            self.futures[future] = [row.pk for row in group]

    def give_back(self, ids: list[int]) -> None:
        """Return claimed recipients unsent, as they were, due at once."""
        if ids:
            QueuedRecipient.objects.filter(pk__in=ids, claimed_by=self.id, state=State.IN_FLIGHT).update(
                state=Case(When(attempts=0, then=Value(State.QUEUED)), default=Value(State.DEFERRED)),
                claimed_by="", lease_expires_at=None,
            )
        self.forget(ids)

    def forget(self, ids: list[int]) -> None:
        with self.lock:
            self.active.difference_update(ids)

    # --- one destination -------------------------------------------------------------------------

    def deliver(self, snap: SettingsSnapshot, destination: outbound.Destination | outbound.Blocked, rows: list[QueuedRecipient]) -> None:
        """Worker: one session for every recipient of one destination, each message recorded at once."""
        ids = [row.pk for row in rows]
        try:
            self.send_group(snap, destination, rows)
        except Exception:
            log.exception("delivery to %s failed unexpectedly", destination)
            self.give_back(ids)
        finally:
            self.forget(ids)
            connections.close_all()

    def send_group(self, snap: SettingsSnapshot, destination: outbound.Destination | outbound.Blocked, rows: list) -> None:
        messages = {message.pk: message for message in ReceivedMessage.objects.filter(pk__in={row.message_id for row in rows})}
        by_message = {}
        for row in rows:
            by_message.setdefault(messages[row.message_id], []).append(row)
        if isinstance(destination, outbound.Blocked):
            result = Result(destination.state, destination.reason, status=destination.status)
            for message, message_rows in by_message.items():
                self.record(snap, message, message_rows, dict.fromkeys((row.pk for row in message_rows), result),
                            AttemptLog(detail=destination.reason))
            return
        attempt = AttemptLog(destination=destination.label, detail=destination.detail, started=self.clock(),
                             tls_policy=destination.tls)
        try:
            client = self.connect(snap, destination, attempt)
        except DeliveryError as error:
            result = Result(State.FAILED if error.permanent else State.DEFERRED, error.reason, error.reply, error.status)
            for message, message_rows in by_message.items():
                self.record(snap, message, message_rows, dict.fromkeys((row.pk for row in message_rows), result), attempt)
            return
        opening = list(attempt.transcript)
        pending = list(by_message.items())
        try:
            while pending and not self.shutdown:
                message, message_rows = pending.pop(0)
                start = len(attempt.transcript)
                results, lost = self.send_message(client, attempt, message, message_rows)
                self.record(snap, message, message_rows, results,
                            replace(attempt, transcript=opening + attempt.transcript[start:]))
                attempt.started = self.clock()
                if lost:
                    break
        finally:
            self.give_back([row.pk for _message, message_rows in pending for row in message_rows])
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()

    def connect(self, snap: SettingsSnapshot, destination: outbound.Destination, attempt: AttemptLog) -> TracingSMTP:
        """The first session that opens, trying each host, then each step of the plan, in order.

        Fills ``attempt`` with the connection used, or the last one tried when none opens.
        """
        if destination.kind == outbound.MX:
            try:
                hosts = self.resolver(destination.host)
            except DeliveryError as error:
                attempt.transcript.append(f"! {error.reason}")
                raise
        else:
            hosts = [destination.host]
        error = DeliveryError(_("No SMTP Outbound port applies."))
        failed_ssl = {}
        for host, step in itertools.product(hosts, outbound.connection_plan(snap.outbound, destination)):
            attempt.host, attempt.port, attempt.tls, attempt.certificate, attempt.authentication = host, step.port, "", "", ""
            try:
                client = self.open_with_fallback(snap, destination, host, step, attempt)
            except DeliveryError as failed:
                attempt.transcript.append(f"! {failed.reason}")
                error = failed
                if step.mode == outbound.IMPLICIT:
                    failed_ssl[host] = (step.port, failed.reason)
                continue
            if host in failed_ssl and step.mode != outbound.IMPLICIT:
                # Spec 5.2: Domino's order, allowed by the opportunistic policy only (the plan has no such step
                # under the verified one); the log must say that this session is not on the SSL port.
                ssl_port, reason = failed_ssl[host]
                attempt.notes.append(_(
                    "The SSL port %(ssl_port)s failed (%(reason)s); fell back to the TCP/IP port %(port)s, as the "
                    "opportunistic TLS policy allows."
                ) % {"ssl_port": ssl_port, "reason": reason, "port": step.port})
            return client
        raise error

    def open_with_fallback(self, snap: SettingsSnapshot, destination: outbound.Destination, host: str, step: outbound.Step,
                           attempt: AttemptLog) -> TracingSMTP:
        """``open`` with AUTH as configured; relay credentials refused under Enabled: a new session without."""
        try:
            return self.open(snap, destination, host, step, attempt, authenticate=destination.authenticate)
        except AuthRefused as refused:
            attempt.transcript.append(f"! {refused.reason}")
            client = self.open(snap, destination, host, step, attempt, authenticate=False)
            attempt.authentication = _("%(reason)s Sent without authentication (Enabled falls back).") % {
                "reason": refused.reason,
            }
            return client

    def open(self, snap: SettingsSnapshot, destination: outbound.Destination, host: str, step: outbound.Step, attempt: AttemptLog,
             authenticate: bool) -> TracingSMTP:
        """Connect, greet, EHLO, STARTTLS when the plan says so and the remote offers it, then AUTH."""
        transcript = attempt.transcript
        options = {"local_hostname": snap.host_name, "timeout": self.timeout}
        if step.mode == outbound.IMPLICIT:
            client = TracingSMTPSSL(transcript, context=client_context(destination), **options)
            attempt.tls, attempt.certificate = DeliveryAttempt.Tls.IMPLICIT, destination.certificate_check
        else:
            client = TracingSMTP(transcript, **options)
            attempt.tls = DeliveryAttempt.Tls.NONE
        transcript.append(f"* {_('connect to %(host)s') % {'host': host}} {step.label}")
        try:
            code, message = client.connect(host, step.port)
            if code != 220:
                reply = reply_text(code, message)
                raise DeliveryError(_("%(host)s refused the session: %(reply)s") % {"host": host, "reply": reply},
                                    code >= 500, reply, outbound.reply_status(code, reply[4:]))
            code, message = client.ehlo()
            if code != 250:
                code, message = client.helo()
                if code != 250:
                    reply = reply_text(code, message)
                    raise DeliveryError(_("%(host)s refused EHLO and HELO: %(reply)s") % {"host": host, "reply": reply})
            if step.mode == outbound.STARTTLS:
                self.negotiate_tls(client, destination, attempt)
            if authenticate:
                self.authenticate(client, snap.config, attempt)
            return client
        except DeliveryError:
            client.close()
            raise
        except (OSError, smtplib.SMTPException) as error:
            client.close()
            raise DeliveryError(describe_error(error, host, step.port, self.timeout)) from None

    def negotiate_tls(self, client: smtplib.SMTP, destination: outbound.Destination, attempt: AttemptLog) -> None:
        """STARTTLS when offered. Opportunistic: clear text when it is not offered or refused. Verified: that
        defers (a stripped STARTTLS never leads to clear text). A failed handshake fails the connection under
        both policies, so a broken handshake cannot turn into clear text either."""
        if not client.has_extn("starttls"):
            if destination.verified:
                raise DeliveryError(_(
                    "The remote does not offer STARTTLS and the TLS policy is verified: the message is not sent in "
                    "clear text."
                ))
            attempt.notes.append(_(
                "The remote does not offer STARTTLS: the message goes in clear text (opportunistic TLS policy)."
            ))
            return
        code, message = client.starttls(context=client_context(destination))
        if code != 220:
            values = {"reply": reply_text(code, message)}
            if destination.verified:
                raise DeliveryError(_(
                    "The remote refused STARTTLS (%(reply)s) and the TLS policy is verified: the message is not sent "
                    "in clear text."
                ) % values)
            attempt.notes.append(_("The remote refused STARTTLS (%(reply)s): the message goes in clear text.") % values)
            return
        attempt.tls, attempt.certificate = DeliveryAttempt.Tls.STARTTLS, destination.certificate_check
        client.ehlo()

    def authenticate(self, client: TracingSMTP, config: ConfigSnapshot, attempt: AttemptLog) -> None:
        """Use authentication when sending to the relay host: Required never sends without it (spec 5.3).

        One mechanism only (CRAM-MD5, PLAIN, then LOGIN, the first offered): a server may close the
        session after a refused AUTH, and its reply is what the log must show.
        """
        required = config.relay_auth == RelayAuth.REQUIRED
        values = {"name": config.relay_auth_name}
        offered = client.esmtp_features.get("auth", "").upper().split() if client.has_extn("auth") else []
        mechanism = next((name for name in AUTH_PREFERENCE if name in offered), None)
        if mechanism is None:
            values["offered"] = " ".join(offered) or _("no AUTH")
            if required:
                raise DeliveryError(_(
                    "The relay host offers %(offered)s and Use authentication is Required: the message is not sent "
                    "without authentication."
                ) % values)
            attempt.authentication = _("The relay host offers %(offered)s: sent without authentication (Enabled).") % values
            return
        if attempt.tls == DeliveryAttempt.Tls.NONE and not config.relay_auth_allow_cleartext:
            # Spec 5.3: a relay (or an attacker in the path) that strips STARTTLS must not get the password.
            raise DeliveryError(_(
                "The relay host offers AUTH without TLS and Allow authentication to the relay host without TLS is "
                "No: the password is not sent, and the message waits."
            ))
        client.user, client.password = config.relay_auth_name, config.relay_auth_password
        try:
            client.auth(mechanism, getattr(client, "auth_" + mechanism.lower().replace("-", "_")))
        except smtplib.SMTPAuthenticationError as error:
            values["reply"] = reply_text(error.smtp_code, error.smtp_error)
            reason = _("The relay host refused the credentials of %(name)s: %(reply)s.") % values
            if required:
                raise DeliveryError(reason + " " + _("Use authentication is Required: the message stays queued.")) from None
            raise AuthRefused(reason) from None
        clear = _(" in clear text") if attempt.tls == DeliveryAttempt.Tls.NONE else ""
        attempt.authentication = _("Authenticated as %(name)s with AUTH %(mechanism)s%(clear)s.") % {
            **values, "mechanism": mechanism, "clear": clear,
        }

    def send_message(self, client: TracingSMTP, attempt: AttemptLog, message: ReceivedMessage,
                     rows: list[QueuedRecipient]) -> tuple[dict[int, Result], bool]:
        """MAIL, RCPT for each recipient, DATA: ({row id: Result}, whether the connection was lost)."""
        results = {}
        values = {"host": attempt.host}
        try:
            code, reply = client.mail(message.mail_from)
            if code != 250:
                values["reply"] = reply = reply_text(code, reply)
                client.rset()
                return dict.fromkeys((row.pk for row in rows), by_code(code, reply, _("%(host)s refused the sender: %(reply)s") % values)), False
            accepted = []
            for row in rows:
                code, reply = client.rcpt(row.recipient)
                if code in (250, 251):
                    accepted.append(row)
                    continue
                values["reply"] = reply = reply_text(code, reply)
                results[row.pk] = by_code(code, reply, _("%(host)s refused the recipient: %(reply)s") % values)
            if not accepted:
                client.rset()
                return results, False
            try:
                code, reply = client.data(bytes(message.data))
            except smtplib.SMTPDataError as error:
                code, reply = error.smtp_code, error.smtp_error
            values["reply"] = reply = reply_text(code, reply)
            for row in accepted:
                if code == 250:
                    results[row.pk] = Result(State.DELIVERED, _("%(host)s accepted the message: %(reply)s") % values, reply)
                else:
                    results[row.pk] = by_code(code, reply, _("%(host)s refused the message: %(reply)s") % values)
            return results, False
        except (OSError, smtplib.SMTPException) as error:
            reason = _("The connection was lost during the transaction: %(error)s") % {
                "error": describe_error(error, attempt.host, attempt.port, self.timeout),
            }
            for row in rows:
                results.setdefault(row.pk, Result(State.DEFERRED, reason, status="4.4.2"))
            return results, True

    # --- results ---------------------------------------------------------------------------------

    def record(self, snap: SettingsSnapshot, message: ReceivedMessage, rows: list, results: dict, attempt: AttemptLog) -> None:
        """Write one attempt and each recipient's new state in one transaction; report failures to the sender."""
        now = self.clock()
        expires = message.received_at + self.lifetime
        failures, outcomes, recipients, counted = [], set(), [], []
        jitter = self.random()  # one draw per message: its recipients stay together for the next try
        with transaction.atomic():
            for row in rows:
                result = results[row.pk]
                if result.state in (State.DEFERRED, State.HELD) and now >= expires:
                    result = Result(State.FAILED, _(
                        "The message could not be delivered within %(hours)s hours (the message lifetime). Last reason: %(reason)s"
                    ) % {"hours": int(self.lifetime.total_seconds() // 3600), "reason": result.reason}, result.reply, "4.4.7")
                fields = {
                    "state": result.state, "attempts": row.attempts + (result.state != State.HELD),
                    "claimed_by": "", "lease_expires_at": None,
                    "destination": texts.keep(attempt.destination),
                    "last_error": "" if result.state == State.DELIVERED else texts.keep(result.reason),
                    "held_by": QueuedRecipient.HeldBy.ROUTER if result.state == State.HELD else "",
                }
                if result.state == State.DELIVERED:
                    fields["delivered_at"] = now
                elif result.state == State.DEFERRED:
                    delay = outbound.retry_delay(
                        row.attempts + 1, settings.ROUTER_RETRY_SECONDS, settings.ROUTER_RETRY_MAX_SECONDS, lambda: jitter,
                    )
                    fields["next_attempt_at"] = min(now + timedelta(seconds=delay), expires)
                elif result.state == State.HELD:
                    fields["next_attempt_at"] = expires  # unless a settings change wakes it first
                mine = QueuedRecipient.objects.filter(pk=row.pk, claimed_by=self.id, state=State.IN_FLIGHT)
                if not mine.update(**fields):
                    log.warning("recipient %s of message %s was taken back by another router", row.recipient, message.pk)
                    continue
                outcomes.add(result.state)
                counted.append((result, fields["attempts"]))
                recipients.append({"recipient": row.recipient, "result": result.state, "reply": result.reply or result.reason})
                if result.state == State.FAILED:
                    failures.append(outbound.Failure(
                        row.recipient, result.status or "5.0.0", result.reason, result.reply, attempt.host,
                    ))
            if not recipients:
                return
            DeliveryAttempt.objects.create(
                message=message, started_at=attempt.started or now, ended_at=now, actor=self.id,
                outcome=outcomes.pop() if len(outcomes) == 1 else DeliveryAttempt.Outcome.PARTIAL,
                recipients=[{**entry, "reply": texts.keep(entry["reply"])} for entry in recipients],
                destination=texts.keep(attempt.destination), host=attempt.host, port=attempt.port,
                tls=attempt.tls, tls_policy=attempt.tls_policy, certificate=texts.keep(attempt.certificate),
                authentication=texts.keep(attempt.authentication),
                detail=texts.keep(texts.join(" ", [part for part in [attempt.detail, *attempt.notes] if part])),
                transcript=attempt.transcript,
            )
            if failures:
                self.report(snap, message, failures, now)
        seconds = max(0.0, (now - (attempt.started or now)).total_seconds())
        for result, attempts in counted:  # once committed: a rolled-back attempt is not counted
            metrics.delivery(result.state, seconds, attempts, final=result.state in (State.DELIVERED, State.FAILED))
            if result.state != State.DELIVERED:
                self.note_error(result.reason)
        for entry in recipients:
            log.info("message %s to %s via %s: %s (%s)", message.pk, entry["recipient"], attempt.destination or "-",
                     entry["result"], entry["reply"])

    def report(self, snap: SettingsSnapshot, message: ReceivedMessage, failures: list[outbound.Failure], now: datetime) -> None:
        """A non-delivery report to the sender from the null sender; never for a message from <>."""
        if not message.mail_from:
            log.info("message %s from <> failed for %s; no report is sent for it", message.pk, len(failures))
            return
        data = outbound.non_delivery_report(snap, message, failures, now)
        report_pk, unknown = queue.store(snap, self.server_id, "", [message.mail_from], data, ReceivedMessage.Origin.REPORT)
        if unknown:
            log.warning("no person has the local address %s: the report on message %s is dropped", message.mail_from, message.pk)
        else:
            log.info("non-delivery report %s on message %s sent to %s", report_pk, message.pk, message.mail_from)
