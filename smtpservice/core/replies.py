"""Every reply the SMTP listener sends, in one table: code, RFC 3463 enhanced status code, text, and source.

Nothing else in the project writes an SMTP reply text: the session machine (``core.session``) and
the policy (``core.policy``) name these constants, and ``tests/smtpservice/test_replies.py`` checks
that no reply string is written anywhere else and that every reply after EHLO carries an enhanced
code (RFC 2034 s 3: once ENHANCEDSTATUSCODES is advertised, every reply but the greeting and 354
carries one). The texts of spec section 6 keep Domino's wording.

A ``Reply`` is a ``(code, text)`` tuple, ``text`` starting with the enhanced code, so ``code, text =
reply`` works everywhere; ``source`` says where the reply comes from.
"""
from __future__ import annotations


class Reply(tuple):
    """``(code, text)`` of one reply, with the RFC (or spec section) it comes from."""

    source: str

    def __new__(cls, code: int, text: str, source: str) -> Reply:
        reply = super().__new__(cls, (code, text))
        reply.source = source
        return reply

    @property
    def code(self) -> int:
        return self[0]

    @property
    def text(self) -> str:
        return self[1]

    @property
    def enhanced(self) -> str:
        """The RFC 3463 code at the start of the text ("" for the greeting and 354)."""
        first = self[1].split(" ", 1)[0]
        return first if first.count(".") == 2 and first.replace(".", "").isdigit() else ""

    def line(self, **values: object) -> str:
        """The reply as sent (without CR LF), with ``{name}`` placeholders of the text filled in."""
        return f"{self[0]} {self[1].format(**values) if values else self[1]}"

    def __str__(self) -> str:
        return self.line()


# --- Spec section 6: Domino's replies --------------------------------------------------------------

SITE_NOT_ENABLED = Reply(554, "5.7.0 This site is not enabled on the server.", "spec 3.3; RFC 3463 X.7.0")
CONNECTION_DENIED = Reply(554, "5.7.1 Connection denied for policy reasons.", "spec 3.2; RFC 5321 s 3.1")
AUTH_FAILED = Reply(535, "5.7.8 Authentication credentials invalid", "spec 3.5; RFC 4954 s 6")
NOT_AUTHORIZED = Reply(535, "5.7.1 Not authorized to access this server", "spec 3.5; RFC 3463 X.7.1")
AUTH_REQUIRED = Reply(530, "5.7.0 Authentication required", "spec 3.6; RFC 4954 s 6")
STARTTLS_FIRST = Reply(530, "5.7.0 Must issue a STARTTLS command first", "spec 3.4; RFC 3207 s 4")
RELAY_REJECTED = Reply(554, "5.7.1 Relay rejected for policy reasons.", "spec 3.7")
USER_UNKNOWN = Reply(550, "5.1.1 User unknown", "spec 3.7; RFC 3463 X.1.1")
TOO_LARGE = Reply(552, "5.3.4 Message size exceeds fixed maximum message size", "spec 3.8; RFC 1870 s 6")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3 Too many recipients", "spec 3.8; RFC 5321 s 4.5.3.1.10")
STORAGE_FAILED = Reply(451, "4.3.0 Local error in processing; message not accepted", "RFC 5321 s 4.2.5")
ERROR_LIMIT = Reply(421, "4.7.0 SMTP service not available, closing transmission channel.", "spec 3.9")

# --- Greeting, session and transaction ----------------------------------------------------------------

GREETING = Reply(220, "{host} ESMTP Service ready", "RFC 5321 s 4.2: the greeting carries no enhanced code")
EHLO_OK = Reply(250, "{host}", "RFC 5321 s 4.1.1.1: the first EHLO line is the server's name")
HELO_OK = Reply(250, "2.0.0 {host}", "RFC 5321 s 4.1.1.1")
OK = Reply(250, "2.0.0 OK", "RFC 5321 s 4.1.1.5 (RSET), 4.1.1.9 (NOOP)")
SENDER_OK = Reply(250, "2.1.0 OK", "RFC 3463 X.1.0 other address status")
RECIPIENT_OK = Reply(250, "2.1.5 OK", "RFC 3463 X.1.5 destination address valid")
START_DATA = Reply(354, "End data with <CR><LF>.<CR><LF>", "RFC 5321 s 4.1.1.4: 354 carries no enhanced code")
QUEUED = Reply(250, "2.0.0 OK: queued as {id}", "RFC 5321 s 4.1.1.4: the message is stored")
CLOSING = Reply(221, "2.0.0 Bye", "RFC 5321 s 4.1.1.10")
READY_FOR_TLS = Reply(220, "2.0.0 Ready to start TLS", "RFC 3207 s 4")
AUTHENTICATED = Reply(235, "2.7.0 Authentication successful", "RFC 4954 s 6")
CHALLENGE = Reply(334, "{challenge}", "RFC 4954 s 4: a server challenge, base64")
HELP_TEXT = Reply(250, "2.0.0 Supported commands: {commands}", "RFC 5321 s 4.1.1.8")
HELP_SYNTAX = Reply(250, "2.0.0 Syntax: {syntax}", "RFC 5321 s 4.1.1.8")

