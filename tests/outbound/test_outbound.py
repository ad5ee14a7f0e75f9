"""The router's decisions as tables of cases, without sockets or database: destination, ports and
TLS, back-off, reply status, and the non-delivery report's format (RFC 3464)."""
import datetime
import email
from types import SimpleNamespace

import dns.exception
import dns.name
import dns.resolver
import pytest

from smtpservice.core import outbound, policy
from smtpservice.core.outbound import IMPLICIT, MX, PLAIN, RELAY, ROUTE, STARTTLS, Destination, Step
from smtpservice.router import service as router

NOW = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)


def snapshot(ports=None, **config):
    ports = ports or policy.OutboundPorts()
    return policy.SettingsSnapshot(
        server_name="mail1/Acme", host_name="mail1.acme.test", outbound=ports,
        config=policy.ConfigSnapshot(local_domains=("acme.test",), **config), config_source="default Configuration Settings (*)",
        people=(policy.PersonSnapshot("Jane Doe/Sales/Acme", internet_address="jane@acme.test"),),
    )


ROUTES = (
    policy.Route("partner.test", "127.0.0.1:2626", "verified", "/etc/ssl/partner.pem"),
    policy.Route("*.beta.test", "mx.beta.test", "opportunistic"),
)


@pytest.mark.parametrize(("config", "recipient", "expected"), [
    ({}, "bob@example.org", Destination(MX, "example.org")),
    ({"routes": ROUTES}, "ann@partner.test", Destination(ROUTE, "127.0.0.1", 2626, "verified", "/etc/ssl/partner.pem")),
    ({"routes": ROUTES}, "ann@sub.partner.test", Destination(MX, "sub.partner.test")),
    ({"routes": ROUTES}, "bob@eu.beta.test", Destination(ROUTE, "mx.beta.test", None, "opportunistic")),
    ({"routes": ROUTES}, "bob@beta.test", Destination(MX, "beta.test")),
    ({"routes": ROUTES, "relay_host": "relay.acme.test"}, "ann@partner.test", Destination(RELAY, "relay.acme.test")),
    ({"relay_host": "relay.acme.test:2525", "relay_auth": "required"}, "bob@example.org",
     Destination(RELAY, "relay.acme.test", 2525, authenticate=True)),
    ({"relay_host": "[::1]:2525", "relay_auth": "enabled"}, "bob@example.org", Destination(RELAY, "::1", 2525, authenticate=True)),
], ids=["mx", "route-with-port-and-ca", "route-is-exact", "route-wildcard", "wildcard-is-subdomains-only", "relay-first",
        "relay-port-and-auth", "relay-ipv6"])
def test_relay_host_then_route_then_mx(config, recipient, expected):
    assert outbound.destination_for(snapshot(**config), recipient) == expected


def test_recipients_of_one_destination_share_a_session_key():
    snap = snapshot(routes=(policy.Route("*.beta.test", "mx.beta.test"),))
    assert outbound.destination_for(snap, "a@eu.beta.test") == outbound.destination_for(snap, "b@us.beta.test")
    assert len({outbound.destination_for(snap, f"x@{domain}") for domain in ("eu.beta.test", "a.example", "b.example")}) == 3


@pytest.mark.parametrize(("ports", "config", "state", "words"), [
    (policy.OutboundPorts(), {"smtp_outside_local_domain": False}, "held",
     "SMTP used when sending messages outside the local Internet domain is Disabled in the default Configuration Settings (*)"),
    (policy.OutboundPorts(tcp_status="disabled", ssl_status="disabled"), {}, "held", "both Disabled"),
    (policy.OutboundPorts(), {}, "failed", "not a mailbox@domain address"),
])
def test_no_session_when_settings_forbid_or_address_is_bad(ports, config, state, words):
    recipient = "nobody" if state == "failed" else "bob@example.org"
    blocked = outbound.destination_for(snapshot(ports, **config), recipient)
    assert blocked.state == state
    assert words in blocked.reason


