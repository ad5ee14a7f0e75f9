"""Forms of the directory documents, laid out in tabs like Domino's.

The console and ``importdirectory`` both validate through these forms, so a document is held to the
same rules whichever way it arrives. Documents refer to each other by name (``to_field_name``).
"""
from crispy_forms.bootstrap import Tab, TabHolder
from crispy_forms.helper import FormHelper
from crispy_forms.layout import HTML, Column, Layout, Row
from django import forms
from django.core.exceptions import FieldDoesNotExist
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.text import capfirst, format_lazy, slugify
from django.utils.translation import gettext_lazy as _
from django.utils.translation import override

from directory import models, validators


class LinesField(forms.Field):
    """A list of entries: one per line (commas also separate) in the console, a JSON list on import."""

    widget = forms.Textarea(attrs={"rows": 3})

    def __init__(self, *, separators=",\n", **kwargs):
        self.separators = separators
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_python(self, value):
        if value in (None, ""):
            return []
        if isinstance(value, (list, tuple)):
            if not all(isinstance(item, str) for item in value):
                raise forms.ValidationError(_("Every entry must be text."), code="invalid_entry")
            items = value
        elif isinstance(value, str):
            text = value
            for separator in self.separators:
                text = text.replace(separator, "\n")
            items = text.splitlines()
        else:
            raise forms.ValidationError(_("Enter a list of entries."), code="invalid_list")
        # Without duplicates, in order; a dict keeps this linear for lists of any length.
        return list(dict.fromkeys(item for item in (item.strip() for item in items) if item))

    def prepare_value(self, value):
        if isinstance(value, (list, tuple)):
            return "\n".join(value)
        return value

    def has_changed(self, initial, data):
        return self.to_python(initial) != self.to_python(data)


class RoutesField(forms.Field):
    """SMTP connection routes: ``domain host[:port] [tls=opportunistic|verified] [ca=/path/ca.pem]`` per line,
    or a JSON list of {domain, host[, tls_policy][, ca_file]}; the older ``tls=any|verify`` is read too."""

    widget = forms.Textarea(attrs={"rows": 3})
    OPTIONS = {"tls": "tls_policy", "ca": "ca_file"}

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", _(
            "One route per line: domain pattern, then the destination host or host:port, then optionally "
            "tls=opportunistic (the default: STARTTLS when offered, any certificate) or tls=verified (TLS required, "
            "certificate checked against the system trust store, or the bundle of ca=/path/to/ca.pem), such as "
            "partner.test 127.0.0.1:2626 tls=verified ca=/etc/ssl/partner-ca.pem."
        ))
        super().__init__(**kwargs)

    def to_python(self, value: object) -> list:
        if value in (None, ""):
            return []
        if isinstance(value, list):
            return [validators.normalize_route(route) for route in value]
        if not isinstance(value, str):
            raise forms.ValidationError(_("Enter one route per line: domain, then host."), code="invalid_route")
        return [self.parse_line(line) for line in value.splitlines() if line.replace("->", " ").split()]

    def parse_line(self, line: str) -> dict:
        parts = line.replace("->", " ").split()
        options = [part.partition("=") for part in parts[2:]]
        if len(parts) < 2 or any(not sep or key not in self.OPTIONS for key, sep, _value in options):
            raise forms.ValidationError(
                _("“%(line)s”: write a domain pattern, then the destination host (partner.test 127.0.0.1:2626), "
                  "then optionally tls=opportunistic or tls=verified, and ca=/path/to/ca.pem."),
                code="invalid_route",
                params={"line": line.strip()},
            )
        route = {"domain": parts[0], "host": parts[1]}
        for key, _sep, value in options:
            route[self.OPTIONS[key]] = validators.LEGACY_ROUTE_TLS.get(value, value) if key == "tls" else value
        return route

    def prepare_value(self, value: object) -> object:
        if isinstance(value, list):
            names = {field: key for key, field in self.OPTIONS.items()}
            routes = [validators.normalize_route(route) for route in value]
            return "\n".join(
                " ".join([route.get("domain", ""), route.get("host", ""),
                          *(f"{names[field]}={route[field]}" for field in self.OPTIONS.values() if route.get(field))])
                for route in routes if isinstance(route, dict)
            )
        return value

    def has_changed(self, initial, data):
        return self.to_python(initial) != self.to_python(data)


def bool_choice_field(model_field):
    """Domino shows Yes/No and Enabled/Disabled as choices; import sends true/false."""
    return forms.TypedChoiceField(
        choices=[(True, _("Yes")), (False, _("No"))],
        coerce=lambda value: value in (True, "True", "true", "1", 1),
        required=False,
        empty_value=model_field.default,
    )


ENABLED_CHOICES = [(True, _("Enabled")), (False, _("Disabled"))]


