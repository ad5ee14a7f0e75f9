"""The SMTP listener of one Server document, on aiosmtpd, obeying the directory live.

aiosmtpd's ``SMTP`` is the protocol state machine; ``DominoSMTP`` overrides the commands whose answer
depends on our settings and asks ``smtpservice.core.policy`` for every decision, so the listener never
decides anything itself. ``ListenerService`` owns the ports: it keeps an immutable settings snapshot,
checks the directory's revision a few times a second (one cheap query, never per connection),
rebinds ports whose number or status changed without touching sessions in progress, reports bind
failures and retries them. Database work runs in one worker thread, password hashing in another
pool: the event loop never waits on either.

The listener also protects itself, whatever the documents say (``Limits``; docs/security.md): only
CR LF ends a line, a message with a bare CR or LF is refused, connections past the session limits
are refused before a session is built, AUTH failures are slowed then stopped, sessions and DATA
have time limits, and a locked or failing database gets the client a 451, never a 250.
"""
import asyncio
import base64
import binascii
import collections
import contextlib
import functools
import logging
import os
import re
import socket
import time
import uuid
from asyncio import sslproto
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiosmtpd.smtp import SMTP, syntax
from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError
from django.utils.translation import gettext as _

from smtpservice.core import policy
from smtpservice.core.message import (
    BARE_LINE_END,
    content_problem,
    message_headers,
    received_header,
    refusal,
    sanitize_header_text,
)
from smtpservice.listener.tlscontext import server_context
from smtpservice.store import storage

log = logging.getLogger("smtpservice.listener")

IDENT = "ESMTP Service ready"
POLL_INTERVAL = 0.25
"""Seconds between checks of the directory's revision: a saved change applies within one second (spec 3.10)."""
TLS_HANDSHAKE_TIMEOUT = 10.0
"""Seconds a client has to finish a TLS handshake (SSL port and STARTTLS)."""
MAX_PENDING_SESSION_LOGS = 10_000
"""Finished sessions kept in memory while the database cannot take them."""
AUTH_PRUNE_INTERVAL = 30.0
"""Seconds between sweeps of the AUTH counters for keys whose failures have all expired."""
LISTEN_BACKLOG = 1024
"""Connections the kernel queues before the listener accepts them (asyncio's default of 100 drops SYNs in a burst)."""


@dataclass(frozen=True)
class Limits:
    """What one client may cost the listener; the numbers and where they come from are in docs/security.md.

    Not directory settings: they protect the process, whatever the documents say. Tests pass smaller ones.
    """

    max_sessions: int = 1000
    """Open sessions in all; the next connection gets 421 (Postfix: default_process_limit)."""
    max_sessions_per_client: int = 50
    """Open sessions from one address (Postfix: smtpd_client_connection_count_limit)."""
    session_lifetime: float = 3600.0
    """Seconds a session may last, however busy; then 421."""
    min_data_rate: int = 500
    """Bytes per second a client must average during DATA once ``data_grace`` is over (Postfix: smtpd_min_data_rate)."""
    data_grace: float = 30.0
    """Seconds of DATA before the minimum rate applies (a client may pause to build its message)."""
    junk_commands: int = 100
    """NOOP, RSET, VRFY, HELP, HELO and EHLO between two accepted messages (Postfix: smtpd_junk_command_limit)."""
    max_hops: int = 50
    """Received headers a message may carry (RFC 5321 s 6.3; Postfix: hopcount_limit)."""
    tls_handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT
    """Seconds a client has to finish a TLS handshake; then the connection is closed."""
    auth_window: float = 900.0
    """Seconds a failed AUTH counts against its client address and account."""
    auth_failures_per_session: int = 3
    """Unsuccessful AUTH commands in one session (malformed ones: a wrong password closes the session)."""
    auth_failures_per_client: int = 10
    auth_failures_per_account: int = 10
    """Failed AUTH from one address, and for one account from anywhere, in ``auth_window``; then 421."""
    auth_delay: float = 1.0
    """Seconds an AUTH waits after one earlier failure; doubled for each further one, up to ``auth_max_delay``."""
    auth_max_delay: float = 16.0
    store_wait: float = 10.0
    """Seconds any database statement of the listener may wait for a lock (or run): then a message gets 451."""
    storage_backoff: float = 1.0
    """Seconds after the database failed during which messages get 451 at once instead of queueing to wait."""
    watch_interval: float = 0.5
    """Seconds between checks of session lifetimes and data rates."""
    tracked_keys: int = 100_000
    """Client addresses and accounts the AUTH counters remember at most (memory bound under a spray)."""


