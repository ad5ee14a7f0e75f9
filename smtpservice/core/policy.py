"""SMTP policy of the inbound listener: which site applies, who may connect, authenticate, send and relay.

Pure functions over an immutable ``SettingsSnapshot`` (built from the directory by
``smtpservice.store.snapshot``), so the listener's session machine and the console's policy simulator ask the same
questions and get the same answers. Each answer carries the exact SMTP reply the client gets and a
plain explanation naming the document, option or list entry that decided. No sockets, no database;
``docs/design/policy.md`` lists every rule and our decisions where the spec is silent.

Conventions: an allowed ``Decision`` has ``code`` None (the protocol layer gives its usual positive
reply) unless the policy composes that reply itself (VRFY); a refused one has the reply to send, and
``close`` when the session must end after it.
"""
import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType

from django.utils.translation import get_language, gettext_lazy

from directory import choices, names
from smtpservice.core import texts
from smtpservice.core.replies import (  # noqa: F401 (the policy's replies, named where the tests read them)
    ALREADY_AUTHENTICATED,
    AUTH_FAILED,
    AUTH_NOT_ENABLED,
    AUTH_REQUIRED,
    BAD_RECIPIENT_SYNTAX,
    BAD_SENDER_SYNTAX,
    CANNOT_VRFY,
    COMMAND_DISABLED,
    CONNECTION_DENIED,
    ERROR_LIMIT,
    NOT_AUTHORIZED,
    RELAY_REJECTED,
    SENDER_NOT_OWNED,
    SITE_NOT_ENABLED,
    SITE_NOT_ENABLED_SEQUENCE,
    STARTTLS_FIRST,
    STORAGE_FAILED,
    TLS_ALREADY_ACTIVE,
    TLS_NOT_AVAILABLE,
    TOO_LARGE,
    TOO_MANY_RECIPIENTS,
    USER_UNKNOWN,
    VRFY_FOUND,
)

_ = texts.explain
"""Explanations keep their msgid and values: the session log stores them, and a page shows them in its reader's language."""

TCP = "tcp"
SSL = "ssl"
PORT_KINDS = (TCP, SSL)

# The documents' choices (directory.choices), by the names the policy reads them under.
ENABLED = choices.Status.ENABLED
DISABLED = choices.Status.DISABLED
REQUIRED = choices.StartTlsInbound.REQUIRED
FEWER = choices.InternetAuthentication.FEWER
MORE = choices.InternetAuthentication.MORE
ENFORCE_EXTERNAL = choices.AntiRelayEnforcement.EXTERNAL
ENFORCE_ALL = choices.AntiRelayEnforcement.ALL
ENFORCE_NONE = choices.AntiRelayEnforcement.NONE
ANY = "*"

AUTH_MECHANISMS = ("PLAIN", "LOGIN")
"""SASL mechanisms offered where Name & password is Yes (RFC 4954 s 4; passwords need TLS to be safe)."""

# Replies live in one table (``core.replies``); the policy names the ones it decides.
BAD_SEQUENCE = 503
"""Code for every command but QUIT after a refused greeting (RFC 5321 s 3.1)."""
ANY_SENDER_GROUP = "LocalDomainServers"
"""Domino's group of the domain's servers: an account in it sends for others (a server authenticating to
its relay host), so it may use any sender address."""
POSTMASTER = "postmaster"
"""RFC 5321 s 4.5.1: every server accepts mail to postmaster, bare or at any of its domains."""


# --- Answers asked again and again -----------------------------------------------------------------

MAX_REMEMBERED = 10_000
"""Answers a snapshot keeps at most; past that it forgets them all and starts again."""


def answer_once(function: Callable) -> Callable:
    """Remember a pure answer per snapshot: the same question about the same snapshot gets the same answer.

    Every connection from the same client, every EHLO in the same state, every recipient already seen
    asks the policy the same question; its explanations (translated, formatted) are built only the first
    time. The answers live on the snapshot, so a saved change (a new snapshot) starts afresh; the key
    holds the active language, since explanations are translated.
    """
    name = function.__name__

    @functools.wraps(function)
    def remembered(snap: "SettingsSnapshot", *args, **kwargs) -> object:
        answers = snap.__dict__.get("_answers")
        if answers is None:
            answers = {}
            object.__setattr__(snap, "_answers", answers)
        key = (name, get_language(), args, tuple(sorted(kwargs.items())))
        try:
            return answers[key]
        except KeyError:
            pass
        except TypeError:  # an argument that cannot be a key (a list): answered, not remembered
            return function(snap, *args, **kwargs)
        if len(answers) >= MAX_REMEMBERED:
            answers.clear()
        answers[key] = answer = function(snap, *args, **kwargs)
        return answer

    return remembered


# --- Settings snapshot -------------------------------------------------------------------------


def _freeze(instance: object, *field_names: str) -> None:
    """Turn list arguments into tuples so a snapshot built from lists stays immutable."""
    for name in field_names:
        value = getattr(instance, name)
        if isinstance(value, list):
            object.__setattr__(instance, name, tuple(value))


@dataclass(frozen=True)
class AuthOptions:
    """The five authentication options of a Server document's Mail tab or a Site's Security tab."""

    tcp_name_password: bool = False
    tcp_anonymous: bool = True
    ssl_client_certificate: bool = False
    ssl_name_password: bool = True
    ssl_anonymous: bool = True

    @property
    def all_off(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self))

    def name_password(self, tls: bool) -> bool:
        return self.ssl_name_password if tls else self.tcp_name_password

    def anonymous(self, tls: bool) -> bool:
        return self.ssl_anonymous if tls else self.tcp_anonymous

    def describe(self) -> str:
        yes_no = {True: _("Yes"), False: _("No")}
        return _(
            "TCP/IP: Name & password %(tcp_np)s, Anonymous %(tcp_anon)s; SSL: Client certificate %(ssl_cert)s, "
            "Name & password %(ssl_np)s, Anonymous %(ssl_anon)s"
        ) % {
            "tcp_np": yes_no[self.tcp_name_password], "tcp_anon": yes_no[self.tcp_anonymous],
            "ssl_cert": yes_no[self.ssl_client_certificate], "ssl_np": yes_no[self.ssl_name_password],
            "ssl_anon": yes_no[self.ssl_anonymous],
        }


@dataclass(frozen=True)
class SiteSnapshot:
    """An SMTP Inbound Internet Site document hosting the server."""

    name: str
    mapped_addresses: tuple = (ANY,)
    options: AuthOptions = AuthOptions()
    tls_credentials_name: str | None = None

    def __post_init__(self):
        _freeze(self, "mapped_addresses")


@dataclass(frozen=True)
class PersonSnapshot:
    full_name: str
    first_name: str = ""
    last_name: str = ""
    short_name: str = ""
    internet_address: str | None = None
    password_hash: str = field(default="", repr=False)