class Tabs(tuple):
    """Tabs inside a tab, as Domino nests Ports > Internet Ports > Mail: ``Tabs(((label, items), ...))``."""


def tab_id(label) -> str:
    """The anchor of a tab, from its English label: a shared link opens the same tab in every language."""
    with override("en"):
        return f"tab-{slugify(str(label))}"


def tab_holder(tabs) -> TabHolder:
    """Crispy tabs (nested ones too) with stable anchors and the tab roles (templates/bootstrap5/layout/)."""
    return TabHolder(*(
        Tab(label, *[tab_holder(item) if isinstance(item, Tabs) else item for item in items],
            css_id=tab_id(label), role="tabpanel", aria_labelledby=f"{tab_id(label)}-link")
        for label, items in tabs
    ))


class DocumentForm(forms.ModelForm):
    """Base form: capitalised labels, warnings the admin confirms, crispy tabs from ``tabs``."""

    # ((tab label, [field or Row of Columns, ...]), ...)
    tabs = ()
    enabled_disabled_fields = ()
    secret_fields = ()
    confirm_warnings = forms.CharField(required=False, widget=forms.HiddenInput)
    # The import turns this off: it reports the warnings of the directory it leaves, once, at the end.
    check_warnings = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.warnings = []
        self.notices = []
        for name, field in list(self.fields.items()):
            model_field = self._model_field(name)
            if model_field is None:
                continue
            label = field.label or capfirst(model_field.verbose_name)
            if isinstance(model_field, models.models.BooleanField):
                field = self.fields[name] = bool_choice_field(model_field)
                if name in self.enabled_disabled_fields:
                    field.choices = ENABLED_CHOICES
            elif isinstance(model_field, models.models.ForeignKey):
                field = self.fields[name] = forms.ModelChoiceField(
                    model_field.related_model.objects.all(), to_field_name="name", required=False
                )
                if self.initial.get(name) is not None and self.initial[name] == getattr(self.instance, model_field.attname):
                    # The instance gives the primary key but the choices are names: select the current one.
                    self.initial[name] = getattr(self.instance, name).name
            if model_field.validators[:len(models.PORT_VALIDATORS)] == models.PORT_VALIDATORS:
                # PositiveIntegerField's own form check says "greater than or equal to 0": one range, one message.
                field.min_value, field.max_value = 1, 65535
                field.widget.attrs.update(min=1, max=65535)
                field.error_messages.update(min_value=models.PORT_RANGE_MESSAGE, max_value=models.PORT_RANGE_MESSAGE)
            if field.initial is None and model_field.has_default():
                # A new document shows its defaults on the fields declared or replaced here too.
                field.initial = model_field.default
            field.label = label
            field.help_text = field.help_text or model_field.help_text

    @cached_property
    def helper(self):
        """Built when a page renders the form, not for each form the import only validates."""
        helper = FormHelper(self)
        helper.form_tag = False
        helper.disable_csrf = True
        if self.tabs:
            helper.layout = Layout(
                tab_holder(self.tabs),
                "confirm_warnings",
            )
        return helper

    def _model_field(self, name):
        try:
            return self.Meta.model._meta.get_field(name)
        except FieldDoesNotExist:
            return None

    def _post_clean(self):
        super()._post_clean()
        if not self.errors and self.check_warnings:
            # A warning about a value this save does not change is a standing notice, not a question:
            # asking again on every save of the document would teach the admin to click through it.
            self.warnings, self.notices = [], []
            for warning in self.instance.warnings():
                unchanged = self.instance.pk is not None and warning[0] in self.fields and warning[0] not in self.changed_data
                (self.notices if unchanged else self.warnings).append(warning)
            for field, _code, message in self.warnings + self.notices:
                if field in self.fields:
                    original = self.fields[field].help_text
                    self.fields[field].help_text = format_html(
                        '<span class="text-warning-emphasis fw-semibold warning-text">⚠ {}</span><br>{}', message, original
                    )

    @property
    def warning_codes(self):
        return ",".join(sorted({code for _field, code, _message in self.warnings}))

    @property
    def unconfirmed_warnings(self):
        """Warnings the admin has not yet seen and confirmed with “Save anyway”."""
        confirmed = set(filter(None, (self.cleaned_data.get("confirm_warnings") or "").split(",")))
        return [w for w in self.warnings if w[1] not in confirmed]

    def ask_confirmation(self):
        """Re-render with the warnings; the hidden field records that they were shown."""
        data = self.data.copy()
        data["confirm_warnings"] = self.warning_codes
        self.data = data


