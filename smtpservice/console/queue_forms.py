"""Forms of the relay queue's console pages: the queue filters and the "send a test message" form."""
import email.utils
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

from crispy_forms.helper import FormHelper
from django import forms
from django.utils.translation import gettext_lazy as _

from directory.models import Server
from smtpservice.core import outbound
from smtpservice.models import QueuedRecipient
from smtpservice.store.snapshot import load_snapshot


class QueueFilterForm(forms.Form):
    """Narrow the queue by state, sending server and text (recipient, sender or subject)."""

    state = forms.ChoiceField(
        label=_("State"), required=False, choices=[("", _("All states")), *QueuedRecipient.State.choices],
    )
    server = forms.ModelChoiceField(
        Server.objects.all(), label=_("Server"), required=False, to_field_name="name", empty_label=_("All servers"),
    )
    q = forms.CharField(label=_("Recipient, sender or subject"), required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.widget.attrs["class"] = "form-select" if isinstance(field.widget, forms.Select) else "form-control"


class TestMessageForm(forms.Form):
    """A message queued from a chosen server to an address, to see outbound SMTP work end to end."""

    server = forms.ModelChoiceField(
        Server.objects.all(), label=_("From server"), to_field_name="name",
        help_text=_("The server whose router sends the message, with its SMTP Outbound ports and its routes."),
    )
    recipient = forms.EmailField(label=_("To"), help_text=_("The address to send to."))
    sender = forms.EmailField(
        label=_("From"), required=False,
        help_text=_("The envelope sender, who gets a non-delivery report if the message fails. Empty: a person of a local domain, whose mailbox gets it."),
    )
    subject = forms.CharField(label=_("Subject"), max_length=200, required=False)
    body = forms.CharField(label=_("Text"), required=False, widget=forms.Textarea(attrs={"rows": 4}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = FormHelper(self)
        self.helper.form_tag = False
        self.helper.disable_csrf = True

    def clean(self):
        cleaned = super().clean()
        server = cleaned.get("server")
        if server is not None:
            cleaned["sender"] = cleaned.get("sender") or outbound.default_sender(load_snapshot(server.name))
            cleaned["subject"] = cleaned.get("subject") or _("Test message from %(server)s") % {"server": server.name}
        return cleaned

    def message_bytes(self, user_name):
        """The message as it goes on the wire, CRLF line ends (RFC 5322)."""
        data = self.cleaned_data
        server = data["server"]
        message = EmailMessage()
        message["From"] = data["sender"]
        message["To"] = data["recipient"]
        message["Subject"] = data["subject"]
        message["Date"] = email.utils.formatdate(localtime=True)
        message["Message-ID"] = email.utils.make_msgid(domain=server.host_name)
        message["X-Sent-By"] = f"SMTP console test message ({user_name})"
        message.set_content(data["body"] or str(_("This is a test message sent from the SMTP console.")))
        return message.as_bytes(policy=SMTP_POLICY)
