"""Console pages of the relay queue: the queue, a message with its attempt log, the actions on it
(retry now, hold, release, delete), and the "send a test message" form.

Reader sees, Editor acts. Queue actions are not directory changes, so they leave no audit entry:
they are logged with ``smtpservice.core.outbound`` and in the message's attempt log.
"""
from django.contrib import messages
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.translation import gettext, ngettext_lazy
from django.utils.translation import gettext_lazy as _
from django.views.generic import DetailView, FormView, ListView, TemplateView

from directory import roles
from directory.models import Server
from directory.permissions import RoleRequiredMixin
from smtpservice.console.queue_forms import QueueFilterForm, TestMessageForm
from smtpservice.core import outbound, policy
from smtpservice.models import QueuedRecipient, ReceivedMessage
from smtpservice.store import storage
from smtpservice.store.queue import ACTIONS, apply_action, store

PAGE_SIZE = 50
REFRESH_SECONDS = 3
"""The message page reloads itself this often while a recipient is still to be sent."""

ACTION_TEXTS = {
    # action: (button, what it does, what was done)
    "retry": (
        _("Retry now"),
        _("Queued and deferred recipients are sent at once, and recipients the settings held are looked at again."),
        ngettext_lazy("%(count)s recipient is due now.", "%(count)s recipients are due now.", "count"),
    ),
    "hold": (
        _("Hold"), _("Queued and deferred recipients are kept back until released."),
        ngettext_lazy("%(count)s recipient is held.", "%(count)s recipients are held.", "count"),
    ),
    "release": (
        _("Release"), _("Held recipients are queued again and sent at once."),
        ngettext_lazy("%(count)s recipient is released.", "%(count)s recipients are released.", "count"),
    ),
    "delete": (
        _("Delete from the queue"),
        _("The recipients not yet delivered will never be sent. Recipients being sent right now are not affected; "
          "the attempt log stays."),
        ngettext_lazy("%(count)s recipient was deleted from the queue.", "%(count)s recipients were deleted from the queue.", "count"),
    ),
}


def blocked_servers():
    """``[(server, why)]`` for servers whose settings allow no outbound SMTP, so the queue says why mail is held."""
    found = []
    for server in Server.objects.all():
        config = server.configuration()
        ports = policy.OutboundPorts(
            tcp_port=server.smtp_outbound_tcp_port, tcp_status=server.smtp_outbound_tcp_status,
            ssl_port=server.smtp_outbound_ssl_port, ssl_status=server.smtp_outbound_ssl_status,
        )
        if config is None:
            source, outside = "", True
        else:
            source = gettext("Configuration Settings of %(server)s") % {"server": server.name} if config.server_id else gettext(
                "default Configuration Settings (*)"
            )
            outside = config.smtp_outside_local_domain
        reason = outbound.outbound_blocked(ports, outside, source)
        if reason:
            found.append((server, reason))
    return found


def with_result_labels(attempts):
    """Give each attempt ``results``: (recipient, translated state, reply) from its stored recipients."""
    labels = dict(QueuedRecipient.State.choices)
    attempts = list(attempts)
    for attempt in attempts:
        attempt.results = [(entry["recipient"], labels.get(entry["result"], entry["result"]), entry["reply"])
                           for entry in attempt.recipients]
    return attempts


def applies(action, recipients):
    """Whether an action would change any of these recipients (its button is shown only then)."""
    state, held_by = QueuedRecipient.State, QueuedRecipient.HeldBy
    waiting = any(
        row.state in (state.QUEUED, state.DEFERRED) or (row.state, row.held_by) == (state.HELD, held_by.ROUTER)
        for row in recipients
    )
    return {
        "retry": waiting, "hold": waiting, "release": any(row.state == state.HELD for row in recipients),
        "delete": any(row.state != state.IN_FLIGHT for row in recipients),
    }[action]


class QueueViewMixin(RoleRequiredMixin):
    edit_role = roles.EDITOR


