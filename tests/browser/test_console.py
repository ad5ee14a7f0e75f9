"""The console's own flows in Chromium: Domino's nested tabs, the outage preview and red state, the directory
import with its dry-run report, managing console users, and logging in with a TOTP code."""
import json
import re
import time

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from directory import importexport, roles
from tests.browser.test_server_document import PASSWORD, log_in
from tests.conftest import make_user
from tests.documents import make_documents

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SITE_NOT_ENABLED = "554 5.7.0 This site is not enabled on the server."


@pytest.fixture
def documents(db):
    found = make_documents(load_internet_sites=True)
    User.objects.create_superuser("admin", password=PASSWORD)
    return found


def test_server_document_has_dominos_nested_tabs_with_the_same_anchors_in_both_languages(page, live_server, documents):
    server = documents["server"]
    log_in(page, live_server)
    page.goto(f"{live_server.url}{server.get_absolute_url()}")
    page.get_by_role("tab", name="Ports", exact=True).click()
    page.get_by_role("tab", name="Internet Ports").click()
    page.get_by_role("tab", name="Mail").click()
    assert page.get_by_text("SMTP Inbound TCP/IP port number").first.is_visible()
    assert page.url.endswith("#tab-mail"), "choosing a tab gives a link to it"

    with page.expect_navigation():
        page.locator("select[name=language]").select_option("fr")
    for url in (server.get_absolute_url(), reverse("directory:server-update", args=[server.pk])):
        page.goto(f"{live_server.url}{url}#tab-mail")
        mail = page.get_by_role("tab", name="Messagerie")
        assert mail.get_attribute("aria-selected") == "true", "the shared link opens Mail in French too"
        assert page.get_by_role("tab", name="Ports Internet").get_attribute("aria-selected") == "true"
        assert page.locator("#tab-mail").is_visible()


def test_deleting_the_only_site_is_previewed_as_an_outage_and_then_shown_red(page, live_server, documents):
    site = documents["internetsite"]
    log_in(page, live_server)
    page.goto(f"{live_server.url}{reverse('directory:internetsite-delete', args=[site.pk])}")
    preview = page.locator(".outage-preview")
    assert "Every SMTP connection to server mail1/Acme is refused" in preview.inner_text()
    assert SITE_NOT_ENABLED in preview.inner_text()
    page.get_by_role("button", name="Delete").click()

    page.goto(f"{live_server.url}/")
    alert = page.locator(f"#server-{documents['server'].pk} .alert-danger.outage")
    assert alert.is_visible() and SITE_NOT_ENABLED in alert.inner_text()
    assert page.locator(f"#drift-flag-{documents['server'].pk}").inner_text() == "Outage"
    with page.expect_navigation():
        alert.get_by_role("link", name="create an SMTP Inbound Site document").click()
    assert page.url.endswith(reverse("directory:internetsite-create"))


def test_import_upload_shows_the_dry_run_report_then_applies(page, live_server, documents, tmp_path):
    document = importexport.export_directory()
    document["groups"].append({**document["groups"][0], "name": "Night Shift"})
    upload = tmp_path / "directory.json"
    upload.write_text(json.dumps(document))
    log_in(page, live_server)
    page.get_by_role("button", name="Directory").click()
    with page.expect_navigation():
        page.get_by_role("link", name="Import and export").click()
    assert "/import/" in page.url
    page.set_input_files("#id_file", str(upload))
    page.get_by_role("button", name="Check the file").click()
    groups = page.locator('.import-tallies tr[data-type="groups"] td')
    assert groups.all_inner_texts() == ["1", "0", "0", "1"], "created, updated, deleted, unchanged"
    page.get_by_role("button", name="Apply this import").click()
    assert "directory.json was imported" in page.locator(".alert-success").inner_text()


def test_manager_disables_a_user_who_then_cannot_log_in(page, live_server, documents, browser):
    target = make_user("alice", roles.READER, password=PASSWORD)
    log_in(page, live_server)
    page.goto(f"{live_server.url}{reverse('user-list')}")
    page.locator(f"#user-{target.pk}").get_by_role("link", name="Disable, delete, reset password").click()
    page.get_by_role("button", name="Disable").click()
    assert "alice is disabled" in page.locator(".alert-success").inner_text()

    other = browser.new_context(locale="en-US").new_page()
    other.goto(f"{live_server.url}/accounts/login/")
    other.fill("#id_username", "alice")
    other.fill("#id_password", PASSWORD)
    with other.expect_navigation():
        other.locator("main form").get_by_role("button").first.click()
    assert "/accounts/login/" in other.url and other.locator(".alert-danger, .invalid-feedback, .errorlist").count() > 0


def test_totp_set_up_then_required_at_login(page, live_server, documents):
    log_in(page, live_server)
    page.goto(f"{live_server.url}{reverse('two-factor')}")
    key = page.locator(".two-factor-key").inner_text()
    device = TOTPDevice.objects.get(user__username="admin", confirmed=False)

    def code(steps_ahead=0):
        totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
        totp.time = time.time() + steps_ahead * device.step
        return f"{totp.token():06d}"

    assert key.replace(" ", "")
    page.fill("#id_code", code())
    page.get_by_role("button", name="Turn on").click()
    assert "Two-factor authentication is on" in page.locator(".alert-success").inner_text()
    page.get_by_role("button", name="Log out").click()

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.locator("main form").get_by_role("button").first.click()
    assert "enter the current one-time code" in page.content()
    page.fill("#id_password", PASSWORD)
    page.fill("#id_otp_token", code(steps_ahead=1))
    page.locator("main form").get_by_role("button").first.click()
    page.wait_for_url(re.compile(r".*/$"))
    assert page.locator("#console-user").is_visible()
