"""Template context shared by every console page."""
from typing import Any

from django.http import HttpRequest

from directory import roles


def console(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    return {"console_role": roles.role_of(user) if user is not None else None, "roles": roles}