class ServerForm(DocumentForm):
    enabled_disabled_fields = ("smtp_listener_enabled", "load_internet_sites")

    listen_addresses = LinesField()
    access_server = LinesField(separators="\n")
    not_access_server = LinesField(separators="\n")

    class Meta:
        model = models.Server
        fields = [
            "name", "host_name", "smtp_listener_enabled", "load_internet_sites", "listen_addresses",
            "access_server", "not_access_server", "internet_authentication", "tls_credentials",
            "smtp_inbound_tcp_port", "smtp_inbound_tcp_status", "smtp_inbound_enforce_server_access",
            "smtp_inbound_tcp_auth_name_password", "smtp_inbound_tcp_auth_anonymous",
            "smtp_inbound_ssl_port", "smtp_inbound_ssl_status", "smtp_inbound_ssl_auth_client_certificate",
            "smtp_inbound_ssl_auth_name_password", "smtp_inbound_ssl_auth_anonymous",
            "smtp_outbound_tcp_port", "smtp_outbound_tcp_status", "smtp_outbound_ssl_port", "smtp_outbound_ssl_status",
        ]

    tabs = (
        (_("Basics"), ["name", "host_name", "smtp_listener_enabled", "load_internet_sites", "listen_addresses"]),
        (_("Security"), ["access_server", "not_access_server", "internet_authentication"]),
        (_("Ports"), [Tabs((
            (_("Internet Ports"), ["tls_credentials", Tabs((
                (_("Mail"), [Row(
                    Column(
                        HTML(format_lazy('<h5 id="smtp-inbound">{}</h5>', _("Mail (SMTP Inbound)"))),
                        "smtp_inbound_tcp_port", "smtp_inbound_tcp_status", "smtp_inbound_enforce_server_access",
                        "smtp_inbound_tcp_auth_name_password", "smtp_inbound_tcp_auth_anonymous",
                        "smtp_inbound_ssl_port", "smtp_inbound_ssl_status", "smtp_inbound_ssl_auth_client_certificate",
                        "smtp_inbound_ssl_auth_name_password", "smtp_inbound_ssl_auth_anonymous",
                        css_class="col-md-6",
                    ),
                    Column(
                        HTML(format_lazy('<h5 id="smtp-outbound">{}</h5>', _("Mail (SMTP Outbound)"))),
                        "smtp_outbound_tcp_port", "smtp_outbound_tcp_status", "smtp_outbound_ssl_port", "smtp_outbound_ssl_status",
                        css_class="col-md-6",
                    ),
                )]),
            ))]),
        ))]),
    )


