"""``exportdirectory`` and ``importdirectory``: the JSON format of spec section 7, all or nothing."""
import copy
import io
import json
import os
import stat

import pytest
from django.contrib.auth.hashers import make_password
from django.core.management import CommandError, call_command, load_command_class
from django.utils import translation

from directory import importexport, tls
from directory.models import AuditEntry, ConfigurationSettings, Group, InternetSite, Person, Server, TLSCredentials
from tests.directory.documents import make_credentials, make_server, save

pytestmark = pytest.mark.django_db

DOCUMENT_MODELS = (ConfigurationSettings, InternetSite, Server, TLSCredentials, Person, Group)

# The example of spec section 7, as written there.
SPEC_EXAMPLE = """
{
  "format": 1,
  "servers": [{
    "name": "mail1/Acme",
    "host_name": "mail1.acme.test",
    "smtp_listener_enabled": true,
    "load_internet_sites": false,
    "listen_addresses": [],
    "access_server": [],
    "not_access_server": [],
    "internet_authentication": "fewer",
    "tls_credentials": "mail1-cert",
    "smtp_inbound": {
      "tcp_port": 25, "tcp_status": "enabled", "enforce_server_access": false,
      "tcp_auth_name_password": false, "tcp_auth_anonymous": true,
      "ssl_port": 465, "ssl_status": "disabled",
      "ssl_auth_client_certificate": false, "ssl_auth_name_password": true, "ssl_auth_anonymous": true
    },
    "smtp_outbound": {
      "tcp_port": 25, "tcp_status": "enabled",
      "ssl_port": 465, "ssl_status": "disabled"
    }
  }],
  "configurations": [{
    "server": "*",
    "local_domains": ["acme.test"],
    "smtp_outside_local_domain": true,
    "relay_host": "",
    "relay_auth": "disabled", "relay_auth_name": "", "relay_auth_password": "",
    "routes": [{"domain": "partner.test", "host": "127.0.0.1:2626"}],
    "max_message_size_kb": 10240,
    "max_recipients": 100,
    "starttls_inbound": "enabled",
    "size_extension": true, "pipelining": true, "eightbitmime": false,
    "help_command": true, "vrfy_command": false,
    "anti_relay_enforcement": "external",
    "internal_hosts": ["127.0.0.0/8", "::1"],
    "anti_relay_exclude_hosts": [],
    "authenticated_users_relay": true,
    "relay_allow_domains": [], "relay_deny_domains": [],
    "connection_allow_hosts": [], "connection_deny_hosts": [],
    "error_limit": 10
  }],
  "internet_sites": [{
    "name": "Acme SMTP",
    "type": "smtp_inbound",
    "organization": "Acme",
    "mapped_addresses": ["*"],
    "servers": ["*"],
    "tcp_auth_name_password": false, "tcp_auth_anonymous": true,
    "ssl_auth_client_certificate": false, "ssl_auth_name_password": true, "ssl_auth_anonymous": true,
    "tls_credentials": null
  }],
  "people": [{
    "full_name": "Jane Doe/Sales/Acme", "first_name": "Jane", "last_name": "Doe",
    "short_name": "jdoe", "internet_address": "jane@acme.test",
    "internet_password": "only on import; stored as a hash"
  }],
  "groups": [{"name": "Mail Admins", "group_type": "multi_purpose",
              "members": ["Jane Doe/Sales/Acme", "*/Sales/Acme", "Other Group"]}],
  "tls_credentials": [{"name": "mail1-cert", "certificate_pem": "...", "private_key_pem": "..."}]
}
"""


def spec_example():
    """The spec's example with a real certificate and key in place of its "..." placeholders."""
    document = json.loads(SPEC_EXAMPLE)
    certificate_pem, private_key_pem = tls.generate_self_signed("mail1.acme.test")
    document["tls_credentials"][0].update(certificate_pem=certificate_pem, private_key_pem=private_key_pem)
    return document


def export(*options):
    out = io.StringIO()
    call_command("exportdirectory", *options, stdout=out)
    return out.getvalue()


