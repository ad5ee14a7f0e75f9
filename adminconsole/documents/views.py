"""Console pages of the directory documents.

One generic set of views (list, detail, create, edit, delete) serves every document type; a
``DocumentType`` says what differs: its URL prefix, what the list searches and shows, and which
role may change it. Every write goes through ``directory.audit`` so the trail records it.
"""
import functools
import hashlib
import json
import operator
from dataclasses import dataclass

from django import forms as django_forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import ProtectedError, Q
from django.shortcuts import redirect
from django.utils.decorators import method_decorator
from django.utils.text import capfirst
from django.utils.translation import gettext
from django.views.decorators.cache import never_cache
from django.views.generic import DeleteView, DetailView, FormView, ListView, UpdateView
from django.views.generic.detail import SingleObjectMixin

from directory import audit, history, models, tls
from directory.audit import delete_document, save_document
from directory.forms import GenerateCertificateForm, ServerForm, TLSCredentialsForm
from directory.permissions import RoleRequiredMixin
from directory.presenters import (
    BY_MODEL,
    EMPTY,
    PAGE_SIZE,
    Presenter,
    audit_entries_of,
    labelled_warnings,
    with_change_rows,
)
from smtpservice.console import preview
from smtpservice.console.outage import outages_after_site_deleted, server_outage
from smtpservice.console.presenters import listener_report
from smtpservice.store import served


class DocumentViewMixin(RoleRequiredMixin):
    """Views of one document type, given as ``as_view(document_type=...)``."""

    document_type = None

    def get_edit_role(self):
        return self.document_type.edit_role

    def get_queryset(self):
        return self.document_type.model.objects.all()

    def get_context_data(self, **kwargs):
        kwargs.setdefault("document_type", self.document_type)
        return super().get_context_data(**kwargs)


class DocumentListView(DocumentViewMixin, ListView):
    """The “view” of a document type: a searchable, paged table."""

    paginate_by = PAGE_SIZE
    template_name = "directory/document_list.html"

    def search_text(self):
        return self.request.GET.get("q", "").strip()

    def get_queryset(self):
        queryset = super().get_queryset()
        text = self.search_text()
        if text:
            queryset = queryset.filter(
                functools.reduce(operator.or_, (Q(**{f"{name}__icontains": text}) for name in self.document_type.search_fields))
            )
        return queryset

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        presenter = Presenter(self.document_type)
        columns = self.document_type.columns
        context.update(
            q=self.search_text(),
            headers=[presenter.label(name) for name in columns],
            rows=[(document, [presenter.value(document, name) for name in columns]) for document in context["object_list"]],
        )
        return context


class DocumentDetailView(DocumentViewMixin, DetailView):
    """A document read-only, tab by tab, with its warnings and its audit trail."""

    def get_template_names(self):
        return [f"directory/{self.document_type.name}_detail.html", "directory/document_detail.html"]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        presenter = Presenter(self.document_type)
        context.update(
            tabs=presenter.tabs(self.object),
            warnings=labelled_warnings(self.object),
            audit_entries=with_change_rows(audit_entries_of(self.object)),
        )
        return context


class ServerDetailView(DocumentDetailView):
    """Adds the “generate a self-signed certificate” action, and the version the listener serves."""

    def get_context_data(self, **kwargs):
        kwargs.setdefault("generate_form", GenerateCertificateForm())
        context = super().get_context_data(**kwargs)
        versions = served.server_versions(self.object, audit.snapshot(self.object))
        if versions["rollback"] is not None and context["can_edit"]:
            versions["rollback_warnings"] = history.Restore(versions["rollback"]).warning_codes
        context["server_versions"] = versions
        context["outage"] = server_outage(self.object)
        # Reload soon while the listener has not reported the saved revision yet, so the page shows it has.
        context["refresh_seconds"] = 3 if listener_report(self.object).revision_behind else None
        return context


DETAIL_VIEWS = {models.Server: ServerDetailView}


@method_decorator(never_cache, name="dispatch")
class DocumentEditView(DocumentViewMixin, UpdateView):
    """Create (no pk) or edit a document; warnings are shown and must be confirmed with “Save anyway”.

    For the documents a listener reads (Server, Site, Configuration) “Preview” shows what saving does to
    the listeners; a change that a running listener would apply is always shown once before it is saved.
    """

    edit_page = True
    template_name = "directory/document_form.html"

    def get_object(self, queryset=None):
        stored = super().get_object(queryset) if "pk" in self.kwargs else None
        # The form changes the instance as it validates; headings keep the name as saved.
        self.stored_label = str(stored) if stored is not None else ""
        return stored

    def get_form_class(self):
        return self.document_type.form_class

    def get_context_data(self, **kwargs):
        kwargs.setdefault("previewed", self.document_type.model in preview.EFFECTS)
        kwargs.setdefault("stored_label", self.stored_label)
        return super().get_context_data(**kwargs)

    def get_form_kwargs(self):
        kwargs = super().get_form_kwargs()
        if "data" in kwargs and "save_anyway" not in kwargs["data"]:
            # Only “Save anyway” confirms the warnings shown; “Save” checks them again.
            data = kwargs["data"].copy()
            data["confirm_warnings"] = ""
            kwargs["data"] = data
        return kwargs

    def form_valid(self, form):
        review = change_review(self.document_type, form)
        if form.unconfirmed_warnings or self.must_review(review):
            if form.warnings:
                form.ask_confirmation()
            for field in form.fields.values():
                if isinstance(field.widget, django_forms.PasswordInput):
                    # Keep the password just typed for “Save anyway”, or it would be lost silently.
                    field.widget.render_value = True
            return self.render_to_response(self.get_context_data(form=form, warnings=form_warnings(form), review=review))
        self.object = save_document(form, self.request.user)
        messages.success(
            self.request,
            gettext("%(type)s “%(name)s” was saved.") % {"type": capfirst(self.document_type.verbose_name), "name": self.object},
        )
        return redirect(self.object)

    def must_review(self, review):
        """“Preview” asks for the review; a change a running listener would apply needs it once before saving."""
        if review is None:
            return False
        if "preview" in self.request.POST:
            return True
        return review.must_confirm and self.request.POST.get("confirm_preview") != review.digest

    def form_invalid(self, form):
        messages.error(self.request, gettext("Please correct the errors below."))
        return super().form_invalid(form)