@dataclass(frozen=True)
class TlsCredentialsSnapshot:
    """Certificate and key of a TLS credentials document, for the listener's TLS contexts."""

    name: str
    certificate_pem: str = field(repr=False)
    private_key_pem: str = field(repr=False)
    host_names: tuple = ()
    not_after: object = None


@dataclass(frozen=True)
class Route:
    """An SMTP connection route: mail for ``domain`` goes to ``host`` (``host`` or ``host:port``).

    ``tls`` is its TLS policy (spec 5.5): "opportunistic" (STARTTLS when offered, any certificate) or
    "verified" (TLS required, the certificate checked against ``ca_file`` when given, else the system store).
    """

    domain: str
    host: str
    tls: str = "opportunistic"
    ca_file: str = ""


@dataclass(frozen=True)
class InboundPorts:
    """Server document, Ports > Internet Ports > Mail, column Mail (SMTP Inbound)."""

    tcp_port: int = 25
    tcp_status: str = ENABLED
    enforce_server_access: bool = False
    options: AuthOptions = AuthOptions()
    ssl_port: int = 465
    ssl_status: str = DISABLED


@dataclass(frozen=True)
class OutboundPorts:
    """Server document, Ports > Internet Ports > Mail, column Mail (SMTP Outbound)."""

    tcp_port: int = 25
    tcp_status: str = ENABLED
    ssl_port: int = 465
    ssl_status: str = DISABLED


@dataclass(frozen=True)
class ConfigSnapshot:
    """Configuration Settings, Router/SMTP tab, as it applies to the server (defaults as in the spec)."""

    local_domains: tuple = ()
    smtp_outside_local_domain: bool = True
    relay_host: str = ""
    relay_auth: str = DISABLED
    relay_auth_name: str = ""
    relay_auth_password: str = field(default="", repr=False)
    relay_auth_allow_cleartext: bool = False
    relay_tls_policy: str = "opportunistic"
    relay_ca_bundle: str = ""
    routes: tuple = ()
    max_message_size_kb: int = 10240
    max_recipients: int = 100
    starttls_inbound: str = ENABLED
    size_extension: bool = True
    pipelining: bool = True
    eightbitmime: bool = False
    help_command: bool = True
    vrfy_command: bool = False
    anti_relay_enforcement: str = ENFORCE_EXTERNAL
    internal_hosts: tuple = ("127.0.0.0/8", "::1")
    anti_relay_exclude_hosts: tuple = ()
    authenticated_users_relay: bool = True
    relay_allow_domains: tuple = ()
    relay_deny_domains: tuple = ()
    connection_allow_hosts: tuple = ()
    connection_deny_hosts: tuple = ()
    error_limit: int = 10
    administrators: tuple = ("LocalDomainAdmins",)

    def __post_init__(self):
        _freeze(
            self, "local_domains", "routes", "administrators", "internal_hosts", "anti_relay_exclude_hosts", "relay_allow_domains",
            "relay_deny_domains", "connection_allow_hosts", "connection_deny_hosts",
        )

    @property
    def max_message_bytes(self) -> int | None:
        """The size limit in bytes (a kilobyte is 1024 bytes), or None for no limit."""
        return self.max_message_size_kb * 1024 or None


@dataclass(frozen=True)
class SettingsSnapshot:
    """Everything the listener of one server needs, read from the directory at one revision."""

    server_name: str
    host_name: str
    revision: int = 0
    smtp_listener_enabled: bool = True
    load_internet_sites: bool = False
    listen_addresses: tuple = ()
    access_server: tuple = ()
    not_access_server: tuple = ()
    internet_authentication: str = FEWER
    tls_credentials_name: str | None = None
    inbound: InboundPorts = InboundPorts()
    outbound: OutboundPorts = OutboundPorts()
    sites: tuple = ()
    config: ConfigSnapshot = ConfigSnapshot()
    config_source: str = ""
    people: tuple = ()
    groups: object = field(default_factory=dict)
    credentials: object = field(default_factory=dict, repr=False)
    _by_address: object = field(init=False, repr=False, compare=False, default=None)
    _by_name: object = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self):
        _freeze(self, "listen_addresses", "access_server", "not_access_server", "sites", "people")
        object.__setattr__(self, "groups", MappingProxyType({
            key: (group_type, tuple(members)) for key, (group_type, members) in dict(self.groups).items()
        }))
        object.__setattr__(self, "credentials", MappingProxyType(dict(self.credentials)))
        object.__setattr__(self, "_by_address", MappingProxyType({
            person.internet_address.lower(): person for person in self.people if person.internet_address
        }))
        object.__setattr__(self, "_by_name", MappingProxyType({person.full_name: person for person in self.people}))

    @property
    def server_document(self) -> str:
        return _("Server document %(server)s") % {"server": self.server_name}

    @property
    def has_tls_credentials(self) -> bool:
        """Does any certificate serve this server: its own, or (with Internet Sites) a hosting site's?"""
        return bool(self.tls_credentials_name) or (
            self.load_internet_sites and any(site.tls_credentials_name for site in self.sites)
        )

    def postmaster_people(self) -> tuple[PersonSnapshot, ...]:
        """The people the Administrators field names, directly or through groups; worked out once per snapshot."""
        cached = self.__dict__.get("_postmaster_people")
        if cached is None:
            entries = self.config.administrators
            # The groups are expanded once for all the people, however deep they nest.
            administrators = names.AccessList(entries, self.groups) if entries else ()
            cached = tuple(person for person in self.people if person.full_name in administrators)
            object.__setattr__(self, "_postmaster_people", cached)
        return cached

    def person_by_address(self, address: str) -> PersonSnapshot | None:
        return self._by_address.get(address.lower())

    def person_by_full_name(self, full_name: str) -> PersonSnapshot | None:
        """The Person an authenticated session names (``SessionFacts.authenticated_as`` is its full name as stored)."""
        return self._by_name.get(full_name)


@dataclass(frozen=True)
class SessionFacts:
    """What the listener knows about one session. ``tls`` is forced on for the SSL port and after STARTTLS."""

    local_ip: str
    local_port: int
    port: str
    client_ip: str
    client_host: str | None = None
    tls: bool = False
    starttls_done: bool = False
    authenticated_as: str | None = None
    local_host: str | None = None

    def __post_init__(self):
        if self.port not in PORT_KINDS:
            raise ValueError(f"port must be one of {PORT_KINDS}, not {self.port!r}")
        if self.port == SSL or self.starttls_done:
            object.__setattr__(self, "tls", True)

    def after_starttls(self) -> "SessionFacts":
        """RFC 3207 s 4.2: the server forgets what it learnt before the handshake, an earlier AUTH too."""
        return replace(self, tls=True, starttls_done=True, authenticated_as=None)

    def after_auth(self, full_name: str) -> "SessionFacts":
        return replace(self, authenticated_as=full_name)


