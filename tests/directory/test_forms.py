"""Every validation rule of the document forms: errors block a save on the right field, warnings ask first."""
import json
from urllib.parse import urlencode

import pytest
from django.contrib.auth.hashers import identify_hasher
from django.db import connection
from django.http import QueryDict

from directory import tls
from directory.forms import FORMS
from directory.models import AuditEntry, ConfigurationSettings, Group, InternetSite, Person, Server, TLSCredentials
from tests.directory.documents import JANE, REQUIRED, bound_form, form_data, make_credentials, make_server, save

SITE_NOT_ENABLED = "This site is not enabled on the server."
PORT_FIELDS = ["smtp_inbound_tcp_port", "smtp_inbound_ssl_port", "smtp_outbound_tcp_port", "smtp_outbound_ssl_port"]


def error_codes(form):
    """``{field: [code, ...]}`` of an invalid form."""
    assert not form.is_valid()
    return {field: [error.code for error in errors] for field, errors in form.errors.as_data().items()}


def warning_codes(form, unconfirmed=False):
    """``[(field, code), ...]`` of a valid form's warnings, or of those not yet confirmed."""
    assert form.is_valid(), form.errors.as_data()
    return [(field, code) for field, code, _message in (form.unconfirmed_warnings if unconfirmed else form.warnings)]


def new(model, **changes):
    """The form of a new document with its required fields filled in and ``changes`` typed."""
    return bound_form(model, **{**REQUIRED[model], **changes})


def edit(instance, **changes):
    return bound_form(type(instance), instance, **changes)


# Ports


@pytest.mark.parametrize("field", PORT_FIELDS)
@pytest.mark.parametrize(("port", "code"), [(0, "min_value"), (65536, "max_value"), (-1, "min_value")])
def test_a_port_outside_1_to_65535_is_refused(db, field, port, code):
    form = new(Server, **{field: port})
    assert error_codes(form) == {field: [code]}
    assert form.errors[field] == ["Enter a port number from 1 to 65535."]


@pytest.mark.parametrize("field", PORT_FIELDS)
@pytest.mark.parametrize("port", [1, 65535])
def test_the_ends_of_the_port_range_are_accepted(db, field, port):
    form = new(Server, **{field: port})
    assert form.is_valid(), form.errors
    assert getattr(form.save(), field) == port


def test_the_inbound_ssl_port_must_differ_from_the_tcp_ip_port(db):
    form = new(Server, smtp_inbound_tcp_port=587, smtp_inbound_ssl_port=587)
    assert error_codes(form) == {"smtp_inbound_ssl_port": ["ssl_port_equals_tcp_port"]}
    assert "587" in form.errors["smtp_inbound_ssl_port"][0]


def test_outbound_ports_may_be_equal(db):
    assert new(Server, smtp_outbound_tcp_port=2525, smtp_outbound_ssl_port=2525).is_valid()


# SSL port and TLS credentials


def test_the_ssl_port_cannot_be_enabled_without_tls_credentials(db):
    form = new(Server, smtp_inbound_ssl_status="enabled")
    assert error_codes(form) == {"smtp_inbound_ssl_status": ["ssl_without_credentials"]}


def test_the_ssl_port_can_be_enabled_with_the_servers_credentials(db):
    make_credentials("mail1-cert", "mail1.acme.test")
    assert new(Server, smtp_inbound_ssl_status="enabled", tls_credentials="mail1-cert").is_valid()


def test_the_ssl_port_can_use_the_credentials_of_a_hosting_site_when_sites_are_loaded(db):
    make_credentials("site-cert", "smtp.acme.test")
    save(InternetSite, name="Acme SMTP", servers="mail1/Acme", tls_credentials="site-cert")
    assert new(Server, load_internet_sites="True", smtp_inbound_ssl_status="enabled").is_valid()


