"""MX hosts of equal preference share the load (RFC 5321 s 5.1), and the relay host's certificate is
checked against the CA bundle its Configuration Settings name, as a route's is."""
import random

import dns.name
import dns.resolver
import pytest

from smtpservice.core import outbound
from smtpservice.core.texts import render as shown
from smtpservice.models import DeliveryAttempt, MailboxEntry
from smtpservice.router import service
from tests.outbound.conftest import BOB, change, queue_at

RECORDS = [(20, "backup.acme.test"), (10, "a.acme.test"), (10, "b.acme.test"), (10, "c.acme.test"), (30, "last.acme.test")]


def test_equal_preference_hosts_come_in_random_order_lower_preference_first():
    orders = {tuple(outbound.order_mx(RECORDS, random.Random(seed).shuffle)) for seed in range(60)}

    assert {order[3:] for order in orders} == {("backup.acme.test", "last.acme.test")}
    assert {frozenset(order[:3]) for order in orders} == {frozenset({"a.acme.test", "b.acme.test", "c.acme.test"})}
    assert {order[0] for order in orders} == {"a.acme.test", "b.acme.test", "c.acme.test"}, "each one goes first some time"


class MX:
    def __init__(self, preference, host):
        self.preference, self.exchange = preference, dns.name.from_text(host)


def test_resolve_mx_shuffles_the_answer_within_a_preference(monkeypatch):
    monkeypatch.setattr(dns.resolver.Resolver, "resolve", lambda self, name, kind: [MX(*record) for record in RECORDS])

    first = {service.resolve_mx("acme.test", random.Random(seed).shuffle)[0] for seed in range(60)}

    assert first == {"a.acme.test", "b.acme.test", "c.acme.test"}


def relay_to_beta(alpha, beta, configuration, ca_file=""):
    """A's relay host is B's TCP/IP port, with STARTTLS (Negotiated SSL), verified against the given CA bundle."""
    change(alpha, smtp_outbound_tcp_status="negotiated_ssl")
    change(configuration, relay_host=f"127.0.0.1:{beta.smtp_inbound_tcp_port}", relay_tls_policy="verified",
           relay_ca_bundle=ca_file)


@pytest.mark.django_db(transaction=True)
def test_relay_host_certificate_is_verified_against_its_ca_bundle(alpha, beta, configuration, run_listener, make_router, ca_file):
    relay_to_beta(alpha, beta, configuration, ca_file)
    run_listener(beta)
    message = queue_at(alpha, [BOB])

    make_router(alpha).run_once()

    assert MailboxEntry.objects.get(person__internet_address=BOB).message.tls is True
    attempt = DeliveryAttempt.objects.filter(message=message).latest("pk")
    assert (attempt.tls, shown(attempt.certificate)) == ("starttls", f"certificate verified against the CA bundle {ca_file}")


@pytest.mark.django_db(transaction=True)
def test_relay_host_without_its_ca_bundle_fails_verification_and_waits(alpha, beta, configuration, run_listener, make_router):
    relay_to_beta(alpha, beta, configuration)
    run_listener(beta)
    message = queue_at(alpha, [BOB])

    make_router(alpha).run_once()

    recipient = message.queued_recipients.get()
    assert recipient.state == "deferred"
    assert "failed verification" in shown(recipient.last_error)
    assert not MailboxEntry.objects.exists()
