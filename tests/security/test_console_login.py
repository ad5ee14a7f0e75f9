"""Logging in to the console: guessing is throttled per account and address (django-axes), and
sessions end when the browser closes, after two idle hours, and at logout."""
import datetime

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db.models import F
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from directory import roles
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

PASSWORD = "Alice-pass-1234"
ATTACKER = "192.0.2.66"
OTHER_ADDRESS = "198.51.100.7"


@pytest.fixture
def alice(db):
    return make_user("alice", roles.MANAGER, password=PASSWORD)


def log_in(username, password, address=ATTACKER, client=None):
    """POST the login form from ``address``, as a browser behind that address would."""
    client = client or Client()
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address)


def logged_in(response):
    return response.status_code == 302 and response["Location"] == reverse("dashboard")


def locked_out(response):
    return response.status_code == 429 and b"too many login attempts" in response.content


def fail(username, times, address=ATTACKER):
    return [log_in(username, "wrong-guess", address) for _ in range(times)]


def cool_off():
    return datetime.timedelta(hours=settings.AXES_COOLOFF_TIME)


def age_attempts(by):
    """Move every recorded failure back in time, as if ``by`` had passed."""
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - by)


def test_the_throttle_is_configured_per_account_and_address():
    assert settings.AXES_ENABLED
    assert settings.AXES_FAILURE_LIMIT == 5
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    assert cool_off() == datetime.timedelta(minutes=15)


def test_wrong_passwords_lock_the_account_from_that_address_even_for_the_right_password(alice):
    *before_limit, at_limit = fail("alice", settings.AXES_FAILURE_LIMIT)
    assert all(response.status_code == 200 and b"Please enter a correct username" in response.content for response in before_limit)
    assert locked_out(at_limit)
    client = Client()
    assert locked_out(log_in("alice", PASSWORD, client=client))
    assert client.get(reverse("dashboard")).status_code == 302
    assert AccessAttempt.objects.get(username="alice", ip_address=ATTACKER).failures_since_start >= settings.AXES_FAILURE_LIMIT


def test_a_lock_does_not_stop_another_account_from_the_same_address(alice):
    make_user("bob", roles.READER, password="Bob-pass-1234")
    fail("alice", settings.AXES_FAILURE_LIMIT)
    assert logged_in(log_in("bob", "Bob-pass-1234"))


def test_a_lock_does_not_stop_the_same_account_from_another_address(alice):
    fail("alice", settings.AXES_FAILURE_LIMIT)
    assert locked_out(log_in("alice", PASSWORD, ATTACKER))
    assert logged_in(log_in("alice", PASSWORD, OTHER_ADDRESS))


def test_guessing_unknown_accounts_is_throttled_too(db):
    *_before, at_limit = fail("nobody", settings.AXES_FAILURE_LIMIT)
    assert locked_out(at_limit)


def test_the_lock_lasts_the_cool_off_then_the_right_password_works(alice):
    fail("alice", settings.AXES_FAILURE_LIMIT)
    age_attempts(cool_off() - datetime.timedelta(minutes=1))
    assert locked_out(log_in("alice", PASSWORD))
    age_attempts(cool_off() + datetime.timedelta(seconds=1))
    assert logged_in(log_in("alice", PASSWORD))


def test_a_guess_during_the_lock_starts_the_cool_off_again(alice):
    fail("alice", settings.AXES_FAILURE_LIMIT)
    age_attempts(cool_off() - datetime.timedelta(minutes=1))
    assert locked_out(log_in("alice", "another-guess"))
    age_attempts(datetime.timedelta(minutes=2))
    assert locked_out(log_in("alice", PASSWORD))


def test_a_successful_login_clears_the_failures_of_that_account_and_address(alice):
    fail("alice", settings.AXES_FAILURE_LIMIT - 1)
    assert logged_in(log_in("alice", PASSWORD))
    assert not any(locked_out(response) for response in fail("alice", settings.AXES_FAILURE_LIMIT - 1))
    assert logged_in(log_in("alice", PASSWORD))


def test_the_session_cookie_ends_with_the_browser_and_is_out_of_reach_of_scripts(alice):
    response = log_in("alice", PASSWORD)
    assert logged_in(response)
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE
    assert (cookie["max-age"], cookie["expires"]) == ("", "")
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"


def session_of(client):
    return Session.objects.get(session_key=client.cookies[settings.SESSION_COOKIE_NAME].value)


def test_each_request_extends_the_session_by_the_idle_time(alice):
    client = Client()
    log_in("alice", PASSWORD, client=client)
    Session.objects.filter(pk=session_of(client).pk).update(expire_date=timezone.now() + datetime.timedelta(minutes=1))
    assert client.get(reverse("dashboard")).status_code == 200
    left = session_of(client).expire_date - timezone.now()
    assert datetime.timedelta(seconds=settings.SESSION_COOKIE_AGE - 60) < left <= datetime.timedelta(seconds=settings.SESSION_COOKIE_AGE)
    assert settings.SESSION_COOKIE_AGE == 2 * 60 * 60


def test_a_session_idle_longer_than_its_age_is_refused(alice):
    client = Client()
    log_in("alice", PASSWORD, client=client)
    assert client.get(reverse("dashboard")).status_code == 200
    Session.objects.filter(pk=session_of(client).pk).update(expire_date=timezone.now() - datetime.timedelta(seconds=1))
    response = client.get(reverse("dashboard"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_login_gives_a_new_session_key_and_logout_ends_it_on_the_server(alice):
    client = Client()
    client.get(reverse("login"))
    client.session.save()
    before = client.cookies[settings.SESSION_COOKIE_NAME].value
    log_in("alice", PASSWORD, client=client)
    stolen = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert stolen != before
    client.post(reverse("logout"))
    replay = Client()
    replay.cookies[settings.SESSION_COOKIE_NAME] = stolen
    response = replay.get(reverse("dashboard"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert not Session.objects.filter(session_key=stolen).exists()
