"""Change preview: before a Server, Site or Configuration change is saved, what it does to running listeners."""
import datetime
import socket

import pytest
from django.urls import reverse
from django.utils import timezone

from directory.models import ConfigurationSettings, InternetSite, Server
from smtpservice.console import preview
from smtpservice.models import ListenerStatus
from tests.directory.documents import bound_form, form_data, make_credentials, make_server, save


def edit_url(document):
    return reverse(f"directory:{document._meta.model_name}-update", args=[document.pk])


def running(server, open_sessions=0, ports=None, seconds_ago=0):
    return ListenerStatus.objects.create(
        server=server, open_sessions=open_sessions, heartbeat_at=timezone.now() - datetime.timedelta(seconds=seconds_ago),
        ports=ports if ports is not None else [
            {"kind": "tcp", "port": server.smtp_inbound_tcp_port, "address": "*", "configured": True, "bound": True, "error": ""},
        ],
    )


def effects_of(document, **changes):
    """The preview of a change made through the document's form, as the edit page computes it."""
    stored = type(document).objects.get(pk=document.pk)
    form = bound_form(type(document), type(document).objects.get(pk=document.pk), **changes)
    assert form.is_valid(), form.errors
    return preview.preview(form.instance, stored)


def ports_of(effect):
    return {port.kind: port for port in effect.ports}


@pytest.fixture
def editor_client(client, editor):
    client.force_login(editor)
    return client


def test_a_new_inbound_port_rebinds_and_the_ssl_port_is_unchanged(db):
    server = make_server()
    (effect,) = effects_of(server, smtp_inbound_tcp_port=2526).servers
    tcp, ssl = ports_of(effect)["tcp"], ports_of(effect)["ssl"]
    assert (tcp.effect, tcp.old.port, tcp.new.port) == (preview.MOVE, 25, 2526)
    assert tcp.describe() == "The listener rebinds from port 25 to port 2526; sessions in progress on port 25 go on."
    assert (ssl.effect, ssl.rebinds) == (preview.UNCHANGED, False)


def test_status_and_listen_address_changes_bind_unbind_and_rebind(db):
    make_credentials("mail1-cert")
    server = make_server(tls_credentials="mail1-cert")
    ports = ports_of(effects_of(server, smtp_inbound_ssl_status="enabled", smtp_inbound_tcp_status="disabled").servers[0])
    assert (ports["ssl"].effect, ports["tcp"].effect) == (preview.BIND, preview.UNBIND)
    moved = ports_of(effects_of(server, listen_addresses="127.0.0.1").servers[0])["tcp"]
    assert moved.effect == preview.REBIND
    assert moved.after == "25 on 127.0.0.1" and moved.before == "25 on every address"


def test_a_site_losing_its_certificate_unbinds_the_ssl_port_of_a_server_relying_on_it(db):
    make_credentials("site-cert")
    site = save(InternetSite, name="Acme SMTP", servers="mail1/Acme", tls_credentials="site-cert")
    server = make_server(load_internet_sites="True", smtp_inbound_ssl_status="enabled")
    make_server(name="mail2/Acme", host_name="mail2.acme.test")
    (effect,) = effects_of(site, tls_credentials="").servers
    assert effect.server_name == "mail1/Acme"
    assert ports_of(effect)["ssl"].effect == preview.UNBIND
    assert server.pk and ports_of(effect)["tcp"].effect == preview.UNCHANGED


def test_a_default_configuration_reaches_every_server_without_its_own_and_rebinds_nothing(db):
    configuration = save(ConfigurationSettings)
    make_server()
    own = make_server(name="mail2/Acme", host_name="mail2.acme.test")
    make_server(name="mail3/Acme", host_name="mail3.acme.test")
    save(ConfigurationSettings, server=own.name)
    effects = effects_of(configuration, max_recipients=5).servers
    assert [effect.server_name for effect in effects] == ["mail1/Acme", "mail3/Acme"]
    assert not any(effect.rebinds for effect in effects)


def test_the_edit_page_previews_ports_sessions_settings_and_warnings_before_saving(editor_client, db):
    server = make_server()
    running(server, open_sessions=3)
    response = editor_client.post(edit_url(server), form_data(Server, server, smtp_inbound_tcp_port="2526"))
    assert response.status_code == 200
    server.refresh_from_db()
    assert server.smtp_inbound_tcp_port == 25

    review = response.context["review"]
    (effect,) = review.preview.servers
    assert (effect.running, effect.open_sessions) == (True, 3)
    assert ("SMTP Inbound TCP/IP port number", 25, 2526) in review.rows
    html = response.content.decode()
    preview_html = html.split('id="change-preview"')[1]
    assert "3 sessions in progress: they keep their settings until they end" in preview_html
    assert "The listener rebinds from port 25 to port 2526" in preview_html
    assert "SMTP Inbound TCP/IP port number (see above)" in preview_html, "the warning it triggers"
    assert "Senders try port 25 by default" in html.split('class="alert alert-warning')[1]

    data = {**form_data(Server, server, smtp_inbound_tcp_port="2526"), "confirm_preview": review.digest,
            "confirm_warnings": "non_standard_port", "save_anyway": "1"}
    assert editor_client.post(edit_url(server), data).status_code == 302
    server.refresh_from_db()
    assert server.smtp_inbound_tcp_port == 2526