# --- Answers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """One answer: allowed or not, the exact reply (None when allowed), the rule that decided and why."""

    allowed: bool
    code: int | None
    text: str
    rule: str
    detail: str
    close: bool = False

    @property
    def reply(self) -> str:
        """The full reply line as sent, or "" when the protocol layer answers as usual."""
        return f"{self.code} {self.text}" if self.code else ""


@dataclass(frozen=True)
class AuthDecision(Decision):
    person: PersonSnapshot | None = None


@dataclass(frozen=True)
class RecipientDecision(Decision):
    kind: str = "refused"
    """"local" (deliver to ``people``), "relay" (send on), "postmaster" (the postmaster mailbox), or "refused"."""
    person: PersonSnapshot | None = None
    people: tuple = ()

    def __post_init__(self):
        if self.person is not None and not self.people:
            object.__setattr__(self, "people", (self.person,))


@dataclass(frozen=True)
class Offer:
    """What the server offers (EHLO keywords, AUTH mechanisms), iterable like a tuple, with why."""

    items: tuple
    detail: str

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return len(self.items)

    def __contains__(self, item: object) -> bool:
        return item in self.items


@dataclass(frozen=True)
class SiteChoice:
    site: SiteSnapshot | None
    matched_entry: str
    detail: str


@dataclass(frozen=True)
class AuthSource:
    """The document whose authentication options apply; ``options`` is None when no site matches."""

    document: str
    options: AuthOptions | None
    site: SiteSnapshot | None
    detail: str


@dataclass(frozen=True)
class CredentialsChoice:
    name: str | None
    detail: str


@dataclass(frozen=True)
class PersonMatch:
    person: PersonSnapshot | None
    matched_by: str
    detail: str


@dataclass(frozen=True)
class Binding:
    """One listener port: bind it when ``enabled``; ``addresses`` empty means every local address."""

    port_kind: str
    port: int
    addresses: tuple
    enabled: bool
    detail: str


def _allow(rule: str, detail: str, cls: type[Decision] = Decision, **extra) -> Decision:
    return cls(allowed=True, code=None, text="", rule=rule, detail=detail, **extra)


def _refuse(reply: tuple[int, str], rule: str, detail: str, cls: type[Decision] = Decision, close: bool = False, **extra) -> Decision:
    code, text = reply
    return cls(allowed=False, code=code, text=text, rule=rule, detail=detail, close=close, **extra)


def _as(cls: type[Decision], decision: Decision, **extra) -> Decision:
    """The same answer as a richer Decision subclass (AuthDecision, RecipientDecision)."""
    return cls(**{f.name: getattr(decision, f.name) for f in fields(Decision)}, **extra)


# --- Matching helpers -------------------------------------------------------------------------


