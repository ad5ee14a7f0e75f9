"""Use authentication when sending to the relay host: Required never sends without AUTH, Enabled
falls back to none, and the password never shows (spec 5.3). Server B's listener is the relay."""
import base64

import pytest

from directory import models
from smtpservice.core.texts import render as shown
from smtpservice.models import DeliveryAttempt, MailboxEntry, QueuedRecipient
from tests.outbound.conftest import BOB, BOB_PASSWORD, beta_configuration, change, queue_at
from tests.smtpservice.conftest import save

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def relay(alpha, beta, configuration, run_listener):
    """A's relay host is B's TCP/IP port; returns a function setting the authentication and B's AUTH offer.

    A authenticates as Bob and sends Jane's mail: B accepts a sender other than Bob's own address because
    Bob's account is in LocalDomainServers (docs/design/policy.md, MAIL FROM).
    """
    save(models.Group, {"name": "LocalDomainServers", "group_type": "multi_purpose", "members": ["Bob Smith/Beta"]})

    def setup(relay_auth, password=BOB_PASSWORD, offer_auth=True, allow_cleartext=True, **config):
        change(beta, smtp_inbound_tcp_auth_name_password=offer_auth)
        change(configuration, relay_host=f"127.0.0.1:{beta.smtp_inbound_tcp_port}", relay_auth=relay_auth,
               relay_auth_name=BOB, relay_auth_password=password, relay_auth_allow_cleartext=allow_cleartext, **config)
        run_listener(beta)
        return queue_at(alpha, [BOB])

    return setup


def outcome(message):
    queued = QueuedRecipient.objects.get(message=message)
    return queued, DeliveryAttempt.objects.filter(message=message).latest("pk")


def delivered_to_bob():
    return MailboxEntry.objects.filter(person__internet_address=BOB).select_related("message")


@pytest.mark.parametrize("relay_auth", ["required", "enabled"])
def test_a_relay_offering_auth_without_tls_never_gets_the_password(relay, alpha, make_router, relay_auth):
    """B offers AUTH on its TCP/IP port and no STARTTLS (as an attacker stripping it would): A, which may not
    authenticate in clear text (the default), sends no AUTH at all and the message waits, saying why."""
    change(beta_configuration(), starttls_inbound="disabled")
    message = relay(relay_auth, allow_cleartext=False)
    change(alpha, smtp_outbound_tcp_status="negotiated_ssl")

    make_router(alpha).run_once()

    queued, attempt = outcome(message)
    assert queued.state == "deferred"
    assert "Allow authentication to the relay host without TLS is No: the password is not sent" in shown(queued.last_error)
    assert not any(line.startswith("> AUTH") for line in attempt.transcript)
    assert not delivered_to_bob().exists()


def test_the_password_goes_over_starttls_without_any_clear_text_permission(relay, alpha, make_router):
    message = relay("required", allow_cleartext=False)
    change(alpha, smtp_outbound_tcp_status="negotiated_ssl")

    make_router(alpha).run_once()

    queued, attempt = outcome(message)
    assert queued.state == "delivered"
    assert (attempt.tls, attempt.tls_policy) == ("starttls", "opportunistic")
    assert shown(attempt.authentication) == "Authenticated as bob@beta.test with AUTH PLAIN."


def test_required_authenticates_and_the_password_never_shows(relay, alpha, make_router):
    message = relay("required")

    make_router(alpha).run_once()

    queued, attempt = outcome(message)
    assert queued.state == "delivered"
    assert delivered_to_bob().get().message.authenticated_as == "Bob Smith/Beta"
    assert shown(attempt.authentication) == "Authenticated as bob@beta.test with AUTH PLAIN in clear text."
    assert "> AUTH PLAIN ****" in attempt.transcript
    transcript = "\n".join(attempt.transcript)
    secret = base64.b64encode(f"\0{BOB}\0{BOB_PASSWORD}".encode()).decode()
    assert BOB_PASSWORD not in transcript and secret not in transcript


def test_required_with_a_relay_that_offers_no_auth_keeps_the_message_queued(relay, alpha, make_router):
    message = relay("required", offer_auth=False)

    make_router(alpha).run_once()

    queued, attempt = outcome(message)
    assert queued.state == "deferred"
    assert "Use authentication is Required: the message is not sent without authentication" in shown(queued.last_error)
    assert "> mail FROM:<jane@acme.test>" not in attempt.transcript
    assert not delivered_to_bob().exists()


def test_required_with_refused_credentials_keeps_the_message_queued(relay, alpha, make_router):
    message = relay("required", password="wrong-password")

    make_router(alpha).run_once()

    queued, _attempt = outcome(message)
    assert queued.state == "deferred"
    assert "refused the credentials of bob@beta.test: 535 5.7.8 Authentication credentials invalid" in shown(queued.last_error)
    assert not delivered_to_bob().exists()


def test_enabled_falls_back_to_no_auth_when_the_relay_offers_none(relay, alpha, make_router):
    message = relay("enabled", offer_auth=False)

    make_router(alpha).run_once()

    queued, attempt = outcome(message)
    assert queued.state == "delivered"
    assert delivered_to_bob().get().message.authenticated_as == ""
    assert shown(attempt.authentication) == "The relay host offers no AUTH: sent without authentication (Enabled)."


def test_enabled_falls_back_to_no_auth_when_the_credentials_are_refused(relay, alpha, make_router):
    message = relay("enabled", password="wrong-password")

    make_router(alpha).run_once()

    queued, attempt = outcome(message)
    assert queued.state == "delivered"
    assert shown(attempt.authentication).endswith("Sent without authentication (Enabled falls back).")
    assert "535 5.7.8" in shown(attempt.authentication)


def test_disabled_sends_no_auth_even_when_offered(relay, alpha, make_router):
    message = relay("disabled")

    make_router(alpha).run_once()

    queued, attempt = outcome(message)
    assert queued.state == "delivered"
    assert not any(line.startswith("> AUTH") for line in attempt.transcript)
