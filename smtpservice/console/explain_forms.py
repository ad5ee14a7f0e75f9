"""The policy simulator's form: a client, where it connects, and what it sends.

The port and the TLS choice are checked against the server's SMTP Inbound ports, so a simulated
client speaks what the port expects (clear text and STARTTLS on the TCP/IP port, TLS from the first
byte on the SSL port); any other port number is simulated as refused.
"""
from typing import Any

from django import forms
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy as _

from directory import validators
from smtpservice.core import policy, simulator

NO_TLS, STARTTLS, SSL_PORT = "none", "starttls", "ssl"
TLS_CHOICES = [
    (NO_TLS, _("No TLS (clear text on the TCP/IP port)")),
    (STARTTLS, _("STARTTLS on the TCP/IP port")),
    (SSL_PORT, _("SSL port (TLS from the first byte)")),
]
DEFAULT_CLIENT = "203.0.113.5"
"""A documentation address (RFC 5737): an outside client unless the lists name it."""


def text_input(**attrs: str) -> forms.TextInput:
    return forms.TextInput(attrs={"class": "form-control", **attrs})


def address_list(value: str) -> tuple[str, ...]:
    """One mail address per line (commas also separate), each checked."""
    addresses = [item.strip() for item in value.replace(",", "\n").splitlines() if item.strip()]
    for address in addresses:
        try:
            validate_email(address)
        except forms.ValidationError:
            raise forms.ValidationError(
                _("“%(address)s” is not a mail address (name@domain)."), code="invalid_recipient", params={"address": address},
            ) from None
    return tuple(addresses)


class SimulatorForm(forms.Form):
    client_address = forms.GenericIPAddressField(
        label=_("Client address"), initial=DEFAULT_CLIENT, widget=text_input(),
        help_text=_("The address the client connects from."),
    )
    client_host = forms.CharField(
        label=_("Client host name"), required=False, max_length=253, widget=text_input(),
        validators=[validators.validate_host_name],
        help_text=_("Optional: the name the listener would find for the client (a reverse lookup confirmed by a forward "
                    "lookup). Host list entries written as names match it: the exact name, or .acme.test for any host "
                    "in that domain."),
    )
    local_address = forms.GenericIPAddressField(
        label=_("Local address it connects to"), widget=text_input(),
        help_text=_("The address of this server the client reaches: it chooses the Internet Site."),
    )
    port = forms.IntegerField(
        label=_("Port"), required=False, min_value=1, max_value=65535,
        widget=forms.NumberInput(attrs={"class": "form-control"}),
        help_text=_("Empty: the TCP/IP port, or the SSL port when the client uses it."),
    )
    tls = forms.ChoiceField(
        label=_("TLS"), choices=TLS_CHOICES, initial=NO_TLS, widget=forms.RadioSelect,
    )
    login = forms.CharField(
        label=_("Login (AUTH)"), required=False, max_length=255, widget=text_input(autocomplete="off"),
        help_text=_("Empty: the client does not authenticate."),
    )
    password = forms.CharField(
        label=_("Password"), required=False, strip=False, max_length=255,
        widget=forms.PasswordInput(attrs={"class": "form-control", "autocomplete": "new-password"}),
        help_text=_("Optional. Given, it is checked against the person's Internet password; empty, the simulator "
                    "takes it as right and says so. It is never stored."),
    )
    mail_from = forms.CharField(
        label=_("MAIL FROM"), required=False, max_length=320, initial="sender@example.org", widget=text_input(),
        validators=[validate_email],
    )
    recipients = forms.CharField(
        label=_("Recipients"), required=False, initial="someone@example.net",
        widget=forms.Textarea(attrs={"class": "form-control", "rows": 3}),
        help_text=_("One per line, each sent as RCPT TO."),
    )

    def __init__(self, snap: policy.SettingsSnapshot, *args: Any, **kwargs: Any) -> None:
        self.snap = snap
        super().__init__(*args, **kwargs)
        self.fields["local_address"].initial = snap.listen_addresses[0] if snap.listen_addresses else "127.0.0.1"
        self.fields["port"].widget.attrs["placeholder"] = str(snap.inbound.tcp_port)

    def clean_recipients(self) -> tuple[str, ...]:
        return address_list(self.cleaned_data["recipients"])

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        tls, port = data.get("tls"), data.get("port")
        inbound = self.snap.inbound
        if tls is None:
            return data
        if port is None:
            data["port"] = port = inbound.ssl_port if tls == SSL_PORT else inbound.tcp_port
        values = {"port": port, "tcp": inbound.tcp_port, "ssl": inbound.ssl_port}
        if tls == SSL_PORT and port == inbound.tcp_port:
            self.add_error("tls", forms.ValidationError(_(
                "Port %(port)s is the TCP/IP port, which starts in clear text: choose No TLS or STARTTLS, or the SSL "
                "port %(ssl)s."
            ), code="tls_on_tcp_port", params=values))
        elif tls != SSL_PORT and port == inbound.ssl_port:
            self.add_error("tls", forms.ValidationError(_(
                "Port %(port)s is the SSL port, where TLS starts with the first byte: choose “SSL port”."
            ), code="clear_on_ssl_port", params=values))
        if data.get("recipients") and not data.get("mail_from"):
            self.add_error("mail_from", forms.ValidationError(_("Recipients need a MAIL FROM."), code="recipients_without_sender"))
        return data

    def inputs(self) -> simulator.Inputs:
        data = self.cleaned_data
        return simulator.Inputs(
            client_ip=data["client_address"], local_ip=data["local_address"], port=data["port"],
            client_host=data["client_host"].strip().rstrip(".").lower(),
            starttls=data["tls"] == STARTTLS, login=data["login"].strip(),
            password=data["password"] if data["password"] else None,
            mail_from=data["mail_from"].strip(), recipients=data["recipients"],
        )
