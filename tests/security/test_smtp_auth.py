"""AUTH: offered in clear only when configured, never inside a transaction, one identity, clean 5xx for
malformed exchanges, brute force slowed then stopped, and 454 (never 235) when checking fails.

Sources: RFC 4954 (s 4: 503 inside a transaction, 500 5.5.6 for an over-long line, "*" cancels; s 6:
454 4.7.0 temporary failure), RFC 4616 s 2 (authorization identity), RFC 8314 s 3 (no passwords in
clear), OWASP ASVS 2.2.1 (anti-automation: throttling per account and per source).
"""
import base64
import smtplib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth.hashers import get_hasher

from directory import models
from smtpservice.core.limits import Limits
from tests.security.smtp_client import CLIENT_NAME, LOCAL, greeted
from tests.smtpservice.conftest import PASSWORD, save

pytestmark = pytest.mark.django_db(transaction=True)

THROTTLED = (421, b"4.7.0 Too many failed authentication attempts, try again later")
AUTH_FAILED = (535, b"5.7.8 Authentication credentials invalid")


def plain(login, password=PASSWORD, authzid=""):
    return base64.b64encode(f"{authzid}\0{login}\0{password}".encode()).decode()


def client_from(port, source=LOCAL):
    """An smtplib client connected from ``source`` (a 127.0.0.0/8 address), after EHLO."""
    client = smtplib.SMTP(LOCAL, port, local_hostname=CLIENT_NAME, timeout=10, source_address=(source, 0))
    client.ehlo()
    return client


def login(port, source, user, password=PASSWORD):
    """(code, text, seconds) of one AUTH PLAIN in a new session from ``source``."""
    with client_from(port, source) as client:
        started = time.monotonic()
        code, text = client.docmd("AUTH", f"PLAIN {plain(user, password)}")
        return code, text, time.monotonic() - started


@pytest.fixture
def clear_auth(make_server, configuration, jane, run_listener):
    """A listener that offers AUTH in clear text (TCP/IP Name & password Yes), with small brute-force limits."""

    def start(**limits):
        server = make_server(smtp_inbound_tcp_auth_name_password=True)
        run_listener(server, limits=Limits(**{
            "auth_delay": 0.2, "auth_max_delay": 0.4, "auth_failures_per_session": 2, "auth_failures_per_client": 4,
            "auth_failures_per_account": 3, **limits,
        }))
        return server.smtp_inbound_tcp_port

    return start


# --- where AUTH is offered ------------------------------------------------------------------------


def test_auth_is_neither_offered_nor_accepted_in_clear_text_by_default(make_server, configuration, jane, run_listener):
    server = make_server()
    run_listener(server)
    with client_from(server.smtp_inbound_tcp_port) as client:
        assert not client.has_extn("auth")
        assert client.docmd("AUTH", f"PLAIN {plain('jane@acme.test')}")[0] == 503


def test_auth_in_clear_text_only_when_tcp_name_and_password_says_so(clear_auth):
    with client_from(clear_auth()) as client:
        assert client.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        assert client.docmd("AUTH", f"PLAIN {plain('jane@acme.test')}")[0] == 235


def test_auth_inside_a_mail_transaction_is_refused_with_503(clear_auth):
    with client_from(clear_auth()) as client:
        assert client.mail("sender@example.org")[0] == 250
        assert client.docmd("AUTH", f"PLAIN {plain('jane@acme.test')}") == (
            503, b"5.5.1 AUTH not permitted during a mail transaction",
        )
        client.rset()
        assert client.docmd("AUTH", f"PLAIN {plain('jane@acme.test')}")[0] == 235


def test_an_authorization_identity_other_than_the_login_is_refused(clear_auth):
    port = clear_auth()
    with client_from(port) as client:
        assert client.docmd("AUTH", f"PLAIN {plain('jane@acme.test', authzid='ceo@acme.test')}") == AUTH_FAILED
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
    with client_from(port, "127.0.0.2") as client:
        assert client.docmd("AUTH", f"PLAIN {plain('jane@acme.test', authzid='jane@acme.test')}")[0] == 235


# --- malformed exchanges ------------------------------------------------------------------------------


@pytest.mark.parametrize(("lines", "expected"), [
    (["AUTH PLAIN " + "A" * 600], (500, "5.5.2 Line too long")),
    (["AUTH PLAIN", "A" * 5000], (500, "5.5.6 Authentication Exchange line is too long")),
    (["AUTH PLAIN not*base64"], (501, "5.5.2 Cannot decode base64")),
    (["AUTH PLAIN", "not*base64"], (501, "5.5.2 Cannot decode base64")),
    (["AUTH PLAIN " + base64.b64encode(b"no separators").decode()], (501, "5.5.2 Cannot split the PLAIN response")),
    (["AUTH PLAIN " + base64.b64encode(b"\0\xff\xfe\0pw").decode()], (501, "5.5.2 Credentials are not UTF-8")),
    (["AUTH LOGIN", "*"], (501, "5.7.0 Authentication aborted")),
    (["AUTH CRAM-MD5"], (504, "5.5.4 Unrecognized authentication type")),
    (["AUTH PLAIN one two"], (501, "5.5.4 Syntax: AUTH mechanism [initial-response]")),
    (["AUTH"], (501, "5.5.4 Syntax: AUTH mechanism [initial-response]")),
], ids=[
    "command over 512 bytes", "response over a text line", "bad base64", "bad base64 answer", "PLAIN without NULs",
    "not UTF-8", "cancelled with *", "unknown mechanism", "too many arguments", "no mechanism",
])
def test_malformed_auth_gets_a_clean_5xx_and_the_session_goes_on(lines, expected, clear_auth):
    client = greeted(clear_auth(auth_failures_per_session=5))
    client.ehlo()
    for line in lines[:-1]:
        assert client.command(line)[0] == 334
    assert client.command(lines[-1]) == expected
    assert client.command("NOOP")[0] == 250
    assert client.command(f"AUTH PLAIN {plain('jane@acme.test')}")[0] == 235
    client.close()


