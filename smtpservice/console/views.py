"""Console pages of the SMTP service: received mail (per server and per person's mailbox) and the session log.

Every page is Reader-level and read-only: message bodies are mail data, shown to the same console
users who read the directory (docs/design/console.md). The listener's status and the effective settings are
panels of the dashboard and the Server document (``smtpservice.templatetags.smtp_console``).
"""
import email
import email.policy
import ipaddress
from email.errors import MessageError
from typing import Any

from django import forms
from django.db.models import Count, Max, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.functional import Promise, cached_property
from django.utils.http import content_disposition_header
from django.utils.translation import gettext_lazy as _
from django.views.generic import DetailView, ListView, View
from django.views.generic.detail import SingleObjectMixin

from directory.models import Person, Server
from directory.permissions import RoleRequiredMixin
from directory.presenters import PAGE_SIZE
from smtpservice.console.presenters import PORT_KINDS
from smtpservice.models import MailboxEntry, ReceivedMessage, SessionLog

MAIL, SESSIONS = "mail", "sessions"
REPLY_CLASSES = ("2", "3", "4", "5")


class ConsolePageMixin(RoleRequiredMixin):
    """Reader-level, read-only pages; ``nav_section`` lights their entry in the navigation bar."""

    nav_section = MAIL

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("nav_section", self.nav_section)
        return super().get_context_data(**kwargs)


class FilteredListView(ConsolePageMixin, ListView):
    """A paged list narrowed by a GET filter form: ``filter_form_class`` and ``filter(queryset, wanted)``."""

    paginate_by = PAGE_SIZE
    filter_form_class = None

    def base_queryset(self) -> QuerySet[Any]:
        raise NotImplementedError

    def filter(self, queryset: QuerySet[Any], wanted: dict[str, Any]) -> QuerySet[Any]:
        raise NotImplementedError

    def get_queryset(self) -> QuerySet[Any]:
        self.filter_form = self.filter_form_class(self.request.GET)
        queryset = self.base_queryset()
        if not self.filter_form.is_valid():
            return queryset.none()
        return self.filter(queryset, self.filter_form.cleaned_data)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("filter_form", self.filter_form)
        return super().get_context_data(**kwargs)


def select_field(choices: list[tuple[str, str | Promise]], **kwargs: Any) -> forms.ChoiceField:
    return forms.ChoiceField(choices=choices, required=False, widget=forms.Select(attrs={"class": "form-select"}), **kwargs)


def search_field(**kwargs: Any) -> forms.CharField:
    return forms.CharField(required=False, widget=forms.TextInput(attrs={"class": "form-control", "type": "search"}), **kwargs)


def server_field() -> forms.ModelChoiceField:
    return forms.ModelChoiceField(
        Server.objects.all(), to_field_name="name", required=False, label=_("Server"), empty_label=_("All servers"),
        widget=forms.Select(attrs={"class": "form-select"}),
    )


# --- Received messages --------------------------------------------------------------------------


class MessageFilterForm(forms.Form):
    server = server_field()
    q = search_field(label=_("Search"), help_text=_("Subject, MAIL FROM, recipient, Message-ID or client address"))


def message_search(text: str) -> Q:
    return (
        Q(subject__icontains=text) | Q(mail_from__icontains=text) | Q(recipients__icontains=text)
        | Q(message_id__icontains=text) | Q(client_address__startswith=text)
    )


class ReceivedMessageListView(FilteredListView):
    """Every message the listeners accepted, newest first, by server and text."""

    template_name = "smtpservice/message_list.html"
    filter_form_class = MessageFilterForm

    def base_queryset(self) -> QuerySet[ReceivedMessage]:
        return ReceivedMessage.objects.select_related("server").defer("data")

    def filter(self, queryset: QuerySet[ReceivedMessage], wanted: dict[str, Any]) -> QuerySet[ReceivedMessage]:
        if wanted["server"]:
            queryset = queryset.filter(server=wanted["server"])
        if wanted["q"]:
            queryset = queryset.filter(message_search(wanted["q"]))
        return queryset


def split_message(data: bytes) -> tuple[str, str | None]:
    """``(headers as text, plain-text body or None)`` of a stored message, for reading it in the console."""
    end = min((i for i in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if i >= 0), default=len(data))
    headers = data[:end].decode("utf-8", "replace")
    try:
        part = email.message_from_bytes(data, policy=email.policy.default).get_body(preferencelist=("plain",))
        body = part.get_content() if part is not None else None
    except (MessageError, LookupError, UnicodeError, ValueError, TypeError):
        body = None
    return headers, body


class MessageContextMixin:
    """What the message page shows of a message: headers, text, local deliveries, the session it came in."""

    def message_context(self, message: ReceivedMessage) -> dict[str, Any]:
        data = bytes(message.data)
        headers, body = split_message(data)
        return {
            "message": message,
            "headers": headers,
            "body": body,
            "deliveries": message.mailbox_entries.select_related("person"),
            "session": SessionLog.objects.filter(server=message.server_id, session_id=message.session_id).first()
            if message.session_id else None,
        }


class ReceivedMessageDetailView(MessageContextMixin, ConsolePageMixin, DetailView):
    template_name = "smtpservice/message_detail.html"
    queryset = ReceivedMessage.objects.select_related("server")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.update(self.message_context(self.object))
        return super().get_context_data(**kwargs)


class MessageDownloadView(ConsolePageMixin, SingleObjectMixin, View):
    """The message exactly as stored, as a .eml file (RFC 5322 message, media type of RFC 2046 s 5.2.1)."""

    queryset = ReceivedMessage.objects.only("pk", "data")

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        message = self.get_object()
        response = HttpResponse(bytes(message.data), content_type="message/rfc822")
        response["Content-Disposition"] = content_disposition_header(True, f"message-{message.pk}.eml")
        return response


