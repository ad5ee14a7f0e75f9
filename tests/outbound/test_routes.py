"""SMTP connection routes with their certificate options, in the console syntax, in JSON import and
export, and in the settings snapshot the router reads."""
import pytest

from directory import importexport
from directory.forms import ConfigurationSettingsForm
from directory.models import ConfigurationSettings
from smtpservice.core import policy
from smtpservice.store import snapshot
from tests.outbound.conftest import CONFIG_DEFAULTS, change

pytestmark = pytest.mark.django_db(transaction=True)


def form(routes):
    return ConfigurationSettingsForm(data={**CONFIG_DEFAULTS, "local_domains": "acme.test", "routes": routes})


@pytest.mark.parametrize(("text", "routes"), [
    ("partner.test 127.0.0.1:2626", [{"domain": "partner.test", "host": "127.0.0.1:2626"}]),
    ("partner.test -> 127.0.0.1:2626 ca=/etc/ssl/partner.pem",
     [{"domain": "partner.test", "host": "127.0.0.1:2626", "ca_file": "/etc/ssl/partner.pem"}]),
    ("*.beta.test mx.beta.test tls=any\nother.test mx.other.test tls=verify", [
        {"domain": "*.beta.test", "host": "mx.beta.test", "tls": "any"},
        {"domain": "other.test", "host": "mx.other.test", "tls": "verify"},
    ]),
])
def test_console_syntax_takes_a_ca_bundle_or_any_certificate(text, routes):
    bound = form(text)
    assert bound.is_valid(), bound.errors
    assert bound.cleaned_data["routes"] == routes
    assert bound.fields["routes"].prepare_value(routes) == text.replace(" -> ", " ")


@pytest.mark.parametrize(("text", "code"), [
    ("partner.test 127.0.0.1 ca=relative/ca.pem", "invalid_route_ca_file"),
    ("partner.test 127.0.0.1 tls=maybe", "invalid_route_tls"),
    ("partner.test 127.0.0.1 tls=any ca=/etc/ssl/ca.pem", "route_ca_file_with_any"),
    ("partner.test 127.0.0.1 verify", "invalid_route"),
    ("partner.test 127.0.0.1 port=25", "invalid_route"),
])
def test_bad_route_options_are_refused(text, code):
    bound = form(text)
    assert not bound.is_valid()
    assert [error.code for error in bound.errors.as_data()["routes"]] == [code]


def test_import_and_export_keep_the_options_and_the_two_key_form(configuration):
    routes = [
        {"domain": "partner.test", "host": "127.0.0.1:2626", "ca_file": "/etc/ssl/partner.pem"},
        {"domain": "beta.test", "host": "mx.beta.test", "tls": "any"},
        {"domain": "old.test", "host": "mx.old.test"},
    ]
    report = importexport.import_directory({"format": 1, "configurations": [{"server": "*", "routes": routes}]})
    assert report.errors == []
    assert ConfigurationSettings.objects.get().routes == routes
    assert importexport.export_directory()["configurations"][0]["routes"] == routes


def test_import_names_a_bad_route_option(configuration):
    report = importexport.import_directory({"format": 1, "configurations": [
        {"server": "*", "routes": [{"domain": "partner.test", "host": "127.0.0.1", "tls": "never"}]},
    ]})
    assert report.errors == [("configurations[0].routes", "“never”: tls must be verify or any.")]


def test_the_router_reads_the_route_options_from_the_snapshot(alpha, configuration):
    change(configuration, routes="partner.test 127.0.0.1:2626 ca=/etc/ssl/partner.pem\nbeta.test 127.0.0.1")
    assert snapshot.load_snapshot(alpha.name).config.routes == (
        policy.Route("partner.test", "127.0.0.1:2626", "verify", "/etc/ssl/partner.pem"),
        policy.Route("beta.test", "127.0.0.1", "verify", ""),
    )
