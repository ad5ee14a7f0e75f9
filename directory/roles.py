"""Console roles modelled on a Domino ACL: Reader sees, Editor edits documents, Manager also edits
people, passwords and roles. A role is a Django group; a superuser is a Manager."""
from __future__ import annotations

from typing import TYPE_CHECKING

from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

READER, EDITOR, MANAGER = "Reader", "Editor", "Manager"
ORDER = (READER, EDITOR, MANAGER)
LABELS = {READER: _("Reader"), EDITOR: _("Editor"), MANAGER: _("Manager")}


def role_of(user: AbstractBaseUser | AnonymousUser | None) -> str | None:
    """The highest role of a user, or None for anonymous users and users without a role."""
    if not user or not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return MANAGER
    held = set(user.groups.values_list("name", flat=True)) if not hasattr(user, "_role_names") else user._role_names
    user._role_names = held
    for role in reversed(ORDER):
        if role in held:
            return role
    return None


def has_role(user: AbstractBaseUser | AnonymousUser | None, required: str) -> bool:
    role = role_of(user)
    return role is not None and ORDER.index(role) >= ORDER.index(required)
