"""The audit trail: who created, changed or deleted which document, with each field's old and new value.

Every write to a directory document goes through ``save_document`` or ``delete_document`` (console
views and ``importdirectory`` alike), so no change escapes the trail. Secret fields are masked in
the trail; the ``DocumentVersion`` written with each entry keeps them as stored, for restore only
(``docs/design/history.md``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import router, transaction
from django.db.models import Max
from django.db.models.deletion import Collector
from django.db.models.signals import post_save, pre_save
from django.utils.crypto import salted_hmac

from directory.models import AuditEntry, Document, DocumentVersion

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
    from django.db.models import Field
    from django.forms import ModelForm

    User = AbstractBaseUser | AnonymousUser | None

MASK = "********"


def document_type(instance: Document) -> str:
    return instance._meta.model_name


def masked(value: str | None) -> str:
    """Hide a secret but let a change show: the mask carries a keyed fingerprint of the value."""
    if not value:
        return ""
    return f"{MASK} {salted_hmac('directory.audit', value).hexdigest()[:8]}"


def field_value(instance: Document, field: Field, secrets: bool = False) -> object:
    """A JSON-able value for one field; documents referred to are written by name."""
    if field.is_relation:
        related = getattr(instance, field.name)
        return str(related) if related is not None else None
    value = field.value_from_object(instance)
    if field.name in instance.secret_fields and not secrets:
        return masked(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def snapshot(instance: Document, secrets: bool = False) -> dict:
    """Every editable field of a document, secrets masked unless ``secrets`` (a version to restore)."""
    return {
        field.name: field_value(instance, field, secrets)
        for field in instance._meta.concrete_fields
        if field.name not in ("id", "created", "modified")
    }


def diff(before: dict, after: dict) -> dict:
    """``{field: [old, new]}`` for the fields whose value changed."""
    keys = list(after) + [key for key in before if key not in after]
    return {key: [before.get(key), after.get(key)] for key in keys if before.get(key) != after.get(key)}


def actor_name(user: User, source: str | None = None) -> str:
    if user is not None and user.is_authenticated:
        return user.get_username()
    return source or "system"


def audit_entry(user: User, action: str, instance: Document, before: dict | None = None, source: str | None = None) -> AuditEntry | None:
    """The unsaved AuditEntry of one change, or None for a change that changes nothing."""
    after = snapshot(instance) if action != AuditEntry.Action.DELETE else {}
    changes = diff(before or {}, after)
    if action == AuditEntry.Action.CHANGE and not changes:
        return None
    return AuditEntry(
        user=user if user is not None and user.is_authenticated else None,
        actor=actor_name(user, source),
        action=action,
        document_type=document_type(instance),
        object_id=str(instance.pk),
        object_repr=str(instance)[:300],
        changes=changes,
        snapshot=after or before or {},
    )


def record(user: User, action: str, instance: Document, before: dict | None = None, source: str | None = None) -> AuditEntry | None:
    """Record one change in the audit trail (nothing for a change that changes nothing)."""
    entry = audit_entry(user, action, instance, before, source)
    if entry is not None:
        entry.save()
    return entry


def keep_version(instance: Document, action: str, data: dict, entry: AuditEntry | None = None,
                 restored_from: DocumentVersion | None = None) -> DocumentVersion:
    """Number and store one version of a document: the next number after its last one."""
    document, object_id = document_type(instance), str(instance.pk)
    last = DocumentVersion.objects.filter(document_type=document, object_id=object_id).aggregate(last=Max("number"))["last"]
    return DocumentVersion.objects.create(
        document_type=document, object_id=object_id, number=(last or 0) + 1, action=action, data=data,
        audit_entry=entry, timestamp=entry.timestamp if entry else instance.modified, restored_from=restored_from,
    )


def baseline_version(instance: Document) -> DocumentVersion:
    """The first version of a document saved before history was kept: it as it is now, so a change can be undone."""
    versions = DocumentVersion.objects.filter(document_type=document_type(instance), object_id=str(instance.pk))
    return versions.order_by("number").first() or keep_version(instance, DocumentVersion.Action.BASELINE, snapshot(instance, secrets=True))


@transaction.atomic
def save_document(form: ModelForm, user: User, source: str | None = None, restored_from: DocumentVersion | None = None) -> Document:
    """Save a valid ModelForm and record what changed and the new version, in one transaction.

    ``restored_from`` is the DocumentVersion whose values the form carries, when this save restores it.
    """
    instance = form.instance
    creating = instance._state.adding
    before = {}
    if not creating:
        # Locked so that two saves of one document number their versions one after the other.
        stored = type(instance).objects.select_for_update().get(pk=instance.pk)
        before = snapshot(stored)
        baseline_version(stored)
    saved = form.save()
    action = AuditEntry.Action.CREATE if creating else AuditEntry.Action.CHANGE
    entry = record(user, action, saved, before, source)
    if entry is not None:
        keep_version(saved, action, snapshot(saved, secrets=True), entry, restored_from)
    return saved


def bulk_create_sending_signals(model: type, instances: list, using: str) -> list:
    """``bulk_create`` that still sends ``pre_save`` and ``post_save`` for each instance, as ``save()``
    does: the SMTP service counts directory revisions and stamps versions through them."""
    for instance in instances:
        pre_save.send(sender=model, instance=instance, raw=False, using=using, update_fields=None)
    model.objects.using(using).bulk_create(instances)
    for instance in instances:
        post_save.send(sender=model, instance=instance, created=True, raw=False, using=using, update_fields=None)
    return instances


@transaction.atomic
def save_new_documents(forms: list, user: User, source: str | None = None) -> list:
    """Create many documents of one type (the import) with what ``save_document`` gives each one,
    an audit entry and a first version, in a few bulk INSERTs instead of several queries per document."""
    documents = [form.save(commit=False) for form in forms]
    if not documents:
        return []
    model = type(documents[0])
    using = router.db_for_write(model)
    bulk_create_sending_signals(model, documents, using)
    entries = bulk_create_sending_signals(
        AuditEntry, [audit_entry(user, AuditEntry.Action.CREATE, document, source=source) for document in documents], using,
    )
    kind = model._meta.model_name
    numbers = dict(
        DocumentVersion.objects.using(using)
        .filter(document_type=kind, object_id__in=[str(document.pk) for document in documents])
        .values_list("object_id").annotate(last=Max("number"))
    )
    bulk_create_sending_signals(DocumentVersion, [
        DocumentVersion(
            document_type=kind, object_id=str(document.pk), number=numbers.get(str(document.pk), 0) + 1,
            action=DocumentVersion.Action.CREATE, data=snapshot(document, secrets=True), audit_entry=entry,
            timestamp=entry.timestamp,
        )
        for document, entry in zip(documents, entries, strict=True)
    ], using)
    return documents


def cascaded_documents(instance: Document) -> list[Document]:
    """The other directory documents deleting ``instance`` deletes with it (a server's own Configuration Settings)."""
    collector = Collector(using=router.db_for_write(type(instance)))
    collector.collect([instance])
    found = [document for model, documents in collector.data.items() if issubclass(model, Document) for document in documents]
    found += [document for queryset in collector.fast_deletes if issubclass(queryset.model, Document) for document in queryset]
    return [document for document in found if not (type(document) is type(instance) and document.pk == instance.pk)]


@transaction.atomic
def delete_document(instance: Document, user: User, source: str | None = None) -> None:
    """Delete a document and the documents that go with it, recording each one's last values and version."""
    doomed = [
        (document, document.pk, snapshot(document), snapshot(document, secrets=True))
        for document in [instance, *cascaded_documents(instance)]
    ]
    instance.delete()
    for document, pk, before, data in doomed:
        document.pk = pk
        entry = record(user, AuditEntry.Action.DELETE, document, before, source)
        keep_version(document, DocumentVersion.Action.DELETE, data, entry)
