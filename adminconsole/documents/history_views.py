"""Console pages of document history: the versions of a document, a comparison of any two, a restore,
and the deleted documents. A Reader looks; a restore needs the document type's edit role."""
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.utils.decorators import method_decorator
from django.utils.functional import cached_property
from django.utils.text import capfirst
from django.utils.translation import gettext, pgettext
from django.views.decorators.cache import never_cache
from django.views.generic import ListView, TemplateView

from adminconsole.documents.views import DocumentViewMixin, change_review, form_warnings
from directory import history, roles
from directory.permissions import RoleRequiredMixin
from directory.presenters import BY_NAME, EMPTY, PAGE_SIZE, SECRET_STATES, STORED_STATES, Presenter


def secret_state(name, value):
    shown, missing = SECRET_STATES.get(name, STORED_STATES)
    return shown if value else missing


def stored_value(model, name, value):
    """A version's JSON value as the field holds it (dates come back as dates)."""
    field = next((field for field in model._meta.concrete_fields if field.name == name), None)
    if value is not None and field is not None and field.get_internal_type() == "DateTimeField":
        return field.to_python(value)
    return value


def comparison_rows(document_type, comparison):
    """The rows of a side-by-side comparison; a secret shows only whether it is stored and whether it changed."""
    presenter = Presenter(document_type)
    model = document_type.model
    rows = []
    for name, first, second, changed in comparison:
        secret = name in model.secret_fields
        if secret:
            first_text, second_text = secret_state(name, first), secret_state(name, second)
        else:
            first_text = presenter.display(name, stored_value(model, name, first))
            second_text = presenter.display(name, stored_value(model, name, second))
        rows.append({
            "name": name, "label": presenter.label(name), "first": first_text, "second": second_text,
            "changed": changed, "secret": secret,
        })
    return rows


class VersionsMixin(DocumentViewMixin):
    """Pages about the versions of one document, found by type and id: it may have been deleted."""

    @cached_property
    def document(self):
        return self.document_type.model.objects.filter(pk=self.kwargs["pk"]).first()

    @cached_property
    def versions(self):
        versions = list(history.versions_of(self.document_type.name, self.kwargs["pk"]))
        if not versions and self.document is None:
            raise Http404(gettext("No such document, and no saved version of it."))
        return versions

    def version(self, number):
        found = next((version for version in self.versions if version.number == number), None)
        if found is None:
            raise Http404(gettext("No version %(number)s of this document.") % {"number": number})
        return found

    @property
    def label(self):
        if self.document is not None:
            return str(self.document)
        latest = self.versions[0]
        return latest.audit_entry.object_repr if latest.audit_entry_id else f"#{self.kwargs['pk']}"

    def get_context_data(self, **kwargs):
        label = self.label
        # French elides “de” before a vowel (« Historique d'Acme SMTP »): that form has its own context.
        vowel = label[:1].lower() in ELIDING
        history_title = pgettext("before a vowel", "History of %(name)s") if vowel else gettext("History of %(name)s")
        kwargs.update(
            document=self.document, document_label=label, versions=self.versions, pk=self.kwargs["pk"],
            history_title=history_title % {"name": label},
        )
        if "number" in self.kwargs:
            restore_title = (
                pgettext("before a vowel", "Restore version %(number)s of %(name)s") if vowel
                else gettext("Restore version %(number)s of %(name)s")
            )
            kwargs["restore_title"] = restore_title % {"number": self.kwargs["number"], "name": label}
        return super().get_context_data(**kwargs)


ELIDING = set("aeiouyhàâäéèêëîïôöùûü")
"""First letters before which French writes d' rather than de."""


class HistoryView(VersionsMixin, TemplateView):
    """Every saved version of a document: number, when, who, what; pick two to compare, or one to restore."""

    template_name = "directory/document_history.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        versions = self.versions
        context.update(
            latest=versions[0] if versions else None,
            default_first=versions[1].number if len(versions) > 1 else (versions[0].number if versions else None),
            default_second=versions[0].number if versions else None,
        )
        return context


