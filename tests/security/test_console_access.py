"""Deny by default: every console view needs a login and a role, and every state-changing request a
CSRF token. The role matrix itself is tests/adminconsole/test_permissions.py; this proves that no URL
can slip past it."""
import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.urls import path, reverse
from django.views.generic import TemplateView, View

from directory.permissions import RoleRequiredMixin
from directory.roles import EDITOR, MANAGER, READER
from tests.adminconsole.test_permissions import (  # noqa: F401 (documents is a fixture)
    LOGOUT,
    PUBLIC,
    URLS,
    documents,
    state,
    url_of,
    url_patterns,
)
from tests.conftest import make_user

# Django's own views, each with its own protection: the login form and the language switch need no
# login (they are CSRF-protected); logout needs a login and a POST.
UNGUARDED_BY_DESIGN = PUBLIC | {LOGOUT}
UNSAFE_METHODS = ("post", "put", "patch", "delete")


def view_class(pattern):
    return getattr(pattern.callback, "view_class", None)


def unguarded(patterns):
    """Names of the URLs whose view does not check roles through RoleRequiredMixin."""
    return sorted(
        name for name, pattern in patterns
        if name not in UNGUARDED_BY_DESIGN and not issubclass(view_class(pattern) or object, RoleRequiredMixin)
    )


def login_exempt(patterns):
    """Names of the URLs that LoginRequiredMiddleware lets through without a login."""
    return sorted(name for name, pattern in patterns if not getattr(pattern.callback, "login_required", True))


def test_every_view_of_the_console_checks_roles():
    assert unguarded(URLS.items()) == []


def test_only_the_login_page_and_the_language_switch_need_no_login():
    assert login_exempt(URLS.items()) == sorted(PUBLIC)


class ForgottenView(TemplateView):
    """A page added without RoleRequiredMixin."""


def forgotten_urlconf():
    return [
        *url_patterns(),
        *url_patterns([path("forgotten/", ForgottenView.as_view(), name="forgotten")]),
        *url_patterns([path("plain/", lambda request: HttpResponse(), name="plain-function")]),
    ]


def test_a_new_view_without_the_role_check_would_be_caught():
    assert unguarded(forgotten_urlconf()) == ["forgotten", "plain-function"]


def test_a_view_that_names_no_role_lets_readers_look_and_nobody_change(db):
    class BareView(RoleRequiredMixin, View):
        def get(self, request):
            return HttpResponse("seen")

        post = put = patch = delete = get

    view = BareView.as_view()
    factory = RequestFactory()

    def call(method, user):
        request = getattr(factory, method)("/bare/")
        request.user = user
        try:
            return view(request).status_code
        except PermissionDenied:
            return 403

    users = {role: make_user(f"bare-{role}", role) for role in (None, READER, EDITOR, MANAGER)}
    assert call("get", AnonymousUser()) == 302
    assert {role: call("get", user) for role, user in users.items()} == {None: 403, READER: 200, EDITOR: 200, MANAGER: 200}
    for method in UNSAFE_METHODS:
        assert {role: call(method, user) for role, user in users.items()} == {None: 403, READER: 403, EDITOR: 403, MANAGER: 403}


def manager_client(**kwargs):
    client = Client(**kwargs)
    client.force_login(make_user("csrf-manager", MANAGER))
    return client


@pytest.mark.parametrize("method", UNSAFE_METHODS)
@pytest.mark.parametrize("name", sorted(URLS))
def test_every_unsafe_method_without_a_csrf_token_is_refused_by_the_csrf_check(documents, name, method):
    """test_permissions checks POST refusals; this covers PUT, PATCH and DELETE too, and that the
    refusal is the CSRF check's (a Manager may make every change there)."""
    client = manager_client(enforce_csrf_checks=True)
    before = state()
    response = getattr(client, method)(url_of(name, documents), {"name": "changed/Acme", "language": "fr", "role": ""})
    assert response.status_code == 403
    assert b"did not carry a valid security token" in response.content
    assert state() == before


def test_a_valid_token_from_another_origin_is_refused(documents):
    client = manager_client(enforce_csrf_checks=True)
    client.get(reverse("user-create"))
    token = client.cookies["csrftoken"].value
    data = {"username": "mallory", "password1": "Mallory-pass-1234", "password2": "Mallory-pass-1234", "role": MANAGER}
    refused = client.post(reverse("user-create"), {**data, "csrfmiddlewaretoken": token}, HTTP_ORIGIN="https://evil.example")
    assert refused.status_code == 403
    assert not User.objects.filter(username="mallory").exists()
    accepted = client.post(reverse("user-create"), {**data, "csrfmiddlewaretoken": token}, HTTP_ORIGIN="http://testserver")
    assert accepted.status_code == 302
