"""The relay queue in the console: Reader sees the queue and each message's attempt log, Editor
retries, holds, releases, deletes and sends test messages."""
import logging

import pytest
from django.test import Client
from django.urls import reverse

from directory.roles import EDITOR, READER
from smtpservice.core import texts
from smtpservice.models import DeliveryAttempt, MailboxEntry, QueuedRecipient
from tests.conftest import make_user
from tests.outbound.conftest import ALPHA, BOB, JANE, change, queue_at

pytestmark = pytest.mark.django_db(transaction=True)


def client_as(role):
    client = Client()
    client.force_login(make_user(f"user-{role}".lower(), role))
    return client


@pytest.fixture
def reader_client(transactional_db):
    return client_as(READER)


@pytest.fixture
def editor_client(transactional_db):
    return client_as(EDITOR)


def queue_rows(message):
    return list(QueuedRecipient.objects.filter(message=message).values_list("recipient", "state", "held_by"))


def test_queue_lists_recipients_and_filters_by_state_server_and_text(alpha, reader_client):
    hello = queue_at(alpha, [BOB], subject="Hello Bob")
    other = queue_at(alpha, ["ann@partner.test"], subject="Quarterly report")
    QueuedRecipient.objects.filter(message=other).update(state="deferred", last_error="Connection refused by 127.0.0.1 port 25.")
    url = reverse("queue:list")

    page = reader_client.get(url).content.decode()
    assert BOB in page and "ann@partner.test" in page and "Connection refused by 127.0.0.1 port 25." in page
    assert reverse("queue:message-detail", args=[hello.pk]) in page
    assert "Send a test message" not in page, "a Reader cannot send"

    assert BOB not in reader_client.get(url, {"state": "deferred"}).content.decode()
    only_report = reader_client.get(url, {"q": "quarterly"}).content.decode()
    assert "ann@partner.test" in only_report and BOB not in only_report
    assert "No queued recipient matches these filters." in reader_client.get(url, {"server": ALPHA, "q": "nobody"}).content.decode()


def test_queue_says_why_a_server_holds_its_mail(alpha, reader_client):
    change(alpha, smtp_outbound_tcp_status="disabled")
    page = reader_client.get(reverse("queue:list")).content.decode()
    assert "The SMTP Outbound TCP/IP port and SSL port of the Server document are both Disabled" in page


def test_message_page_shows_each_attempt_with_tls_and_transcript(alpha, beta, run_listener, make_router, reader_client, configuration):
    change(alpha, smtp_outbound_tcp_status="negotiated_ssl", smtp_outbound_tcp_port=beta.smtp_inbound_tcp_port)
    run_listener(beta)
    message = queue_at(alpha, [BOB])
    make_router(alpha).run_once()

    page = reader_client.get(reverse("queue:message-detail", args=[message.pk])).content.decode()
    assert "STARTTLS; any certificate accepted (opportunistic TLS policy)" in page
    assert "Opportunistic (encrypt when offered, accept any certificate)" in page
    assert f"127.0.0.1 port {beta.smtp_inbound_tcp_port}" in page
    assert "&gt; STARTTLS" in page
    assert 'http-equiv="refresh"' not in page, "nothing left to send"
    assert "Retry now" not in page, "a Reader cannot act"


