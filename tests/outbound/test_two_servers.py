"""Server A sends to server B over real sockets: B's listener on a non-standard port, A's SMTP
Outbound column and routes choosing how (spec sections 4 and 5)."""
import smtplib
import socket

import pytest
from django.utils import translation

from smtpservice.core.texts import render as shown
from smtpservice.models import DeliveryAttempt, MailboxEntry, QueuedRecipient, ReceivedMessage
from tests.outbound.conftest import BOB, JANE, beta_configuration, change, queue_at
from tests.smtpservice.conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def bob_mailbox():
    return MailboxEntry.objects.filter(person__internet_address=BOB).select_related("message")


def last_attempt(message):
    return DeliveryAttempt.objects.filter(message=message).latest("pk")


def test_message_submitted_to_a_lands_in_the_mailbox_of_bob_on_b(alpha, beta, run_listener, make_router):
    """The original document's case: B listens on a non-standard port, A's Outbound TCP/IP port is set to it."""
    change(alpha, smtp_outbound_tcp_port=beta.smtp_inbound_tcp_port)
    run_listener(beta)
    run_listener(alpha)
    with smtplib.SMTP("127.0.0.1", alpha.smtp_inbound_tcp_port, timeout=10) as client:
        client.sendmail(JANE, [BOB], b"From: jane@acme.test\r\nTo: bob@beta.test\r\nSubject: Port 26\r\n\r\nHello Bob.\r\n")
    queued = QueuedRecipient.objects.get(recipient=BOB)

    make_router(alpha).run_once()

    queued.refresh_from_db()
    assert queued.state == QueuedRecipient.State.DELIVERED
    entry = bob_mailbox().get()
    assert entry.message.server == beta
    assert entry.message.subject == "Port 26"
    attempt = last_attempt(queued.message)
    assert (attempt.host, attempt.port, attempt.tls) == ("127.0.0.1", beta.smtp_inbound_tcp_port, "none")
    assert shown(attempt.destination) == "SMTP connection route to 127.0.0.1"
    commands = [line.split(" ", 2)[1] for line in attempt.transcript if line.startswith(">")]
    assert commands == ["ehlo", "mail", "rcpt", "data", "(the"]
    assert attempt.transcript[-1].startswith("< 250 2.0.0 OK: queued as")


def test_ssl_outbound_goes_to_the_ssl_port_first_trusting_the_route_ca(alpha, beta, run_listener, make_router, configuration, ca_file):
    change(alpha, smtp_outbound_ssl_status="enabled", smtp_outbound_ssl_port=beta.smtp_inbound_ssl_port,
           smtp_outbound_tcp_port=beta.smtp_inbound_tcp_port)
    change(configuration, routes=f"beta.test 127.0.0.1 tls=verified ca={ca_file}")
    run_listener(beta)
    message = queue_at(alpha, [BOB])

    make_router(alpha).run_once()

    assert bob_mailbox().get().message.tls is True
    attempt = last_attempt(message)
    assert (attempt.port, attempt.tls, attempt.tls_policy) == (beta.smtp_inbound_ssl_port, "implicit", "verified")
    assert shown(attempt.certificate) == f"certificate verified against the CA bundle {ca_file}"


def test_ssl_port_that_fails_falls_back_to_the_tcp_port(alpha, beta, run_listener, make_router):
    closed = free_port()
    change(alpha, smtp_outbound_ssl_status="enabled", smtp_outbound_ssl_port=closed,
           smtp_outbound_tcp_port=beta.smtp_inbound_tcp_port)
    run_listener(beta)
    message = queue_at(alpha, [BOB])

    make_router(alpha).run_once()

    assert bob_mailbox().count() == 1
    attempt = last_attempt(message)
    assert (attempt.port, attempt.tls) == (beta.smtp_inbound_tcp_port, "none")
    assert f"! Connection refused by 127.0.0.1 port {closed}: no server listens there." in attempt.transcript
    assert (f"The SSL port {closed} failed (Connection refused by 127.0.0.1 port {closed}: no server listens there.); "
            f"fell back to the TCP/IP port {beta.smtp_inbound_tcp_port}, as the opportunistic TLS policy allows.") in shown(attempt.detail)


