"""The listener's side of one connection: bytes to the session machine, its replies to the socket.

``SmtpProtocol`` is an ``asyncio.Protocol`` and holds no SMTP rule: ``core.session.SmtpSession``
decides every reply. The protocol writes what the machine answers (one write per batch of pipelined
commands), and carries out the effects the machine asks for: TLS through ``loop.start_tls``, the
password check off the event loop, the durable store before the 250. While an effect runs, reading
is paused once a client has sent more than ``WAITING_INPUT_LIMIT`` ahead (at once for a TLS
handshake), so a client cannot pile up input; the machine drops whatever was sent in clear before a
TLS handshake.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from django.utils.translation import gettext as _

from smtpservice import metrics
from smtpservice.core import policy, replies
from smtpservice.core.session import CheckCredentials, CheckFailed, Close, SmtpSession, StartTls
from smtpservice.listener import events, resolve

if TYPE_CHECKING:
    from smtpservice.listener.service import ListenerService

log = logging.getLogger("smtpservice.listener")

WAITING_INPUT_LIMIT = 64 * 1024
"""Bytes a client may send ahead while its message is stored or its password checked, before reading
pauses. Reading is not paused for every store: that is two system calls per message, and a client that
pipelines its next commands has them answered as soon as the store is done."""


class SmtpProtocol(asyncio.Protocol):
    """One connection. Refused before a session is built when the listener is over its session limits."""

    def __init__(self, service: ListenerService, port_kind: str) -> None:
        self.service = service
        self.port_kind = port_kind
        self.transport: asyncio.Transport | None = None
        self.session: SmtpSession | None = None
        self.task: asyncio.Task | None = None
        self.opened = self.last_activity = time.monotonic()
        self.bytes_received = 0
        self.data_started: tuple[float, int] | None = None
        self.storing = False
        self.finished = False

    # --- asyncio's calls ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is not None:
            return  # loop.start_tls hands the same protocol its TLS transport: nothing new begins.
        self.transport = transport
        local = transport.get_extra_info("sockname") or ("", 0)
        peer = transport.get_extra_info("peername") or ("", 0)
        metrics.connection_opened(local[1])
        refused = self.service.admission(peer[0])
        if refused is not None:
            # On the SSL port a clear-text reply means nothing to the client, and a handshake is what a flood costs.
            if self.port_kind == policy.TCP:
                transport.write(f"{refused.line()}\r\n".encode("ascii"))
                metrics.reply(refused.code, "session_limit")
            transport.close()
            self.finished = True
            return
        facts = policy.SessionFacts(local_ip=local[0], local_port=local[1], port=self.port_kind, client_ip=peer[0])
        service = self.service
        self.session = SmtpSession(service.snapshot, facts, service.limits)
        service.session_opened(self)
        if service.names_needed or service.mapped_names:
            # Host-name entries are in force: look the names up first (bounded; a directory of addresses pays nothing).
            transport.pause_reading()
            self.task = asyncio.ensure_future(self.start_with_names())
            return
        self.apply(self.guarded(self.session.start))

    async def start_with_names(self) -> None:
        """The client's confirmed host name and the name it connected to, then the greeting (spec 3.2)."""
        session, service = self.session, self.service
        facts = session.facts
        client_host = await resolve.client_name(facts.client_ip) if service.names_needed else None
        local_host = await resolve.local_name(facts.local_ip, service.mapped_names) if service.mapped_names else None
        session.facts = replace(facts, client_host=client_host, local_host=local_host)
        self.task = None
        if self.transport is None:
            self.finish()
            return
        self.transport.resume_reading()
        self.apply(self.guarded(session.start))

    def data_received(self, data: bytes) -> None:
        if self.session is None:
            return
        self.bytes_received += len(data)
        self.last_activity = time.monotonic()
        self.apply(self.guarded(self.session.feed, data))
        if self.task is not None and len(self.session.inbuf) > WAITING_INPUT_LIMIT and self.transport is not None:
            self.transport.pause_reading()  # resumed when the effect is done

    def guarded(self, step: Callable[..., object | None], *args: object) -> object | None:
        """Run one step of the machine; an exception never leaks into a reply: the client gets a generic 451
        and the session goes on (the log has the rest), or ends if even that fails."""
        try:
            return step(*args)
        except Exception:
            log.exception("SMTP session error")
        detail = _("An unexpected error in the listener.")
        try:
            return self.session.recover(detail)
        except Exception:
            log.exception("SMTP session error while recovering")
            return self.session.expire(replies.LOCAL_ERROR, "local_error", detail)

    def connection_lost(self, error: Exception | None) -> None:
        if self.task is not None and not self.storing:
            self.task.cancel()
        self.transport = None
        self.finish()

    # --- what the machine asks for ----------------------------------------------------------------

    def apply(self, effect: object | None) -> None:
        """Write the machine's replies in one write, then carry out its effect."""
        session = self.session
        out = session.take()
        for code, rule in session.tally:
            metrics.reply(code, rule)
        session.tally.clear()
        transport = self.transport
        if out and transport is not None:
            transport.write(out)
        if session.in_data:
            if self.data_started is None:
                self.data_started = (time.monotonic(), self.bytes_received)
        else:
            self.data_started = None
        if effect is None:
            return
        if isinstance(effect, Close):
            self.close()
            return
        if transport is not None and isinstance(effect, StartTls):
            transport.pause_reading()
        self.task = asyncio.ensure_future(self.carry_out(effect))

    async def carry_out(self, effect: object) -> None:
        session = self.session
        if isinstance(effect, StartTls):
            following = await self.start_tls(session)
        elif isinstance(effect, CheckCredentials):
            outcome = await self.service.check_credentials(self, effect)
            self.count_auth(effect.login, outcome)
            following = self.guarded(session.credentials_done, outcome)
        else:
            self.storing = True
            try:
                message_id, error = await self.service.store(self, effect.envelope)
            finally:
                self.storing = False
            following = self.guarded(session.store_done, message_id, error)
        self.task = None
        if self.transport is None:
            self.finish()
            return
        if not session.closed:
            self.transport.resume_reading()
        self.apply(following)

    def count_auth(self, login: str, outcome: object) -> None:
        """One metric per AUTH checked, and one log line per failure (what fail2ban counts)."""
        if isinstance(outcome, CheckFailed):
            return
        succeeded = isinstance(outcome, policy.Decision) and outcome.allowed
        metrics.auth(succeeded)
        if not succeeded:
            rule = outcome.rule if isinstance(outcome, policy.Decision) else "auth_throttled"
            facts = self.session.facts
            events.auth_failed(facts.client_ip, facts.local_port, login, rule)

    async def start_tls(self, session: SmtpSession) -> object | None:
        """TLS on this connection, with a bounded handshake; the session ends, unanswered, if it fails."""
        context = self.service.tls_context_for(session.snap, session.facts)
        if context is None:
            return session.tls_done(False, _("The TLS credentials of this address could not be loaded."))
        loop = asyncio.get_running_loop()
        try:
            self.transport = await loop.start_tls(
                self.transport, self, context, server_side=True, ssl_handshake_timeout=self.service.limits.tls_handshake_timeout,
            )
        except (TimeoutError, OSError, ConnectionError, ssl.SSLError, RuntimeError) as error:
            log.info("%s TLS handshake failed: %s", session.facts.client_ip, error)
            self.transport = None
            # asyncio tells the protocol nothing when a handshake fails: end the session here, or it would
            # stay counted (and its client's address too) for ever.
            session.tls_done(False, str(error) or type(error).__name__)
            self.finish()
            return None
        return session.tls_done(True)

    # --- ending --------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close once the replies are written; no further command is read."""
        if self.transport is not None:
            self.transport.close()

    def expire(self, reply: replies.Reply, rule: str, detail: str) -> None:
        """Close a session that broke a time limit, telling the client why, whatever it is doing."""
        if self.session is None or self.session.closed:
            return
        self.apply(self.session.expire(reply, rule, detail))

    def finish(self) -> None:
        if not self.finished:
            self.finished = True
            if self.session is not None:
                self.service.session_closed(self)

    def idle_for(self, now: float) -> float:
        return now - self.last_activity

    def check_time_limits(self, now: float, idle_timeout: float) -> None:
        """Session lifetime, idle time and minimum data rate; a message being stored is never cut off.

        During DATA only the data rate applies: a client sending a large message slowly but steadily is
        not idle (finding 6 of the audit).
        """
        if self.storing or self.transport is None or self.session is None or self.task is not None:
            return
        limits = self.service.limits
        if now - self.opened > limits.session_lifetime:
            self.expire(replies.SESSION_TOO_LONG, "session_lifetime", _(
                "The session lasted more than %(seconds)s seconds."
            ) % {"seconds": limits.session_lifetime})
            return
        if self.data_started is None:
            if self.idle_for(now) > idle_timeout:
                self.expire(replies.IDLE_TIMEOUT, "idle_timeout", _(
                    "The client sent nothing for %(seconds)s seconds."
                ) % {"seconds": int(idle_timeout)})
            return
        started, received_before = self.data_started
        elapsed = now - started
        received = self.bytes_received - received_before
        if elapsed > limits.data_grace and received < limits.min_data_rate * (elapsed - limits.data_grace):
            self.expire(replies.DATA_TOO_SLOW, "min_data_rate", _(
                "%(bytes)s bytes of message data in %(seconds).1f seconds: under %(rate)s bytes per second."
            ) % {"bytes": received, "seconds": elapsed, "rate": limits.min_data_rate})
