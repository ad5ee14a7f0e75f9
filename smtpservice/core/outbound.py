"""Outbound decisions of the router: where a recipient's mail goes, over which port with which TLS,
when to try again, and what the sender is told when it cannot go.

Pure functions over the immutable settings snapshot (``smtpservice.store.snapshot``), like
``smtpservice.core.policy`` for the listener: no sockets, no database, so tables of cases test them. The
router (``smtpservice.router.service``) asks them and speaks SMTP. ``docs/design/outbound.md`` lists the rules.
"""
import email.utils
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.parser import BytesHeaderParser
from email.policy import SMTP as SMTP_POLICY
from typing import Protocol

from directory import choices
from directory.validators import split_host_port
from smtpservice.core import policy, texts

_ = texts.explain
"""Texts kept with their msgid and values: the queue pages show them in the reader's language."""

RELAY = "relay"
ROUTE = "route"
MX = "mx"

IMPLICIT = "implicit"
STARTTLS = "starttls"
PLAIN = "plain"

OPPORTUNISTIC = "opportunistic"
"""TLS policy (spec 5.5), Domino's Negotiated SSL and Postfix's ``may``: encrypt when offered, accept any
certificate, else clear text; the SSL port falls back to the TCP/IP port."""
VERIFIED = "verified"
"""TLS policy (spec 5.5), Postfix's ``verify``: TLS required and the certificate checked for the host name;
a missing STARTTLS or a bad certificate defers, and nothing falls back to clear text."""

NEGOTIATED_SSL = choices.OutboundTcpStatus.NEGOTIATED_SSL
HELD = "held"
FAILED = "failed"

ENHANCED_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")
"""An RFC 3463 enhanced status code at the start of a reply text (RFC 2034)."""


class ReportedMessage(Protocol):
    """What a non-delivery report reads of the failed message (a ``ReceivedMessage`` in the router)."""

    mail_from: str
    received_at: datetime
    data: bytes | memoryview


@dataclass(frozen=True)
class Destination:
    """Where one session goes. Recipients with equal destinations share one SMTP session.

    ``host`` is the relay host or route host, or the recipient domain whose MX records to look up.
    """

    kind: str
    host: str
    port: int | None = None
    tls: str = OPPORTUNISTIC
    ca_file: str = ""
    authenticate: bool = False
    detail: str = field(default="", compare=False)

    @property
    def verified(self) -> bool:
        return self.tls == VERIFIED

    @property
    def label(self) -> str:
        where = f"{self.host}:{self.port}" if self.port else self.host
        if self.kind == RELAY:
            return _("relay host %(host)s") % {"host": where}
        if self.kind == ROUTE:
            return _("SMTP connection route to %(host)s") % {"host": where}
        return _("MX records of %(domain)s") % {"domain": self.host}

    @property
    def certificate_check(self) -> str:
        """How the remote's certificate is judged, in the words of the attempt log."""
        if not self.verified:
            return _("any certificate accepted (opportunistic TLS policy)")
        if self.ca_file:
            return _("certificate verified against the CA bundle %(path)s") % {"path": self.ca_file}
        return _("certificate verified against the system trust store")


@dataclass(frozen=True)
class Blocked:
    """No session at all: the recipient is held (settings forbid outbound SMTP) or failed (bad address)."""

    state: str
    reason: str
    status: str = ""


@dataclass(frozen=True)
class Step:
    """One connection to try: a port, and TLS from the first byte, STARTTLS when offered, or clear text."""

    port: int
    mode: str
    required: bool = False

    @property
    def label(self) -> str:
        if self.mode == IMPLICIT:
            return _("port %(port)s, TLS from the first byte") % {"port": self.port}
        if self.mode == STARTTLS and self.required:
            return _("port %(port)s, STARTTLS required") % {"port": self.port}
        if self.mode == STARTTLS:
            return _("port %(port)s, STARTTLS when offered") % {"port": self.port}
        return _("port %(port)s, clear text") % {"port": self.port}


@dataclass(frozen=True)
class Failure:
    """A recipient the message could not reach, for the non-delivery report."""

    recipient: str
    status: str
    reason: str
    reply: str = ""
    remote_mta: str = ""


def split_address(address: str | None) -> tuple[str, str]:
    """(local part, lower-cased domain) of ``local@domain``; the domain is "" when there is none."""
    local, _at, domain = str(address or "").strip().strip("<>").rpartition("@")
    return local, domain.rstrip(".").lower()