@pytest.mark.parametrize(
    ("load_internet_sites", "site_servers", "site_credentials"),
    [
        ("False", "mail1/Acme", "site-cert"),  # sites not loaded: only the Server document counts
        ("True", "mail2/Acme", "site-cert"),  # the site hosts another server
        ("True", "mail1/Acme", ""),  # the hosting site has no credentials
    ],
)
def test_site_credentials_count_only_from_a_hosting_site_when_sites_are_loaded(
    db, load_internet_sites, site_servers, site_credentials
):
    make_credentials("site-cert", "smtp.acme.test")
    save(InternetSite, name="Acme SMTP", servers=site_servers, tls_credentials=site_credentials)
    form = new(Server, load_internet_sites=load_internet_sites, smtp_inbound_ssl_status="enabled")
    assert error_codes(form) == {"smtp_inbound_ssl_status": ["ssl_without_credentials"]}


def test_credentials_must_cover_the_host_name(db):
    make_credentials("other-cert", "other.acme.test")
    form = new(Server, host_name="mail1.acme.test", tls_credentials="other-cert")
    assert error_codes(form) == {"tls_credentials": ["host_not_covered"]}
    assert "mail1.acme.test" in form.errors["tls_credentials"][0]


def test_an_unknown_credentials_name_is_refused(db):
    assert error_codes(new(Server, tls_credentials="no-such-cert")) == {"tls_credentials": ["invalid_choice"]}


def test_an_unchanged_edit_keeps_the_documents_referred_to(db):
    make_credentials("mail1-cert", "mail1.acme.test")
    server = make_server(tls_credentials="mail1-cert")
    own = save(ConfigurationSettings, server="mail1/Acme")
    assert save(Server, server).tls_credentials.name == "mail1-cert"
    assert save(ConfigurationSettings, own).server == server


# Warnings of the Server document


def test_a_default_server_has_no_warning(db):
    assert warning_codes(new(Server)) == []


def test_internet_sites_enabled_without_a_hosting_site_warns_this_site_is_not_enabled(db):
    form = new(Server, load_internet_sites="True")
    assert warning_codes(form) == [("load_internet_sites", "no_inbound_site")]
    assert SITE_NOT_ENABLED in form.warnings[0][2]
    assert form.save().load_internet_sites


@pytest.mark.parametrize(
    ("site_servers", "warned"),
    [("mail2/Acme", True), ("*", False), ("mail1/Acme", False), ("CN=MAIL1/O=acme", False), ("mail2/Acme\nmail1/Acme", False)],
)
def test_a_site_hosting_the_server_silences_the_no_inbound_site_warning(db, site_servers, warned):
    save(InternetSite, name="Acme SMTP", servers=site_servers)
    codes = warning_codes(new(Server, load_internet_sites="True"))
    assert (("load_internet_sites", "no_inbound_site") in codes) is warned


def test_a_site_does_not_count_while_internet_sites_are_disabled(db):
    assert warning_codes(new(Server, load_internet_sites="False")) == []


def test_a_non_standard_inbound_port_warns(db):
    form = new(Server, smtp_inbound_tcp_port=2525)
    assert warning_codes(form) == [("smtp_inbound_tcp_port", "non_standard_port")]
    assert "2525" in form.warnings[0][2]


@pytest.mark.parametrize(
    ("default_starttls", "own_starttls", "warned"),
    [
        (None, None, True),  # no Configuration Settings at all: STARTTLS is Enabled, not Required
        ("enabled", None, True),
        ("disabled", None, True),
        ("required", None, False),
        ("enabled", "required", False),  # the server's own configuration wins over the default
        ("required", "enabled", True),
        ("required", "disabled", True),
    ],
)
def test_name_and_password_on_the_tcp_ip_port_warns_unless_starttls_is_required(db, default_starttls, own_starttls, warned):
    server = make_server()
    if default_starttls:
        save(ConfigurationSettings, starttls_inbound=default_starttls)
    if own_starttls:
        save(ConfigurationSettings, server="mail1/Acme", starttls_inbound=own_starttls)
    codes = warning_codes(edit(server, smtp_inbound_tcp_auth_name_password="True"))
    assert (("smtp_inbound_tcp_auth_name_password", "cleartext_auth") in codes) is warned


def test_name_and_password_only_after_starttls_does_not_warn(db):
    assert warning_codes(new(Server, smtp_inbound_tcp_auth_name_password="False")) == []


