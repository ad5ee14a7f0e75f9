"""The SMTP listener of one Server document, on aiosmtpd, obeying the directory live.

aiosmtpd's ``SMTP`` is the protocol state machine; ``DominoSMTP`` overrides the commands whose answer
depends on our settings and asks ``smtpservice.policy`` for every decision, so the listener never
decides anything itself. ``ListenerService`` owns the ports: it keeps an immutable settings snapshot,
checks the directory's revision a few times a second (one cheap query, never per connection),
rebinds ports whose number or status changed without touching sessions in progress, reports bind
failures and retries them. Database work runs in one worker thread, password hashing in another
pool: the event loop never waits on either.
"""
import asyncio
import base64
import binascii
import collections
import email.utils
import logging
import os
import re
import socket
import time
import uuid
from asyncio import sslproto
from concurrent.futures import ThreadPoolExecutor
from email.parser import BytesHeaderParser

from aiosmtpd.smtp import MISSING, SMTP, syntax
from asgiref.sync import sync_to_async
from django.utils.translation import gettext as _

from smtpservice import policy, storage
from smtpservice.tlscontext import server_context

log = logging.getLogger("smtpservice.listener")

IDENT = "ESMTP Service ready"
POLL_INTERVAL = 0.25
"""Seconds between checks of the directory's revision: a saved change applies within one second (spec 3.10)."""
TLS_HANDSHAKE_TIMEOUT = 10.0
"""Seconds a client has to finish a TLS handshake (SSL port and STARTTLS)."""

# aiosmtpd's own texts for two cases the spec words differently (spec section 6).
AIOSMTPD_REPLACEMENTS = {
    "552 Error: Too much mail data": "{} {}".format(*policy.TOO_LARGE),
    "552 Error: message size exceeds fixed maximum message size": "{} {}".format(*policy.TOO_LARGE),
}
SIZE_PARAMETER = re.compile(r"\bSIZE=(\d+)\b", re.IGNORECASE)


def reply(pair):
    code, text = pair
    return f"{code} {text}"


class CommandTable(dict):
    """aiosmtpd's table of command methods, which answers a command it does not list with ``fallback(name)``.

    aiosmtpd answers unknown commands itself and closes the session after five of them; through this
    table they reach our replies and count toward the Error limit like any other error (spec 3.9).
    """

    def __init__(self, methods, fallback):
        super().__init__(methods)
        self.fallback = fallback

    def get(self, name, default=None):
        method = super().get(name)
        return method if method is not None else self.fallback(name)


class DominoSMTP(SMTP):
    """One SMTP session, answered as the settings snapshot of its connection time says."""

    def __init__(self, service, port_kind):
        self.service = service
        self.snap = service.snapshot
        self.port_kind = port_kind
        self.facts = None
        self.refusal = None
        self.greeted = False
        self.errors = 0
        self.events = []
        self.session_id = uuid.uuid4().hex[:16]
        self.started_at = time.time()
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
        self._smtp_methods = CommandTable(self._smtp_methods, self.unknown_command)

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
        greeting = policy.session_greeting(self.snap, self.facts)
        self.record("CONNECT", greeting, greeting.reply or "220")
        if not greeting.allowed:
            self.refusal = greeting
            self._smtp_methods = CommandTable({"QUIT": self.smtp_QUIT}, self.refused_command)
        self.service.session_opened(self)

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
        """TLS from the first byte (SSL port) or after STARTTLS, with a bounded handshake."""
        waiter = self.loop.create_future()
        self._tls_protocol = sslproto.SSLProtocol(
            self.loop, self, context, waiter, server_side=True, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
        )
        self._original_transport = self.transport
        self._original_transport.set_protocol(self._tls_protocol)
        self.transport = self._tls_protocol._app_transport
        self._tls_protocol.connection_made(self._original_transport)
        try:
            await waiter
        except (OSError, asyncio.TimeoutError, ConnectionError) as error:
            log.info("%s TLS handshake failed: %s", self.facts.client_ip, error)
            self.events.append({"command": "TLS", "rule": "tls_handshake_failed", "detail": str(error), "reply": ""})
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

    def record(self, command, decision, reply_text=None):
        """Keep one step of the session log: the command, the rule that decided, why, and the reply."""
        self.events.append({
            "command": command,
            "rule": decision.rule,
            "detail": str(decision.detail),
            "reply": reply_text if reply_text is not None else decision.reply,
        })

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
        args = (arg or "").split()
        if not 1 <= len(args) <= 2:
            await self.push("501 5.5.4 Syntax: AUTH mechanism [initial-response]")
            return
        mechanism = args[0].upper()
        if mechanism not in policy.auth_mechanisms(self.snap, self.facts):
            await self.push("504 5.5.4 Unrecognized authentication type")
            return
        credentials = await self.read_credentials(mechanism, args[1] if len(args) == 2 else None)
        if credentials is None:
            return
        login, password = credentials
        decision = await self.service.authenticate(self.snap, self.facts, login, password)
        self.record("AUTH", decision, decision.reply or "235")
        if not decision.allowed:
            await self.push(decision.reply)
            if decision.close:
                self.close()
            return
        self.session.authenticated = True
        self.facts = self.facts.after_auth(decision.person.full_name)
        await self.push("235 2.7.0 Authentication successful")

    async def read_credentials(self, mechanism, initial):
        """(login, password) from AUTH PLAIN or LOGIN, or None once a 5xx has been sent."""
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
        response = await self.challenge_auth(prompt)
        return None if response is MISSING else response

    async def decode_response(self, text):
        if text == "=":
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
        decision = policy.mail_from_allowed(self.snap, self.facts, int(size.group(1)) if size else None)
        if not decision.allowed:
            self.record("MAIL", decision)
            await self.push(decision.reply)
            return
        await super().smtp_MAIL(arg)
        self.record("MAIL", decision, self.last_reply)

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
        data = received_header(server, envelope) + envelope.original_content
        size = policy.message_size_allowed(server.snap, len(envelope.original_content))
        if not size.allowed:
            server.record("DATA", size)
            return size.reply
        try:
            message_id = await self.service.store(server, envelope, data)
        except Exception:
            log.exception("%s storing a message failed", server.facts.client_ip)
            server.record("DATA", policy.Decision(False, 451, "", "storage_failed", _("Storing the message failed.")),
                          reply(policy.STORAGE_FAILED))
            return reply(policy.STORAGE_FAILED)
        server.messages_accepted += 1
        server.record("DATA", policy.Decision(True, 250, "", "stored", _("Stored as message %(id)s.") % {"id": message_id}), "250")
        return f"250 2.0.0 OK: queued as {message_id}"

    async def handle_exception(self, error):
        """Never leak an exception into a reply: the client sees a generic 451 (the log has the rest)."""
        log.exception("SMTP session error")
        return "451 4.3.0 Local error in processing"


