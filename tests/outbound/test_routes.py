"""SMTP connection routes with their certificate options, in the console syntax, in JSON import and
export, and in the settings snapshot the router reads."""
import pytest

from directory import importexport
from directory.forms import ConfigurationSettingsForm
from directory.models import ConfigurationSettings, TlsPolicy
from smtpservice.core import outbound, policy
from smtpservice.store import snapshot
from tests.outbound.conftest import CONFIG_DEFAULTS, change

pytestmark = pytest.mark.django_db(transaction=True)


def form(routes):
    return ConfigurationSettingsForm(data={**CONFIG_DEFAULTS, "local_domains": "acme.test", "routes": routes})


@pytest.mark.parametrize(("text", "routes", "shown"), [
    ("partner.test 127.0.0.1:2626", [{"domain": "partner.test", "host": "127.0.0.1:2626"}], None),
    ("partner.test -> 127.0.0.1:2626 tls=verified ca=/etc/ssl/partner.pem",
     [{"domain": "partner.test", "host": "127.0.0.1:2626", "tls_policy": "verified", "ca_file": "/etc/ssl/partner.pem"}],
     None),
    ("*.beta.test mx.beta.test tls=opportunistic\nother.test mx.other.test tls=verified", [
        {"domain": "*.beta.test", "host": "mx.beta.test", "tls_policy": "opportunistic"},
        {"domain": "other.test", "host": "mx.other.test", "tls_policy": "verified"},
    ], None),
    ("*.beta.test mx.beta.test tls=any\nother.test mx.other.test tls=verify", [
        {"domain": "*.beta.test", "host": "mx.beta.test", "tls_policy": "opportunistic"},
        {"domain": "other.test", "host": "mx.other.test", "tls_policy": "verified"},
    ], "*.beta.test mx.beta.test tls=opportunistic\nother.test mx.other.test tls=verified"),
], ids=["plain", "verified-with-bundle", "policies", "older-words"])
def test_console_syntax_takes_a_tls_policy_and_a_ca_bundle(text, routes, shown):
    bound = form(text)
    assert bound.is_valid(), bound.errors
    assert bound.cleaned_data["routes"] == routes
    assert bound.fields["routes"].prepare_value(routes) == (shown or text.replace(" -> ", " "))


@pytest.mark.parametrize(("text", "code"), [
    ("partner.test 127.0.0.1 ca=relative/ca.pem", "invalid_route_ca_file"),
    ("partner.test 127.0.0.1 tls=maybe", "invalid_route_tls"),
    ("partner.test 127.0.0.1 tls=any ca=/etc/ssl/ca.pem", "route_ca_file_with_any"),
    ("partner.test 127.0.0.1 ca=/etc/ssl/ca.pem", "route_ca_file_with_any"),
    ("partner.test 127.0.0.1 verify", "invalid_route"),
    ("partner.test 127.0.0.1 port=25", "invalid_route"),
])
def test_bad_route_options_are_refused(text, code):
    bound = form(text)
    assert not bound.is_valid()
    assert [error.code for error in bound.errors.as_data()["routes"]] == [code]


def test_import_and_export_keep_the_options_and_the_two_key_form(configuration):
    routes = [
        {"domain": "partner.test", "host": "127.0.0.1:2626", "tls_policy": "verified", "ca_file": "/etc/ssl/partner.pem"},
        {"domain": "beta.test", "host": "mx.beta.test", "tls_policy": "opportunistic"},
        {"domain": "old.test", "host": "mx.old.test"},
    ]
    report = importexport.import_directory({"format": 1, "configurations": [{"server": "*", "routes": routes}]})
    assert report.errors == []
    assert ConfigurationSettings.objects.get().routes == routes
    assert importexport.export_directory()["configurations"][0]["routes"] == routes


def test_import_reads_the_older_tls_key_as_the_tls_policy(configuration):
    report = importexport.import_directory({"format": 1, "configurations": [{"server": "*", "routes": [
        {"domain": "beta.test", "host": "mx.beta.test", "tls": "any"},
        {"domain": "partner.test", "host": "127.0.0.1", "tls": "verify", "ca_file": "/etc/ssl/partner.pem"},
    ]}]})
    assert report.errors == []
    assert importexport.export_directory()["configurations"][0]["routes"] == [
        {"domain": "beta.test", "host": "mx.beta.test", "tls_policy": "opportunistic"},
        {"domain": "partner.test", "host": "127.0.0.1", "tls_policy": "verified", "ca_file": "/etc/ssl/partner.pem"},
    ]


def test_relay_tls_fields_are_imported_exported_and_checked(configuration):
    document = {"server": "*", "relay_host": "relay.acme.test", "relay_auth_allow_cleartext": True,
                "relay_tls_policy": "verified", "relay_ca_bundle": "/etc/ssl/relay.pem"}
    assert importexport.import_directory({"format": 1, "configurations": [document]}).errors == []
    exported = importexport.export_directory()["configurations"][0]
    assert {key: exported[key] for key in document} == document

    report = importexport.import_directory({"format": 1, "configurations": [
        {**document, "relay_tls_policy": "opportunistic"},
    ]})
    assert report.errors == [("configurations[0].relay_ca_bundle",
                              "A CA bundle is used only with the verified TLS policy: choose Verified, or remove the bundle.")]


def test_a_new_configuration_defaults_to_opportunistic_tls_and_no_clear_text_password():
    document = ConfigurationSettings()
    assert (document.relay_tls_policy, document.relay_auth_allow_cleartext) == ("opportunistic", False)
    assert policy.ConfigSnapshot().relay_tls_policy == outbound.OPPORTUNISTIC == TlsPolicy.OPPORTUNISTIC
    assert outbound.VERIFIED == TlsPolicy.VERIFIED


def test_import_names_a_bad_route_option(configuration):
    report = importexport.import_directory({"format": 1, "configurations": [
        {"server": "*", "routes": [{"domain": "partner.test", "host": "127.0.0.1", "tls": "never"}]},
    ]})
    assert report.errors == [("configurations[0].routes", "“never”: the TLS policy must be opportunistic or verified.")]


def test_the_router_reads_the_route_options_from_the_snapshot(alpha, configuration):
    change(configuration, routes="partner.test 127.0.0.1:2626 tls=verified ca=/etc/ssl/partner.pem\nbeta.test 127.0.0.1")
    assert snapshot.load_snapshot(alpha.name).config.routes == (
        policy.Route("partner.test", "127.0.0.1:2626", "verified", "/etc/ssl/partner.pem"),
        policy.Route("beta.test", "127.0.0.1", "opportunistic", ""),
    )
