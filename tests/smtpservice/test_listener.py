"""The listener over real sockets, with real SMTP clients and real TLS."""
import smtplib
import time

import pytest

from directory import models
from smtpservice.models import MailboxEntry
from tests.smtpservice.conftest import PASSWORD, free_port, save

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGE = b"From: sender@example.org\r\nTo: jane@acme.test\r\nSubject: Hello\r\n\r\nHello Jane.\r\n"


def test_message_for_local_person_lands_in_mailbox_with_received_header(make_server, configuration, jane, run_listener):
    server = make_server()
    run_listener(server)
    with smtplib.SMTP("127.0.0.1", server.smtp_inbound_tcp_port, timeout=10) as client:
        code, banner = client.ehlo("client.example.org")
        assert code == 250
        client.sendmail("sender@example.org", ["jane@acme.test"], MESSAGE)
    entry = MailboxEntry.objects.select_related("message").get(person=jane)
    data = bytes(entry.message.data)
    assert data.startswith(b"Received: from client.example.org ([127.0.0.1])")
    assert data.endswith(MESSAGE)
    assert entry.message.subject == "Hello"


def test_changed_port_rebinds_live_and_session_in_progress_completes(make_server, configuration, jane, run_listener):
    server = make_server()
    old_port, new_port = server.smtp_inbound_tcp_port, free_port()
    run_listener(server)
    ongoing = smtplib.SMTP("127.0.0.1", old_port, timeout=10)
    ongoing.ehlo("early.example.org")
    ongoing.mail("sender@example.org")

    save(models.Server, {"smtp_inbound_tcp_port": new_port}, instance=server)
    deadline = time.monotonic() + 2
    while True:
        try:
            with smtplib.SMTP("127.0.0.1", new_port, timeout=5) as client:
                assert client.noop()[0] == 250
            break
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "the new port did not answer within 2 seconds"
            time.sleep(0.05)
    with pytest.raises(ConnectionRefusedError):
        smtplib.SMTP("127.0.0.1", old_port, timeout=5)

    ongoing.rcpt("jane@acme.test")
    code, _reply = ongoing.data(MESSAGE)
    ongoing.quit()
    assert code == 250
    assert MailboxEntry.objects.filter(person=jane).count() == 1


def test_auth_after_starttls_with_internet_password(make_server, make_credentials, configuration, jane, run_listener, client_tls):
    server = make_server(tls_credentials=make_credentials().name)
    run_listener(server)
    with smtplib.SMTP("127.0.0.1", server.smtp_inbound_tcp_port, timeout=10) as client:
        client.ehlo("client.example.org")
        assert not client.has_extn("auth")
        client.starttls(context=client_tls)
        client.ehlo("client.example.org")
        assert "PLAIN" in client.esmtp_features["auth"]
        assert client.login("jane@acme.test", PASSWORD)[0] == 235