def test_the_default_configuration_warns_about_servers_with_cleartext_name_and_password(db):
    make_server("mail1/Acme", smtp_inbound_tcp_auth_name_password="True")
    make_server("mail2/Acme", "mail2.acme.test")
    form = new(ConfigurationSettings, starttls_inbound="enabled")
    assert warning_codes(form) == [("starttls_inbound", "cleartext_auth")]
    assert "mail1/Acme" in form.warnings[0][2] and "mail2/Acme" not in form.warnings[0][2]
    assert warning_codes(new(ConfigurationSettings, starttls_inbound="required")) == []


def test_a_server_with_its_own_configuration_does_not_concern_the_default_one(db):
    make_server("mail1/Acme", smtp_inbound_tcp_auth_name_password="True")
    save(ConfigurationSettings, server="mail1/Acme", starttls_inbound="required")
    assert warning_codes(new(ConfigurationSettings, starttls_inbound="enabled")) == []


def test_no_anti_relay_enforcement_warns_of_an_open_relay(db):
    assert warning_codes(new(ConfigurationSettings, anti_relay_enforcement="none")) == [("anti_relay_enforcement", "open_relay")]


def test_a_site_with_every_authentication_option_off_warns(db):
    form = new(
        InternetSite, tcp_auth_name_password="False", tcp_auth_anonymous="False", ssl_auth_client_certificate="False",
        ssl_auth_name_password="False", ssl_auth_anonymous="False",
    )
    assert warning_codes(form) == [("tcp_auth_anonymous", "all_options_off")]
    assert SITE_NOT_ENABLED in form.warnings[0][2]


def test_groups_that_contain_each_other_warn(db):
    save(Group, name="B", members="A")
    form = new(Group, name="A", members="B\nJane Doe/Sales/Acme")
    assert warning_codes(form) == [("members", "cycle")]
    assert "A > B > A" in form.warnings[0][2]


# Duplicate names


@pytest.mark.parametrize(
    ("model", "first", "second", "field", "code"),
    [
        (Server, None, {"name": "mail1/Acme", "host_name": "mail2.acme.test"}, "name", "unique"),
        (Server, None, {"name": "MAIL1/acme", "host_name": "mail2.acme.test"}, "name", "unique"),
        (Server, None, {"name": "CN=mail1/O=Acme", "host_name": "mail2.acme.test"}, "name", "unique"),
        (InternetSite, {}, {}, "name", "unique"),
        (InternetSite, {}, {"name": "ACME smtp"}, "name", "unique"),
        (Person, {}, {}, "full_name", "unique"),
        (Person, {}, {"full_name": "CN=jane doe/OU=sales/O=acme"}, "full_name", "unique"),
        (
            Person, {"internet_address": "jane@acme.test"},
            {"full_name": "Jane Roe/Acme", "internet_address": "Jane@ACME.test"}, "internet_address", "unique",
        ),
        (Group, {}, {}, "name", "unique"),
        (Group, {}, {"name": "MAIL ADMINS"}, "name", "unique"),
        (TLSCredentials, {"name": "mail1-cert"}, {"name": "mail1-cert"}, "name", "unique"),
        (TLSCredentials, {"name": "mail1-cert"}, {"name": "Mail1-Cert"}, "name", "unique"),
        (ConfigurationSettings, {"server": "mail1/Acme"}, {"server": "mail1/Acme"}, "server", "unique"),
        (ConfigurationSettings, {}, {}, "server", "duplicate_default"),
    ],
)
def test_a_second_document_of_the_same_name_is_refused(db, model, first, second, field, code):
    make_server("mail1/Acme", "mail1.acme.test")
    if model is TLSCredentials:
        pem = dict(zip(("certificate_pem", "private_key_pem"), tls.generate_self_signed("mail1.acme.test")))
        first, second = {**first, **pem}, {**second, **pem}
    required = REQUIRED.get(model, {})
    if first is not None:
        save(model, **required, **first)
    assert error_codes(bound_form(model, **{**required, **second})) == {field: [code]}


def test_renaming_a_document_to_its_own_name_in_another_case_is_allowed(db):
    server = make_server("mail1/Acme")
    assert edit(server, name="MAIL1/Acme").is_valid()


# Bad entries in list and host fields


