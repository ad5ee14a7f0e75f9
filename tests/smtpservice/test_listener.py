"""The listener over real sockets, with real SMTP clients (smtplib and aiosmtplib) and real TLS.

Organised by the rules of the spec (section 3, and section 2 for site matching). Every reply the spec
words is compared with the exact text of its section 6; certificates come from a CA made at test time;
every listener a test starts is stopped by the ``run_listener`` fixture.
"""
import asyncio
import base64
import os
import smtplib
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import aiosmtplib
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection

from directory import models
from smtpservice.listener.service import POLL_INTERVAL
from smtpservice.models import ListenerStatus, MailboxEntry, QueuedRecipient, ReceivedMessage, SessionLog
from smtpservice.store.snapshot import current_revision
from tests.smtpservice.conftest import HOST_NAME, PASSWORD, free_port, save, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

LOCAL = "127.0.0.1"
SECOND_LOCAL = "127.0.0.2"
"""Linux routes all of 127.0.0.0/8 to the loopback interface: a second local address to connect to."""
CLIENT_NAME = "client.example.org"
SENDER = "sender@example.org"
OWN_ADDRESS = "jane@acme.test"
"""Jane's MAIL FROM once she has authenticated: an authenticated user may send only as her own address."""
JANE = "Jane Doe/Sales/Acme"
MESSAGE = b"From: sender@example.org\r\nTo: jane@acme.test\r\nSubject: Hello\r\n\r\nHello Jane.\r\n"
OVERSIZE = MESSAGE + (b"x" * 78 + b"\r\n") * 30
"""About 2.5 KB in lines of legal length: over a Maximum message size of 1 KB."""

# The replies of spec section 6, as smtplib returns them.
SITE_NOT_ENABLED = (554, b"5.7.0 This site is not enabled on the server.")
SITE_NOT_ENABLED_LATER = (503, b"5.7.0 This site is not enabled on the server.")
AUTH_NOT_ENABLED = (503, b"5.5.1 Error: authentication not enabled")
CONNECTION_DENIED = (554, b"5.7.1 Connection denied for policy reasons.")
AUTH_FAILED = (535, b"5.7.8 Authentication credentials invalid")
NOT_AUTHORIZED = (535, b"5.7.1 Not authorized to access this server")
AUTH_REQUIRED = (530, b"5.7.0 Authentication required")
STARTTLS_FIRST = (530, b"5.7.0 Must issue a STARTTLS command first")
RELAY_REJECTED = (554, b"5.7.1 Relay rejected for policy reasons.")
USER_UNKNOWN = (550, b"5.1.1 User unknown")
TOO_LARGE = (552, b"5.3.4 Message size exceeds fixed maximum message size")
TOO_MANY_RECIPIENTS = (452, b"4.5.3 Too many recipients")
STORAGE_FAILED = (451, b"4.3.0 Local error in processing; message not accepted")
ERROR_LIMIT = (421, b"4.7.0 SMTP service not available, closing transmission channel.")


# --- clients ------------------------------------------------------------------------------------


def connect(port, address=LOCAL, tls=None):
    """An smtplib client on a port, TLS from the first byte when ``tls`` (a client context) is given.

    A refused greeting does not raise: it is kept in ``client.greeting``.
    """
    if tls is not None:
        client = smtplib.SMTP_SSL(local_hostname=CLIENT_NAME, timeout=10, context=tls)
    else:
        client = smtplib.SMTP(local_hostname=CLIENT_NAME, timeout=10)
    client._host = address  # the name TLS checks; smtplib sets it only when the constructor connects
    client.greeting = client.connect(address, port)
    return client


def greeting_code(port, address=LOCAL, tls=None):
    """The code of the greeting on a port, or None when nothing listens there."""
    try:
        with connect(port, address, tls) as client:
            return client.greeting[0]
    except ConnectionRefusedError:
        return None


def open_session(server, where, client_tls, address=LOCAL):
    """An smtplib client after EHLO: in "clear" text on the TCP/IP port, after "starttls", or on the "ssl" port."""
    if where == "ssl":
        client = connect(server.smtp_inbound_ssl_port, address, tls=client_tls)
    else:
        client = connect(server.smtp_inbound_tcp_port, address)
    assert client.greeting[0] == 220, client.greeting
    client.ehlo()
    if where == "starttls":
        assert client.starttls(context=client_tls)[0] == 220
        client.ehlo()
    return client


def auth(client, login, password=PASSWORD, mechanism="PLAIN"):
    """AUTH with smtplib's own PLAIN or LOGIN exchange; the final (code, text) even when refused."""
    client.user, client.password = login, password
    try:
        return client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))
    except smtplib.SMTPAuthenticationError as error:
        return error.smtp_code, error.smtp_error


def ehlo_lines(client):
    code, text = client.ehlo()
    assert code == 250
    return text.decode().splitlines()


def assert_closed(client):
    """The server has closed the session: the next command finds no one listening."""
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.noop()


def aiosmtplib_client(port, **options):
    options.setdefault("start_tls", False)
    return aiosmtplib.SMTP(hostname=LOCAL, port=port, local_hostname=CLIENT_NAME, timeout=10, **options)


def converse(port, conversation, **options):
    """Run ``await conversation(client)`` with a connected aiosmtplib client on its own event loop.

    The client quits at the end, and the helper waits (bounded) until its socket is really closed: a TLS
    connection finishes closing a few loop turns after QUIT, which asyncio.run would not wait for.
    """

    async def socket_closed(sock):
        while sock.fileno() != -1:
            await asyncio.sleep(0.01)

    async def run():
        client = aiosmtplib_client(port, **options)
        await client.connect()
        sock = client.get_transport_info("socket")
        try:
            return await conversation(client)
        finally:
            try:
                await client.quit()
            except aiosmtplib.SMTPException:
                client.close()
            await asyncio.wait_for(socket_closed(sock), 5)

    return asyncio.run(run())


def nothing_stored():
    return not (ReceivedMessage.objects.exists() or MailboxEntry.objects.exists() or QueuedRecipient.objects.exists())


# --- documents ----------------------------------------------------------------------------------


def person(full_name, address, password=PASSWORD, **fields):
    return save(models.Person, {"full_name": full_name, "internet_address": address, "internet_password": password, **fields})