# aiosmtpd's own texts for cases the spec words differently (spec section 6) or without an enhanced code.
AIOSMTPD_REPLACEMENTS = {
    "552 Error: Too much mail data": "{} {}".format(*policy.TOO_LARGE),
    "552 Error: message size exceeds fixed maximum message size": "{} {}".format(*policy.TOO_LARGE),
    "500 Command line too long": "500 5.5.2 Line too long",
    "500 Line too long (see RFC5321 4.5.3.1.6)": "500 5.5.2 Line too long (RFC 5321 s 4.5.3.1.6)",
    "500 Error: bad syntax": "500 5.5.2 Error: bad syntax",
}
SIZE_PARAMETER = re.compile(r"\bSIZE=(\d+)\b", re.IGNORECASE)
HTTP_VERBS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "CONNECT", "PATCH", "TRACE"})
"""A web client or proxy probe on the SMTP port: the session is closed at once (Postfix: smtpd_forbidden_commands)."""
JUNK_COMMANDS = frozenset({"NOOP", "RSET", "VRFY", "HELP", "HELO", "EHLO"})

# Replies of the listener's own protections; each cites where it comes from.
TOO_MANY_SESSIONS = (421, "4.3.2 Too many connections, try again later")
"""RFC 5321 s 3.8: 421 when the service cannot take the connection; RFC 3463 X.3.2 system not accepting messages."""
TOO_MANY_FROM_CLIENT = (421, "4.7.0 Too many connections from your address, try again later")
SESSION_TOO_LONG = (421, "4.4.2 Session time limit exceeded, closing connection")
DATA_TOO_SLOW = (421, "4.4.2 Data rate too low, closing connection")
"""RFC 3463 X.4.2 bad connection."""
TOO_MANY_JUNK = (421, "4.7.0 Too many commands without mail, closing connection")
AUTH_THROTTLED = (421, "4.7.0 Too many failed authentication attempts, try again later")
AUTH_TEMPORARY = (454, "4.7.0 Temporary authentication failure")
"""RFC 4954 s 6: the reply when the server cannot check the credentials now."""
AUTH_LINE_TOO_LONG = (500, "5.5.6 Authentication Exchange line is too long")
"""RFC 4954 s 4."""
AUTH_ABORTED = (501, "5.7.0 Authentication aborted")
"""RFC 4954 s 4: the client answered a challenge with "*"."""
BARE_LINE_END_IN_COMMAND = (500, "5.5.2 Bare CR or LF in command line")
LOCAL_ERROR = "451 4.3.0 Local error in processing"


def reply(pair):
    code, text = pair
    return f"{code} {text}"


class CrLfReader(asyncio.StreamReader):
    """aiosmtpd's stream reader, where only CR LF ends a command line (RFC 5321 s 2.3.8): a bare LF never does.

    aiosmtpd reads commands up to LF and DATA up to CR LF; reading both up to CR LF means a client can
    neither end a command nor smuggle one with a bare LF. The last line is kept so that a bare CR or LF
    inside a command can be refused.
    """

    last_line = b""

    async def readuntil(self, separator=b"\r\n"):
        self.last_line = await super().readuntil(separator)
        return self.last_line


class CommandTable(dict):
    """aiosmtpd's table of command methods: each goes through ``screen`` first, and a command it does not
    list is answered by ``fallback(name)``.

    aiosmtpd answers unknown commands itself and closes the session after five of them; through this
    table they reach our replies and count toward the Error limit like any other error (spec 3.9).
    """

    def __init__(self, methods, fallback, screen):
        super().__init__(methods)
        self.fallback = fallback
        self.screen = screen

    def get(self, name, default=None):
        method = super().get(name)
        return self.screen(name, method if method is not None else self.fallback(name))