class ConfigurationSettingsForm(DocumentForm):
    local_domains = LinesField()
    internal_hosts = LinesField()
    anti_relay_exclude_hosts = LinesField()
    relay_allow_domains = LinesField()
    relay_deny_domains = LinesField()
    connection_allow_hosts = LinesField()
    connection_deny_hosts = LinesField()
    administrators = LinesField()
    routes = RoutesField()
    relay_auth_password = forms.CharField(
        required=False, strip=False, widget=forms.PasswordInput(render_value=False),
        max_length=models.ConfigurationSettings._meta.get_field("relay_auth_password").max_length,
        help_text=_("Leave blank to keep the stored password. It is never shown again."),
    )
    enabled_disabled_fields = (
        "smtp_outside_local_domain", "size_extension", "pipelining", "eightbitmime", "help_command", "vrfy_command",
    )

    class Meta:
        model = models.ConfigurationSettings
        fields = [
            "server", "local_domains", "smtp_outside_local_domain", "relay_host", "relay_auth", "relay_auth_name",
            "relay_auth_allow_cleartext", "relay_tls_policy", "relay_ca_bundle", "routes", "max_message_size_kb",
            "max_recipients", "starttls_inbound", "size_extension",
            "pipelining", "eightbitmime", "help_command", "vrfy_command", "anti_relay_enforcement", "internal_hosts",
            "anti_relay_exclude_hosts", "authenticated_users_relay", "relay_allow_domains", "relay_deny_domains",
            "connection_allow_hosts", "connection_deny_hosts", "error_limit", "administrators",
        ]

    tabs = (
        (_("Basics"), ["server", "local_domains", "administrators"]),
        (_("Router/SMTP"), [
            "smtp_outside_local_domain", "relay_host", "relay_auth", "relay_auth_name", "relay_auth_password",
            "relay_auth_allow_cleartext", "relay_tls_policy", "relay_ca_bundle", "routes",
        ]),
        (_("Restrictions and Controls"), [
            "anti_relay_enforcement", "internal_hosts", "anti_relay_exclude_hosts", "authenticated_users_relay",
            "relay_allow_domains", "relay_deny_domains", "connection_allow_hosts", "connection_deny_hosts",
            "max_message_size_kb", "max_recipients", "error_limit",
        ]),
        (_("Protocol"), ["starttls_inbound", "size_extension", "pipelining", "eightbitmime", "help_command", "vrfy_command"]),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["server"].empty_label = _("* (default for all servers)")
        self.fields["authenticated_users_relay"].choices = [
            (True, _("Allow all authenticated users to relay")),
            (False, _("Perform anti-relay checks for authenticated users")),
        ]
        self.fields["authenticated_users_relay"].label = _("Authenticated users")
        # Data written before the TLS policy existed (older forms, scripts) leaves it out: it means the default.
        self.fields["relay_tls_policy"].required = False

    def clean_relay_tls_policy(self) -> str:
        return self.cleaned_data["relay_tls_policy"] or models.TlsPolicy.OPPORTUNISTIC

    def clean_routes(self) -> list:
        routes = self.cleaned_data["routes"]
        validators.validate_routes(routes)
        return routes

    def save(self, commit=True):
        password = self.cleaned_data.get("relay_auth_password")
        if password:
            self.instance.relay_auth_password = password
        return super().save(commit)


class InternetSiteForm(DocumentForm):
    mapped_addresses = LinesField(required=True)
    servers = LinesField(separators="\n", required=True)

    class Meta:
        model = models.InternetSite
        fields = [
            "name", "site_type", "organization", "mapped_addresses", "servers", "tcp_auth_name_password",
            "tcp_auth_anonymous", "ssl_auth_client_certificate", "ssl_auth_name_password", "ssl_auth_anonymous",
            "tls_credentials",
        ]

    tabs = (
        (_("Basics"), ["name", "site_type", "organization", "mapped_addresses", "servers"]),
        (_("Security"), [
            "tcp_auth_name_password", "tcp_auth_anonymous", "ssl_auth_client_certificate", "ssl_auth_name_password",
            "ssl_auth_anonymous", "tls_credentials",
        ]),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.instance.pk and not self.initial.get("organization"):
            first = models.Server.objects.first()
            if first:
                self.initial["organization"] = first.organization


class PersonForm(DocumentForm):
    internet_password = forms.CharField(
        label=_("Internet password"), required=False, strip=False, widget=forms.PasswordInput(render_value=False),
        help_text=_("Leave blank to keep the current password. Stored only as a hash, never shown."),
    )
    clear_internet_password = forms.BooleanField(
        label=_("Remove the Internet password"), required=False, help_text=_("The person can no longer use SMTP AUTH."),
    )

    class Meta:
        model = models.Person
        fields = ["full_name", "first_name", "last_name", "short_name", "internet_address"]

    tabs = (
        (_("Basics"), ["full_name", "first_name", "last_name", "short_name", "internet_address", "internet_password", "clear_internet_password"]),
    )

    def save(self, commit=True):
        if self.cleaned_data.get("clear_internet_password"):
            self.instance.set_internet_password("")
        elif self.cleaned_data.get("internet_password"):
            self.instance.set_internet_password(self.cleaned_data["internet_password"])
        return super().save(commit)


class GroupForm(DocumentForm):
    members = LinesField(separators="\n")

    class Meta:
        model = models.Group
        fields = ["name", "group_type", "members"]

    tabs = ((_("Basics"), ["name", "group_type", "members"]),)


class TLSCredentialsForm(DocumentForm):
    private_key_pem = forms.CharField(
        label=_("Private key (PEM)"), required=False, strip=False,
        widget=forms.Textarea(attrs={"rows": 4, "autocomplete": "off"}),
        help_text=_("The unencrypted private key. Never shown again; leave blank to keep the stored key."),
    )

    class Meta:
        model = models.TLSCredentials
        fields = ["name", "certificate_pem", "private_key_pem"]
        widgets = {"certificate_pem": forms.Textarea(attrs={"rows": 8})}

    tabs = ((_("Basics"), ["name", "certificate_pem", "private_key_pem"]),)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial.pop("private_key_pem", None)
        if not self.instance.pk:
            self.fields["private_key_pem"].required = True

    def clean_private_key_pem(self):
        value = self.cleaned_data.get("private_key_pem")
        return value or self.instance.private_key_pem


class GenerateCertificateForm(forms.Form):
    """The “generate a self-signed certificate for this server” action."""

    days = forms.IntegerField(
        label=_("Valid for (days)"), min_value=1, max_value=825, initial=397,
        help_text=_("Browsers and many mail servers refuse certificates valid for more than 397 days."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = FormHelper(self)
        self.helper.form_tag = False
        self.helper.disable_csrf = True


FORMS = {
    models.Server: ServerForm,
    models.ConfigurationSettings: ConfigurationSettingsForm,
    models.InternetSite: InternetSiteForm,
    models.Person: PersonForm,
    models.Group: GroupForm,
    models.TLSCredentials: TLSCredentialsForm,
}
