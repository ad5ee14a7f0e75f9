"""Limits: what one client may cost the listener, and what it is told when it goes past them.

Sources: RFC 5321 s 4.5.3.1 (line lengths, recipients), s 4.5.3.2 (timeouts), s 6.3 (loops), s 3.8 and
4.2.4 (421 when the service cannot go on); RFC 1870 (SIZE); Postfix's defences of the same names
(smtpd_client_connection_count_limit, smtpd_min_data_rate, smtpd_junk_command_limit,
smtpd_forbidden_commands, hopcount_limit).
"""
import smtplib
import time

import pytest

from directory import models
from smtpservice.core import policy
from smtpservice.core.limits import Limits
from smtpservice.models import ReceivedMessage
from tests.security.smtp_client import CLIENT_NAME, LOCAL, RawClient, greeted
from tests.smtpservice.conftest import HOST_NAME, save, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGE = b"From: sender@example.org\r\nTo: jane@acme.test\r\nSubject: limits\r\n\r\nHello.\r\n"


@pytest.fixture
def start(make_server, configuration, jane, run_listener):
    """Start a listener with the given Limits and Configuration Settings changes; returns its Server document."""

    def start_listener(config=None, **limits):
        if config:
            save(models.ConfigurationSettings, config, instance=configuration)
        server = make_server()
        run_listener(server, limits=Limits(**{"watch_interval": 0.05, **limits}))
        return server

    return start_listener


def ready(port, source=LOCAL):
    """A raw client after the greeting and EHLO, with a transaction open for Jane."""
    client = greeted(port, source)
    client.ehlo()
    assert client.command("MAIL FROM:<sender@example.org>")[0] == 250
    assert client.command("RCPT TO:<jane@acme.test>")[0] == 250
    return client


# --- line lengths and sizes -----------------------------------------------------------------------


@pytest.mark.parametrize("length", [600, 3000], ids=["over 512", "over the reader's 1001"])
def test_a_command_line_over_512_bytes_gets_500_and_the_session_goes_on(length, start):
    client = greeted(start().smtp_inbound_tcp_port)
    client.ehlo()
    assert client.command("NOOP " + "x" * length) == (500, "5.5.2 Line too long")
    assert client.command("NOOP")[0] == 250
    client.close()


def test_a_text_line_over_1000_bytes_refuses_the_message(start):
    port = start().smtp_inbound_tcp_port
    client = ready(port)
    assert client.command("DATA")[0] == 354
    client.send(b"Subject: long\r\n\r\n" + b"y" * 1500 + b"\r\n.\r\n")
    assert client.reply() == (500, "5.5.2 Line too long (RFC 5321 s 4.5.3.1.6)")
    assert client.command("NOOP")[0] == 250
    client.close()
    assert not ReceivedMessage.objects.exists()

    client = ready(port)
    assert client.command("DATA")[0] == 354
    client.send(b"Subject: long\r\n\r\n" + b"y" * 998 + b"\r\n.\r\n")
    assert client.reply()[0] == 250
    client.close()


def test_size_is_advertised_and_enforced_at_mail_from_and_after_data(start):
    port = start(config={"max_message_size_kb": 1}).smtp_inbound_tcp_port
    with smtplib.SMTP(LOCAL, port, local_hostname=CLIENT_NAME, timeout=10) as client:
        client.ehlo()
        assert client.esmtp_features["size"] == "1024"
        assert client.mail("sender@example.org", ["SIZE=1025"]) == (552, policy.TOO_LARGE[1].encode())
        assert client.docmd("MAIL", "FROM:<sender@example.org> SIZE=lots")[0] == 501
        assert client.mail("sender@example.org", ["SIZE=1024"])[0] == 250
        client.rcpt("jane@acme.test")
        assert client.data(MESSAGE + (b"z" * 70 + b"\r\n") * 30) == (552, policy.TOO_LARGE[1].encode())
    assert not ReceivedMessage.objects.exists()


def test_recipients_past_the_limit_get_452(start):
    with ready(start(config={"max_recipients": 2}).smtp_inbound_tcp_port) as client:
        assert client.command("RCPT TO:<jane@acme.test>")[0] == 250
        assert client.command("RCPT TO:<jane@acme.test>") == (452, "4.5.3 Too many recipients")


def test_errors_past_the_error_limit_close_the_session_with_421(start):
    client = greeted(start(config={"error_limit": 3}).smtp_inbound_tcp_port)
    for _error in range(3):
        assert client.command("RCPT TO:<jane@acme.test>")[0] == 503
    assert client.command("RCPT TO:<jane@acme.test>") == policy.ERROR_LIMIT
    assert client.closed_within(2)
    client.close()


# --- connections ---------------------------------------------------------------------------------------


def test_sessions_past_the_limit_per_address_get_421_and_other_addresses_still_connect(start):
    port = start(max_sessions_per_client=3).smtp_inbound_tcp_port
    sessions = [greeted(port) for _n in range(3)]
    with RawClient(port) as fourth:
        assert fourth.reply() == (421, "4.7.0 Too many connections from your address, try again later")
        assert fourth.closed_within(2)
    with greeted(port, "127.0.0.2") as other:
        assert other.command("NOOP")[0] == 250
    sessions.pop().close()

    def admitted():
        with RawClient(port) as client:
            return client.reply()[0] == 220

    wait_until(admitted, message="a closed session still counted against its address")
    for session in sessions:
        session.close()


def test_sessions_past_the_total_limit_get_421(start):
    port = start(max_sessions=3).smtp_inbound_tcp_port
    sessions = [greeted(port, f"127.0.0.{10 + n}") for n in range(3)]
    with RawClient(port, "127.0.0.20") as fourth:
        assert fourth.reply() == (421, "4.3.2 Too many connections, try again later")
        assert fourth.closed_within(2)
    for session in sessions:
        session.close()