def run_import(tmp_path, document, *options):
    """Import a document (dict or text) from a file; return (stdout, stderr)."""
    path = tmp_path / "directory.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    call_command("importdirectory", str(path), *options, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def import_errors(tmp_path, document, *options):
    """Import a file that must be refused; return the error lines."""
    with pytest.raises(CommandError) as refused:
        run_import(tmp_path, document, *options)
    heading, *lines = str(refused.value).splitlines()
    assert "nothing was changed" in heading
    return lines


def state():
    """Everything an import may change: the whole directory with its secrets, and the audit trail."""
    return export("--include-secrets"), list(AuditEntry.objects.values_list("pk", flat=True))


def empty_directory():
    for model in DOCUMENT_MODELS:
        model.objects.all().delete()


@pytest.fixture(autouse=True)
def _english():
    """The messages asserted here are the English ones, whatever another test left active."""
    with translation.override("en"):
        yield


def minimal(**lists):
    return {"format": 1, **lists}


@pytest.fixture
def rich_directory():
    """A directory using every kind of key, built through the console forms."""
    mail1_cert = make_credentials("mail1-cert", "mail1.acme.test", extra_names=("127.0.0.1",))
    site_cert = make_credentials("site-cert", "smtp.acme.test")
    make_server(
        "mail1/Acme", "mail1.acme.test", tls_credentials=mail1_cert.name, listen_addresses=["127.0.0.1", "::1"],
        access_server=["Mail Admins", "*/Sales/Acme"], not_access_server=["Bob Smith/Sales/Acme"],
        internet_authentication="more", smtp_inbound_ssl_status="enabled", smtp_inbound_enforce_server_access=True,
        smtp_outbound_tcp_status="negotiated_ssl", smtp_outbound_ssl_port=4465,
    )
    save(InternetSite, name="Acme SMTP", organization="Acme", mapped_addresses=["192.0.2.10", "*"],
         servers=["mail2/Acme"], ssl_auth_client_certificate=True, tls_credentials=site_cert.name)
    # Its SSL port relies on the credentials of the site that hosts it.
    make_server("mail2/Acme", "mail2.acme.test", load_internet_sites=True, smtp_inbound_ssl_status="enabled",
                smtp_listener_enabled=False)
    save(ConfigurationSettings, local_domains=["acme.test", "*.acme.test"], relay_host="relay.acme.test:587",
         relay_auth="required", relay_auth_name="relay-user", relay_auth_password="relay-secret",
         routes="partner.test 127.0.0.1:2626\nother.test mx.other.test", starttls_inbound="required",
         eightbitmime=True, vrfy_command=True, anti_relay_enforcement="all", internal_hosts=["10.0.0.0/8"],
         anti_relay_exclude_hosts=["192.0.2.0/24"], authenticated_users_relay=False,
         relay_allow_domains=["partner.test"], relay_deny_domains=["evil.test"],
         connection_allow_hosts=["192.0.2.0/24", "mx.partner.test"], connection_deny_hosts=["192.0.2.66"],
         max_message_size_kb=0, max_recipients=500, error_limit=3)
    save(ConfigurationSettings, server="mail2/Acme", local_domains=["mail2.acme.test"], smtp_outside_local_domain=False)
    save(Person, full_name="Jane Doe/Sales/Acme", first_name="Jane", last_name="Doe", short_name="jdoe",
         internet_address="jane@acme.test", internet_password="jane-pass")
    save(Person, full_name="Hélène Durand/Acme", first_name="Hélène", last_name="Durand")
    save(Group, name="Mail Admins", group_type="acl_only", members=["Jane Doe/Sales/Acme", "Sales"])
    save(Group, name="Sales", group_type="mail_only", members=["*/Sales/Acme"])