def group(name, members, group_type="multi_purpose"):
    return save(models.Group, {"name": name, "group_type": group_type, "members": members})


def change(document, **fields):
    """Save a change to a directory document as the console does (a running listener picks it up)."""
    return save(type(document), fields, instance=document)


def server_certificate(make_credentials):
    """The Server document's credentials, covering both loopback addresses the tests connect to."""
    return make_credentials("mail1-cert", HOST_NAME, LOCAL, SECOND_LOCAL, "localhost").name


# --- 3.1 Ports ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("tcp_status", "ssl_status", "tcp_greeting", "ssl_greeting"), [
    ("enabled", "disabled", 220, None),
    ("disabled", "enabled", None, 220),
    ("enabled", "enabled", 220, 220),
    ("disabled", "disabled", None, None),
])
def test_each_port_is_bound_only_while_its_status_is_enabled(
    tcp_status, ssl_status, tcp_greeting, ssl_greeting, make_server, make_credentials, configuration, run_listener, client_tls,
):
    server = make_server(
        tls_credentials=server_certificate(make_credentials),
        smtp_inbound_tcp_status=tcp_status, smtp_inbound_ssl_status=ssl_status,
    )
    run_listener(server)
    assert greeting_code(server.smtp_inbound_tcp_port) == tcp_greeting
    assert greeting_code(server.smtp_inbound_ssl_port, tls=client_tls) == ssl_greeting


def test_listener_task_disabled_binds_nothing_until_it_is_enabled(
    make_server, make_credentials, configuration, run_listener, client_tls,
):
    server = make_server(
        smtp_listener_enabled=False, tls_credentials=server_certificate(make_credentials), smtp_inbound_ssl_status="enabled",
    )
    run_listener(server)
    assert greeting_code(server.smtp_inbound_tcp_port) is None
    assert greeting_code(server.smtp_inbound_ssl_port, tls=client_tls) is None
    ports = ListenerStatus.objects.get(server=server).ports
    assert [(port["kind"], port["configured"], port["bound"]) for port in ports] == [("tcp", False, False), ("ssl", False, False)]

    change(server, smtp_listener_enabled=True)
    wait_until(lambda: greeting_code(server.smtp_inbound_tcp_port) == 220, message="the TCP/IP port was not bound")
    assert greeting_code(server.smtp_inbound_ssl_port, tls=client_tls) == 220


def test_greeting_and_ehlo_name_the_servers_host_name(make_server, configuration, run_listener):
    server = make_server()
    run_listener(server)
    with connect(server.smtp_inbound_tcp_port) as client:
        assert client.greeting == (220, f"{HOST_NAME} ESMTP Service ready".encode())
        assert ehlo_lines(client)[0] == HOST_NAME


# --- 3.2 Connection controls ----------------------------------------------------------------------


@pytest.mark.parametrize(("allow", "deny"), [
    ([], ["127.0.0.1"]),
    ([], ["127.0.0.0/8"]),
    (["192.0.2.0/24"], []),
    (["127.0.0.0/8"], ["127.0.0.1"]),
], ids=["denied address", "denied range", "not in allow list", "deny wins over allow"])
def test_connection_controls_refuse_the_greeting(allow, deny, make_server, configuration, run_listener):
    change(configuration, connection_allow_hosts=allow, connection_deny_hosts=deny)
    server = make_server()
    run_listener(server)
    with connect(server.smtp_inbound_tcp_port) as client:
        assert client.greeting == CONNECTION_DENIED


@pytest.mark.parametrize(("allow", "deny"), [
    ([], []),
    (["127.0.0.0/8"], []),
    ([], ["192.0.2.7", "10.0.0.0/8"]),
], ids=["no controls", "in allow list", "not in deny list"])
def test_connection_controls_let_other_clients_in(allow, deny, make_server, configuration, run_listener):
    change(configuration, connection_allow_hosts=allow, connection_deny_hosts=deny)
    server = make_server()
    run_listener(server)
    with connect(server.smtp_inbound_tcp_port) as client:
        assert client.greeting[0] == 220
        assert client.noop()[0] == 250


def test_denied_client_gets_503_with_the_same_text_until_quit(make_server, configuration, run_listener):
    change(configuration, connection_deny_hosts=["127.0.0.1"])
    server = make_server()
    run_listener(server)
    client = connect(server.smtp_inbound_tcp_port)
    try:
        assert client.greeting == CONNECTION_DENIED
        for command in ("EHLO client.example.org", "MAIL FROM:<sender@example.org>", "NOOP"):
            assert client.docmd(command) == (503, CONNECTION_DENIED[1])
        assert client.docmd("QUIT")[0] == 221
    finally:
        client.close()


# --- 3.3 Site not enabled -------------------------------------------------------------------------

NO_OPTIONS = {
    "tcp_auth_name_password": False, "tcp_auth_anonymous": False,
    "ssl_auth_client_certificate": False, "ssl_auth_name_password": False, "ssl_auth_anonymous": False,
}


@pytest.mark.parametrize(("sites", "starttls", "port"), [
    ([], "enabled", "tcp"),
    ([{"mapped_addresses": [SECOND_LOCAL]}], "enabled", "tcp"),
    ([NO_OPTIONS], "enabled", "tcp"),
    ([{**NO_OPTIONS, "ssl_auth_name_password": True, "ssl_auth_anonymous": True}], "disabled", "tcp"),
    ([{**NO_OPTIONS, "ssl_auth_client_certificate": True}], "enabled", "tcp"),
    ([{**NO_OPTIONS, "tcp_auth_anonymous": True}], "enabled", "ssl"),
], ids=[
    "no site document",
    "site mapped to another address",
    "all options No",
    "TCP/IP options No and STARTTLS Disabled",
    "TCP/IP options No and no SSL method STARTTLS could use",
    "SSL port with all three SSL options No",
])
def test_site_not_enabled_refuses_greeting_then_every_command_but_quit(
    sites, starttls, port, make_server, make_credentials, make_site, configuration, run_listener, client_tls,
):
    change(configuration, starttls_inbound=starttls)
    server = make_server(
        load_internet_sites=True, tls_credentials=server_certificate(make_credentials), smtp_inbound_ssl_status="enabled",
    )
    for number, site in enumerate(sites):
        make_site(f"Site {number}", **site)
    run_listener(server)
    if port == "ssl":
        client = connect(server.smtp_inbound_ssl_port, tls=client_tls)
    else:
        client = connect(server.smtp_inbound_tcp_port)
    try:
        assert client.greeting == SITE_NOT_ENABLED
        for command in ("EHLO client.example.org", "AUTH PLAIN AGphbmVAYWNtZS50ZXN0AHNlY3JldA==",
                        "MAIL FROM:<sender@example.org>", "RCPT TO:<jane@acme.test>", "NOOP", "XYZZY"):
            assert client.docmd(command) == SITE_NOT_ENABLED_LATER, command
        assert client.docmd("QUIT")[0] == 221
    finally:
        client.close()