def test_hold_release_and_retry_now_change_the_queue_and_are_logged(alpha, editor_client, caplog):
    message = queue_at(alpha, [BOB])
    detail = reverse("queue:message-detail", args=[message.pk])
    page = editor_client.get(detail).content.decode()
    assert 'http-equiv="refresh"' in page and "Retry now" in page

    with caplog.at_level(logging.INFO, logger="smtpservice.outbound"):
        assert editor_client.post(reverse("queue:message-hold", args=[message.pk])).url == detail
    assert queue_rows(message) == [(BOB, "held", "admin")]
    assert "user-editor: hold on message" in caplog.text

    editor_client.post(reverse("queue:message-release", args=[message.pk]))
    assert queue_rows(message) == [(BOB, "queued", "")]

    QueuedRecipient.objects.filter(message=message).update(state="deferred", next_attempt_at="2099-01-01T00:00:00Z")
    editor_client.post(reverse("queue:message-retry", args=[message.pk]))
    queued = QueuedRecipient.objects.get(message=message)
    assert queued.state == "queued" and queued.next_attempt_at.year < 2099
    log = [texts.render(attempt.detail) for attempt in DeliveryAttempt.objects.filter(message=message, outcome="action")]
    assert log == [
        "Held by user-editor: 1 recipient.", "Released by user-editor: 1 recipient due at once.",
        "Retry now by user-editor: 1 recipient due at once.",
    ]
    page = editor_client.get(detail, HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "user-editor" in page and "Held by" not in page, "the stored log is read in the reader's language"


def test_a_held_message_is_not_sent(alpha, editor_client, make_router):
    message = queue_at(alpha, [BOB])
    editor_client.post(reverse("queue:message-hold", args=[message.pk]))
    make_router(alpha).run_once()
    assert queue_rows(message) == [(BOB, "held", "admin")]
    assert not DeliveryAttempt.objects.exclude(outcome="action").exists()


def test_delete_asks_for_confirmation_then_removes_the_recipients(alpha, editor_client):
    message = queue_at(alpha, [BOB])
    url = reverse("queue:message-delete", args=[message.pk])
    page = editor_client.get(url).content.decode()
    assert "will never be sent" in page and "<form method=\"post\">" in page
    assert queue_rows(message), "a GET deletes nothing"

    assert editor_client.post(url).url == reverse("queue:list")
    assert queue_rows(message) == []


def test_a_reader_cannot_act_on_the_queue(alpha, reader_client):
    message = queue_at(alpha, [BOB])
    for action in ("retry", "hold", "release", "delete"):
        assert reader_client.post(reverse(f"queue:message-{action}", args=[message.pk])).status_code == 403
    assert queue_rows(message) == [(BOB, "queued", "")]
    assert not DeliveryAttempt.objects.exists()


def test_send_a_test_message_queues_it_and_its_page_shows_the_delivery(alpha, beta, run_listener, make_router, editor_client):
    change(alpha, smtp_outbound_tcp_port=beta.smtp_inbound_tcp_port)
    run_listener(beta)
    response = editor_client.post(reverse("queue:send-test"), {"server": ALPHA, "recipient": BOB, "subject": "", "body": ""})
    message = QueuedRecipient.objects.get(recipient=BOB).message
    assert response.url == reverse("queue:message-detail", args=[message.pk])
    assert (message.mail_from, message.subject, message.origin) == (JANE, "Test message from mail1/Acme", "console"), "a person of a local domain, whose mailbox gets any report"

    make_router(alpha).run_once()

    page = editor_client.get(response.url).content.decode()
    assert "delivered" in page and "250 2.0.0 OK: queued as" in page
    assert MailboxEntry.objects.get(person__internet_address=BOB).message.subject == "Test message from mail1/Acme"


def test_a_test_message_to_a_local_address_goes_to_the_mailbox(alpha, editor_client):
    editor_client.post(reverse("queue:send-test"), {"server": ALPHA, "recipient": JANE, "sender": "ops@acme.test"})
    entry = MailboxEntry.objects.get(person__internet_address=JANE)
    assert entry.message.mail_from == "ops@acme.test"
    assert not QueuedRecipient.objects.exists()


def test_a_test_message_to_an_unknown_local_address_is_refused_on_the_form(alpha, editor_client):
    response = editor_client.post(reverse("queue:send-test"), {"server": ALPHA, "recipient": "ghost@acme.test"})
    assert response.status_code == 200
    assert "no person has this Internet address" in response.content.decode()
    assert not QueuedRecipient.objects.exists() and not MailboxEntry.objects.exists()


def test_only_the_actions_that_would_change_something_are_offered(alpha, editor_client):
    message = queue_at(alpha, [BOB])
    detail = reverse("queue:message-detail", args=[message.pk])
    page = editor_client.get(detail).content.decode()
    assert "Retry now" in page and "Hold" in page and "Release" not in page

    editor_client.post(reverse("queue:message-hold", args=[message.pk]))
    page = editor_client.get(detail).content.decode()
    assert "Retry now" not in page and "Release" in page