class AuthThrottle:
    """Failed AUTH attempts per client address and per account, in memory, over a sliding window.

    An attempt counts as failed from the moment it starts and is forgiven if it succeeds, so parallel
    sessions cannot all slip under the limit before the first failure is known.
    """

    def __init__(self, limits):
        self.limits = limits
        self.failures = {}
        self.pruned_at = 0.0

    @staticmethod
    def account(snap, login):
        """The account a login names: the person it finds (whichever name variation was typed), else the login."""
        person = policy.find_person(snap, login).person
        return person.full_name if person is not None else " ".join(login.split()).casefold()

    @staticmethod
    def keys(session, account):
        keys = [("client", session.facts.client_ip)]
        if account is not None:
            keys.append(("account", account))
        return keys

    def count(self, key, now):
        times = self.failures.get(key)
        if not times:
            return 0
        while times and times[0] <= now - self.limits.auth_window:
            times.popleft()
        return len(times)

    def blocked(self, session, account, now):
        """The reason further AUTH is refused with 421, or None."""
        limits = self.limits
        if session.auth_failures >= limits.auth_failures_per_session:
            return _("%(count)s failed AUTH attempts in this session.") % {"count": session.auth_failures}
        for key, limit in zip(self.keys(session, account), (limits.auth_failures_per_client, limits.auth_failures_per_account), strict=False):
            count = self.count(key, now)
            if count >= limit:
                return _("%(count)s failed AUTH attempts for %(kind)s %(value)s in the last %(window)s seconds.") % {
                    "count": count, "kind": key[0], "value": key[1], "window": int(limits.auth_window),
                }
        return None

    def begin(self, session, account, now):
        """Count the attempt as failed until it succeeds; return the seconds to wait before checking it."""
        earlier = max([session.auth_failures, *(self.count(key, now) for key in self.keys(session, account))])
        session.auth_failures += 1
        for key in self.keys(session, account):
            if key not in self.failures and len(self.failures) >= self.limits.tracked_keys:
                self.prune(now)
                if len(self.failures) >= self.limits.tracked_keys:
                    del self.failures[next(iter(self.failures))]
            self.failures.setdefault(key, collections.deque()).append(now)
        if not earlier:
            return 0.0
        return min(self.limits.auth_max_delay, self.limits.auth_delay * 2 ** (earlier - 1))

    def undo(self, session, account):
        """The attempt could not be checked (a temporary failure): it does not count."""
        session.auth_failures -= 1
        for key in self.keys(session, account):
            times = self.failures.get(key)
            if times:
                times.pop()

    def forgive(self, session, account):
        """The attempt succeeded: it does not count, and the account's earlier failures are forgotten."""
        self.undo(session, account)
        self.failures.pop(self.keys(session, account)[-1], None)

    def prune(self, now):
        """Forget the keys whose failures have all left the window."""
        self.pruned_at = now
        for key in [key for key in self.failures if not self.count(key, now)]:
            del self.failures[key]


class Admission(asyncio.Protocol):
    """The first protocol of every connection: over the session limits it is refused before a session is
    built (building one costs a few hundred microseconds, which a flood would multiply); otherwise the
    connection is handed to a new ``DominoSMTP``."""

    def __init__(self, service, port_kind):
        self.service = service
        self.port_kind = port_kind

    def connection_made(self, transport):
        client = (transport.get_extra_info("peername") or ("",))[0]
        refused = self.service.admission(client)
        if refused is None:
            session = DominoSMTP(self.service, self.port_kind)
            transport.set_protocol(session)
            session.connection_made(transport)
            return
        # On the SSL port a clear-text reply means nothing to the client, and a handshake is what a flood costs.
        if self.port_kind == policy.TCP:
            transport.write(f"{reply(refused)}\r\n".encode("ascii"))
        transport.close()

    def data_received(self, data):
        """Whatever a refused client sends before the close is ignored."""


