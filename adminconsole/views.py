"""Console pages that span the directory: dashboard, audit trail, and console users with their roles."""
from dataclasses import dataclass

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import Group as AuthGroup
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.text import capfirst
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.generic import FormView, ListView, TemplateView
from django.views.i18n import set_language as django_set_language

from adminconsole.accounts import USER_DOCUMENT_TYPE, audit_user
from directory import roles
from directory.models import AuditEntry, Server, TLSCredentials
from directory.permissions import RoleRequiredMixin
from directory.presenters import BY_NAME, DOCUMENT_TYPES, PAGE_SIZE, labelled_warnings, with_change_rows
from smtpservice.console import charts
from smtpservice.console import presenters as console
from smtpservice.console.facts import directory_fact
from smtpservice.console.outage import Outage, server_outage
from smtpservice.models import MailboxEntry
from smtpservice.store import traffic
from smtpservice.store.snapshot import current_revision
from smtpservice.store.traffic import ServerTraffic

EXPIRY_WARNING_DAYS = 30

# The language switcher must work on the login page too.
set_language = login_not_required(django_set_language)


@dataclass(frozen=True)
class ServerSummary:
    """One server at a glance: listener, ports, outage, traffic and queue numbers, charts, warnings."""

    server: Server
    report: console.ListenerReport
    outage: Outage | None
    traffic: ServerTraffic
    charts: tuple
    warnings: list

    @property
    def up(self) -> bool:
        return self.report.level in (console.OK, console.NOTICE) and self.report.status is not None

    @property
    def ports_flag(self) -> str:
        return gettext("Outage") if self.outage else self.report.flag

    @property
    def ports_level(self) -> str:
        return console.PROBLEM if self.outage else self.report.flag_level


REFRESH_SECONDS = 30
PICKUP_REFRESH_SECONDS = 3
"""While a listener has not yet reported the directory's revision, the page reloads soon to show it has."""


def server_summaries(servers) -> list:
    numbers = traffic.traffic(server.pk for server in servers)
    current = current_revision()
    return [
        ServerSummary(
            server, console.listener_report(server, current),
            directory_fact(current, ("outage", server.pk), lambda server=server: server_outage(server)),
            numbers[server.pk], charts.charts(numbers[server.pk]),
            directory_fact(current, ("warnings", server.pk), lambda server=server: labelled_warnings(server)),
        )
        for server in servers
    ]


def recent_changes(count: int = 10) -> list:
    """The last changes, one line each: who, what, which document (the full diff is on the audit page)."""
    entries = list(AuditEntry.objects.only("timestamp", "actor", "action", "document_type", "object_repr")[:count])
    for entry in entries:
        document_type = BY_NAME.get(entry.document_type)
        entry.document_type_label = capfirst(document_type.verbose_name) if document_type else gettext("Console user")
    return entries


class DashboardView(RoleRequiredMixin, TemplateView):
    """What an administrator checks first: each server's state and traffic, warnings, expiring certificates."""

    template_name = "adminconsole/dashboard.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        summaries = server_summaries(list(Server.objects.select_related("tls_credentials").order_by("name")))
        behind = any(summary.report.revision_behind for summary in summaries)
        context.update(
            counts=[(document_type, document_type.model.objects.count()) for document_type in DOCUMENT_TYPES],
            servers=summaries,
            can_restore=roles.has_role(self.request.user, roles.EDITOR),
            refresh_seconds=PICKUP_REFRESH_SECONDS if behind else REFRESH_SECONDS,
            expiring=TLSCredentials.objects.filter(
                not_after__lt=timezone.now() + timezone.timedelta(days=EXPIRY_WARNING_DAYS)
            ).order_by("not_after"),
            expiry_warning_days=EXPIRY_WARNING_DAYS,
            recent=recent_changes(),
            postmaster_waiting=MailboxEntry.objects.filter(person__isnull=True).count(),
        )
        return context