def form_warnings(form):
    """A bound form's warnings as ``(field label, message)``."""
    return [(form.fields[field].label if field in form.fields else "", message) for field, _code, message in form.warnings]


def change_rows(document_type, changes):
    """``(label, old, new)`` for ``{field: [old, new]}``; a secret only says it changed, never its value."""
    presenter = Presenter(document_type)
    rows = []
    for name, (old, new) in changes.items():
        if name in document_type.model.secret_fields:
            rows.append((presenter.label(name), EMPTY, gettext("changed")))
        else:
            rows.append((presenter.label(name), presenter.display(name, old), presenter.display(name, new)))
    return rows


@dataclass
class ChangeReview:
    """What saving a valid form changes: its fields, old and new, and what running listeners do about it."""

    rows: list
    preview: object
    digest: str
    creating: bool = False

    @property
    def must_confirm(self):
        return self.preview is not None and (
            (bool(self.rows) and self.preview.affects_running_listener) or self.preview.causes_outage
        )


def change_review(document_type, form):
    """The review of a valid form of a document type a listener reads (Server, Site, Configuration), else None."""
    instance = form.instance
    if type(instance) not in preview.EFFECTS:
        return None
    stored = None if instance._state.adding else type(instance).objects.get(pk=instance.pk)
    effects = preview.preview(instance, stored)
    changes = audit.diff(audit.snapshot(stored), audit.snapshot(instance)) if stored is not None else {}
    digest = hashlib.sha256(json.dumps(audit.snapshot(instance), sort_keys=True, default=str).encode()).hexdigest()[:16]
    return ChangeReview(change_rows(document_type, changes), effects, digest, creating=stored is None)


class DocumentDeleteView(DocumentViewMixin, DeleteView):
    edit_page = True
    template_name = "directory/document_confirm_delete.html"

    def get_context_data(self, **kwargs):
        if isinstance(self.object, models.InternetSite):
            kwargs.setdefault("outages", outages_after_site_deleted(self.object))
        return super().get_context_data(**kwargs)

    def form_valid(self, form):
        name = str(self.object)
        try:
            delete_document(self.object, self.request.user)
        except ProtectedError as error:
            used_by = ", ".join(sorted(f"{capfirst(used._meta.verbose_name)} “{used}”" for used in error.protected_objects))
            messages.error(self.request, gettext("“%(name)s” cannot be deleted: %(used_by)s still use it.") % {"name": name, "used_by": used_by})
            return redirect(self.object)
        messages.success(
            self.request,
            gettext("%(type)s “%(name)s” was deleted.") % {"type": capfirst(self.document_type.verbose_name), "name": name},
        )
        return redirect(self.document_type.url("list"))


def form_data(form):
    """The data an unchanged submission of ``form`` would post, for saving it with one field changed."""
    return {bound.name: "" if bound.value() is None else bound.value() for bound in form}


def save_valid(form, user):
    if not form.is_valid():
        raise ValidationError([f"{name}: {error}" for name, errors in form.errors.items() for error in errors])
    return save_document(form, user)


def unique_credentials_name(base):
    name, number = base, 1
    while models.TLSCredentials.objects.filter(name=name).exists():
        number += 1
        name = f"{base} {number}"
    return name


@transaction.atomic
def install_self_signed_certificate(server, days, user):
    """Create TLS credentials for the server's host name and select them on the server, both audited."""
    certificate_pem, key_pem = tls.generate_self_signed(server.host_name, days)
    credentials = save_valid(
        TLSCredentialsForm({
            "name": unique_credentials_name(f"{server.host_name} (self-signed)"),
            "certificate_pem": certificate_pem,
            "private_key_pem": key_pem,
        }),
        user,
    )
    data = form_data(ServerForm(instance=server))
    data["tls_credentials"] = credentials.name
    save_valid(ServerForm(data, instance=server), user)
    return credentials


class GenerateCertificateView(DocumentViewMixin, SingleObjectMixin, FormView):
    """Server detail action: “Generate a self-signed certificate for this server”."""

    document_type = BY_MODEL[models.Server]
    edit_page = True
    form_class = GenerateCertificateForm
    template_name = "directory/server_generate_certificate.html"

    def get_context_data(self, **kwargs):
        self.object = self.get_object()
        return super().get_context_data(**kwargs)

    def form_valid(self, form):
        server = self.get_object()
        try:
            credentials = install_self_signed_certificate(server, form.cleaned_data["days"], self.request.user)
        except ValidationError as error:
            for message in error.messages:
                messages.error(self.request, message)
            return self.form_invalid(form)
        messages.success(
            self.request,
            gettext("The self-signed certificate “%(name)s” was created and selected on this server.") % {"name": credentials},
        )
        return redirect(server)