def local_person(snap: policy.SettingsSnapshot, address: str) -> tuple[bool, policy.PersonSnapshot | None]:
    """(is the address in a Local Internet domain, the Person whose Internet address it is, if any)."""
    _local, domain = split_address(address)
    if not domain or policy._match_domain(snap.config.local_domains, domain) is None:
        return False, None
    return True, snap.person_by_address(address)


def default_sender(snap: policy.SettingsSnapshot) -> str:
    """Who a console test message comes from when no sender is typed: someone whose non-delivery report the
    console shows in a mailbox. The Internet address of the first Person in a Local Internet domain, else
    postmaster at the first local domain, else at the server's host name."""
    for person in sorted(snap.people, key=lambda person: person.full_name):
        if person.internet_address and local_person(snap, person.internet_address)[0]:
            return person.internet_address
    domain = snap.config.local_domains[0] if snap.config.local_domains else snap.host_name
    return f"postmaster@{domain}"


def outbound_blocked(ports: policy.OutboundPorts, smtp_outside_local_domain: bool, config_source: str = "") -> str:
    """Why this server sends no SMTP at all, or "" when it may (spec 5.1, 5.2)."""
    if not smtp_outside_local_domain:
        return _(
            "SMTP used when sending messages outside the local Internet domain is Disabled in the %(source)s: "
            "mail for other domains is held."
        ) % {"source": config_source or _("Configuration Settings")}
    if ports.tcp_status == policy.DISABLED and ports.ssl_status != policy.ENABLED:
        return _(
            "The SMTP Outbound TCP/IP port and SSL port of the Server document are both Disabled: this server "
            "sends no SMTP, and mail for other domains is held."
        )
    return ""


def destination_for(snap: policy.SettingsSnapshot, recipient: str) -> Destination | Blocked:
    """Relay host if set, else the first matching SMTP connection route, else the domain's MX (spec 5.1)."""
    _local, domain = split_address(recipient)
    if not _local or not domain:
        return Blocked(FAILED, _("“%(address)s” is not a mailbox@domain address.") % {"address": recipient}, "5.1.3")
    blocked = outbound_blocked(snap.outbound, snap.config.smtp_outside_local_domain, snap.config_source)
    if blocked:
        return Blocked(HELD, blocked)
    config = snap.config
    if config.relay_host:
        host, port = split_host_port(config.relay_host)
        return Destination(
            RELAY, host, port, tls=config.relay_tls_policy, ca_file=config.relay_ca_bundle,
            authenticate=config.relay_auth != policy.DISABLED,
            detail=_("Relay host %(relay)s is set in the %(source)s: every message leaving the local domains goes there.") % {
                "relay": config.relay_host, "source": snap.config_source,
            },
        )
    for route in config.routes:
        if policy._match_domain([route.domain], domain):
            host, port = split_host_port(route.host)
            return Destination(
                ROUTE, host, port, tls=route.tls or OPPORTUNISTIC, ca_file=route.ca_file,
                detail=_("The SMTP connection route %(pattern)s -> %(host)s of the %(source)s matches %(domain)s.") % {
                    "pattern": route.domain, "host": route.host, "source": snap.config_source, "domain": domain,
                },
            )
    return Destination(MX, domain, detail=_(
        "No relay host and no SMTP connection route for %(domain)s: its MX records decide."
    ) % {"domain": domain})


def connection_plan(ports: policy.OutboundPorts, destination: Destination) -> tuple[Step, ...]:
    """The connections to try, in order, from the Server document's SMTP Outbound column (spec 5.2, 5.5).

    SSL port Enabled: TLS from the first byte on the SSL port first, then, under the opportunistic policy
    only, the TCP/IP port if it is Enabled or Negotiated SSL. Under the verified policy there is no
    fallback from the SSL port, and the TCP/IP port requires STARTTLS (even when it is Enabled in clear).
    A destination written ``host:port`` uses its own port: as the TCP/IP port when that is on, else with
    TLS from the first byte when only the SSL port is Enabled.
    """
    tcp_on = ports.tcp_status in (policy.ENABLED, NEGOTIATED_SSL)
    tcp_mode = STARTTLS if ports.tcp_status == NEGOTIATED_SSL or destination.verified else PLAIN
    ssl_on = ports.ssl_status == policy.ENABLED
    if destination.port:
        if tcp_on:
            return (Step(destination.port, tcp_mode, destination.verified),)
        return (Step(destination.port, IMPLICIT),) if ssl_on else ()
    steps = []
    if ssl_on:
        steps.append(Step(ports.ssl_port, IMPLICIT))
    if tcp_on and not (ssl_on and destination.verified):
        steps.append(Step(ports.tcp_port, tcp_mode, destination.verified))
    return tuple(steps)


