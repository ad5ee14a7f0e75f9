"""Every console response forbids framing and MIME sniffing, keeps URLs to itself, and carries a
Content-Security-Policy that the pages themselves live within (no inline script or style)."""
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from adminconsole.middleware import CONTENT_SECURITY_POLICY
from directory.roles import MANAGER, READER
from tests.adminconsole.test_permissions import PUBLIC, URLS, client_for, documents, url_of  # noqa: F401 (fixture)
from tests.conftest import make_user

EXPECTED_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}
# Pages reached by GET; logout is POST-only and the language switch is a POST form.
GET_PAGES = sorted(set(URLS) - {"logout", "set_language"})


def get_page(name, documents):
    """A page as a Manager sees it; the public ones (the login page) as a visitor does."""
    client = Client() if name in PUBLIC else client_for(MANAGER)
    return client.get(url_of(name, documents))


def assert_protected(response):
    found = {name: response.headers.get(name) for name in EXPECTED_HEADERS}
    assert found == EXPECTED_HEADERS, f"{response.status_code} {response.get('Content-Type')}"


def test_the_policy_allows_only_the_console_itself():
    directives = dict(directive.split(" ", 1) for directive in CONTENT_SECURITY_POLICY.split("; "))
    assert directives == {
        "default-src": "'self'", "img-src": "'self' data:", "object-src": "'none'", "base-uri": "'none'",
        "form-action": "'self'", "frame-ancestors": "'none'",
    }
    assert "unsafe" not in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("name", GET_PAGES)
def test_every_page_sends_the_security_headers(documents, name):
    response = get_page(name, documents)
    assert response.status_code == 200
    assert_protected(response)


def test_error_pages_and_redirects_send_them_too(documents):
    manager, reader = client_for(MANAGER), client_for(READER)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(make_user("strict", MANAGER))
    responses = {
        "redirect to log in": Client().get(reverse("dashboard")),
        "log in page": Client().get(reverse("login")),
        "not found": manager.get("/no-such-page/"),
        "no such document": manager.get(reverse("directory:server-detail", args=[99999])),
        "forbidden": reader.get(reverse("user-list")),
        "method not allowed": manager.get(reverse("logout")),
        "csrf failure": strict.post(reverse("user-create"), {}),
        "too large": manager.post(reverse("directory:group-create"), {"members": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)}),
    }
    assert {label: response.status_code for label, response in responses.items()} == {
        "redirect to log in": 302, "log in page": 200, "not found": 404, "no such document": 404, "forbidden": 403,
        "method not allowed": 405, "csrf failure": 403, "too large": 400,
    }
    for response in responses.values():
        assert_protected(response)


def test_the_lockout_page_sends_them_too(db):
    make_user("alice", MANAGER)
    for _attempt in range(settings.AXES_FAILURE_LIMIT):
        response = Client().post(reverse("login"), {"username": "alice", "password": "wrong"})
    assert response.status_code == 429
    assert_protected(response)


TEMPLATES = Path(settings.BASE_DIR) / "templates"
INLINE = re.compile(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=|javascript:", re.IGNORECASE)


def test_no_template_has_inline_script_style_or_handler():
    """The policy would block them: behaviour belongs in static/console.js, looks in static/console.css."""
    offending = [
        f"{path.relative_to(TEMPLATES)}:{number}: {line.strip()}"
        for path in sorted(TEMPLATES.rglob("*.html"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if INLINE.search(line)
    ]
    assert offending == []


@pytest.mark.parametrize("name", [name for name in GET_PAGES if name != "smtpservice:message-download"])
def test_no_rendered_page_has_inline_script_style_or_handler(documents, name):
    """Crispy forms, widgets and template tags add markup of their own: check what is actually sent
    (the download is the stored message itself, sent as message/rfc822)."""
    assert INLINE.findall(get_page(name, documents).content.decode()) == []
