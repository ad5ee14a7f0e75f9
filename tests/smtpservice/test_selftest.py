"""The inbound self-test against a real listener: what it flags, what it reports, and that it sends nothing."""
import datetime
import socket

import pytest

from directory import models
from smtpservice.console import selftest
from smtpservice.models import MailboxEntry, QueuedRecipient, ReceivedMessage
from smtpservice.store.snapshot import load_snapshot
from tests.smtpservice.conftest import HOST_NAME, save

pytestmark = pytest.mark.django_db(transaction=True)

AUTH_BEFORE_TLS = "AUTH is offered before TLS"
OPEN_RELAY = "an open relay"


def run(server, **options):
    return selftest.run(load_snapshot(server.name), **options)


def flags(result):
    return [flag.text for flag in result.flags]


def findings(probe):
    return " ".join(finding.text for finding in probe.findings)


def credentials_for(make_credentials):
    return make_credentials("mail1-cert", HOST_NAME, "127.0.0.1").name


def test_name_and_password_on_the_tcp_port_without_starttls_required_is_flagged(
    make_server, make_credentials, configuration, run_listener,
):
    server = make_server(smtp_inbound_tcp_auth_name_password=True, tls_credentials=credentials_for(make_credentials))
    run_listener(server)
    result = run(server)
    [probe] = result.probes
    [flag] = flags(result)
    assert AUTH_BEFORE_TLS in flag
    assert "S: 250 AUTH PLAIN LOGIN" in [f"{who}: {line}" for who, line in probe.transcript]
    assert "TCP/IP authentication: Name & password to No" in findings(probe)


def test_healthy_settings_show_no_flag_and_report_the_starttls_certificate(
    make_server, make_credentials, configuration, run_listener, ca,
):
    server = make_server(tls_credentials=credentials_for(make_credentials), smtp_inbound_ssl_status="enabled")
    run_listener(server)
    result = run(server)
    assert result.flags == []
    tcp, ssl_port = result.probes
    assert "AUTH is not offered before TLS." in findings(tcp) and "STARTTLS works" in findings(tcp)
    assert ("C", "STARTTLS") in tcp.transcript and ("S", "220 2.0.0 Ready to start TLS") in tcp.transcript
    assert HOST_NAME in tcp.certificate.host_names and not tcp.certificate.expired
    assert tcp.certificate.verified is False, "the test CA is not in the system's trust store"
    assert "The certificate presented is not trusted" in findings(tcp) and result.notices, "not “no problem found”"
    assert "Implicit TLS works on the SSL port" in findings(ssl_port)
    assert ssl_port.certificate.subject == tcp.certificate.subject


def test_certificate_is_verified_against_the_trusted_cas_for_the_servers_host_name(
    make_server, make_credentials, configuration, run_listener, client_tls,
):
    server = make_server(tls_credentials=credentials_for(make_credentials))
    run_listener(server)
    [probe] = run(server, verify_context=client_tls).probes
    assert (probe.certificate.verified, probe.certificate.verification) == (True, f"trusted for {HOST_NAME}")


def test_relay_accepted_only_because_the_console_is_an_internal_host_is_not_flagged(make_server, configuration, run_listener):
    server = make_server()
    run_listener(server)
    [probe] = run(server).probes
    assert ("S", "250 2.1.5 OK") in probe.transcript
    assert "accepted only because this console's address 127.0.0.1 is trusted" in findings(probe)
    assert "An outside client is refused" in findings(probe)
    assert probe.flags == []


def test_relay_probe_accepted_with_anti_relay_enforcement_none_is_flagged(make_server, configuration, run_listener):
    save(models.ConfigurationSettings, {"anti_relay_enforcement": "none"}, instance=configuration)
    server = make_server()
    run_listener(server)
    result = run(server)
    [probe] = result.probes
    [flag] = flags(result)
    assert OPEN_RELAY in flag and "Perform anti-relay enforcement is None" in flag
    assert ("C", "RCPT TO:<probe@relay-test.invalid>") in probe.transcript


def test_refused_relay_probe_is_reported_plainly(make_server, configuration, run_listener):
    save(models.ConfigurationSettings, {"internal_hosts": []}, instance=configuration)
    server = make_server()
    run_listener(server)
    [probe] = run(server).probes
    assert "The relay probe to relay-test.invalid was refused (554 5.7.1 Relay rejected for policy reasons.)" in findings(probe)
    assert probe.flags == []


def test_the_selftest_never_sends_a_message(make_server, configuration, run_listener):
    save(models.ConfigurationSettings, {"anti_relay_enforcement": "none"}, instance=configuration)
    server = make_server()
    run_listener(server)
    [probe] = run(server).probes
    assert not any(line.startswith("DATA") for who, line in probe.transcript if who == "C")
    assert [line for who, line in probe.transcript if who == "C"][-2:] == ["RSET", "QUIT"]
    assert not (ReceivedMessage.objects.exists() or MailboxEntry.objects.exists() or QueuedRecipient.objects.exists())


def test_a_port_that_refuses_the_connection_is_reported_plainly(make_server, configuration):
    server = make_server()
    result = run(server)
    [probe] = result.probes
    [flag] = flags(result)
    assert f"Port {server.smtp_inbound_tcp_port} on 127.0.0.1 refused the connection: nothing listens there" in flag
    assert probe.transcript == [("", f"Connecting to 127.0.0.1 port {server.smtp_inbound_tcp_port}")]


def test_a_port_that_does_not_answer_is_reported_within_the_timeout(monkeypatch, make_server, configuration):
    monkeypatch.setattr(selftest, "TIMEOUT", 0.3)
    server = make_server()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", server.smtp_inbound_tcp_port))
        silent.listen()
        [flag] = flags(run(server))
    assert f"Port {server.smtp_inbound_tcp_port} on 127.0.0.1 gave no greeting: no answer within 0.3 seconds" in flag


def test_a_greeting_refused_to_the_console_stops_the_probe_without_a_flag(make_server, configuration, run_listener):
    save(models.ConfigurationSettings, {"connection_deny_hosts": ["127.0.0.1"]}, instance=configuration)
    server = make_server()
    run_listener(server)
    [probe] = run(server).probes
    assert "The greeting refuses this console's address (554 5.7.1 Connection denied for policy reasons.)" in findings(probe)
    assert probe.flags == []


def test_an_expired_certificate_is_flagged(make_server, make_credentials, configuration, run_listener, ca):
    expired = ca.issue_cert(HOST_NAME, "127.0.0.1", not_before=datetime.datetime(2020, 1, 1), not_after=datetime.datetime(2021, 1, 1))
    credentials = make_credentials()
    # The console refuses an expired certificate; it can only have expired since it was saved.
    models.TLSCredentials.objects.filter(pk=credentials.pk).update(
        certificate_pem="".join(blob.bytes().decode() for blob in expired.cert_chain_pems),
        private_key_pem=expired.private_key_pem.bytes().decode(),
    )
    server = make_server(tls_credentials=credentials.name)
    run_listener(server)
    [flag] = flags(run(server))
    assert "The certificate presented expired on 01/01/2021: clients that check certificates refuse it" in flag