@pytest.mark.parametrize(("ports", "port", "steps"), [
    (policy.OutboundPorts(), None, (Step(25, PLAIN),)),
    (policy.OutboundPorts(tcp_port=26), None, (Step(26, PLAIN),)),
    (policy.OutboundPorts(tcp_status="negotiated_ssl"), None, (Step(25, STARTTLS),)),
    (policy.OutboundPorts(ssl_status="enabled"), None, (Step(465, IMPLICIT), Step(25, PLAIN))),
    (policy.OutboundPorts(tcp_status="negotiated_ssl", ssl_status="enabled", ssl_port=4465), None,
     (Step(4465, IMPLICIT), Step(25, STARTTLS))),
    (policy.OutboundPorts(tcp_status="disabled", ssl_status="enabled"), None, (Step(465, IMPLICIT),)),
    (policy.OutboundPorts(tcp_status="disabled"), None, ()),
    (policy.OutboundPorts(tcp_port=26), 2626, (Step(2626, PLAIN),)),
    (policy.OutboundPorts(tcp_status="negotiated_ssl", ssl_status="enabled"), 2626, (Step(2626, STARTTLS),)),
    (policy.OutboundPorts(tcp_status="disabled", ssl_status="enabled"), 2626, (Step(2626, IMPLICIT),)),
], ids=["default", "port-26", "negotiated", "ssl-first-then-tcp", "ssl-then-starttls", "ssl-only", "nothing",
        "explicit-port", "explicit-port-starttls", "explicit-port-ssl-only"])
def test_ports_and_encryption_come_from_the_smtp_outbound_column(ports, port, steps):
    assert outbound.connection_plan(ports, Destination(ROUTE, "127.0.0.1", port)) == steps


@pytest.mark.parametrize(("ports", "port", "steps"), [
    (policy.OutboundPorts(), None, (Step(25, STARTTLS, required=True),)),
    (policy.OutboundPorts(tcp_status="negotiated_ssl"), None, (Step(25, STARTTLS, required=True),)),
    (policy.OutboundPorts(ssl_status="enabled"), None, (Step(465, IMPLICIT),)),
    (policy.OutboundPorts(tcp_status="negotiated_ssl", ssl_status="enabled"), None, (Step(465, IMPLICIT),)),
    (policy.OutboundPorts(tcp_status="disabled"), None, ()),
    (policy.OutboundPorts(), 2626, (Step(2626, STARTTLS, required=True),)),
    (policy.OutboundPorts(tcp_status="disabled", ssl_status="enabled"), 2626, (Step(2626, IMPLICIT),)),
], ids=["enabled-requires-starttls", "negotiated", "ssl-without-fallback", "ssl-and-negotiated-without-fallback",
        "nothing", "explicit-port", "explicit-port-ssl-only"])
def test_the_verified_policy_requires_tls_and_never_falls_back_from_the_ssl_port(ports, port, steps):
    destination = Destination(ROUTE, "127.0.0.1", port, tls=outbound.VERIFIED)
    assert outbound.connection_plan(ports, destination) == steps
    assert all(step.mode != PLAIN for step in steps)


@pytest.mark.parametrize(("config", "tls", "ca_file"), [
    ({"relay_host": "relay.acme.test"}, "opportunistic", ""),
    ({"relay_host": "relay.acme.test", "relay_tls_policy": "verified", "relay_ca_bundle": "/etc/ssl/relay.pem"},
     "verified", "/etc/ssl/relay.pem"),
    ({}, "opportunistic", ""),
], ids=["relay-default", "relay-verified", "mx-opportunistic"])
def test_relay_host_and_mx_carry_their_tls_policy(config, tls, ca_file):
    destination = outbound.destination_for(snapshot(policy.OutboundPorts(), **config), "bob@example.org")
    assert (destination.tls, destination.ca_file) == (tls, ca_file)


@pytest.mark.parametrize(("attempts", "random", "seconds"), [
    (1, 0.0, 150), (1, 0.999999, 299.99985), (2, 0.0, 300), (3, 0.5, 900), (6, 0.0, 1800), (30, 1 - 1e-9, 3600),
])
def test_back_off_doubles_with_jitter_up_to_the_maximum(attempts, random, seconds):
    assert outbound.retry_delay(attempts, 300, 3600, lambda: random) == pytest.approx(seconds)


