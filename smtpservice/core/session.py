"""The one SMTP session state machine: bytes in, replies and effects out, no sockets.

``SmtpSession`` is the only place that knows the order of SMTP commands, the Error limit, what a
refused greeting does and which reply (``core.replies``) each case gets; it asks ``core.policy`` for
every decision. The listener (``smtpservice.listener.protocol``) feeds it the bytes a client sends and
the outcome of the work it cannot do itself (a TLS handshake, a password check off the event loop,
a durable store), and writes what it answers: one write per batch of pipelined commands (RFC 2920).
The console's policy simulator runs the same machine through ``Simulation``, with no sockets.

Effects the machine asks for (returned by ``start``, ``feed`` and the ``*_done`` events):
``StartTls``, ``CheckCredentials``, ``StoreMessage`` and ``Close``. While an effect is pending the
machine reads nothing more; bytes that arrive meanwhile wait in its buffer, except those sent in clear
before a TLS handshake, which are dropped (RFC 3207 s 4.2, CVE-2024-34083).
"""
from __future__ import annotations

import base64
import binascii
import email.utils
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from smtpservice.core import message as messages
from smtpservice.core import policy, replies, texts
from smtpservice.core.limits import COMMAND_LINE_LIMIT, MAIL_LINE_LIMIT, TEXT_LINE_LIMIT, Limits

_ = texts.explain

HTTP_VERBS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "CONNECT", "PATCH", "TRACE"})
"""A web client or proxy probe on the SMTP port: the session is closed at once (Postfix: smtpd_forbidden_commands)."""
JUNK_COMMANDS = frozenset({"NOOP", "RSET", "VRFY", "HELP", "HELO", "EHLO"})
"""Commands that count toward the junk limit until a message is accepted (Postfix: smtpd_junk_command_limit)."""
SYNTAX = {
    "EHLO": "EHLO hostname", "HELO": "HELO hostname", "MAIL": "MAIL FROM: <address>", "RCPT": "RCPT TO: <address>",
    "DATA": "DATA", "RSET": "RSET", "NOOP": "NOOP [string]", "QUIT": "QUIT", "VRFY": "VRFY <address>",
    "HELP": "HELP [command]", "STARTTLS": "STARTTLS", "AUTH": "AUTH <mechanism>", "EXPN": "EXPN <list>",
}
"""The syntax of each command, for 501 replies and HELP (RFC 5321 s 4.1)."""
HELO_NAME = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|(?:IPv6:)?[0-9A-Fa-f:.]+|[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,253}[A-Za-z0-9])?)$")
"""A domain or address literal: what may stand after "from" in a Received header (RFC 5321 s 4.4)."""
DOT_STUFFED = re.compile(rb"(?m)^\.")
"""The extra dot a client puts before a line that begins with one (RFC 5321 s 4.5.2)."""

COMMAND, DATA, SASL, WAITING, CLOSED = "command", "data", "sasl", "waiting", "closed"


# --- Effects the adapter carries out ------------------------------------------------------------------


@dataclass(frozen=True)
class StartTls:
    """Start TLS on the connection, then call ``tls_done``."""


@dataclass(frozen=True)
class CheckCredentials:
    """Check these credentials (throttle, then the password hash, off the event loop), then call ``credentials_done``."""

    login: str
    password: str


@dataclass(frozen=True)
class Envelope:
    """An accepted message as the store needs it: ``deliveries`` are (address, kind, person full name)."""

    mail_from: str
    deliveries: tuple
    data: bytes
    helo: str
    session_id: str


@dataclass(frozen=True)
class StoreMessage:
    """Store the message durably, then call ``store_done`` with its id (or an error)."""

    envelope: Envelope


@dataclass(frozen=True)
class Close:
    """Close the connection once the pending output is written."""


CLOSE = Close()
START_TLS = StartTls()


# --- Outcomes the adapter reports ---------------------------------------------------------------------


@dataclass(frozen=True)
class Throttled:
    """The AUTH throttle refuses further attempts: the client gets 421 and the session ends."""

    reason: str


@dataclass(frozen=True)
class CheckFailed:
    """The credentials could not be checked (the database or the hasher failed): 454, not counted."""

    reason: str


def _decision(reply: replies.Reply, rule: str, detail: str, allowed: bool = False, close: bool = False) -> policy.Decision:
    return policy.Decision(allowed, reply.code, reply.text, rule, detail, close=close)


@dataclass
class Transaction:
    """One MAIL FROM ... DATA: the sender, its parameters and the accepted recipients."""

    mail_from: str | None = None
    deliveries: list = field(default_factory=list)
    recipients: int = 0