# --- Command order (RFC 5321 s 3.3, 4.3.2) -------------------------------------------------------------

SEND_HELO_FIRST = Reply(503, "5.5.1 Error: send HELO first", "RFC 5321 s 4.1.4; also after STARTTLS (RFC 3207 s 4.2)")
SEND_EHLO_FIRST = Reply(503, "5.5.1 Error: send EHLO first", "RFC 4954 s 4: AUTH needs EHLO")
NEED_MAIL = Reply(503, "5.5.1 Error: need MAIL command", "RFC 5321 s 4.1.4")
NEED_RCPT = Reply(503, "5.5.1 Error: need RCPT command", "RFC 5321 s 4.1.4")
NESTED_MAIL = Reply(503, "5.5.1 Error: nested MAIL command", "RFC 5321 s 4.1.4")
AUTH_IN_TRANSACTION = Reply(503, "5.5.1 AUTH not permitted during a mail transaction", "RFC 4954 s 4")
ALREADY_AUTHENTICATED = Reply(503, "5.5.1 Already authenticated", "RFC 4954 s 4")
TLS_ALREADY_ACTIVE = Reply(503, "5.5.1 TLS already active", "RFC 3207 s 4.2; 503 is RFC 5321's bad sequence")
AUTH_NOT_ENABLED = Reply(503, "5.5.1 Error: authentication not enabled", "RFC 4954 s 4; Postfix's wording")
SITE_NOT_ENABLED_SEQUENCE = Reply(503, SITE_NOT_ENABLED.text, "spec 3.3: every command after a refused greeting")

# --- Syntax (RFC 5321 s 4.2.4, RFC 3463 X.5.x) ---------------------------------------------------------

UNKNOWN_COMMAND = Reply(500, '5.5.1 Error: command "{name}" not recognized', "RFC 5321 s 4.2.4")
BAD_SYNTAX = Reply(500, "5.5.2 Error: bad syntax", "RFC 5321 s 4.2.4")
LINE_TOO_LONG = Reply(500, "5.5.2 Line too long", "RFC 5321 s 4.5.3.1.4 (command lines of 512 octets)")
DATA_LINE_TOO_LONG = Reply(500, "5.5.2 Line too long (RFC 5321 s 4.5.3.1.6)", "RFC 5321 s 4.5.3.1.6 (text lines of 1000 octets)")
BARE_LINE_END_IN_COMMAND = Reply(500, "5.5.2 Bare CR or LF in command line", "RFC 5321 s 2.3.8")
SYNTAX = Reply(501, "5.5.4 Syntax: {syntax}", "RFC 5321 s 4.2.4; RFC 3463 X.5.4 invalid command arguments")
MAIL_PARAMETERS = Reply(555, "5.5.4 MAIL FROM parameters not recognized or not implemented", "RFC 5321 s 4.1.1.11")
RCPT_PARAMETERS = Reply(555, "5.5.4 RCPT TO parameters not recognized or not implemented", "RFC 5321 s 4.1.1.11")
BODY_8BITMIME_OFF = Reply(555, "5.5.4 BODY=8BITMIME is not offered", "RFC 6152 s 3: only once 8BITMIME is advertised")
BAD_BODY = Reply(501, "5.5.4 Error: BODY can only be one of 7BIT, 8BITMIME", "RFC 6152 s 2")
BAD_SIZE = Reply(501, "5.5.4 Error: SIZE takes a number of octets", "RFC 1870 s 6")
BAD_RECIPIENT_SYNTAX = Reply(501, "5.1.3 Bad recipient address syntax", "RFC 3463 X.1.3")
BAD_SENDER_SYNTAX = Reply(501, "5.1.7 Bad sender address syntax", "RFC 3463 X.1.7")
NOT_UTF8 = Reply(500, "5.5.2 Error: command line is not UTF-8", "RFC 6531 s 3.1: 8-bit text only in UTF-8")
COMMAND_DISABLED = Reply(502, "5.5.1 Command not implemented", "RFC 5321 s 4.2.4: HELP when Disabled")
EXPN_DISABLED = Reply(502, "5.5.1 EXPN not implemented", "RFC 5321 s 3.5.3: lists are never expanded")

