"""Directory import and export from the console: the same code as ``importdirectory`` and ``exportdirectory``
(``directory.importexport``), for Managers only.

An upload is first checked as ``importdirectory --dry-run`` does and its report shown; the file waits in
``DATA_DIR/imports`` under a random name kept in the Manager's session until they apply it or upload another.
"""
import secrets
from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views import View
from django.views.generic import FormView

from adminconsole.views import ManagerOnlyMixin
from directory import importexport
from directory.management.commands.importdirectory import MAX_SIZE_MIB

MAX_BYTES = MAX_SIZE_MIB * 1024 * 1024
PENDING_KEY = "directory_import"


class ImportForm(forms.Form):
    file = forms.FileField(label=_("Directory file (JSON)"), help_text=_("A file written by Export or by exportdirectory."))
    replace = forms.BooleanField(
        label=_("Also delete the documents of each type in the file that the file does not list"), required=False,
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_BYTES:
            raise forms.ValidationError(
                _("The file is larger than %(size)d MiB: nothing was read."), code="too_large", params={"size": MAX_SIZE_MIB},
            )
        try:
            text = upload.read().decode("utf-8")
        except UnicodeDecodeError:
            raise forms.ValidationError(_("The file is not UTF-8 text."), code="encoding") from None
        try:
            self.document = importexport.loads(text, upload.name)
        except importexport.FileError as error:
            raise forms.ValidationError(str(error), code="json") from None
        self.text = text
        return upload


def pending_dir() -> Path:
    folder = Path(settings.DATA_DIR) / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def pending_path(token: str) -> Path:
    """The waiting upload of a token made here (hex only, so no path can be smuggled in)."""
    if not token or not all(character in "0123456789abcdef" for character in token):
        raise ValueError(token)
    return pending_dir() / f"{token}.json"


class DirectoryImportView(ManagerOnlyMixin, FormView):
    """Upload a directory file: see the dry-run report (created, updated, deleted, unchanged, warnings), then apply."""

    form_class = ImportForm
    template_name = "adminconsole/directory_import.html"
    edit_page = True

    def form_valid(self, form):
        report = importexport.import_directory(form.document, replace=form.cleaned_data["replace"], dry_run=True)
        context = {"form": form, "report": report, "file_name": form.cleaned_data["file"].name}
        if not report.errors:
            self.forget_pending()
            token = secrets.token_hex(16)
            pending_path(token).write_text(form.text, encoding="utf-8")
            self.request.session[PENDING_KEY] = {
                "token": token, "name": form.cleaned_data["file"].name, "replace": form.cleaned_data["replace"],
            }
            context["pending"] = True
        return self.render_to_response(self.get_context_data(**context))

    def post(self, request, *args, **kwargs):
        if "apply" in request.POST:
            return self.apply()
        return super().post(request, *args, **kwargs)

    def apply(self):
        """Apply the upload whose dry-run report the Manager has just read, in one transaction, audited in their name."""
        pending = self.request.session.pop(PENDING_KEY, None)
        try:
            path = pending_path(pending["token"]) if pending else None
            text = path.read_text(encoding="utf-8") if path else None
        except (OSError, ValueError):
            text = None
        if text is None:
            messages.error(self.request, gettext("No checked file is waiting: upload it again."))
            return redirect("directory-import")
        path.unlink(missing_ok=True)
        report = importexport.import_directory(
            importexport.loads(text, pending["name"]), replace=pending["replace"], user=self.request.user,
        )
        if report.errors:
            messages.error(self.request, gettext(
                "The directory changed since the check: %(count)s errors, nothing was changed. Upload the file again."
            ) % {"count": len(report.errors)})
        else:
            messages.success(self.request, gettext("%(file)s was imported.") % {"file": pending["name"]} + " " + summary(report))
        return redirect("directory-import")

    def forget_pending(self):
        pending = self.request.session.pop(PENDING_KEY, None)
        if pending:
            pending_path(pending["token"]).unlink(missing_ok=True)


def summary(report) -> str:
    created = sum(tally.created for tally in report.tallies.values())
    updated = sum(tally.updated for tally in report.tallies.values())
    deleted = sum(tally.deleted for tally in report.tallies.values())
    return gettext("Created: %(created)s, updated: %(updated)s, deleted: %(deleted)s.") % {
        "created": created, "updated": updated, "deleted": deleted,
    }


class DirectoryExportView(ManagerOnlyMixin, View):
    """The whole directory as a JSON download, without secrets (as ``exportdirectory`` without --include-secrets)."""

    def get(self, request):
        text = importexport.dumps(importexport.export_directory(include_secrets=False))
        response = HttpResponse(text, content_type="application/json; charset=utf-8")
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
        response["Content-Disposition"] = f'attachment; filename="directory-{stamp}.json"'
        return response