class CompareView(VersionsMixin, TemplateView):
    """Two versions side by side, field by field, the fields that differ highlighted."""

    template_name = "directory/document_compare.html"

    def number(self, key, default):
        try:
            return int(self.request.GET.get(key, default))
        except (TypeError, ValueError):
            raise Http404(gettext("Choose two versions to compare.")) from None

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        if not self.versions:
            raise Http404(gettext("This document has no saved version yet."))
        latest = self.versions[0].number
        first = self.version(self.number("a", self.versions[1].number if len(self.versions) > 1 else latest))
        second = self.version(self.number("b", latest))
        rows = comparison_rows(self.document_type, history.compare(self.document_type.model, first.data, second.data))
        context.update(first=first, second=second, rows=rows, changed_count=sum(row["changed"] for row in rows))
        return context


@method_decorator(never_cache, name="dispatch")
class RestoreView(VersionsMixin, TemplateView):
    """Confirm, then restore a version through the document's form: errors refuse it whole, warnings are confirmed."""

    template_name = "directory/document_restore.html"
    edit_page = True

    def restore(self, confirmed=""):
        return history.Restore(self.version(self.kwargs["number"]), confirmed)

    def get(self, request, *args, **kwargs):
        try:
            restore = self.restore()
        except history.RestoreError as error:
            messages.error(request, str(error))
            return redirect(self.document_type.url("history", self.kwargs["pk"]))
        return self.render_to_response(self.get_context_data(restore=restore))

    def post(self, request, *args, **kwargs):
        try:
            restore = self.restore(request.POST.get("confirm_warnings", ""))
        except history.RestoreError as error:
            messages.error(request, str(error))
            return redirect(self.document_type.url("history", self.kwargs["pk"]))
        number = restore.version.number
        if restore.unchanged:
            messages.info(request, gettext("The document already has the values of version %(number)s: nothing to restore.") % {"number": number})
            return redirect(self.document_type.url("history", self.kwargs["pk"]))
        if not restore.is_valid():
            messages.error(request, gettext("This version cannot be restored: nothing was changed. See the errors below."))
            return self.render_to_response(self.get_context_data(restore=restore))
        if restore.form.unconfirmed_warnings:
            messages.warning(request, gettext("Restoring this version gives the warnings below: confirm them to restore it."))
            return self.render_to_response(self.get_context_data(restore=restore))
        saved = restore.save(request.user)
        messages.success(request, gettext("Version %(number)s of “%(name)s” was restored as a new version.") % {"number": number, "name": saved})
        return redirect(saved)

    def get_context_data(self, restore, **kwargs):
        context = super().get_context_data(**kwargs)
        valid = restore.is_valid()
        presenter = Presenter(self.document_type)
        context.update(
            restore=restore,
            version=restore.version,
            rows=comparison_rows(self.document_type, restore.changes),
            valid=valid,
            errors=[
                (presenter.label(field) if field != "__all__" else "", message)
                for field, field_errors in restore.form.errors.items() for message in field_errors
            ],
            warnings=form_warnings(restore.form) if valid else [],
            warning_codes=restore.warning_codes,
            review=change_review(self.document_type, restore.form) if valid else None,
        )
        return context


class DeletedListView(RoleRequiredMixin, ListView):
    """Documents deleted and not restored since, newest first, each with its last version to restore."""

    template_name = "directory/deleted_list.html"
    paginate_by = PAGE_SIZE

    def get_queryset(self):
        queryset = history.deleted_versions()
        wanted = self.request.GET.get("type", "")
        if wanted in BY_NAME:
            queryset = queryset.filter(document_type=wanted)
        return queryset

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        rows = []
        for version in context["object_list"]:
            document_type = BY_NAME.get(version.document_type)
            if document_type is None:
                continue
            rows.append({
                "version": version,
                "type_label": capfirst(document_type.verbose_name),
                "name": version.audit_entry.object_repr if version.audit_entry_id else f"#{version.object_id}",
                "actor": version.actor or EMPTY,
                "history_url": document_type.url("history", version.object_id),
                "restore_url": self.restore_url(document_type, version),
            })
        context.update(
            rows=rows,
            types=[(document_type.name, capfirst(document_type.verbose_name_plural)) for document_type in BY_NAME.values()],
            wanted=self.request.GET.get("type", ""),
        )
        return context

    def restore_url(self, document_type, version):
        if not roles.has_role(self.request.user, document_type.edit_role):
            return None
        return document_type.restore_url(version.object_id, version.number)