def test_site_not_enabled_greeting_reaches_aiosmtplib(make_server, configuration, run_listener):
    server = make_server(load_internet_sites=True)
    run_listener(server)

    async def connect_with_aiosmtplib():
        client = aiosmtplib_client(server.smtp_inbound_tcp_port)
        with pytest.raises(aiosmtplib.SMTPConnectResponseError) as refused:
            await client.connect()
        client.close()
        return refused.value

    refused = asyncio.run(connect_with_aiosmtplib())
    assert (refused.code, refused.message) == (SITE_NOT_ENABLED[0], SITE_NOT_ENABLED[1].decode())


def test_without_internet_sites_a_port_without_method_greets_and_refuses_mail_from(make_server, configuration, run_listener):
    """Internet Sites disabled: the site rule does not apply; the client learns at MAIL FROM (docs/design/policy.md)."""
    server = make_server(smtp_inbound_tcp_auth_name_password=False, smtp_inbound_tcp_auth_anonymous=False)
    run_listener(server)
    with connect(server.smtp_inbound_tcp_port) as client:
        assert client.greeting[0] == 220
        client.ehlo()
        assert client.mail(SENDER) == AUTH_REQUIRED


# --- Section 2: site matching by local address ----------------------------------------------------


@pytest.fixture
def two_sites(make_server, make_credentials, make_site, configuration, jane):
    """Three listen addresses: 127.0.0.1 mapped to a public site, 127.0.0.2 to a submission site with its
    own certificate, 127.0.0.3 to none (it falls back to the oldest site mapped to *, which allows nothing)."""
    make_site("Fallback", mapped_addresses=["*"], **NO_OPTIONS)
    make_site("Public", mapped_addresses=[LOCAL], tcp_auth_name_password=False, tcp_auth_anonymous=True)
    make_site(
        "Submission", mapped_addresses=[SECOND_LOCAL], tcp_auth_name_password=True, tcp_auth_anonymous=False,
        tls_credentials=make_credentials("submission-cert", "submit.acme.test", SECOND_LOCAL).name,
    )
    return make_server(
        load_internet_sites=True, listen_addresses=[LOCAL, SECOND_LOCAL, "127.0.0.3"],
        tls_credentials=server_certificate(make_credentials),
    )


def test_site_is_chosen_by_the_local_address_the_client_connected_to(two_sites, run_listener):
    run_listener(two_sites)
    port = two_sites.smtp_inbound_tcp_port
    with connect(port, LOCAL) as public:
        assert public.greeting[0] == 220
        assert not any(line.startswith("AUTH") for line in ehlo_lines(public))
        assert public.mail(SENDER)[0] == 250
    with connect(port, SECOND_LOCAL) as submission:
        assert "AUTH PLAIN LOGIN" in ehlo_lines(submission)
        assert submission.mail(SENDER) == AUTH_REQUIRED
        assert auth(submission, "jane@acme.test")[0] == 235
        assert submission.mail(OWN_ADDRESS)[0] == 250
    with connect(port, "127.0.0.3") as unmapped:
        assert unmapped.greeting == SITE_NOT_ENABLED


@pytest.mark.parametrize(("address", "host_name"), [(LOCAL, HOST_NAME), (SECOND_LOCAL, "submit.acme.test")])
def test_starttls_presents_the_certificate_of_the_matching_site_else_the_servers(
    address, host_name, two_sites, run_listener, client_tls,
):
    run_listener(two_sites)
    with open_session(two_sites, "starttls", client_tls, address) as client:
        names = [value for kind, value in client.sock.getpeercert()["subjectAltName"] if kind == "DNS"]
        assert names[0] == host_name


# --- 3.4 EHLO and STARTTLS ------------------------------------------------------------------------


@pytest.mark.parametrize(("config_changes", "credentials", "expected"), [
    ({}, False, ["ENHANCEDSTATUSCODES", "SIZE 1048576", "PIPELINING"]),
    ({"size_extension": False, "pipelining": False, "eightbitmime": True}, False, ["ENHANCEDSTATUSCODES", "8BITMIME"]),
    ({"max_message_size_kb": 0}, False, ["ENHANCEDSTATUSCODES", "SIZE", "PIPELINING"]),
    ({}, True, ["ENHANCEDSTATUSCODES", "SIZE 1048576", "PIPELINING", "STARTTLS"]),
    ({"starttls_inbound": "required"}, True, ["ENHANCEDSTATUSCODES", "SIZE 1048576", "PIPELINING", "STARTTLS"]),
    ({"starttls_inbound": "disabled"}, True, ["ENHANCEDSTATUSCODES", "SIZE 1048576", "PIPELINING"]),
], ids=["defaults", "SIZE and PIPELINING off, 8BITMIME on", "no size limit", "STARTTLS Enabled",
        "STARTTLS Required", "STARTTLS Disabled"])
def test_ehlo_advertises_what_the_settings_enable(config_changes, credentials, expected, make_server, make_credentials, configuration, run_listener):
    change(configuration, **{"max_message_size_kb": 1024, **config_changes})
    server = make_server(tls_credentials=server_certificate(make_credentials) if credentials else None)
    run_listener(server)
    with connect(server.smtp_inbound_tcp_port) as client:
        assert ehlo_lines(client) == [HOST_NAME, *expected]


def test_starttls_disabled_answers_454(make_server, make_credentials, configuration, run_listener):
    change(configuration, starttls_inbound="disabled")
    server = make_server(tls_credentials=server_certificate(make_credentials))
    run_listener(server)
    with connect(server.smtp_inbound_tcp_port) as client:
        client.ehlo()
        assert client.docmd("STARTTLS") == (454, b"4.7.0 TLS not available due to temporary reason")


