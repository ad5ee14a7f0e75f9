"""History and rollback: every saved version of a document, compared field by field and restored.

``directory.audit`` writes a ``DocumentVersion`` with every audit entry; this module reads them. A
restore fills the document's console form with a version's values, so every rule of the form applies
(an invalid version is refused whole), and saves it through ``audit.save_document``: the restore is a
new audited version itself. Secrets are put back as stored and never leave this module as text.
``docs/design/history.md`` explains the design.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Exists, OuterRef
from django.forms import ModelChoiceField
from django.utils.translation import gettext as _

from directory import audit
from directory.forms import FORMS
from directory.models import DocumentVersion

if TYPE_CHECKING:
    from django.db.models import Model, QuerySet

    from directory.audit import User
    from directory.models import Document

SKIPPED_FIELDS = ("id", "created", "modified")


def versions_of(document_type: str, object_id: int | str) -> QuerySet[DocumentVersion]:
    """The versions of one document, newest first."""
    return (
        DocumentVersion.objects.filter(document_type=document_type, object_id=str(object_id))
        .select_related("audit_entry", "restored_from")
        .order_by("-number")
    )


def field_names(model: type[Model]) -> list[str]:
    return [field.name for field in model._meta.concrete_fields if field.name not in SKIPPED_FIELDS]


def compare(model: type[Model], first: dict, second: dict) -> list[tuple[str, object, object, bool]]:
    """``(field, first value, second value, changed)`` for every field of two versions' data."""
    names = field_names(model)
    names += [name for name in (*first, *second) if name not in names and name not in SKIPPED_FIELDS]
    return [(name, first.get(name), second.get(name), first.get(name) != second.get(name)) for name in dict.fromkeys(names)]


def deleted_versions() -> QuerySet[DocumentVersion]:
    """The last version of every deleted document that was not restored since: newest deletion first."""
    later = DocumentVersion.objects.filter(
        document_type=OuterRef("document_type"), object_id=OuterRef("object_id"), number__gt=OuterRef("number"),
    )
    return (
        DocumentVersion.objects.filter(action=DocumentVersion.Action.DELETE)
        .exclude(Exists(later))
        .select_related("audit_entry")
        .order_by("-timestamp", "-pk")
    )


def form_value(value: object) -> object:
    """A stored value as the form takes it: lists and booleans as they are, nothing as blank."""
    return "" if value is None else value


class RestoreError(Exception):
    """The version cannot be restored at all (not a validation error of its values)."""


class Restore:
    """A version put back into its document's console form, ready to be validated and saved.

    A deleted document is recreated with its old id, so its history goes on where it stopped.
    """

    def __init__(self, version: DocumentVersion, confirmed: str = "") -> None:
        self.version = version
        model = version.model
        self.current = model.objects.filter(pk=version.object_id).first()
        latest = versions_of(version.document_type, version.object_id).first()
        if self.current is not None and latest is not None and latest.action == DocumentVersion.Action.DELETE:
            raise RestoreError(_("Another document now has the id of this deleted document: it cannot be recreated."))
        # Taken before the form writes the version's values onto the document.
        self.current_data = audit.snapshot(self.current, secrets=True) if self.current is not None else {}
        instance = self.current if self.current is not None else model(pk=int(version.object_id))
        form_class = FORMS[model]
        data = dict(form_class(instance=instance).initial)
        data.update({name: form_value(version.data[name]) for name in form_class._meta.fields if name in version.data})
        data["confirm_warnings"] = confirmed or ""
        for name in model.secret_fields:
            # Secrets the form only takes as new plain text (a password to hash) go back as stored.
            if name not in form_class._meta.fields and name in version.data:
                setattr(instance, name, version.data[name])
        self.form = form_class(data=data, instance=instance)
        for name, field in self.form.fields.items():
            if isinstance(field, ModelChoiceField) and data.get(name):
                message = _("No %(document)s named “%(name)s” exists: restore or create it first.") % {
                    "document": field.queryset.model._meta.verbose_name, "name": data[name],
                }
                field.error_messages = {**field.error_messages, "invalid_choice": message.replace("%", "%%")}

    @property
    def recreates(self) -> bool:
        return self.current is None

    def is_valid(self) -> bool:
        return self.form.is_valid()

    @property
    def warning_codes(self) -> str:
        return self.form.warning_codes if self.form.is_valid() else ""

    @property
    def changes(self) -> list[tuple[str, object, object, bool]]:
        """``compare`` of the document as it is now and as the restore leaves it."""
        return compare(self.version.model, self.current_data, self.version.data)

    @property
    def unchanged(self) -> bool:
        """The document exists and already has every value of the version."""
        return self.current is not None and not any(changed for *_values, changed in self.changes)

    def save(self, user: User) -> Document:
        """Save the restored values as a new version of the document (check ``unchanged`` first)."""
        return audit.save_document(self.form, user, restored_from=self.version)
