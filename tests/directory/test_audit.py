"""The audit trail: who created, changed or deleted which document, field by field, secrets masked."""
import json

from django.contrib.auth.models import AnonymousUser

from directory import audit, tls
from directory.models import AuditEntry, ConfigurationSettings, Person, Server, TLSCredentials
from tests.directory.documents import JANE, bound_form, make_credentials, make_server, save


def entries():
    return list(AuditEntry.objects.order_by("pk"))


def last_entry():
    return AuditEntry.objects.order_by("-pk").first()


def test_creating_a_document_records_who_and_every_value(editor):
    server = make_server(user=editor)
    (entry,) = entries()
    assert (entry.user, entry.actor, entry.action) == (editor, "editor", "create")
    assert (entry.document_type, entry.object_id, entry.object_repr) == ("server", str(server.pk), "mail1/Acme")
    assert entry.changes["name"] == [None, "mail1/Acme"]
    assert entry.changes["smtp_inbound_tcp_port"] == [None, 25]
    assert entry.snapshot["host_name"] == "mail1.acme.test"
    assert "modified" not in entry.snapshot and "created" not in entry.snapshot


def test_changing_a_document_records_only_the_changed_fields_old_and_new(editor, manager):
    server = make_server(user=editor)
    save(Server, server, user=manager, smtp_inbound_tcp_port=2525, access_server="*/Acme")
    entry = last_entry()
    assert (entry.actor, entry.action) == ("manager", "change")
    assert entry.changes == {"smtp_inbound_tcp_port": [25, 2525], "access_server": [[], ["*/Acme"]]}
    assert entry.snapshot["smtp_inbound_tcp_port"] == 2525


def test_a_save_that_changes_nothing_records_nothing(editor):
    server = make_server(user=editor)
    save(Server, server, user=editor)
    save(Server, server, user=editor, name="CN=mail1/O=Acme")
    assert len(entries()) == 1


def test_documents_referred_to_are_recorded_by_name(editor):
    make_credentials("mail1-cert", "mail1.acme.test")
    server = make_server(user=editor)
    save(Server, server, user=editor, tls_credentials="mail1-cert")
    assert last_entry().changes == {"tls_credentials": [None, "mail1-cert"]}
    save(ConfigurationSettings, user=editor, server="mail1/Acme")
    assert last_entry().changes["server"] == [None, "mail1/Acme"]
    assert last_entry().object_repr == "mail1/Acme"


def test_the_default_configuration_is_recorded_as_star(editor):
    save(ConfigurationSettings, user=editor)
    assert last_entry().object_repr == "* (default)"


def test_deleting_a_document_records_its_last_values(editor, manager):
    server = make_server(user=editor)
    pk = server.pk
    audit.delete_document(server, manager)
    assert not Server.objects.filter(pk=pk).exists()
    entry = last_entry()
    assert (entry.user, entry.action, entry.object_id, entry.object_repr) == (manager, "delete", str(pk), "mail1/Acme")
    assert entry.changes["name"] == ["mail1/Acme", None]
    assert entry.changes["smtp_inbound_tcp_port"] == [25, None]
    assert entry.snapshot["name"] == "mail1/Acme"


def test_a_change_without_a_user_names_its_source(db):
    form = bound_form(Server, name="mail1/Acme", host_name="mail1.acme.test")
    assert form.is_valid()
    audit.save_document(form, None, source="importdirectory")
    audit.delete_document(Server.objects.get(), AnonymousUser())
    first, second = entries()
    assert (first.user, first.actor) == (None, "importdirectory")
    assert (second.user, second.actor) == (None, "system")


def test_the_internet_password_is_masked_but_a_change_shows(editor):
    person = save(Person, user=editor, full_name=JANE, internet_password="Correct-Horse-9")
    created = last_entry().changes["internet_password"]
    assert created[0] is None and created[1].startswith(audit.MASK)

    save(Person, person, user=editor, internet_password="Battery-Staple-7")
    old, new = last_entry().changes["internet_password"]
    assert old == created[1] and new.startswith(audit.MASK) and new != old
    assert list(last_entry().changes) == ["internet_password"]

    save(Person, person, user=editor, clear_internet_password="on")
    assert last_entry().changes == {"internet_password": [new, ""]}

    trail = json.dumps(list(AuditEntry.objects.values("changes", "snapshot")))
    assert "Correct-Horse-9" not in trail and "Battery-Staple-7" not in trail
    assert "md5$" not in trail  # nor the hash (the tests hash with MD5)


def test_a_blank_password_field_keeps_the_password_and_records_nothing(editor):
    person = save(Person, user=editor, full_name=JANE, internet_password="Correct-Horse-9")
    save(Person, person, user=editor)
    assert len(entries()) == 1


def test_the_relay_password_is_masked_but_a_change_shows(editor):
    config = save(
        ConfigurationSettings, user=editor, relay_host="relay.acme.test", relay_auth="required",
        relay_auth_name="mailer", relay_auth_password="first-relay-secret",
    )
    save(ConfigurationSettings, config, user=editor, relay_auth_password="second-relay-secret")
    old, new = last_entry().changes["relay_auth_password"]
    assert old.startswith(audit.MASK) and new.startswith(audit.MASK) and old != new
    save(ConfigurationSettings, config, user=editor, relay_auth_password="second-relay-secret")
    assert len(entries()) == 2
    trail = json.dumps(list(AuditEntry.objects.values("changes", "snapshot")))
    assert "relay-secret" not in trail


def test_the_private_key_is_masked_but_a_new_key_shows(editor):
    credentials = make_credentials("mail1-cert", "mail1.acme.test")
    first_key, first_certificate = credentials.private_key_pem, credentials.certificate_pem
    certificate_pem, private_key_pem = tls.generate_self_signed("mail1.acme.test")
    save(TLSCredentials, credentials, user=editor, certificate_pem=certificate_pem, private_key_pem=private_key_pem)
    entry = last_entry()
    old, new = entry.changes["private_key_pem"]
    assert old.startswith(audit.MASK) and new.startswith(audit.MASK) and old != new
    assert entry.changes["certificate_pem"] == [first_certificate, certificate_pem.strip()]
    trail = json.dumps(list(AuditEntry.objects.values("changes", "snapshot")))
    assert "PRIVATE KEY" not in trail
    assert first_key not in trail and private_key_pem not in trail


def test_an_edit_with_a_blank_key_field_records_no_key_change(editor):
    credentials = make_credentials("mail1-cert", "mail1.acme.test")
    save(TLSCredentials, credentials, user=editor, name="mail1-certificate")
    assert last_entry().changes == {"name": ["mail1-cert", "mail1-certificate"]}


def test_a_deleted_secret_stays_masked(editor):
    person = save(Person, user=editor, full_name=JANE, internet_password="Correct-Horse-9")
    audit.delete_document(person, editor)
    assert last_entry().snapshot["internet_password"].startswith(audit.MASK)
    assert last_entry().changes["internet_password"][1] is None


def test_a_save_that_fails_records_nothing(editor):
    make_server(user=editor)
    form = bound_form(Server, name="mail1/Acme", host_name="mail2.acme.test")
    assert not form.is_valid()
    assert len(entries()) == 1
