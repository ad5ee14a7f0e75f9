"""Temporary failures come back later with doubling, jittered delays (an injected clock and random
number, no sleeping); permanent failures and expired messages send the sender a report."""
import email
from datetime import timedelta

import pytest
from django.utils import timezone

from smtpservice.core.texts import render as shown
from smtpservice.models import DeliveryAttempt, MailboxEntry, QueuedRecipient, ReceivedMessage
from tests.outbound.conftest import BOB, JANE, change, queue_at
from tests.smtpservice.conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)


class Clock:
    def __init__(self):
        self.now = timezone.now()

    def __call__(self):
        return self.now


@pytest.fixture
def unreachable(alpha, configuration, settings):
    """A's route for beta.test points at a closed port; retries start at 60 s and stop doubling at 600 s."""
    settings.ROUTER_RETRY_SECONDS = 60
    settings.ROUTER_RETRY_MAX_SECONDS = 600
    change(configuration, routes=f"beta.test 127.0.0.1:{free_port()}")
    return alpha


def state_of(message):
    return QueuedRecipient.objects.get(message=message)


def reports_to(address):
    return [entry.message for entry in MailboxEntry.objects.filter(recipient=address, message__origin="report").select_related("message")]


def test_back_off_doubles_from_the_first_retry_with_jitter(unreachable, make_router):
    message = queue_at(unreachable, [BOB])
    clock = Clock()
    router = make_router(unreachable, clock=clock, random=lambda: 0.5)
    start = clock.now

    router.run_once()
    queued = state_of(message)
    assert (queued.state, queued.attempts) == ("deferred", 1)
    assert queued.next_attempt_at == start + timedelta(seconds=45)  # 60 s: between 30 and 60, here 3/4

    clock.now = start + timedelta(seconds=44)
    router.run_once()
    assert state_of(message).attempts == 1, "not due yet"

    clock.now = start + timedelta(seconds=45)
    router.run_once()
    queued = state_of(message)
    assert queued.attempts == 2
    assert queued.next_attempt_at == clock.now + timedelta(seconds=90)  # 120 s, 3/4

    for _attempt in range(5):
        clock.now = state_of(message).next_attempt_at
        router.run_once()
    queued = state_of(message)
    assert queued.attempts == 7
    assert queued.next_attempt_at == clock.now + timedelta(seconds=450)  # capped at 600 s, 3/4
    assert DeliveryAttempt.objects.filter(message=message).count() == 7


def test_a_message_past_its_lifetime_fails_with_a_report_to_the_local_sender(unreachable, make_router, settings):
    settings.ROUTER_MESSAGE_LIFETIME_HOURS = 120
    message = queue_at(unreachable, [BOB])
    clock = Clock()
    router = make_router(unreachable, clock=clock, random=lambda: 0.5)
    router.run_once()
    assert not reports_to(JANE)

    clock.now = message.received_at + timedelta(hours=119, minutes=59)
    router.run_once()
    queued = state_of(message)
    assert queued.state == "deferred"
    assert queued.next_attempt_at == message.received_at + timedelta(hours=120), "the last try is at the end of the lifetime"

    clock.now = queued.next_attempt_at
    router.run_once()
    queued = state_of(message)
    assert queued.state == "failed"
    assert shown(queued.last_error).startswith("The message could not be delivered within 120 hours")
    (report,) = reports_to(JANE)
    status = email.message_from_bytes(bytes(report.data)).get_payload()[1].get_payload()[1]
    assert (status["Final-Recipient"], status["Action"], status["Status"]) == (f"rfc822; {BOB}", "failed", "4.4.7")


def test_a_report_to_a_sender_outside_the_local_domains_is_queued_from_the_null_sender(alpha, make_router, configuration):
    change(configuration, routes="beta.test 127.0.0.1 tls=verified ca=/nonexistent/ca.pem")
    message = queue_at(alpha, ["nobody"], sender="carol@gamma.test")

    make_router(alpha).run_once()

    assert state_of(message).state == "failed"
    report = ReceivedMessage.objects.get(origin="report")
    assert report.mail_from == ""
    assert QueuedRecipient.objects.get(message=report).recipient == "carol@gamma.test"


def test_no_report_is_sent_for_a_message_from_the_null_sender(alpha, make_router):
    message = queue_at(alpha, ["nobody"], sender="")

    make_router(alpha).run_once()

    assert state_of(message).state == "failed"
    assert not ReceivedMessage.objects.filter(origin="report").exists()


def test_a_report_for_an_unknown_local_sender_is_dropped(alpha, make_router):
    message = queue_at(alpha, ["nobody"], sender="ghost@acme.test")

    make_router(alpha).run_once()

    assert state_of(message).state == "failed"
    assert not ReceivedMessage.objects.filter(origin="report").exists()


def test_an_unreadable_ca_bundle_defers_with_the_reason(alpha, beta, run_listener, make_router, configuration):
    change(alpha, smtp_outbound_tcp_status="negotiated_ssl", smtp_outbound_tcp_port=beta.smtp_inbound_tcp_port)
    change(configuration, routes="beta.test 127.0.0.1 tls=verified ca=/nonexistent/ca.pem")
    run_listener(beta)
    message = queue_at(alpha, [BOB])

    make_router(alpha).run_once()

    queued = state_of(message)
    assert queued.state == "deferred"
    assert shown(queued.last_error).startswith("The CA bundle /nonexistent/ca.pem cannot be read")


def test_a_local_sender_gets_one_report_listing_every_refused_recipient(alpha, beta, run_listener, make_router):
    change(alpha, smtp_outbound_tcp_port=beta.smtp_inbound_tcp_port)
    run_listener(beta)
    message = queue_at(alpha, ["ghost@beta.test", "phantom@beta.test"])

    make_router(alpha).run_once()

    (report,) = reports_to(JANE)
    status = email.message_from_bytes(bytes(report.data)).get_payload()[1].get_payload()
    assert [block["Final-Recipient"] for block in status[1:]] == ["rfc822; ghost@beta.test", "rfc822; phantom@beta.test"]
    assert set(QueuedRecipient.objects.filter(message=message).values_list("state", flat=True)) == {"failed"}


def test_mail_held_by_the_settings_waits_for_them_and_fails_at_the_end_of_its_lifetime(alpha, make_router, configuration):
    change(configuration, smtp_outside_local_domain=False)
    message = queue_at(alpha, [BOB])
    clock = Clock()
    router = make_router(alpha, clock=clock)

    router.run_once()
    queued = state_of(message)
    assert (queued.state, queued.attempts) == ("held", 0)
    assert queued.next_attempt_at == message.received_at + timedelta(hours=120), "no retry timer: a settings change wakes it"

    clock.now = queued.next_attempt_at
    router.run_once()
    assert state_of(message).state == "failed"
    (report,) = reports_to(JANE)
    assert b"Status: 4.4.7" in bytes(report.data)