def test_round_trip_with_secrets_into_an_empty_directory_is_byte_identical(tmp_path, rich_directory):
    first = export("--include-secrets")
    empty_directory()
    out, err = run_import(tmp_path, first)
    assert export("--include-secrets") == first
    assert "servers: 2 created, 0 updated, 0 deleted, 0 unchanged" in out.splitlines()
    assert Person.objects.get(short_name="jdoe").check_internet_password("jane-pass")
    assert ConfigurationSettings.objects.get(server=None).relay_auth_password == "relay-secret"
    assert err == ""


def test_round_trip_without_secrets_changes_nothing_in_the_same_directory(tmp_path, rich_directory):
    before = state()
    out, _err = run_import(tmp_path, export())
    assert state() == before
    assert "people: 0 created, 0 updated, 0 deleted, 2 unchanged" in out.splitlines()


def test_round_trip_without_secrets_into_an_empty_directory_is_byte_identical(tmp_path):
    make_server("mail1/Acme", "mail1.acme.test", access_server=["Mail Admins"])
    save(ConfigurationSettings, local_domains=["acme.test"])
    save(Person, full_name="Jane Doe/Sales/Acme", internet_address="jane@acme.test", internet_password="jane-pass")
    save(Group, name="Mail Admins", members=["Jane Doe/Sales/Acme"])
    first = export()
    empty_directory()
    run_import(tmp_path, first)
    assert export() == first
    assert not Person.objects.get().has_internet_password


def test_private_keys_are_needed_to_create_credentials(tmp_path, rich_directory):
    text = export()
    empty_directory()
    lines = import_errors(tmp_path, text)
    assert lines == [
        "tls_credentials[0].private_key_pem: This field is required.",
        "tls_credentials[1].private_key_pem: This field is required.",
        "internet_sites[0].tls_credentials: “site-cert” is not imported because tls_credentials[1] has errors.",
        "servers[0].tls_credentials: “mail1-cert” is not imported because tls_credentials[0] has errors.",
        "servers[0].smtp_inbound.ssl_status: The SSL port cannot be Enabled without TLS credentials: choose them on "
        "Ports > Internet Ports.",
        "servers[1].smtp_inbound.ssl_status: The SSL port cannot be Enabled without TLS credentials: choose them on "
        "Ports > Internet Ports.",
        "configurations[1].server: “mail2/Acme” is not imported because servers[1] has errors.",
    ]
    assert not TLSCredentials.objects.exists()


def test_export_writes_no_secret_without_the_flag(rich_directory):
    text = export()
    jane = Person.objects.get(short_name="jdoe")
    for secret in ("internet_password", "private_key_pem", "relay_auth_password", "relay-secret", "PRIVATE KEY", jane.internet_password):
        assert secret not in text
    document = json.loads(text)
    assert "relay_auth_name" in document["configurations"][0]
    assert document["tls_credentials"][0]["certificate_pem"].startswith("-----BEGIN CERTIFICATE-----")


def test_export_with_the_flag_writes_hashes_keys_and_the_relay_password(rich_directory):
    document = json.loads(export("--include-secrets"))
    jane = next(person for person in document["people"] if person["short_name"] == "jdoe")
    assert jane["internet_password_hash"] == Person.objects.get(short_name="jdoe").internet_password
    assert "internet_password" not in jane
    assert document["configurations"][0]["relay_auth_password"] == "relay-secret"
    assert document["tls_credentials"][0]["private_key_pem"] == TLSCredentials.objects.get(name="mail1-cert").private_key_pem


def test_export_is_in_the_documented_order(rich_directory):
    document = json.loads(export())
    assert list(document) == ["format", "servers", "configurations", "internet_sites", "people", "groups", "tls_credentials"]
    assert [server["name"] for server in document["servers"]] == ["mail1/Acme", "mail2/Acme"]
    assert [config["server"] for config in document["configurations"]] == ["*", "mail2/Acme"]
    assert list(document["servers"][0])[-2:] == ["smtp_inbound", "smtp_outbound"]
    assert document["servers"][0]["smtp_outbound"] == {"tcp_port": 25, "tcp_status": "negotiated_ssl", "ssl_port": 4465, "ssl_status": "disabled"}
    assert document["internet_sites"][0]["type"] == "smtp_inbound"
    assert document["configurations"][0]["routes"] == [
        {"domain": "partner.test", "host": "127.0.0.1:2626"}, {"domain": "other.test", "host": "mx.other.test"},
    ]


