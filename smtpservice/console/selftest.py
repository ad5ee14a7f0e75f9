"""Inbound self-test: the console opens real SMTP sessions to a server's own enabled ports.

For each port the settings bind (``policy.bindings``), on the first listen address (else 127.0.0.1),
a ``smtplib`` client in its own thread records the transcript: greeting, EHLO, STARTTLS and the
certificate presented (read with verification off, then checked against the system's trusted CAs for
the server's host name in a second handshake), whether AUTH is offered before TLS, implicit TLS on
the SSL port, and a relay probe to an outside domain (MAIL FROM, RCPT TO, then RSET and QUIT: no
message is ever sent). Each network step waits at most ``TIMEOUT`` seconds. What the relay probe
means is judged with ``policy.relay_allowed``: the console's own address may be an internal host,
which an outside client is not.
"""
import datetime
import smtplib
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from cryptography import x509
from django.utils import formats, timezone, translation
from django.utils.translation import gettext as _

from directory import tls
from smtpservice.core import policy

TIMEOUT = 5.0
"""Seconds each network step of a probe may take."""
EHLO_NAME = "selftest.invalid"
RELAY_SENDER = "selftest@example.invalid"
RELAY_RECIPIENT = "probe@relay-test.invalid"
RELAY_DOMAIN = RELAY_RECIPIENT.rsplit("@", 1)[1]
OUTSIDE_CLIENT = "192.0.2.1"
"""An address no configuration trusts (RFC 5737 documentation range), standing in for "any outside client"."""

# Levels, as Bootstrap contextual classes: a flag is a security or service problem.
FLAG, NOTICE, GOOD, INFO = "danger", "warning", "success", "info"


@dataclass(frozen=True)
class Finding:
    level: str
    text: str

    @property
    def is_flag(self):
        return self.level == FLAG


@dataclass(frozen=True)
class Certificate:
    """What the certificate presented says, and whether the system's trusted CAs vouch for it."""

    subject: str
    issuer: str
    host_names: tuple
    not_after: datetime.datetime
    verified: bool
    verification: str

    @property
    def expired(self):
        return self.not_after < timezone.now()


@dataclass
class PortProbe:
    kind: str
    port: int
    host: str
    transcript: list = field(default_factory=list)
    findings: list = field(default_factory=list)
    certificate: Certificate | None = None

    @property
    def label(self):
        return _("TCP/IP port %(port)s") % {"port": self.port} if self.kind == policy.TCP else _("SSL port %(port)s") % {"port": self.port}

    @property
    def flags(self):
        return [finding for finding in self.findings if finding.is_flag]

    def sent(self, line):
        self.transcript.append(("C", line))

    def got(self, code, text):
        """Record a reply as it came, one line per line of a multi-line reply."""
        lines = (text.decode("utf-8", "replace") if isinstance(text, bytes) else text).split("\n")
        for number, line in enumerate(lines):
            self.transcript.append(("S", f"{code}{'-' if number < len(lines) - 1 else ' '}{line}"))

    def note(self, text):
        self.transcript.append(("", text))

    def find(self, level, text):
        self.findings.append(Finding(level, text))


@dataclass(frozen=True)
class SelfTest:
    host: str
    probes: tuple
    ran_at: datetime.datetime

    @property
    def flags(self):
        return [flag for probe in self.probes for flag in probe.flags]

    @property
    def notices(self):
        """Findings short of a flag that a person should still read (an untrusted certificate)."""
        return [finding for probe in self.probes for finding in probe.findings if finding.level == NOTICE]


class ProbeStopped(Exception):
    """The probe cannot go on; its findings say why."""


def probe_host(snap):
    return snap.listen_addresses[0] if snap.listen_addresses else "127.0.0.1"


def run(snap, host=None, verify_context=None):
    """Probe every port the settings of ``snap`` bind, in parallel; ``verify_context`` checks the certificates
    (default: the system's trusted CAs)."""
    host = host or probe_host(snap)
    ports = [binding for binding in policy.bindings(snap) if binding.enabled]
    language = translation.get_language()

    def probe_in_language(binding):
        # A worker thread starts in the default language: the findings are read by whoever asked.
        with translation.override(language):
            return probe(snap, host, binding, verify_context)

    with ThreadPoolExecutor(max_workers=max(len(ports), 1), thread_name_prefix="smtp-selftest") as pool:
        probes = list(pool.map(probe_in_language, ports))
    return SelfTest(host, tuple(probes), timezone.now())