# --- AUTH (RFC 4954) -------------------------------------------------------------------------------

AUTH_SYNTAX = Reply(501, "5.5.4 Syntax: AUTH mechanism [initial-response]", "RFC 4954 s 4")
AUTH_MECHANISM = Reply(504, "5.5.4 Unrecognized authentication type", "RFC 4954 s 4")
AUTH_BASE64 = Reply(501, "5.5.2 Cannot decode base64", "RFC 4954 s 4")
AUTH_PLAIN_SPLIT = Reply(501, "5.5.2 Cannot split the PLAIN response", "RFC 4616 s 2")
AUTH_NOT_UTF8 = Reply(501, "5.5.2 Credentials are not UTF-8", "RFC 4616 s 2")
AUTH_LINE_TOO_LONG = Reply(500, "5.5.6 Authentication Exchange line is too long", "RFC 4954 s 4")
AUTH_ABORTED = Reply(501, "5.7.0 Authentication aborted", "RFC 4954 s 4: the client answered a challenge with *")
AUTH_TEMPORARY = Reply(454, "4.7.0 Temporary authentication failure", "RFC 4954 s 6")
AUTH_THROTTLED = Reply(421, "4.7.0 Too many failed authentication attempts, try again later", "RFC 5321 s 3.8; Postfix anvil")

# --- STARTTLS (RFC 3207) ----------------------------------------------------------------------------

TLS_NOT_AVAILABLE = Reply(454, "4.7.0 TLS not available due to temporary reason", "RFC 3207 s 4")

# --- VRFY (RFC 5321 s 3.5.3) -------------------------------------------------------------------------

CANNOT_VRFY = Reply(252, "2.1.5 Cannot VRFY user, but will accept message and attempt delivery", "RFC 5321 s 3.5.3")
VRFY_FOUND = Reply(250, "2.1.5 {name} <{address}>", "RFC 5321 s 3.5.3")

# --- The listener's own protections (docs/design/security.md) -----------------------------------------------

SENDER_NOT_OWNED = Reply(553, "5.7.1 Sender address rejected: not owned by the authenticated user", "RFC 6409 s 6.1; Postfix's 553")
TOO_MANY_SESSIONS = Reply(421, "4.3.2 Too many connections, try again later", "RFC 5321 s 3.8; RFC 3463 X.3.2")
TOO_MANY_FROM_CLIENT = Reply(421, "4.7.0 Too many connections from your address, try again later", "RFC 5321 s 3.8")
SESSION_TOO_LONG = Reply(421, "4.4.2 Session time limit exceeded, closing connection", "RFC 3463 X.4.2 bad connection")
IDLE_TIMEOUT = Reply(421, "4.4.2 Idle timeout, closing connection", "RFC 5321 s 4.5.3.2.7 (server timeout)")
BUSY_CLOSING = Reply(421, "4.3.2 Server busy, closing idle connection", "RFC 5321 s 3.8; Postfix postscreen under pressure")
DATA_TOO_SLOW = Reply(421, "4.4.2 Data rate too low, closing connection", "RFC 3463 X.4.2 bad connection")
TOO_MANY_JUNK = Reply(421, "4.7.0 Too many commands without mail, closing connection", "Postfix smtpd_junk_command_limit")
SHUTTING_DOWN = Reply(421, "4.3.2 Service shutting down, closing connection", "RFC 5321 s 3.8")
BARE_LINE_END_IN_DATA = Reply(554, "5.6.0 Message contains a bare CR or LF; lines must end with CR LF", "RFC 5321 s 2.3.8; SMTP smuggling")
TOO_MANY_HOPS = Reply(554, "5.4.6 Too many hops", "RFC 5321 s 6.3; RFC 3463 X.4.6 routing loop")
LOCAL_ERROR = Reply(451, "4.3.0 Local error in processing", "RFC 5321 s 4.2.3")

ALL = {name: value for name, value in dict(globals()).items() if isinstance(value, Reply)}
"""Every reply by name, for the tests that walk the table."""
