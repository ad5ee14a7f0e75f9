"""The defects the one session machine fixed, each shown over a real socket against the real listener.

STARTTLS Required gates AUTH (RFC 3207 s 4); every reply after EHLO carries an enhanced code (RFC
2034); a reply leaves in one write, so a client that reads once gets all of it; postmaster is always
accepted (RFC 5321 s 4.5.1); SIZE is read after the address only; the HELO text cannot change the
structure of the Received header.
"""
import base64
import html
import smtplib
import socket
import time

import pytest

from directory import models
from smtpservice.models import MailboxEntry, ReceivedMessage, SessionLog
from tests.security.smtp_client import CLIENT_NAME, RawClient, greeted
from tests.smtpservice.conftest import PASSWORD, save, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGE = b"From: sender@example.org\r\nSubject: core\r\n\r\nHello.\r\n"
PLAIN = base64.b64encode(f"\0jane@acme.test\0{PASSWORD}".encode()).decode()


def change(document, **values):
    return save(type(document), values, instance=document)


@pytest.fixture
def start(make_server, configuration, jane, run_listener):
    def start(config=None, **server):
        if config:
            change(configuration, **config)
        document = make_server(**server)
        run_listener(document)
        return document

    return start


@pytest.fixture
def tls_start(start, make_credentials):
    def tls_start(config=None, **server):
        return start(config, tls_credentials=make_credentials("mail1-cert").name, **server)

    return tls_start


def test_starttls_required_hides_auth_before_tls_and_refuses_it_with_530_while_the_session_goes_on(tls_start, client_tls):
    server = tls_start({"starttls_inbound": "required"}, smtp_inbound_tcp_auth_name_password=True)
    client = greeted(server.smtp_inbound_tcp_port)
    offered = client.ehlo()
    assert "STARTTLS" in offered and not any(line.startswith("AUTH") for line in offered)
    assert client.command(f"AUTH PLAIN {PLAIN}") == (530, "5.7.0 Must issue a STARTTLS command first")
    assert client.command("NOOP") == (250, "2.0.0 OK")
    assert client.command("STARTTLS") == (220, "2.0.0 Ready to start TLS")
    client.sock = client_tls.wrap_socket(client.sock, server_hostname="127.0.0.1")
    assert "AUTH PLAIN LOGIN" in client.ehlo()
    assert client.command(f"AUTH PLAIN {PLAIN}") == (235, "2.7.0 Authentication successful")
    client.close()


@pytest.mark.parametrize(("line", "reply"), [
    ("NOOP", (250, "2.0.0 OK")),
    ("RSET", (250, "2.0.0 OK")),
    ("RCPT TO:<jane@acme.test>", (503, "5.5.1 Error: need MAIL command")),
    ("DATA", (503, "5.5.1 Error: need MAIL command")),
    ("MAIL FROM:<sender@example.org> BODY=8BITMIME", (555, "5.5.4 BODY=8BITMIME is not offered")),
    ("MAIL FROM:<sender@example.org> SMTPUTF8", (555, "5.5.4 MAIL FROM parameters not recognized or not implemented")),
    ("MAIL FROM:<sender@example.org>", (250, "2.1.0 OK")),
    ("XYZZY", (500, '5.5.1 Error: command "XYZZY" not recognized')),
    ("QUIT", (221, "2.0.0 Bye")),
])
def test_every_reply_after_ehlo_carries_an_enhanced_code(start, line, reply):
    client = greeted(start().smtp_inbound_tcp_port)
    assert "ENHANCEDSTATUSCODES" in client.ehlo()
    assert client.command(line) == reply
    client.close()


def test_replies_before_ehlo_carry_enhanced_codes_too(start):
    client = greeted(start().smtp_inbound_tcp_port)
    assert client.command("MAIL FROM:<sender@example.org>") == (503, "5.5.1 Error: send HELO first")
    client.close()


def test_body_8bitmime_is_accepted_once_8bitmime_is_enabled(start):
    client = greeted(start({"eightbitmime": True}).smtp_inbound_tcp_port)
    assert "8BITMIME" in client.ehlo()
    assert client.command("MAIL FROM:<sender@example.org> BODY=8BITMIME") == (250, "2.1.0 OK")
    client.close()


def read_once(sock, wait=0.3):
    """What one recv returns after the server had time to answer: a client that reads once."""
    time.sleep(wait)
    return sock.recv(65536)


