"""How documents read in the console: their types, labels and display values, shared by every page.

Pure presentation over the directory's models and forms: no views, so the document pages, the
dashboard and the mail service's pages can all use it without importing each other.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crispy_forms.layout import HTML, Row
from django import forms as django_forms
from django.core.exceptions import FieldDoesNotExist
from django.urls import reverse
from django.utils import formats, timezone, translation
from django.utils.safestring import mark_safe
from django.utils.text import capfirst
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from directory import models, roles
from directory.forms import FORMS, Tabs, tab_id

if TYPE_CHECKING:
    from django.db.models import Field, QuerySet
    from django.forms import ModelForm
    from django.utils.functional import Promise

EMPTY = "—"
PAGE_SIZE = 25
# How a stored secret is shown instead of its value.
SECRET_STATES = {"internet_password": (_("set"), _("not set"))}
STORED_STATES = (_("stored"), _("not stored"))


@dataclass(frozen=True)
class DocumentType:
    """What the generic views need to know about one kind of document."""

    model: type
    url_prefix: str
    search_fields: tuple
    columns: tuple
    edit_role: str = roles.EDITOR
    # Fields computed on save, shown read-only on the detail page after the form's own.
    read_only_fields: tuple = ()

    @property
    def name(self) -> str:
        return self.model._meta.model_name

    @property
    def verbose_name(self) -> str | Promise:
        return self.model._meta.verbose_name

    @property
    def verbose_name_plural(self) -> str | Promise:
        return self.model._meta.verbose_name_plural

    @property
    def form_class(self) -> type[ModelForm]:
        return FORMS[self.model]

    def url(self, action: str, pk: int | None = None) -> str:
        return reverse(f"directory:{self.name}-{action}", args=[] if pk is None else [pk])

    def restore_url(self, pk: int, number: int) -> str:
        return reverse(f"directory:{self.name}-restore", args=[pk, number])


DOCUMENT_TYPES = (
    DocumentType(
        models.Server, "servers", ("name", "host_name"),
        ("name", "host_name", "smtp_listener_enabled", "smtp_inbound_tcp_port", "smtp_inbound_tcp_status",
         "smtp_inbound_ssl_port", "smtp_inbound_ssl_status", "tls_credentials"),
    ),
    DocumentType(
        models.ConfigurationSettings, "configurations", ("server__name", "relay_host", "local_domains"),
        ("server", "local_domains", "relay_host", "starttls_inbound", "anti_relay_enforcement"),
    ),
    DocumentType(
        models.InternetSite, "sites", ("name", "organization", "mapped_addresses", "servers"),
        ("name", "organization", "mapped_addresses", "servers", "tls_credentials"),
    ),
    DocumentType(
        models.Person, "people", ("full_name", "first_name", "last_name", "short_name", "internet_address"),
        ("full_name", "short_name", "internet_address", "internet_password"),
        edit_role=roles.MANAGER,
    ),
    DocumentType(models.Group, "groups", ("name", "members"), ("name", "group_type", "members")),
    DocumentType(
        models.TLSCredentials, "tls", ("name", "subject", "host_names"), ("name", "subject", "not_after"),
        read_only_fields=("subject", "host_names", "not_after"),
    ),
)
BY_NAME = {document_type.name: document_type for document_type in DOCUMENT_TYPES}
BY_MODEL = {document_type.model: document_type for document_type in DOCUMENT_TYPES}


@functools.lru_cache(maxsize=64)
def _reading_form(form_class: type[ModelForm], language: str | None) -> ModelForm:
    """One unbound form per type and language, only read for its labels, choices and tabs: building a
    Server form takes milliseconds, and a Server document page reads five of them."""
    return form_class()


class Presenter:
    """Labels and values of one document type as the admin reads them on its form."""

    def __init__(self, document_type: DocumentType) -> None:
        self.document_type = document_type
        self.form = _reading_form(document_type.form_class, translation.get_language())

    def model_field(self, name: str) -> Field | None:
        try:
            return self.document_type.model._meta.get_field(name)
        except FieldDoesNotExist:
            return None

    def label(self, name: str) -> str | Promise:
        if name in self.form.fields:
            return self.form.fields[name].label
        model_field = self.model_field(name)
        return capfirst(model_field.verbose_name) if model_field is not None else name

    def display(self, name: str, value: object) -> object:
        """The text for a stored value: choice labels, documents by name, one list entry per line."""
        if value is None or value == "" or value == []:
            return EMPTY
        form_field = self.form.fields.get(name)
        if isinstance(value, bool) and not isinstance(form_field, django_forms.ChoiceField):
            return gettext("Yes") if value else gettext("No")
        if isinstance(form_field, django_forms.ModelChoiceField):
            return str(value)
        choices = getattr(form_field, "choices", None) or getattr(self.model_field(name), "flatchoices", None)
        if choices and not isinstance(value, (list, dict)):
            labels = {str(key): label for key, label in choices}
            return labels.get(str(value), value)
        if isinstance(value, list):
            if form_field is not None:
                return form_field.prepare_value(value)
            return "\n".join(str(item) for item in value)
        if hasattr(value, "tzinfo"):
            return formats.date_format(timezone.localtime(value), "SHORT_DATETIME_FORMAT")
        return value

    def value(self, instance: models.Document, name: str) -> object:
        """The display value of one field of a document; secrets only say whether they are stored."""
        if name in self.document_type.model.secret_fields:
            shown, missing = SECRET_STATES.get(name, STORED_STATES)
            return shown if getattr(instance, name) else missing
        return self.display(name, getattr(instance, name))

    def tabs(self, instance: models.Document, tabs: Sequence | None = None) -> list[dict]:
        """The document's tabs, each a list of columns of headings and ``(label, value)`` fields, and
        ``subtabs``: the tabs nested in it (Ports > Internet Ports > Mail), with the same anchors as the form's."""
        result = []
        for label, items in self.form.tabs if tabs is None else tabs:
            nested = [item for item in items if isinstance(item, Tabs)]
            result.append({
                "label": label, "id": tab_id(label), "columns": self._columns(instance, items),
                "subtabs": [tab for group in nested for tab in self.tabs(instance, group)],
            })
        if tabs is None and self.document_type.read_only_fields:
            result[0]["columns"][0].extend(self._entries(instance, self.document_type.read_only_fields))
        return result

    def _columns(self, instance: models.Document, items: Sequence) -> list[list[dict]]:
        """A Row of Columns lays its columns side by side; anything else goes in the first column."""
        main, columns = [], []
        for item in items:
            if isinstance(item, Tabs):
                continue
            if isinstance(item, Row):
                columns.extend(self._entries(instance, column.fields) for column in item.fields)
            else:
                main.extend(self._entries(instance, [item]))
        return ([main] if main else []) + columns

    def _entries(self, instance: models.Document, items: Sequence) -> list[dict]:
        entries = []
        for item in items:
            if isinstance(item, str):
                if self.model_field(item) is not None:
                    entries.append({"name": item, "label": self.label(item), "value": self.value(instance, item)})
            elif isinstance(item, HTML):
                entries.append({"heading": mark_safe(item.html)})
            elif hasattr(item, "fields"):
                entries.extend(self._entries(instance, item.fields))
        return entries