class DominoSMTP(SMTP):
    """One SMTP session, answered as the settings snapshot of its connection time says."""

    def __init__(self, service, port_kind):
        self.service = service
        self.limits = service.limits
        self.snap = service.snapshot
        self.port_kind = port_kind
        self.facts = None
        self.refusal = None
        self.greeted = False
        self.errors = 0
        self.junk = 0
        self.auth_failures = 0
        self.events = []
        self.session_id = uuid.uuid4().hex[:16]
        self.started_at = time.time()
        self.opened = time.monotonic()
        self.bytes_received = 0
        self.data_started = None
        self.storing = False
        self.messages_accepted = 0
        self.last_reply = ""
        self.helo = ""
        # aiosmtpd keeps these limits on the class, shared by every session; each session gets its own.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        super().__init__(
            service.handler,
            hostname=self.snap.host_name,
            ident=IDENT,
            data_size_limit=self.snap.config.max_message_bytes,
            auth_require_tls=False,
            timeout=service.idle_timeout,
            loop=service.loop,
        )
        self._smtp_methods = CommandTable(self._smtp_methods, self.unknown_command, self.screened)

    # --- connection ----------------------------------------------------------------------------

    def connection_made(self, transport):
        first = self.facts is None
        super().connection_made(transport)
        if not first:
            return
        local = transport.get_extra_info("sockname") or ("", 0)
        peer = transport.get_extra_info("peername") or ("", 0)
        self.facts = policy.SessionFacts(
            local_ip=local[0], local_port=local[1], port=self.port_kind, client_ip=peer[0],
        )
        self.service.session_opened(self)
        greeting = policy.session_greeting(self.snap, self.facts)
        self.record("CONNECT", greeting, greeting.reply or "220")
        if not greeting.allowed:
            self.refusal = greeting
            self._smtp_methods = CommandTable({"QUIT": self.smtp_QUIT}, self.refused_command, self.screened)

    def _cb_client_connected(self, reader, writer):
        reader.__class__ = CrLfReader
        super()._cb_client_connected(reader, writer)

    def data_received(self, data):
        self.bytes_received += len(data)
        super().data_received(data)

    def connection_lost(self, error):
        super().connection_lost(error)
        self.service.session_closed(self)

    async def _handle_client(self):
        if self.port_kind == policy.SSL:
            context = self.service.tls_context_for(self.snap, self.facts)
            if context is None or not await self.start_tls(context):
                self.close()
                return
        await super()._handle_client()

    async def start_tls(self, context):
        """TLS from the first byte (SSL port) or after STARTTLS, with a bounded handshake.

        Whatever the client sent in clear after STARTTLS is dropped when the handshake completes
        (aiosmtpd's ``connection_made``; RFC 3207 s 4.2, CVE-2024-34083).
        """
        waiter = self.loop.create_future()
        self._tls_protocol = sslproto.SSLProtocol(
            self.loop, self, context, waiter, server_side=True, ssl_handshake_timeout=self.limits.tls_handshake_timeout,
        )
        self._original_transport = self.transport
        self._original_transport.set_protocol(self._tls_protocol)
        self.transport = self._tls_protocol._app_transport
        self._tls_protocol.connection_made(self._original_transport)
        try:
            await waiter
        except (TimeoutError, OSError, ConnectionError) as error:
            log.info("%s TLS handshake failed: %s", self.facts.client_ip, error)
            self.events.append({"command": "TLS", "rule": "tls_handshake_failed", "detail": str(error), "reply": ""})
            # asyncio tells the session nothing when a handshake fails: end it here, or it would stay
            # counted (and its client's address too) for ever.
            self.connection_lost(error)
            return False
        self.facts = self.facts.after_starttls() if self.port_kind == policy.TCP else self.facts
        return True

    def close(self):
        """End the session now: no further command is answered, not even one the client pipelined.

        aiosmtpd's command loop runs while ``transport`` is set, and a cancelled task stops only at its
        next pause, so both are cleared here (aiosmtpd's own QUIT cancels the same way).
        """
        if self._handler_coroutine is not None:
            self._handler_coroutine.cancel()
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def expire(self, pair, rule, detail):
        """Close a session that broke a time limit, telling the client why, whatever it is doing."""
        self.record("LIMIT", refusal(pair, rule, detail))
        if self.transport is not None:
            self._writer.write(f"{reply(pair)}\r\n".encode("ascii"))
            self.last_reply = reply(pair)
        self.close()

    def check_time_limits(self, now):
        """Session lifetime and minimum data rate; a message being stored is never cut off."""
        if self.storing or self.transport is None:
            return
        limits = self.limits
        if now - self.opened > limits.session_lifetime:
            self.expire(SESSION_TOO_LONG, "session_lifetime", _(
                "The session lasted more than %(seconds)s seconds."
            ) % {"seconds": limits.session_lifetime})
            return
        if self.data_started is None:
            return
        started, received_before = self.data_started
        elapsed = now - started
        received = self.bytes_received - received_before
        if elapsed > limits.data_grace and received < limits.min_data_rate * (elapsed - limits.data_grace):
            self.expire(DATA_TOO_SLOW, "min_data_rate", _(
                "%(bytes)s bytes of message data in %(seconds).1f seconds: under %(rate)s bytes per second."
            ) % {"bytes": received, "seconds": elapsed, "rate": limits.min_data_rate})

    # --- replies ---------------------------------------------------------------------------------

    async def push(self, status):
        """Send a reply: the refusal instead of the greeting, the spec's texts for aiosmtpd's, and past the
        Error limit the 421 instead of the error, closing the session (spec 3.9)."""
        if isinstance(status, bytes):
            status = status.decode("ascii", "replace")
        if not self.greeted and status.startswith("220 "):
            self.greeted = True
            await self.send(self.refusal.reply if self.refusal is not None else status)
            return
        status = AIOSMTPD_REPLACEMENTS.get(status, status)
        code = int(status[:3]) if status[:3].isdigit() else None
        if policy.counts_as_error(code) and code != policy.ERROR_LIMIT[0]:
            self.errors += 1
            limit = policy.within_error_limit(self.snap, self.errors)
            if not limit.allowed:
                self.record("ERROR", limit)
                await self.send(limit.reply)
                self.close()
                return
        await self.send(status)

    async def send(self, status):
        await super().push(status)
        self.last_reply = status

    async def refuse_and_close(self, command, pair, rule, detail):
        self.record(command, refusal(pair, rule, detail))
        await self.send(reply(pair))
        self.close()

    def record(self, command, decision, reply_text=None):
        """Keep one step of the session log: the command, the rule that decided, why, and the reply."""
        self.events.append({
            "command": command,
            "rule": decision.rule,
            "detail": str(decision.detail),
            "reply": reply_text if reply_text is not None else decision.reply,
        })

    def screened(self, name, method):
        """Every command passes here before its method: HTTP requests, bare CR or LF, junk commands."""

        @functools.wraps(method)
        async def command(arg):
            if name in HTTP_VERBS:
                self.record(name, policy.Decision(False, None, "", "http_request", _(
                    "%(verb)s is an HTTP request, not SMTP: the session is closed without a reply."
                ) % {"verb": name}, close=True))
                self.close()
                return
            if BARE_LINE_END.search(self._reader.last_line, 0, len(self._reader.last_line) - 2):
                self.record(name, refusal(BARE_LINE_END_IN_COMMAND, "bare_line_end", _(
                    "The command line holds a CR or LF that is not part of its CR LF end (RFC 5321 s 2.3.8)."
                )))
                await self.push(reply(BARE_LINE_END_IN_COMMAND))
                return
            if name in JUNK_COMMANDS:
                self.junk += 1
                if self.junk > self.limits.junk_commands:
                    await self.refuse_and_close(name, TOO_MANY_JUNK, "junk_commands", _(
                        "More than %(limit)s NOOP, RSET, VRFY, HELP, HELO or EHLO commands without a message."
                    ) % {"limit": self.limits.junk_commands})
                    return
            await method(arg)

        return command

    def refused_command(self, name):
        """After a refused greeting every command but QUIT, known or not, gets 503 with the same text (spec 3.3)."""

        async def refuse(arg):
            decision = policy.after_refused_greeting(self.refusal)
            self.record(name, decision)
            await self.push(decision.reply)

        return refuse

    def unknown_command(self, name):
        """A command aiosmtpd does not know: 500 (RFC 5321 s 4.2.4), an error like any other."""

        async def unknown(arg):
            await self.push(f'500 5.5.1 Error: command "{sanitize_header_text(name)}" not recognized')

        return unknown

    # --- commands --------------------------------------------------------------------------------

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname):
        if not hostname:
            await self.push("501 5.5.4 Syntax: EHLO hostname")
            return
        self._set_rset_state()
        self.session.extended_smtp = True
        self.session.host_name = self.helo = hostname
        offer = policy.ehlo_extensions(self.snap, self.facts)
        if any(item.startswith("SIZE") for item in offer):
            self.command_size_limits["MAIL"] = self.command_size_limit + 26
        lines = [self.hostname, *offer]
        self.record("EHLO", policy.Decision(True, 250, "", "ehlo", offer.detail), "250")
        for line in lines[:-1]:
            await self.push(f"250-{line}")
        await self.push(f"250 {lines[-1]}")

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname):
        self.helo = hostname or ""
        await super().smtp_HELO(hostname)

    @syntax("STARTTLS")
    async def smtp_STARTTLS(self, arg):
        if arg:
            await self.push("501 5.5.4 Syntax: STARTTLS")
            return
        decision = policy.starttls_offered(self.snap, self.facts)
        self.record("STARTTLS", decision, decision.reply or "220")
        if not decision.allowed:
            await self.push(decision.reply)
            return
        context = self.service.tls_context_for(self.snap, self.facts)
        if context is None:
            await self.push(reply(policy.TLS_NOT_AVAILABLE))
            return
        await self.push("220 2.0.0 Ready to start TLS")
        if not await self.start_tls(context):
            self.close()

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg):
        if await self.check_helo_needed("EHLO"):
            return
        if not self.session.extended_smtp:
            await self.push("503 5.5.1 Error: send EHLO first")
            return
        gate = policy.auth_allowed(self.snap, self.facts)
        if not gate.allowed:
            self.record("AUTH", gate)
            await self.push(gate.reply)
            return
        if self.envelope.mail_from:
            await self.push("503 5.5.1 AUTH not permitted during a mail transaction")
            return
        throttle = self.service.auth_throttle
        blocked = throttle.blocked(self, None, time.monotonic())
        if blocked:
            await self.refuse_and_close("AUTH", AUTH_THROTTLED, "auth_throttled", blocked)
            return
        credentials = await self.read_credentials(arg)
        if credentials is None:
            throttle.begin(self, None, time.monotonic())
            return
        login, password = credentials
        account = throttle.account(self.snap, login)
        blocked = throttle.blocked(self, account, time.monotonic())
        if blocked:
            await self.refuse_and_close("AUTH", AUTH_THROTTLED, "auth_throttled", blocked)
            return
        delay = throttle.begin(self, account, time.monotonic())
        if delay:
            await asyncio.sleep(delay)
        try:
            decision = await self.service.authenticate(self.snap, self.facts, login, password)
        except Exception as error:
            log.exception("%s checking AUTH credentials failed", self.facts.client_ip)
            throttle.undo(self, account)
            self.record("AUTH", refusal(AUTH_TEMPORARY, "auth_error", _(
                "The credentials could not be checked: %(error)s"
            ) % {"error": type(error).__name__}))
            await self.push(reply(AUTH_TEMPORARY))
            return
        self.record("AUTH", decision, decision.reply or "235")
        if not decision.allowed:
            await self.push(decision.reply)
            if decision.close:
                self.close()
            return
        throttle.forgive(self, account)
        self.session.authenticated = True
        self.facts = self.facts.after_auth(decision.person.full_name)
        await self.push("235 2.7.0 Authentication successful")

    async def read_credentials(self, arg):
        """(login, password) from AUTH PLAIN or LOGIN, or None once a 5xx has been sent."""
        args = (arg or "").split()
        if not 1 <= len(args) <= 2:
            await self.push("501 5.5.4 Syntax: AUTH mechanism [initial-response]")
            return None
        mechanism = args[0].upper()
        if mechanism not in policy.auth_mechanisms(self.snap, self.facts):
            await self.push("504 5.5.4 Unrecognized authentication type")
            return None
        initial = args[1] if len(args) == 2 else None
        if mechanism == "PLAIN":
            blob = await self.decode_response(initial) if initial is not None else await self.challenge("")
            if blob is None:
                return None
            parts = blob.split(b"\x00")
            if len(parts) != 3:
                await self.push("501 5.5.2 Cannot split the PLAIN response")
                return None
            authzid, login, password = parts
            if authzid and authzid != login:
                self.record("AUTH", policy.Decision(
                    False, *policy.AUTH_FAILED, "authorization_identity",
                    _("The authorization identity of AUTH PLAIN is not the login."), close=True,
                ))
                await self.push(reply(policy.AUTH_FAILED))
                self.close()
                return None
        else:
            login = await self.decode_response(initial) if initial is not None else await self.challenge("User Name")
            if login is None:
                return None
            password = await self.challenge("Password")
            if password is None:
                return None
        try:
            return login.decode("utf-8"), password.decode("utf-8")
        except UnicodeDecodeError:
            await self.push("501 5.5.2 Credentials are not UTF-8")
            return None

    async def challenge(self, prompt):
        """Send a 334 challenge and return the client's decoded answer, or None once a 5xx has been sent."""
        await self.push(b"334 " + base64.b64encode(prompt.encode("ascii")))
        line = await self.read_line()
        if line is None:
            await self.push(reply(AUTH_LINE_TOO_LONG))
            return None
        line = line.strip()
        if line == b"*":
            await self.push(reply(AUTH_ABORTED))
            return None
        return await self.decode_response(line.decode("ascii", "replace"), allow_empty=False)

    async def read_line(self):
        """The next line up to CR LF, or None when it was longer than a text line (it is read and dropped)."""
        too_long = False
        while True:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as error:
                too_long = True
                await self._reader.read(error.consumed)
                continue
            return None if too_long else line

    async def decode_response(self, text, allow_empty=True):
        if text == "=" and allow_empty:
            return b""
        try:
            return base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            await self.push("501 5.5.2 Cannot decode base64")
            return None

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg):
        if await self.check_helo_needed():
            return
        size = SIZE_PARAMETER.search(arg or "")
        decision = policy.mail_from_allowed(
            self.snap, self.facts, int(size.group(1)) if size else None, sender=self.sender_of(arg),
        )
        if not decision.allowed:
            self.record("MAIL", decision)
            await self.push(decision.reply)
            return
        await super().smtp_MAIL(arg)
        self.record("MAIL", decision, self.last_reply)

    def sender_of(self, arg):
        """The address of a MAIL FROM argument as aiosmtpd reads it, or None when it cannot be read."""
        path = self._strip_command_keyword("FROM:", arg or "")
        return self._getaddr(path)[0] if path else None

    @syntax("DATA")
    async def smtp_DATA(self, arg):
        self.data_started = (time.monotonic(), self.bytes_received)
        try:
            await super().smtp_DATA(arg)
        finally:
            self.data_started = None

    @syntax("HELP [command]")
    async def smtp_HELP(self, arg):
        decision = policy.help_allowed(self.snap)
        if not decision.allowed:
            await self.push(decision.reply)
            return
        await super().smtp_HELP(arg)

    @syntax("VRFY <address>")
    async def smtp_VRFY(self, arg):
        if not arg:
            await self.push("501 5.5.4 Syntax: VRFY <address>")
            return
        decision = policy.vrfy_decision(self.snap, arg)
        self.record("VRFY", decision)
        await self.push(f"{decision.code} {decision.text}")