def test_export_to_a_file_only_its_owner_can_read(tmp_path, rich_directory):
    path = tmp_path / "backup.json"
    call_command("exportdirectory", "--include-secrets", "--output", str(path), stdout=io.StringIO())
    assert path.read_text(encoding="utf-8") == export("--include-secrets")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_the_spec_example_imports_and_exports_as_written(tmp_path):
    document = spec_example()
    out, err = run_import(tmp_path, document)
    assert err == ""
    assert out.splitlines() == [
        f"{key}: 1 created, 0 updated, 0 deleted, 0 unchanged"
        for key in ("servers", "configurations", "internet_sites", "people", "groups", "tls_credentials")
    ]
    jane = Person.objects.get(full_name="Jane Doe/Sales/Acme")
    assert jane.check_internet_password("only on import; stored as a hash")
    assert Server.objects.get().tls_credentials.name == "mail1-cert"
    expected = copy.deepcopy(document)
    del expected["people"][0]["internet_password"]
    expected["people"][0]["internet_password_hash"] = jane.internet_password
    # Our extension of the spec's format: who receives postmaster mail, exported with its default.
    expected["configurations"][0]["administrators"] = ["LocalDomainAdmins"]
    # The console form trims text fields; the PEM key is kept byte for byte.
    expected["tls_credentials"][0]["certificate_pem"] = document["tls_credentials"][0]["certificate_pem"].strip()
    # The relay host's CA bundle came after the spec's example was written: exported blank, after relay_host.
    configuration = expected["configurations"][0]
    expected["configurations"][0] = dict(
        (pair for key, value in configuration.items() for pair in [(key, value)] + ([("relay_ca_file", "")] if key == "relay_host" else []))
    )
    in_order = {"object_pairs_hook": list}
    assert json.loads(export("--include-secrets"), **in_order) == json.loads(json.dumps(expected), **in_order)


def test_documents_are_matched_by_name_and_updated_with_an_audited_change(tmp_path):
    server = make_server("mail1/Acme", "mail1.acme.test")
    document = minimal(servers=[{"name": "mail1/Acme", "smtp_inbound": {"tcp_port": 2626}}])
    out, _err = run_import(tmp_path, document)
    assert out.splitlines() == ["servers: 0 created, 1 updated, 0 deleted, 0 unchanged"]
    server.refresh_from_db()
    assert server.smtp_inbound_tcp_port == 2626
    entry = AuditEntry.objects.filter(object_id=str(server.pk)).first()
    assert (entry.action, entry.actor, entry.user) == ("change", "importdirectory", None)
    assert entry.changes == {"smtp_inbound_tcp_port": [25, 2626]}


def test_names_match_without_regard_to_case_or_canonical_form(tmp_path):
    make_server("mail1/Acme", "mail1.acme.test")
    jane = save(Person, full_name="Jane Doe/Sales/Acme", short_name="jdoe")
    run_import(tmp_path, minimal(
        servers=[{"name": "MAIL1/acme", "host_name": "mx.acme.test"}],
        people=[{"full_name": "CN=Jane Doe/OU=Sales/O=Acme", "short_name": "jane"}],
    ))
    assert Server.objects.get().host_name == "mx.acme.test"
    jane.refresh_from_db()
    assert (jane.full_name, jane.short_name) == ("Jane Doe/Sales/Acme", "jane")