@pytest.mark.parametrize(
    ("model", "field", "value", "code"),
    [
        (Server, "listen_addresses", "192.0.2.300", "invalid_ip"),
        (Server, "listen_addresses", "mail1.acme.test", "invalid_ip"),
        (Server, "access_server", "Jane//Acme", "invalid_name"),
        (Server, "access_server", "*/", "invalid_name"),
        (Server, "access_server", "*/Sales//Acme", "invalid_name"),
        (Server, "not_access_server", "/Acme", "invalid_name"),
        (Server, "host_name", "mail_1.acme.test", "invalid_host"),
        (Server, "name", "mail1", "invalid_name"),
        (ConfigurationSettings, "local_domains", "localhost", "invalid_domain"),
        (ConfigurationSettings, "local_domains", "acme_test.example", "invalid_domain"),
        (ConfigurationSettings, "internal_hosts", "10.0.0.1/8", "invalid_host"),
        (ConfigurationSettings, "internal_hosts", "bad_host", "invalid_host"),
        (ConfigurationSettings, "anti_relay_exclude_hosts", "relay.acme.test", "invalid_cidr"),
        (ConfigurationSettings, "anti_relay_exclude_hosts", "192.0.2.0/33", "invalid_cidr"),
        (ConfigurationSettings, "connection_allow_hosts", "300.1.1.1", "invalid_host"),
        (ConfigurationSettings, "connection_allow_hosts", "-bad.acme.test", "invalid_host"),
        (ConfigurationSettings, "connection_deny_hosts", "2001:db8::/129", "invalid_host"),
        (ConfigurationSettings, "connection_deny_hosts", "spam..example", "invalid_host"),
        (ConfigurationSettings, "relay_allow_domains", "partner", "invalid_domain"),
        (ConfigurationSettings, "relay_deny_domains", "*.-bad.test", "invalid_domain"),
        (ConfigurationSettings, "relay_host", "relay.acme.test:99999", "invalid_host_port"),
        (ConfigurationSettings, "relay_host", "relay.acme.test:smtp", "invalid_host_port"),
        (ConfigurationSettings, "relay_host", "relay_1.acme.test", "invalid_host"),
        (InternetSite, "mapped_addresses", "bad_host!", "invalid_host"),
        (InternetSite, "servers", "mail1", "invalid_name"),
        (Group, "members", "Jane//Acme", "invalid_name"),
        (Group, "members", "*/", "invalid_name"),
    ],
)
def test_a_bad_entry_is_refused_and_named(db, model, field, value, code):
    form = new(model, **{field: value})
    assert error_codes(form) == {field: [code]}
    assert value in form.errors[field][0]


@pytest.mark.parametrize(
    ("route", "code", "named"),
    [
        ("partner.test 127.0.0.1:70000", "invalid_host_port", "127.0.0.1:70000"),
        ("partner_test 127.0.0.1", "invalid_domain", "partner_test"),
        ("partner.test", "invalid_route", "partner.test"),
        ("partner.test relay.partner.test extra", "invalid_route", "partner.test relay.partner.test extra"),
    ],
)
def test_a_bad_route_is_refused_and_named(db, route, code, named):
    form = new(ConfigurationSettings, routes=f"acme.example 127.0.0.1\n{route}")
    assert error_codes(form) == {"routes": [code]}
    assert named in form.errors["routes"][0]


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        (Server, "listen_addresses", "192.0.2.25, 2001:db8::25"),
        (Server, "access_server", "*\n*/Sales/Acme\nCN=Jane Doe/OU=Sales/O=Acme\nMail Admins"),
        (ConfigurationSettings, "local_domains", "acme.test\n*.acme.test\n.acme.example"),
        (ConfigurationSettings, "internal_hosts", "127.0.0.0/8, ::1, 192.0.2.7, mail.acme.test"),
        (ConfigurationSettings, "anti_relay_exclude_hosts", "192.0.2.0/24\n2001:db8::/32"),
        (ConfigurationSettings, "connection_deny_hosts", "198.51.100.0/24, spam.example"),
        (ConfigurationSettings, "relay_host", "relay.acme.test:2525"),
        (ConfigurationSettings, "relay_host", "[2001:db8::1]:2525"),
        (ConfigurationSettings, "routes", "partner.test 127.0.0.1:2626\n*.partner.test -> relay.partner.test"),
        (InternetSite, "mapped_addresses", "*\n192.0.2.25\nsmtp.acme.test"),
        (Group, "members", "Jane Doe/Sales/Acme\n*/Sales/Acme\nOther Group"),
    ],
)
def test_good_entries_are_accepted(db, model, field, value):
    form = new(model, **{field: value})
    assert form.is_valid(), form.errors