def probe(snap, host, binding, verify_context=None):
    result = PortProbe(binding.port_kind, binding.port, host)
    client = _client(result, snap)
    try:
        _connect(result, client, snap, verify_context)
        features = _ehlo(result, client)
        if binding.port_kind == policy.TCP:
            _auth_before_tls(result, features)
            if "starttls" in features:
                _starttls(result, client, snap, verify_context)
                _ehlo(result, client)
            else:
                result.find(NOTICE, _("STARTTLS is not offered: mail and passwords on this port travel in clear text."))
        _relay_probe(result, client, snap)
    except ProbeStopped:
        pass
    except (smtplib.SMTPException, OSError) as error:
        result.find(FLAG, _("The session broke off: %(error)s") % {"error": _error_text(error)})
    finally:
        _quit(result, client)
    return result


def _error_text(error):
    """An error in plain words; smtplib reports a timeout as a disconnection caused by it."""
    if isinstance(error, TimeoutError) or isinstance(error.__context__, TimeoutError):
        return _("no answer within %(seconds)s seconds") % {"seconds": f"{TIMEOUT:g}"}
    return str(error) or error.__class__.__name__


def _unverified():
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _client(result, snap):
    if result.kind == policy.SSL:
        client = smtplib.SMTP_SSL(local_hostname=EHLO_NAME, timeout=TIMEOUT, context=_unverified())
    else:
        client = smtplib.SMTP(local_hostname=EHLO_NAME, timeout=TIMEOUT)
    client._host = snap.host_name  # the name sent in TLS SNI; smtplib sets it only when its constructor connects
    return client


def _connect(result, client, snap, verify_context):
    values = {"port": result.port, "host": result.host}
    if result.kind == policy.SSL:
        result.note(_("Connecting to %(host)s port %(port)s with TLS from the first byte") % values)
    else:
        result.note(_("Connecting to %(host)s port %(port)s") % values)
    try:
        code, text = client.connect(result.host, result.port)
    except ConnectionRefusedError:
        result.find(FLAG, _(
            "Port %(port)s on %(host)s refused the connection: nothing listens there. Check the listener status."
        ) % values)
        raise ProbeStopped from None
    except ssl.SSLError as error:
        result.find(FLAG, _("The TLS handshake on the SSL port failed: %(error)s") % {"error": _error_text(error)})
        raise ProbeStopped from None
    except (OSError, smtplib.SMTPException) as error:
        result.find(FLAG, _("Port %(port)s on %(host)s gave no greeting: %(error)s") % {**values, "error": _error_text(error)})
        raise ProbeStopped from None
    if result.kind == policy.SSL:
        result.certificate = _certificate(client.sock, lambda: _ssl_socket(result), snap, verify_context)
        _judge_certificate(result)
        result.find(GOOD, _("Implicit TLS works on the SSL port (%(version)s).") % {"version": client.sock.version()})
    result.got(code, text)
    if code != 220:
        result.find(NOTICE, _(
            "The greeting refuses this console's address (%(reply)s): the rest of the test cannot run from here. The "
            "policy simulator shows why."
        ) % {"reply": f"{code} {text.decode('utf-8', 'replace')}"})
        raise ProbeStopped


def _ehlo(result, client):
    result.sent(f"EHLO {EHLO_NAME}")
    code, text = client.ehlo()
    result.got(code, text)
    if code != 250:
        result.find(NOTICE, _("EHLO was refused: %(reply)s") % {"reply": f"{code} {text.decode('utf-8', 'replace')}"})
        raise ProbeStopped
    return dict(client.esmtp_features)


def _auth_before_tls(result, features):
    if "auth" in features:
        result.find(FLAG, _(
            "AUTH is offered before TLS: passwords can travel in clear text. Set TCP/IP authentication: Name & "
            "password to No (Server document, Mail tab, or the SMTP Inbound site), so clients authenticate after "
            "STARTTLS or on the SSL port."
        ))
    else:
        result.find(GOOD, _("AUTH is not offered before TLS."))


def _starttls(result, client, snap, verify_context):
    result.sent("STARTTLS")
    try:
        code, text = client.starttls(context=_unverified())
    except smtplib.SMTPResponseException as error:
        result.got(error.smtp_code, error.smtp_error)
        result.find(FLAG, _("STARTTLS is offered but refused: %(reply)s") % {
            "reply": f"{error.smtp_code} {error.smtp_error.decode('utf-8', 'replace')}",
        })
        raise ProbeStopped from None
    except (ssl.SSLError, OSError) as error:
        result.find(FLAG, _("The STARTTLS handshake failed: %(error)s") % {"error": _error_text(error)})
        raise ProbeStopped from None
    result.got(code, text)
    result.note(_("TLS handshake done (%(version)s)") % {"version": client.sock.version()})
    result.certificate = _certificate(client.sock, lambda: _starttls_socket(result), snap, verify_context)
    _judge_certificate(result)
    result.find(GOOD, _("STARTTLS works (%(version)s).") % {"version": client.sock.version()})


def _ssl_socket(result):
    return socket.create_connection((result.host, result.port), timeout=TIMEOUT)