def test_missing_keys_keep_the_current_values_of_an_existing_document(tmp_path):
    server = make_server(
        "mail1/Acme", "mail1.acme.test", access_server=["Mail Admins"], smtp_inbound_tcp_port=2626,
        smtp_inbound_ssl_auth_anonymous=False, smtp_outbound_tcp_status="negotiated_ssl",
    )
    run_import(tmp_path, minimal(servers=[{"name": "mail1/Acme", "host_name": "mx.acme.test", "smtp_inbound": {}}]))
    server.refresh_from_db()
    assert server.host_name == "mx.acme.test"
    assert server.access_server == ["Mail Admins"]
    assert server.smtp_inbound_tcp_port == 2626
    assert server.smtp_inbound_ssl_auth_anonymous is False
    assert server.smtp_outbound_tcp_status == "negotiated_ssl"


def test_missing_keys_take_the_defaults_of_a_new_document(tmp_path):
    make_server("mail1/Acme", "mail1.acme.test")
    run_import(tmp_path, minimal(
        servers=[{"name": "mail3/Acme", "host_name": "mail3.acme.test"}],
        internet_sites=[{"name": "Acme SMTP"}],
        configurations=[{"server": "*"}],
    ))
    exported = json.loads(export())
    assert exported["servers"][1] == {
        **exported["servers"][0], "name": "mail3/Acme", "host_name": "mail3.acme.test",
    }
    assert exported["servers"][0]["smtp_inbound"]["tcp_port"] == 25
    site = InternetSite.objects.get()
    assert (site.organization, site.mapped_addresses, site.servers, site.ssl_auth_name_password) == ("Acme", ["*"], ["*"], True)
    config = ConfigurationSettings.objects.get()
    assert (config.internal_hosts, config.max_recipients, config.starttls_inbound) == (["127.0.0.0/8", "::1"], 100, "enabled")


def test_credentials_keep_their_key_when_the_file_leaves_it_out(tmp_path):
    credentials = make_credentials("mail1-cert", "mail1.acme.test")
    certificate_pem, _key = tls.generate_self_signed("mail1.acme.test")
    lines = import_errors(tmp_path, minimal(tls_credentials=[{"name": "mail1-cert", "certificate_pem": certificate_pem}]))
    assert lines == ["tls_credentials[0].private_key_pem: This private key does not belong to the first certificate of the chain."]
    key = credentials.private_key_pem
    run_import(tmp_path, minimal(tls_credentials=[{"name": "mail1-cert", "certificate_pem": credentials.certificate_pem}]))
    credentials.refresh_from_db()
    assert credentials.private_key_pem == key


def test_replace_deletes_unlisted_documents_of_the_types_in_the_file(tmp_path):
    make_server("mail1/Acme", "mail1.acme.test")
    old = make_server("mail2/Acme", "mail2.acme.test")
    save(ConfigurationSettings, server="mail2/Acme")
    save(Person, full_name="Jane Doe/Sales/Acme")
    out, _err = run_import(tmp_path, minimal(servers=[{"name": "mail1/Acme"}], configurations=[]), "--replace")
    assert list(Server.objects.values_list("name", flat=True)) == ["mail1/Acme"]
    assert not ConfigurationSettings.objects.exists()
    assert Person.objects.count() == 1
    assert out.splitlines() == [
        "servers: 0 created, 0 updated, 1 deleted, 1 unchanged",
        "configurations: 0 created, 0 updated, 1 deleted, 0 unchanged",
    ]
    deleted = AuditEntry.objects.get(action="delete", document_type="server")
    assert (deleted.object_id, deleted.actor) == (str(old.pk), "importdirectory")


def test_replace_refuses_to_delete_credentials_still_in_use(tmp_path):
    make_credentials("mail1-cert", "mail1.acme.test")
    make_server("mail1/Acme", "mail1.acme.test", tls_credentials="mail1-cert")
    before = state()
    lines = import_errors(tmp_path, minimal(servers=[{"name": "mail1/Acme"}], tls_credentials=[]), "--replace")
    assert lines == ["tls_credentials: --replace cannot delete “mail1-cert”, which the file does not list: mail1/Acme still use it."]
    assert state() == before


