"""History and rollback: every saved version kept, any two compared, any one restored as a new version."""
import pytest
from django.urls import reverse
from django.utils import timezone

from directory import audit
from directory.models import AuditEntry, ConfigurationSettings, DocumentVersion, Person, Server, TLSCredentials
from smtpservice.models import ListenerStatus
from smtpservice.store.snapshot import current_revision
from tests.directory.documents import JANE, make_credentials, make_server, save

PASSWORD = "Internet-secret-1234"


def versions(document):
    return list(DocumentVersion.objects.filter(document_type=document._meta.model_name, object_id=str(document.pk)).order_by("number"))


def url(document_type, action, pk, *args):
    return reverse(f"directory:{document_type}-{action}", args=[pk, *args])


def login(client, user):
    client.force_login(user)
    return client


def make_person(user=None):
    return save(Person, user=user, full_name=JANE, internet_address="jane@acme.test", internet_password=PASSWORD)


def key_body(credentials):
    return credentials.private_key_pem.strip().splitlines()[1]


# --- Versions are kept --------------------------------------------------------------------------


def test_create_change_and_delete_each_keep_a_version_with_the_secrets_as_stored(manager):
    person = make_person(manager)
    password_hash = person.internet_password
    save(Person, person, user=manager, short_name="jdoe")
    pk = person.pk
    audit.delete_document(Person.objects.get(pk=pk), manager)

    first, second, third = versions(person)
    assert [(v.number, v.action) for v in (first, second, third)] == [(1, "create"), (2, "change"), (3, "delete")]
    assert first.data["internet_password"] == password_hash, "the hash itself, to restore it"
    assert second.data["short_name"] == "jdoe" and third.data["short_name"] == "jdoe"
    assert [v.audit_entry.action for v in (first, second, third)] == ["create", "change", "delete"]
    assert second.actor == "manager"
    assert "********" in first.audit_entry.snapshot["internet_password"], "the audit trail stays masked"


def test_a_private_key_is_kept_in_the_version(db):
    credentials = make_credentials()
    (version,) = versions(credentials)
    assert version.data["private_key_pem"] == credentials.private_key_pem


def test_a_save_that_changes_nothing_keeps_no_version(editor):
    server = make_server(user=editor)
    save(Server, server, user=editor)
    assert len(versions(server)) == 1


def test_a_document_saved_before_history_gets_its_old_values_as_version_one(editor):
    server = Server.objects.create(name="mail1/Acme", host_name="mail1.acme.test")
    save(Server, server, user=editor, smtp_inbound_tcp_port=2525)
    baseline, change = versions(server)
    assert (baseline.number, baseline.action, baseline.data["smtp_inbound_tcp_port"]) == (1, "baseline", 25)
    assert (change.number, change.action, change.data["smtp_inbound_tcp_port"]) == (2, "change", 2525)


def test_deleting_a_server_keeps_the_version_of_its_own_configuration_deleted_with_it(editor):
    server = make_server(user=editor)
    configuration = save(ConfigurationSettings, user=editor, server="mail1/Acme", max_recipients=7)
    audit.delete_document(server, editor)
    assert not ConfigurationSettings.objects.exists()
    last = versions(configuration)[-1]
    assert (last.action, last.data["max_recipients"], last.audit_entry.object_repr) == ("delete", 7, "mail1/Acme")


def test_each_version_records_the_directory_revision_its_change_produced(editor):
    server = make_server(user=editor)
    assert versions(server)[0].settings_revision == current_revision()


# --- Pages: history and comparison --------------------------------------------------------------


@pytest.fixture
def changed_server(editor):
    """Version 1 as created, 2 with port 2526, 3 with another host name."""
    server = make_server(user=editor)
    save(Server, server, user=editor, smtp_inbound_tcp_port=2526)
    save(Server, server, user=editor, host_name="smtp1.acme.test")
    return server


def test_history_lists_each_version_with_when_who_and_what(client, reader, changed_server):
    page = login(client, reader).get(url("server", "history", changed_server.pk))
    assert page.status_code == 200
    assert [(v.number, v.action, v.actor) for v in page.context["versions"]] == [(3, "change", "editor"), (2, "change", "editor"), (1, "create", "editor")]
    html = page.content.decode()
    assert 'id="version-3"' in html and 'id="version-1"' in html
    assert "Restore version" not in html, "a Reader is offered no restore"