@pytest.mark.parametrize(("code", "text", "status"), [
    (550, "5.1.1 User unknown", "5.1.1"), (451, "4.3.0 Local error", "4.3.0"), (554, "Transaction failed", "5.0.0"),
    (450, "5.1.1 mismatched class", "4.0.0"),
])
def test_reply_status_uses_the_enhanced_code_when_it_agrees(code, text, status):
    assert outbound.reply_status(code, text) == status


def test_local_person_is_found_only_in_local_domains():
    snap = snapshot()
    assert outbound.local_person(snap, "Jane@ACME.test")[1].full_name == "Jane Doe/Sales/Acme"
    assert outbound.local_person(snap, "ghost@acme.test") == (True, None)
    assert outbound.local_person(snap, "jane@example.org") == (False, None)


def test_non_delivery_report_is_an_rfc_3464_multipart_report():
    original = SimpleNamespace(
        mail_from="jane@acme.test", received_at=NOW - datetime.timedelta(hours=1),
        data=b"From: jane@acme.test\r\nTo: bob@beta.test\r\nSubject: Plans\r\nMessage-ID: <plans@acme.test>\r\n\r\nSecret body\r\n",
    )
    failures = [outbound.Failure("bob@beta.test", "5.1.1", "mx.beta.test refused the recipient.", "550 5.1.1 User unknown", "mx.beta.test")]
    report = email.message_from_bytes(outbound.non_delivery_report(snapshot(), original, failures, NOW))

    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    assert report["To"] == "jane@acme.test"
    assert report["Auto-Submitted"] == "auto-replied"
    assert report["In-Reply-To"] == "<plans@acme.test>"
    human, status, headers = report.get_payload()
    assert human.get_content_type() == "text/plain"
    assert "bob@beta.test" in human.get_payload(decode=True).decode()
    assert status.get_content_type() == "message/delivery-status"
    per_message, per_recipient = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; mail1.acme.test"
    assert per_recipient["Final-Recipient"] == "rfc822; bob@beta.test"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.1"
    assert per_recipient["Remote-MTA"] == "dns; mx.beta.test"
    assert per_recipient["Diagnostic-Code"] == "smtp; 550 5.1.1 User unknown"
    assert headers.get_content_type() == "text/rfc822-headers"
    quoted = headers.get_payload()
    assert "Subject: Plans" in quoted and "Secret body" not in quoted


def fake_dns(answers):
    """A stand-in for ``dns.resolver.Resolver.resolve``: {(name, type): records, or an exception class}."""

    def resolve(resolver, name, record_type):
        answer = answers.get((name, record_type), dns.resolver.NoAnswer)
        if isinstance(answer, type) and issubclass(answer, Exception):
            raise answer()
        return answer

    return resolve


def mx(preference, host):
    return SimpleNamespace(preference=preference, exchange=dns.name.from_text(host))


@pytest.mark.parametrize(("answers", "hosts"), [
    ({("beta.test", "MX"): [mx(20, "mx2.beta.test."), mx(10, "mx1.beta.test.")]}, ["mx1.beta.test", "mx2.beta.test"]),
    ({("beta.test", "A"): ["192.0.2.1"]}, ["beta.test"]),
    ({("beta.test", "AAAA"): ["2001:db8::1"]}, ["beta.test"]),
])
def test_mx_hosts_best_first_else_the_domain_itself(monkeypatch, answers, hosts):
    monkeypatch.setattr(dns.resolver.Resolver, "resolve", fake_dns(answers))
    assert router.resolve_mx("beta.test") == hosts


@pytest.mark.parametrize(("answers", "permanent", "words"), [
    ({("beta.test", "MX"): dns.resolver.NXDOMAIN}, True, "does not exist"),
    ({("beta.test", "MX"): [mx(0, ".")]}, True, "null MX"),
    ({}, True, "neither MX nor address records"),
    ({("beta.test", "MX"): dns.exception.Timeout}, False, "cannot be read now"),
])
def test_dns_failures_are_permanent_only_when_the_domain_takes_no_mail(monkeypatch, answers, permanent, words):
    monkeypatch.setattr(dns.resolver.Resolver, "resolve", fake_dns(answers))
    with pytest.raises(router.DeliveryError) as error:
        router.resolve_mx("beta.test")
    assert error.value.permanent is permanent
    assert words in error.value.reason