def test_replace_does_not_silently_drop_a_configuration_with_its_server(tmp_path):
    make_server("mail1/Acme", "mail1.acme.test")
    make_server("mail2/Acme", "mail2.acme.test")
    before = state()
    lines = import_errors(
        tmp_path, minimal(servers=[{"name": "mail1/Acme"}], configurations=[{"server": "mail2/Acme"}]), "--replace",
    )
    assert lines == ["configurations[0]: --replace deleted this document with a document that the file does not list."]
    assert state() == before


def test_a_plain_password_is_stored_as_a_hash(tmp_path):
    run_import(tmp_path, minimal(people=[{"full_name": "Jane Doe/Sales/Acme", "internet_password": "s3cret!"}]))
    jane = Person.objects.get()
    assert jane.internet_password != "s3cret!"
    assert jane.check_internet_password("s3cret!")
    out, _err = run_import(tmp_path, minimal(people=[{"full_name": "Jane Doe/Sales/Acme", "internet_password": "s3cret!"}]))
    assert out.splitlines() == ["people: 0 created, 0 updated, 0 deleted, 1 unchanged"]


def test_a_password_hash_is_stored_as_is(tmp_path):
    hashed = make_password("from-another-server")
    run_import(tmp_path, minimal(people=[{"full_name": "Jane Doe/Sales/Acme", "internet_password_hash": hashed}]))
    jane = Person.objects.get()
    assert jane.internet_password == hashed
    assert jane.check_internet_password("from-another-server")


def test_an_empty_password_removes_it(tmp_path):
    save(Person, full_name="Jane Doe/Sales/Acme", internet_password="jane-pass")
    run_import(tmp_path, minimal(people=[{"full_name": "Jane Doe/Sales/Acme", "internet_password_hash": ""}]))
    assert not Person.objects.get().has_internet_password


