"""STARTTLS and the SSL port: no clear-text command survives the handshake, TLS is started once, the
handshake is bounded in time, only TLS 1.2+ with AEAD suites is spoken, and the SSL port offers AUTH.

Sources: RFC 3207 s 4.2 (discard what was learnt before TLS), aiosmtpd advisory GHSA-wgjv-9j3q-jhg8
(CVE-2024-34083, STARTTLS command injection), RFC 9325 s 4.1-4.2 (TLS 1.2 or later, AEAD cipher suites).
"""
import smtplib
import ssl
import subprocess
import warnings

import pytest

from smtpservice.core.limits import Limits
from smtpservice.models import ReceivedMessage, SessionLog
from tests.security.smtp_client import CLIENT_NAME, LOCAL, RawClient, greeted
from tests.smtpservice.conftest import HOST_NAME, PASSWORD, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

HANDSHAKE_TIMEOUT = 0.5
ALREADY_ACTIVE = (503, "5.5.1 TLS already active")


@pytest.fixture
def tls_server(make_server, make_credentials, configuration, jane, run_listener):
    """A listener with STARTTLS on its TCP/IP port and its SSL port Enabled, and a short TLS handshake timeout."""
    credentials = make_credentials("mail1-cert", HOST_NAME, LOCAL, "localhost")
    server = make_server(tls_credentials=credentials.name, smtp_inbound_ssl_status="enabled")
    run_listener(server, limits=Limits(tls_handshake_timeout=HANDSHAKE_TIMEOUT), idle_timeout=60)
    return server


def test_commands_pipelined_in_clear_text_after_starttls_are_discarded(tls_server, client_tls):
    client = greeted(tls_server.smtp_inbound_tcp_port)
    client.ehlo()
    client.send(b"STARTTLS\r\nMAIL FROM:<attacker@example.org>\r\nRCPT TO:<jane@acme.test>\r\n")
    assert client.reply() == (220, "2.0.0 Ready to start TLS")
    assert client.pending == b"", "the listener answered the injected commands in clear text"
    client.sock = client_tls.wrap_socket(client.sock, server_hostname=LOCAL)
    client.ehlo()
    assert client.command("RCPT TO:<jane@acme.test>")[0] == 503, "the injected MAIL FROM survived the handshake"
    assert client.command("QUIT")[0] == 221
    client.close()

    log = wait_until(lambda: SessionLog.objects.first(), message="no session log")
    assert [(event["command"], event["rule"]) for event in log.events] == [
        ("CONNECT", "internet_sites_disabled"), ("EHLO", "ehlo"), ("STARTTLS", "starttls_offered"), ("EHLO", "ehlo"),
        ("RCPT", "need_mail"), ("QUIT", "quit"),
    ]


def test_clear_text_sent_after_the_220_breaks_the_handshake_and_is_never_executed(tls_server, client_tls):
    client = greeted(tls_server.smtp_inbound_tcp_port)
    client.ehlo()
    assert client.command("STARTTLS")[0] == 220
    client.send(b"MAIL FROM:<attacker@example.org>\r\nRCPT TO:<jane@acme.test>\r\nDATA\r\n")
    assert client.closed_within(3)
    client.close()
    assert not ReceivedMessage.objects.exists()


@pytest.mark.parametrize("port", ["starttls", "ssl"])
def test_starttls_inside_tls_is_refused_with_503(port, tls_server, client_tls):
    if port == "ssl":
        client = smtplib.SMTP_SSL(LOCAL, tls_server.smtp_inbound_ssl_port, local_hostname=CLIENT_NAME, timeout=10,
                                  context=client_tls)
    else:
        client = smtplib.SMTP(LOCAL, tls_server.smtp_inbound_tcp_port, local_hostname=CLIENT_NAME, timeout=10)
        client.starttls(context=client_tls)
    with client:
        client.ehlo()
        assert client.docmd("STARTTLS") == (ALREADY_ACTIVE[0], ALREADY_ACTIVE[1].encode())
        assert client.noop()[0] == 250


@pytest.mark.parametrize("sent", [b"", b"\x16\x03\x01\x02\x00"], ids=["nothing", "half a ClientHello"])
def test_a_client_that_stalls_the_ssl_port_handshake_is_dropped_after_the_timeout(sent, tls_server):
    client = RawClient(tls_server.smtp_inbound_ssl_port)
    client.send(sent)
    assert client.silent_for(HANDSHAKE_TIMEOUT / 2)
    assert client.closed_within(HANDSHAKE_TIMEOUT + 2), "the stalled handshake was not dropped"
    client.close()


def test_a_client_that_stalls_after_starttls_is_dropped_after_the_timeout(tls_server):
    client = greeted(tls_server.smtp_inbound_tcp_port)
    client.ehlo()
    assert client.command("STARTTLS")[0] == 220
    assert client.closed_within(HANDSHAKE_TIMEOUT + 2), "the stalled handshake was not dropped"
    client.close()