class Handler:
    """aiosmtpd hooks for recipients and message data, answered by the policy and the store."""

    def __init__(self, service):
        self.service = service

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        decision = policy.recipient_decision(server.snap, server.facts, address, len(envelope.rcpt_tos))
        server.record("RCPT", decision, decision.reply or "250")
        if not decision.allowed:
            return decision.reply
        envelope.rcpt_tos.append(address)
        if not hasattr(envelope, "deliveries"):
            envelope.deliveries = []
        envelope.deliveries.append((address, decision.kind, decision.person.full_name if decision.person else None))
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content
        size = policy.message_size_allowed(server.snap, len(content))
        if not size.allowed:
            server.record("DATA", size)
            return size.reply
        problem = content_problem(content, server.limits)
        if problem is not None:
            server.record("DATA", problem)
            return problem.reply
        data = received_header(server, envelope) + content
        server.storing = True
        try:
            message_id = await self.service.store(server, envelope, data)
        except Exception as error:
            if isinstance(error, storage.StorageUnavailable):
                log.warning("%s message refused with 451: %s", server.facts.client_ip, error)
            else:
                log.exception("%s storing a message failed", server.facts.client_ip)
            server.record("DATA", policy.Decision(False, 451, "", "storage_failed", _("Storing the message failed.")),
                          reply(policy.STORAGE_FAILED))
            return reply(policy.STORAGE_FAILED)
        finally:
            server.storing = False
        server.messages_accepted += 1
        server.junk = 0
        server.record("DATA", policy.Decision(True, 250, "", "stored", _("Stored as message %(id)s.") % {"id": message_id}), "250")
        return f"250 2.0.0 OK: queued as {message_id}"

    async def handle_exception(self, error):
        """Never leak an exception into a reply: the client sees a generic 451 (the log has the rest)."""
        log.exception("SMTP session error")
        return LOCAL_ERROR


