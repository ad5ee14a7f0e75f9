"""Error pages: Django's debug 404 is readable under DEBUG (make run), and the console's own pages otherwise."""
import pytest
from django.contrib.auth.models import User

from directory.roles import MANAGER
from tests.browser.conftest import browser, page  # noqa: F401 (fixtures)
from tests.conftest import make_user

pytestmark = [pytest.mark.django_db(transaction=True)]

PASSWORD = "error-pages-1234"
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => window.cspViolations.push(event.effectiveDirective));
"""


@pytest.mark.browser
def test_debug_404_page_shows_with_its_styles_under_the_policy(page, live_server, settings):
    settings.DEBUG = True
    make_user("admin", MANAGER, password=PASSWORD)
    page.add_init_script(RECORD_VIOLATIONS)
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.locator("form").get_by_role("button").first.click()
    page.wait_for_url(f"{live_server.url}/")

    response = page.goto(f"{live_server.url}/no-such-page/")

    assert response.status == 404
    assert page.evaluate("window.cspViolations") == []
    assert page.evaluate("getComputedStyle(document.querySelector('#summary')).backgroundColor") == "rgb(255, 255, 204)"


def test_without_debug_a_404_keeps_the_strict_policy(client, settings):
    settings.DEBUG = False
    make_user("admin", MANAGER, password=PASSWORD)
    client.force_login(User.objects.get(username="admin"))

    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
    assert "Page not found" in response.content.decode()


def test_server_error_page_renders_without_a_request(settings):
    from django.test import RequestFactory
    from django.views.defaults import server_error

    response = server_error(RequestFactory().get("/"))

    assert response.status_code == 500
    assert "Server error" in response.content.decode()