def received_header(server, envelope):
    """The trace header this server adds (RFC 5321 s 4.4), with the protocol per RFC 3848."""
    facts = server.facts
    protocol = "ESMTP" if server.session.extended_smtp else "SMTP"
    if facts.tls:
        protocol += "S"
    if facts.authenticated_as:
        protocol += "A"
    recipient = f"\r\n\tfor <{envelope.rcpt_tos[0]}>" if len(envelope.rcpt_tos) == 1 else ""
    helo = sanitize_header_text(server.helo) or "unknown"
    return (
        f"Received: from {helo} ([{facts.client_ip}])\r\n\tby {server.snap.host_name} with {protocol} "
        f"id {server.session_id}{recipient};\r\n\t{email.utils.formatdate(localtime=True)}\r\n"
    ).encode("ascii", "replace")


def sanitize_header_text(text):
    return "".join(ch for ch in (text or "") if 32 < ord(ch) < 127)[:200]


def message_headers(data):
    headers = BytesHeaderParser().parsebytes(data)
    return str(headers.get("Subject", ""))[:500], str(headers.get("Message-ID", ""))[:500]


class ListenerService:
    """Runs the listener of one Server document until asked to stop."""

    def __init__(self, server_name, *, poll_interval=POLL_INTERVAL, heartbeat_interval=2.0, retry_interval=2.0,
                 idle_timeout=300.0, shutdown_grace=10.0):
        self.server_name = server_name
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
        self.finished_sessions = []
        self.tls_contexts = {}
        self.hash_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="smtp-auth")
        self.stopping = None
        self.stop_requested = False
        self.ready = None

    # --- database work, in the one ORM thread ---------------------------------------------------

    @staticmethod
    async def db(function, *args):
        return await sync_to_async(function, thread_sensitive=True)(*args)

    async def authenticate(self, snap, facts, login, password):
        return await self.loop.run_in_executor(self.hash_pool, policy.authenticate, snap, facts, login, password)

    async def store(self, server, envelope, data):
        subject, message_id = message_headers(data)
        return await self.db(
            storage.store_message, self.server_id, {
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
            },
        )

    # --- sessions --------------------------------------------------------------------------------

    def session_opened(self, session):
        self.sessions.add(session)

    def session_closed(self, session):
        if session in self.sessions:
            self.sessions.discard(session)
            self.finished_sessions.append(storage.session_record(self.server_id, session))

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
                    lambda kind=kind: DominoSMTP(self, kind), host=address, port=port, reuse_address=True,
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
        sessions, self.finished_sessions = self.finished_sessions, []
        await self.db(storage.heartbeat, self.server_id, {
            "pid": os.getpid(), "host": socket.gethostname(), "revision": self.snapshot.revision,
            "open_sessions": len(self.sessions), "running": running, "ports": self.port_report(),
        }, sessions)

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
        next_heartbeat = time.monotonic() + self.heartbeat_interval
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.stopping.wait(), self.poll_interval)
                break
            except asyncio.TimeoutError:
                pass
            try:
                changed = await self.refresh()
                await self.reconcile(retry=not changed)
                if time.monotonic() >= next_heartbeat:
                    await self.heartbeat()
                    await self.db(storage.close_old_connections)
                    next_heartbeat = time.monotonic() + self.heartbeat_interval
            except Exception:
                log.exception("listener housekeeping failed; retrying")
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
