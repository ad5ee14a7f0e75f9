"""Malformed input, in console forms and in import files, gets a clear error and changes nothing.

The import's own error table (wrong types, unknown keys, bad choices, missing references...) is
tests/directory/test_importexport.py::test_each_error_names_the_document_and_key_and_changes_nothing;
this adds hostile sizes and shapes, and the same for the console's forms.
"""
import io
import json
import time

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from directory import models, tls
from directory.roles import MANAGER
from tests.adminconsole.test_permissions import state
from tests.conftest import make_user
from tests.directory.documents import form_data
from tests.documents import make_documents

pytestmark = pytest.mark.django_db

TEN_MB = 10 * 1024 * 1024
BROKEN_PEM = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
BROKEN_KEY = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def documents(db):
    return {type(document): document for document in make_documents().values()}


@pytest.fixture
def manager_client(db):
    client = Client()
    client.force_login(make_user("input-manager", MANAGER))
    return client


def update_url(document):
    return reverse(f"directory:{document._meta.model_name}-update", args=[document.pk])


def create_url(model):
    return reverse(f"directory:{model._meta.model_name}-create")


@pytest.mark.parametrize("model", [models.Server, models.ConfigurationSettings, models.InternetSite, models.Person,
                                   models.Group, models.TLSCredentials])
def test_a_ten_megabyte_field_is_refused_before_any_form_reads_it(manager_client, documents, model):
    before = state()
    response = manager_client.post(create_url(model), {"name": "x" * TEN_MB, "full_name": "x", "members": "y"})
    assert response.status_code == 400
    assert "The console could not read what was sent: it was malformed or too large. Nothing was changed." in response.content.decode()
    assert state() == before


def test_forms_keep_djangos_size_caps():
    """2.5 MB and 1000 fields are far above the largest console form (a certificate chain and its key)."""
    assert (settings.DATA_UPLOAD_MAX_MEMORY_SIZE, settings.DATA_UPLOAD_MAX_NUMBER_FIELDS) == (2621440, 1000)


@pytest.mark.parametrize(("model", "field", "value", "error"), [
    (models.Server, "smtp_inbound_tcp_port", "1e9", "Enter a whole number."),
    (models.Server, "smtp_inbound_tcp_port", "9" * 30, "Enter a port number from 1 to 65535."),
    (models.Server, "smtp_inbound_tcp_port", "-25", "Enter a port number from 1 to 65535."),
    (models.Server, "smtp_inbound_tcp_status", "sometimes", "Select a valid choice. sometimes is not one of the available choices."),
    (models.Server, "smtp_listener_enabled", "maybe", "Select a valid choice. maybe is not one of the available choices."),
    (models.Server, "tls_credentials", "no-such-cert", "Select a valid choice. That choice is not one of the available choices."),
    (models.Server, "name", "x" * 100_000, "Ensure this value has at most 200 characters (it has 100000)."),
    (models.Server, "host_name", "mail1\x00.acme.test", "Null characters are not allowed."),
    (models.Server, "listen_addresses", "127.0.0.1\n999.0.0.1", "“999.0.0.1” is not a valid IP address."),
    (models.ConfigurationSettings, "max_message_size_kb", "1e9", "Enter a whole number."),
    (models.ConfigurationSettings, "max_recipients", "10001", "Ensure this value is less than or equal to 10000."),
    (models.ConfigurationSettings, "relay_auth", "sometimes", "Select a valid choice. sometimes is not one of the available choices."),
    (models.ConfigurationSettings, "relay_auth_password", "x" * 501, "Ensure this value has at most 500 characters (it has 501)."),
    (models.ConfigurationSettings, "routes", "partner.test",
     "“partner.test”: write a domain pattern, then the destination host (partner.test 127.0.0.1:2626), then optionally "
     "tls=opportunistic or tls=verified, and ca=/path/to/ca.pem."),
    (models.InternetSite, "mapped_addresses", "not an address!", "“not an address!” is neither *, an IP address nor a host name."),
    (models.Person, "internet_address", "not an address", "Enter a valid email address."),
    (models.Group, "group_type", "secret", "Select a valid choice. secret is not one of the available choices."),
    (models.TLSCredentials, "certificate_pem", BROKEN_PEM, "This is not a PEM certificate chain (-----BEGIN CERTIFICATE-----)."),
    (models.TLSCredentials, "private_key_pem", BROKEN_KEY, "This is not a PEM private key (-----BEGIN PRIVATE KEY-----)."),
], ids=lambda value: value[:30] if isinstance(value, str) else getattr(value, "__name__", None))
def test_a_malformed_value_gets_its_error_on_its_field_and_changes_nothing(manager_client, documents, model, field, value, error):
    before = state()
    response = manager_client.post(update_url(documents[model]), form_data(model, documents[model], **{field: value}))
    assert response.status_code == 200
    assert response.context["form"].errors[field] == [error]
    assert escape(error) in response.content.decode()
    assert state() == before