@pytest.mark.parametrize("starttls", ["enabled", "required"])
def test_mail_from_before_starttls_follows_inbound_starttls(starttls, make_server, make_credentials, configuration, jane, run_listener, client_tls):
    change(configuration, starttls_inbound=starttls)
    server = make_server(tls_credentials=server_certificate(make_credentials))
    run_listener(server)
    with open_session(server, "clear", client_tls) as client:
        code, text = client.mail(SENDER)
        if starttls == "required":
            assert (code, text) == STARTTLS_FIRST
            client.rset()
            client.starttls(context=client_tls)
            client.ehlo()
            code, text = client.mail(SENDER)
        assert code == 250
        assert client.rcpt("jane@acme.test")[0] == 250
        assert client.data(MESSAGE)[0] == 250
    assert ReceivedMessage.objects.get().tls == (starttls == "required")


def test_starttls_required_with_aiosmtplib(make_server, make_credentials, configuration, jane, run_listener, client_tls):
    change(configuration, starttls_inbound="required")
    server = make_server(tls_credentials=server_certificate(make_credentials))
    run_listener(server)

    async def conversation(client):
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await client.mail(SENDER)
        await client.rset()
        await client.starttls(tls_context=client_tls)
        await client.sendmail(SENDER, ["jane@acme.test"], MESSAGE)
        return refused.value

    refused = converse(server.smtp_inbound_tcp_port, conversation)
    assert (refused.code, refused.message) == (STARTTLS_FIRST[0], STARTTLS_FIRST[1].decode())
    assert MailboxEntry.objects.get(person=jane).message.tls


# --- 3.5 AUTH: where it is offered, name variations, failures ---------------------------------------


@pytest.mark.parametrize(("options", "where", "offered"), [
    ({"smtp_inbound_tcp_auth_name_password": False}, "clear", False),
    ({"smtp_inbound_tcp_auth_name_password": True}, "clear", True),
    ({"smtp_inbound_tcp_auth_name_password": False, "smtp_inbound_ssl_auth_name_password": True}, "starttls", True),
    ({"smtp_inbound_tcp_auth_name_password": True, "smtp_inbound_ssl_auth_name_password": False}, "starttls", False),
    ({"smtp_inbound_ssl_auth_name_password": True}, "ssl", True),
    ({"smtp_inbound_ssl_auth_name_password": False}, "ssl", False),
], ids=["clear, TCP/IP N&P No", "clear, TCP/IP N&P Yes", "after STARTTLS, SSL N&P Yes",
        "after STARTTLS, SSL N&P No", "SSL port, SSL N&P Yes", "SSL port, SSL N&P No"])
def test_auth_is_offered_and_accepted_only_where_name_and_password_is_yes(
    options, where, offered, make_server, make_credentials, configuration, jane, run_listener, client_tls,
):
    server = make_server(tls_credentials=server_certificate(make_credentials), smtp_inbound_ssl_status="enabled", **options)
    run_listener(server)
    with open_session(server, where, client_tls) as client:
        assert client.has_extn("auth") == offered
        if offered:
            assert client.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
            assert auth(client, "jane@acme.test") == (235, b"2.7.0 Authentication successful")
        else:
            # Without Internet Sites the site text would mislead: Postfix's wording instead.
            assert auth(client, "jane@acme.test") == AUTH_NOT_ENABLED


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_before_and_after_starttls_and_starttls_forgets_the_earlier_auth(
    mechanism, make_server, make_credentials, configuration, jane, run_listener, client_tls,
):
    """RFC 3207 s 4.2: after STARTTLS the server discards what it knew, so the client authenticates again."""
    server = make_server(
        tls_credentials=server_certificate(make_credentials),
        smtp_inbound_tcp_auth_name_password=True, smtp_inbound_ssl_auth_anonymous=False,
    )
    run_listener(server)
    with open_session(server, "clear", client_tls) as client:
        assert auth(client, "jane@acme.test", mechanism=mechanism)[0] == 235
        client.starttls(context=client_tls)
        client.ehlo()
        assert client.mail(SENDER) == AUTH_REQUIRED
        assert auth(client, "jane@acme.test", mechanism=mechanism)[0] == 235
        assert client.sendmail(OWN_ADDRESS, ["jane@acme.test"], MESSAGE) == {}
    message = ReceivedMessage.objects.get()
    assert (message.tls, message.authenticated_as) == (True, JANE)


def test_implicit_tls_on_the_ssl_port_offers_and_accepts_auth_with_aiosmtplib(
    make_server, make_credentials, configuration, jane, run_listener, client_tls,
):
    server = make_server(
        tls_credentials=server_certificate(make_credentials), smtp_inbound_ssl_status="enabled",
        smtp_inbound_ssl_auth_anonymous=False,
    )
    run_listener(server)

    async def conversation(client):
        await client.ehlo()
        offered = client.supported_auth_methods
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as anonymous:
            await client.mail(SENDER)
        await client.rset()
        login = await client.login("jane@acme.test", PASSWORD)
        await client.sendmail(OWN_ADDRESS, ["jane@acme.test"], MESSAGE)
        return offered, anonymous.value, login

    offered, anonymous, login = converse(server.smtp_inbound_ssl_port, conversation, use_tls=True, tls_context=client_tls)
    assert sorted(offered) == ["login", "plain"]
    assert (anonymous.code, anonymous.message) == (AUTH_REQUIRED[0], AUTH_REQUIRED[1].decode())
    assert login.code == 235
    message = ReceivedMessage.objects.get()
    assert (message.local_port, message.tls, message.authenticated_as) == (server.smtp_inbound_ssl_port, True, JANE)


def test_implicit_tls_on_the_ssl_port_accepts_auth_with_smtplib(make_server, make_credentials, configuration, jane, run_listener, client_tls):
    server = make_server(tls_credentials=server_certificate(make_credentials), smtp_inbound_ssl_status="enabled")
    run_listener(server)
    with connect(server.smtp_inbound_ssl_port, tls=client_tls) as client:
        assert client.login("jane@acme.test", PASSWORD)[0] == 235
        assert client.sendmail(OWN_ADDRESS, ["jane@acme.test"], MESSAGE) == {}
    assert ReceivedMessage.objects.get().authenticated_as == JANE