def test_verified_policy_never_falls_back_from_the_ssl_port(alpha, beta, run_listener, make_router, configuration, ca_file):
    closed = free_port()
    change(alpha, smtp_outbound_ssl_status="enabled", smtp_outbound_ssl_port=closed,
           smtp_outbound_tcp_status="negotiated_ssl", smtp_outbound_tcp_port=beta.smtp_inbound_tcp_port)
    change(configuration, routes=f"beta.test 127.0.0.1 tls=verified ca={ca_file}")
    run_listener(beta)
    message = queue_at(alpha, [BOB])

    make_router(alpha).run_once()

    queued = QueuedRecipient.objects.get(message=message)
    assert queued.state == QueuedRecipient.State.DEFERRED
    attempt = last_attempt(message)
    assert attempt.tls_policy == "verified"
    assert not any(str(beta.smtp_inbound_tcp_port) in line for line in attempt.transcript), "the TCP/IP port is never tried"
    assert not bob_mailbox().exists()


def test_negotiated_ssl_uses_starttls_and_the_log_shows_it(alpha, beta, run_listener, make_router, configuration, ca_file):
    change(alpha, smtp_outbound_tcp_status="negotiated_ssl", smtp_outbound_tcp_port=beta.smtp_inbound_tcp_port)
    change(configuration, routes=f"beta.test 127.0.0.1 tls=verified ca={ca_file}")
    run_listener(beta)
    message = queue_at(alpha, [BOB])

    make_router(alpha).run_once()

    assert bob_mailbox().get().message.tls is True
    attempt = last_attempt(message)
    assert (attempt.tls, attempt.get_tls_display()) == ("starttls", "STARTTLS")
    assert "> STARTTLS" in attempt.transcript
    assert shown(attempt.certificate).startswith("certificate verified")


def test_opportunistic_policy_is_the_default_and_accepts_a_self_signed_certificate(alpha, beta, run_listener, make_router):
    change(alpha, smtp_outbound_tcp_status="negotiated_ssl", smtp_outbound_tcp_port=beta.smtp_inbound_tcp_port)
    run_listener(beta)
    message = queue_at(alpha, [BOB])

    make_router(alpha).run_once()

    assert bob_mailbox().count() == 1
    attempt = last_attempt(message)
    assert (attempt.tls, attempt.tls_policy) == ("starttls", "opportunistic")
    assert shown(attempt.certificate) == "any certificate accepted (opportunistic TLS policy)"


def test_negotiated_ssl_to_a_server_without_starttls_goes_in_clear_and_is_logged(alpha, beta, run_listener, make_router):
    change(alpha, smtp_outbound_tcp_status="negotiated_ssl", smtp_outbound_tcp_port=beta.smtp_inbound_tcp_port)
    change(beta_configuration(), starttls_inbound="disabled")
    run_listener(beta)
    message = queue_at(alpha, [BOB])

    make_router(alpha).run_once()

    assert bob_mailbox().get().message.tls is False
    attempt = last_attempt(message)
    assert attempt.tls == "none"
    assert "The remote does not offer STARTTLS: the message goes in clear text (opportunistic TLS policy)." in shown(attempt.detail)


@pytest.mark.parametrize(("tcp_status", "starttls_inbound", "reason"), [
    ("negotiated_ssl", "enabled", "failed verification"),
    ("negotiated_ssl", "disabled", "does not offer STARTTLS and the TLS policy is verified"),
    ("enabled", "disabled", "does not offer STARTTLS and the TLS policy is verified"),
], ids=["certificate-it-cannot-verify", "stripped-starttls", "stripped-starttls-on-a-clear-text-port"])
def test_verified_policy_defers_and_sends_nothing_in_clear(
        alpha, beta, run_listener, make_router, configuration, tcp_status, starttls_inbound, reason):
    """The test CA is not in the system trust store; B offering no STARTTLS is what an attacker stripping it
    would show. Under the verified policy the message waits, says why, and not even MAIL FROM is sent."""
    change(alpha, smtp_outbound_tcp_status=tcp_status, smtp_outbound_tcp_port=beta.smtp_inbound_tcp_port)
    change(beta_configuration(), starttls_inbound=starttls_inbound)
    change(configuration, routes="beta.test 127.0.0.1 tls=verified")
    run_listener(beta)
    message = queue_at(alpha, [BOB])

    make_router(alpha).run_once()

    queued = QueuedRecipient.objects.get(message=message)
    assert queued.state == QueuedRecipient.State.DEFERRED
    assert reason in shown(queued.last_error)
    attempt = last_attempt(message)
    assert attempt.tls_policy == "verified"
    assert not any(line.lower().startswith("> mail") for line in attempt.transcript)
    assert not bob_mailbox().exists()


