"""Template context shared by every console page."""
from directory import roles


def console(request):
    user = getattr(request, "user", None)
    return {"console_role": roles.role_of(user) if user is not None else None, "roles": roles}