def test_a_client_that_reads_once_gets_the_whole_ehlo_reply_and_every_reply_of_a_pipelined_batch(start):
    server = start()
    for _attempt in range(10):
        sock = socket.create_connection(("127.0.0.1", server.smtp_inbound_tcp_port), timeout=5)
        assert read_once(sock, 0.1).startswith(b"220 ")
        sock.sendall(f"EHLO {CLIENT_NAME}\r\n".encode())
        ehlo = read_once(sock, 0.05)
        assert ehlo.startswith(b"250-mail1.acme.test\r\n") and b"\r\n250 " in ehlo and ehlo.endswith(b"\r\n"), ehlo
        sock.sendall(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<jane@acme.test>\r\nRCPT TO:<postmaster>\r\nDATA\r\n")
        batch = read_once(sock, 0.05)
        assert batch == b"250 2.1.0 OK\r\n250 2.1.5 OK\r\n250 2.1.5 OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n", batch
        sock.close()


@pytest.mark.parametrize("recipient", ["postmaster", "postmaster@acme.test", "PostMaster@ACME.test", "POSTMASTER"])
def test_postmaster_is_accepted_in_any_case_and_delivered_to_the_administrators(start, jane, recipient):
    save(models.Group, {"name": "LocalDomainAdmins", "group_type": "multi_purpose", "members": ["Jane Doe/Sales/Acme"]})
    server = start()
    with smtplib.SMTP("127.0.0.1", server.smtp_inbound_tcp_port, local_hostname=CLIENT_NAME, timeout=5) as client:
        assert client.sendmail("someone@example.net", [recipient], MESSAGE) == {}
    entry = MailboxEntry.objects.get()
    assert (entry.person, entry.recipient) == (jane, recipient)


def test_postmaster_without_administrators_waits_in_the_postmaster_mailbox_and_the_dashboard_says_so(start, client, admin_user):
    server = start({"administrators": ["Nobody Here/Acme"]})
    with smtplib.SMTP("127.0.0.1", server.smtp_inbound_tcp_port, local_hostname=CLIENT_NAME, timeout=5) as smtp:
        assert smtp.sendmail("someone@example.net", ["postmaster"], MESSAGE) == {}
    entry = MailboxEntry.objects.get()
    assert entry.person is None and entry.recipient == "postmaster"
    client.force_login(admin_user)
    page = client.get("/").content.decode()
    assert "1 message to postmaster waits in the postmaster mailbox" in page


def test_size_is_read_from_the_parameters_after_the_address_only(start):
    client = greeted(start().smtp_inbound_tcp_port)
    client.ehlo()
    assert client.command("MAIL FROM:<SIZE=99999999@example.org>") == (250, "2.1.0 OK")
    client.command("RSET")
    assert client.command("MAIL FROM:<sender@example.org> SIZE=99999999")[0] == 552
    client.close()


@pytest.mark.parametrize(("helo", "shown"), [
    ("evil; by forged.example (comment)", "unknown"),
    ("client.example.org", "client.example.org"),
    ("[127.0.0.1]", "[127.0.0.1]"),
])
def test_the_helo_text_reaches_the_received_header_only_as_a_domain_or_address_literal(start, helo, shown):
    client = greeted(start().smtp_inbound_tcp_port)
    assert client.command(f"EHLO {helo}")[0] == 250
    for line in ("MAIL FROM:<sender@example.org>", "RCPT TO:<jane@acme.test>", "DATA"):
        assert client.command(line)[0] in (250, 354)
    client.send(MESSAGE + b".\r\n")
    assert client.reply()[0] == 250
    client.close()
    received = bytes(ReceivedMessage.objects.get().data).split(b"\r\n", 1)[0].decode()
    assert received == f"Received: from {shown} ([127.0.0.1])"


def test_without_internet_sites_auth_where_name_and_password_is_no_says_authentication_is_not_enabled(start):
    client = greeted(start().smtp_inbound_tcp_port)
    client.ehlo()
    assert client.command(f"AUTH PLAIN {PLAIN}") == (503, "5.5.1 Error: authentication not enabled")
    assert client.command("MAIL FROM:<sender@example.org>") == (250, "2.1.0 OK")
    client.close()


def test_a_port_with_no_method_refuses_mail_with_530_and_the_server_document_warns_before_saving(start, configuration):
    server = start({"starttls_inbound": "disabled"}, smtp_inbound_tcp_auth_anonymous=False)
    assert ("smtp_inbound_tcp_auth_anonymous", "no_client_can_send") in [(f, c) for f, c, _m in server.warnings()]
    client = greeted(server.smtp_inbound_tcp_port)
    client.ehlo()
    assert client.command("MAIL FROM:<sender@example.org>") == (530, "5.7.0 Authentication required")
    client.close()


def test_the_session_log_explains_each_decision_in_the_reader_s_language(start, configuration, client, admin_user):
    change(configuration, connection_deny_hosts=["127.0.0.0/8"])
    server = start()
    refused = RawClient(server.smtp_inbound_tcp_port)
    assert refused.reply()[0] == 554
    refused.close()
    log = wait_until(lambda: SessionLog.objects.first(), message="no session log")
    client.force_login(admin_user)
    page = html.unescape(client.get(f"/sessions/{log.pk}/", HTTP_ACCEPT_LANGUAGE="fr").content.decode())
    english = client.get(f"/sessions/{log.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "is denied by the entry 127.0.0.0/8 of Deny connections from these hosts." in english
    assert "refusé par l'entrée 127.0.0.0/8 de Refuser les connexions" in page
    assert "is denied by the entry" not in page
