"""AUTH throttling (finding 5 of the second audit): the pure decision as a table, the store on the real
database, and the console page with its Manager action."""
import datetime
import html

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from directory.roles import EDITOR, MANAGER, READER
from smtpservice.core import throttle
from smtpservice.core.throttle import ACCOUNT, ADDRESS, PAIR, Counts, Limits, decide
from smtpservice.models import AuthFailure
from smtpservice.store import throttle as throttles
from tests.conftest import make_user
from tests.smtpservice.test_policy import snapshot

LIMITS = Limits()


def client_for(role):
    client = Client()
    client.force_login(make_user(role.lower(), role))
    return client


@pytest.mark.parametrize(("counts", "delay", "refuse", "key"), [
    (Counts(), 0, False, ""),
    (Counts(pair=1, address=1, account=1), 1, False, PAIR),
    (Counts(pair=3, address=3, account=3), 4, False, PAIR),
    (Counts(pair=4, address=4, account=4), 8, False, PAIR),
    (Counts(pair=5, address=5, account=5), 0, True, PAIR),
    (Counts(pair=0, address=0, account=10), 4, False, ACCOUNT),
    (Counts(pair=0, address=0, account=100_000), 4, False, ACCOUNT),
    (Counts(pair=1, address=12, account=1), 16, False, ADDRESS),
    (Counts(pair=1, address=20, account=1), 0, True, ADDRESS),
], ids=["nothing-failed", "one-failure", "three", "four", "pair-refused", "account-under-attack-slowed",
        "account-never-locked", "spraying-address-slowed", "spraying-address-refused"])
def test_decide(counts, delay, refuse, key):
    verdict = decide(counts, LIMITS)
    assert (verdict.delay, verdict.refuse, verdict.key) == (delay, refuse, key)


def test_an_account_attacked_from_many_addresses_lets_its_owner_in_within_five_seconds():
    """Ten addresses failing in parallel used to lock the owner out for 15 minutes."""
    for failures in range(0, 10_000, 7):
        verdict = decide(Counts(pair=0, address=0, account=failures), LIMITS)
        assert not verdict.refuse and verdict.delay < 5


@pytest.mark.parametrize(("login", "account"), [
    ("jane@acme.test", "Jane Doe/Sales/Acme"), ("CN=Jane Doe/OU=Sales/O=Acme", "Jane Doe/Sales/Acme"), ("  nobody@acme.test ", "nobody@acme.test"),
])
def test_attempts_count_under_the_person_the_login_finds_else_the_login(login, account):
    assert throttle.account_for(snapshot(), login) == account


@pytest.mark.parametrize(("outcome", "counts"), [
    (throttle.WRONG_PASSWORD, True), (throttle.UNKNOWN_ACCOUNT, True), (throttle.NO_PASSWORD, True),
    (throttle.MALFORMED, False),
])
def test_a_malformed_auth_is_a_protocol_error_not_a_failed_password(outcome, counts):
    assert throttle.counts_as_failure(outcome) is counts


@pytest.mark.django_db
def test_counts_by_pair_address_and_account_within_the_window():
    now = timezone.now()
    for client, account in [("192.0.2.1", "Jane Doe/Sales/Acme")] * 3 + [("192.0.2.1", "kim"), ("192.0.2.2", "jane doe/sales/acme")]:
        throttles.record_failure(client, account, now)
    throttles.record_failure("192.0.2.1", "Jane Doe/Sales/Acme", now - datetime.timedelta(seconds=LIMITS.window + 1))

    assert throttles.counts("192.0.2.1", "Jane Doe/Sales/Acme", LIMITS.window, now) == Counts(pair=3, address=4, account=4)
    assert throttles.counts("192.0.2.9", "nobody", LIMITS.window, now) == Counts()


@pytest.mark.django_db
def test_forgive_forgets_only_the_pair_that_succeeded():
    for client in ("192.0.2.1", "192.0.2.1", "192.0.2.2"):
        throttles.record_failure(client, "jane")
    assert throttles.forgive("192.0.2.1", "JANE") == 2
    assert throttles.counts("192.0.2.2", "jane", LIMITS.window) == Counts(pair=1, address=1, account=1)


@pytest.mark.django_db
def test_current_throttles_list_blocks_first_and_lift_clears_one():
    now = timezone.now()
    for _ in range(LIMITS.pair_refuse):
        throttles.record_failure("192.0.2.1", "jane", now)
    throttles.record_failure("192.0.2.7", "kim", now)

    listed = [(item.key, item.client_address, item.account, item.failures, item.verdict.refuse)
              for item in throttles.current_throttles(LIMITS, now)]
    assert listed[0] == (PAIR, "192.0.2.1", "jane", 5, True)
    assert (ACCOUNT, "", "kim", 1, False) in listed and (ADDRESS, "192.0.2.7", "", 1, False) in listed

    assert throttles.lift(client="192.0.2.1", account="jane") == 5
    assert throttles.lift() == 0
    assert {item.account or item.client_address for item in throttles.current_throttles(LIMITS, now)} == {"kim", "192.0.2.7"}


@pytest.mark.django_db
def test_the_console_lists_throttles_and_only_a_manager_lifts_one():
    for _ in range(LIMITS.pair_refuse):
        throttles.record_failure("192.0.2.1", "jane")
    url = reverse("smtpservice:throttle-list")

    page = client_for(READER).get(url).content.decode()
    assert "192.0.2.1" in page and "refused" in page and "Lift" not in page
    assert client_for(EDITOR).post(url, {"client_address": "192.0.2.1", "account": "jane"}).status_code == 403
    assert AuthFailure.objects.count() == LIMITS.pair_refuse

    manager = client_for(MANAGER)
    assert "Lift" in manager.get(url).content.decode()
    response = manager.post(url, {"client_address": "192.0.2.1", "account": "jane"}, follow=True)
    assert "Throttle lifted: 5 failed authentications forgotten." in response.content.decode()
    assert not AuthFailure.objects.exists()
    refused = manager.post(url, {}, follow=True).content.decode()
    assert "Name an address, an account, or both." in refused


@pytest.mark.django_db
def test_the_simulator_shows_the_throttle_state_of_the_login_and_client(make_server, configuration, jane):
    server = make_server(smtp_inbound_tcp_auth_name_password=True)
    client = client_for(READER)
    form = {"client_address": "203.0.113.5", "local_address": "127.0.0.1", "tls": "none", "login": "jane@acme.test",
            "mail_from": "", "recipients": ""}

    def auth_step():
        page = html.unescape(client.post(reverse("explain:simulator", args=[server.pk]), form).content.decode())
        return page.split("AUTH as jane@acme.test", 1)[1].split("</li>\\n        \\n        <li", 1)[0]

    assert "No failed AUTH counts against this login or client now" in auth_step()
    for _ in range(3):
        throttles.record_failure("203.0.113.5", "Jane Doe/Sales/Acme")
    assert "Slowed by 4.0 s: 3 failures for this account from this address" in auth_step()
    for _ in range(2):
        throttles.record_failure("203.0.113.5", "Jane Doe/Sales/Acme")
    assert "5 failed AUTH for this account from this address in 15 minutes: refused from this address." in auth_step()