class ListenerService:
    """Runs the listener of one Server document until asked to stop."""

    def __init__(self, server_name, *, poll_interval=POLL_INTERVAL, heartbeat_interval=2.0, retry_interval=2.0,
                 idle_timeout=300.0, shutdown_grace=10.0, limits=None):
        self.server_name = server_name
        self.limits = limits or Limits()
        self.auth_throttle = AuthThrottle(self.limits)
        self.storage_retry_at = 0.0
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.retry_interval = retry_interval
        self.idle_timeout = idle_timeout
        self.shutdown_grace = shutdown_grace
        self.snapshot = None
        self.server_id = None
        self.handler = Handler(self)
        self.loop = None
        self.servers = {}
        self.bind_errors = {}
        self.last_bind_attempt = 0.0
        self.sessions = set()
        self.sessions_per_client = collections.Counter()
        self.refused_clients = set()
        self.finished_sessions = []
        self.tls_contexts = {}
        self.hash_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="smtp-auth")
        self.stopping = None
        self.stop_requested = False
        self.ready = None

    # --- database work, in the one ORM thread ---------------------------------------------------

    async def db(self, function, *args):
        return await sync_to_async(storage.bounded, thread_sensitive=True)(self.limits.store_wait, function, *args)

    async def authenticate(self, snap, facts, login, password):
        return await self.loop.run_in_executor(self.hash_pool, policy.authenticate, snap, facts, login, password)

    async def store(self, server, envelope, data):
        subject, message_id = message_headers(data)
        return await sync_to_async(self.store_now, thread_sensitive=True)({
            "mail_from": envelope.mail_from or "",
            "deliveries": list(getattr(envelope, "deliveries", [])),
            "data": data,
            "subject": subject,
            "message_id": message_id,
            "client_address": server.facts.client_ip or None,
            "client_helo": server.helo[:255],
            "local_port": server.facts.local_port,
            "tls": server.facts.tls,
            "authenticated_as": server.facts.authenticated_as or "",
            "session_id": server.session_id,
        })

    def store_now(self, fields):
        """Store in the ORM thread, failing at once while the database is known to be down.

        Stores wait in line for the one ORM thread: without the pause, each would wait out the lock
        timeout in turn and the last client would wait for all of them.
        """
        if time.monotonic() < self.storage_retry_at:
            raise storage.StorageUnavailable(_("The database failed a moment ago; not trying again yet."))
        try:
            return storage.bounded(self.limits.store_wait, storage.store_message, self.server_id, fields)
        except (OperationalError, InterfaceError):
            self.storage_retry_at = time.monotonic() + self.limits.storage_backoff
            raise

    # --- sessions --------------------------------------------------------------------------------

    def admission(self, client):
        """None when a new connection from ``client`` may have a session, else the 421 it gets.

        Logged once per address while it stays over its limit, not once per connection of a flood.
        """
        if len(self.sessions) >= self.limits.max_sessions:
            refused, key, count = TOO_MANY_SESSIONS, "*", len(self.sessions)
        elif self.sessions_per_client[client] >= self.limits.max_sessions_per_client:
            refused, key, count = TOO_MANY_FROM_CLIENT, client, self.sessions_per_client[client]
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

    def session_opened(self, session):
        self.sessions.add(session)
        self.sessions_per_client[session.facts.client_ip] += 1

    def session_closed(self, session):
        if session in self.sessions:
            self.sessions.discard(session)
            client = session.facts.client_ip
            self.sessions_per_client[client] -= 1
            if self.sessions_per_client[client] <= 0:
                del self.sessions_per_client[client]
            self.finished_sessions.append(storage.session_record(self.server_id, session))

    async def watch_sessions(self):
        """Close sessions past their lifetime or under the minimum data rate; forget old AUTH failures."""
        while True:
            await asyncio.sleep(self.limits.watch_interval)
            now = time.monotonic()
            for session in list(self.sessions):
                session.check_time_limits(now)
            if now - self.auth_throttle.pruned_at > AUTH_PRUNE_INTERVAL:
                self.auth_throttle.prune(now)

    def tls_context_for(self, snap, facts):
        """The TLS context of the credentials that serve the session's local address, per its own snapshot."""
        choice = policy.tls_credentials_for(snap, facts.local_ip)
        return self.tls_contexts.get(choice.name)

    # --- settings and ports ----------------------------------------------------------------------

    async def refresh(self, force=False):
        revision = await self.db(storage.current_revision)
        if not force and self.snapshot is not None and revision == self.snapshot.revision:
            return False
        snapshot, server_id = await self.db(storage.load, self.server_name)
        self.tls_contexts = self.build_tls_contexts(snapshot)
        self.snapshot, self.server_id = snapshot, server_id
        log.info("settings revision %s loaded for %s", snapshot.revision, self.server_name)
        return True

    def build_tls_contexts(self, snapshot):
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

    def desired_ports(self):
        wanted = {}
        for binding in policy.bindings(self.snapshot):
            if binding.enabled:
                for address in binding.addresses or (None,):
                    wanted[(binding.port_kind, address, binding.port)] = binding
        return wanted

    async def reconcile(self, retry=False):
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
                    lambda kind=kind: Admission(self, kind), host=address, port=port, reuse_address=True,
                    backlog=LISTEN_BACKLOG,
                )
            except OSError as error:
                if self.bind_errors.get(key) != str(error):
                    log.error("cannot bind %s port %s on %s: %s", kind, port, address or "*", error)
                self.bind_errors[key] = error.strerror or str(error)
            else:
                self.bind_errors.pop(key, None)
                log.info("listening on %s port %s on %s", kind, port, address or "*")

    def port_report(self):
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

    async def heartbeat(self, running=True):
        """Write the status and the finished sessions; if the database fails, keep them for the next try."""
        sessions, self.finished_sessions = self.finished_sessions, []
        try:
            await self.db(storage.heartbeat, self.server_id, {
                "pid": os.getpid(), "host": socket.gethostname(), "revision": self.snapshot.revision,
                "open_sessions": len(self.sessions), "running": running, "ports": self.port_report(),
            }, sessions)
        except Exception:
            self.finished_sessions = (sessions + self.finished_sessions)[-MAX_PENDING_SESSION_LOGS:]
            raise

    # --- main loop -------------------------------------------------------------------------------

    async def run(self):
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

    def stop(self):
        """Ask the listener to stop, from any thread, even before ``run`` has begun."""
        self.stop_requested = True
        if self.stopping is not None:
            self.loop.call_soon_threadsafe(self.stopping.set)

    async def shutdown(self):
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
