"""Findings 7 and 8 of the second audit: a site that accepts AUTH in clear text warns, in the console and
on import, as the Server document does; so does a Configuration Settings change that makes an existing
site do so; and the console says next to Enforce server access that anonymous sessions are not checked."""
import pytest

from directory import importexport
from directory.models import ConfigurationSettings, InternetSite, Server
from tests.directory.documents import REQUIRED, bound_form, make_server, save

pytestmark = pytest.mark.django_db


def warnings_of(form):
    assert form.is_valid(), form.errors.as_data()
    return [(field, code) for field, code, _message in form.warnings]


def site_form(instance=None, **changes):
    return bound_form(InternetSite, instance, **{**REQUIRED[InternetSite], **changes})


@pytest.mark.parametrize(("starttls", "warned"), [("enabled", True), ("disabled", True), ("required", False)])
def test_a_site_with_name_and_password_on_the_tcp_ip_port_warns_unless_starttls_is_required(starttls, warned):
    make_server(load_internet_sites="True")
    save(ConfigurationSettings, starttls_inbound=starttls)
    form = site_form(tcp_auth_name_password="True")
    assert (("tcp_auth_name_password", "cleartext_auth") in warnings_of(form)) is warned
    if warned:
        assert "mail1/Acme" in form.warnings[0][2]
    assert warnings_of(site_form(tcp_auth_name_password="False")) == []


def test_a_site_no_server_loads_yet_still_warns():
    form = site_form(tcp_auth_name_password="True")
    assert warnings_of(form) == [("tcp_auth_name_password", "cleartext_auth")]
    assert "the servers that will load this site" in form.warnings[0][2]


def test_importing_such_a_site_reports_the_warning():
    make_server(load_internet_sites="True")
    report = importexport.import_directory({"format": 1, "internet_sites": [{
        "name": "Acme SMTP", "type": "smtp_inbound", "tcp_auth_name_password": True,
    }]})
    assert report.errors == []
    assert [path for path, _message in report.warnings] == ["internet_sites[0].tcp_auth_name_password"]
    assert "passwords in clear text" in report.warnings[0][1]


def test_a_configuration_change_that_lets_an_existing_site_take_passwords_in_clear_warns():
    make_server(load_internet_sites="True")
    configuration = save(ConfigurationSettings, starttls_inbound="required")
    save(InternetSite, **REQUIRED[InternetSite], tcp_auth_name_password="True")

    form = bound_form(ConfigurationSettings, configuration, starttls_inbound="enabled")
    assert warnings_of(form) == [("starttls_inbound", "cleartext_auth_sites")]
    assert "Acme SMTP" in form.warnings[0][2]
    assert warnings_of(bound_form(ConfigurationSettings, configuration, starttls_inbound="required")) == []


def test_a_site_not_hosting_the_servers_of_the_settings_does_not_warn_there():
    make_server(load_internet_sites="True")
    make_server("mail2/Acme", "mail2.acme.test", load_internet_sites="True")
    save(InternetSite, **REQUIRED[InternetSite], servers="mail2/Acme", tcp_auth_name_password="True")
    own = bound_form(ConfigurationSettings, None, server="mail1/Acme", starttls_inbound="enabled")
    assert warnings_of(own) == []


def test_enforce_server_access_says_anonymous_sessions_are_not_checked():
    help_text = str(Server._meta.get_field("smtp_inbound_enforce_server_access").help_text)
    assert "Anonymous sessions are not checked" in help_text
    assert "can still send anonymously" in bound_form(Server)["smtp_inbound_enforce_server_access"].help_text