@pytest.mark.parametrize(("authentication", "login"), [
    ("fewer", "jane@acme.test"),
    ("fewer", "JANE@ACME.TEST"),
    ("fewer", "Jane Doe/Sales/Acme"),
    ("fewer", "CN=Jane Doe/OU=Sales/O=Acme"),
    ("more", "jane@acme.test"),
    ("more", "jdoe"),
    ("more", "Jane Doe"),
    ("more", "Doe"),
])
def test_auth_accepts_the_name_variations_internet_authentication_allows(
    authentication, login, make_server, configuration, jane, run_listener, client_tls,
):
    server = make_server(internet_authentication=authentication, smtp_inbound_tcp_auth_name_password=True)
    run_listener(server)
    with open_session(server, "clear", client_tls) as client:
        assert auth(client, login) == (235, b"2.7.0 Authentication successful")


@pytest.mark.parametrize(("authentication", "login", "password"), [
    ("fewer", "jane@acme.test", "wrong-password"),
    ("fewer", "nobody@acme.test", PASSWORD),
    ("fewer", "jdoe", PASSWORD),
    ("fewer", "Jane Doe", PASSWORD),
    ("more", "jdoe", "wrong-password"),
    ("more", "Doe", PASSWORD),
], ids=["wrong password", "unknown login", "short name under Fewer", "first and last name under Fewer",
        "short name with a wrong password", "last name shared by two people"])
def test_failed_auth_answers_535_and_closes_the_session(
    authentication, login, password, make_server, configuration, jane, run_listener, client_tls,
):
    person("John Doe/Acme", "john@acme.test", first_name="John", last_name="Doe")
    server = make_server(internet_authentication=authentication, smtp_inbound_tcp_auth_name_password=True)
    run_listener(server)
    with open_session(server, "clear", client_tls) as client:
        assert auth(client, login, password) == AUTH_FAILED
        assert_closed(client)


def test_failed_auth_closes_the_session_for_aiosmtplib_too(make_server, configuration, jane, run_listener):
    server = make_server(smtp_inbound_tcp_auth_name_password=True)
    run_listener(server)

    async def conversation(client):
        await client.ehlo()
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
            await client.auth_plain("jane@acme.test", "wrong-password")
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await client.noop()
        return refused.value

    refused = converse(server.smtp_inbound_tcp_port, conversation)
    assert (refused.code, refused.message) == (AUTH_FAILED[0], AUTH_FAILED[1].decode())


def test_failed_auth_closes_at_once_and_ignores_pipelined_commands(make_server, configuration, jane, run_listener):
    server = make_server(smtp_inbound_tcp_auth_name_password=True, smtp_inbound_tcp_auth_anonymous=False)
    run_listener(server)
    wrong = base64.b64encode(b"\0jane@acme.test\0wrong-password").decode()
    with socket.create_connection((LOCAL, server.smtp_inbound_tcp_port), timeout=10) as sock:
        sock.sendall(f"EHLO {CLIENT_NAME}\r\nAUTH PLAIN {wrong}\r\nMAIL FROM:<{SENDER}>\r\nNOOP\r\n".encode())
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    assert received.decode().splitlines()[-1] == "535 5.7.8 Authentication credentials invalid"
    log = wait_until(lambda: SessionLog.objects.filter(server=server).first(), message="no session log was written")
    assert [event["command"] for event in log.events] == ["CONNECT", "EHLO", "AUTH"]


def test_second_auth_in_a_session_is_refused(make_server, configuration, jane, run_listener, client_tls):
    server = make_server(smtp_inbound_tcp_auth_name_password=True)
    run_listener(server)
    with open_session(server, "clear", client_tls) as client:
        assert auth(client, "jane@acme.test")[0] == 235
        assert auth(client, "jane@acme.test") == (503, b"5.5.1 Already authenticated")


@pytest.mark.parametrize(("options", "where"), [
    ({"smtp_inbound_tcp_auth_name_password": True, "smtp_inbound_tcp_auth_anonymous": False}, "clear"),
    ({"smtp_inbound_ssl_auth_anonymous": False}, "starttls"),
    ({"smtp_inbound_ssl_auth_anonymous": False}, "ssl"),
], ids=["clear, TCP/IP Anonymous No", "after STARTTLS, SSL Anonymous No", "SSL port, SSL Anonymous No"])
def test_anonymous_mail_is_refused_where_anonymous_is_no(
    options, where, make_server, make_credentials, configuration, jane, run_listener, client_tls,
):
    server = make_server(tls_credentials=server_certificate(make_credentials), smtp_inbound_ssl_status="enabled", **options)
    run_listener(server)
    with open_session(server, where, client_tls) as client:
        assert client.mail(SENDER) == AUTH_REQUIRED
        assert auth(client, "jane@acme.test")[0] == 235
        assert client.mail(OWN_ADDRESS)[0] == 250


# --- 3.5 Enforce server access settings ------------------------------------------------------------


@pytest.mark.parametrize(("access", "not_access", "allowed"), [
    ([], [], True),
    (["*"], [], True),
    (["*/Acme"], [], True),
    (["*/Sales/Acme"], [], True),
    (["Jane Doe/Sales/Acme"], [], True),
    (["Mail Users"], [], True),
    (["*/Marketing/Acme"], [], False),
    (["John Smith/Acme"], [], False),
    (["Mail Only"], [], False),
    (["*/Acme"], ["Jane Doe/Sales/Acme"], False),
    (["*/Acme"], ["Blocked"], False),
    ([], ["*/Sales/Acme"], False),
], ids=["everyone with a Person document", "wildcard *", "wildcard */Acme", "wildcard */Sales/Acme", "by name",
        "nested groups", "other wildcard", "other name", "mail-only group does not count",
        "Not access server wins by name", "Not access server wins through a group", "Not access server wildcard"])
def test_enforced_server_access_decides_who_may_authenticate(
    access, not_access, allowed, make_server, configuration, jane, run_listener, client_tls,
):
    group("Sales Staff", ["Jane Doe/Sales/Acme"])
    group("Mail Users", ["Sales Staff", "John Smith/Acme"])
    group("Mail Only", ["Jane Doe/Sales/Acme"], group_type="mail_only")
    group("Blocked", ["Sales Staff"])
    server = make_server(
        smtp_inbound_enforce_server_access=True, smtp_inbound_tcp_auth_name_password=True,
        access_server=access, not_access_server=not_access,
    )
    run_listener(server)
    with open_session(server, "clear", client_tls) as client:
        if allowed:
            assert auth(client, "jane@acme.test") == (235, b"2.7.0 Authentication successful")
        else:
            assert auth(client, "jane@acme.test") == NOT_AUTHORIZED
            assert_closed(client)


