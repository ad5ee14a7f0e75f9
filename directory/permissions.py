"""Who may do what in the console, checked in one place.

Deny by default, as a Domino ACL does: every page needs at least the Reader role, and anything that
changes the directory (a POST, or a page whose only purpose is a change form) needs the view's edit
role. A view that names no edit role accepts no change at all.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth.mixins import AccessMixin
from django.core.exceptions import PermissionDenied

from directory import roles

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class RoleRequiredMixin(AccessMixin):
    """Reader (``read_role``) to look, ``edit_role`` to change; 403 otherwise, login page if anonymous."""

    read_role = roles.READER
    edit_role = None
    # True for pages that only exist to change something (create, edit, delete confirmation).
    edit_page = False

    def get_edit_role(self) -> str | None:
        return self.edit_role

    def can_edit(self) -> bool:
        edit_role = self.get_edit_role()
        return edit_role is not None and roles.has_role(self.request.user, edit_role)

    def required_role(self) -> str | None:
        if self.request.method in SAFE_METHODS and not self.edit_page:
            return self.read_role
        return self.get_edit_role()

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        required = self.required_role()
        if not roles.has_role(request.user, self.read_role) or required is None or not roles.has_role(request.user, required):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs) -> dict:
        kwargs.setdefault("can_edit", self.can_edit())
        return super().get_context_data(**kwargs)