def test_any_two_versions_compare_field_by_field_with_the_changes_highlighted(client, reader, changed_server):
    page = login(client, reader).get(url("server", "compare", changed_server.pk), {"a": 1, "b": 3})
    assert page.status_code == 200
    rows = {row["name"]: row for row in page.context["rows"]}
    assert (rows["smtp_inbound_tcp_port"]["first"], rows["smtp_inbound_tcp_port"]["second"]) == (25, 2526)
    assert (rows["host_name"]["first"], rows["host_name"]["second"]) == ("mail1.acme.test", "smtp1.acme.test")
    assert {name for name, row in rows.items() if row["changed"]} == {"smtp_inbound_tcp_port", "host_name"}
    assert rows["smtp_inbound_tcp_status"]["first"] == "Enabled", "values read as on the form"
    html = page.content.decode()
    assert html.count("table-warning version-changed") == 2
    assert page.context["changed_count"] == 2


def test_a_comparison_says_whether_a_secret_changed_but_never_shows_it(client, manager):
    person = make_person(manager)
    old_hash = person.internet_password
    save(Person, person, user=manager, internet_password="Another-pass-77")
    save(Person, person, user=manager, short_name="jdoe")
    person.refresh_from_db()
    client = login(client, manager)

    changed = client.get(url("person", "compare", person.pk), {"a": 1, "b": 2})
    unchanged = client.get(url("person", "compare", person.pk), {"a": 2, "b": 3})
    row = {r["name"]: r for r in changed.context["rows"]}["internet_password"]
    assert (row["secret"], row["changed"], row["first"], row["second"]) == (True, True, "set", "set")
    assert not {r["name"]: r for r in unchanged.context["rows"]}["internet_password"]["changed"]
    for page in (changed, unchanged, client.get(url("person", "history", person.pk)), client.get(url("person", "restore", person.pk, 1))):
        html = page.content.decode()
        for secret in (PASSWORD, "Another-pass-77", old_hash, person.internet_password):
            assert secret not in html
    assert "changed</strong>" in changed.content.decode() and "unchanged</strong>" in unchanged.content.decode()


# --- Restore ------------------------------------------------------------------------------------


def test_restoring_a_version_saves_it_as_a_new_audited_version(client, editor, changed_server):
    client = login(client, editor)
    confirm = client.get(url("server", "restore", changed_server.pk, 1))
    assert confirm.status_code == 200
    rows = {row["name"]: row for row in confirm.context["rows"]}
    assert (rows["smtp_inbound_tcp_port"]["first"], rows["smtp_inbound_tcp_port"]["second"]) == (2526, 25)

    response = client.post(url("server", "restore", changed_server.pk, 1))
    assert response.status_code == 302 and response["Location"] == changed_server.get_absolute_url()
    changed_server.refresh_from_db()
    assert (changed_server.smtp_inbound_tcp_port, changed_server.host_name) == (25, "mail1.acme.test")
    restored = versions(changed_server)[-1]
    assert (restored.number, restored.action, restored.restored_from.number) == (4, "change", 1)
    entry = restored.audit_entry
    assert (entry.actor, entry.changes["smtp_inbound_tcp_port"]) == ("editor", [2526, 25])
    trail = client.get(changed_server.get_absolute_url()).content.decode().split('id="audit-trail"')[1]
    assert "restore of version 1" in trail


def test_restoring_the_current_values_changes_nothing(client, editor, changed_server):
    response = login(client, editor).post(url("server", "restore", changed_server.pk, 3), follow=True)
    assert "nothing to restore" in response.content.decode()
    assert len(versions(changed_server)) == 3


def test_a_version_that_no_longer_validates_is_refused_whole(client, editor):
    make_credentials("mail1-cert")
    server = make_server(user=editor, tls_credentials="mail1-cert", smtp_inbound_ssl_status="enabled")
    save(Server, server, user=editor, tls_credentials="", smtp_inbound_ssl_status="disabled", host_name="smtp1.acme.test")
    audit.delete_document(TLSCredentials.objects.get(), editor)
    entries = AuditEntry.objects.count()

    response = login(client, editor).post(url("server", "restore", server.pk, 1))
    assert response.status_code == 200
    assert "No TLS credentials named “mail1-cert” exists: restore or create it first." in response.content.decode()
    server.refresh_from_db()
    assert (server.host_name, server.tls_credentials) == ("smtp1.acme.test", None), "no partial restore"
    assert AuditEntry.objects.count() == entries and len(versions(server)) == 2


