"""What one client may cost the listener, whatever the documents say (docs/design/security.md).

Read by the session machine (line lengths, junk commands, hops, AUTH attempts in a session) and by
the listener (sessions, time limits, the AUTH throttle). Tests pass smaller ones.
"""
from dataclasses import dataclass

COMMAND_LINE_LIMIT = 512
"""Octets of a command line with its CR LF (RFC 5321 s 4.5.3.1.4)."""
MAIL_LINE_LIMIT = COMMAND_LINE_LIMIT + 26
"""MAIL FROM may be 26 octets longer once SIZE is offered (RFC 1870 s 3)."""
TEXT_LINE_LIMIT = 1000
"""Octets of a line of message text with its CR LF (RFC 5321 s 4.5.3.1.6)."""
TLS_HANDSHAKE_TIMEOUT = 10.0
"""Seconds a client has to finish a TLS handshake (SSL port and STARTTLS)."""


@dataclass(frozen=True)
class Limits:
    """What one client may cost the listener; the numbers and where they come from are in docs/design/security.md.

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