class QueueListView(QueueViewMixin, ListView):
    """The relay queue, one row per recipient, newest message first."""

    template_name = "queue/queue_list.html"
    paginate_by = PAGE_SIZE
    context_object_name = "recipients"

    def get_queryset(self):
        self.filters = QueueFilterForm(self.request.GET or None)
        rows = QueuedRecipient.objects.select_related("message__server").order_by("-message__received_at", "-message_id", "pk")
        if self.filters.is_valid():
            data = self.filters.cleaned_data
            if data["state"]:
                rows = rows.filter(state=data["state"])
            if data["server"]:
                rows = rows.filter(message__server=data["server"])
            if data["q"]:
                text = data["q"].strip()
                rows = rows.filter(
                    Q(recipient__icontains=text) | Q(message__mail_from__icontains=text) | Q(message__subject__icontains=text)
                )
        return rows

    def get_context_data(self, **kwargs):
        filtered = any(self.request.GET.get(name) for name in self.filters.fields)
        kwargs.update(filters=self.filters, blocked_servers=blocked_servers(), filtered=filtered)
        return super().get_context_data(**kwargs)


class MessageDetailView(QueueViewMixin, DetailView):
    """A message: envelope, each recipient's state, and every attempt with its transcript."""

    model = ReceivedMessage
    template_name = "queue/message_detail.html"
    context_object_name = "message"

    def get_queryset(self):
        return ReceivedMessage.objects.select_related("server").defer("data")

    def get_context_data(self, **kwargs):
        recipients = list(self.object.queued_recipients.order_by("pk"))
        kwargs.update(
            recipients=recipients,
            local_deliveries=self.object.mailbox_entries.select_related("person").order_by("pk"),
            attempts=with_result_labels(self.object.attempts.order_by("started_at", "pk")),
            in_progress=any(row.is_pending for row in recipients),
            refresh_seconds=REFRESH_SECONDS,
            actions=[(action, ACTION_TEXTS[action][0]) for action in ACTIONS if applies(action, recipients)],
        )
        return super().get_context_data(**kwargs)


class MessageActionView(QueueViewMixin, TemplateView):
    """GET asks for confirmation; POST applies the action to the message's queued recipients."""

    action = None
    edit_page = True
    template_name = "queue/message_action.html"

    def get_message(self):
        return get_object_or_404(ReceivedMessage.objects.defer("data"), pk=self.kwargs["pk"])

    def get_context_data(self, **kwargs):
        label, explanation, _done = ACTION_TEXTS[self.action]
        kwargs.update(message=self.get_message(), action=self.action, label=label, explanation=explanation)
        return super().get_context_data(**kwargs)

    def post(self, request, *args, **kwargs):
        message = self.get_message()
        count = apply_action(message, self.action, request.user.get_username())
        messages.success(request, ACTION_TEXTS[self.action][2] % {"count": count})
        if self.action == "delete":
            return redirect("queue:list")
        return redirect("queue:message-detail", message.pk)


class TestMessageView(QueueViewMixin, FormView):
    """Queue a test message from a chosen server, then follow it on the message page."""

    edit_page = True
    form_class = TestMessageForm
    template_name = "queue/send_test.html"

    def get_initial(self):
        return {"server": self.request.GET.get("server") or Server.objects.values_list("name", flat=True).first()}

    def form_valid(self, form):
        server = form.cleaned_data["server"]
        snap, server_id = storage.load(server.name)
        message_pk, unknown = store(
            snap, server_id, form.cleaned_data["sender"], [form.cleaned_data["recipient"]],
            form.message_bytes(self.request.user.get_username()), ReceivedMessage.Origin.CONSOLE,
            authenticated_as=self.request.user.get_username(),
        )
        if unknown:
            form.add_error("recipient", gettext(
                "%(address)s is in a Local Internet domain of %(server)s, but no person has this Internet address."
            ) % {"address": unknown[0], "server": server.name})
            return self.form_invalid(form)
        messages.success(self.request, gettext("The test message is queued at %(server)s.") % {"server": server.name})
        return redirect(reverse("queue:message-detail", args=[message_pk]))
