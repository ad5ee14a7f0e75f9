"""The order in which the SMTP listener asks the policy, one command at a time, without sockets.

``PolicySession`` plays one inbound session the way ``listener.DominoSMTP`` answers it: the greeting
(connection controls, then the site check), EHLO, STARTTLS, AUTH, MAIL FROM and RCPT TO; the 503
with the greeting's text after a refused greeting; the Error limit's 421 (spec 3.9); the session
closed after a failed AUTH. Every command returns the ``Reply`` the client gets and the policy
``Decision`` behind it, so the console's policy simulator (``smtpservice.core.simulator``) tells the same
story as the listener. ``tests/smtpservice/test_simulator_agreement.py`` checks it reply for reply
against a running listener.

The replies the listener composes itself (not the policy) are the constants below; aiosmtpd's own
texts keep aiosmtpd's wording.
"""
from dataclasses import dataclass

from django.utils.translation import gettext as _

from smtpservice.core import policy

IDENT = "ESMTP Service ready"
"""The end of the 220 greeting, after the host name (the listener passes it to aiosmtpd as ``ident``)."""

READY_FOR_TLS = (220, "2.0.0 Ready to start TLS")
"""RFC 3207 s 4."""
AUTHENTICATED = (235, "2.7.0 Authentication successful")
"""RFC 4954 s 6."""
SENDER_OK = (250, "OK")
"""aiosmtpd's answer to an accepted MAIL FROM."""
RECIPIENT_OK = (250, "2.1.5 OK")
SEND_HELO_FIRST = (503, "Error: send HELO first")
"""aiosmtpd's answer to MAIL or RCPT before EHLO (also after STARTTLS, which forgets the EHLO: RFC 3207 s 4.2)."""
SEND_EHLO_FIRST = (503, "Error: send EHLO first")
NEED_MAIL = (503, "Error: need MAIL command")
NESTED_MAIL = (503, "Error: nested MAIL command")
AUTH_IN_TRANSACTION = (503, "5.5.1 AUTH not permitted during a mail transaction")
"""RFC 4954 s 4."""
CLOSING = (221, "Bye")


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
    def lines(self):
        """The reply as sent on the wire, one string per line."""
        if self.code is None:
            return []
        lines = self.text.split("\n")
        return [f"{self.code}{'-' if i < len(lines) - 1 else ' '}{line}" for i, line in enumerate(lines)]

    @property
    def accepted(self):
        return self.code is not None and self.code < 400


def _decision(reply, rule, detail, allowed=False):
    code, text = reply
    return policy.Decision(allowed, code, text, rule, detail)


