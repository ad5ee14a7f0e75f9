"""Documents of the Domino Directory that decide how servers accept and send SMTP mail.

Field names follow the keys of the import/export format (spec section 7), which follow the labels
the administrator reads in the console. Cross-field errors live in ``clean()`` so the forms and the
import share them; advisory warnings come from ``warnings()`` and never block a save.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import TYPE_CHECKING

from django.apps import apps
from django.contrib.auth.hashers import check_password, make_password
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from directory import names, validators
from directory.choices import (  # noqa: F401 (the models' choices, named as models.X by their users)
    AntiRelayEnforcement,
    GroupType,
    InternetAuthentication,
    OutboundTcpStatus,
    RelayAuth,
    SiteType,
    StartTlsInbound,
    Status,
    TlsPolicy,
)
from directory.validators import EachValidator

if TYPE_CHECKING:
    from django.utils.functional import Promise

PORT_RANGE_MESSAGE = _("Enter a port number from 1 to 65535.")
"""The one message for a port out of range, whichever end (the form's own check and the model's agree)."""
PORT_VALIDATORS = [MinValueValidator(1, message=PORT_RANGE_MESSAGE), MaxValueValidator(65535, message=PORT_RANGE_MESSAGE)]
STANDARD_SMTP_PORT = 25
SITE_NOT_ENABLED_TEXT = _("This site is not enabled on the server.")


def list_field(verbose_name: str | Promise, entry_validator: Callable[[str], None], help_text: str | Promise,
               default: Callable[[], list] = list) -> models.JSONField:
    """A list of text entries stored as JSON, each checked by ``entry_validator``."""
    return models.JSONField(
        verbose_name, default=default, blank=True, validators=[EachValidator(entry_validator)], help_text=help_text
    )


def default_internal_hosts() -> list[str]:
    return ["127.0.0.0/8", "::1"]


def default_administrators() -> list[str]:
    return ["LocalDomainAdmins"]


def default_any() -> list[str]:
    return ["*"]


class UniqueValues:
    """The unique values of one document type held in memory, so an import of thousands of documents
    checks each against the others without two queries (one a scan, for the name without regard to
    case) per document. The database's unique constraints still hold: a race ends in IntegrityError.
    """

    def __init__(self, model: type, documents: Iterable[Document] = ()) -> None:
        self.model = model
        self.fields = [field for field in model._meta.concrete_fields if field.unique and not field.primary_key]
        self.owners = {field.attname: {} for field in self.fields}  # value -> owner
        self.folded = {}  # name_field value, lower-cased -> owner
        self.held = {}  # owner -> its values, to forget them when they change
        for document in documents:
            self.add(document)

    @staticmethod
    def owner(instance: Document) -> int:
        """A saved document is its primary key; an unsaved one is itself, until it is saved."""
        return instance.pk if instance.pk is not None else id(instance)

    def values(self, instance: Document) -> tuple:
        """Its unique values by column, and its name lower-cased."""
        values = {field.attname: getattr(instance, field.attname) for field in self.fields}
        name_field = self.model.name_field
        value = getattr(instance, name_field) if name_field else None
        return values, (value.lower() if value else None)

    def add(self, instance: Document) -> None:
        """Hold the values of a document that is saved, or that will be saved with this import."""
        owner = self.owner(instance)
        self.discard(owner)
        values, folded = self.values(instance)
        for attname, value in values.items():
            if value is not None:
                self.owners[attname].setdefault(value, owner)
        if folded:
            self.folded.setdefault(folded, owner)
        self.held[owner] = (values, folded)

    def discard(self, owner: int) -> None:
        """Forget the values an owner held."""
        values, folded = self.held.pop(owner, ({}, None))
        for attname, value in values.items():
            if self.owners[attname].get(value) == owner:
                del self.owners[attname][value]
        if folded and self.folded.get(folded) == owner:
            del self.folded[folded]

    def errors(self, instance: Document, exclude: Collection[str] | None) -> dict:
        """The errors ``Document.validate_unique`` would find in the database, as ``{field: [error]}``."""
        exclude = set(exclude or ())
        owner = self.owner(instance)
        values, folded = self.values(instance)
        errors = {}
        for field in self.fields:
            value = values[field.attname]
            if field.name in exclude or value is None:
                continue
            if self.owners[field.attname].get(value, owner) != owner:
                errors[field.name] = [instance.unique_error_message(self.model, (field.name,))]
        name_field = self.model.name_field
        if folded and name_field not in errors and name_field not in exclude and self.folded.get(folded, owner) != owner:
            errors[name_field] = [instance.unique_error_message(self.model, (name_field,))]
        return errors


_unique_values = contextvars.ContextVar("directory_unique_values", default=None)


@contextlib.contextmanager
def unique_values_in_memory(*indexes: UniqueValues) -> Iterator[None]:
    """Within this block, documents of these types check uniqueness against the indexes, not the database."""
    token = _unique_values.set({**(_unique_values.get() or {}), **{index.model: index for index in indexes}})
    try:
        yield
    finally:
        _unique_values.reset(token)


class Document(models.Model):
    """Common bookkeeping of every directory document: when it was created and last changed."""

    created = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    modified = models.DateTimeField(_("modified"), auto_now=True)

    # Fields whose values the audit trail and export never show.
    secret_fields = ()
    # The field that names the document: unique without regard to case, as names compare in Domino.
    name_field = "name"

    class Meta:
        abstract = True

    def validate_unique(self, exclude: Collection[str] | None = None) -> None:
        """Django checks the exact name; also refuse one that differs from another only in case."""
        index = (_unique_values.get() or {}).get(type(self))
        if index is not None:
            errors = index.errors(self, exclude)
            if errors:
                raise ValidationError(errors)
            return
        errors = {}
        try:
            super().validate_unique(exclude)
        except ValidationError as error:
            errors = error.update_error_dict(errors)
        field = self.name_field
        value = getattr(self, field) if field else None
        if value and field not in errors and field not in (exclude or ()):
            if type(self)._default_manager.filter(**{f"{field}__iexact": value}).exclude(pk=self.pk).exists():
                errors[field] = [self.unique_error_message(type(self), (field,))]
        if errors:
            raise ValidationError(errors)

    def warnings(self) -> list[tuple[str, str, str]]:
        """Advisory problems: ``[(field, code, message)]``. The admin may save anyway."""
        return []

    @classmethod
    def warnings_of(cls, documents: Iterable[Document]) -> dict:
        """``{pk: warnings}`` of many saved documents of this type (the import's report), sharing what they read."""
        return {document.pk: document.warnings() for document in documents}


class TLSCredentials(Document):
    name = models.CharField(
        _("name"), max_length=200, unique=True, help_text=_("A name to choose these credentials on Server and Site documents.")
    )
    certificate_pem = models.TextField(
        _("certificate chain (PEM)"),
        help_text=_("The server certificate first, then any intermediate certificates, in PEM format."),
    )
    private_key_pem = models.TextField(
        _("private key (PEM)"),
        help_text=_("The unencrypted private key of the certificate, in PEM format. It is never shown again."),
    )
    subject = models.CharField(_("subject"), max_length=500, blank=True, editable=False)
    host_names = models.JSONField(_("host names covered"), default=list, blank=True, editable=False)
    not_after = models.DateTimeField(_("expires"), null=True, blank=True, editable=False)

    secret_fields = ("private_key_pem",)

    class Meta:
        verbose_name = _("TLS credentials")
        verbose_name_plural = _("TLS credentials")
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("directory:tlscredentials-detail", args=[self.pk])

    def clean(self) -> None:
        from directory import tls

        if not self.certificate_pem or not self.private_key_pem:
            return  # a blank PEM field is reported by its own required check
        try:
            info = tls.inspect(self.certificate_pem, self.private_key_pem)
        except tls.CredentialError as error:
            raise ValidationError({error.field: ValidationError(error.message, code=error.code)}) from None
        self.subject, self.host_names, self.not_after = info.subject, list(info.host_names), info.not_after
        if info.expired:
            raise ValidationError(
                {"certificate_pem": ValidationError(_("This certificate expired on %(date)s."), code="expired", params={"date": info.not_after.date()})}
            )
        for server in self.servers.all() if self.pk else ():
            if not tls.covers(self.host_names, server.host_name):
                raise ValidationError(
                    {
                        "certificate_pem": ValidationError(
                            _("This certificate does not cover %(host)s, the host name of server %(server)s, which uses it."),
                            code="host_not_covered",
                            params={"host": server.host_name, "server": server.name},
                        )
                    }
                )

    def covers(self, host_name: str) -> bool:
        from directory import tls

        return tls.covers(self.host_names, host_name)

    def expires_soon(self, days: int = 30) -> bool:
        return self.not_after is not None and self.not_after < timezone.now() + timezone.timedelta(days=days)

    def warnings(self) -> list[tuple[str, str, str]]:
        if self.expires_soon():
            return [("certificate_pem", "expires_soon", _("This certificate expires within 30 days, on %(date)s.") % {"date": self.not_after.date()})]
        return []


class Server(Document):
    """A Server document: Basics, Security, and Ports > Internet Ports > Mail."""

    # Basics
    name = models.CharField(
        _("server name"),
        max_length=200,
        unique=True,
        validators=[validators.validate_hierarchical_name],
        help_text=_("Hierarchical name such as mail1/Acme; its last component is the organization."),
    )
    host_name = models.CharField(
        _("fully qualified Internet host name"),
        max_length=253,
        validators=[validators.validate_host_name],
        help_text=_("Used in the SMTP greeting and in the reply to EHLO, such as mail1.acme.test."),
    )
    smtp_listener_enabled = models.BooleanField(
        _("SMTP listener task"), default=True, help_text=_("The listener serves this server only while this is Enabled.")
    )
    load_internet_sites = models.BooleanField(
        _("Load Internet configurations from Server\\Internet Sites documents"),
        default=False,
        help_text=_(
            "When Enabled, the authentication options of the SMTP ports come from the matching SMTP Inbound "
            "Internet Site document instead of this Server document."
        ),
    )
    listen_addresses = list_field(
        _("listen addresses"),
        validators.validate_ip_address,
        _("IP addresses the listener binds, one per line. Empty means every local address."),
    )
    # Security
    access_server = list_field(
        _("Access server"),
        validators.validate_name_or_wildcard,
        _("Names, groups and wildcards (*/Acme, *) allowed to use this server, one per line. Empty means everyone with a Person document."),
    )
    not_access_server = list_field(
        _("Not access server"),
        validators.validate_name_or_wildcard,
        _("Names, groups and wildcards refused access to this server, one per line. It wins over Access server."),
    )
    internet_authentication = models.CharField(
        _("Internet authentication"),
        max_length=10,
        choices=InternetAuthentication.choices,
        default=InternetAuthentication.FEWER,
        help_text=_(
            "Fewer: the login must be the full user name or the Internet address. More: the short name, "
            "first or last name are accepted too when they are unique."
        ),
    )
    # Ports > Internet Ports
    tls_credentials = models.ForeignKey(
        TLSCredentials,
        verbose_name=_("TLS credentials"),
        related_name="servers",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text=_("Certificate and key used by the SMTP ports (STARTTLS and the SSL port)."),
    )
    # Ports > Internet Ports > Mail, column Mail (SMTP Inbound)
    smtp_inbound_tcp_port = models.PositiveIntegerField(
        _("SMTP Inbound TCP/IP port number"), default=25, validators=PORT_VALIDATORS,
        help_text=_("Port on which the listener accepts SMTP connections (1-65535). Senders try 25 by default."),
    )
    smtp_inbound_tcp_status = models.CharField(
        _("SMTP Inbound TCP/IP port status"), max_length=10, choices=Status.choices, default=Status.ENABLED,
        help_text=_("The TCP/IP port is bound only while Enabled."),
    )
    smtp_inbound_enforce_server_access = models.BooleanField(
        _("Enforce server access settings"), default=False,
        help_text=_("Yes: an authenticated user must be allowed by Access server and not listed in Not access server. "
                    "Anonymous sessions are not checked: where anonymous mail is allowed, a person refused here at AUTH "
                    "can still send anonymously, as anyone can (spec 3.5)."),
    )
    smtp_inbound_tcp_auth_name_password = models.BooleanField(
        _("TCP/IP authentication: Name & password"), default=False,
        help_text=_("Offer AUTH on the TCP/IP port before STARTTLS, that is in clear text."),
    )
    smtp_inbound_tcp_auth_anonymous = models.BooleanField(
        _("TCP/IP authentication: Anonymous"), default=True,
        help_text=_("Accept mail without authentication on the TCP/IP port."),
    )
    smtp_inbound_ssl_port = models.PositiveIntegerField(
        _("SMTP Inbound SSL port number"), default=465, validators=PORT_VALIDATORS,
        help_text=_("Port for TLS from the first byte (1-65535); must differ from the TCP/IP port."),
    )
    smtp_inbound_ssl_status = models.CharField(
        _("SMTP Inbound SSL port status"), max_length=10, choices=Status.choices, default=Status.DISABLED,
        help_text=_("The SSL port is bound only while Enabled; it needs TLS credentials."),
    )
    smtp_inbound_ssl_auth_client_certificate = models.BooleanField(
        _("SSL authentication: Client certificate"), default=False,
        help_text=_("Accept a client certificate as authentication on the SSL port and after STARTTLS."),
    )
    smtp_inbound_ssl_auth_name_password = models.BooleanField(
        _("SSL authentication: Name & password"), default=True,
        help_text=_("Offer AUTH on the SSL port and after STARTTLS."),
    )
    smtp_inbound_ssl_auth_anonymous = models.BooleanField(
        _("SSL authentication: Anonymous"), default=True,
        help_text=_("Accept mail without authentication on the SSL port and after STARTTLS."),
    )
    # Ports > Internet Ports > Mail, column Mail (SMTP Outbound)
    smtp_outbound_tcp_port = models.PositiveIntegerField(
        _("SMTP Outbound TCP/IP port number"), default=25, validators=PORT_VALIDATORS,
        help_text=_("Port on the remote server for every outbound SMTP session of this server (1-65535)."),
    )
    smtp_outbound_tcp_status = models.CharField(
        _("SMTP Outbound TCP/IP port status"), max_length=20, choices=OutboundTcpStatus.choices, default=OutboundTcpStatus.ENABLED,
        help_text=_("Negotiated SSL sends STARTTLS when the remote server offers it."),
    )
    smtp_outbound_ssl_port = models.PositiveIntegerField(
        _("SMTP Outbound SSL port number"), default=465, validators=PORT_VALIDATORS,
        help_text=_("Port on the remote server for TLS from the first byte (1-65535)."),
    )
    smtp_outbound_ssl_status = models.CharField(
        _("SMTP Outbound SSL port status"), max_length=10, choices=Status.choices, default=Status.DISABLED,
        help_text=_("Enabled: try TLS from the first byte on the SSL port first."),
    )

    class Meta:
        verbose_name = _("server")
        verbose_name_plural = _("servers")
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("directory:server-detail", args=[self.pk])

    @property
    def organization(self) -> str:
        return names.organization(self.name)

    @property
    def host_domain(self) -> str:
        """The domain of the host name: ``mail1.acme.test`` -> ``acme.test``."""
        parts = self.host_name.split(".")
        return ".".join(parts[1:]) if len(parts) > 2 else self.host_name

    def clean(self) -> None:
        if self.name:
            self.name = names.abbreviate(self.name)
        errors = {}
        if self.smtp_inbound_ssl_port == self.smtp_inbound_tcp_port and self.smtp_inbound_ssl_port:
            errors["smtp_inbound_ssl_port"] = ValidationError(
                _("The SSL port must differ from the TCP/IP port (%(port)s)."),
                code="ssl_port_equals_tcp_port",
                params={"port": self.smtp_inbound_tcp_port},
            )
        if self.smtp_inbound_ssl_status == Status.ENABLED and not self.has_tls_credentials_for_ssl():
            errors["smtp_inbound_ssl_status"] = ValidationError(
                _("The SSL port cannot be Enabled without TLS credentials: choose them on Ports > Internet Ports."),
                code="ssl_without_credentials",
            )
        if self.tls_credentials_id and self.host_name and not self.tls_credentials.covers(self.host_name):
            errors["tls_credentials"] = ValidationError(
                _("These credentials do not cover the host name %(host)s."),
                code="host_not_covered",
                params={"host": self.host_name},
            )
        if errors:
            raise ValidationError(errors)

    def has_tls_credentials_for_ssl(self) -> bool:
        """Credentials come from this document, or from a hosting Site when Internet Sites are loaded."""
        if self.tls_credentials_id:
            return True
        if self.load_internet_sites and self.name:
            return any(site.tls_credentials_id for site in InternetSite.objects.hosting(self.name))
        return False

    def configuration(self) -> ConfigurationSettings | None:
        """The Configuration Settings that apply: this server's own, else the default one."""
        if self.pk:
            own = ConfigurationSettings.objects.filter(server=self).first()
            if own:
                return own
        return ConfigurationSettings.objects.filter(server__isnull=True).first()

    def warnings(self) -> list[tuple[str, str, str]]:
        result = []
        if self.smtp_inbound_tcp_port != STANDARD_SMTP_PORT:
            result.append((
                "smtp_inbound_tcp_port",
                "non_standard_port",
                _(
                    "Senders try port 25 by default: every sending server and client must be configured for "
                    "port %(port)s (its SMTP Outbound TCP/IP port number), and routing can break, above all if "
                    "this server is a relay host for inbound Internet mail."
                ) % {"port": self.smtp_inbound_tcp_port},
            ))
        if self.load_internet_sites and not InternetSite.objects.hosting(self.name).exists():
            result.append((
                "load_internet_sites",
                "no_inbound_site",
                _(
                    "No SMTP Inbound Internet Site document hosts this server: connections will get "
                    "“%(text)s”"
                ) % {"text": SITE_NOT_ENABLED_TEXT},
            ))
        config = self.configuration()
        starttls = config.starttls_inbound if config else StartTlsInbound.ENABLED
        if self.smtp_inbound_tcp_auth_name_password and starttls != StartTlsInbound.REQUIRED:
            result.append((
                "smtp_inbound_tcp_auth_name_password",
                "cleartext_auth",
                _(
                    "Security: Name & password on the TCP/IP port while STARTTLS is not Required lets "
                    "clients send passwords in clear text."
                ),
            ))
        elif self.smtp_inbound_tcp_auth_name_password and not self.load_internet_sites:
            result.append((
                "smtp_inbound_tcp_auth_name_password",
                "auth_after_starttls_only",
                _(
                    "STARTTLS is Required in the Configuration Settings: AUTH is offered on the TCP/IP port only "
                    "after STARTTLS, and an AUTH sent before gets “530 5.7.0 Must issue a STARTTLS command first”."
                ),
            ))
        no_method = not (self.smtp_inbound_tcp_auth_name_password or self.smtp_inbound_tcp_auth_anonymous)
        if no_method and starttls == StartTlsInbound.DISABLED and not self.load_internet_sites \
                and self.smtp_inbound_tcp_status == Status.ENABLED:
            result.append((
                "smtp_inbound_tcp_auth_anonymous",
                "no_client_can_send",
                _(
                    "No client can send mail on the TCP/IP port %(port)s: Name & password and Anonymous are both No "
                    "and STARTTLS is Disabled, so every MAIL FROM gets “530 5.7.0 Authentication required”."
                ) % {"port": self.smtp_inbound_tcp_port},
            ))
        if self.tls_credentials_id and self.tls_credentials.expires_soon():
            result.extend(self.tls_credentials.warnings())
        return result


class ConfigurationSettings(Document):
    """Configuration Settings document, Router/SMTP tab: one per server, or the default for all."""

    server = models.OneToOneField(
        Server, verbose_name=_("server"), null=True, blank=True, on_delete=models.CASCADE, related_name="own_configuration",
        help_text=_("Leave empty for the default (*) that applies to servers without their own document."),
    )
    local_domains = list_field(
        _("Local Internet domains"), validators.validate_domain,
        _("Domains whose mail is delivered locally, one per line. Empty means the server's host domain."),
    )
    smtp_outside_local_domain = models.BooleanField(
        _("SMTP used when sending messages outside the local Internet domain"), default=True,
        help_text=_("Disabled: no mail leaves the local Internet domains by SMTP."),
    )
    relay_host = models.CharField(
        _("Relay host for messages leaving the local Internet domain"), max_length=260, blank=True,
        validators=[validators.validate_host_port],
        help_text=_("host or host:port. Blank: deliver by SMTP connection routes, then MX records."),
    )
    relay_auth = models.CharField(
        _("Use authentication when sending to the relay host"), max_length=10, choices=RelayAuth.choices, default=RelayAuth.DISABLED,
        help_text=_("Required: never send without AUTH. Enabled: fall back to no authentication."),
    )
    relay_auth_name = models.CharField(_("relay host user name"), max_length=200, blank=True, help_text=_("Name sent to the relay host with AUTH."))
    relay_auth_password = models.CharField(
        _("relay host password"), max_length=500, blank=True, help_text=_("Stored for AUTH to the relay host; never shown again."),
    )
    relay_auth_allow_cleartext = models.BooleanField(
        _("Allow authentication to the relay host without TLS"), default=False,
        help_text=_("No: the password is never sent in clear text; a relay host that offers AUTH without TLS "
                    "gets no password, and the message waits."),
    )
    relay_tls_policy = models.CharField(
        _("TLS policy for the relay host"), max_length=13, choices=TlsPolicy.choices, default=TlsPolicy.OPPORTUNISTIC,
        help_text=_("Opportunistic: STARTTLS when offered, any certificate, else clear text, and the SSL port falls back "
                    "to the TCP/IP port. Verified: TLS required and the certificate checked; never clear text."),
    )
    relay_ca_bundle = models.CharField(
        _("CA bundle for the relay host"), max_length=500, blank=True, validators=[validators.validate_ca_bundle_path],
        help_text=_("With the verified policy: the absolute path of a PEM bundle on the router's host to trust "
                    "instead of the system trust store."),
    )
    routes = models.JSONField(
        _("SMTP connection routes"), default=list, blank=True, validators=[validators.validate_routes],
        help_text=_("One route per line: domain pattern, then the destination host or host:port (partner.test 127.0.0.1:2626)."),
    )
    max_message_size_kb = models.PositiveIntegerField(
        _("Maximum message size (KB)"), default=10240, validators=[MaxValueValidator(2_097_152)],
        help_text=_("In kilobytes; 0 means no limit."),
    )
    max_recipients = models.PositiveIntegerField(
        _("Maximum recipients per message"), default=100, validators=[MinValueValidator(1), MaxValueValidator(10000)],
        help_text=_("From 1 to 10000; past it the client gets 452 4.5.3."),
    )
    starttls_inbound = models.CharField(
        _("SSL negotiated over TCP/IP port"), max_length=10, choices=StartTlsInbound.choices, default=StartTlsInbound.ENABLED,
        help_text=_("Inbound STARTTLS. Required: MAIL FROM before STARTTLS gets 530."),
    )
    size_extension = models.BooleanField(_("SIZE extension"), default=True, help_text=_("Advertise SIZE (RFC 1870) in the EHLO reply."))
    pipelining = models.BooleanField(_("PIPELINING extension"), default=True, help_text=_("Advertise PIPELINING (RFC 2920)."))
    eightbitmime = models.BooleanField(_("8BITMIME extension"), default=False, help_text=_("Advertise 8BITMIME (RFC 6152)."))
    help_command = models.BooleanField(_("HELP command"), default=True, help_text=_("Answer the HELP command."))
    vrfy_command = models.BooleanField(_("VRFY command"), default=False, help_text=_("Answer VRFY with the user's address; off hides who exists."))
    anti_relay_enforcement = models.CharField(
        _("Perform anti-relay enforcement for these connecting hosts"), max_length=10,
        choices=AntiRelayEnforcement.choices, default=AntiRelayEnforcement.EXTERNAL,
        help_text=_("External hosts: internal hosts may relay. All: every host is checked. None: no check (an open relay)."),
    )
    internal_hosts = list_field(
        _("Internal hosts"), validators.validate_host_entry,
        _("IPs, CIDR ranges and host names not subject to External hosts enforcement, one per line."),
        default=default_internal_hosts,
    )
    anti_relay_exclude_hosts = list_field(
        _("Exclude these connecting hosts from anti-relay checks"), validators.validate_ip_or_network,
        _("IPs and CIDR ranges that may always relay, one per line."),
    )
    authenticated_users_relay = models.BooleanField(
        _("Allow all authenticated users to relay"), default=True,
        help_text=_("No: authenticated users are subject to the anti-relay checks too."),
    )
    relay_allow_domains = list_field(
        _("Allow messages to be sent to these external domains"), validators.validate_domain,
        _("Domains that may be relayed to, one per line. Allow wins over Deny."),
    )
    relay_deny_domains = list_field(
        _("Deny messages to be sent to these external domains"), validators.validate_domain,
        _("Domains that may not be relayed to, one per line."),
    )
    connection_allow_hosts = list_field(
        _("Allow connections only from these hosts"), validators.validate_host_entry,
        _("IPs, CIDR ranges and host names, one per line. Empty means every host."),
    )
    connection_deny_hosts = list_field(
        _("Deny connections from these hosts"), validators.validate_host_entry,
        _("IPs, CIDR ranges and host names, one per line. Deny wins over Allow."),
    )
    error_limit = models.PositiveIntegerField(
        _("Error limit before connection is terminated"), default=10, validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text=_("Protocol errors allowed in a session before 421 closes it."),
    )
    administrators = list_field(
        _("Administrators"), validators.validate_name_or_wildcard,
        _("People and groups who receive mail sent to postmaster, one per line (RFC 5321 s 4.5.1)."),
        default=default_administrators,
    )

    secret_fields = ("relay_auth_password",)
    name_field = None

    class Meta:
        verbose_name = _("configuration settings")
        verbose_name_plural = _("configuration settings")
        ordering = ["server__name"]

    def __str__(self):
        return self.server.name if self.server_id else str(_("* (default)"))

    @property
    def server_label(self) -> str:
        return self.server.name if self.server_id else "*"

    def get_absolute_url(self) -> str:
        return reverse("directory:configurationsettings-detail", args=[self.pk])

    def clean(self) -> None:
        errors = {}
        others = ConfigurationSettings.objects.exclude(pk=self.pk)
        if self.server_id is None and others.filter(server__isnull=True).exists():
            errors["server"] = ValidationError(
                _("A default configuration (*) already exists; choose a server."), code="duplicate_default"
            )
        if self.relay_auth != RelayAuth.DISABLED and not self.relay_host:
            errors["relay_auth"] = ValidationError(
                _("Authentication to the relay host needs a relay host."), code="relay_auth_without_host"
            )
        if self.relay_ca_bundle and self.relay_tls_policy != TlsPolicy.VERIFIED:
            errors["relay_ca_bundle"] = ValidationError(
                _("A CA bundle is used only with the verified TLS policy: choose Verified, or remove the bundle."),
                code="relay_ca_bundle_with_opportunistic",
            )
        if self.relay_auth != RelayAuth.DISABLED and not self.relay_auth_name:
            errors["relay_auth_name"] = ValidationError(
                _("Enter the name to send to the relay host."), code="relay_auth_without_name"
            )
        if errors:
            raise ValidationError(errors)

    def effective_local_domains(self, server: Server) -> list[str]:
        return self.local_domains or [server.host_domain]

    def warnings(self) -> list[tuple[str, str, str]]:
        result = []
        if self.anti_relay_enforcement == AntiRelayEnforcement.NONE:
            result.append(("anti_relay_enforcement", "open_relay", _("Security: with no anti-relay enforcement, anyone may relay through this server.")))
        if self.starttls_inbound != StartTlsInbound.REQUIRED:
            servers = [self.server] if self.server_id else list(Server.objects.exclude(own_configuration__isnull=False))
            # Server documents decide the authentication options without Internet Sites, the sites with them (spec 2).
            weak = (
                ("cleartext_auth", [s.name for s in servers if s.smtp_inbound_tcp_auth_name_password and not s.load_internet_sites], _(
                    "Security: %(servers)s offer Name & password on the TCP/IP port; without STARTTLS Required, "
                    "passwords can travel in clear text."
                )),
                ("cleartext_auth_sites", clear_text_sites(s for s in servers if s.load_internet_sites), _(
                    "Security: the Internet Sites %(sites)s offer Name & password on the TCP/IP port of servers these "
                    "settings apply to; without STARTTLS Required, passwords can travel in clear text."
                )),
            )
            result.extend(
                ("starttls_inbound", code, message % {"servers": ", ".join(found), "sites": ", ".join(found)})
                for code, found, message in weak if found
            )
        return result


def clear_text_sites(servers: object) -> list[str]:
    """Names of the SMTP Inbound sites with TCP/IP Name & password Yes that host any of ``servers`` (which
    load Internet Sites): each would accept AUTH in clear text unless its server's STARTTLS is Required."""
    servers = list(servers)
    sites = InternetSite.objects.filter(site_type=SiteType.SMTP_INBOUND, tcp_auth_name_password=True)
    return [site.name for site in sites if any(site.hosts(server.name) for server in servers)]


class InternetSiteQuerySet(models.QuerySet):
    def hosting(self, server_name: str) -> InternetSiteQuerySet:
        """SMTP Inbound sites that host this server (listed by name, or ``*``), oldest first."""
        ids = [site.pk for site in self.filter(site_type=SiteType.SMTP_INBOUND) if site.hosts(server_name)]
        return self.filter(pk__in=ids).order_by("created", "pk")


class InternetSite(Document):
    """An Internet Site document of type SMTP Inbound."""

    name = models.CharField(_("descriptive name"), max_length=200, unique=True, help_text=_("A name for this site, such as Acme SMTP."))
    site_type = models.CharField(
        _("site type"), max_length=20, choices=SiteType.choices, default=SiteType.SMTP_INBOUND,
        help_text=_("Only SMTP Inbound sites configure the listener."),
    )
    organization = models.CharField(_("organization"), max_length=200, blank=True, help_text=_("The organization of the servers that host this site."))
    mapped_addresses = list_field(
        _("Host names or addresses mapped to this site"), validators.validate_mapped_address,
        _("IP addresses or host names of the local interface the client connects to, one per line; * means any."),
        default=default_any,
    )
    servers = list_field(
        _("Domino servers that host this site"), validators.validate_server_entry,
        _("Server names, one per line; * means all servers."), default=default_any,
    )
    tcp_auth_name_password = models.BooleanField(
        _("TCP authentication: Name & password"), default=False,
        help_text=_("Offer AUTH on the TCP/IP port before STARTTLS."),
    )
    tcp_auth_anonymous = models.BooleanField(
        _("TCP authentication: Anonymous"), default=True,
        help_text=_("Accept mail without authentication on the TCP/IP port."),
    )
    ssl_auth_client_certificate = models.BooleanField(
        _("SSL authentication: Client certificate"), default=False,
        help_text=_("Accept a client certificate on the SSL port and after STARTTLS."),
    )
    ssl_auth_name_password = models.BooleanField(
        _("SSL authentication: Name & password"), default=True,
        help_text=_("Offer AUTH on the SSL port and after STARTTLS."),
    )
    ssl_auth_anonymous = models.BooleanField(
        _("SSL authentication: Anonymous"), default=True,
        help_text=_("Accept mail without authentication on the SSL port and after STARTTLS."),
    )
    tls_credentials = models.ForeignKey(
        TLSCredentials, verbose_name=_("TLS credentials"), related_name="sites", null=True, blank=True, on_delete=models.PROTECT,
        help_text=_("Certificate for this site; empty falls back to the Server document's."),
    )

    objects = InternetSiteQuerySet.as_manager()

    class Meta:
        verbose_name = _("Internet Site")
        verbose_name_plural = _("Internet Sites")
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("directory:internetsite-detail", args=[self.pk])

    def hosts(self, server_name: str) -> bool:
        """Does this SMTP Inbound site host the server (listed by name, or ``*``)?"""
        wanted = names.abbreviate(server_name)
        return self.site_type == SiteType.SMTP_INBOUND and any(
            entry == "*" or names.same_name(entry, wanted) for entry in self.servers
        )

    @property
    def all_options_off(self) -> bool:
        return not any((
            self.tcp_auth_name_password, self.tcp_auth_anonymous, self.ssl_auth_client_certificate,
            self.ssl_auth_name_password, self.ssl_auth_anonymous,
        ))

    def warnings(self) -> list[tuple[str, str, str]]:
        found = []
        if self.all_options_off:
            found.append(("tcp_auth_anonymous", "all_options_off", _(
                "Every authentication option is No: connections to this site will get “%(text)s”"
            ) % {"text": SITE_NOT_ENABLED_TEXT}))
        elif self.tcp_auth_name_password:
            found.extend(self.clear_text_warnings())
        known = list(Server.objects.values_list("name", flat=True))
        unknown = [entry for entry in self.servers if entry != "*" and not any(names.same_name(entry, names.abbreviate(name)) for name in known)]
        if unknown:
            found.append(("servers", "unknown_server", _(
                "No Server document is named %(names)s: this site serves no server under that name. Check the spelling."
            ) % {"names": ", ".join(unknown)}))
        return found

    def clear_text_warnings(self) -> list[tuple[str, str, str]]:
        """Name & password on the TCP/IP port, as the Server document warns: clear text unless every server
        that loads this site has STARTTLS Required (and one does)."""
        servers = [server for server in Server.objects.filter(load_internet_sites=True) if self.hosts(server.name)]
        weak = [server.name for server in servers if (
            (config := server.configuration()) is None or config.starttls_inbound != StartTlsInbound.REQUIRED
        )]
        if servers and not weak:
            return []
        where = ", ".join(weak) if weak else _("the servers that will load this site")
        return [("tcp_auth_name_password", "cleartext_auth", _(
            "Security: Name & password on the TCP/IP port while STARTTLS is not Required on %(servers)s lets clients "
            "send passwords in clear text."
        ) % {"servers": where})]


class Person(Document):
    full_name = models.CharField(
        _("full name"), max_length=200, unique=True, validators=[validators.validate_name],
        help_text=_("Hierarchical user name such as Jane Doe/Sales/Acme."),
    )
    first_name = models.CharField(_("first name"), max_length=100, blank=True, help_text=_("Accepted as login with More name variations, when unique."))
    last_name = models.CharField(_("last name"), max_length=100, blank=True, help_text=_("Accepted as login with More name variations, when unique."))
    short_name = models.CharField(_("short name"), max_length=100, blank=True, help_text=_("Short user name such as jdoe."))
    internet_address = models.EmailField(
        _("Internet address"), max_length=254, blank=True, unique=True, null=True,
        help_text=_("The address whose mail is delivered to this person's mailbox, such as jane@acme.test."),
    )
    internet_password = models.CharField(
        _("Internet password"), max_length=200, blank=True, editable=False,
        help_text=_("Stored only as a hash; used for SMTP AUTH."),
    )

    secret_fields = ("internet_password",)
    name_field = "full_name"

    class Meta:
        verbose_name = _("person")
        verbose_name_plural = _("people")
        ordering = ["full_name"]

    def __str__(self):
        return self.full_name

    def get_absolute_url(self) -> str:
        return reverse("directory:person-detail", args=[self.pk])

    def clean(self) -> None:
        if self.full_name:
            self.full_name = names.abbreviate(self.full_name)
        if self.internet_address == "":
            self.internet_address = None
        elif self.internet_address:
            self.internet_address = self.internet_address.lower()

    def set_internet_password(self, raw_password: str | None) -> None:
        self.internet_password = make_password(raw_password) if raw_password else ""

    def check_internet_password(self, raw_password: str) -> bool:
        return bool(self.internet_password) and check_password(raw_password, self.internet_password)

    @property
    def has_internet_password(self) -> bool:
        return bool(self.internet_password)


class Group(Document):
    name = models.CharField(
        _("group name"), max_length=200, unique=True, validators=[validators.validate_name],
        help_text=_("Name of the group, such as Mail Admins."),
    )
    group_type = models.CharField(
        _("group type"), max_length=20, choices=GroupType.choices, default=GroupType.MULTI_PURPOSE,
        help_text=_("Mail-only groups do not count in access lists."),
    )
    members = list_field(
        _("members"), validators.validate_name_or_wildcard,
        _("Names, other groups and wildcards (*/Sales/Acme), one per line. Nested groups may form cycles safely."),
    )

    class Meta:
        verbose_name = _("group")
        verbose_name_plural = _("groups")
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("directory:group-detail", args=[self.pk])

    def warnings(self, groups: dict | None = None) -> list:
        """``groups``: the mapping of every group with this one as it is (read once for many groups)."""
        cycle = names.find_cycle(self.name, groups if groups is not None else groups_mapping(override=self))
        if cycle:
            return [("members", "cycle", _("These groups contain each other: %(cycle)s. Access checks stop at the loop.") % {"cycle": " > ".join(cycle)})]
        return []

    @classmethod
    def warnings_of(cls, documents: Iterable[Group]) -> dict:
        """One read of every group, and a cycle looked for only from groups that are on one."""
        groups = groups_mapping()
        looping = names.groups_in_cycles(groups)
        return {
            document.pk: document.warnings(groups) if names.abbreviate(document.name).lower() in looping else []
            for document in documents
        }


def groups_mapping(override: Group | None = None) -> dict[str, tuple[str, list[str]]]:
    """All groups as ``{lower-cased name: (type, members)}`` for the pure name matcher."""
    mapping = {
        names.abbreviate(name).lower(): (group_type, list(members))
        for name, group_type, members in Group.objects.values_list("name", "group_type", "members")
    }
    if override is not None:
        mapping[names.abbreviate(override.name).lower()] = (override.group_type, list(override.members))
    return mapping


class AuditEntry(models.Model):
    """One create, change or delete of a directory document: who, when, and each field's old and new value."""

    class Action(models.TextChoices):
        CREATE = "create", _("created")
        CHANGE = "change", _("changed")
        DELETE = "delete", _("deleted")

    timestamp = models.DateTimeField(_("when"), default=timezone.now, db_index=True)
    user = models.ForeignKey("auth.User", verbose_name=_("user"), null=True, blank=True, on_delete=models.SET_NULL)
    actor = models.CharField(_("who"), max_length=200, help_text=_("User name, or the command that made the change."))
    action = models.CharField(_("action"), max_length=10, choices=Action.choices)
    document_type = models.CharField(_("document type"), max_length=50, db_index=True)
    object_id = models.CharField(_("document id"), max_length=50, db_index=True)
    object_repr = models.CharField(_("document"), max_length=300)
    changes = models.JSONField(_("changes"), default=dict, help_text=_("{field: [old, new]}; secrets masked."))
    snapshot = models.JSONField(_("saved version"), default=dict, help_text=_("Every field after the change; secrets masked."))

    class Meta:
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit trail")
        ordering = ["-timestamp", "-pk"]

    def __str__(self):
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.document_type} {self.object_repr}"


