"""Every default of every document, as the tables of spec section 1 give them."""
import pytest

from directory.forms import FORMS
from directory.models import ConfigurationSettings, Group, InternetSite, Person, Server
from tests.directory.documents import REQUIRED, form_data, make_server, save

# (document, field, default) in the order of spec section 1.
SPEC_DEFAULTS = [
    # 1.1 Server document: Basics
    (Server, "smtp_listener_enabled", True),
    (Server, "load_internet_sites", False),
    (Server, "listen_addresses", []),
    # Security
    (Server, "access_server", []),
    (Server, "not_access_server", []),
    (Server, "internet_authentication", "fewer"),
    # Ports > Internet Ports
    (Server, "tls_credentials", None),
    # Mail (SMTP Inbound)
    (Server, "smtp_inbound_tcp_port", 25),
    (Server, "smtp_inbound_tcp_status", "enabled"),
    (Server, "smtp_inbound_enforce_server_access", False),
    (Server, "smtp_inbound_tcp_auth_name_password", False),
    (Server, "smtp_inbound_tcp_auth_anonymous", True),
    (Server, "smtp_inbound_ssl_port", 465),
    (Server, "smtp_inbound_ssl_status", "disabled"),
    (Server, "smtp_inbound_ssl_auth_client_certificate", False),
    (Server, "smtp_inbound_ssl_auth_name_password", True),
    (Server, "smtp_inbound_ssl_auth_anonymous", True),
    # Mail (SMTP Outbound)
    (Server, "smtp_outbound_tcp_port", 25),
    (Server, "smtp_outbound_tcp_status", "enabled"),
    (Server, "smtp_outbound_ssl_port", 465),
    (Server, "smtp_outbound_ssl_status", "disabled"),
    # 1.2 Configuration Settings, Router/SMTP tab
    (ConfigurationSettings, "server", None),
    (ConfigurationSettings, "local_domains", []),
    (ConfigurationSettings, "smtp_outside_local_domain", True),
    (ConfigurationSettings, "relay_host", ""),
    (ConfigurationSettings, "relay_auth", "disabled"),
    (ConfigurationSettings, "relay_auth_name", ""),
    (ConfigurationSettings, "relay_auth_password", ""),
    (ConfigurationSettings, "routes", []),
    (ConfigurationSettings, "max_message_size_kb", 10240),
    (ConfigurationSettings, "max_recipients", 100),
    (ConfigurationSettings, "starttls_inbound", "enabled"),
    (ConfigurationSettings, "size_extension", True),
    (ConfigurationSettings, "pipelining", True),
    (ConfigurationSettings, "eightbitmime", False),
    (ConfigurationSettings, "help_command", True),
    (ConfigurationSettings, "vrfy_command", False),
    (ConfigurationSettings, "anti_relay_enforcement", "external"),
    (ConfigurationSettings, "internal_hosts", ["127.0.0.0/8", "::1"]),
    (ConfigurationSettings, "anti_relay_exclude_hosts", []),
    (ConfigurationSettings, "authenticated_users_relay", True),
    (ConfigurationSettings, "relay_allow_domains", []),
    (ConfigurationSettings, "relay_deny_domains", []),
    (ConfigurationSettings, "connection_allow_hosts", []),
    (ConfigurationSettings, "connection_deny_hosts", []),
    (ConfigurationSettings, "error_limit", 10),
    # 1.3 Internet Site document of type SMTP Inbound
    (InternetSite, "site_type", "smtp_inbound"),
    (InternetSite, "mapped_addresses", ["*"]),
    (InternetSite, "servers", ["*"]),
    (InternetSite, "tcp_auth_name_password", False),
    (InternetSite, "tcp_auth_anonymous", True),
    (InternetSite, "ssl_auth_client_certificate", False),
    (InternetSite, "ssl_auth_name_password", True),
    (InternetSite, "ssl_auth_anonymous", True),
    (InternetSite, "tls_credentials", None),
    # 1.4 Person and Group
    (Person, "internet_password", ""),
    (Group, "group_type", "multi_purpose"),
    (Group, "members", []),
]

table = pytest.mark.parametrize(
    ("model", "field", "default"), SPEC_DEFAULTS, ids=[f"{m.__name__}.{f}" for m, f, _ in SPEC_DEFAULTS]
)


@table
def test_a_new_document_has_the_spec_default(model, field, default):
    assert getattr(model(), field) == default


@table
def test_a_new_document_saved_from_the_untouched_console_form_keeps_the_spec_default(db, model, field, default):
    saved = save(model, **REQUIRED[model])
    saved.refresh_from_db()
    assert getattr(saved, field) == default


def test_lists_defaults_are_not_shared_between_documents():
    first, second = ConfigurationSettings(), ConfigurationSettings()
    first.internal_hosts.append("192.0.2.0/24")
    assert second.internal_hosts == ["127.0.0.0/8", "::1"]


def test_empty_local_domains_mean_the_servers_host_domain(db):
    server = make_server(host_name="mail1.acme.test")
    assert ConfigurationSettings().effective_local_domains(server) == ["acme.test"]
    assert ConfigurationSettings(local_domains=["acme.example"]).effective_local_domains(server) == ["acme.example"]


def test_a_server_organization_is_the_last_component_of_its_name():
    assert Server(name="mail1/East/Acme").organization == "Acme"


def test_a_new_site_proposes_the_organization_of_the_servers(db):
    make_server(name="mail1/Acme")
    assert form_data(InternetSite)["organization"] == "Acme"
    assert FORMS[InternetSite]().initial["organization"] == "Acme"


def test_a_default_configuration_is_shown_as_star(db):
    default = save(ConfigurationSettings)
    assert str(default) == "* (default)"
    assert default.server_label == "*"


def test_a_server_without_its_own_configuration_uses_the_default_one(db):
    server = make_server()
    default = save(ConfigurationSettings)
    assert server.configuration() == default
    own = save(ConfigurationSettings, server="mail1/Acme", max_recipients=5)
    assert server.configuration() == own


@pytest.mark.django_db
def test_a_site_naming_a_server_that_does_not_exist_warns():
    from directory.models import InternetSite, Server

    Server.objects.create(name="mail1/Acme", host_name="mail1.acme.test")
    site = InternetSite(name="Acme SMTP", servers=["mail1/Acme", "mail9/Acme"])
    assert [(field, code) for field, code, _message in site.warnings()] == [("servers", "unknown_server")]
    assert "mail9/Acme" in site.warnings()[0][2] and "mail1/Acme" not in site.warnings()[0][2]
    assert InternetSite(name="Any", servers=["*"]).warnings() == []
