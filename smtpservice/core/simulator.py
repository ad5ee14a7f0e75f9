"""Policy simulator: what the listener would answer a given client, step by step, and why.

Pure: ``simulate(snap, inputs)`` takes the ``SettingsSnapshot`` the listener itself loads
(``smtpservice.store.snapshot.load_snapshot``) and plays the session with ``session.Simulation``, the
listener's order of questions to ``smtpservice.core.policy``. Each ``Step`` is one thing the client does,
the exact reply it gets, and checks that explain the answer: the list entry, site or document that
decided, asked of the same policy functions. Nothing is sent and nothing is stored.
"""
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from smtpservice.core import policy, throttle
from smtpservice.core import session as machine

CLIENT_NAME = "client.example.org"
"""The EHLO name the simulated client gives; the policy never looks at it."""

CONNECT, EHLO, HELO, STARTTLS, AUTH, MAIL, RCPT = "CONNECT", "EHLO", "HELO", "STARTTLS", "AUTH", "MAIL", "RCPT"


@dataclass(frozen=True)
class Inputs:
    """What the admin asks about. ``password`` None: the login is taken as authenticated if its password is right."""

    client_ip: str
    local_ip: str
    port: int
    starttls: bool = False
    login: str = ""
    password: str | None = None
    mail_from: str = ""
    recipients: tuple = ()
    helo: bool = False
    """The client greets with HELO, as an old client does, instead of EHLO."""
    client_host: str = ""
    """The client's confirmed host name, as the listener's lookup would find it; "" for none."""
    auth_failures: throttle.Counts | None = None
    """Failed AUTH in the throttle window for this login and client, as stored now; None: not known."""


@dataclass(frozen=True)
class Check:
    """One question asked of the policy: ``passed`` True/False, or None when it only informs."""

    title: str
    detail: str
    passed: bool | None = None


@dataclass(frozen=True)
class Step:
    """One thing the client does (``sent``; empty for connecting), the reply it gets, and why."""

    command: str
    title: str
    sent: str
    reply: machine.Reply | None
    checks: tuple = ()
    argument: str = ""
    kind: str = ""
    """For RCPT: "local", "relay" or "refused"."""

    @property
    def code(self) -> int | None:
        return self.reply.code if self.reply else None

    @property
    def text(self) -> str:
        return self.reply.text if self.reply else ""

    @property
    def outcome(self) -> str:
        """"accepted", "refused", "closed" (nothing answers) or "info" (no SMTP reply of its own)."""
        if self.reply is None:
            return "info"
        if self.reply.code is None:
            return "closed"
        return "accepted" if self.reply.accepted else "refused"

    @property
    def rule(self) -> str:
        return self.reply.decision.rule if self.reply else ""


@dataclass(frozen=True)
class Simulation:
    inputs: Inputs
    port_kind: str | None
    steps: tuple
    summary: str
    recipients: dict = field(default_factory=dict)
    """{"local": [...], "relay": [...], "refused": [...]}: the recipients by outcome."""

    @property
    def reply_steps(self) -> list[Step]:
        """The steps a client sees a reply (or silence) for, in order: what the agreement tests compare."""
        return [step for step in self.steps if step.reply is not None]


def port_kind(snap: policy.SettingsSnapshot, port: int) -> str | None:
    """TCP or SSL when ``port`` is one of the server's SMTP Inbound ports, else None."""
    if port == snap.inbound.tcp_port:
        return policy.TCP
    if port == snap.inbound.ssl_port:
        return policy.SSL
    return None


def _same_address(first: str, second: str) -> bool:
    try:
        return ipaddress.ip_address(first) == ipaddress.ip_address(second)
    except ValueError:
        return str(first).strip().lower() == str(second).strip().lower()


