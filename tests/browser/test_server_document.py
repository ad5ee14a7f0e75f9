"""An administrator edits a Server document in Chromium, as a person would."""
import re

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from directory import forms
from directory.models import AuditEntry

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-pass-1234"


@pytest.fixture
def server(db):
    form = forms.ServerForm(data={
        "name": "mail1/Acme", "host_name": "mail1.acme.test", "smtp_inbound_tcp_port": 25,
        "smtp_inbound_tcp_status": "enabled", "smtp_inbound_ssl_port": 465, "smtp_inbound_ssl_status": "disabled",
        "smtp_outbound_tcp_port": 25, "smtp_outbound_tcp_status": "enabled", "smtp_outbound_ssl_port": 465,
        "smtp_outbound_ssl_status": "disabled", "internet_authentication": "fewer",
    })
    assert form.is_valid(), form.errors
    return form.save()


@pytest.fixture
def admin_user(db):
    return User.objects.create_superuser("admin", password=PASSWORD)


def log_in(page, live_server):
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.locator("form").get_by_role("button").first.click()
    page.wait_for_url(re.compile(r".*/$"))


def test_admin_changes_inbound_port_on_mail_tab_and_finds_it_audited(page, live_server, server, admin_user):
    log_in(page, live_server)
    page.goto(f"{live_server.url}{server.get_absolute_url()}")
    page.get_by_role("link", name="Edit").first.click()

    page.get_by_role("tab", name="Ports", exact=True).click()
    page.get_by_role("tab", name="Mail").click()
    port = page.locator("#id_smtp_inbound_tcp_port")
    assert port.is_visible()
    port.fill("2526")
    page.get_by_role("button", name="Save", exact=True).click()

    warning = page.get_by_text(re.compile("Senders try port 25 by default")).first
    expect(warning).to_be_visible()
    server.refresh_from_db()
    assert server.smtp_inbound_tcp_port == 25, "a warning must not save before the admin confirms"

    page.get_by_role("button", name="Save anyway").click()
    page.wait_for_url(re.compile(rf".*{server.get_absolute_url()}(#tab-[a-z-]+)?$"))
    assert page.get_by_text("2526").first.is_visible()

    server.refresh_from_db()
    assert server.smtp_inbound_tcp_port == 2526
    entry = AuditEntry.objects.filter(document_type="server", object_id=str(server.pk)).first()
    assert entry.actor == "admin"
    assert entry.changes["smtp_inbound_tcp_port"] == [25, 2526]
    history = page.locator("#audit-trail")
    assert "2526" in history.inner_text() and "25" in history.inner_text()


def test_server_document_in_french_shows_domino_label(page, live_server, server, admin_user):
    log_in(page, live_server)
    with page.expect_navigation():
        page.locator("select[name=language]").select_option("fr")
    page.goto(f"{live_server.url}{server.get_absolute_url()}")
    assert page.locator("html").get_attribute("lang") == "fr"
    assert page.get_by_text(
        "Charger les configurations Internet à partir des documents Serveur\\Sites Internet"
    ).first.is_visible()