def test_standard_port_while_b_listens_elsewhere_defers_with_a_clear_reason(alpha, beta, run_listener, make_router):
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 25)) == 0:
            pytest.skip("something listens on port 25 of this machine")
    run_listener(beta)
    message = queue_at(alpha, [BOB])

    make_router(alpha).run_once()

    queued = QueuedRecipient.objects.get(message=message)
    assert queued.state == QueuedRecipient.State.DEFERRED
    assert queued.attempts == 1
    assert shown(queued.last_error) == "Connection refused by 127.0.0.1 port 25: no server listens there."
    # Stored with its values, the reason reads in the language of whoever opens the queue.
    with translation.override("fr"):
        assert shown(queued.last_error) == "Connexion refusée par 127.0.0.1 port 25\u00a0: aucun serveur n'y écoute."
    assert not bob_mailbox().exists()


def test_route_with_its_own_port_overrides_the_outbound_port(alpha, beta, run_listener, make_router, configuration):
    change(configuration, routes=f"beta.test 127.0.0.1:{beta.smtp_inbound_tcp_port}")
    run_listener(beta)
    queue_at(alpha, [BOB])

    make_router(alpha).run_once()

    assert bob_mailbox().count() == 1


def test_one_session_carries_every_recipient_and_a_refused_one_gets_a_report(alpha, beta, run_listener, make_router):
    change(alpha, smtp_outbound_tcp_port=beta.smtp_inbound_tcp_port)
    run_listener(beta)
    message = queue_at(alpha, [BOB, "ghost@beta.test"])

    make_router(alpha).run_once()

    attempt = DeliveryAttempt.objects.get(message=message)
    assert attempt.outcome == DeliveryAttempt.Outcome.PARTIAL
    assert [entry["result"] for entry in attempt.recipients] == ["delivered", "failed"]
    assert attempt.transcript.count("> mail FROM:<jane@acme.test>") == 1
    states = dict(QueuedRecipient.objects.filter(message=message).values_list("recipient", "state"))
    assert states == {BOB: "delivered", "ghost@beta.test": "failed"}
    report = MailboxEntry.objects.get(person__internet_address=JANE).message
    assert report.origin == ReceivedMessage.Origin.REPORT
    assert report.mail_from == ""
    assert b"Final-Recipient: rfc822; ghost@beta.test" in bytes(report.data)
    assert b"Diagnostic-Code: smtp; 550 5.1.1 User unknown" in bytes(report.data)


def test_no_outbound_port_holds_mail_with_the_reason_until_the_settings_allow_it(alpha, beta, run_listener, make_router):
    change(alpha, smtp_outbound_tcp_status="disabled", smtp_outbound_ssl_status="disabled")
    run_listener(beta)
    message = queue_at(alpha, [BOB])
    router = make_router(alpha)

    router.run_once()

    queued = QueuedRecipient.objects.get(message=message)
    assert (queued.state, queued.held_by, queued.attempts) == ("held", "router", 0)
    assert "Outbound TCP/IP port and SSL port of the Server document are both Disabled" in shown(queued.last_error)

    change(alpha, smtp_outbound_tcp_status="enabled", smtp_outbound_tcp_port=beta.smtp_inbound_tcp_port)
    router.run_once()

    queued.refresh_from_db()
    assert queued.state == "delivered"
    assert bob_mailbox().count() == 1


def test_smtp_outside_the_local_domain_disabled_holds_mail(alpha, beta, make_router, configuration):
    change(configuration, smtp_outside_local_domain=False)
    message = queue_at(alpha, [BOB])

    make_router(alpha).run_once()

    queued = QueuedRecipient.objects.get(message=message)
    assert queued.state == "held"
    assert shown(queued.last_error).startswith("SMTP used when sending messages outside the local Internet domain is Disabled")


def test_without_relay_host_or_route_the_mx_records_decide(alpha, beta, run_listener, make_router, configuration):
    change(configuration, routes="")
    change(alpha, smtp_outbound_tcp_port=beta.smtp_inbound_tcp_port)
    run_listener(beta)
    message = queue_at(alpha, [BOB])
    asked = []

    make_router(alpha, resolver=lambda domain: asked.append(domain) or ["127.0.0.1"]).run_once()

    assert asked == ["beta.test"]
    assert bob_mailbox().count() == 1
    assert shown(last_attempt(message).destination) == "MX records of beta.test"