@pytest.mark.parametrize(
    ("document", "error"),
    [
        pytest.param(
            {"servers": [{"name": "mail1/Acme", "smtp_inbound": {"ssl_port": 25}}]},
            "servers[0].smtp_inbound.ssl_port: The SSL port must differ from the TCP/IP port (25).",
            id="form-rule",
        ),
        pytest.param(
            {"servers": [{"name": "mail1/Acme", "smtp_inbound": {"tcp_port": "2525"}}]},
            "servers[0].smtp_inbound.tcp_port: Expected a whole number, not text.",
            id="string-for-port",
        ),
        pytest.param(
            {"servers": [{"name": "mail1/Acme", "smtp_listener_enabled": "yes"}]},
            "servers[0].smtp_listener_enabled: Expected true or false, not text.",
            id="string-for-bool",
        ),
        pytest.param(
            {"servers": [{"name": "mail1/Acme", "access_server": {"Mail Admins": True}}]},
            "servers[0].access_server: Expected a list of text entries, not an object.",
            id="dict-for-list",
        ),
        pytest.param(
            {"servers": [{"name": "mail1/Acme", "listen_addresses": ["127.0.0.1", 8]}]},
            "servers[0].listen_addresses: Expected a list of text entries, not a list holding a number.",
            id="number-in-list",
        ),
        pytest.param(
            {"servers": [{"name": "mail1/Acme", "smtp_inbound": [25]}]},
            "servers[0].smtp_inbound: Expected an object, not a list.",
            id="list-for-section",
        ),
        pytest.param(
            {"servers": [{"name": "mail1/Acme", "smtp_inbound": {"tcp_prot": 25}}]},
            "servers[0].smtp_inbound.tcp_prot: Unknown key (did you mean “tcp_port”?).",
            id="unknown-key",
        ),
        pytest.param(
            {"servers": [{"name": "mail1/Acme", "smtp_outbound": {"tcp_status": "sometimes"}}]},
            "servers[0].smtp_outbound.tcp_status: Select a valid choice. sometimes is not one of the available choices.",
            id="bad-choice",
        ),
        pytest.param(
            {"servers": [{"name": "mail1/Acme", "tls_credentials": "missing-cert"}]},
            "servers[0].tls_credentials: No TLS credentials named “missing-cert” in the directory or earlier in this file.",
            id="unknown-reference",
        ),
        pytest.param(
            {"servers": [{"host_name": "mail9.acme.test"}]},
            "servers[0].name: This key is required: it names the document.",
            id="no-name",
        ),
        pytest.param(
            {"servers": [{"name": "mail1/Acme"}, {"name": "MAIL1/Acme"}]},
            "servers[1].name: “MAIL1/Acme” is already in this file, at servers[0].",
            id="twice-in-file",
        ),
        pytest.param(
            {"servers": {"name": "mail1/Acme"}},
            "servers: Expected a list of documents, not an object.",
            id="object-for-list",
        ),
        pytest.param(
            {"servers": ["mail1/Acme"]},
            "servers[0]: Expected an object, not text.",
            id="text-for-document",
        ),
        pytest.param(
            {"configurations": [{"server": "*", "routes": ["partner.test 127.0.0.1"]}]},
            'configurations[0].routes: Expected a list of routes ({"domain": ..., "host": ...}), not a list.',
            id="text-for-route",
        ),
        pytest.param(
            {"configurations": [{"server": "*", "relay_auth": "required"}]},
            "configurations[0].relay_auth: Authentication to the relay host needs a relay host.",
            id="configuration-rule",
        ),
        pytest.param(
            {"people": [{"full_name": "Jane Doe/Sales/Acme", "internet_password_hash": "not-a-hash"}]},
            "people[0].internet_password_hash: This is not a password hash this server recognises (such as pbkdf2_sha256$...).",
            id="bad-hash",
        ),
        pytest.param(
            {"people": [{"full_name": "Jane Doe/Sales/Acme", "internet_password": "a", "internet_password_hash": ""}]},
            "people[0].internet_password_hash: Give internet_password or internet_password_hash, not both.",
            id="both-passwords",
        ),
        pytest.param(
            {"internet_sites": [{"name": "Acme SMTP", "type": "pop3"}]},
            "internet_sites[0].type: Select a valid choice. pop3 is not one of the available choices.",
            id="site-type",
        ),
        pytest.param(
            {"tls_credentials": [{"name": "new-cert", "certificate_pem": "junk"}]},
            "tls_credentials[0].private_key_pem: This field is required.",
            id="new-credentials-without-key",
        ),
        pytest.param({"format": 2}, "format: Unsupported format 2: this importer reads format 1.", id="format-2"),
        pytest.param({"format": "1"}, 'format: Unsupported format "1": this importer reads format 1.', id="format-text"),
        pytest.param({"format": None}, "format: This key is required: this importer reads format 1.", id="no-format"),
        pytest.param({"sites": []}, "sites: Unknown key.", id="unknown-list"),
    ],
)
def test_each_error_names_the_document_and_key_and_changes_nothing(tmp_path, document, error):
    make_server("mail1/Acme", "mail1.acme.test")
    save(ConfigurationSettings)
    before = state()
    document = {"format": 1, **document}
    if document["format"] is None:
        del document["format"]
    assert error in import_errors(tmp_path, document)
    assert state() == before


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[]", "The file must hold a JSON object with “format”: 1 and lists of documents."),
        ('{"format": 1,', "directory.json is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 14 (char 13)"),
    ],
)
def test_a_file_that_is_not_a_json_object_is_refused(tmp_path, text, error):
    with pytest.raises(CommandError) as refused:
        run_import(tmp_path, text)
    assert str(refused.value).splitlines()[-1].endswith(error)


def test_one_bad_document_among_good_ones_changes_nothing_and_every_error_is_reported(tmp_path):
    make_server("mail1/Acme", "mail1.acme.test")
    before = state()
    counts = {model: model.objects.count() for model in DOCUMENT_MODELS}
    document = spec_example()
    document["servers"].append({"name": "mail2/Acme", "host_name": "mail2.acme.test", "smtp_inbound": {"ssl_port": 25}})
    document["people"].append({"full_name": "Bob/Acme", "internet_address": "not an address"})
    lines = import_errors(tmp_path, document)
    assert lines == [
        "servers[1].smtp_inbound.ssl_port: The SSL port must differ from the TCP/IP port (25).",
        "people[1].internet_address: Enter a valid email address.",
    ]
    assert state() == before
    assert {model: model.objects.count() for model in DOCUMENT_MODELS} == counts