def _unreachable(snap: policy.SettingsSnapshot, inputs: Inputs, kind: str | None) -> str:
    """Why nothing answers on this address and port (the connection is refused), or "" when the listener binds it."""
    values = {"port": inputs.port, "address": inputs.local_ip, "doc": snap.server_document,
              "tcp": snap.inbound.tcp_port, "ssl": snap.inbound.ssl_port}
    if kind is None:
        return _(
            "Port %(port)s is neither SMTP Inbound port of the %(doc)s (TCP/IP port %(tcp)s, SSL port %(ssl)s): "
            "the listener does not listen there, and the connection is refused."
        ) % values
    binding = next(binding for binding in policy.bindings(snap) if binding.port_kind == kind)
    if not binding.enabled:
        return binding.detail + " " + _("The connection is refused.")
    if snap.listen_addresses and not any(_same_address(inputs.local_ip, address) for address in snap.listen_addresses):
        return _(
            "The listener binds only %(addresses)s (listen addresses of the %(doc)s), not %(address)s: the connection "
            "is refused."
        ) % {**values, "addresses": ", ".join(snap.listen_addresses)}
    return ""


def _connect_title(inputs: Inputs) -> str:
    return _("Connect from %(client)s to %(local)s port %(port)s") % {
        "client": inputs.client_ip, "local": inputs.local_ip, "port": inputs.port,
    }


def _throttle_check(counts: throttle.Counts) -> Check:
    """The AUTH throttle as it stands for this login from this client (spec 3.5)."""
    verdict = throttle.decide(counts)
    if verdict.refuse:
        return Check(_("Failed AUTH throttle"), verdict.detail, False)
    if verdict.delay:
        return Check(_("Failed AUTH throttle"), verdict.detail)
    return Check(_("Failed AUTH throttle"), _("No failed AUTH counts against this login or client now: no delay."), True)


def _client_name_check(snap: policy.SettingsSnapshot, facts: policy.SessionFacts) -> Check | None:
    """Which host list entries the client's name matches, and why (an exact name, or a .domain suffix);
    None when no name is given and no entry is a name."""
    config = snap.config
    lists = (
        (_("Deny connections from these hosts"), config.connection_deny_hosts),
        (_("Allow connections only from these hosts"), config.connection_allow_hosts),
        (_("Internal hosts"), config.internal_hosts),
        (_("Exclude these connecting hosts from anti-relay checks"), config.anti_relay_exclude_hosts),
    )
    names = [entry for _label, entries in lists for entry in entries if not policy.is_address_entry(entry)]
    if not facts.client_host and not names:
        return None
    if not facts.client_host:
        return Check(_("Client host name"), _(
            "No host name given: entries written as names (exact, or .domain for any host in it) match no client. The "
            "listener takes a name only when the reverse lookup of the address is confirmed by a forward lookup."
        ))
    matches = [
        _("%(entry)s of %(list)s (%(how)s)") % {
            "entry": entry, "list": label,
            "how": _("any host in that domain") if entry.strip().startswith(".") else _("the exact name"),
        }
        for label, entries in lists for entry in entries if policy.host_name_matches(entry, facts.client_host)
    ]
    values = {"host": facts.client_host, "matches": "; ".join(matches)}
    if matches:
        return Check(_("Client host name"), _("The client is named %(host)s, which matches %(matches)s.") % values)
    return Check(_("Client host name"), _("The client is named %(host)s; no host name entry matches it.") % values)


def _connect_checks(snap: policy.SettingsSnapshot, facts: policy.SessionFacts, session: machine.Simulation) -> list[Check]:
    binding = next(binding for binding in policy.bindings(snap) if binding.port_kind == facts.port)
    checks = [Check(_("Port"), binding.detail, True)]
    name_check = _client_name_check(snap, facts)
    if name_check:
        checks.append(name_check)
    if facts.port == policy.SSL:
        credentials = policy.tls_credentials_for(snap, facts.local_ip, facts.local_host)
        checks.append(Check(_("TLS from the first byte"), _("The SSL port uses %(detail)s.") % {
            "detail": credentials.detail,
        }, session.credentials_name() is not None))
    connection = policy.connection_allowed(snap, facts)
    checks.append(Check(_("Connection controls"), connection.detail, connection.allowed))
    if connection.allowed:
        source = policy.auth_source(snap, facts)
        checks.append(Check(_("Authentication options"), source.detail, source.options is not None))
        enabled = policy.site_enabled(snap, facts)
        checks.append(Check(_("Site enabled"), enabled.detail, enabled.allowed))
    return checks


