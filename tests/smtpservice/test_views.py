"""Console pages of the SMTP service: the listener's status, the effective settings, mail and the session log."""
import datetime
import html
import re
import smtplib
import socket

import pytest
from django.urls import reverse
from django.utils import timezone

from directory import models
from smtpservice.console import presenters as console
from smtpservice.models import ListenerStatus, ReceivedMessage, SessionLog
from smtpservice.store.snapshot import current_revision
from tests.directory import documents
from tests.smtpservice import records
from tests.smtpservice.conftest import save, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def text(fragment):
    """What a person reads in an HTML fragment: no tags, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def part(page, marker, end="</section>"):
    """The text of the part of ``page`` that starts at ``marker`` (an id or class attribute)."""
    assert marker in page, f"{marker} is not on the page"
    return text(page.split(marker, 1)[1].split(end, 1)[0])


@pytest.fixture
def console_client(client, reader):
    client.force_login(reader)
    return client


def server_page(client, server):
    response = client.get(server.get_absolute_url())
    assert response.status_code == 200
    return response.content.decode()


def status_panel(client, server):
    return part(server_page(client, server), f'id="listener-status-{server.pk}"')


# --- Listener status ----------------------------------------------------------------------------


def test_listener_not_running_says_so_with_the_command_on_the_dashboard_and_the_server_page(console_client, make_server):
    server = make_server()
    fix = "Listener not running Start it: python manage.py runsmtp --server mail1/Acme"
    assert fix in status_panel(console_client, server)
    dashboard = console_client.get(reverse("dashboard")).content.decode()
    assert fix in part(dashboard, f'id="server-{server.pk}"')


def test_disabled_listener_task_says_to_enable_it_first(console_client, make_server):
    server = make_server(smtp_listener_enabled=False)
    panel = status_panel(console_client, server)
    assert "the SMTP listener task is Disabled on this Server document" in panel
    assert "set SMTP listener task to Enabled on the Basics tab, then start: python manage.py runsmtp" in panel


def test_running_listener_shows_each_port_configured_and_bound_on_the_current_revision(
    console_client, make_server, configuration, run_listener,
):
    server = make_server()
    run_listener(server)
    panel = status_panel(console_client, server)
    assert "Listener running" in panel and "Start it" not in panel
    assert f"TCP/IP {server.smtp_inbound_tcp_port} 127.0.0.1 Enabled" in panel
    tcp_row = panel.split(f"TCP/IP {server.smtp_inbound_tcp_port}")[1].split("SSL")[0]
    assert tcp_row.strip().endswith("Yes"), tcp_row
    ssl_row = panel.split(f"SSL {server.smtp_inbound_ssl_port}")[1]
    assert "Not bound by the settings" in ssl_row and "its status is Disabled" in ssl_row
    assert f"Settings revision in use {current_revision()} (the directory's current revision)" in panel
    assert "Open sessions 0" in panel


def test_port_that_cannot_be_bound_is_reported_with_the_fix_and_the_other_port_serves(
    console_client, make_server, make_credentials, configuration, run_listener,
):
    server = make_server(smtp_inbound_ssl_status="enabled", tls_credentials=make_credentials().name)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", server.smtp_inbound_tcp_port))
        squatter.listen()
        run_listener(server)
        panel = status_panel(console_client, server)
    assert "Listener running, but a port cannot be bound; the other ports keep serving." in panel
    tcp_row = panel.split(f"TCP/IP {server.smtp_inbound_tcp_port}")[1].split(f"SSL {server.smtp_inbound_ssl_port}")[0]
    assert "address already in use" in tcp_row.lower()
    assert "choose another port number on the Mail tab" in tcp_row
    ssl_row = panel.split(f"SSL {server.smtp_inbound_ssl_port}")[1]
    assert "Enabled" in ssl_row and "Yes" in ssl_row and "cannot be bound" not in ssl_row


def test_listener_whose_only_port_cannot_be_bound_serves_nothing(make_server):
    server = make_server()
    ListenerStatus.objects.create(server=server, revision=current_revision(), ports=[
        {"kind": "tcp", "port": 25, "address": "*", "configured": True, "bound": False, "error": "Permission denied", "detail": ""},
    ])
    report = console.listener_report(server)
    assert (report.level, report.headline) == (console.PROBLEM, "Listener running, but it serves no port.")
    assert "a port below 1024 needs the right to bind it" in report.ports[0].problem


def test_stale_heartbeat_says_the_listener_is_not_responding(console_client, make_server):
    server = make_server()
    ListenerStatus.objects.create(
        server=server, pid=4242, host="mx1", revision=current_revision(),
        heartbeat_at=timezone.now() - datetime.timedelta(minutes=5),
        ports=[{"kind": "tcp", "port": 25, "address": "127.0.0.1", "configured": True, "bound": True, "error": "", "detail": ""}],
    )
    panel = status_panel(console_client, server)
    assert "Listener not responding: no heartbeat since" in panel and "5 minutes ago" in panel
    assert "Its process (4242 on mx1) has stopped or hangs" in panel
    assert "python manage.py runsmtp --server mail1/Acme" in panel
    assert "stale" in panel


def test_stopped_listener_is_not_running(console_client, make_server):
    server = make_server()
    ListenerStatus.objects.create(server=server, running=False, revision=current_revision())
    assert "Listener not running: it stopped" in status_panel(console_client, server)


def test_listener_on_an_older_revision_is_pointed_out(console_client, make_server):
    server = make_server()
    revision = current_revision()
    ListenerStatus.objects.create(server=server, revision=revision - 1, ports=[
        {"kind": "tcp", "port": 25, "address": "*", "configured": True, "bound": True, "error": "", "detail": ""},
    ])
    panel = status_panel(console_client, server)
    assert "Listener running" in panel
    assert f"uses settings revision {revision - 1}, older than the directory's revision {revision}" in panel
    assert f"older than the directory's {revision}" in panel
    assert console.listener_report(server).level == console.NOTICE


# --- Effective settings -------------------------------------------------------------------------


def settings_by_label(effective):
    """{label: (value, source)} over every group of the panel."""
    return {setting.label: (setting.value, group.source) for group in effective.groups for setting in group.settings}


def test_effective_settings_without_internet_sites_come_from_server_and_configuration(
    console_client, make_server, make_credentials, configuration,
):
    server = make_server(tls_credentials=make_credentials().name, smtp_inbound_tcp_auth_anonymous=False)
    save(models.ConfigurationSettings, {"starttls_inbound": "required", "max_recipients": 7}, instance=configuration)
    effective = console.effective_settings(server)
    values = settings_by_label(effective)
    document, default_configuration = "Server document mail1/Acme", "default Configuration Settings (*)"
    assert values["SMTP Inbound TCP/IP port number"] == (f"{server.smtp_inbound_tcp_port} · Enabled", document)
    assert values["SMTP Inbound SSL port number"] == (f"{server.smtp_inbound_ssl_port} · Disabled", document)
    assert values["SSL negotiated over TCP/IP port"] == ("Required", default_configuration)
    assert values["Maximum recipients per message"] == ("7", default_configuration)
    [address] = effective.addresses
    assert address.address == "127.0.0.1" and address.site == ""
    assert address.auth_source == document
    assert "TCP/IP: Name & password No, Anonymous No" in address.auth_options
    assert address.credentials == "mail1-cert" and "Server document mail1/Acme" in address.credentials_detail

    own = documents.save(models.ConfigurationSettings, server=server.name, max_recipients=3)
    panel = part(server_page(console_client, server), 'id="effective-settings"')
    assert "from Configuration Settings of mail1/Acme" in panel
    assert "Maximum recipients per message 3" in panel
    assert own.get_absolute_url() in server_page(console_client, server).split('id="effective-settings"')[1]
    assert "TCP/IP: Name & password No, Anonymous No" in panel and "from Server document mail1/Acme" in panel


def test_effective_settings_without_any_configuration_are_the_built_in_defaults(make_server):
    values = settings_by_label(console.effective_settings(make_server()))
    assert values["Maximum message size (KB)"][1] == "built-in defaults (no Configuration Settings document)"


def test_effective_settings_with_internet_sites_resolve_a_site_per_listen_address(
    console_client, make_server, make_credentials, configuration,
):
    server_credentials, site_credentials = make_credentials("mail1-cert"), make_credentials("site-cert")
    save(models.InternetSite, {"name": "Any address site", "site_type": "smtp_inbound", "mapped_addresses": ["*"], "servers": ["*"], "tcp_auth_name_password": True})
    save(models.InternetSite, {
        "name": "Loopback site", "site_type": "smtp_inbound", "mapped_addresses": ["127.0.0.1"], "servers": ["mail1/Acme"],
        "tcp_auth_anonymous": False, "tls_credentials": site_credentials.name,
    })
    server = make_server(load_internet_sites=True, listen_addresses=["127.0.0.1", "127.0.0.2"], tls_credentials=server_credentials.name)
    loopback, other = console.effective_settings(server).addresses
    assert (loopback.address, loopback.site, loopback.auth_source) == ("127.0.0.1", "Loopback site", "Site document “Loopback site”")
    assert "mapped to the local address 127.0.0.1 by its entry 127.0.0.1" in loopback.site_detail
    assert "TCP/IP: Name & password No, Anonymous No" in loopback.auth_options
    assert loopback.credentials == "site-cert" and "Site document “Loopback site”" in loopback.credentials_detail
    assert (other.address, other.site, other.auth_source) == ("127.0.0.2", "Any address site", "Site document “Any address site”")
    assert "TCP/IP: Name & password Yes, Anonymous Yes" in other.auth_options
    assert other.credentials == "mail1-cert" and "Server document mail1/Acme" in other.credentials_detail

    page = server_page(console_client, server)
    panel = part(page, 'id="effective-settings"')
    assert "127.0.0.1 Loopback site Site document “Loopback site” is mapped to the local address 127.0.0.1" in panel
    assert "127.0.0.2 Any address site Site document “Any address site” is mapped to * (any address)" in panel
    site = models.InternetSite.objects.get(name="Loopback site")
    assert site.get_absolute_url() in page.split('id="effective-settings"')[1]


def test_address_without_a_site_shows_the_greeting_clients_get(console_client, make_server, configuration):
    save(models.InternetSite, {"name": "Elsewhere", "site_type": "smtp_inbound", "mapped_addresses": ["192.0.2.1"], "servers": ["*"]})
    server = make_server(load_internet_sites=True, listen_addresses=[])
    rows = {row.address: row for row in console.effective_settings(server).addresses}
    assert set(rows) == {"any address", "192.0.2.1"}
    assert rows["192.0.2.1"].site == "Elsewhere"
    assert rows["any address"].site == ""
    assert rows["any address"].refusals[0].startswith(
        f"TCP/IP port {server.smtp_inbound_tcp_port}: 554 5.7.0 This site is not enabled on the server."
    )
    panel = part(server_page(console_client, server), 'id="effective-settings"')
    assert "any address No site None of the 1 SMTP Inbound Site documents hosting server mail1/Acme is mapped to any address or *." in panel


# --- Mail ---------------------------------------------------------------------------------------


def test_mailbox_lists_from_subject_date_and_size_of_the_person_s_messages_only(console_client, make_server, jane):
    server = make_server()
    message, entry = records.received(server, jane)
    records.received(server, None, subject="For someone else")
    response = console_client.get(reverse("smtpservice:mailbox", args=[jane.pk]))
    rows = part(response.content.decode(), 'class="table table-sm table-hover align-top mailbox-entries"', "</table>")
    assert "bob@example.org Café order" in rows
    assert f"{len(message.data)} bytes" in rows
    assert "For someone else" not in rows
    assert reverse("smtpservice:mailbox-message", args=[entry.pk]) in response.content.decode()
    listed = console_client.get(reverse("smtpservice:mailbox-list")).content.decode()
    assert "Jane Doe/Sales/Acme jane@acme.test 1" in text(listed)


def test_mailbox_list_counts_each_person_s_messages_and_shows_the_last_delivery(console_client, make_server, jane):
    server = make_server()
    documents.save(models.Person, full_name="Ann Empty/Sales/Acme", internet_address="ann@acme.test")
    _message, first = records.received(server, jane)
    _message, last = records.received(server, jane, subject="Second")
    first.delivered_at = timezone.now() - datetime.timedelta(days=3)
    first.save()
    listed = text(console_client.get(reverse("smtpservice:mailbox-list")).content.decode())
    assert "Ann Empty/Sales/Acme ann@acme.test 0 —" in listed
    assert "Jane Doe/Sales/Acme jane@acme.test 2" in listed
    shown = timezone.localtime(last.delivered_at).strftime("%m/%d/%Y")
    assert shown in listed.split("Jane Doe/Sales/Acme", 1)[1]


def test_eml_download_is_the_stored_message_byte_for_byte(console_client, make_server, jane):
    data = records.MESSAGE + b"\xe9 8-bit bytes stay as they are\r\n"
    message, _entry = records.received(make_server(), jane, data=data)
    response = console_client.get(reverse("smtpservice:message-download", args=[message.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "message/rfc822"
    assert response["Content-Disposition"] == f'attachment; filename="message-{message.pk}.eml"'
    assert response.content == data == bytes(ReceivedMessage.objects.get(pk=message.pk).data)


def test_message_page_shows_headers_as_text_and_the_plain_text(console_client, make_server, jane):
    _message, entry = records.received(make_server(), jane)
    page = console_client.get(reverse("smtpservice:mailbox-message", args=[entry.pk])).content.decode()
    headers = page.split('class="border rounded p-2 bg-body-tertiary small message-headers">')[1].split("</pre>")[0]
    assert html.unescape(headers).startswith("Received: from client.example.org ([192.0.2.7])\r\n\tby mail1.acme.test")
    assert "Subject: =?utf-8?q?Caf=C3=A9_order?=" in html.unescape(headers)
    assert "Two coffees, please." in part(page, 'id="body-title"')
    assert "Delivered to Jane Doe/Sales/Acme as jane@acme.test" in text(page)
    assert "Download as .eml" in page


def test_received_messages_filter_by_server_and_text(console_client, make_server, jane):
    mail1, mail2 = make_server(), make_server(name="mail2/Acme")
    records.received(mail1, jane, subject="Quarterly report")
    records.received(mail2, None, subject="Lunch", mail_from="carol@partner.test")

    def subjects(**filters):
        response = console_client.get(reverse("smtpservice:message-list"), filters)
        return [message.subject for message in response.context["object_list"]]

    assert sorted(subjects()) == ["Lunch", "Quarterly report"]
    assert subjects(server="mail2/Acme") == ["Lunch"]
    assert subjects(q="carol@") == ["Lunch"]
    assert subjects(q="jane@acme.test") == ["Quarterly report"]
    assert subjects(server="mail2/Acme", q="quarterly") == []


# --- Session log --------------------------------------------------------------------------------


def test_session_log_filters_by_server_client_port_tls_user_reply_class_and_date(console_client, make_server):
    mail1, mail2 = make_server(), make_server(name="mail2/Acme")
    yesterday = timezone.now() - datetime.timedelta(days=1)
    refused = records.session(mail1, [("RCPT", "user_unknown", "no person", "550 5.1.1 User unknown")],
                              client_address="198.51.100.4")
    secure = records.session(mail1, port_kind="ssl", local_port=465, tls=True, authenticated_as="Jane Doe/Sales/Acme")
    greylisted = records.session(mail2, last_reply="421 4.7.0 SMTP service not available, closing transmission channel.",
                                 client_address="198.51.100.40", started_at=yesterday)

    def shown(**filters):
        response = console_client.get(reverse("smtpservice:session-list"), filters)
        assert response.status_code == 200
        return {session.pk for session in response.context["object_list"]}

    assert shown() == {refused.pk, secure.pk, greylisted.pk}
    assert shown(server="mail2/Acme") == {greylisted.pk}
    assert shown(client="198.51.100.4") == {refused.pk}
    assert shown(client="198.51.100.") == {refused.pk, greylisted.pk}
    assert shown(port_kind="ssl") == {secure.pk}
    assert shown(tls="yes") == {secure.pk}
    assert shown(tls="no") == {refused.pk, greylisted.pk}
    assert shown(user="jane") == {secure.pk}
    assert shown(reply="5") == {refused.pk}
    assert shown(reply="4") == {greylisted.pk}
    assert shown(date=timezone.localdate(yesterday).isoformat()) == {greylisted.pk}
    assert shown(date="not a date") == set()


def test_session_log_pages_by_25(console_client, make_server):
    server = make_server()
    start = timezone.now()
    for minute in range(30):
        records.session(server, started_at=start - datetime.timedelta(minutes=minute), session_id=f"s{minute}")
    first = console_client.get(reverse("smtpservice:session-list"))
    assert len(first.context["object_list"]) == 25 and "Page 1 of 2" in first.content.decode()
    second = console_client.get(reverse("smtpservice:session-list"), {"page": 2})
    assert [session.session_id for session in second.context["object_list"]] == [f"s{minute}" for minute in range(25, 30)]


def test_session_detail_shows_each_decision_in_order(console_client, make_server):
    session = records.session(make_server(), [
        ("CONNECT", "connection_open", "client 192.0.2.7 is not in Deny connections", ""),
        ("EHLO", "ehlo", "SIZE, PIPELINING", "250"),
        ("RCPT", "user_unknown", "no person has the Internet address nobody@acme.test", "550 5.1.1 User unknown"),
    ])
    page = console_client.get(reverse("smtpservice:session-detail", args=[session.pk])).content.decode()
    rows = part(page, 'class="table table-sm align-top session-events"', "</table>")
    assert rows.index("1 CONNECT connection_open") < rows.index("2 EHLO ehlo SIZE, PIPELINING 250") < rows.index(
        "3 RCPT user_unknown no person has the Internet address nobody@acme.test 550 5.1.1 User unknown"
    )


def test_sessions_of_a_real_listener_are_found_by_reply_class(console_client, make_server, configuration, jane, run_listener):
    server = make_server()
    run_listener(server)
    with smtplib.SMTP("127.0.0.1", server.smtp_inbound_tcp_port, timeout=10) as client:
        client.ehlo("client.example.org")
        client.mail("sender@example.org")
        assert client.rcpt("nobody@acme.test")[0] == 550
    wait_until(lambda: SessionLog.objects.filter(server=server).exists(), message="the session was not logged")
    session = SessionLog.objects.get(server=server)

    def shown(reply):
        return list(console_client.get(reverse("smtpservice:session-list"), {"reply": reply}).context["object_list"])

    assert shown("5") == [session] and shown("4") == []
    page = console_client.get(reverse("smtpservice:session-detail", args=[session.pk])).content.decode()
    assert "550 5.1.1 User unknown" in page