def test_the_ssl_port_drops_a_connection_over_the_limit_without_a_handshake(
    make_server, make_credentials, configuration, run_listener,
):
    credentials = make_credentials("mail1-cert", HOST_NAME, LOCAL)
    server = make_server(tls_credentials=credentials.name, smtp_inbound_ssl_status="enabled")
    run_listener(server, limits=Limits(max_sessions_per_client=1, tls_handshake_timeout=0.3))
    port = server.smtp_inbound_ssl_port
    with RawClient(port) as first:
        assert first.silent_for(0.1)
        with RawClient(port) as second:
            assert second.closed_within(2)
            assert second.pending == b""
    # Handshakes that fail or time out free their place.
    for _attempt in range(3):
        with RawClient(port) as stalled:
            assert stalled.closed_within(2)
    with RawClient(port) as last:
        assert last.silent_for(0.1), "a failed handshake still holds the address's only place"


# --- time ---------------------------------------------------------------------------------------------


def test_a_session_past_its_lifetime_gets_421_even_while_busy(start):
    client = greeted(start(session_lifetime=0.6).smtp_inbound_tcp_port)
    started = time.monotonic()
    code = 250
    while code == 250 and time.monotonic() - started < 3:
        code, text = client.command("NOOP")
        time.sleep(0.05)
    assert (code, text) == (421, "4.4.2 Session time limit exceeded, closing connection")
    assert 0.6 <= time.monotonic() - started < 2
    assert client.closed_within(2)
    client.close()


def test_data_sent_slower_than_the_minimum_rate_gets_421_and_nothing_is_stored(start):
    client = ready(start(data_grace=0.3, min_data_rate=1000).smtp_inbound_tcp_port)
    assert client.command("DATA")[0] == 354
    started = time.monotonic()
    client.send(b"slow\r\n")
    while client.silent_for(0.1) and time.monotonic() - started < 5:
        client.send(b"slow\r\n")
    assert client.reply() == (421, "4.4.2 Data rate too low, closing connection")
    assert time.monotonic() - started < 2
    assert client.closed_within(2)
    client.close()
    assert not ReceivedMessage.objects.exists()


def test_a_large_message_sent_at_a_normal_rate_is_not_cut_off(start):
    client = ready(start(data_grace=0.1, min_data_rate=1000).smtp_inbound_tcp_port)
    assert client.command("DATA")[0] == 354
    body = (b"z" * 76 + b"\r\n") * 4000
    for offset in range(0, len(body), 40_000):
        client.send(body[offset:offset + 40_000])
        time.sleep(0.05)
    client.send(b".\r\n")
    assert client.reply()[0] == 250
    client.close()


# --- junk -----------------------------------------------------------------------------------------------


def test_junk_commands_past_the_limit_get_421_and_an_accepted_message_resets_the_count(start):
    client = greeted(start(junk_commands=4).smtp_inbound_tcp_port)
    client.ehlo()
    for command in ("NOOP", "RSET", "HELP"):
        assert client.command(command)[0] in (250, 214)
    assert client.command("MAIL FROM:<sender@example.org>")[0] == 250
    assert client.command("RCPT TO:<jane@acme.test>")[0] == 250
    assert client.command("DATA")[0] == 354
    client.send(MESSAGE + b".\r\n")
    assert client.reply()[0] == 250
    for _noop in range(4):
        assert client.command("NOOP")[0] == 250
    assert client.command("NOOP") == (421, "4.7.0 Too many commands without mail, closing connection")
    assert client.closed_within(2)
    client.close()


@pytest.mark.parametrize("request_line", [
    b"GET / HTTP/1.1\r\nHost: mail1.acme.test\r\n\r\n",
    b"POST /login HTTP/1.1\r\nContent-Length: 4\r\n\r\nuser",
    b"HEAD / HTTP/1.0\r\n\r\n",
    b"CONNECT smtp.example.org:25 HTTP/1.1\r\n\r\n",
    b"PUT /x HTTP/1.1\r\n\r\n",
], ids=["GET", "POST", "HEAD", "CONNECT", "PUT"])
def test_an_http_request_on_the_smtp_port_is_closed_at_once_without_a_reply(request_line, start):
    client = greeted(start().smtp_inbound_tcp_port)
    client.send(request_line)
    assert client.closed_within(1)
    assert client.pending == b""
    client.close()


# --- loops and errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("hops", "expected"), [(50, 250), (51, 554)])
def test_a_message_with_too_many_received_headers_gets_554_5_4_6(hops, expected, start):
    client = ready(start().smtp_inbound_tcp_port)
    assert client.command("DATA")[0] == 354
    trace = b"".join(b"Received: from hop%d.example.org by hop%d.example.org; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % (n, n + 1)
                     for n in range(hops))
    client.send(trace + MESSAGE + b".\r\n")
    code, text = client.reply()
    assert code == expected
    if expected == 554:
        assert text == "5.4.6 Too many hops"
    client.close()
    assert ReceivedMessage.objects.exists() is (expected == 250)


def test_an_internal_error_answers_a_generic_451_and_reveals_nothing(start, monkeypatch):
    def broken(snap, argument):
        raise RuntimeError("secret internal detail /srv/app/settings.py")

    monkeypatch.setattr(policy, "vrfy_decision", broken)
    client = greeted(start().smtp_inbound_tcp_port)
    client.ehlo()
    assert client.command("VRFY jane@acme.test") == (451, "4.3.0 Local error in processing")
    assert client.command("NOOP")[0] == 250
    client.close()