def test_a_restore_that_triggers_warnings_asks_to_confirm_them(client, editor, changed_server):
    client = login(client, editor)
    save(Server, changed_server, user=editor, smtp_inbound_tcp_port=25)
    confirm = client.get(url("server", "restore", changed_server.pk, 2))
    assert "Senders try port 25 by default" in confirm.content.decode()
    assert confirm.context["warning_codes"] == "non_standard_port"

    unconfirmed = client.post(url("server", "restore", changed_server.pk, 2))
    assert unconfirmed.status_code == 200
    changed_server.refresh_from_db()
    assert changed_server.smtp_inbound_tcp_port == 25

    client.post(url("server", "restore", changed_server.pk, 2), {"confirm_warnings": "non_standard_port"})
    changed_server.refresh_from_db()
    assert changed_server.smtp_inbound_tcp_port == 2526


# --- Deleted documents --------------------------------------------------------------------------


def test_a_deleted_person_comes_back_with_their_password(client, manager):
    person = make_person(manager)
    pk = person.pk
    client = login(client, manager)
    client.post(reverse("directory:person-delete", args=[pk]))
    assert not Person.objects.exists()

    deleted = client.get(reverse("directory:deleted-list"))
    (row,) = deleted.context["rows"]
    assert (row["name"], row["actor"], row["restore_url"]) == (JANE, "manager", url("person", "restore", pk, 2))
    assert client.get(row["restore_url"]).context["restore"].recreates

    response = client.post(row["restore_url"])
    restored = Person.objects.get()
    assert response["Location"] == restored.get_absolute_url()
    assert restored.pk == pk, "the same id: its history goes on"
    assert restored.check_internet_password(PASSWORD)
    assert [(v.number, v.action) for v in versions(restored)] == [(1, "create"), (2, "delete"), (3, "create")]
    assert not client.get(reverse("directory:deleted-list")).context["rows"]


def test_deleted_credentials_come_back_with_their_private_key_then_a_server_that_used_them(client, editor):
    credentials = make_credentials("mail1-cert")
    key = credentials.private_key_pem
    server = make_server(user=editor, tls_credentials="mail1-cert")
    client = login(client, editor)
    client.post(reverse("directory:server-delete", args=[server.pk]))
    client.post(reverse("directory:tlscredentials-delete", args=[credentials.pk]))
    kinds = [row["type_label"] for row in client.get(reverse("directory:deleted-list")).context["rows"]]
    assert kinds == ["TLS credentials", "Server"]

    refused = client.post(url("server", "restore", server.pk, 2))
    assert "No TLS credentials named “mail1-cert” exists" in refused.content.decode()
    assert not Server.objects.exists()

    client.post(url("tlscredentials", "restore", credentials.pk, 2))
    assert TLSCredentials.objects.get().private_key_pem == key
    client.post(url("server", "restore", server.pk, 2))
    assert Server.objects.get().tls_credentials.name == "mail1-cert"
    assert key_body(credentials) not in client.get(url("tlscredentials", "compare", credentials.pk), {"a": 1, "b": 3}).content.decode()


def test_a_configuration_deleted_with_its_server_comes_back_once_the_server_is_back(client, editor):
    server = make_server(user=editor)
    configuration = save(ConfigurationSettings, user=editor, server="mail1/Acme", max_recipients=7)
    client = login(client, editor)
    client.post(reverse("directory:server-delete", args=[server.pk]))
    refused = client.post(url("configurationsettings", "restore", configuration.pk, 2))
    assert "No server named “mail1/Acme” exists: restore or create it first." in refused.content.decode()
    client.post(url("server", "restore", server.pk, 2))
    client.post(url("configurationsettings", "restore", configuration.pk, 2))
    assert ConfigurationSettings.objects.get().max_recipients == 7


# --- Permissions --------------------------------------------------------------------------------


