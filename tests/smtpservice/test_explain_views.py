"""Pages that explain and verify a server's inbound SMTP: the policy simulator, the self-test, and the
drift between what is configured and what the listener reports, on the dashboard and the server page."""
import datetime

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from directory import models
from directory.models import DocumentVersion
from smtpservice.models import DirectoryRevision, ListenerStatus, ReceivedMessage
from smtpservice.store.snapshot import current_revision
from tests.smtpservice.conftest import PASSWORD, save, wait_until
from tests.smtpservice.test_views import part, text

pytestmark = pytest.mark.django_db(transaction=True)


def logged_in(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def reader_client(reader):
    return logged_in(reader)


@pytest.fixture
def editor_client(editor):
    return logged_in(editor)


def simulate(client, server, **data):
    form = {"client_address": "203.0.113.5", "local_address": "127.0.0.1", "tls": "none", "mail_from": "sender@example.org",
            "recipients": "", **data}
    response = client.post(reverse("explain:simulator", args=[server.pk]), form)
    assert response.status_code == 200
    return response.content.decode()


def steps(page):
    """The text of each simulated step, in order."""
    assert 'class="list-unstyled simulation-steps"' in page, "no simulation on the page"
    chunks = page.split("simulation-steps", 1)[1].split("</ol>", 1)[0].split('<li class="card mb-2 simulation-step step-')[1:]
    return [text(chunk.split(">", 1)[1]) for chunk in chunks]


# --- Policy simulator ------------------------------------------------------------------------------


def test_simulator_form_is_offered_to_a_reader_with_the_servers_listen_address(reader_client, make_server, configuration):
    server = make_server(listen_addresses=["127.0.0.1"])
    response = reader_client.get(reverse("explain:simulator", args=[server.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'name="local_address" value="127.0.0.1"' in page
    assert 'name="password"' in page and 'method="post"' in page
    assert "simulation-steps" not in page


def test_simulator_shows_each_step_with_the_exact_reply_and_the_rule_that_decided(reader_client, make_server, configuration, jane):
    server = make_server()
    save(models.ConfigurationSettings, {"internal_hosts": ["10.0.0.0/8"]}, instance=configuration)
    page = simulate(reader_client, server, login="jane@acme.test", recipients="jane@acme.test\nnobody@acme.test\nsomeone@example.net")
    connect, ehlo, auth, mail, local, unknown, relay = steps(page)
    assert f"Connect from 203.0.113.5 to 127.0.0.1 port {server.smtp_inbound_tcp_port}" in connect
    assert "S: 220 mail1.acme.test ESMTP Service ready" in connect
    assert "Connection controls" in connect and "Allow connections only from these hosts is empty" in connect
    assert "Authentication options" in connect
    assert "Load Internet configurations from Server\\Internet Sites documents is Disabled: the authentication options come" in connect
    assert "S: 250-ENHANCEDSTATUSCODES" in ehlo and "S: 250 PIPELINING" in ehlo
    assert "STARTTLS is not offered: no TLS credentials are chosen for this address" in ehlo
    assert "No AUTH in clear text on the TCP/IP port: TCP/IP authentication: Name & password is No" in ehlo
    assert "Anonymous mail is accepted in clear text" in ehlo
    assert "S: 503 5.5.1 Error: authentication not enabled" in auth
    assert "S: 250 2.1.0 OK" in mail
    assert "S: 250 2.1.5 OK" in local and "delivered to Jane Doe/Sales/Acme" in local and "local delivery" in local
    assert "S: 550 5.1.1 User unknown" in unknown and "no person has the Internet address nobody@acme.test" in unknown
    assert "S: 554 5.7.1 Relay rejected for policy reasons." in relay and "client 203.0.113.5 is not an internal host" in relay
    assert "1 recipient (1 local, 0 relayed, 2 refused)" in text(page)


def test_simulator_names_the_connection_entry_that_denies_the_client(reader_client, make_server, configuration):
    server = make_server()
    save(models.ConfigurationSettings, {"connection_deny_hosts": ["203.0.113.0/24"]}, instance=configuration)
    connect, ehlo, *_rest = steps(simulate(reader_client, server))
    assert "S: 554 5.7.1 Connection denied for policy reasons." in connect
    assert "denied by the entry 203.0.113.0/24 of Deny connections from these hosts" in connect
    assert "S: 503 5.7.1 Connection denied for policy reasons." in ehlo


def test_simulator_explains_which_site_supplies_the_options_and_server_access(
    reader_client, make_server, make_credentials, make_site, configuration, jane,
):
    make_site("Loopback site", mapped_addresses=["127.0.0.1"], tcp_auth_anonymous=False)
    server = make_server(load_internet_sites=True, tls_credentials=make_credentials().name,
                         smtp_inbound_enforce_server_access=True, access_server=["*/Sales/Acme"])
    page = simulate(reader_client, server, tls="starttls", login="Jane Doe/Sales/Acme", password=PASSWORD,
                    mail_from="jane@acme.test", recipients="someone@example.net")
    connect, ehlo, starttls, ehlo_tls, auth, mail, relay = steps(page)
    assert "Site document “Loopback site” is mapped to the local address 127.0.0.1 by its entry 127.0.0.1" in connect
    assert "Site enabled" in connect
    assert "S: 220 2.0.0 Ready to start TLS" in starttls and "the TLS credentials of the Server document" in starttls
    assert "S: 250 AUTH PLAIN LOGIN" in ehlo_tls
    assert "The password given is checked" in auth
    assert "is allowed by Access server through */Sales/Acme" in auth
    assert "S: 235 2.7.0 Authentication successful" in auth
    assert "S: 250 2.1.5 OK" in relay and "all authenticated users may relay" in relay and "relayed" in relay
    assert PASSWORD not in page


def test_simulator_without_password_says_it_assumes_the_password_is_right(reader_client, make_server, configuration, jane):
    server = make_server(smtp_inbound_tcp_auth_name_password=True)
    page = simulate(reader_client, server, login="jane@acme.test")
    auth = next(step for step in steps(page) if step.startswith("3. AUTH"))
    assert "No password was given: the simulator takes it as right" in auth
    assert "S: 235 2.7.0 Authentication successful" in auth


def test_simulator_a_wrong_password_gets_535_and_the_rest_is_never_answered(reader_client, make_server, configuration, jane):
    server = make_server(smtp_inbound_tcp_auth_name_password=True)
    page = simulate(reader_client, server, login="jane@acme.test", password="wrong", recipients="jane@acme.test")
    *_start, auth, mail, rcpt = steps(page)
    assert "S: 535 5.7.8 Authentication credentials invalid" in auth and "does not match the Internet password" in auth
    assert "(no reply: the connection is closed)" in mail and "no answer" in rcpt


def test_simulator_a_port_that_is_not_bound_refuses_the_connection(reader_client, make_server, configuration):
    server = make_server()
    [connect] = steps(simulate(reader_client, server, port=server.smtp_inbound_ssl_port, tls="ssl"))
    assert "(connection refused)" in connect and "its status is Disabled" in connect


@pytest.mark.parametrize(("data", "error"), [
    ({"tls": "ssl", "port": "tcp"}, "is the TCP/IP port, which starts in clear text"),
    ({"tls": "none", "port": "ssl"}, "is the SSL port, where TLS starts with the first byte"),
    ({"mail_from": "", "recipients": "jane@acme.test"}, "Recipients need a MAIL FROM."),
    ({"recipients": "jane@acme.test\nnot an address"}, "“not an address” is not a mail address"),
    ({"client_address": "mail.example.org"}, "Enter a valid IPv4 or IPv6 address."),
])
def test_simulator_form_errors_say_what_to_fix(reader_client, make_server, configuration, data, error):
    server = make_server()
    ports = {"tcp": server.smtp_inbound_tcp_port, "ssl": server.smtp_inbound_ssl_port}
    data = {key: ports.get(value, value) if key == "port" else value for key, value in data.items()}
    page = simulate(reader_client, server, **data)
    assert error in text(page)
    assert "simulation-steps" not in page


# --- Self-test --------------------------------------------------------------------------------------


def test_selftest_page_explains_and_only_an_editor_may_run_it(reader_client, make_server, configuration):
    server = make_server()
    url = reverse("explain:selftest", args=[server.pk])
    page = reader_client.get(url).content.decode()
    assert "no message is ever sent" in page and "An Editor can run the self-test." in page
    assert "Run the self-test" not in page
    assert reader_client.post(url).status_code == 403


def test_editor_runs_the_selftest_and_reads_the_transcript(editor_client, make_server, configuration, run_listener):
    server = make_server()
    run_listener(server)
    page = editor_client.post(reverse("explain:selftest", args=[server.pk])).content.decode()
    probe = part(page, 'id="probe-tcp"', "</article>")
    assert f"TCP/IP port {server.smtp_inbound_tcp_port} · 127.0.0.1" in probe
    assert "S: 220 mail1.acme.test ESMTP Service ready" in probe and "C: EHLO selftest.invalid" in probe
    assert "C: RCPT TO:<probe@relay-test.invalid>" in probe and "C: QUIT" in probe
    assert "No problem found, but 1 warning to read." in text(page), "a notice is not “no problem”"
    assert not ReceivedMessage.objects.exists()


def test_server_page_links_the_simulator_and_the_selftest(reader_client, editor_client, make_server):
    server = make_server()
    page = reader_client.get(server.get_absolute_url()).content.decode()
    assert reverse("explain:simulator", args=[server.pk]) in page
    assert f'href="{reverse("explain:selftest", args=[server.pk])}"' in page
    page = editor_client.get(server.get_absolute_url()).content.decode()
    assert f'action="{reverse("explain:selftest", args=[server.pk])}"' in page and "Run the inbound self-test" in page


# --- Drift: configured against bound -------------------------------------------------------------------


PORT = {"kind": "tcp", "address": "127.0.0.1", "configured": True, "bound": True, "error": "", "detail": ""}


def dashboard_card(client, server):
    return part(client.get(reverse("dashboard")).content.decode(), f'id="server-{server.pk}"', '<div class="card-body">')


def dashboard_panel(client, server):
    return part(client.get(reverse("dashboard")).content.decode(), f'id="listener-status-{server.pk}"')


def status(server, **fields):
    fields.setdefault("revision", current_revision())
    fields.setdefault("ports", [{**PORT, "port": server.smtp_inbound_tcp_port}])
    return ListenerStatus.objects.create(server=server, pid=4242, host="mx1", **fields)


def test_dashboard_flags_no_drift_when_every_configured_port_is_bound(reader_client, make_server):
    server = make_server()
    status(server)
    assert "Configured ports bound" in dashboard_card(reader_client, server)
    assert "Drift" not in dashboard_panel(reader_client, server)


def test_dashboard_flags_a_listener_that_is_down(reader_client, make_server):
    server = make_server()
    assert "Drift: listener down" in dashboard_card(reader_client, server)
    assert "Start it: python manage.py runsmtp --server mail1/Acme" in dashboard_panel(reader_client, server)


def test_disabled_listener_task_is_not_drift(reader_client, make_server):
    server = make_server(smtp_listener_enabled=False)
    assert "Listener task Disabled" in dashboard_card(reader_client, server)


def test_dashboard_flags_a_stale_heartbeat(reader_client, make_server):
    server = make_server()
    status(server, heartbeat_at=timezone.now() - datetime.timedelta(minutes=5))
    assert "Drift: stale heartbeat" in dashboard_card(reader_client, server)
    assert "Listener not responding" in dashboard_panel(reader_client, server)


def test_dashboard_flags_a_bind_failure_and_offers_the_last_version_that_bound(reader_client, editor_client, make_server):
    server = make_server()
    DocumentVersion.objects.filter(document_type="server", object_id=str(server.pk)).update(bound_at=timezone.now())
    server = save(models.Server, {"smtp_inbound_tcp_port": server.smtp_inbound_tcp_port + 1}, instance=server)
    status(server, ports=[{**PORT, "port": server.smtp_inbound_tcp_port, "bound": False, "error": "Address already in use"}])
    assert "Drift: port not bound" in dashboard_card(reader_client, server)
    panel = dashboard_panel(editor_client, server)
    assert f"TCP/IP port {server.smtp_inbound_tcp_port} on 127.0.0.1 is configured but not bound (Address already in use)" in panel
    assert "restore version 1 of this Server document, the last version whose ports all bound" in panel
    page = editor_client.get(reverse("dashboard")).content.decode()
    assert f'href="{reverse("directory:server-restore", args=[server.pk, 1])}"' in page
    assert reverse("directory:server-restore", args=[server.pk, 1]) not in reader_client.get(reverse("dashboard")).content.decode()


def test_dashboard_flags_a_listener_on_older_settings_only_once_it_had_time_to_load_them(reader_client, make_server):
    server = make_server()
    current = current_revision()
    DirectoryRevision.objects.update(changed=timezone.now() - datetime.timedelta(seconds=30))
    listener = status(server, revision=current - 1)
    assert "Drift: older settings" in dashboard_card(reader_client, server)
    panel = dashboard_panel(reader_client, server)
    assert f"serves settings revision {current - 1}, but the directory is at revision {current}" in panel
    assert "has not picked up the newest change" in panel

    DirectoryRevision.objects.update(changed=listener.heartbeat_at)
    assert "Drift" not in dashboard_card(reader_client, server), "a change saved just before the heartbeat is not drift yet"


def test_server_page_shows_the_same_drift_as_the_dashboard(reader_client, make_server, configuration, run_listener):
    server = make_server()
    listener = run_listener(server)
    wait_until(lambda: ListenerStatus.objects.filter(server=server, running=True).exists())
    page = reader_client.get(server.get_absolute_url()).content.decode()
    assert "Configured ports bound" in dashboard_card(reader_client, server)
    assert "Drift" not in part(page, f'id="listener-status-{server.pk}"')
    listener.stop()
    assert "Drift: listener down" in dashboard_card(reader_client, server)