def test_a_list_of_200000_entries_under_the_size_cap_is_handled_in_linear_time(manager_client, documents):
    """A quadratic step (such as removing duplicates by searching the entries kept so far) would keep a
    worker busy for many minutes on this one 1.5 MB form."""
    members = [f"M{index}" for index in range(200_000)]
    started = time.monotonic()
    response = manager_client.post(create_url(models.Group), form_data(models.Group, name="Big", members="\n".join(members + members[:10])))
    assert response.status_code == 302
    assert time.monotonic() - started < 10
    assert models.Group.objects.get(name="Big").members == members


def test_fields_a_form_does_not_have_are_ignored(manager_client, documents):
    """No mass assignment: what the certificate says is computed, whatever a crafted POST adds."""
    credentials = documents[models.TLSCredentials]
    stored = models.TLSCredentials.objects.values("pk", "subject", "host_names", "not_after", "created").get(pk=credentials.pk)
    crafted = {"pk": 999, "id": 999, "subject": "CN=evil.test", "host_names": "evil.test", "not_after": "2099-01-01", "created": "2000-01-01"}
    response = manager_client.post(update_url(credentials), {**form_data(models.TLSCredentials, credentials), **crafted})
    assert response.status_code == 302
    assert models.TLSCredentials.objects.values("pk", "subject", "host_names", "not_after", "created").get(pk=credentials.pk) == stored


def test_groups_that_contain_each_other_are_saved_only_after_the_warning_is_confirmed(manager_client, documents):
    """A cycle is allowed by design (Domino allows it; the matcher stops at the loop, see
    tests/directory/test_names.py), so it is a warning, not an error."""
    group = documents[models.Group]
    assert manager_client.post(create_url(models.Group), form_data(models.Group, name="Sales", members="Mail Admins")).status_code == 302
    data = form_data(models.Group, group, members="Sales")
    shown = manager_client.post(update_url(group), data)
    assert shown.status_code == 200
    assert "These groups contain each other: Mail Admins &gt; Sales &gt; Mail Admins." in shown.content.decode()
    group.refresh_from_db()
    assert group.members == ["Jane Doe/Sales/Acme"]
    confirmed = manager_client.post(update_url(group), {**data, "save_anyway": "1", "confirm_warnings": "cycle"})
    assert confirmed.status_code == 302
    group.refresh_from_db()
    assert group.members == ["Sales"]


def import_file(tmp_path, text, *options):
    path = tmp_path / "directory.json"
    path.write_text(text, encoding="utf-8")
    call_command("importdirectory", str(path), *options, stdout=io.StringIO(), stderr=io.StringIO())


def import_refused(tmp_path, text, *options):
    """Import a file that must be refused; its error lines (without the heading), after checking that nothing changed."""
    before = state()
    with pytest.raises(CommandError) as refused:
        import_file(tmp_path, text, *options)
    assert state() == before
    heading, *lines = str(refused.value).splitlines()
    return lines if heading.endswith("nothing was changed:") else [heading, *lines]


def one_server(**fields):
    return json.dumps({"format": 1, "servers": [{"name": "mail1/Acme", **fields}]})


@pytest.mark.parametrize(("text", "error"), [
    (one_server(smtp_inbound={"tcp_port": 10**30}), "servers[0].smtp_inbound.tcp_port: Enter a port number from 1 to 65535."),
    (one_server(smtp_inbound={"tcp_port": 1e9}), "servers[0].smtp_inbound.tcp_port: Expected a whole number, not a decimal number."),
    (one_server(host_name="h" * 1_000_000), "servers[0].host_name: Ensure this value has at most 253 characters (it has 1000000)."),
    (one_server(listen_addresses=[[[["127.0.0.1"]]]]), "servers[0].listen_addresses: Expected a list of text entries, not a list holding a list."),
    (one_server(smtp_inbound={"tcp_port": {"value": {"value": 25}}}), "servers[0].smtp_inbound.tcp_port: Expected a whole number, not an object."),
    (one_server(name_x=1), "servers[0].name_x: Unknown key (did you mean “name”?)."),
    (json.dumps({"format": 1, "configurations": [{"server": "*", "relay_auth_password": "p" * 501}]}),
     "configurations[0].relay_auth_password: Ensure this value has at most 500 characters (it has 501)."),
    (json.dumps({"format": 1, "people": [{"full_name": "Jane Doe/Sales/Acme", "internet_password_hash": "md5$" + "a" * 300}]}),
     "people[0].internet_password_hash: Ensure this value has at most 200 characters (it has 304)."),
    (json.dumps({"format": 1, "tls_credentials": [{"name": "mail1-cert", "certificate_pem": BROKEN_PEM}]}),
     "tls_credentials[0].certificate_pem: This is not a PEM certificate chain (-----BEGIN CERTIFICATE-----)."),
    (json.dumps({"format": 1, "tls_credentials": [{"name": "mail1-cert", "private_key_pem": BROKEN_KEY}]}),
     "tls_credentials[0].private_key_pem: This is not a PEM private key (-----BEGIN PRIVATE KEY-----)."),
], ids=["huge-number", "decimal-for-whole-number", "huge-text", "nested-lists", "nested-objects", "unknown-key",
        "huge-relay-password", "huge-password-hash", "broken-certificate", "broken-key"])