class AuditFilterForm(forms.Form):
    document_type = forms.ChoiceField(label=_("Document type"), required=False, widget=forms.Select(attrs={"class": "form-select"}))
    actor = forms.ChoiceField(label=_("Who"), required=False, widget=forms.Select(attrs={"class": "form-select"}))
    q = forms.CharField(label=_("Search"), required=False, widget=forms.TextInput(attrs={"class": "form-control", "type": "search"}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["document_type"].choices = (
            [("", _("All document types"))]
            + [(document_type.name, capfirst(document_type.verbose_name_plural)) for document_type in DOCUMENT_TYPES]
            + [(USER_DOCUMENT_TYPE, _("Console users"))]
        )
        actors = AuditEntry.objects.order_by("actor").values_list("actor", flat=True).distinct()
        self.fields["actor"].choices = [("", _("Everyone"))] + [(actor, actor) for actor in actors]


class AuditListView(RoleRequiredMixin, ListView):
    """The whole audit trail, filtered by document type, author and text."""

    template_name = "adminconsole/audit_list.html"
    paginate_by = PAGE_SIZE

    def get_queryset(self):
        self.filter_form = AuditFilterForm(self.request.GET)
        queryset = AuditEntry.objects.select_related("user")
        if not self.filter_form.is_valid():
            return queryset.none()
        wanted = self.filter_form.cleaned_data
        if wanted["document_type"]:
            queryset = queryset.filter(document_type=wanted["document_type"])
        if wanted["actor"]:
            queryset = queryset.filter(actor=wanted["actor"])
        if wanted["q"]:
            text = wanted["q"]
            queryset = queryset.filter(Q(object_repr__icontains=text) | Q(actor__icontains=text) | Q(changes__icontains=text))
        return queryset

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["filter_form"] = self.filter_form
        context["entries"] = with_change_rows(context["object_list"])
        return context


ROLE_CHOICES = [("", _("No access"))] + [(role, roles.LABELS[role]) for role in roles.ORDER]


class RoleForm(forms.Form):
    role = forms.ChoiceField(label=_("Role"), choices=ROLE_CHOICES, required=False, widget=forms.Select(attrs={"class": "form-select form-select-sm"}))


class ConsoleUserCreationForm(UserCreationForm):
    role = forms.ChoiceField(label=_("Role"), choices=ROLE_CHOICES, required=False, initial=roles.READER)


def role_label(role):
    return roles.LABELS[role] if role else gettext("No access")


@transaction.atomic
def assign_role(user, role, by):
    """Give ``user`` exactly one console role (or none) and record it in the audit trail like a document change."""
    before = roles.role_of(user)
    user.groups.remove(*AuthGroup.objects.filter(name__in=roles.ORDER))
    if role:
        user.groups.add(AuthGroup.objects.get_or_create(name=role)[0])
    user.__dict__.pop("_role_names", None)
    if before != role:
        audit_user(by, user, {"role": [before, role or None]})


class ManagerOnlyMixin(RoleRequiredMixin):
    read_role = roles.MANAGER
    edit_role = roles.MANAGER


class UserListView(ManagerOnlyMixin, ListView):
    """Console users and their roles; a Manager changes a role in place."""

    template_name = "adminconsole/user_list.html"
    paginate_by = PAGE_SIZE

    def get_queryset(self):
        return User.objects.prefetch_related("groups").order_by("username")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        rows = []
        for user in context["object_list"]:
            role = roles.role_of(user)
            rows.append({
                "user": user,
                "role": role_label(role),
                "form": None if user.is_superuser or user == self.request.user else RoleForm(initial={"role": role or ""}, prefix=f"user-{user.pk}"),
            })
        context["rows"] = rows
        return context


class UserRoleView(ManagerOnlyMixin, FormView):
    """Set one user's role. A Manager cannot change their own role nor a superuser's, so the console keeps a Manager."""

    form_class = RoleForm
    template_name = "adminconsole/user_role_form.html"
    edit_page = True

    @cached_property
    def target(self):
        """Looked up only after the role check, so a non-Manager learns nothing about user ids."""
        return get_object_or_404(User, pk=self.kwargs["pk"])

    def get_prefix(self):
        return f"user-{self.target.pk}"

    def get_initial(self):
        return {"role": roles.role_of(self.target) or ""}

    def get_context_data(self, **kwargs):
        kwargs.setdefault("target", self.target)
        return super().get_context_data(**kwargs)

    def form_valid(self, form):
        if self.target.is_superuser or self.target == self.request.user:
            messages.error(self.request, gettext("The role of %(user)s cannot be changed here.") % {"user": self.target})
            return redirect("user-list")
        role = form.cleaned_data["role"]
        assign_role(self.target, role, self.request.user)
        messages.success(self.request, gettext("%(user)s is now: %(role)s.") % {"user": self.target, "role": role_label(role)})
        return redirect("user-list")


class UserCreateView(ManagerOnlyMixin, FormView):
    """A new console user with a password and a role."""

    form_class = ConsoleUserCreationForm
    template_name = "adminconsole/user_form.html"
    edit_page = True

    def form_valid(self, form):
        with transaction.atomic():
            user = form.save()
            assign_role(user, form.cleaned_data["role"], self.request.user)
        messages.success(self.request, gettext("The console user %(user)s was created.") % {"user": user})
        return redirect(reverse("user-list"))

    def form_invalid(self, form):
        messages.error(self.request, gettext("Please correct the errors below."))
        return super().form_invalid(form)