def test_server_access_is_not_checked_unless_enforced(make_server, configuration, jane, run_listener, client_tls):
    server = make_server(smtp_inbound_tcp_auth_name_password=True, not_access_server=["Jane Doe/Sales/Acme"])
    run_listener(server)
    with open_session(server, "clear", client_tls) as client:
        assert auth(client, "jane@acme.test")[0] == 235


def test_anonymous_sessions_are_not_checked_against_the_access_lists(make_server, configuration, jane, run_listener, client_tls):
    server = make_server(smtp_inbound_enforce_server_access=True, access_server=["John Smith/Acme"], not_access_server=["*"])
    run_listener(server)
    with open_session(server, "clear", client_tls) as client:
        assert client.sendmail(SENDER, ["jane@acme.test"], MESSAGE) == {}


# --- 3.7 RCPT TO: local delivery, relaying, recipient limit --------------------------------------


def test_message_for_local_person_lands_in_mailbox_with_received_header(make_server, configuration, jane, run_listener):
    server = make_server()
    run_listener(server)
    with connect(server.smtp_inbound_tcp_port) as client:
        client.ehlo()
        assert client.sendmail(SENDER, ["jane@acme.test"], MESSAGE) == {}
    entry = MailboxEntry.objects.select_related("message").get(person=jane)
    data = bytes(entry.message.data)
    assert data.startswith(b"Received: from client.example.org ([127.0.0.1])\r\n\tby mail1.acme.test with ESMTP id ")
    assert b"\r\n\tfor <jane@acme.test>;" in data
    assert data.endswith(MESSAGE)
    assert (entry.recipient, entry.message.subject, entry.message.mail_from) == ("jane@acme.test", "Hello", SENDER)
    assert not QueuedRecipient.objects.exists()


def test_message_sent_with_aiosmtplib_lands_in_every_local_mailbox(make_server, configuration, jane, run_listener):
    john = person("John Smith/Acme", "john@acme.test")
    server = make_server()
    run_listener(server)

    async def conversation(client):
        return await client.sendmail(SENDER, ["jane@acme.test", "John@Acme.test"], MESSAGE)

    errors, _reply = converse(server.smtp_inbound_tcp_port, conversation)
    assert errors == {}
    assert sorted(MailboxEntry.objects.values_list("person", "recipient")) == sorted(
        [(jane.pk, "jane@acme.test"), (john.pk, "John@Acme.test")]
    )
    assert ReceivedMessage.objects.get().subject == "Hello"


def test_unknown_local_user_is_refused_with_550(make_server, configuration, jane, run_listener):
    server = make_server()
    run_listener(server)
    with connect(server.smtp_inbound_tcp_port) as client:
        client.ehlo()
        client.mail(SENDER)
        assert client.rcpt("nobody@acme.test") == USER_UNKNOWN
    assert nothing_stored()


@pytest.mark.parametrize(("internal_hosts", "authenticate", "accepted"), [
    (["127.0.0.0/8", "::1"], False, True),
    (["192.0.2.0/24"], False, False),
    (["192.0.2.0/24"], True, True),
], ids=["internal host", "external host", "authenticated user from an external host"])
def test_relay_is_judged_by_the_anti_relay_settings(
    internal_hosts, authenticate, accepted, make_server, configuration, jane, run_listener, client_tls,
):
    change(configuration, internal_hosts=internal_hosts)
    server = make_server(smtp_inbound_tcp_auth_name_password=True)
    run_listener(server)
    with open_session(server, "clear", client_tls) as client:
        if authenticate:
            assert auth(client, "jane@acme.test")[0] == 235
        client.mail(OWN_ADDRESS if authenticate else SENDER)
        if not accepted:
            assert client.rcpt("bob@example.org") == RELAY_REJECTED
            client.rset()
            return
        assert client.rcpt("bob@example.org")[0] == 250
        assert client.data(MESSAGE)[0] == 250
    queued = QueuedRecipient.objects.select_related("message").get()
    assert (queued.recipient, queued.state) == ("bob@example.org", QueuedRecipient.State.QUEUED)
    assert bytes(queued.message.data).endswith(MESSAGE)
    assert not MailboxEntry.objects.exists()


def test_relay_refused_for_aiosmtplib_and_nothing_queued(make_server, configuration, run_listener):
    change(configuration, internal_hosts=["192.0.2.0/24"])
    server = make_server()
    run_listener(server)

    async def conversation(client):
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await client.sendmail(SENDER, ["bob@example.org"], MESSAGE)
        return refused.value.recipients[0]

    refused = converse(server.smtp_inbound_tcp_port, conversation)
    assert (refused.code, refused.message) == (RELAY_REJECTED[0], RELAY_REJECTED[1].decode())
    assert nothing_stored()


def test_recipients_past_the_limit_get_452_and_the_others_are_kept(make_server, configuration, run_listener):
    change(configuration, max_recipients=2)
    server = make_server()
    run_listener(server)
    with connect(server.smtp_inbound_tcp_port) as client:
        client.ehlo()
        client.mail(SENDER)
        assert client.rcpt("a@example.org")[0] == 250
        assert client.rcpt("b@example.org")[0] == 250
        assert client.rcpt("c@example.org") == TOO_MANY_RECIPIENTS
        assert client.data(MESSAGE)[0] == 250
    assert sorted(QueuedRecipient.objects.values_list("recipient", flat=True)) == ["a@example.org", "b@example.org"]


# --- 3.8 DATA: size limit, durable storage -------------------------------------------------------


@pytest.mark.parametrize("declared", [True, False], ids=["declared with SIZE=", "found in the data"])
def test_message_over_the_size_limit_gets_552_and_nothing_is_stored(declared, make_server, configuration, jane, run_listener):
    change(configuration, max_message_size_kb=1)
    server = make_server()
    run_listener(server)
    with connect(server.smtp_inbound_tcp_port) as client:
        client.ehlo()
        if declared:
            assert client.mail(SENDER, [f"SIZE={len(OVERSIZE)}"]) == TOO_LARGE
        else:
            assert client.mail(SENDER)[0] == 250
            assert client.rcpt("jane@acme.test")[0] == 250
            assert client.data(OVERSIZE) == TOO_LARGE
        assert nothing_stored()
        assert client.sendmail(SENDER, ["jane@acme.test"], MESSAGE) == {}
    assert MailboxEntry.objects.count() == 1