def test_a_hostile_value_in_an_import_file_is_named_and_changes_nothing(tmp_path, documents, text, error):
    assert error in import_refused(tmp_path, text)


@pytest.mark.parametrize(("text", "error"), [
    ("[" * 100_000 + "]" * 100_000, "directory.json nests lists or objects too deeply to be a directory file."),
    ('{"format": 1, "servers": [{"name": "mail1/Acme", "smtp_inbound": {"tcp_port": ' + "9" * 5000 + "}}]}",
     "directory.json is not valid JSON: Exceeds the limit (4300 digits) for integer string conversion"),
    ('{"format": NaN}', "directory.json is not valid JSON: NaN is not a JSON value"),
    ('{"format": 1, "servers": [{"name": "mail1/Acme", "smtp_inbound": {"tcp_port": Infinity}}]}',
     "directory.json is not valid JSON: Infinity is not a JSON value"),
], ids=["deep-nesting", "5000-digit-number", "nan", "infinity"])
def test_a_file_that_python_reads_but_is_no_directory_file_is_refused_cleanly(tmp_path, documents, text, error):
    lines = import_refused(tmp_path, text)
    assert error in lines[-1]


def test_a_file_larger_than_the_limit_is_refused_before_it_is_read(tmp_path, documents):
    path = tmp_path / "huge.json"
    with open(path, "wb") as handle:
        handle.truncate(32 * 1024 * 1024 + 1)  # sparse: 32 MiB and one byte, written in no time
    before = state()
    with pytest.raises(CommandError) as refused:
        call_command("importdirectory", str(path), stdout=io.StringIO())
    assert str(refused.value) == f"{path} is larger than 32 MiB: nothing was read. Use --max-size to allow more."
    assert state() == before


def test_the_limit_holds_on_standard_input_and_can_be_raised(monkeypatch, documents):
    document = json.dumps({"format": 1, "groups": [{"name": "Big", "members": [f"Member {index}/Acme" for index in range(60_000)]}]})
    assert 1024 * 1024 < len(document) < 2 * 1024 * 1024
    monkeypatch.setattr("sys.stdin", io.StringIO(document))
    with pytest.raises(CommandError) as refused:
        call_command("importdirectory", "-", "--max-size", "1", stdout=io.StringIO())
    assert str(refused.value) == "- is larger than 1 MiB: nothing was read. Use --max-size to allow more."
    assert not models.Group.objects.filter(name="Big").exists()
    monkeypatch.setattr("sys.stdin", io.StringIO(document))
    call_command("importdirectory", "-", "--max-size", "2", stdout=io.StringIO())
    assert len(models.Group.objects.get(name="Big").members) == 60_000


def test_groups_that_contain_each_other_import_with_a_warning(tmp_path, documents):
    out, err = io.StringIO(), io.StringIO()
    path = tmp_path / "groups.json"
    path.write_text(json.dumps({"format": 1, "groups": [
        {"name": "Mail Admins", "members": ["Sales"]}, {"name": "Sales", "members": ["Mail Admins"]},
    ]}), encoding="utf-8")
    call_command("importdirectory", str(path), stdout=out, stderr=err)
    assert err.getvalue().splitlines() == [
        "groups[0].members: warning: These groups contain each other: Mail Admins > Sales > Mail Admins. Access checks stop at the loop.",
        "groups[1].members: warning: These groups contain each other: Sales > Mail Admins > Sales. Access checks stop at the loop.",
    ]
    assert models.Group.objects.get(name="Sales").members == ["Mail Admins"]


def test_credentials_whose_key_does_not_match_the_certificate_are_refused(tmp_path, documents):
    certificate_pem, _key = tls.generate_self_signed("mail1.acme.test")
    _other_certificate, other_key = tls.generate_self_signed("mail1.acme.test")
    text = json.dumps({"format": 1, "tls_credentials": [{"name": "mail1-cert", "certificate_pem": certificate_pem, "private_key_pem": other_key}]})
    assert import_refused(tmp_path, text) == [
        "tls_credentials[0].private_key_pem: This private key does not belong to the first certificate of the chain.",
    ]