def test_every_bad_entry_of_a_list_is_named(db):
    form = new(ConfigurationSettings, internal_hosts="127.0.0.0/8\nbad_host\n10.0.0.1/8")
    messages = form.errors["internal_hosts"]
    assert len(messages) == 2
    assert "bad_host" in messages[0] and "10.0.0.1/8" in messages[1]


def test_routes_are_saved_as_domain_and_host(db):
    saved = save(ConfigurationSettings, routes="partner.test 127.0.0.1:2626")
    assert saved.routes == [{"domain": "partner.test", "host": "127.0.0.1:2626"}]


# Configuration Settings rules


@pytest.mark.parametrize("relay_auth", ["required", "enabled"])
def test_relay_authentication_needs_a_relay_host(db, relay_auth):
    form = new(ConfigurationSettings, relay_auth=relay_auth, relay_auth_name="mailer")
    assert error_codes(form) == {"relay_auth": ["relay_auth_without_host"]}
    assert new(ConfigurationSettings, relay_auth=relay_auth, relay_auth_name="mailer", relay_host="relay.acme.test").is_valid()


def test_relay_authentication_needs_a_name(db):
    form = new(ConfigurationSettings, relay_auth="required", relay_host="relay.acme.test")
    assert error_codes(form) == {"relay_auth_name": ["relay_auth_without_name"]}


@pytest.mark.parametrize(("value", "code"), [(0, "min_value"), (10001, "max_value")])
def test_max_recipients_outside_1_to_10000_is_refused(db, value, code):
    assert error_codes(new(ConfigurationSettings, max_recipients=value)) == {"max_recipients": [code]}


@pytest.mark.parametrize("value", [1, 10000])
def test_max_recipients_ends_are_accepted(db, value):
    assert save(ConfigurationSettings, max_recipients=value).max_recipients == value


def test_the_relay_password_is_kept_when_left_blank(db):
    config = save(
        ConfigurationSettings, relay_host="relay.acme.test", relay_auth="required", relay_auth_name="mailer",
        relay_auth_password="s3cret-relay",
    )
    edited = save(ConfigurationSettings, config, max_recipients=50)
    assert edited.relay_auth_password == "s3cret-relay"
    assert "s3cret-relay" not in FORMS[ConfigurationSettings](instance=edited).as_p()


# Person: the Internet password


def raw_rows(table):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 (our own table name)
        return repr(cursor.fetchall())


def test_the_internet_password_is_stored_only_as_a_hash(db):
    person = save(Person, full_name=JANE, internet_password="Correct-Horse-9")
    person.refresh_from_db()
    assert person.check_internet_password("Correct-Horse-9")
    assert not person.check_internet_password("correct-horse-9")
    assert identify_hasher(person.internet_password).algorithm == "md5"  # the tests' fast hasher
    assert "Correct-Horse-9" not in raw_rows(Person._meta.db_table)
    assert "Correct-Horse-9" not in json.dumps(list(AuditEntry.objects.values("changes", "snapshot")))
    assert "Correct-Horse-9" not in FORMS[Person](instance=person).as_p()
    assert person.internet_password not in FORMS[Person](instance=person).as_p()


def test_a_blank_internet_password_keeps_the_current_one(db):
    person = save(Person, full_name=JANE, internet_password="Correct-Horse-9")
    stored = person.internet_password
    edited = save(Person, person, first_name="Jane")
    edited.refresh_from_db()
    assert edited.internet_password == stored
    assert edited.check_internet_password("Correct-Horse-9")


def test_a_new_internet_password_replaces_the_old_one(db):
    person = save(Person, full_name=JANE, internet_password="Correct-Horse-9")
    edited = save(Person, person, internet_password="Battery-Staple-7")
    assert edited.check_internet_password("Battery-Staple-7")
    assert not edited.check_internet_password("Correct-Horse-9")