def test_aiosmtplib_declares_the_size_and_is_refused_at_mail_from(make_server, configuration, jane, run_listener):
    change(configuration, max_message_size_kb=1)
    server = make_server()
    run_listener(server)

    async def conversation(client):
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await client.sendmail(SENDER, ["jane@acme.test"], OVERSIZE)
        return refused.value

    refused = converse(server.smtp_inbound_tcp_port, conversation)
    assert (refused.code, refused.message) == (TOO_LARGE[0], TOO_LARGE[1].decode())
    assert nothing_stored()


@pytest.fixture
def mailbox_refuses_inserts(transactional_db):
    """Make the database itself refuse new mailbox entries, as a full disk would; call the result to stop."""
    create, drop = {
        "sqlite": (
            ["CREATE TRIGGER refuse_mailbox BEFORE INSERT ON smtpservice_mailboxentry "
             "BEGIN SELECT RAISE(ABORT, 'disk full'); END"],
            ["DROP TRIGGER IF EXISTS refuse_mailbox"],
        ),
        "postgresql": (
            ["CREATE FUNCTION refuse_mailbox() RETURNS trigger LANGUAGE plpgsql AS "
             "$$ BEGIN RAISE EXCEPTION 'disk full'; END $$",
             "CREATE TRIGGER refuse_mailbox BEFORE INSERT ON smtpservice_mailboxentry "
             "FOR EACH ROW EXECUTE FUNCTION refuse_mailbox()"],
            ["DROP TRIGGER IF EXISTS refuse_mailbox ON smtpservice_mailboxentry", "DROP FUNCTION IF EXISTS refuse_mailbox()"],
        ),
    }[connection.vendor]

    def execute(statements):
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)

    execute(create)
    yield lambda: execute(drop)
    execute(drop)


def test_storage_failure_answers_451_saves_nothing_and_the_listener_keeps_serving(
    make_server, configuration, jane, run_listener, mailbox_refuses_inserts,
):
    server = make_server()
    run_listener(server)
    with connect(server.smtp_inbound_tcp_port) as client:
        client.ehlo()
        client.mail(SENDER)
        client.rcpt("jane@acme.test")
        client.rcpt("bob@example.org")
        assert client.data(MESSAGE) == STORAGE_FAILED
    assert nothing_stored()

    mailbox_refuses_inserts()
    with connect(server.smtp_inbound_tcp_port) as client:
        assert client.sendmail(SENDER, ["jane@acme.test", "bob@example.org"], MESSAGE) == {}
    assert MailboxEntry.objects.get().person == jane
    assert QueuedRecipient.objects.get().recipient == "bob@example.org"


# --- 3.9 Error limit ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad_command", [
    "XYZZY", "RCPT TO:<jane@acme.test>", "MAIL FROM:", "DATA",
], ids=["unknown command", "RCPT before MAIL", "MAIL without an address", "DATA before RCPT"])
def test_error_limit_answers_421_instead_of_the_next_error_and_closes(bad_command, make_server, configuration, run_listener):
    change(configuration, error_limit=6)
    server = make_server()
    run_listener(server)
    with connect(server.smtp_inbound_tcp_port) as client:
        client.ehlo()
        for _error in range(6):
            code, _text = client.docmd(bad_command)
            assert 400 <= code < 600 and code != 421
        assert client.noop()[0] == 250
        assert client.docmd(bad_command) == ERROR_LIMIT
        assert_closed(client)


def test_refused_greeting_replies_count_toward_the_error_limit(make_server, configuration, run_listener):
    change(configuration, error_limit=2, connection_deny_hosts=["127.0.0.1"])
    server = make_server()
    run_listener(server)
    with connect(server.smtp_inbound_tcp_port) as client:
        assert client.docmd("EHLO client.example.org")[0] == 503
        assert client.docmd("NOOP")[0] == 503
        assert client.docmd("NOOP") == ERROR_LIMIT
        assert_closed(client)


# --- Password hashing off the event loop ------------------------------------------------------------


class SlowPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """PBKDF2 with enough iterations that checking one password takes about a second."""

    iterations = 3_000_000


def test_slow_password_hash_does_not_stall_other_sessions(settings, make_server, configuration, run_listener):
    settings.PASSWORD_HASHERS = [f"{__name__}.SlowPBKDF2PasswordHasher"]
    person("Sam Slow/Acme", "sam@acme.test")
    server = make_server(smtp_inbound_tcp_auth_name_password=True)
    run_listener(server)
    port = server.smtp_inbound_tcp_port
    login_done = threading.Event()

    def slow_login():
        try:
            with connect(port) as client:
                client.ehlo()
                started = time.monotonic()
                return auth(client, "sam@acme.test"), time.monotonic() - started
        finally:
            login_done.set()

    latencies = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        login = pool.submit(slow_login)
        while not login_done.is_set():
            started = time.monotonic()
            with connect(port) as other:
                assert other.greeting[0] == 220
                assert other.noop()[0] == 250
            latencies.append(time.monotonic() - started)
            login_done.wait(0.05)
        reply, login_seconds = login.result()
    assert reply[0] == 235
    assert max(latencies) < login_seconds / 3, f"a session waited {max(latencies):.2f} s during a {login_seconds:.2f} s login"
    assert len(latencies) >= 3, "the login finished before other sessions could be measured"


# --- 3.10 Live settings ---------------------------------------------------------------------------


def test_changed_port_rebinds_live_and_session_in_progress_completes(make_server, configuration, jane, run_listener):
    server = make_server()
    old_port, new_port = server.smtp_inbound_tcp_port, free_port()
    run_listener(server)
    ongoing = connect(old_port)
    ongoing.ehlo()
    ongoing.mail(SENDER)

    change(server, smtp_inbound_tcp_port=new_port)
    wait_until(lambda: greeting_code(new_port) == 220, timeout=2, message="the new port did not answer within 2 seconds")
    assert greeting_code(old_port) is None

    ongoing.rcpt("jane@acme.test")
    assert ongoing.data(MESSAGE)[0] == 250
    ongoing.quit()
    assert MailboxEntry.objects.filter(person=jane).count() == 1


