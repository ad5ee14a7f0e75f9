"""The settings snapshot read from the directory, and the revision that tells a listener to reload it."""
import pytest
from django.contrib.auth.hashers import check_password
from django.utils import timezone

from directory import audit
from directory.forms import PersonForm
from directory.models import AuditEntry, ConfigurationSettings, Group, InternetSite, Person, Server, TLSCredentials
from smtpservice.core import policy
from smtpservice.store.snapshot import ServerNotFound, current_revision, load_snapshot, refreshed

pytestmark = pytest.mark.django_db


def credentials(name):
    """Credentials saved without clean(): the snapshot copies them and does not check certificates."""
    return TLSCredentials.objects.create(name=name, certificate_pem=f"CERT {name}", private_key_pem=f"KEY {name}", host_names=["mail1.acme.test"])


def site(name, created_days_ago, **fields):
    return InternetSite.objects.create(name=name, created=timezone.now() - timezone.timedelta(days=created_days_ago), **fields)


@pytest.fixture
def server():
    return Server.objects.create(name="mail1/Acme", host_name="mail1.acme.test")


def test_an_unknown_server_is_a_clear_error(server):
    with pytest.raises(ServerNotFound, match="No Server document is named “mail9/Acme”"):
        load_snapshot("mail9/Acme")


def test_the_server_is_found_by_abbreviated_or_canonical_name_in_any_case(server):
    assert load_snapshot("CN=MAIL1/O=acme").server_name == "mail1/Acme"


def test_server_fields_are_copied():
    cert = credentials("mail1-cert")
    Server.objects.create(
        name="mail1/Acme", host_name="mail1.acme.test", load_internet_sites=True, listen_addresses=["192.0.2.10"],
        access_server=["*/Acme"], not_access_server=["Bad Guy/Acme"], internet_authentication="more", tls_credentials=cert,
        smtp_inbound_tcp_port=26, smtp_inbound_enforce_server_access=True, smtp_inbound_tcp_auth_name_password=True,
        smtp_inbound_tcp_auth_anonymous=False, smtp_inbound_ssl_status="enabled", smtp_inbound_ssl_auth_client_certificate=True,
        smtp_inbound_ssl_auth_anonymous=False, smtp_outbound_tcp_port=2525, smtp_outbound_tcp_status="negotiated_ssl",
    )
    snap = load_snapshot("mail1/Acme")
    assert (snap.host_name, snap.load_internet_sites, snap.listen_addresses) == ("mail1.acme.test", True, ("192.0.2.10",))
    assert (snap.access_server, snap.not_access_server, snap.internet_authentication) == (("*/Acme",), ("Bad Guy/Acme",), "more")
    assert snap.inbound == policy.InboundPorts(
        tcp_port=26, tcp_status="enabled", enforce_server_access=True, ssl_port=465, ssl_status="enabled",
        options=policy.AuthOptions(tcp_name_password=True, tcp_anonymous=False, ssl_client_certificate=True, ssl_name_password=True, ssl_anonymous=False),
    )
    assert snap.outbound == policy.OutboundPorts(tcp_port=2525, tcp_status="negotiated_ssl", ssl_port=465, ssl_status="disabled")
    assert snap.tls_credentials_name == "mail1-cert"
    assert (snap.credentials["mail1-cert"].certificate_pem, snap.credentials["mail1-cert"].private_key_pem) == ("CERT mail1-cert", "KEY mail1-cert")


def test_without_configuration_document_the_model_defaults_apply_with_the_host_domain(server):
    snap = load_snapshot("mail1/Acme")
    assert snap.config == policy.ConfigSnapshot(local_domains=("acme.test",))
    assert snap.config_source == "built-in defaults (no Configuration Settings document)"


def test_the_default_configuration_applies_to_servers_without_their_own(server):
    ConfigurationSettings.objects.create(max_recipients=7, routes=[{"domain": "partner.test", "host": "127.0.0.1:2626"}])
    snap = load_snapshot("mail1/Acme")
    assert (snap.config.max_recipients, snap.config.local_domains, snap.config_source) == (7, ("acme.test",), "default Configuration Settings (*)")
    assert snap.config.routes == (policy.Route("partner.test", "127.0.0.1:2626"),)


def test_the_server_own_configuration_wins_over_the_default(server):
    ConfigurationSettings.objects.create(max_recipients=7)
    ConfigurationSettings.objects.create(
        server=server, max_recipients=3, local_domains=["acme.test", "*.acme.test"], starttls_inbound="required",
        connection_deny_hosts=["203.0.113.0/24"], relay_allow_domains=["partner.test"], error_limit=4,
    )
    config = load_snapshot("mail1/Acme").config
    assert (config.max_recipients, config.local_domains, config.starttls_inbound, config.error_limit) == (3, ("acme.test", "*.acme.test"), "required", 4)
    assert (config.connection_deny_hosts, config.relay_allow_domains) == (("203.0.113.0/24",), ("partner.test",))


def test_sites_hosting_the_server_come_oldest_first_with_their_options_and_credentials(server):
    cert = credentials("site-cert")
    site("Newer star", 1)
    site("Older by address", 5, mapped_addresses=["192.0.2.10"], servers=["mail1/Acme"], tcp_auth_anonymous=False, tls_credentials=cert)
    site("Other server", 9, servers=["mail2/Acme"])
    snap = load_snapshot("mail1/Acme")
    assert [s.name for s in snap.sites] == ["Older by address", "Newer star"]
    assert snap.sites[0] == policy.SiteSnapshot("Older by address", ("192.0.2.10",), policy.AuthOptions(tcp_anonymous=False), "site-cert")
    assert set(snap.credentials) == {"site-cert"}