def test_a_reader_cannot_restore(client, reader, changed_server):
    client = login(client, reader)
    assert client.get(url("server", "restore", changed_server.pk, 1)).status_code == 403
    assert client.post(url("server", "restore", changed_server.pk, 1)).status_code == 403
    changed_server.refresh_from_db()
    assert changed_server.smtp_inbound_tcp_port == 2526


def test_an_editor_cannot_restore_a_person(client, editor, manager):
    person = make_person(manager)
    save(Person, person, user=manager, short_name="jdoe")
    client = login(client, editor)
    assert client.get(url("person", "history", person.pk)).status_code == 200
    assert client.post(url("person", "restore", person.pk, 1)).status_code == 403
    person.refresh_from_db()
    assert person.short_name == "jdoe"
    audit.delete_document(person, manager)
    (row,) = client.get(reverse("directory:deleted-list")).context["rows"]
    assert row["restore_url"] is None


# --- The version a listener serves, and going back to the last one that bound --------------------


def report(server, ports, open_sessions=0):
    """A heartbeat of a running listener serving the directory as it is now."""
    status, _created = ListenerStatus.objects.update_or_create(server=server, defaults={
        "revision": current_revision(), "ports": ports, "heartbeat_at": timezone.now(), "running": True,
        "open_sessions": open_sessions,
    })
    return status


def port(number, bound=True, error=""):
    return {"kind": "tcp", "port": number, "address": "*", "configured": True, "bound": bound, "error": error}


def test_the_server_page_names_the_version_the_listener_serves(client, reader, editor):
    server = make_server(user=editor)
    report(server, [port(25)])
    save(Server, server, user=editor, host_name="smtp1.acme.test")
    page = login(client, reader).get(server.get_absolute_url())
    assert "serving version 1 of mail1/Acme" in page.content.decode()
    assert "the document is at version 2" in page.content.decode()
    report(server, [port(25)])
    assert "serving version 2 of mail1/Acme" in client.get(server.get_absolute_url()).content.decode()


def test_a_port_that_fails_to_bind_offers_the_last_version_that_bound(client, editor):
    server = make_server(user=editor)
    save(Server, server, user=editor, smtp_inbound_tcp_port=2526)
    report(server, [port(2526)])
    save(Server, server, user=editor, host_name="smtp1.acme.test")
    report(server, [port(2526)])
    save(Server, server, user=editor, smtp_inbound_tcp_port=2527)
    report(server, [port(2527, bound=False, error="Address already in use")])
    assert [v.bound_at is not None for v in versions(server)] == [False, True, True, False]

    page = login(client, editor).get(server.get_absolute_url())
    html = page.content.decode()
    assert "Address already in use" in html
    assert page.context["server_versions"]["rollback"].number == 3
    assert 'action="%s"' % url("server", "restore", server.pk, 3) in html

    response = client.post(url("server", "restore", server.pk, 3), {"confirm_warnings": page.context["server_versions"]["rollback_warnings"]})
    assert response.status_code == 302
    server.refresh_from_db()
    assert (server.smtp_inbound_tcp_port, server.host_name) == (2526, "smtp1.acme.test")
    report(server, [port(2526)])
    html = client.get(server.get_absolute_url()).content.decode()
    assert "serving version 5 of mail1/Acme" in html and "Address already in use" not in html


def test_no_rollback_is_offered_when_every_earlier_version_had_the_same_ports(client, editor):
    server = make_server(user=editor)
    report(server, [port(25)])
    save(Server, server, user=editor, host_name="smtp1.acme.test")
    report(server, [port(25, bound=False, error="Address already in use")])
    page = login(client, editor).get(server.get_absolute_url())
    assert page.context["server_versions"]["rollback"] is None
    assert "free the port" in page.content.decode()


def test_a_server_saved_before_history_whose_ports_bound_can_be_restored_after_a_failing_change(client, editor):
    server = Server.objects.create(name="mail1/Acme", host_name="mail1.acme.test", smtp_inbound_tcp_port=2526)
    report(server, [port(2526)])
    save(Server, server, user=editor, smtp_inbound_tcp_port=2527)
    report(server, [port(2527, bound=False, error="Address already in use")])
    page = login(client, editor).get(server.get_absolute_url())
    assert page.context["server_versions"]["rollback"].action == "baseline"