class DocumentVersion(models.Model):
    """One saved version of a document, every field as stored, so it can be compared and restored.

    Secrets are kept as stored (password hashes, private keys): a page shows them only as
    set/changed, and only a restore puts them back. The document is named by type and id, not by a
    foreign key, so the versions of a deleted document stay.
    """

    class Action(models.TextChoices):
        BASELINE = "baseline", _("as found when history began")
        CREATE = "create", _("created")
        CHANGE = "change", _("changed")
        DELETE = "delete", _("deleted")

    document_type = models.CharField(_("document type"), max_length=50)
    object_id = models.CharField(_("document id"), max_length=50)
    number = models.PositiveIntegerField(_("version"))
    action = models.CharField(_("action"), max_length=10, choices=Action.choices)
    timestamp = models.DateTimeField(_("when"), default=timezone.now)
    audit_entry = models.OneToOneField(
        AuditEntry, verbose_name=_("audit entry"), null=True, blank=True, on_delete=models.SET_NULL, related_name="version",
    )
    restored_from = models.ForeignKey(
        "self", verbose_name=_("restored from"), null=True, blank=True, on_delete=models.SET_NULL, related_name="restores",
    )
    data = models.JSONField(_("fields"), default=dict, help_text=_("Every field after the change (before it, for a delete), secrets as stored."))
    settings_revision = models.PositiveBigIntegerField(
        _("settings revision"), null=True, blank=True,
        help_text=_("The directory revision a listener reports once it serves this version (set by the SMTP service)."),
    )
    bound_at = models.DateTimeField(
        _("ports bound"), null=True, blank=True,
        help_text=_("When a listener serving this version first reported every configured port bound."),
    )

    class Meta:
        verbose_name = _("document version")
        verbose_name_plural = _("document versions")
        ordering = ["document_type", "object_id", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["document_type", "object_id", "number"], name="directory_version_number_unique"),
        ]

    def __str__(self):
        return f"{self.document_type} {self.object_id} v{self.number}"

    @property
    def model(self) -> type[models.Model]:
        return apps.get_model("directory", self.document_type)

    @property
    def actor(self) -> str:
        return self.audit_entry.actor if self.audit_entry_id else ""