def _ip(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Parse an address; an IPv4-mapped IPv6 address (``::ffff:192.0.2.1``) counts as its IPv4 address."""
    try:
        address = ipaddress.ip_address(str(value).strip())
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _host(value: str | None) -> str:
    return str(value).strip().rstrip(".").lower() if value else ""


def is_address_entry(entry: str) -> bool:
    """A host list entry that is an IP address or a CIDR range (the others are names or .domain suffixes)."""
    try:
        ipaddress.ip_network(str(entry).strip(), strict=False)
    except ValueError:
        return False
    return True


def host_name_matches(entry: str, host: str | None) -> bool:
    """A host name entry as Domino matches it: the exact name, or ``.acme.test`` for any host in that
    domain; without regard to case or a final dot. A client without a (confirmed) name matches none."""
    entry, host = _host(entry), _host(host)
    if not host or not entry:
        return False
    if entry.startswith("."):
        return host.endswith(entry) and len(host) > len(entry)
    return entry == host


def _match_host(entries: tuple, ip: str, host: str | None = None) -> str | None:
    """The first entry (IP address, CIDR range, host name or ``.domain`` suffix) covering the client, or None."""
    address = _ip(ip)
    for entry in entries:
        try:
            network = ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            if host_name_matches(entry, host):
                return entry
            continue
        if address is not None and address in network:
            return entry
    return None


def _match_domain(entries: tuple, domain: str) -> str | None:
    """The first entry covering ``domain``: ``acme.test`` itself only; ``*.acme.test``/``.acme.test`` its subdomains."""
    domain = _host(domain)
    for entry in entries:
        pattern = _host(entry).removeprefix("*")
        if pattern.startswith("."):
            if domain.endswith(pattern) and len(domain) > len(pattern):
                return entry
        elif domain == pattern:
            return entry
    return None


def _client(facts: SessionFacts) -> str:
    if facts.client_host:
        return _("client %(ip)s (%(host)s)") % {"ip": facts.client_ip, "host": facts.client_host}
    return _("client %(ip)s") % {"ip": facts.client_ip}


def _state(facts: SessionFacts) -> str:
    if facts.port == SSL:
        return _("on the SSL port")
    if facts.starttls_done:
        return _("after STARTTLS")
    return _("in clear text on the TCP/IP port")


def _option_label(tls: bool, name_password: bool) -> str:
    if name_password:
        return _("SSL authentication: Name & password") if tls else _("TCP/IP authentication: Name & password")
    return _("SSL authentication: Anonymous") if tls else _("TCP/IP authentication: Anonymous")


# --- Section 3.1: ports ----------------------------------------------------------------------


def bindings(snap: SettingsSnapshot) -> tuple[Binding, ...]:
    """The TCP/IP and SSL ports of SMTP Inbound and whether the listener binds them (spec 3.1)."""
    result = []
    inbound = snap.inbound
    for kind, port, status in ((TCP, inbound.tcp_port, inbound.tcp_status), (SSL, inbound.ssl_port, inbound.ssl_status)):
        label = _("TCP/IP port %(port)s") if kind == TCP else _("SSL port %(port)s")
        label %= {"port": port}
        if not snap.smtp_listener_enabled:
            enabled, detail = False, _("%(port)s is not bound: the SMTP listener task is Disabled in the %(doc)s.")
        elif status != ENABLED:
            enabled, detail = False, _("%(port)s is not bound: its status is Disabled in the %(doc)s.")
        elif kind == SSL and not snap.has_tls_credentials:
            enabled, detail = False, _("%(port)s is not bound: no TLS credentials are chosen in the %(doc)s or a hosting site.")
        else:
            enabled, detail = True, _("%(port)s is Enabled in the %(doc)s.")
        result.append(Binding(kind, port, snap.listen_addresses, enabled, detail % {"port": label, "doc": snap.server_document}))
    return tuple(result)


# --- Section 3.2: connection controls ---------------------------------------------------------


@answer_once
def connection_allowed(snap: SettingsSnapshot, facts: SessionFacts) -> Decision:
    """Allow/Deny connections from these hosts, applied before anything else; Deny wins (spec 3.2)."""
    config, who = snap.config, _client(facts)
    denied = _match_host(config.connection_deny_hosts, facts.client_ip, facts.client_host)
    if denied:
        return _refuse(CONNECTION_DENIED, "connection_deny_hosts", _(
            "%(who)s is denied by the entry %(entry)s of Deny connections from these hosts."
        ) % {"who": who, "entry": denied})
    if not config.connection_allow_hosts:
        return _allow("connection_open", _(
            "%(who)s is not in Deny connections from these hosts, and Allow connections only from these hosts is empty (every host)."
        ) % {"who": who})
    allowed = _match_host(config.connection_allow_hosts, facts.client_ip, facts.client_host)
    if allowed:
        return _allow("connection_allow_hosts", _(
            "%(who)s is allowed by the entry %(entry)s of Allow connections only from these hosts."
        ) % {"who": who, "entry": allowed})
    return _refuse(CONNECTION_DENIED, "connection_allow_hosts", _(
        "%(who)s is not in Allow connections only from these hosts (%(entries)s)."
    ) % {"who": who, "entries": ", ".join(config.connection_allow_hosts)})


# --- Section 2: where the authentication options come from -----------------------------------


def select_site(snap: SettingsSnapshot, local_ip: str, local_host: str | None = None) -> SiteChoice:
    """The SMTP Inbound site for a local address: exact address or host name first, else ``*``; oldest wins."""
    address, host = _ip(local_ip), _host(local_host)

    def exact(entry: str) -> bool:
        return entry != ANY and ((address is not None and _ip(entry) == address) or (host and _host(entry) == host))

    where = local_ip if not host else f"{local_ip} ({local_host})"
    passes = (
        (_("the local address %(where)s") % {"where": where}, exact),
        (_("* (any address)"), lambda entry: entry == ANY),
    )
    for target, test in passes:
        matches = [(site, entry) for site in snap.sites for entry in site.mapped_addresses if test(entry)]
        if matches:
            site, entry = matches[0]
            others = len({s.name for s, _entry in matches}) - 1
            detail = _("Site document “%(site)s” is mapped to %(target)s by its entry %(entry)s.") % {
                "site": site.name, "target": target, "entry": entry,
            }
            if others:
                detail += " " + _("It is the oldest of %(count)s sites that match.") % {"count": others + 1}
            return SiteChoice(site, entry, detail)
    if not snap.sites:
        return SiteChoice(None, "", _("No SMTP Inbound Site document hosts server %(server)s.") % {"server": snap.server_name})
    return SiteChoice(None, "", _(
        "None of the %(count)s SMTP Inbound Site documents hosting server %(server)s is mapped to %(where)s or *."
    ) % {"count": len(snap.sites), "server": snap.server_name, "where": where})


@answer_once
def auth_source(snap: SettingsSnapshot, facts: SessionFacts) -> AuthSource:
    """Server document (Internet Sites disabled) or the matching Site document (enabled), per spec section 2."""
    if not snap.load_internet_sites:
        return AuthSource(snap.server_document, snap.inbound.options, None, _(
            "Load Internet configurations from Server\\Internet Sites documents is Disabled: the authentication "
            "options come from the %(doc)s (%(options)s)."
        ) % {"doc": snap.server_document, "options": snap.inbound.options.describe()})
    choice = select_site(snap, facts.local_ip, facts.local_host)
    if choice.site is None:
        return AuthSource("", None, None, choice.detail)
    document = _("Site document “%(site)s”") % {"site": choice.site.name}
    return AuthSource(document, choice.site.options, choice.site, choice.detail + " " + _(
        "Its Security tab supplies the authentication options (%(options)s)."
    ) % {"options": choice.site.options.describe()})


@answer_once
def tls_credentials_for(snap: SettingsSnapshot, local_ip: str, local_host: str | None = None) -> CredentialsChoice:
    """Which TLS credentials serve a local address: the site's, falling back to the Server document's."""
    server_choice = CredentialsChoice(snap.tls_credentials_name, _("the TLS credentials of the %(doc)s: %(name)s") % {
        "doc": snap.server_document, "name": snap.tls_credentials_name or _("none"),
    })
    if snap.load_internet_sites:
        site = select_site(snap, local_ip, local_host).site
        if site is not None and site.tls_credentials_name:
            return CredentialsChoice(site.tls_credentials_name, _("the TLS credentials of Site document “%(site)s”: %(name)s") % {
                "site": site.name, "name": site.tls_credentials_name,
            })
    return server_choice


# --- Section 3.3: site not enabled -------------------------------------------------------------


def _starttls_available(snap: SettingsSnapshot, facts: SessionFacts) -> tuple[bool, str]:
    """Is STARTTLS on the TCP/IP port at all (Enabled or Required, and a certificate to use)? Else why not."""
    if snap.config.starttls_inbound == DISABLED:
        return False, _("SSL negotiated over TCP/IP port is Disabled in the Configuration Settings")
    if not tls_credentials_for(snap, facts.local_ip, facts.local_host).name:
        return False, _("no TLS credentials are chosen for this address")
    value = _("Required") if snap.config.starttls_inbound == REQUIRED else _("Enabled")
    return True, _("SSL negotiated over TCP/IP port is %(value)s and TLS credentials exist") % {"value": value}


@answer_once
def site_enabled(snap: SettingsSnapshot, facts: SessionFacts) -> Decision:
    """With Internet Sites, refuse the greeting when no site matches or the port allows no method (spec 3.3)."""
    if not snap.load_internet_sites:
        return _allow("internet_sites_disabled", _(
            "Internet Sites are not loaded: the “site not enabled” rule does not apply."
        ))
    source = auth_source(snap, facts)
    if source.site is None:
        return _refuse(SITE_NOT_ENABLED, "no_site", source.detail)
    options, site = source.options, source.site.name
    if options.all_off:
        return _refuse(SITE_NOT_ENABLED, "all_options_off", _(
            "Every authentication option of Site document “%(site)s” is No."
        ) % {"site": site})
    if facts.port == SSL:
        if not (options.ssl_client_certificate or options.ssl_name_password or options.ssl_anonymous):
            return _refuse(SITE_NOT_ENABLED, "port_without_method", _(
                "The client is on the SSL port and Site document “%(site)s” has all three SSL authentication options No."
            ) % {"site": site})
        return _allow("site_enabled", _("Site document “%(site)s” allows a method on the SSL port.") % {"site": site})
    if options.tcp_name_password or options.tcp_anonymous:
        return _allow("site_enabled", _(
            "Site document “%(site)s” allows a TCP/IP authentication method."
        ) % {"site": site})
    starttls, why = _starttls_available(snap, facts)
    if starttls and (options.ssl_name_password or options.ssl_anonymous):
        return _allow("site_enabled", _(
            "Site document “%(site)s” has both TCP/IP options No, but STARTTLS is offered (%(why)s) and an SSL "
            "method (Name & password or Anonymous) is Yes."
        ) % {"site": site, "why": why})
    reason = why if not starttls else _("SSL Name & password and SSL Anonymous are both No")
    return _refuse(SITE_NOT_ENABLED, "port_without_method", _(
        "The client is on the TCP/IP port, Site document “%(site)s” has both TCP/IP authentication options No, "
        "and STARTTLS cannot help: %(reason)s."
    ) % {"site": site, "reason": reason})


@answer_once
def session_greeting(snap: SettingsSnapshot, facts: SessionFacts) -> Decision:
    """Connection controls first, then the site check: the first refusal is the 554 greeting."""
    connection = connection_allowed(snap, facts)
    return connection if not connection.allowed else site_enabled(snap, facts)


def after_refused_greeting(greeting: Decision) -> Decision:
    """Every command but QUIT after a 554 greeting gets 503 with the same text (spec 3.3, RFC 5321 s 3.1)."""
    return replace(greeting, code=BAD_SEQUENCE)


# --- Section 3.4: EHLO, STARTTLS, AUTH offer ---------------------------------------------------


@answer_once
def starttls_offered(snap: SettingsSnapshot, facts: SessionFacts) -> Decision:
    """STARTTLS on the TCP/IP port, before TLS, when Enabled or Required and credentials exist (spec 3.4)."""
    if facts.port == SSL:
        return _refuse(TLS_ALREADY_ACTIVE, "ssl_port", _("The SSL port speaks TLS from the first byte."))
    if facts.tls:
        return _refuse(TLS_ALREADY_ACTIVE, "tls_already_active", _("STARTTLS has already been done in this session."))
    available, why = _starttls_available(snap, facts)
    if not available:
        return _refuse(TLS_NOT_AVAILABLE, "starttls_unavailable", _("STARTTLS is not offered: %(why)s.") % {"why": why})
    return _allow("starttls_offered", _("STARTTLS is offered: %(why)s.") % {"why": why})


@answer_once
def auth_mechanisms(snap: SettingsSnapshot, facts: SessionFacts) -> Offer:
    """AUTH PLAIN LOGIN where Name & password is Yes for the current state: SSL options once TLS is on (spec 3.4, 3.5)."""
    source = auth_source(snap, facts)
    if source.options is None:
        return Offer((), _("No AUTH: %(why)s") % {"why": source.detail})
    if snap.config.starttls_inbound == REQUIRED and not facts.tls:
        return Offer((), _(
            "No AUTH before STARTTLS: SSL negotiated over TCP/IP port is Required (RFC 3207 s 4)."
        ))
    label = _option_label(facts.tls, True)
    values = {"option": label, "doc": source.document, "state": _state(facts)}
    if source.options.name_password(facts.tls):
        return Offer(AUTH_MECHANISMS, _("AUTH PLAIN LOGIN is offered %(state)s: %(option)s is Yes in the %(doc)s.") % values)
    return Offer((), _("No AUTH %(state)s: %(option)s is No in the %(doc)s.") % values)


@answer_once
def anonymous_allowed(snap: SettingsSnapshot, facts: SessionFacts) -> Decision:
    """May this session send mail without AUTH? TCP/IP Anonymous in clear, SSL Anonymous once TLS is on."""
    source = auth_source(snap, facts)
    if source.options is None:
        return _refuse(AUTH_REQUIRED, "no_site", source.detail)
    values = {"option": _option_label(facts.tls, False), "doc": source.document, "state": _state(facts)}
    if source.options.anonymous(facts.tls):
        return _allow("anonymous_allowed", _("Anonymous mail is accepted %(state)s: %(option)s is Yes in the %(doc)s.") % values)
    return _refuse(AUTH_REQUIRED, "anonymous_not_allowed", _(
        "Anonymous mail is refused %(state)s: %(option)s is No in the %(doc)s."
    ) % values)


@answer_once
def ehlo_extensions(snap: SettingsSnapshot, facts: SessionFacts) -> Offer:
    """The EHLO keywords after the greeting line, each with the setting behind it (spec 3.4)."""
    config = snap.config
    items, reasons = ["ENHANCEDSTATUSCODES"], [_("ENHANCEDSTATUSCODES: every reply carries an RFC 3463 code")]
    if config.size_extension:
        keyword = f"SIZE {config.max_message_bytes}" if config.max_message_bytes else "SIZE"
        items.append(keyword)
        reasons.append(_("%(keyword)s: SIZE extension Enabled, Maximum message size %(kb)s KB") % {
            "keyword": keyword, "kb": config.max_message_size_kb,
        })
    else:
        reasons.append(_("no SIZE: SIZE extension Disabled"))
    for keyword, on in (("8BITMIME", config.eightbitmime), ("PIPELINING", config.pipelining)):
        if on:
            items.append(keyword)
        reasons.append((_("%(keyword)s: Enabled") if on else _("no %(keyword)s: Disabled")) % {"keyword": keyword})
    starttls = starttls_offered(snap, facts)
    if starttls.allowed:
        items.append("STARTTLS")
    reasons.append(starttls.detail)
    mechanisms = auth_mechanisms(snap, facts)
    if mechanisms:
        items.append("AUTH " + " ".join(mechanisms))
    reasons.append(mechanisms.detail)
    return Offer(tuple(items), texts.join("; ", reasons))


# --- Section 3.5: AUTH and server access -------------------------------------------------------


def _same_text(value: str | None, login: str) -> bool:
    return bool(value) and " ".join(value.split()).casefold() == login.casefold()


def _first_and_last(person: PersonSnapshot) -> str:
    return f"{person.first_name} {person.last_name}" if person.first_name and person.last_name else ""


# Name variations a login may match: (id, label, value of the person, comparison).
# Fewer name variations accepts the strong ones; More name variations adds the weak ones.
STRONG_VARIATIONS = (
    ("full_name", gettext_lazy("full name"), lambda person: person.full_name, names.same_name),
    ("internet_address", gettext_lazy("Internet address"), lambda person: person.internet_address, _same_text),
)
WEAK_VARIATIONS = (
    ("short_name", gettext_lazy("short name"), lambda person: person.short_name, _same_text),
    ("common_name", gettext_lazy("common name"), lambda person: names.abbreviate(person.full_name).split("/")[0], _same_text),
    ("first_last_name", gettext_lazy("first and last name"), _first_and_last, _same_text),
    ("first_name", gettext_lazy("first name"), lambda person: person.first_name, _same_text),
    ("last_name", gettext_lazy("last name"), lambda person: person.last_name, _same_text),
)


def _people_matching(people: tuple[PersonSnapshot, ...], login: str, variations: tuple) -> list[tuple]:
    """``[(person, variation id, label)]``, each person once, with the first variation that matched."""
    found = {}
    for person in people:
        for variation, label, value, same in variations:
            if same(value(person), login):
                found.setdefault(person.full_name, (person, variation, label))
                break
    return list(found.values())


@answer_once
def find_person(snap: SettingsSnapshot, login: str) -> PersonMatch:
    """The one Person a login names, per Internet authentication (Fewer/More name variations)."""
    login = " ".join(str(login or "").split())
    values = {"login": login}
    if not login:
        return PersonMatch(None, "", _("No login name was given."))
    stages = [STRONG_VARIATIONS, WEAK_VARIATIONS] if snap.internet_authentication == MORE else [STRONG_VARIATIONS]
    for variations in stages:
        matches = _people_matching(snap.people, login, variations)
        if len(matches) == 1:
            person, variation, label = matches[0]
            return PersonMatch(person, variation, _("The login “%(login)s” is the %(label)s of %(person)s.") % {
                **values, "label": label, "person": person.full_name,
            })
        if matches:
            return PersonMatch(None, "", _(
                "The login “%(login)s” matches %(count)s people (%(people)s); a login must name exactly one person."
            ) % {**values, "count": len(matches), "people": ", ".join(f"{p.full_name} ({label})" for p, _variation, label in matches)})
    if snap.internet_authentication == MORE:
        return PersonMatch(None, "", _(
            "No person has “%(login)s” as full name, Internet address, short name, common name, first or last name."
        ) % values)
    return PersonMatch(None, "", _(
        "No person has “%(login)s” as full name or Internet address (Internet authentication: Fewer name variations)."
    ) % values)


@answer_once
def server_access(snap: SettingsSnapshot, full_name: str) -> Decision:
    """Access server / Not access server for an authenticated user, when enforced; Not access wins (spec 3.5)."""
    values = {"name": full_name, "doc": snap.server_document}
    if not snap.inbound.enforce_server_access:
        return _allow("server_access_not_enforced", _(
            "Enforce server access settings is No in the %(doc)s: %(name)s is not checked against the access lists."
        ) % values)
    denied = names.match_access_list(full_name, snap.not_access_server, snap.groups)
    if denied:
        return _refuse(NOT_AUTHORIZED, "not_access_server", _(
            "%(name)s is listed in Not access server by %(entry)s."
        ) % {**values, "entry": denied.explain()}, close=True)
    if not snap.access_server:
        if any(names.same_name(person.full_name, full_name) for person in snap.people):
            return _allow("access_server_everyone", _(
                "Access server is empty (everyone with a Person document) and %(name)s has one."
            ) % values)
        return _refuse(NOT_AUTHORIZED, "access_server_no_person", _(
            "Access server is empty (everyone with a Person document), but %(name)s has no Person document."
        ) % values, close=True)
    allowed = names.match_access_list(full_name, snap.access_server, snap.groups)
    if allowed:
        return _allow("access_server", _("%(name)s is allowed by Access server through %(entry)s.") % {
            **values, "entry": allowed.explain(),
        })
    return _refuse(NOT_AUTHORIZED, "access_server", _(
        "%(name)s is not allowed by any entry of Access server (%(entries)s)."
    ) % {**values, "entries": ", ".join(snap.access_server)}, close=True)


@answer_once
def auth_allowed(snap: SettingsSnapshot, facts: SessionFacts) -> Decision:
    """May the client issue AUTH now? Refused AUTH gets the site-not-enabled text with 503 (spec 3.3)."""
    if facts.authenticated_as:
        return _refuse(ALREADY_AUTHENTICATED, "already_authenticated", _(
            "The session is already authenticated as %(name)s."
        ) % {"name": facts.authenticated_as})
    enabled = site_enabled(snap, facts)
    if not enabled.allowed:
        return after_refused_greeting(enabled)
    if snap.config.starttls_inbound == REQUIRED and not facts.tls:
        return _refuse(STARTTLS_FIRST, "starttls_required", _(
            "SSL negotiated over TCP/IP port is Required: AUTH is refused until the session has done STARTTLS "
            "(RFC 3207 s 4), so no password travels in clear text."
        ))
    mechanisms = auth_mechanisms(snap, facts)
    if not mechanisms:
        # The site text belongs to Internet Sites mode (spec 3.3); without sites, say what Postfix says.
        refusal = SITE_NOT_ENABLED_SEQUENCE if snap.load_internet_sites else AUTH_NOT_ENABLED
        return _refuse(refusal, "name_password_not_allowed", mechanisms.detail)
    return _allow("auth_allowed", mechanisms.detail)


def _django_check_password(password: str, password_hash: str) -> bool:
    from django.contrib.auth.hashers import check_password

    return check_password(password, password_hash)


def authenticate(snap: SettingsSnapshot, facts: SessionFacts, login: str, password: str,
                 verify_password: Callable[[str, str], bool] = _django_check_password) -> AuthDecision:
    """The whole AUTH decision: offered, one person, right password, server access (spec 3.5).

    ``verify_password(password, password_hash)`` defaults to Django's hashers; tests may pass a fake.
    """
    gate = auth_allowed(snap, facts)
    if not gate.allowed:
        return _as(AuthDecision, gate)
    match = find_person(snap, login)
    person = match.person
    if person is None or not person.password_hash:
        # As Django's ModelBackend: hash anyway (Django's hashers hash a dummy for a missing hash), so that
        # the time of the 535 does not tell an unknown account from a wrong password (docs/security.md).
        verify_password(password, "")
    if person is None:
        return _refuse(AUTH_FAILED, "unknown_login", match.detail, cls=AuthDecision, close=True)
    if not person.password_hash:
        return _refuse(AUTH_FAILED, "no_internet_password", match.detail + " " + _(
            "%(name)s has no Internet password."
        ) % {"name": person.full_name}, cls=AuthDecision, close=True)
    if not verify_password(password, person.password_hash):
        return _refuse(AUTH_FAILED, "wrong_password", match.detail + " " + _(
            "The password does not match the Internet password of %(name)s."
        ) % {"name": person.full_name}, cls=AuthDecision, close=True)
    access = server_access(snap, person.full_name)
    detail = match.detail + " " + access.detail
    if not access.allowed:
        return _refuse(NOT_AUTHORIZED, access.rule, detail, cls=AuthDecision, close=True, person=person)
    return _allow("authenticated", detail, cls=AuthDecision, person=person)


# --- Section 3.6: MAIL FROM ------------------------------------------------------------------


def message_size_allowed(snap: SettingsSnapshot, size_bytes: int) -> Decision:
    """Maximum message size, in KB of 1024 bytes; 0 is no limit (spec 3.8)."""
    limit = snap.config.max_message_bytes
    values = {"size": size_bytes, "limit": limit, "kb": snap.config.max_message_size_kb}
    if limit is None:
        return _allow("message_size", _("Maximum message size is 0: no limit."))
    if size_bytes > limit:
        return _refuse(TOO_LARGE, "message_size", _(
            "%(size)s bytes exceed the Maximum message size of %(kb)s KB (%(limit)s bytes)."
        ) % values)
    return _allow("message_size", _("%(size)s bytes are within the Maximum message size of %(kb)s KB.") % values)


@answer_once
def mail_from_allowed(snap: SettingsSnapshot, facts: SessionFacts, declared_size: int | None = None, sender: str | None = None) -> Decision:
    """MAIL FROM: STARTTLS Required first, then authentication, then the sender address when given
    (``sender_allowed``), then the declared SIZE (spec 3.6, RFC 1870 s 6.1)."""
    if snap.config.starttls_inbound == REQUIRED and not facts.tls:
        return _refuse(STARTTLS_FIRST, "starttls_required", _(
            "SSL negotiated over TCP/IP port is Required and the session has not done STARTTLS."
        ))
    if not facts.authenticated_as:
        anonymous = anonymous_allowed(snap, facts)
        if not anonymous.allowed:
            return replace(anonymous, rule="authentication_required", detail=anonymous.detail + " " + _(
                "The client must authenticate first."
            ))
        who = anonymous.detail
    else:
        who = _("The session is authenticated as %(name)s.") % {"name": facts.authenticated_as}
    if sender is not None:
        address = sender_allowed(snap, facts, sender)
        if not address.allowed:
            return address
        who += " " + address.detail
    if declared_size is not None:
        size = message_size_allowed(snap, declared_size)
        if not size.allowed:
            return size
    return _allow("mail_from_allowed", who)


# --- Section 3.7: RCPT TO --------------------------------------------------------------------


def relay_allowed(snap: SettingsSnapshot, facts: SessionFacts, domain: str) -> Decision:
    """Anti-relay enforcement for mail to a domain that is not local (spec 3.7; order in docs/design/policy.md)."""
    config, who = snap.config, _client(facts)
    values = {"who": who, "domain": domain}
    if config.anti_relay_enforcement == ENFORCE_NONE:
        return _allow("anti_relay_none", _("Perform anti-relay enforcement is None: anyone may relay."))
    excluded = _match_host(config.anti_relay_exclude_hosts, facts.client_ip, facts.client_host)
    if excluded:
        return _allow("anti_relay_exclude_hosts", _(
            "%(who)s is excluded from anti-relay checks by the entry %(entry)s."
        ) % {**values, "entry": excluded})
    internal = _match_host(config.internal_hosts, facts.client_ip, facts.client_host)
    if config.anti_relay_enforcement == ENFORCE_EXTERNAL and internal:
        return _allow("internal_hosts", _(
            "%(who)s is an internal host (entry %(entry)s) and enforcement covers External hosts only."
        ) % {**values, "entry": internal})
    if facts.authenticated_as and config.authenticated_users_relay:
        return _allow("authenticated_users_relay", _(
            "The session is authenticated as %(name)s and all authenticated users may relay."
        ) % {"name": facts.authenticated_as})
    allowed = _match_domain(config.relay_allow_domains, domain)
    if allowed:
        return _allow("relay_allow_domains", _(
            "%(domain)s is allowed by the entry %(entry)s of Allow messages to be sent to these external domains."
        ) % {**values, "entry": allowed})
    reasons = [
        _("Perform anti-relay enforcement is All connecting hosts") if config.anti_relay_enforcement == ENFORCE_ALL
        else _("%(who)s is not an internal host") % values,
        _("the session is authenticated as %(name)s but authenticated users are checked too") % {"name": facts.authenticated_as}
        if facts.authenticated_as else _("the session is not authenticated"),
    ]
    denied = _match_domain(config.relay_deny_domains, domain)
    if denied:
        reasons.append(_(
            "%(domain)s is denied by the entry %(entry)s of Deny messages to be sent to these external domains"
        ) % {**values, "entry": denied})
        rule = "relay_deny_domains"
    else:
        reasons.append(_("%(domain)s is not in Allow messages to be sent to these external domains") % values)
        rule = "relay_not_allowed"
    return _refuse(RELAY_REJECTED, rule, _("Relay to %(domain)s refused: %(reasons)s.") % {
        **values, "reasons": texts.join("; ", reasons),
    })


def _unbracket(address: str | None) -> str:
    address = str(address or "").strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1].strip()
    return address


def _closing_quote(address: str) -> int | None:
    """The index of the quote that ends a quoted local part (``"..."``, with backslash escapes), or None."""
    escaped = False
    for index, character in enumerate(address[1:], start=1):
        if escaped:
            escaped = False
        elif character == "\\":
            escaped = True
        elif character == '"':
            return index
    return None


def _split_address(address: str) -> tuple[str, str]:
    """(local part, lower-case domain without trailing dot); the domain is "" when there is none.

    A quoted local part may hold an ``@``: the domain is what follows its closing quote.
    """
    address = _unbracket(address)
    end = _closing_quote(address) if address.startswith('"') else None
    if end is not None:
        local, rest = address[:end + 1], address[end + 1:]
        return local, rest[1:].rstrip(".").lower() if rest.startswith("@") else ""
    local, at, domain = address.rpartition("@")
    if not at:
        return address, ""
    return local, domain.rstrip(".").lower()


def address_problem(address: str) -> str:
    """Why the form of an address in MAIL FROM or RCPT TO is refused before any lookup, or "" when it is fine.

    Control characters would reach the logs, the Received header and the commands sent on relay; a
    quoted local part holding an at sign, percent sign or exclamation mark is the classic way to
    hide a second destination from one server and show it to the next (source routing by the back door).
    """
    address = _unbracket(address)
    if any(ord(character) < 32 or ord(character) == 127 for character in address):
        return _("it contains a control character")
    local, _domain = _split_address(address)
    if local.startswith('"') and any(character in local for character in "@%!"):
        return _("its quoted local part holds an at sign, a percent sign or an exclamation mark")
    return ""


def sender_allowed(snap: SettingsSnapshot, facts: SessionFacts, sender: str) -> Decision:
    """The MAIL FROM address: well formed, and for an authenticated session one of the user's own.

    The null sender ``<>`` (reports, RFC 5321 s 4.5.5) is always allowed. Anonymous sessions are not
    checked. An authenticated user may use only the Internet address of their Person document (RFC
    6409 s 6.1) unless anti-relay enforcement is None, the client is in Exclude these connecting hosts,
    or the user is in the group LocalDomainServers: "Allow all authenticated users to relay" lets them
    send anywhere, not as anyone.
    """
    address = _unbracket(sender)
    values = {"address": address}
    if not address:
        return _allow("null_sender", _("The sender is the null address <> of a report."))
    problem = address_problem(address)
    local, domain = _split_address(address)
    if not problem and not (local and domain):
        problem = _("it is not a mailbox@domain address")
    if problem:
        return _refuse(BAD_SENDER_SYNTAX, "sender_syntax", _("The sender “%(address)s” is refused: %(why)s.") % {
            **values, "why": problem,
        })
    if not facts.authenticated_as:
        return _allow("sender_unchecked", _("The sender address of an anonymous session is not checked."))
    config = snap.config
    if config.anti_relay_enforcement == ENFORCE_NONE:
        return _allow("sender_anti_relay_none", _(
            "Perform anti-relay enforcement is None: authenticated users may send as any address."
        ))
    excluded = _match_host(config.anti_relay_exclude_hosts, facts.client_ip, facts.client_host)
    if excluded:
        return _allow("sender_excluded_host", _(
            "%(who)s is excluded from anti-relay checks by the entry %(entry)s: any sender address is accepted."
        ) % {"who": _client(facts), "entry": excluded})
    server_group = names.match_access_list(facts.authenticated_as, (ANY_SENDER_GROUP,), snap.groups)
    if server_group:
        return _allow("sender_any_sender_group", _(
            "%(name)s is in %(group)s (%(path)s): any sender address is accepted."
        ) % {"name": facts.authenticated_as, "group": ANY_SENDER_GROUP, "path": server_group.explain()})
    person = snap.person_by_full_name(facts.authenticated_as)
    own = person.internet_address if person else None
    values.update(name=facts.authenticated_as, own=own or _("none"))
    if own and own.casefold() == address.casefold():
        return _allow("sender_own_address", _("%(address)s is the Internet address of %(name)s.") % values)
    return _refuse(SENDER_NOT_OWNED, "sender_not_owned", _(
        "%(name)s may send only as their own Internet address (%(own)s), not as %(address)s."
    ) % values)


@answer_once
def recipient_decision(snap: SettingsSnapshot, facts: SessionFacts, recipient_address: str, accepted_so_far: int = 0) -> RecipientDecision:
    """RCPT TO: the recipient limit, then local delivery or relaying (spec 3.7)."""
    config = snap.config
    values = {"address": recipient_address, "limit": config.max_recipients}
    if accepted_so_far >= config.max_recipients:
        return _refuse(TOO_MANY_RECIPIENTS, "max_recipients", _(
            "This message already has %(limit)s recipients, the Maximum recipients per message."
        ) % values, cls=RecipientDecision)
    problem = address_problem(recipient_address)
    if problem:
        return _refuse(BAD_RECIPIENT_SYNTAX, "recipient_syntax", _("“%(address)s” is refused: %(why)s.") % {
            **values, "why": problem,
        }, cls=RecipientDecision)
    local, domain = _split_address(recipient_address)
    if local.casefold() == POSTMASTER and (not domain or _match_domain(config.local_domains, domain) is not None):
        return postmaster_decision(snap, recipient_address, domain)
    if not local or not domain:
        return _refuse(BAD_RECIPIENT_SYNTAX, "recipient_syntax", _(
            "“%(address)s” is not a mailbox@domain address."
        ) % values, cls=RecipientDecision)
    entry = _match_domain(config.local_domains, domain)
    if entry is None:
        relay = relay_allowed(snap, facts, domain)
        kind = "relay" if relay.allowed else "refused"
        return _as(RecipientDecision, relay, kind=kind)
    address = f"{local}@{domain}"
    person = snap.person_by_address(address)
    values.update(entry=entry, domain=domain, mailbox=address)
    if person is None:
        return _refuse(USER_UNKNOWN, "user_unknown", _(
            "%(domain)s is local (Local Internet domains entry %(entry)s) but no person has the Internet address %(mailbox)s."
        ) % values, cls=RecipientDecision)
    return _allow("local", _(
        "%(domain)s is local (Local Internet domains entry %(entry)s): delivered to %(person)s."
    ) % {**values, "person": person.full_name}, cls=RecipientDecision, kind="local", person=person)


def postmaster_decision(snap: SettingsSnapshot, recipient_address: str, domain: str = "") -> RecipientDecision:
    """Mail to postmaster is always accepted (RFC 5321 s 4.5.1): to the person who holds that address, else
    to the administrators of the Configuration Settings; with none that resolves it waits in the postmaster mailbox.

    A bare ``postmaster`` is the postmaster of the first local domain (RFC 5321 s 4.1.1.3)."""
    domain = domain or next((_host(entry) for entry in snap.config.local_domains if not entry.startswith(("*", "."))), "")
    owner = snap.person_by_address(f"{POSTMASTER}@{domain}") if domain else None
    if owner is not None:
        return _allow("postmaster_person", _(
            "%(address)s is the postmaster (RFC 5321 s 4.5.1): %(person)s holds that Internet address."
        ) % {"address": recipient_address, "person": owner.full_name}, cls=RecipientDecision, kind="local", person=owner)
    admins = snap.postmaster_people()
    values = {"address": recipient_address, "entries": ", ".join(snap.config.administrators) or _("none")}
    if admins:
        return _allow("postmaster", _(
            "%(address)s is the postmaster (RFC 5321 s 4.5.1): delivered to %(people)s, named by Administrators (%(entries)s)."
        ) % {**values, "people": ", ".join(person.full_name for person in admins)},
            cls=RecipientDecision, kind="local", person=admins[0], people=admins)
    return _allow("postmaster_mailbox", _(
        "%(address)s is the postmaster (RFC 5321 s 4.5.1), accepted always; Administrators (%(entries)s) names no "
        "person, so the message waits in the postmaster mailbox."
    ) % values, cls=RecipientDecision, kind="postmaster")


# --- Sections 3.8, 3.9 and the HELP/VRFY commands -----------------------------------------------


def counts_as_error(code: int | None) -> bool:
    """Every 4xx and 5xx reply counts toward the error limit (spec 3.9)."""
    return code is not None and 400 <= code < 600


def within_error_limit(snap: SettingsSnapshot, errors: int) -> Decision:
    """``errors`` replies so far, this one included: past the Error limit the client gets 421 and is closed."""
    values = {"errors": errors, "limit": snap.config.error_limit}
    if errors > snap.config.error_limit:
        return _refuse(ERROR_LIMIT, "error_limit", _(
            "%(errors)s errors are past the Error limit before connection is terminated (%(limit)s)."
        ) % values, close=True)
    return _allow("error_limit", _("%(errors)s errors of %(limit)s allowed.") % values)


@answer_once
def help_allowed(snap: SettingsSnapshot) -> Decision:
    if snap.config.help_command:
        return _allow("help_command", _("The HELP command is Enabled."))
    return _refuse(COMMAND_DISABLED, "help_command", _("The HELP command is Disabled in the Configuration Settings."))


def vrfy_decision(snap: SettingsSnapshot, argument: str) -> Decision:
    """VRFY: 252 revealing nothing when Disabled; when Enabled, the person a local address or login names."""
    if not snap.config.vrfy_command:
        return _refuse(CANNOT_VRFY, "vrfy_disabled", _("The VRFY command is Disabled in the Configuration Settings."))
    local, domain = _split_address(argument)
    person = None
    if domain and _match_domain(snap.config.local_domains, domain):
        person = snap.person_by_address(f"{local}@{domain}")
    if person is None and not domain:
        person = find_person(snap, local).person
    if person is None or not person.internet_address:
        return _refuse(USER_UNKNOWN, "user_unknown", _(
            "“%(argument)s” names no local person with an Internet address."
        ) % {"argument": argument})
    return Decision(True, VRFY_FOUND.code, VRFY_FOUND.text.format(name=person.full_name, address=person.internet_address), "vrfy", _(
        "The VRFY command is Enabled and “%(argument)s” is %(person)s."
    ) % {"argument": argument, "person": person.full_name})