def test_changed_setting_applies_to_new_connections_within_one_second(make_server, configuration, run_listener):
    server = make_server()
    run_listener(server, poll_interval=POLL_INTERVAL)
    port = server.smtp_inbound_tcp_port
    with connect(port) as ongoing:
        ongoing.ehlo()
        ongoing.mail(SENDER)

        change(configuration, max_recipients=1)

        def second_recipient_refused():
            with connect(port) as client:
                client.ehlo()
                client.mail(SENDER)
                client.rcpt("a@example.org")
                return client.rcpt("b@example.org") == TOO_MANY_RECIPIENTS

        wait_until(second_recipient_refused, timeout=1, message="the new limit did not apply within one second")
        assert ongoing.rcpt("a@example.org")[0] == 250
        assert ongoing.rcpt("b@example.org")[0] == 250, "a session in progress keeps the settings it started with"


def test_added_deny_host_applies_to_new_connections_within_one_second(make_server, configuration, run_listener):
    server = make_server()
    run_listener(server, poll_interval=POLL_INTERVAL)
    port = server.smtp_inbound_tcp_port
    assert greeting_code(port) == 220

    change(configuration, connection_deny_hosts=["127.0.0.1"])

    def denied():
        with connect(port) as client:
            return client.greeting == CONNECTION_DENIED

    wait_until(denied, timeout=1, message="the deny list did not apply within one second")


def test_port_that_cannot_be_bound_is_reported_while_the_other_serves_and_is_bound_once_free(
    make_server, make_credentials, configuration, run_listener, client_tls,
):
    server = make_server(tls_credentials=server_certificate(make_credentials), smtp_inbound_ssl_status="enabled")
    tcp_port, ssl_port = server.smtp_inbound_tcp_port, server.smtp_inbound_ssl_port

    def tcp_entry():
        return next(port for port in ListenerStatus.objects.get(server=server).ports if port["kind"] == "tcp")

    blocker = socket.socket()
    try:
        blocker.bind((LOCAL, tcp_port))
        blocker.listen()
        run_listener(server, heartbeat_interval=0.2)
        entry = tcp_entry()
        assert (entry["port"], entry["address"], entry["configured"], entry["bound"]) == (tcp_port, LOCAL, True, False)
        assert "address already in use" in entry["error"].lower()
        assert greeting_code(ssl_port, tls=client_tls) == 220
    finally:
        blocker.close()

    wait_until(lambda: greeting_code(tcp_port) == 220, message="the freed port was not bound by the retry")
    wait_until(lambda: tcp_entry()["bound"] and not tcp_entry()["error"], message="the status still shows the error")


# --- Session log and listener status --------------------------------------------------------------


def test_session_log_records_client_port_tls_user_and_each_decision(
    make_server, make_credentials, configuration, jane, run_listener, client_tls,
):
    server = make_server(tls_credentials=server_certificate(make_credentials))
    run_listener(server)
    with open_session(server, "starttls", client_tls) as client:
        assert auth(client, "jane@acme.test")[0] == 235
        client.sendmail(OWN_ADDRESS, ["jane@acme.test", "nobody@acme.test"], MESSAGE)

    log = wait_until(lambda: SessionLog.objects.filter(server=server).first(), message="no session log was written")
    assert (
        log.client_address, log.local_address, log.local_port, log.port_kind, log.tls, log.authenticated_as,
        log.helo, log.messages_accepted, log.revision,
    ) == (LOCAL, LOCAL, server.smtp_inbound_tcp_port, "tcp", True, JANE, CLIENT_NAME, 1, current_revision())
    assert [(event["command"], event["rule"], event["reply"][:3]) for event in log.events] == [
        ("CONNECT", "internet_sites_disabled", "220"),
        ("EHLO", "ehlo", "250"),
        ("STARTTLS", "starttls_offered", "220"),
        ("EHLO", "ehlo", "250"),
        ("AUTH", "authenticated", "235"),
        ("MAIL", "mail_from_allowed", "250"),
        ("RCPT", "local", "250"),
        ("RCPT", "user_unknown", "550"),
        ("DATA", "stored", "250"),
        ("QUIT", "quit", "221"),
    ]
    assert all(event["detail"] for event in log.events)
    assert log.last_reply.startswith("221")


def test_session_log_records_a_refused_connection(make_server, configuration, run_listener):
    change(configuration, connection_deny_hosts=["127.0.0.0/8"])
    server = make_server()
    run_listener(server)
    with connect(server.smtp_inbound_tcp_port) as client:
        client.docmd("NOOP")

    log = wait_until(lambda: SessionLog.objects.filter(server=server).first(), message="no session log was written")
    assert [(event["command"], event["rule"], event["reply"]) for event in log.events] == [
        ("CONNECT", "connection_deny_hosts", "554 5.7.1 Connection denied for policy reasons."),
        ("NOOP", "connection_deny_hosts", "503 5.7.1 Connection denied for policy reasons."),
        ("QUIT", "quit", "221 2.0.0 Bye"),
    ]
    assert "127.0.0.0/8" in log.events[0]["detail"]


def test_listener_status_reports_revision_open_sessions_and_heartbeat(make_server, configuration, run_listener):
    server = make_server()
    listener = run_listener(server)

    def status():
        return ListenerStatus.objects.get(server=server)

    first = status()
    assert (first.running, first.pid, first.revision, first.open_sessions) == (True, os.getpid(), current_revision(), 0)
    assert [(port["kind"], port["port"], port["configured"], port["bound"]) for port in first.ports] == [
        ("tcp", server.smtp_inbound_tcp_port, True, True), ("ssl", server.smtp_inbound_ssl_port, False, False),
    ]
    assert not first.is_stale

    with connect(server.smtp_inbound_tcp_port) as client:
        client.noop()
        wait_until(lambda: status().open_sessions == 1, message="the open session was not reported")
    wait_until(lambda: status().open_sessions == 0 and status().heartbeat_at > first.heartbeat_at)

    change(configuration, max_recipients=5)
    wait_until(lambda: status().revision == current_revision() != first.revision, message="the new revision was not reported")

    listener.stop()
    assert not status().running
    assert status().is_stale