class SmtpSession:
    """One inbound session on a settings snapshot, from the first byte to the close.

    ``facts`` is the connection as the listener sees it (local address and port, port kind, client
    address). Replies accumulate in ``outbox`` (bytes) until the adapter takes them with ``take()``;
    ``events`` is the session log: the command, the rule that decided, why, and the reply.
    """

    def __init__(self, snap: policy.SettingsSnapshot, facts: policy.SessionFacts, limits: Limits | None = None,
                 session_id: str | None = None) -> None:
        self.snap = snap
        self.facts = facts
        self.limits = limits or Limits()
        self.session_id = session_id or uuid.uuid4().hex[:16]
        self.started_at = time.time()
        self.outbox = bytearray()
        self.inbuf = bytearray()
        self.phase = COMMAND
        self.events: list[dict] = []
        self.refusal: policy.Decision | None = None
        self.greeted = False
        self.extended = False
        self.helo = ""
        self.errors = 0
        self.junk = 0
        self.auth_failures = 0
        self.messages_accepted = 0
        self.last_reply = ""
        self.transaction = Transaction()
        self.discarding = False
        self.message = bytearray()
        self.message_too_long_line = False
        self.sasl: Callable[[bytes], object] | None = None
        self.pending_login = ""
        self.after_wait = COMMAND
        self.last_decision: policy.Decision | None = None
        self.tally: list[tuple[int, str]] = []
        """(code, rule) of each reply written since the adapter last drained it: what the metrics count."""

    # --- the adapter's side ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.phase == CLOSED

    @property
    def in_data(self) -> bool:
        return self.phase == DATA

    def take(self) -> bytes:
        """The replies written since the last call, as one buffer for one write."""
        out = bytes(self.outbox)
        self.outbox.clear()
        return out

    def start(self) -> object | None:
        """The connection is open: the SSL port begins with TLS, the TCP/IP port with the greeting."""
        if self.facts.port == policy.SSL:
            if self.credentials_name() is None:
                self.record("CONNECT", policy.Decision(False, None, "", "no_tls_credentials", _(
                    "No TLS credentials serve this address, so the TLS handshake of the SSL port cannot start: the "
                    "listener closes the connection before the greeting."
                )), "")
                self.phase = CLOSED
                return CLOSE
            self.phase = WAITING
            self.after_wait = "greeting"
            return START_TLS
        return self.greet()

    def feed(self, data: bytes) -> object | None:
        """Bytes from the client; returns the effect to carry out, if any, once the replies are written."""
        if self.phase == CLOSED:
            return None
        self.inbuf += data
        if self.phase == WAITING:
            return None
        return self.run()

    def tls_done(self, ok: bool, error: str = "") -> object | None:
        """The handshake asked for by ``StartTls`` finished (or failed: the session ends, unanswered)."""
        if not ok:
            self.record("TLS", policy.Decision(False, None, "", "tls_handshake_failed", error or _("The TLS handshake failed.")), "")
            self.phase = CLOSED
            return CLOSE
        self.phase = COMMAND
        if self.after_wait == "greeting":
            return self.greet()
        self.facts = self.facts.after_starttls()
        self.greeted = self.extended = False
        self.transaction = Transaction()
        return self.run()

    def credentials_done(self, outcome: object) -> object | None:
        """The result of ``CheckCredentials``: an ``AuthDecision``, ``Throttled`` or ``CheckFailed``."""
        self.phase = COMMAND
        if isinstance(outcome, Throttled):
            self.refuse_and_close("AUTH", replies.AUTH_THROTTLED, "auth_throttled", outcome.reason)
            return CLOSE
        if isinstance(outcome, CheckFailed):
            self.reply("AUTH", replies.AUTH_TEMPORARY, _decision(replies.AUTH_TEMPORARY, "auth_error", outcome.reason))
            return self.run()
        decision = outcome
        if not decision.allowed:
            self.auth_failures += 1
            self.reply("AUTH", (decision.code, decision.text), decision, closes=decision.close)
            return CLOSE if self.phase == CLOSED else self.run()
        self.facts = self.facts.after_auth(decision.person.full_name)
        self.reply("AUTH", replies.AUTHENTICATED, decision)
        return self.run()

    def store_done(self, message_id: object | None, error: str = "") -> object | None:
        """The result of ``StoreMessage``: its id once committed, or None with why it failed (451)."""
        self.phase = COMMAND
        if message_id is None:
            self.reply("DATA", replies.STORAGE_FAILED, _decision(replies.STORAGE_FAILED, "storage_failed", error or _(
                "Storing the message failed."
            )))
        else:
            self.messages_accepted += 1
            self.junk = 0
            self.reply("DATA", replies.QUEUED, _decision(
                replies.QUEUED, "stored", _("Stored as message %(id)s.") % {"id": message_id}, allowed=True,
            ), values={"id": message_id})
        self.transaction = Transaction()
        return self.run()

    def expire(self, reply: replies.Reply, rule: str, detail: str) -> Close:
        """A limit the listener watches (lifetime, data rate, idle time, shutdown) ends the session with 421."""
        self.refuse_and_close("LIMIT", reply, rule, detail)
        return CLOSE

    def recover(self, detail: str) -> object | None:
        """A command failed inside the listener: the client gets a generic 451 and the session goes on."""
        if self.phase != CLOSED:
            self.phase = COMMAND
        self.sasl = None
        self.reply("ERROR", replies.LOCAL_ERROR, _decision(replies.LOCAL_ERROR, "local_error", detail))
        return self.run()

    def credentials_name(self) -> str | None:
        """The TLS credentials serving the local address, when the snapshot holds them."""
        name = policy.tls_credentials_for(self.snap, self.facts.local_ip, self.facts.local_host).name
        return name if name in self.snap.credentials else None

    # --- replies ----------------------------------------------------------------------------------

    def write(self, code: int, text: str, rule: str = "") -> None:
        self.tally.append((code, rule))
        lines = text.split("\n")
        for line in lines[:-1]:
            self.outbox += f"{code}-{line}\r\n".encode("utf-8", "replace")
        last = f"{code} {lines[-1]}"
        self.outbox += f"{last}\r\n".encode("utf-8", "replace")
        self.last_reply = last

    def reply(self, command: str, reply: tuple, decision: policy.Decision | None = None, closes: bool = False,
              values: dict | None = None, record: bool = True) -> None:
        """Send ``reply`` for ``command``; a 4xx/5xx counts toward the Error limit, past which 421 closes instead."""
        code, text = reply
        if values:
            text = text.format(**values)
        if policy.counts_as_error(code) and code != replies.ERROR_LIMIT.code:
            self.errors += 1
            limit = policy.within_error_limit(self.snap, self.errors)
            if not limit.allowed:
                if record and decision is not None:
                    self.record(command, decision, f"{code} {text}")
                self.record("ERROR", limit)
                self.write(limit.code, limit.text, limit.rule)
                self.phase = CLOSED
                return
        if record and decision is not None:
            self.record(command, decision, f"{code} {text.partition(chr(10))[0]}")
        self.write(code, text, decision.rule if decision is not None else "")
        if closes:
            self.phase = CLOSED

    def refuse_and_close(self, command: str, reply: replies.Reply, rule: str, detail: str) -> None:
        self.record(command, _decision(reply, rule, detail, close=True))
        self.write(*reply, rule)
        self.phase = CLOSED

    def record(self, command: str, decision: policy.Decision, reply_text: str | None = None) -> None:
        """Keep one step of the session log: the command, the rule that decided, why, and the reply."""
        self.last_decision = decision
        self.events.append({
            "command": command, "rule": decision.rule, "detail": texts.keep(decision.detail),
            "reply": reply_text if reply_text is not None else decision.reply,
        })

    # --- the greeting -------------------------------------------------------------------------------

    def greet(self) -> object | None:
        greeting = policy.session_greeting(self.snap, self.facts)
        if not greeting.allowed:
            # The refused greeting replaces the 220 and is not counted as an error (spec 3.3).
            self.refusal = greeting
            self.record("CONNECT", greeting)
            self.write(greeting.code, greeting.text, greeting.rule)
        else:
            self.record("CONNECT", greeting, "220")
            self.write(replies.GREETING.code, replies.GREETING.text.format(host=self.snap.host_name), greeting.rule)
        return self.run()

    # --- reading ------------------------------------------------------------------------------------

    def run(self) -> object | None:
        """Answer every complete line in the buffer until an effect is needed or the input runs out."""
        while self.phase not in (WAITING, CLOSED):
            if self.phase == DATA:
                effect = self.read_data()
                if effect is None and self.phase == DATA:
                    return None  # The end of the message has not arrived yet.
            else:
                line = self.read_line(TEXT_LINE_LIMIT if self.phase == SASL else self.line_limit())
                if line is None:
                    return None
                effect = self.sasl_response(line) if self.phase == SASL else self.command(line)
            if effect is not None:
                return effect
        return CLOSE if self.phase == CLOSED else None

    def line_limit(self) -> int:
        return MAIL_LINE_LIMIT if self.snap.config.size_extension else COMMAND_LINE_LIMIT

    def read_line(self, limit: int) -> bytes | None:
        """The next line without its CR LF, b"\\0" for a line over ``limit`` (read and dropped), or None."""
        end = self.inbuf.find(b"\r\n")
        if end < 0:
            if len(self.inbuf) > limit:
                # Too long already: drop what came, remember to drop the rest of the line too.
                self.inbuf.clear()
                self.discarding = True
            return None
        line = bytes(self.inbuf[:end])
        del self.inbuf[:end + 2]
        if self.discarding or end + 2 > limit:
            self.discarding = False
            return b"\0"
        return line

    # --- commands -----------------------------------------------------------------------------------

    def command(self, raw: bytes) -> object | None:
        if raw == b"\0":
            self.reply("LINE", replies.LINE_TOO_LONG, _decision(replies.LINE_TOO_LONG, "line_too_long", _(
                "The command line is longer than the limit (RFC 5321 s 4.5.3.1.4)."
            )))
            return None
        if messages.BARE_LINE_END.search(raw):
            name = raw.split(b" ", 1)[0][:20].decode("ascii", "replace").upper()
            self.reply(name, replies.BARE_LINE_END_IN_COMMAND, _decision(replies.BARE_LINE_END_IN_COMMAND, "bare_line_end", _(
                "The command line holds a CR or LF that is not part of its CR LF end (RFC 5321 s 2.3.8)."
            )))
            return None
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.reply("LINE", replies.NOT_UTF8, _decision(replies.NOT_UTF8, "not_utf8", _("The command line is not UTF-8.")))
            return None
        name, _space, arg = line.partition(" ")
        name = name.upper()
        arg = arg.strip()
        if not name:
            self.reply("LINE", replies.BAD_SYNTAX, _decision(replies.BAD_SYNTAX, "bad_syntax", _("An empty command line.")))
            return None
        if name in HTTP_VERBS:
            self.record(name, policy.Decision(False, None, "", "http_request", _(
                "%(verb)s is an HTTP request, not SMTP: the session is closed without a reply."
            ) % {"verb": name}, close=True), "")
            self.phase = CLOSED
            return CLOSE
        if self.refusal is not None and name != "QUIT":
            later = policy.after_refused_greeting(self.refusal)
            self.reply(name, (later.code, later.text), later)
            return None
        if name in JUNK_COMMANDS:
            self.junk += 1
            if self.junk > self.limits.junk_commands:
                self.refuse_and_close(name, replies.TOO_MANY_JUNK, "junk_commands", _(
                    "More than %(limit)s NOOP, RSET, VRFY, HELP, HELO or EHLO commands without a message."
                ) % {"limit": self.limits.junk_commands})
                return CLOSE
        handler = COMMANDS.get(name)
        if handler is None:
            safe = "".join(ch for ch in name if 32 < ord(ch) < 127)[:40]
            self.reply(name[:20], replies.UNKNOWN_COMMAND, _decision(replies.UNKNOWN_COMMAND, "unknown_command", _(
                "The command is not SMTP (RFC 5321 s 4.2.4)."
            )), values={"name": safe})
            return None
        return handler(self, arg)

    def syntax_error(self, name: str) -> None:
        self.reply(name, replies.SYNTAX, _decision(replies.SYNTAX, "syntax", _("The command's arguments are malformed.")),
                   values={"syntax": SYNTAX[name]})

    def smtp_EHLO(self, arg: str) -> None:
        if not arg:
            return self.syntax_error("EHLO")
        self.greeted = self.extended = True
        self.helo = arg
        self.transaction = Transaction()
        offer = policy.ehlo_extensions(self.snap, self.facts)
        self.reply("EHLO", (250, "\n".join([self.snap.host_name, *offer])), policy.Decision(True, 250, "", "ehlo", offer.detail))
        return None

    def smtp_HELO(self, arg: str) -> None:
        if not arg:
            return self.syntax_error("HELO")
        self.greeted = True
        self.extended = False
        self.helo = arg
        self.transaction = Transaction()
        self.reply("HELO", replies.HELO_OK, _decision(replies.HELO_OK, "helo", _(
            "HELO greets without extensions: no AUTH, STARTTLS, SIZE or PIPELINING is offered (RFC 5321 s 4.1.1.1)."
        ), allowed=True), values={"host": self.snap.host_name})
        return None

    def smtp_NOOP(self, arg: str) -> None:
        self.reply("NOOP", replies.OK, None)

    def smtp_RSET(self, arg: str) -> None:
        if arg:
            return self.syntax_error("RSET")
        self.transaction = Transaction()
        self.reply("RSET", replies.OK, None)
        return None

    def smtp_QUIT(self, arg: str) -> Close:
        self.record("QUIT", _decision(replies.CLOSING, "quit", _("The client ends the session."), allowed=True))
        self.write(*replies.CLOSING, "quit")
        self.phase = CLOSED
        return CLOSE

    def smtp_HELP(self, arg: str) -> None:
        decision = policy.help_allowed(self.snap)
        if not decision.allowed:
            self.reply("HELP", (decision.code, decision.text), decision)
        elif arg and arg.upper() in SYNTAX:
            self.reply("HELP", replies.HELP_SYNTAX, None, values={"syntax": SYNTAX[arg.upper()]})
        else:
            self.reply("HELP", replies.HELP_TEXT, None, values={"commands": " ".join(sorted(SYNTAX))})

    def smtp_VRFY(self, arg: str) -> None:
        if not arg:
            return self.syntax_error("VRFY")
        decision = policy.vrfy_decision(self.snap, arg)
        self.reply("VRFY", (decision.code, decision.text), decision)
        return None

    def smtp_EXPN(self, arg: str) -> None:
        self.reply("EXPN", replies.EXPN_DISABLED, _decision(replies.EXPN_DISABLED, "expn", _("Lists are never expanded.")))

    def smtp_STARTTLS(self, arg: str) -> object | None:
        if arg:
            return self.syntax_error("STARTTLS")
        decision = policy.starttls_offered(self.snap, self.facts)
        if not decision.allowed:
            self.reply("STARTTLS", (decision.code, decision.text), decision)
            return None
        if self.credentials_name() is None:
            self.reply("STARTTLS", replies.TLS_NOT_AVAILABLE, _decision(replies.TLS_NOT_AVAILABLE, "tls_context_missing", _(
                "The TLS credentials of this address could not be loaded."
            )))
            return None
        self.reply("STARTTLS", replies.READY_FOR_TLS, decision)
        # Whatever the client pipelined in clear after STARTTLS is dropped (RFC 3207 s 4.2).
        self.inbuf.clear()
        self.phase = WAITING
        self.after_wait = "starttls"
        return START_TLS

    # --- AUTH (RFC 4954) ----------------------------------------------------------------------------

    def smtp_AUTH(self, arg: str) -> object | None:
        if not self.greeted or not self.extended:
            self.reply("AUTH", replies.SEND_EHLO_FIRST, _decision(replies.SEND_EHLO_FIRST, "ehlo_first", _(
                "AUTH needs an EHLO first (after STARTTLS too)."
            )))
            return None
        gate = policy.auth_allowed(self.snap, self.facts)
        if not gate.allowed:
            self.reply("AUTH", (gate.code, gate.text), gate)
            return None
        if self.transaction.mail_from is not None:
            self.reply("AUTH", replies.AUTH_IN_TRANSACTION, _decision(replies.AUTH_IN_TRANSACTION, "auth_in_transaction", _(
                "AUTH is not allowed once MAIL FROM has been accepted."
            )))
            return None
        if self.auth_failures >= self.limits.auth_failures_per_session:
            self.refuse_and_close("AUTH", replies.AUTH_THROTTLED, "auth_throttled", _(
                "%(count)s failed AUTH attempts in this session."
            ) % {"count": self.auth_failures})
            return CLOSE
        args = arg.split()
        if not 1 <= len(args) <= 2:
            return self.auth_malformed(replies.AUTH_SYNTAX, "auth_syntax")
        mechanism = args[0].upper()
        if mechanism not in policy.auth_mechanisms(self.snap, self.facts):
            return self.auth_malformed(replies.AUTH_MECHANISM, "auth_mechanism")
        initial = args[1] if len(args) == 2 else None
        if mechanism == "PLAIN":
            if initial is None:
                return self.challenge("", self.plain_response)
            return self.plain_response(initial.encode("ascii", "replace"), initial=True)
        if initial is None:
            return self.challenge("User Name", self.login_user)
        return self.login_user(initial.encode("ascii", "replace"), initial=True)

    def auth_malformed(self, reply: replies.Reply, rule: str) -> None:
        """A malformed AUTH is a protocol error (it counts toward the session's AUTH attempts), not a failed password."""
        self.auth_failures += 1
        self.phase = COMMAND
        self.reply("AUTH", reply, _decision(reply, rule, _("The AUTH exchange is malformed (RFC 4954 s 4).")))
        return None

    def challenge(self, prompt: str, then: Callable) -> None:
        self.write(replies.CHALLENGE.code, base64.b64encode(prompt.encode("ascii")).decode("ascii"), "auth_challenge")
        self.sasl = then
        self.phase = SASL
        return None

    def sasl_response(self, line: bytes) -> object | None:
        then, self.sasl = self.sasl, None
        self.phase = COMMAND
        if line == b"\0":
            return self.auth_malformed(replies.AUTH_LINE_TOO_LONG, "auth_line_too_long")
        if line.strip() == b"*":
            return self.auth_malformed(replies.AUTH_ABORTED, "auth_aborted")
        return then(line.strip())

    def decode(self, text: bytes, initial: bool) -> bytes | None:
        if text == b"=" and initial:
            return b""
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return None

    def plain_response(self, text: bytes, initial: bool = False) -> object | None:
        blob = self.decode(text, initial)
        if blob is None:
            return self.auth_malformed(replies.AUTH_BASE64, "auth_base64")
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            return self.auth_malformed(replies.AUTH_PLAIN_SPLIT, "auth_plain_split")
        authzid, login, password = parts
        if authzid and authzid != login:
            self.auth_failures += 1
            self.reply("AUTH", replies.AUTH_FAILED, _decision(replies.AUTH_FAILED, "authorization_identity", _(
                "The authorization identity of AUTH PLAIN is not the login."
            ), close=True), closes=True)
            return CLOSE
        return self.check(login, password)

    def login_user(self, text: bytes, initial: bool = False) -> object | None:
        login = self.decode(text, initial)
        if login is None:
            return self.auth_malformed(replies.AUTH_BASE64, "auth_base64")
        self.pending_login = login
        return self.challenge("Password", self.login_password)

    def login_password(self, text: bytes) -> object | None:
        password = self.decode(text, False)
        if password is None:
            return self.auth_malformed(replies.AUTH_BASE64, "auth_base64")
        return self.check(self.pending_login, password)

    def check(self, login: bytes, password: bytes) -> object | None:
        try:
            credentials = CheckCredentials(login.decode("utf-8"), password.decode("utf-8"))
        except UnicodeDecodeError:
            return self.auth_malformed(replies.AUTH_NOT_UTF8, "auth_not_utf8")
        self.phase = WAITING
        return credentials

    # --- the mail transaction -------------------------------------------------------------------------

    def need_greeting(self, name: str) -> bool:
        if self.greeted:
            return False
        self.reply(name, replies.SEND_HELO_FIRST, _decision(replies.SEND_HELO_FIRST, "helo_first", _(
            "%(command)s needs an EHLO first (after STARTTLS too)."
        ) % {"command": name}))
        return True

    def smtp_MAIL(self, arg: str) -> None:
        if self.need_greeting("MAIL"):
            return None
        parsed = parse_path(arg, "FROM:")
        if parsed is None:
            return self.syntax_error("MAIL")
        address, params = parsed
        size, problem = self.mail_parameters(params)
        if problem is not None:
            self.reply("MAIL", problem, _decision(problem, "mail_parameters", _(
                "MAIL FROM carries a parameter the server did not offer (RFC 5321 s 4.1.1.11)."
            )))
            return None
        decision = policy.mail_from_allowed(self.snap, self.facts, size, sender=address)
        if not decision.allowed:
            self.reply("MAIL", (decision.code, decision.text), decision)
            return None
        if self.transaction.mail_from is not None:
            self.reply("MAIL", replies.NESTED_MAIL, _decision(replies.NESTED_MAIL, "nested_mail", _(
                "A MAIL FROM has already been accepted in this transaction."
            )))
            return None
        self.transaction = Transaction(mail_from=address)
        self.reply("MAIL", replies.SENDER_OK, decision)
        return None

    def mail_parameters(self, params: list[str]) -> tuple[int | None, replies.Reply | None]:
        """The declared SIZE, and the refusal of a parameter that was not offered (RFC 1870, RFC 6152)."""
        size = None
        config = self.snap.config
        for param in params:
            if not self.extended:
                return None, replies.MAIL_PARAMETERS
            key, _eq, value = param.partition("=")
            key = key.upper()
            if key == "SIZE" and config.size_extension:
                if not value.isdigit():
                    return None, replies.BAD_SIZE
                size = int(value)
            elif key == "BODY":
                if value.upper() not in ("7BIT", "8BITMIME"):
                    return None, replies.BAD_BODY
                if value.upper() == "8BITMIME" and not config.eightbitmime:
                    return None, replies.BODY_8BITMIME_OFF
            elif key == "AUTH" and value:
                continue
            else:
                return None, replies.MAIL_PARAMETERS
        return size, None

    def smtp_RCPT(self, arg: str) -> None:
        if self.need_greeting("RCPT"):
            return None
        if self.transaction.mail_from is None:
            self.reply("RCPT", replies.NEED_MAIL, _decision(replies.NEED_MAIL, "need_mail", _(
                "No MAIL FROM has been accepted, so every RCPT TO is refused."
            )))
            return None
        parsed = parse_path(arg, "TO:")
        if parsed is None or not parsed[0]:
            return self.syntax_error("RCPT")
        address, params = parsed
        if params:
            self.reply("RCPT", replies.RCPT_PARAMETERS, _decision(replies.RCPT_PARAMETERS, "rcpt_parameters", _(
                "RCPT TO carries a parameter the server did not offer (RFC 5321 s 4.1.1.11)."
            )))
            return None
        decision = policy.recipient_decision(self.snap, self.facts, address, self.transaction.recipients)
        if not decision.allowed:
            self.reply("RCPT", (decision.code, decision.text), decision)
            return None
        self.transaction.recipients += 1
        if decision.kind == "local":
            self.transaction.deliveries.extend((address, "local", person.full_name) for person in decision.people)
        else:
            self.transaction.deliveries.append((address, decision.kind, None))
        self.reply("RCPT", replies.RECIPIENT_OK, decision)
        return None

    def smtp_DATA(self, arg: str) -> None:
        if self.need_greeting("DATA"):
            return None
        if self.transaction.mail_from is None:
            self.reply("DATA", replies.NEED_MAIL, _decision(replies.NEED_MAIL, "need_mail", _("DATA needs MAIL FROM first.")))
            return None
        if not self.transaction.recipients:
            self.reply("DATA", replies.NEED_RCPT, _decision(replies.NEED_RCPT, "need_rcpt", _("DATA needs an accepted RCPT TO first.")))
            return None
        if arg:
            return self.syntax_error("DATA")
        self.write(*replies.START_DATA, "data")
        self.phase = DATA
        self.message = bytearray()
        self.message_too_long_line = False
        return None

    def read_data(self) -> object | None:
        """Collect the message up to the line holding a single dot (RFC 5321 s 4.1.1.4)."""
        buffer = self.inbuf
        if not self.message and buffer.startswith(b".\r\n"):
            del buffer[:3]
            return self.end_of_data(b"")
        end = buffer.find(b"\r\n.\r\n")
        if end < 0:
            # Keep the last bytes: the end marker may be split across reads.
            keep = 4
            if len(buffer) > keep:
                self.take_data(buffer[:-keep])
                del buffer[:-keep]
            return None
        self.take_data(buffer[:end + 2])
        del buffer[:end + 5]
        content, self.message = bytes(self.message), bytearray()
        return self.end_of_data(content)

    def take_data(self, chunk: bytes) -> None:
        limit = self.snap.config.max_message_bytes
        if limit is None or len(self.message) <= limit:
            self.message += chunk
        if not self.message_too_long_line:
            start = max(0, len(self.message) - len(chunk) - TEXT_LINE_LIMIT)
            self.message_too_long_line = max(map(len, self.message[start:].split(b"\r\n")[:-1]), default=0) > TEXT_LINE_LIMIT - 2 \
                or len(self.message) - (self.message.rfind(b"\r\n") + 2) > TEXT_LINE_LIMIT * 4

    def end_of_data(self, content: bytes) -> object | None:
        self.phase = COMMAND
        transaction = self.transaction
        if self.message_too_long_line:
            self.transaction = Transaction()
            self.reply("DATA", replies.DATA_LINE_TOO_LONG, _decision(replies.DATA_LINE_TOO_LONG, "line_too_long", _(
                "A line of the message is longer than 1000 octets (RFC 5321 s 4.5.3.1.6)."
            )))
            return None
        if content.startswith(b".") or b"\n." in content:  # most messages hold no stuffed dot: no regex pass
            content = DOT_STUFFED.sub(b"", content)
        size = policy.message_size_allowed(self.snap, len(content))
        problem = size if not size.allowed else messages.content_problem(content, self.limits.max_hops)
        if problem is not None:
            self.transaction = Transaction()
            self.reply("DATA", (problem.code, problem.text), problem)
            return None
        data = self.received_header(transaction) + content
        self.phase = WAITING
        return StoreMessage(Envelope(
            mail_from=transaction.mail_from or "<>", deliveries=tuple(transaction.deliveries), data=data,
            helo=self.helo, session_id=self.session_id,
        ))

    def received_header(self, transaction: Transaction) -> bytes:
        """The trace header this server adds (RFC 5321 s 4.4), with the protocol per RFC 3848.

        The HELO name stands after "from" only when it is a domain or an address literal; anything
        else (a ";" or "(" that would change the header's structure) is replaced by "unknown".
        """
        facts = self.facts
        protocol = "ESMTP" if self.extended else "SMTP"
        if facts.tls:
            protocol += "S"
        if facts.authenticated_as:
            protocol += "A"
        recipients = {address for address, _kind, _person in transaction.deliveries}
        recipient = f"\r\n\tfor <{next(iter(recipients))}>" if len(recipients) == 1 else ""
        helo = self.helo if HELO_NAME.match(self.helo or "") else "unknown"
        return (
            f"Received: from {helo} ([{facts.client_ip}])\r\n\tby {self.snap.host_name} with {protocol} "
            f"id {self.session_id}{recipient};\r\n\t{_date_now()}\r\n"
        ).encode("ascii", "replace")