def client_context(maximum, ciphers):
    """A client context offering TLS versions up to ``maximum`` and only ``ciphers`` (no certificate check)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers(ciphers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 are deprecated: that is the point
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = maximum
    return context


CBC_ONLY = "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA256:AES128-SHA256:AES128-SHA"
AEAD_TLS12 = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256"


@pytest.mark.parametrize(("maximum", "ciphers", "reason"), [
    (ssl.TLSVersion.TLSv1_1, "DEFAULT:@SECLEVEL=0", "UNSUPPORTED_PROTOCOL"),
    (ssl.TLSVersion.TLSv1, "DEFAULT:@SECLEVEL=0", "UNSUPPORTED_PROTOCOL"),
    (ssl.TLSVersion.TLSv1_2, CBC_ONLY, "NO_SHARED_CIPHER"),
], ids=["TLS 1.1", "TLS 1.0", "TLS 1.2 with CBC suites only"])
@pytest.mark.parametrize("port", ["ssl", "starttls"])
def test_old_protocols_and_cbc_suites_are_refused(maximum, ciphers, reason, port, tls_server):
    """The client's handshake fails, and the session log shows the listener refused it and why.

    (asyncio drops the connection without flushing OpenSSL's alert, so the client sees an EOF.)
    """
    context = client_context(maximum, ciphers)
    client = RawClient(
        tls_server.smtp_inbound_ssl_port if port == "ssl" else tls_server.smtp_inbound_tcp_port,
    )
    if port == "starttls":
        assert client.reply()[0] == 220
        client.ehlo()
        assert client.command("STARTTLS")[0] == 220
    with pytest.raises(ssl.SSLError):
        context.wrap_socket(client.sock, server_hostname=LOCAL)
    client.close()

    log = wait_until(lambda: SessionLog.objects.first(), message="no session log")
    failure = next(event for event in log.events if event["command"] == "TLS")
    assert (failure["rule"], reason in failure["detail"]) == ("tls_handshake_failed", True), failure
    assert log.tls is (port == "ssl")  # the SSL port counts as TLS from the first byte, even when it fails


@pytest.mark.parametrize(("maximum", "ciphers", "version"), [
    (ssl.TLSVersion.TLSv1_2, AEAD_TLS12, "TLSv1.2"),
    (ssl.TLSVersion.TLSv1_3, "DEFAULT", "TLSv1.3"),
], ids=["TLS 1.2 AEAD", "TLS 1.3"])
def test_tls_12_with_aead_suites_and_tls_13_are_accepted(maximum, ciphers, version, tls_server):
    context = client_context(maximum, ciphers)
    with smtplib.SMTP_SSL(LOCAL, tls_server.smtp_inbound_ssl_port, local_hostname=CLIENT_NAME, timeout=10,
                          context=context) as client:
        assert client.noop()[0] == 250
        assert client.sock.version() == version
        cipher = client.sock.cipher()[0]
    assert "GCM" in cipher or "CHACHA20" in cipher, cipher


def test_the_ssl_port_offers_and_accepts_auth(tls_server, client_tls, jane):
    with smtplib.SMTP_SSL(LOCAL, tls_server.smtp_inbound_ssl_port, local_hostname=CLIENT_NAME, timeout=10,
                          context=client_tls) as client:
        client.ehlo()
        assert client.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        assert client.login("jane@acme.test", PASSWORD)[0] == 235
        assert client.sendmail("jane@acme.test", ["jane@acme.test"], b"Subject: over SSL\r\n\r\nHi.\r\n") == {}
    message = ReceivedMessage.objects.get()
    assert (message.tls, message.authenticated_as) == (True, jane.full_name)


@pytest.mark.parametrize("mode", ["--tls", "--tls-on-connect"], ids=["STARTTLS", "SSL port"])
def test_swaks_authenticates_over_tls_and_sends(mode, tls_server, jane):
    """A third-party client (swaks, Perl's IO::Socket::SSL) does the same, on both ports."""
    port = tls_server.smtp_inbound_ssl_port if mode == "--tls-on-connect" else tls_server.smtp_inbound_tcp_port
    result = subprocess.run(
        ["swaks", "--server", f"{LOCAL}:{port}", mode, "--auth", "PLAIN", "--auth-user", "jane@acme.test",
         "--auth-password", PASSWORD, "--from", "jane@acme.test", "--to", "jane@acme.test",
         "--helo", CLIENT_NAME, "--timeout", "10", "--header", "Subject: via swaks"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<~  235 2.7.0 Authentication successful" in result.stdout
    message = ReceivedMessage.objects.get()
    assert (message.subject, message.tls, message.authenticated_as) == ("via swaks", True, jane.full_name)