def order_mx(records: Iterable[tuple[int, str]], shuffle: Callable[[list], None]) -> list[str]:
    """Hosts of ``(preference, host)`` MX records, lowest preference first, hosts of equal preference in
    random order so that they share the load (RFC 5321 s 5.1). ``shuffle`` shuffles a list in place."""
    by_preference = {}
    for preference, host in records:
        by_preference.setdefault(preference, []).append(host)
    hosts = []
    for preference in sorted(by_preference):
        group = by_preference[preference]
        shuffle(group)
        hosts.extend(group)
    return hosts


def retry_delay(attempts: int, base_seconds: float, max_seconds: float, random: Callable[[], float]) -> float:
    """Seconds to wait after the ``attempts``-th failed try: doubling from ``base_seconds`` up to
    ``max_seconds``, then "equal jitter" (between half and all of it) so that the messages of one
    outage do not all come back at once. ``random`` returns a float in [0, 1)."""
    delay = min(max_seconds, base_seconds * 2 ** max(0, attempts - 1))
    return delay / 2 + random() * delay / 2


def reply_status(code: int, text: str | None) -> str:
    """The RFC 3463 status of a reply: its own enhanced code when it has one, else X.0.0 from the code."""
    found = ENHANCED_STATUS.match(text or "")
    if found and found.group(1) == str(code)[0]:
        return found.group(0)
    return f"{str(code)[0]}.0.0"


def _rfc822_headers(data: bytes | memoryview) -> tuple[str, Message]:
    headers = BytesHeaderParser().parsebytes(bytes(data))
    text = "".join(f"{name}: {value}\n" for name, value in headers.items())
    return text, headers


def non_delivery_report(snap: policy.SettingsSnapshot, message: ReportedMessage, failures: list[Failure], now: datetime) -> bytes:
    """An RFC 3464 report (multipart/report with message/delivery-status) for the sender of ``message``.

    ``message`` needs ``mail_from``, ``received_at`` and ``data``; the report quotes the original's
    headers (text/rfc822-headers, RFC 6522), not its body.
    """
    headers_text, original = _rfc822_headers(message.data)
    lines = [
        _("This is the mail system at %(host)s.") % {"host": snap.host_name},
        "",
        _("Your message could not be delivered to the following recipients:"),
        "",
    ]
    for failure in failures:
        lines.append(f"<{failure.recipient}>: {failure.reason}")
        if failure.reply:
            lines.append("    " + _("The remote server answered: %(reply)s") % {"reply": failure.reply})
    lines += ["", _("The headers of your message follow this report.")]

    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{snap.host_name}>"
    report["To"] = message.mail_from
    report["Subject"] = _("Undelivered Mail Returned to Sender")
    report["Date"] = email.utils.format_datetime(now)
    report["Message-ID"] = email.utils.make_msgid(domain=snap.host_name)
    report["Auto-Submitted"] = "auto-replied"
    if original.get("Message-ID"):
        report["In-Reply-To"] = original["Message-ID"]
        report["References"] = original["Message-ID"]
    report.attach(_text("\n".join(lines) + "\n", "plain"))
    report.attach(delivery_status(snap, message, failures, now))
    report.attach(_text(headers_text, "rfc822-headers"))
    return report.as_bytes(policy=SMTP_POLICY)


def _text(text: str, subtype: str) -> MIMEText:
    """A text part readable as is when it is ASCII (7bit), else UTF-8."""
    return MIMEText(text, subtype, "us-ascii" if text.isascii() else "utf-8")


def delivery_status(snap: policy.SettingsSnapshot, message: ReportedMessage, failures: list[Failure], now: datetime) -> Message:
    """The message/delivery-status part: per-message fields, then one block per recipient (RFC 3464 s 2)."""
    per_message = Message()
    per_message["Reporting-MTA"] = f"dns; {snap.host_name}"
    per_message["Arrival-Date"] = email.utils.format_datetime(message.received_at)
    blocks = [per_message]
    for failure in failures:
        block = Message()
        block["Final-Recipient"] = f"rfc822; {failure.recipient}"
        block["Action"] = "failed"
        block["Status"] = failure.status
        if failure.remote_mta:
            block["Remote-MTA"] = f"dns; {failure.remote_mta}"
        if failure.reply:
            block["Diagnostic-Code"] = f"smtp; {failure.reply}"
        block["Last-Attempt-Date"] = email.utils.format_datetime(now)
        blocks.append(block)
    part = Message()
    part["Content-Type"] = "message/delivery-status"
    part.set_payload(blocks)
    return part