def test_people_and_groups_are_read_for_authentication_and_access(server):
    jane = Person(full_name="Jane Doe/Sales/Acme", first_name="Jane", last_name="Doe", short_name="jdoe", internet_address="jane@acme.test")
    jane.set_internet_password("s3cret")
    jane.save()
    Group.objects.create(name="Mail Admins", group_type="acl_only", members=["Jane Doe/Sales/Acme"])
    snap = load_snapshot("mail1/Acme")
    person = snap.person_by_address("JANE@acme.test")
    assert (person.full_name, person.short_name) == ("Jane Doe/Sales/Acme", "jdoe")
    assert check_password("s3cret", person.password_hash)
    assert snap.groups == {"mail admins": ("acl_only", ("Jane Doe/Sales/Acme",))}


def fill_directory(count):
    ConfigurationSettings.objects.create()
    for index in range(count):
        cert = credentials(f"cert-{index}")
        site(f"Site {index}", index, tls_credentials=cert)
        Person.objects.create(full_name=f"User {index}/Acme", internet_address=f"user{index}@acme.test")
        Group.objects.create(name=f"Group {index}", members=[f"User {index}/Acme"])


@pytest.mark.parametrize("count", [pytest.param(1, id="one of each"), pytest.param(20, id="twenty of each")])
def test_loading_takes_the_same_few_queries_however_big_the_directory(server, count, django_assert_num_queries):
    fill_directory(count)
    # revision, server, configuration, sites (hosting filter, then the sites with credentials), people, groups,
    # and the savepoint the atomic block opens inside the test's transaction (two statements).
    with django_assert_num_queries(9):
        snap = load_snapshot("mail1/Acme")
    assert (len(snap.sites), len(snap.people), len(snap.credentials)) == (count, count, count)


# --- Directory revision -------------------------------------------------------------------------


def test_the_revision_is_zero_before_any_directory_change():
    assert current_revision() == 0


@pytest.mark.parametrize("make", [
    pytest.param(lambda: Server.objects.create(name="mail2/Acme", host_name="mail2.acme.test"), id="saving a Server document"),
    pytest.param(lambda: ConfigurationSettings.objects.create(), id="saving a Configuration Settings document"),
    pytest.param(lambda: InternetSite.objects.create(name="Acme SMTP"), id="saving an Internet Site document"),
    pytest.param(lambda: Person.objects.create(full_name="Jane Doe/Acme"), id="saving a Person document"),
    pytest.param(lambda: Group.objects.create(name="Admins"), id="saving a Group document"),
    pytest.param(lambda: credentials("cert"), id="saving TLS credentials"),
])
def test_every_directory_document_bumps_the_revision(make):
    before = current_revision()
    document = make()
    after_save = current_revision()
    document.delete()
    assert before < after_save < current_revision()


def test_the_audit_trail_does_not_bump_the_revision():
    before = current_revision()
    AuditEntry.objects.create(actor="test", action="create", document_type="server", object_id="1", object_repr="x")
    assert current_revision() == before


def test_the_revision_check_is_one_query(server, django_assert_num_queries):
    with django_assert_num_queries(1):
        current_revision()


def test_refreshed_keeps_the_snapshot_while_nothing_changes(server, django_assert_num_queries):
    snap = load_snapshot("mail1/Acme")
    with django_assert_num_queries(1):
        assert refreshed(snap) is snap


def test_a_change_saved_from_the_console_reaches_a_new_snapshot(server, editor):
    snap = load_snapshot("mail1/Acme")
    assert snap.revision == current_revision() and snap.person_by_address("bob@acme.test") is None
    form = PersonForm(data={"full_name": "Bob Smith/Acme", "internet_address": "bob@acme.test", "internet_password": "pw-1234"})
    assert form.is_valid(), form.errors
    audit.save_document(form, editor)
    fresh = refreshed(snap)
    assert fresh.revision > snap.revision
    assert fresh.person_by_address("bob@acme.test").full_name == "Bob Smith/Acme"
    assert policy.recipient_decision(fresh, policy.SessionFacts("192.0.2.10", 25, "tcp", "127.0.0.1"), "bob@acme.test", 0).kind == "local"


def test_a_deleted_document_reaches_a_new_snapshot(server, editor):
    ConfigurationSettings.objects.create(server=server, max_recipients=3)
    snap = load_snapshot("mail1/Acme")
    audit.delete_document(server.own_configuration, editor)
    assert refreshed(snap).config.max_recipients == 100


def test_a_console_page_reuses_the_full_snapshot_until_a_document_is_saved(server):
    from smtpservice.store.snapshot import recent_snapshot

    jane = PersonForm({"full_name": "Jane Doe/Sales/Acme"})
    assert jane.is_valid()
    audit.save_document(jane, None)
    first = recent_snapshot(server.name)
    assert recent_snapshot(server.name) is first
    form = PersonForm({"full_name": "John Roe/Sales/Acme"})
    assert form.is_valid()
    audit.save_document(form, None)
    again = recent_snapshot(server.name)
    assert again is not first
    assert {person.full_name for person in again.people} == {"Jane Doe/Sales/Acme", "John Roe/Sales/Acme"}
    assert load_snapshot(server.name, people_and_groups=False).people == ()
