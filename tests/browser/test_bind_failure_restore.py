"""With a real listener running, an administrator moves the SMTP Inbound TCP/IP port in Chromium to a
port another process holds, sees the bind failure and the drift flag on the dashboard, restores the
last version whose ports bound, and the old port answers SMTP again."""
import re
import socket

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from playwright.sync_api import expect

from directory.models import DocumentVersion
from tests.browser.test_listener_e2e import connect_within
from tests.browser.test_server_document import PASSWORD, log_in
from tests.smtpservice.conftest import free_port, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def dashboard_until(page, live_server, server, wanted, seconds=10):
    """Reload the dashboard until the server's drift flag reads ``wanted`` (the listener reports every half second)."""
    flag = page.locator(f"#drift-flag-{server.pk}")

    def shows():
        page.goto(f"{live_server.url}{reverse('dashboard')}")
        return wanted in flag.inner_text()

    wait_until(shows, seconds, f"the dashboard did not show “{wanted}” for {server}")
    return page.locator(f"#listener-status-{server.pk}")


def test_port_taken_by_another_process_is_flagged_and_one_click_restore_binds_the_old_port_again(
    page, live_server, make_server, configuration, run_listener,
):
    User.objects.create_superuser("admin", password=PASSWORD)
    server = make_server()
    old_port, taken_port = server.smtp_inbound_tcp_port, free_port()
    run_listener(server)
    versions = DocumentVersion.objects.filter(document_type="server", object_id=str(server.pk))
    wait_until(lambda: versions.filter(number=1, bound_at__isnull=False).exists(), message="version 1 was never reported bound")

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken_port))
        squatter.listen()

        log_in(page, live_server)
        dashboard_until(page, live_server, server, "Configured ports bound")
        page.goto(f"{live_server.url}{server.get_absolute_url()}")
        page.get_by_role("link", name="Edit").first.click()
        page.get_by_role("tab", name="Ports", exact=True).click()
        page.get_by_role("tab", name="Mail").click()
        page.locator("#id_smtp_inbound_tcp_port").fill(str(taken_port))
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.get_by_text(re.compile("Senders try port 25 by default")).first).to_be_visible()
        page.get_by_role("button", name="Save anyway").click()
        page.wait_for_url(re.compile(rf".*{server.get_absolute_url()}(#tab-[a-z-]+)?$"))

        status = dashboard_until(page, live_server, server, "Drift: port not bound")
        assert f"TCP/IP port {taken_port} on 127.0.0.1 is configured but not bound" in status.inner_text()
        assert "restore version 1 of this Server document, the last version whose ports all bound" in status.inner_text()

        status.get_by_role("link", name="Restore version 1").click()
        page.get_by_role("button", name="Restore version 1").click()
        page.wait_for_url(re.compile(rf".*{server.get_absolute_url()}(#tab-[a-z-]+)?$"))
        assert page.get_by_text("Version 1 of “mail1/Acme” was restored as a new version.").is_visible()

        with connect_within(old_port, 3) as client:
            assert client.ehlo()[0] == 250

    status = dashboard_until(page, live_server, server, "Configured ports bound")
    row = status.locator("tr", has_text=f"TCP/IP {old_port}")
    assert row.locator("td").nth(2).inner_text() == "Yes"
    assert "Drift" not in status.inner_text()
