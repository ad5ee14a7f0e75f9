"""The audit trail: who created, changed or deleted which document, with each field's old and new value.

Every write to a directory document goes through ``save_document`` or ``delete_document`` (console
views and ``importdirectory`` alike), so no change escapes the trail. Secret fields are masked.
"""
from django.db import transaction
from django.utils.crypto import salted_hmac

from directory.models import AuditEntry

MASK = "********"


def document_type(instance):
    return instance._meta.model_name


def masked(value):
    """Hide a secret but let a change show: the mask carries a keyed fingerprint of the value."""
    if not value:
        return ""
    return f"{MASK} {salted_hmac('directory.audit', value).hexdigest()[:8]}"


def field_value(instance, field):
    """A JSON-able value for one field; documents referred to are written by name."""
    if field.is_relation:
        related = getattr(instance, field.name)
        return str(related) if related is not None else None
    value = field.value_from_object(instance)
    if field.name in instance.secret_fields:
        return masked(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def snapshot(instance):
    """Every editable field of a document, secrets masked."""
    return {
        field.name: field_value(instance, field)
        for field in instance._meta.concrete_fields
        if field.name not in ("id", "created", "modified")
    }


def diff(before, after):
    """``{field: [old, new]}`` for the fields whose value changed."""
    keys = list(after) + [key for key in before if key not in after]
    return {key: [before.get(key), after.get(key)] for key in keys if before.get(key) != after.get(key)}


def actor_name(user, source=None):
    if user is not None and user.is_authenticated:
        return user.get_username()
    return source or "system"


def record(user, action, instance, before=None, source=None):
    after = snapshot(instance) if action != AuditEntry.Action.DELETE else {}
    changes = diff(before or {}, after)
    if action == AuditEntry.Action.CHANGE and not changes:
        return None
    return AuditEntry.objects.create(
        user=user if user is not None and user.is_authenticated else None,
        actor=actor_name(user, source),
        action=action,
        document_type=document_type(instance),
        object_id=str(instance.pk),
        object_repr=str(instance)[:300],
        changes=changes,
        snapshot=after or before or {},
    )


@transaction.atomic
def save_document(form, user, source=None):
    """Save a valid ModelForm and record what changed, in one transaction."""
    instance = form.instance
    creating = instance.pk is None
    before = {} if creating else snapshot(type(instance).objects.get(pk=instance.pk))
    saved = form.save()
    record(user, AuditEntry.Action.CREATE if creating else AuditEntry.Action.CHANGE, saved, before, source)
    return saved


@transaction.atomic
def delete_document(instance, user, source=None):
    before = snapshot(instance)
    pk = instance.pk
    instance.delete()
    instance.pk = pk
    record(user, AuditEntry.Action.DELETE, instance, before, source)