def _ehlo_checks(snap: policy.SettingsSnapshot, facts: policy.SessionFacts, reply: machine.Reply) -> list[Check]:
    if not reply.accepted:
        return [Check(_("EHLO"), reply.decision.detail, False)]
    mechanisms = policy.auth_mechanisms(snap, facts)
    anonymous = policy.anonymous_allowed(snap, facts)
    return [
        Check(_("EHLO extensions"), reply.decision.detail),
        Check(_("AUTH"), mechanisms.detail, bool(mechanisms)),
        Check(_("Anonymous"), anonymous.detail, anonymous.allowed),
    ]


def _auth_checks(snap: policy.SettingsSnapshot, facts: policy.SessionFacts, login: str, password_given: bool) -> list[Check]:
    """Who the login names and whether that person may use this server, asked before the AUTH itself."""
    gate = policy.auth_allowed(snap, facts)
    if not gate.allowed:
        return []  # the reply's own check says why
    checks = [Check(_("AUTH allowed"), gate.detail, True)]
    match = policy.find_person(snap, login)
    checks.append(Check(_("Login"), match.detail, match.person is not None))
    if match.person is None:
        return checks
    if password_given:
        checks.append(Check(_("Password"), _("The password given is checked against the Internet password of %(name)s.") % {
            "name": match.person.full_name,
        }))
    else:
        checks.append(Check(_("Password"), _(
            "No password was given: the simulator takes it as right. With a wrong password the client gets "
            "%(reply)s and the session closes."
        ) % {"reply": "{} {}".format(*policy.AUTH_FAILED)}))
    access = policy.server_access(snap, match.person.full_name)
    checks.append(Check(_("Server access"), access.detail, access.allowed))
    return checks


def _blocked(session: machine.SmtpSession) -> bool:
    """After a refused greeting or once closed, the reply no longer depends on the command: nothing else to explain."""
    return session.closed or session.refusal is not None


def _assume_right(password: str, password_hash: str) -> bool:
    """No password given: the login is simulated as if its password were right (a person without one still fails)."""
    return True


def _reply_check(title: str, reply: machine.Reply) -> Check:
    return Check(title, reply.decision.detail, reply.accepted if reply.code is not None else False)