def test_a_reference_to_a_document_with_errors_points_to_it(tmp_path):
    document = spec_example()
    document["tls_credentials"][0]["private_key_pem"] = "junk"
    assert import_errors(tmp_path, document) == [
        "tls_credentials[0].private_key_pem: This is not a PEM private key (-----BEGIN PRIVATE KEY-----).",
        "servers[0].tls_credentials: “mail1-cert” is not imported because tls_credentials[0] has errors.",
    ]
    assert not Server.objects.exists()


def test_warnings_are_printed_but_the_import_goes_on(tmp_path):
    out, err = run_import(tmp_path, minimal(
        servers=[{"name": "mail1/Acme", "host_name": "mail1.acme.test", "smtp_inbound": {"tcp_port": 2626}}],
        configurations=[{"server": "*", "anti_relay_enforcement": "none"}],
    ))
    assert Server.objects.get().smtp_inbound_tcp_port == 2626
    assert err.splitlines() == [
        "servers[0].smtp_inbound.tcp_port: warning: Senders try port 25 by default: every sending server and client "
        "must be configured for port 2626 (its SMTP Outbound TCP/IP port number), and routing can break, above all if "
        "this server is a relay host for inbound Internet mail.",
        "configurations[0].anti_relay_enforcement: warning: Security: with no anti-relay enforcement, anyone may relay "
        "through this server.",
    ]
    assert out.splitlines()[0] == "servers: 1 created, 0 updated, 0 deleted, 0 unchanged"


def test_warnings_judge_the_directory_as_the_import_leaves_it(tmp_path):
    """The server is checked against the site and configuration that come later in the file."""
    _out, err = run_import(tmp_path, minimal(
        servers=[{"name": "mail1/Acme", "host_name": "mail1.acme.test", "load_internet_sites": True,
                  "smtp_inbound": {"tcp_auth_name_password": True}}],
        internet_sites=[{"name": "Acme SMTP", "servers": ["mail1/Acme"]}],
        configurations=[{"server": "*", "starttls_inbound": "required"}],
    ))
    assert err == ""


def test_dry_run_reports_and_changes_nothing(tmp_path):
    before = state()
    out, _err = run_import(tmp_path, spec_example(), "--dry-run")
    assert out.splitlines()[0] == "Dry run: the file is valid; nothing was changed. It would give:"
    assert "servers: 1 created, 0 updated, 0 deleted, 0 unchanged" in out.splitlines()
    assert state() == before


def test_dry_run_still_reports_errors(tmp_path):
    document = minimal(servers=[{"name": "mail1/Acme", "host_name": "mail1.acme.test", "smtp_inbound": {"tcp_port": 0}}])
    lines = import_errors(tmp_path, document, "--dry-run")
    assert lines == ["servers[0].smtp_inbound.tcp_port: Ensure this value is greater than or equal to 1."]


def test_import_reads_standard_input(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(minimal(groups=[{"name": "Mail Admins", "members": ["*/Acme"]}]))))
    call_command("importdirectory", "-", stdout=io.StringIO())
    assert Group.objects.get().members == ["*/Acme"]


def test_every_model_field_has_a_key_in_the_format():
    """A field added to a document without a key would be lost by a round trip."""
    for doc_type in importexport.EXPORT_ORDER:
        fields = {field.name for field in doc_type.model._meta.concrete_fields if field.editable} - {"id"}
        fields |= set(doc_type.model.secret_fields)
        assert fields == {key.field for key in doc_type.keys if key.exported}, doc_type.key



@pytest.mark.parametrize(("command", "option"), [("importdirectory", "--replace"), ("exportdirectory", "--include-secrets")])
def test_command_help_can_be_shown(command, option):
    parser = load_command_class("directory", command).create_parser("manage.py", command)
    assert option in parser.format_help()