def _starttls_socket(result):
    """A socket on which the listener has just answered 220 to STARTTLS: the TLS handshake comes next."""
    client = smtplib.SMTP(local_hostname=EHLO_NAME, timeout=TIMEOUT)
    try:
        client.connect(result.host, result.port)
        client.ehlo()
        code, text = client.docmd("STARTTLS")
        if code != 220:
            raise smtplib.SMTPResponseException(code, text)
    except BaseException:
        client.close()
        raise
    sock, client.sock = client.sock, None
    client.close()
    return sock


def _certificate(tls_socket, fresh_socket, snap, verify_context):
    """The certificate of this TLS session, and whether a verifying handshake on a fresh connection trusts it."""
    certificate = x509.load_der_x509_certificate(tls_socket.getpeercert(binary_form=True))
    described = tls.describe(certificate)
    context = verify_context or ssl.create_default_context()
    try:
        with context.wrap_socket(fresh_socket(), server_hostname=snap.host_name):
            verified, why = True, _("trusted for %(host)s") % {"host": snap.host_name}
    except ssl.SSLCertVerificationError as error:
        verified, why = False, error.verify_message or str(error)
    except (smtplib.SMTPException, OSError) as error:
        verified, why = False, _error_text(error)
    return Certificate(
        subject=described.subject, issuer=certificate.issuer.rfc4514_string(), host_names=described.host_names,
        not_after=described.not_after, verified=verified, verification=why,
    )


def _judge_certificate(result):
    """An expired certificate makes every client that checks it refuse TLS: a flag."""
    certificate = result.certificate
    if not certificate.verified:
        result.find(NOTICE, _(
            "The certificate presented is not trusted (%(why)s): senders that check certificates refuse it, the others "
            "encrypt without knowing who they talk to."
        ) % {"why": certificate.verification})
    if certificate.expired:
        result.find(FLAG, _(
            "The certificate presented expired on %(date)s: clients that check certificates refuse it. Renew the TLS "
            "credentials."
        ) % {"date": formats.date_format(timezone.localtime(certificate.not_after), "SHORT_DATE_FORMAT")})


def _relay_probe(result, client, snap):
    """MAIL FROM and RCPT TO an outside domain; an accepted RCPT is flagged unless only this console is trusted."""
    result.sent(f"MAIL FROM:<{RELAY_SENDER}>")
    code, text = client.mail(RELAY_SENDER)
    result.got(code, text)
    if code != 250:
        result.find(INFO, _(
            "The relay probe stopped at MAIL FROM (%(reply)s): an unauthenticated client cannot send mail here at all."
        ) % {"reply": f"{code} {text.decode('utf-8', 'replace')}"})
        return
    result.sent(f"RCPT TO:<{RELAY_RECIPIENT}>")
    code, text = client.rcpt(RELAY_RECIPIENT)
    result.got(code, text)
    if code != 250:
        result.find(GOOD, _("The relay probe to %(domain)s was refused (%(reply)s).") % {
            "domain": RELAY_DOMAIN, "reply": f"{code} {text.decode('utf-8', 'replace')}",
        })
        return
    console_ip = client.sock.getsockname()[0]
    facts = policy.SessionFacts(local_ip=result.host, local_port=result.port, port=result.kind, client_ip=console_ip)
    here = policy.relay_allowed(snap, facts, RELAY_DOMAIN)
    outside = policy.relay_allowed(snap, policy.SessionFacts(
        local_ip=result.host, local_port=result.port, port=result.kind, client_ip=OUTSIDE_CLIENT,
    ), RELAY_DOMAIN)
    if not here.allowed:
        result.find(FLAG, _(
            "The relay probe to %(domain)s was accepted although the settings refuse it (%(why)s): the listener may "
            "serve older settings. See the listener status."
        ) % {"domain": RELAY_DOMAIN, "why": here.detail})
        return
    if not outside.allowed:
        result.find(GOOD, _(
            "The relay probe was accepted only because this console's address %(ip)s is trusted: %(why)s An outside "
            "client is refused: %(outside)s"
        ) % {"ip": console_ip, "why": here.detail, "outside": outside.detail})
        return
    result.find(FLAG, _(
        "The relay probe to %(domain)s was accepted: this server relays mail for unauthenticated clients to outside "
        "domains (an open relay). %(why)s Set Perform anti-relay enforcement (Configuration Settings, Router/SMTP tab) "
        "to External hosts or All connecting hosts."
    ) % {"domain": RELAY_DOMAIN, "why": outside.detail})


def _quit(result, client):
    """RSET and QUIT, so the listener drops the probe's envelope; a broken session is just closed."""
    if client.sock is None:
        client.close()
        return
    try:
        result.sent("RSET")
        result.got(*client.rset())
        result.sent("QUIT")
        result.got(*client.quit())
    except (smtplib.SMTPException, OSError):
        client.close()
