"""Finding 4 of the second audit: the time of a refused AUTH does not tell which accounts exist.

A behaviour test, not a benchmark: the medians of real AUTH exchanges over a socket, with a real password
hasher (PBKDF2, fewer rounds than Django's default so the test stays quick), compared as a ratio.
"""
import statistics

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from directory import models
from smtpservice.core import throttle
from tests.security.smtp_client import LOCAL
from tests.security.test_smtp_auth import AUTH_FAILED, login
from tests.smtpservice.conftest import save

pytestmark = pytest.mark.django_db(transaction=True)

TRIES = 9
FACTOR = 3
"""The medians must agree within this factor; without the dummy hash they differ about twenty-fold."""


class QuickPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """Django's PBKDF2 with about 30 ms of work here: far above a socket round trip, far below the default."""

    iterations = 60_000


@pytest.fixture
def real_hasher(settings):
    settings.PASSWORD_HASHERS = [f"{__name__}.QuickPBKDF2PasswordHasher"]


def median_refusals(port, users):
    """The median time of a refused AUTH for each user, taken in turns so that the load of the machine
    (shared with other work) weighs on each the same."""
    times = {user: [] for user in users}
    for _ in range(TRIES):
        for user in users:
            code, text, seconds = login(port, LOCAL, user, "Wrong-guess-0000")
            assert (code, text) == AUTH_FAILED
            times[user].append(seconds)
    return [statistics.median(times[user]) for user in users]


def test_an_unknown_account_is_refused_as_slowly_as_a_wrong_password(real_hasher, make_server, configuration, run_listener):
    save(models.Person, {"full_name": "Kim Park/Sales/Acme", "first_name": "Kim", "last_name": "Park",
                         "internet_address": "kim@acme.test", "internet_password": "Kim-secret-1234"})
    save(models.Person, {"full_name": "Lee Nopass/Sales/Acme", "first_name": "Lee", "last_name": "Nopass",
                         "internet_address": "lee@acme.test"})
    server = make_server(smtp_inbound_tcp_auth_name_password=True)
    run_listener(server, throttle_limits=throttle.Limits(base_delay=0, account_max_delay=0, pair_refuse=1000, address_refuse=1000))
    port = server.smtp_inbound_tcp_port

    wrong_password, unknown, without_password = median_refusals(port, ["kim@acme.test", "nobody@acme.test", "lee@acme.test"])

    for other in (unknown, without_password):
        assert 1 / FACTOR < other / wrong_password < FACTOR, (wrong_password, unknown, without_password)