def with_change_rows(entries: Iterable[models.AuditEntry]) -> list[models.AuditEntry]:
    """Give each audit entry ``change_rows``: (label, old, new) in the words of its document's form,
    and ``restored_version``: the number of the version it restored, if it is a restore."""
    presenters = {}
    entries = list(entries)
    restores = dict(
        models.DocumentVersion.objects.filter(audit_entry__in=[entry.pk for entry in entries], restored_from__isnull=False)
        .values_list("audit_entry_id", "restored_from__number")
    )
    for entry in entries:
        entry.restored_version = restores.get(entry.pk)
        document_type = BY_NAME.get(entry.document_type)
        if document_type is None:
            entry.change_rows = [(name, old or EMPTY, new or EMPTY) for name, (old, new) in entry.changes.items()]
            continue
        if document_type not in presenters:
            presenters[document_type] = Presenter(document_type)
        presenter = presenters[document_type]
        entry.document_type_label = capfirst(document_type.verbose_name)
        entry.change_rows = [
            (presenter.label(name), presenter.display(name, old), presenter.display(name, new))
            for name, (old, new) in entry.changes.items()
        ]
    return entries


def labelled_warnings(document: models.Document) -> list[tuple[str | Promise, str]]:
    """A document's warnings as ``(field label, message)``, for the admin who has to act on them."""
    presenter = Presenter(BY_MODEL[type(document)])
    return [(presenter.label(field), message) for field, _code, message in document.warnings()]


def audit_entries_of(instance: models.Document) -> QuerySet[models.AuditEntry]:
    return models.AuditEntry.objects.filter(
        document_type=instance._meta.model_name, object_id=str(instance.pk)
    ).select_related("user")