def simulate(snap: policy.SettingsSnapshot, inputs: Inputs, verify_password: Callable[[str, str], bool] | None = None) -> Simulation:
    """The steps of the session ``inputs`` describes, as the listener serving ``snap`` would answer them."""
    kind = port_kind(snap, inputs.port)
    unreachable = _unreachable(snap, inputs, kind)
    if unreachable:
        step = Step(CONNECT, _connect_title(inputs), "", machine.Reply(
            None, "", policy.Decision(False, None, "", "not_listening", unreachable), True,
        ), (Check(_("Port"), unreachable, False),))
        return Simulation(inputs, kind, (step,), unreachable)
    facts = policy.SessionFacts(local_ip=inputs.local_ip, local_port=inputs.port, port=kind, client_ip=inputs.client_ip,
                                client_host=inputs.client_host or None)
    if inputs.password is None:
        verify_password = _assume_right
    session = machine.Simulation(snap, facts, verify_password)
    steps = []
    checks = _connect_checks(snap, facts, session)
    steps.append(Step(CONNECT, _connect_title(inputs), "", session.connect(), tuple(checks)))

    def ehlo():
        before = session.facts
        if inputs.helo:
            reply = session.helo(CLIENT_NAME)
            steps.append(Step(HELO, _("HELO"), f"HELO {CLIENT_NAME}", reply, (_reply_check(_("HELO"), reply),)))
            return
        reply = session.ehlo(CLIENT_NAME)
        title = _("EHLO after STARTTLS") if before.starttls_done else _("EHLO")
        steps.append(Step(EHLO, title, f"EHLO {CLIENT_NAME}", reply, tuple(_ehlo_checks(snap, before, reply))))

    ehlo()
    if inputs.starttls and kind == policy.TCP:
        blocked = _blocked(session)
        credentials = policy.tls_credentials_for(snap, facts.local_ip, facts.local_host)
        reply = session.starttls()
        checks = [_reply_check(_("STARTTLS"), reply)]
        if reply.accepted:
            checks.append(Check(_("TLS credentials"), _("STARTTLS uses %(detail)s.") % {"detail": credentials.detail}, True))
        elif not blocked:
            checks.append(Check(_("Then"), _("The client goes on without TLS (a client that insists on TLS stops here).")))
        steps.append(Step(STARTTLS, _("STARTTLS"), "STARTTLS", reply, tuple(checks)))
        if reply.accepted:
            ehlo()
    if inputs.login:
        checks = [] if _blocked(session) else _auth_checks(snap, session.facts, inputs.login, inputs.password is not None)
        if inputs.auth_failures is not None:
            checks.insert(0, _throttle_check(inputs.auth_failures))
        reply = session.auth(inputs.login, inputs.password or "")
        title = _("AUTH as %(login)s") % {"login": inputs.login}
        if not (reply.accepted and checks):
            checks.append(_reply_check(_("Authentication"), reply))
        steps.append(Step(AUTH, title, "AUTH PLAIN …", reply, tuple(checks), argument=inputs.login))
    recipients = {"local": [], "relay": [], "refused": []}
    if inputs.mail_from:
        anonymous = not session.facts.authenticated_as
        reply = session.mail(inputs.mail_from)
        checks = [_reply_check(_("MAIL FROM"), reply)]
        if anonymous and reply.accepted and snap.inbound.enforce_server_access:
            checks.append(ANONYMOUS_NOT_CHECKED)
        steps.append(Step(MAIL, _("MAIL FROM"), f"MAIL FROM:<{inputs.mail_from}>", reply, tuple(checks),
                          argument=inputs.mail_from))
        for address in inputs.recipients:
            reply = session.rcpt(address)
            kind_of = getattr(reply.decision, "kind", "") if reply.accepted else "refused"
            kind_of = "local" if kind_of == "postmaster" else kind_of
            recipients[kind_of or "refused"].append(address)
            title = _("RCPT TO %(address)s") % {"address": address}
            steps.append(Step(RCPT, title, f"RCPT TO:<{address}>", reply, (_reply_check(_("Recipient"), reply),),
                              argument=address, kind=kind_of))
    return Simulation(inputs, kind, tuple(steps), _summary(steps, recipients), recipients)


ANONYMOUS_NOT_CHECKED = Check(gettext_lazy("Enforce server access settings"), gettext_lazy(
    "Enforce server access settings is Yes, but it checks authenticated users only: this anonymous session is not "
    "checked against Access server and Not access server (spec 3.5). A person listed in Not access server, refused "
    "at AUTH, can still send anonymously like anyone else."
))


def _summary(steps: list[Step], recipients: dict) -> str:
    """One sentence: what became of this client and its message."""
    first_refusal = next((
        step for step in steps if step.outcome in ("refused", "closed") and step.command not in (STARTTLS, RCPT)
    ), None)
    accepted = len(recipients["local"]) + len(recipients["relay"])
    if first_refusal is not None and not accepted:
        if first_refusal.code is None:
            return _("The session ends at “%(step)s”: %(detail)s") % {
                "step": first_refusal.title, "detail": first_refusal.reply.decision.detail,
            }
        return _("The client is stopped at “%(step)s” with %(reply)s.") % {
            "step": first_refusal.title, "reply": f"{first_refusal.code} {first_refusal.text}",
        }
    if not any(step.command == MAIL for step in steps):
        return _("The session is open; no MAIL FROM was given to go further.")
    if not accepted:
        return _("No recipient is accepted: the message cannot be sent.")
    return ngettext(
        "The listener accepts the message for %(count)s recipient (%(local)s local, %(relay)s relayed, %(refused)s refused).",
        "The listener accepts the message for %(count)s recipients (%(local)s local, %(relay)s relayed, %(refused)s refused).",
        accepted,
    ) % {"count": accepted, "local": len(recipients["local"]), "relay": len(recipients["relay"]), "refused": len(recipients["refused"])}