# --- brute force ------------------------------------------------------------------------------------


def test_failures_for_one_account_grow_the_delay_then_lock_the_account_from_everywhere(clear_auth, make_server):
    save(models.Person, {"full_name": "Sam Other/Acme", "internet_address": "sam@acme.test", "internet_password": PASSWORD})
    port = clear_auth()
    # Any name that finds Jane counts against Jane's account.
    names = ["jane@acme.test", "Jane Doe/Sales/Acme", "JANE@ACME.TEST"]
    attempts = [login(port, f"127.0.0.{10 + n}", name, "wrong") for n, name in enumerate(names)]
    assert [code for code, _text, _seconds in attempts] == [535, 535, 535]
    first, second, third = (seconds for _code, _text, seconds in attempts)
    assert first < 0.2 <= second < third and third >= 0.4, (first, second, third)

    code, text, _seconds = login(port, "127.0.0.20", "jane@acme.test")
    assert (code, text) == THROTTLED, "the locked account accepted even the right password"
    code, _text, seconds = login(port, "127.0.0.21", "sam@acme.test")
    assert code == 235 and seconds < 0.2, "another account was slowed or locked"


def test_failures_from_one_address_lock_that_address_only(clear_auth):
    port = clear_auth()
    codes = [login(port, "127.0.0.3", f"ghost{n}@acme.test", "wrong")[0] for n in range(4)]
    assert codes == [535] * 4
    assert login(port, "127.0.0.3", "jane@acme.test")[:2] == THROTTLED
    assert login(port, "127.0.0.4", "jane@acme.test")[0] == 235


def test_repeated_failures_in_one_session_end_it_with_421(clear_auth):
    client = greeted(clear_auth())
    client.ehlo()
    assert client.command("AUTH PLAIN not*base64")[0] == 501
    assert client.command("AUTH LOGIN =")[0] == 334
    assert client.command("*")[0] == 501
    assert client.command(f"AUTH PLAIN {plain('jane@acme.test')}") == (THROTTLED[0], THROTTLED[1].decode())
    assert client.closed_within(2)
    client.close()


def test_the_lock_lifts_when_the_failures_leave_the_window(clear_auth):
    port = clear_auth(auth_window=0.6, auth_delay=0.01, auth_max_delay=0.01)
    assert [login(port, "127.0.0.5", f"ghost{n}@acme.test", "wrong")[0] for n in range(4)] == [535] * 4
    assert login(port, "127.0.0.5", "jane@acme.test")[:2] == THROTTLED
    time.sleep(0.7)
    assert login(port, "127.0.0.5", "jane@acme.test")[0] == 235


def test_a_delayed_auth_does_not_slow_other_clients(clear_auth):
    port = clear_auth(auth_delay=1.5, auth_max_delay=1.5)
    assert login(port, "127.0.0.6", "jane@acme.test", "wrong")[0] == 535
    delayed_done = threading.Event()

    def delayed():
        try:
            return login(port, "127.0.0.6", "jane@acme.test", "wrong")
        finally:
            delayed_done.set()

    latencies = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        attempt = pool.submit(delayed)
        time.sleep(0.2)
        while not delayed_done.is_set():
            started = time.monotonic()
            with client_from(port, "127.0.0.7") as other:
                assert other.noop()[0] == 250
            latencies.append(time.monotonic() - started)
            delayed_done.wait(0.1)
        code, _text, seconds = attempt.result()
    assert code == 535 and seconds >= 1.5
    assert len(latencies) >= 3 and max(latencies) < 0.5, latencies


# --- a failure while checking ------------------------------------------------------------------------


def test_an_error_while_checking_the_password_answers_454_never_235(clear_auth):
    corrupt = save(models.Person, {
        "full_name": "Corrupt Hash/Acme", "internet_address": "corrupt@acme.test", "internet_password": PASSWORD,
    })
    # A damaged hash of a known algorithm makes check_password raise (ValueError), as a damaged row would.
    models.Person.objects.filter(pk=corrupt.pk).update(internet_password=f"{get_hasher().algorithm}$damaged")
    port = clear_auth()
    with client_from(port) as client:
        assert client.docmd("AUTH", f"PLAIN {plain('corrupt@acme.test')}") == (
            454, b"4.7.0 Temporary authentication failure",
        )
        assert client.noop()[0] == 250
        assert client.docmd("AUTH", f"PLAIN {plain('jane@acme.test')}")[0] == 235