class PolicySession:
    """One inbound session on a settings snapshot, answered command by command as the listener does.

    ``facts`` is the connection as the listener sees it (local address and port, port kind, client
    address). ``verify_password(password, password_hash)`` is passed to ``policy.authenticate``
    (Django's hashers when None).
    """

    def __init__(self, snap, facts, verify_password=None):
        self.snap = snap
        self.facts = facts
        self.verify_password = verify_password
        self.refusal = None
        self.errors = 0
        self.closed = False
        self.greeted = False
        self.mail_from = None
        self.accepted = 0

    # --- how the listener answers -------------------------------------------------------------

    def answer(self, reply, decision, closes=False):
        """Count a 4xx/5xx toward the Error limit; past it the client gets 421 instead, and is closed."""
        code, text = reply
        if policy.counts_as_error(code) and code != policy.ERROR_LIMIT[0]:
            self.errors += 1
            limit = policy.within_error_limit(self.snap, self.errors)
            if not limit.allowed:
                self.closed = True
                return Reply(limit.code, limit.text, limit, closes=True)
        if closes:
            self.closed = True
        return Reply(code, text, decision, closes)

    def command(self, name, respond):
        """Nothing answers a closed session; after a refused greeting every command but QUIT gets 503."""
        if self.closed:
            return Reply(None, "", policy.Decision(False, None, "", "closed", _(
                "The listener has closed the session: this command is never answered."
            )), closes=True)
        if self.refusal is not None and name != "QUIT":
            later = policy.after_refused_greeting(self.refusal)
            return self.answer((later.code, later.text), later)
        return respond()

    def credentials_name(self):
        """The TLS credentials serving the local address, when the snapshot holds them (the listener's TLS contexts)."""
        name = policy.tls_credentials_for(self.snap, self.facts.local_ip, self.facts.local_host).name
        return name if name in self.snap.credentials else None

    def reset_transaction(self):
        self.mail_from = None
        self.accepted = 0

    # --- commands -----------------------------------------------------------------------------

    def connect(self):
        """The greeting: TLS first on the SSL port (no credentials: closed unanswered), then the policy's greeting."""
        if self.facts.port == policy.SSL and self.credentials_name() is None:
            self.closed = True
            return Reply(None, "", policy.Decision(False, None, "", "no_tls_credentials", _(
                "No TLS credentials serve this address, so the TLS handshake of the SSL port cannot start: the "
                "listener closes the connection before the greeting."
            )), closes=True)
        greeting = policy.session_greeting(self.snap, self.facts)
        if not greeting.allowed:
            # The refused greeting replaces the 220 and is not counted as an error.
            self.refusal = greeting
            return Reply(greeting.code, greeting.text, greeting)
        return Reply(220, f"{self.snap.host_name} {IDENT}", greeting)

    def ehlo(self, hostname):
        def respond():
            self.greeted = True
            self.reset_transaction()
            offer = policy.ehlo_extensions(self.snap, self.facts)
            return self.answer((250, "\n".join([self.snap.host_name, *offer])), policy.Decision(
                True, 250, "", "ehlo", offer.detail,
            ))

        return self.command("EHLO", respond)

    def starttls(self):
        """STARTTLS; on 220 the handshake is taken to succeed, and the session starts over (RFC 3207 s 4.2)."""

        def respond():
            decision = policy.starttls_offered(self.snap, self.facts)
            if not decision.allowed:
                return self.answer((decision.code, decision.text), decision)
            if self.credentials_name() is None:
                return self.answer(policy.TLS_NOT_AVAILABLE, _decision(policy.TLS_NOT_AVAILABLE, "tls_context_missing", _(
                    "The TLS credentials of this address could not be loaded."
                )))
            self.facts = self.facts.after_starttls()
            self.greeted = False
            self.reset_transaction()
            return self.answer(READY_FOR_TLS, decision)

        return self.command("STARTTLS", respond)

    def auth(self, login, password):
        """AUTH PLAIN with ``login`` and ``password``: offered in this state, then ``policy.authenticate``."""

        def respond():
            if not self.greeted:
                return self.answer(SEND_EHLO_FIRST, _decision(SEND_EHLO_FIRST, "ehlo_first", _(
                    "AUTH needs an EHLO first (after STARTTLS too)."
                )))
            gate = policy.auth_allowed(self.snap, self.facts)
            if not gate.allowed:
                return self.answer((gate.code, gate.text), gate)
            if self.mail_from is not None:
                return self.answer(AUTH_IN_TRANSACTION, _decision(AUTH_IN_TRANSACTION, "auth_in_transaction", _(
                    "AUTH is not allowed once MAIL FROM has been accepted."
                )))
            options = {"verify_password": self.verify_password} if self.verify_password else {}
            decision = policy.authenticate(self.snap, self.facts, login, password, **options)
            if not decision.allowed:
                return self.answer((decision.code, decision.text), decision, closes=decision.close)
            self.facts = self.facts.after_auth(decision.person.full_name)
            return self.answer(AUTHENTICATED, decision)

        return self.command("AUTH", respond)

    def mail(self, address, declared_size=None):
        def respond():
            if not self.greeted:
                return self.answer(SEND_HELO_FIRST, _decision(SEND_HELO_FIRST, "helo_first", _(
                    "MAIL FROM needs an EHLO first (after STARTTLS too)."
                )))
            decision = policy.mail_from_allowed(self.snap, self.facts, declared_size, sender=address)
            if not decision.allowed:
                return self.answer((decision.code, decision.text), decision)
            if self.mail_from is not None:
                return self.answer(NESTED_MAIL, _decision(NESTED_MAIL, "nested_mail", _(
                    "A MAIL FROM has already been accepted in this transaction."
                )))
            self.mail_from = address
            return self.answer(SENDER_OK, decision)

        return self.command("MAIL", respond)

    def rcpt(self, address):
        def respond():
            if not self.greeted:
                return self.answer(SEND_HELO_FIRST, _decision(SEND_HELO_FIRST, "helo_first", _(
                    "RCPT TO needs an EHLO first."
                )))
            if self.mail_from is None:
                return self.answer(NEED_MAIL, _decision(NEED_MAIL, "need_mail", _(
                    "No MAIL FROM has been accepted, so every RCPT TO is refused."
                )))
            decision = policy.recipient_decision(self.snap, self.facts, address, self.accepted)
            if not decision.allowed:
                return self.answer((decision.code, decision.text), decision)
            self.accepted += 1
            return self.answer(RECIPIENT_OK, decision)

        return self.command("RCPT", respond)

    def quit(self):
        def respond():
            self.closed = True
            return Reply(*CLOSING, _decision(CLOSING, "quit", _("The client ends the session."), allowed=True), closes=True)

        return self.command("QUIT", respond)
