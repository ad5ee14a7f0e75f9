"""The console works in Chromium under its Content-Security-Policy: no page triggers a violation, and
the behaviour that needs Bootstrap's and the console's scripts (tabs, menus, the language switch) works."""
import re

import pytest

from directory import audit
from directory.roles import MANAGER
from tests.adminconsole.test_permissions import LOGOUT, PUBLIC, URLS, url_of
from tests.browser.conftest import browser, page  # noqa: F401 (fixtures)
from tests.conftest import make_user
from tests.documents import make_documents
from tests.smtpservice import records

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-pass-1234"
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(`${event.effectiveDirective} ${event.blockedURI} ${event.sourceFile}:${event.lineNumber}`);
});
"""


def documents():
    """One document of each kind with a version, a received message and a session, as the permission matrix uses."""
    found = make_documents()
    for document in list(found.values()):
        audit.baseline_version(document)
    found["user"] = make_user("target", None)
    found["receivedmessage"], found["mailboxentry"] = records.received(found["server"], found["person"])
    found["sessionlog"] = records.session(found["server"])
    return found


def test_every_page_runs_without_a_policy_violation(page, live_server):
    found = documents()
    make_user("admin", MANAGER, password=PASSWORD)
    console_errors = []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    page.add_init_script(RECORD_VIOLATIONS)

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.locator("form").get_by_role("button").first.click()
    page.wait_for_url(re.compile(r".*/$"))

    violations = {}
    for name in sorted(set(URLS) - PUBLIC - {LOGOUT, "smtpservice:message-download", "directory-export"}):
        response = page.goto(f"{live_server.url}{url_of(name, found)}")
        assert response.status == 200, name
        assert response.headers["content-security-policy"].startswith("default-src 'self'")
        if page.evaluate("window.cspViolations"):
            violations[name] = page.evaluate("window.cspViolations")
    assert violations == {}
    assert [error for error in console_errors if "Content Security Policy" in error] == []

    page.goto(f"{live_server.url}{found['server'].get_absolute_url()}")
    page.get_by_role("tab", name="Ports", exact=True).click()
    page.get_by_role("tab", name="Mail").click()
    assert page.locator("#smtp-inbound").first.is_visible() or page.get_by_text("Mail (SMTP Inbound)").first.is_visible()
    page.get_by_role("button", name="Directory").or_(page.get_by_role("link", name="Directory")).first.click()
    assert page.get_by_role("link", name="Deleted documents").is_visible()
    with page.expect_navigation():
        page.locator("select[name=language]").select_option("fr")
    assert page.locator("html").get_attribute("lang") == "fr"
    assert page.evaluate("window.cspViolations") == []
