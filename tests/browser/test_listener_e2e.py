"""With a real listener running, an administrator moves the SMTP Inbound TCP/IP port in Chromium, and
mail sent to the new port shows up in the person's mailbox in the console."""
import re
import smtplib
import time

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from playwright.sync_api import expect

from tests.browser.test_server_document import PASSWORD, log_in
from tests.smtpservice.conftest import free_port

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SUBJECT = "Sent to the new port"
MESSAGE = f"From: sender@example.org\r\nTo: jane@acme.test\r\nSubject: {SUBJECT}\r\n\r\nHello Jane.\r\n"


def connect_within(port, seconds):
    """An SMTP connection to ``port`` once the listener has bound it, failing after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return smtplib.SMTP("127.0.0.1", port, timeout=5)
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, f"port {port} was not bound within {seconds} s"
            time.sleep(0.05)


def test_admin_moves_inbound_port_and_mail_on_the_new_port_reaches_the_mailbox(
    page, live_server, make_server, configuration, jane, run_listener,
):
    User.objects.create_superuser("admin", password=PASSWORD)
    server = make_server()
    new_port = free_port()
    run_listener(server)
    log_in(page, live_server)
    page.goto(f"{live_server.url}{server.get_absolute_url()}")
    status = page.locator(f"#listener-status-{server.pk}")
    assert "Listener running" in status.inner_text()

    page.get_by_role("link", name="Edit").first.click()
    page.get_by_role("tab", name="Ports", exact=True).click()
    page.get_by_role("tab", name="Mail").click()
    page.locator("#id_smtp_inbound_tcp_port").fill(str(new_port))
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text(re.compile("Senders try port 25 by default")).first).to_be_visible()
    page.get_by_role("button", name="Save anyway").click()
    page.wait_for_url(re.compile(rf".*{server.get_absolute_url()}(#tab-[a-z-]+)?$"))

    with connect_within(new_port, 2) as client:
        client.ehlo("client.example.org")
        client.sendmail("sender@example.org", ["jane@acme.test"], MESSAGE)

    page.goto(f"{live_server.url}{reverse('smtpservice:mailbox', args=[jane.pk])}")
    assert page.get_by_role("link", name=SUBJECT).is_visible()
    page.get_by_role("link", name=SUBJECT).click()
    assert "Hello Jane." in page.locator(".message-body").inner_text()