def test_clear_removes_the_internet_password(db):
    person = save(Person, full_name=JANE, internet_password="Correct-Horse-9")
    cleared = save(Person, person, clear_internet_password="on")
    cleared.refresh_from_db()
    assert not cleared.has_internet_password
    assert not cleared.check_internet_password("Correct-Horse-9")
    assert not cleared.check_internet_password("")


def test_a_person_without_a_password_cannot_authenticate(db):
    person = save(Person, full_name=JANE)
    assert not person.has_internet_password
    assert not person.check_internet_password("")


def test_the_internet_address_is_stored_in_lower_case_and_blank_means_none(db):
    assert save(Person, full_name=JANE, internet_address="Jane@ACME.test").internet_address == "jane@acme.test"
    assert save(Person, full_name="John Doe/Acme").internet_address is None
    assert save(Person, full_name="Jim Doe/Acme").internet_address is None


# TLS credentials form


def test_the_tls_form_keeps_the_stored_key_when_the_key_field_is_blank(db):
    credentials = make_credentials("mail1-cert", "mail1.acme.test")
    stored_key = credentials.private_key_pem
    form = edit(credentials, name="mail1-certificate")
    assert form["private_key_pem"].value() in (None, "")
    assert "PRIVATE KEY" not in form.as_p()
    assert form.is_valid(), form.errors
    saved = form.save()
    saved.refresh_from_db()
    assert saved.name == "mail1-certificate" and saved.private_key_pem == stored_key


def test_a_new_tls_document_needs_a_key(db):
    certificate_pem, _key = tls.generate_self_signed("mail1.acme.test")
    form = bound_form(TLSCredentials, name="mail1-cert", certificate_pem=certificate_pem, private_key_pem="")
    assert error_codes(form) == {"private_key_pem": ["required"]}


def test_a_new_certificate_with_a_blank_key_must_match_the_stored_key(db):
    credentials = make_credentials("mail1-cert", "mail1.acme.test")
    other_pem, _other_key = tls.generate_self_signed("mail1.acme.test")
    assert error_codes(edit(credentials, certificate_pem=other_pem)) == {"private_key_pem": ["key_mismatch"]}


# Warnings the admin confirms


def test_a_warning_is_confirmed_with_save_anyway(db):
    form = new(Server, smtp_inbound_tcp_port=2525)
    assert warning_codes(form, unconfirmed=True) == [("smtp_inbound_tcp_port", "non_standard_port")]
    assert "Senders try port 25" in form.fields["smtp_inbound_tcp_port"].help_text
    form.ask_confirmation()
    assert form["confirm_warnings"].value() == "non_standard_port"
    assert 'value="non_standard_port"' in str(form["confirm_warnings"])

    confirmed = FORMS[Server](form.data)
    assert warning_codes(confirmed, unconfirmed=True) == []
    assert confirmed.save().smtp_inbound_tcp_port == 2525


def test_a_warning_not_yet_shown_still_needs_confirming(db):
    form = new(Server, smtp_inbound_tcp_port=2525)
    assert form.is_valid()
    form.ask_confirmation()
    changed = FORMS[Server]({**form.data, "smtp_inbound_tcp_auth_name_password": "True"})
    assert warning_codes(changed, unconfirmed=True) == [("smtp_inbound_tcp_auth_name_password", "cleartext_auth")]
    changed.ask_confirmation()
    assert changed.data["confirm_warnings"] == "cleartext_auth,non_standard_port"
    assert warning_codes(FORMS[Server](changed.data), unconfirmed=True) == []


def test_confirmation_works_on_a_posted_query_dict(db):
    posted = QueryDict(urlencode(form_data(Server, **REQUIRED[Server], load_internet_sites="True")))
    form = FORMS[Server](posted)
    assert warning_codes(form, unconfirmed=True) == [("load_internet_sites", "no_inbound_site")]
    form.ask_confirmation()
    assert posted.get("confirm_warnings") == ""
    assert warning_codes(FORMS[Server](form.data), unconfirmed=True) == []


def test_a_form_with_errors_shows_no_warnings(db):
    form = new(Server, smtp_inbound_tcp_port=2525, smtp_inbound_ssl_port=2525)
    assert not form.is_valid()
    assert form.warnings == []