def test_a_change_a_running_listener_applies_is_shown_once_then_saved(editor_client, db):
    server = make_server()
    running(server)
    data = form_data(Server, server, host_name="smtp1.acme.test")
    response = editor_client.post(edit_url(server), data)
    assert response.status_code == 200 and not response.context["warnings"]
    assert "This change triggers no warning." in response.content.decode()
    assert ports_of(response.context["review"].preview.servers[0])["tcp"].effect == preview.UNCHANGED

    changed = editor_client.post(edit_url(server), {**data, "host_name": "smtp2.acme.test", "confirm_preview": response.context["review"].digest})
    assert changed.status_code == 200, "a value changed after the preview is previewed again"
    assert editor_client.post(edit_url(server), {**data, "confirm_preview": response.context["review"].digest}).status_code == 302
    server.refresh_from_db()
    assert server.host_name == "smtp1.acme.test"


def test_without_a_running_listener_save_saves_at_once_and_preview_is_on_request(editor_client, db):
    server = make_server()
    running(server, seconds_ago=600)
    asked = editor_client.post(edit_url(server), {**form_data(Server, server, host_name="smtp1.acme.test"), "preview": "1"})
    assert asked.status_code == 200
    assert "The listener of this server is not running" in asked.content.decode()
    server.refresh_from_db()
    assert server.host_name == "mail1.acme.test"
    assert editor_client.post(edit_url(server), form_data(Server, server, host_name="smtp1.acme.test")).status_code == 302


def test_a_configuration_change_lists_the_warning_it_triggers(editor_client, db):
    server = make_server(smtp_inbound_tcp_auth_name_password="True")
    configuration = save(ConfigurationSettings, server=server.name, starttls_inbound="required")
    running(server, open_sessions=1)
    response = editor_client.post(edit_url(configuration), form_data(ConfigurationSettings, configuration, starttls_inbound="enabled"))
    assert response.status_code == 200
    review = response.context["review"]
    assert review.rows == [("SSL negotiated over TCP/IP port", "Required", "Enabled")]
    assert [code for _field, code, _message in response.context["form"].warnings] == ["cleartext_auth"]
    html = response.content.decode()
    assert "1 session in progress: it keeps its settings until it ends" in html
    assert "Unchanged." in html.split('id="change-preview"')[1]


def test_other_document_types_offer_no_preview(editor_client, db):
    group_page = editor_client.get(reverse("directory:group-create"))
    assert 'name="preview"' not in group_page.content.decode()
    assert 'name="preview"' in editor_client.get(reverse("directory:server-create")).content.decode()


def listener_on(server, host):
    status = running(server)
    status.host = host
    status.save()
    return status


@pytest.fixture
def holder():
    """Another process's listening socket on a loopback port of this host."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


@pytest.fixture
def server_here(db):
    """A server on 127.0.0.1 whose running listener reports this host, where the console runs too."""
    server = make_server(listen_addresses="127.0.0.1")
    listener_on(server, socket.gethostname())
    return server


def test_a_port_another_process_holds_on_the_listeners_host_is_flagged(server_here, holder):
    held = holder.getsockname()[1]
    tcp = ports_of(effects_of(server_here, smtp_inbound_tcp_port=held).servers[0])["tcp"]
    assert tcp.taken is True
    assert tcp.availability == (f"Port {held} is already in use on 127.0.0.1 of this host by another process: after "
                                "saving, the listener would fail to bind it.")
    holder.close()
    free = ports_of(effects_of(server_here, smtp_inbound_tcp_port=held).servers[0])["tcp"]
    assert (free.taken, free.availability) == (False, f"Port {held} is free on this host now.")


def test_on_another_host_the_preview_says_it_cannot_know(db):
    server = make_server()
    listener_on(server, "some-other-host")
    tcp = ports_of(effects_of(server, smtp_inbound_tcp_port=2526).servers[0])["tcp"]
    assert tcp.taken is None
    assert tcp.availability == "The console does not run on this listener's host: it cannot know whether port 2526 is free there."


def test_the_edit_page_warns_about_a_taken_port(editor_client, server_here, holder):
    held = holder.getsockname()[1]
    page = editor_client.post(edit_url(server_here), form_data(Server, server_here, smtp_inbound_tcp_port=held)).content.decode()
    assert f"Port {held} is already in use on 127.0.0.1 of this host by another process" in page