# --- Mailboxes ----------------------------------------------------------------------------------


class SearchForm(forms.Form):
    q = search_field(label=_("Search"))


class MailboxListView(FilteredListView):
    """People and how much mail their mailbox holds: the way to each mailbox."""

    template_name = "smtpservice/mailbox_list.html"
    filter_form_class = SearchForm

    def base_queryset(self) -> QuerySet[Person]:
        # Counted per person shown by a subquery, not by grouping every person's mail: a page of 25 people
        # out of 10,000 then reads only their 25 mailboxes, and the page count needs no grouping at all.
        mail = MailboxEntry.objects.filter(person=OuterRef("pk")).order_by().values("person")
        return Person.objects.annotate(
            message_count=Coalesce(Subquery(mail.annotate(count=Count("pk")).values("count")), 0),
            last_delivery=Subquery(mail.annotate(last=Max("delivered_at")).values("last")),
        ).order_by("full_name")

    def filter(self, queryset: QuerySet[Person], wanted: dict[str, Any]) -> QuerySet[Person]:
        if wanted["q"]:
            queryset = queryset.filter(Q(full_name__icontains=wanted["q"]) | Q(internet_address__icontains=wanted["q"]))
        return queryset


class MailboxView(FilteredListView):
    """One person's mailbox: from, subject, date and size of each message delivered to them."""

    template_name = "smtpservice/mailbox.html"
    filter_form_class = SearchForm

    @cached_property
    def person(self) -> Person:
        """Looked up after the role check, so a user without a role learns nothing about people."""
        return get_object_or_404(Person, pk=self.kwargs["pk"])

    def base_queryset(self) -> QuerySet[MailboxEntry]:
        return self.person.mailbox.select_related("message").defer("message__data")

    def filter(self, queryset: QuerySet[MailboxEntry], wanted: dict[str, Any]) -> QuerySet[MailboxEntry]:
        if wanted["q"]:
            text = wanted["q"]
            queryset = queryset.filter(Q(message__subject__icontains=text) | Q(message__mail_from__icontains=text))
        return queryset

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("person", self.person)
        return super().get_context_data(**kwargs)


class MailboxMessageView(MessageContextMixin, ConsolePageMixin, DetailView):
    """A message as delivered to one person's mailbox."""

    template_name = "smtpservice/message_detail.html"
    queryset = MailboxEntry.objects.select_related("person", "message__server")
    context_object_name = "entry"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.update(self.message_context(self.object.message), person=self.object.person)
        return super().get_context_data(**kwargs)


# --- Session log --------------------------------------------------------------------------------


class SessionFilterForm(forms.Form):
    server = server_field()
    client = search_field(label=_("Client address"), help_text=_("A whole address, or its beginning"))
    port_kind = select_field([("", _("Any port")), *PORT_KINDS.items()], label=_("Port"))
    tls = select_field([("", _("With or without TLS")), ("yes", _("TLS")), ("no", _("No TLS"))], label=_("TLS"))
    user = search_field(label=_("Authenticated as"))
    reply = select_field([("", _("Any reply"))] + [(digit, f"{digit}xx") for digit in REPLY_CLASSES], label=_("Reply code"))
    date = forms.DateField(label=_("Date"), required=False, widget=forms.DateInput(attrs={"class": "form-control", "type": "date"}))


def client_filter(text: str) -> Q:
    """A whole address matches exactly; anything else matches the addresses it begins."""
    try:
        return Q(client_address=str(ipaddress.ip_address(text)))
    except ValueError:
        return Q(client_address__startswith=text)


def reply_class_filter(digit: str) -> Q:
    """Sessions that got a reply of this class: the last one, or any decision recorded in the log.

    Decisions are JSON objects; both SQLite and PostgreSQL write them with ``"reply": "554 ..."``.
    """
    return Q(last_reply__startswith=digit) | Q(events__icontains=f'"reply": "{digit}')


class SessionLogListView(FilteredListView):
    """SMTP sessions, newest first, filtered by who connected where and how they were answered."""

    template_name = "smtpservice/session_list.html"
    filter_form_class = SessionFilterForm
    nav_section = SESSIONS

    def base_queryset(self) -> QuerySet[SessionLog]:
        return SessionLog.objects.select_related("server").defer("events")

    def filter(self, queryset: QuerySet[SessionLog], wanted: dict[str, Any]) -> QuerySet[SessionLog]:
        if wanted["server"]:
            queryset = queryset.filter(server=wanted["server"])
        if wanted["client"]:
            queryset = queryset.filter(client_filter(wanted["client"].strip()))
        if wanted["port_kind"]:
            queryset = queryset.filter(port_kind=wanted["port_kind"])
        if wanted["tls"]:
            queryset = queryset.filter(tls=wanted["tls"] == "yes")
        if wanted["user"]:
            queryset = queryset.filter(authenticated_as__icontains=wanted["user"])
        if wanted["reply"]:
            queryset = queryset.filter(reply_class_filter(wanted["reply"]))
        if wanted["date"]:
            queryset = queryset.filter(started_at__date=wanted["date"])
        return queryset


class SessionLogDetailView(ConsolePageMixin, DetailView):
    """One session: each decision in order, with the rule, why, and the reply sent."""

    template_name = "smtpservice/session_detail.html"
    queryset = SessionLog.objects.select_related("server")
    context_object_name = "session"
    nav_section = SESSIONS

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("port_kind", PORT_KINDS.get(self.object.port_kind, self.object.port_kind))
        kwargs.setdefault("messages_received", ReceivedMessage.objects.filter(
            server=self.object.server_id, session_id=self.object.session_id,
        ).defer("data") if self.object.session_id else [])
        return super().get_context_data(**kwargs)