def _date_now() -> str:
    """The RFC 5322 date of this second, in local time, made once per second (every message's Received field)."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, email.utils.formatdate(now, localtime=True)]
    return _date_cache[1]


_date_cache: list = [None, ""]


COMMANDS: dict[str, Callable[[SmtpSession, str], object | None]] = {
    name[5:]: method for name, method in vars(SmtpSession).items() if name.startswith("smtp_")
}
"""The command methods, found once for the class (not once per connection)."""


def parse_path(arg: str, keyword: str) -> tuple[str, list[str]] | None:
    """(address, ESMTP parameters) of a MAIL FROM or RCPT TO argument, or None when malformed.

    Parameters are read only after the address (RFC 5321 s 4.1.2), so ``<SIZE=9@x>`` is an address.
    """
    if not arg[:len(keyword)].upper() == keyword:
        return None
    rest = arg[len(keyword):].lstrip()
    if rest.startswith("<"):
        end = _path_end(rest)
        if end is None:
            return None
        address, params = rest[1:end], rest[end + 1:]
        if params and not params.startswith(" "):
            return None
    else:
        address, _space, params = rest.partition(" ")
        if not address:
            return None
    if address.startswith("@") and ":" in address:
        address = address.split(":", 1)[1]  # A source route (RFC 5321 s 4.1.2) is ignored (Appendix F.2).
    return address, params.split()


def _path_end(path: str) -> int | None:
    """The index of the ">" that closes a path, skipping a quoted local part."""
    quoted = escaped = False
    for index, character in enumerate(path[1:], start=1):
        if escaped:
            escaped = False
        elif character == "\\" and quoted:
            escaped = True
        elif character == '"':
            quoted = not quoted
        elif character == ">" and not quoted:
            return index
    return None


# --- The policy simulator's view: one command at a time, no sockets ---------------------------------------


@dataclass(frozen=True)
class Reply:
    """What the client gets for one command: ``code`` None when nothing answers (the session is closed).

    ``text`` is the reply without its code, its lines joined by a newline, as ``smtplib`` returns it.
    ``decision`` is the answer behind the reply, with the rule that decided and why.
    """

    code: int | None
    text: str
    decision: policy.Decision
    closes: bool = False

    @property
    def lines(self) -> list[str]:
        """The reply as sent on the wire, one string per line."""
        if self.code is None:
            return []
        lines = self.text.split("\n")
        return [f"{self.code}{'-' if i < len(lines) - 1 else ' '}{line}" for i, line in enumerate(lines)]

    @property
    def accepted(self) -> bool:
        return self.code is not None and self.code < 400


class Simulation:
    """The session machine driven one command at a time, its effects carried out at once and without sockets:
    TLS succeeds where credentials exist, passwords are checked by ``policy.authenticate``, nothing is stored."""

    def __init__(self, snap: policy.SettingsSnapshot, facts: policy.SessionFacts,
                 verify_password: Callable[[str, str], bool] | None = None) -> None:
        self.machine = SmtpSession(snap, facts)
        self.snap = snap
        self.verify_password = verify_password

    @property
    def facts(self) -> policy.SessionFacts:
        return self.machine.facts

    @property
    def closed(self) -> bool:
        return self.machine.closed

    @property
    def refusal(self) -> policy.Decision | None:
        return self.machine.refusal

    def credentials_name(self) -> str | None:
        return self.machine.credentials_name()

    def step(self, start: Callable[[], object | None]) -> Reply:
        machine = self.machine
        if machine.closed:
            return Reply(None, "", policy.Decision(False, None, "", "closed", _(
                "The listener has closed the session: this command is never answered."
            )), closes=True)
        seen = len(machine.events)
        effect = start()
        while effect is not None and not isinstance(effect, Close):
            if isinstance(effect, StartTls):
                effect = machine.tls_done(True)
            elif isinstance(effect, CheckCredentials):
                options = {"verify_password": self.verify_password} if self.verify_password else {}
                effect = machine.credentials_done(policy.authenticate(self.snap, machine.facts, effect.login, effect.password, **options))
            else:
                effect = machine.store_done("simulated")
        out = machine.take().decode("utf-8", "replace").split("\r\n")
        decision = machine.last_decision if len(machine.events) > seen else policy.Decision(True, None, "", "", "")
        lines = [line for line in out if line]
        if not lines:
            return Reply(None, "", decision, closes=True)
        last = max(i for i, line in enumerate(lines) if line[3:4] != "-")
        first = next(i for i in range(last, -1, -1) if i == 0 or lines[i - 1][3:4] != "-")
        reply = lines[first:last + 1]
        return Reply(int(reply[-1][:3]), "\n".join(line[4:] for line in reply), decision, closes=machine.closed)

    def command(self, line: str) -> Reply:
        return self.step(lambda: self.machine.feed(line.encode("utf-8") + b"\r\n"))

    def connect(self) -> Reply:
        return self.step(self.machine.start)

    def ehlo(self, hostname: str) -> Reply:
        return self.command(f"EHLO {hostname}")

    def helo(self, hostname: str) -> Reply:
        return self.command(f"HELO {hostname}")

    def starttls(self) -> Reply:
        return self.command("STARTTLS")

    def auth(self, login: str, password: str) -> Reply:
        blob = base64.b64encode(f"\0{login}\0{password}".encode()).decode("ascii")
        return self.command(f"AUTH PLAIN {blob}")

    def mail(self, address: str) -> Reply:
        return self.command(f"MAIL FROM:<{address}>")

    def rcpt(self, address: str) -> Reply:
        return self.command(f"RCPT TO:<{address}>")

    def quit(self) -> Reply:
        return self.command("QUIT")
