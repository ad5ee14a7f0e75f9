"""Host names in host lists (finding 2 of the second audit): Domino's matching of a resolved client
name, which entries make the listener look names up, and the resolver itself on this machine."""
import asyncio
import html
import time

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from directory import models
from directory.validators import validate_host_entry
from smtpservice.core import policy
from smtpservice.listener import resolve
from tests.smtpservice.conftest import save
from tests.smtpservice.test_policy import EXTERNAL_IP, facts, snapshot


@pytest.mark.parametrize(("entry", "host", "matches"), [
    ("mx.acme.test", "mx.acme.test", True),
    ("MX.Acme.Test", "mx.acme.test.", True),
    ("mx.acme.test", "mx2.acme.test", False),
    (".acme.test", "mx.acme.test", True),
    (".acme.test", "a.b.ACME.test", True),
    (".acme.test", "acme.test", False),
    (".acme.test", "evilacme.test", False),
    (".acme.test", "mx.acme.test.evil.test", False),
    ("mx.acme.test", None, False),
    ("mx.acme.test", "", False),
], ids=["exact", "case-and-final-dot", "other-host", "suffix", "suffix-deeper-any-case", "suffix-not-the-domain-itself",
        "suffix-needs-a-dot", "suffix-at-the-end-only", "no-name", "empty-name"])
def test_host_name_matches_as_domino_does(entry, host, matches):
    assert policy.host_name_matches(entry, host) is matches


@pytest.mark.parametrize(("config", "client_host", "allowed", "rule"), [
    ({"connection_deny_hosts": ["localhost"]}, "localhost", False, "connection_deny_hosts"),
    ({"connection_deny_hosts": [".spam.test"]}, "relay7.spam.test", False, "connection_deny_hosts"),
    ({"connection_deny_hosts": [".spam.test"]}, None, True, "connection_open"),
    ({"connection_allow_hosts": [".partner.test"]}, "mx.partner.test", True, "connection_allow_hosts"),
    ({"connection_allow_hosts": [".partner.test"]}, "mx.other.test", False, "connection_allow_hosts"),
], ids=["deny-by-name", "deny-by-suffix", "no-name-no-match", "allow-by-suffix", "allow-list-refuses-others"])
def test_connection_controls_match_the_resolved_name(config, client_host, allowed, rule):
    decision = policy.connection_allowed(snapshot(config=config), facts(client_host=client_host))
    assert (decision.allowed, decision.rule) == (allowed, rule), decision.detail
    if client_host and rule != "connection_open":
        assert client_host in decision.detail


def test_relay_exclusions_and_internal_hosts_match_by_name():
    internal = snapshot(config={"internal_hosts": [".acme.test"]})
    decision = policy.relay_allowed(internal, facts(client_host="gw.acme.test"), "example.org")
    assert (decision.allowed, decision.rule) == (True, "internal_hosts")
    assert not policy.relay_allowed(internal, facts(client_host="gw.other.test"), "example.org").allowed


@pytest.mark.parametrize(("value", "valid"), [
    ("localhost", True), ("mx.acme.test", True), (".acme.test", True), ("192.0.2.0/24", True),
    (".test", False), ("..acme.test", False), ("acme..test", False), ("<b>", False),
])
def test_host_entries_accept_a_domain_suffix(value, valid):
    if valid:
        validate_host_entry(value)
    else:
        with pytest.raises(ValidationError):
            validate_host_entry(value)


@pytest.mark.parametrize(("config", "needed"), [
    ({}, False),
    ({"connection_deny_hosts": ["192.0.2.0/24", "2001:db8::1"]}, False),
    ({"connection_deny_hosts": ["localhost"]}, True),
    ({"connection_allow_hosts": [".partner.test"]}, True),
    ({"internal_hosts": ["gw.acme.test"]}, True),
    ({"internal_hosts": ["gw.acme.test"], "anti_relay_enforcement": "all"}, False),
    ({"anti_relay_exclude_hosts": ["gw.acme.test"], "anti_relay_enforcement": "none"}, False),
], ids=["defaults", "addresses-only", "deny-name", "allow-suffix", "internal-name", "internal-not-in-force",
        "exclusions-not-in-force"])
def test_names_are_looked_up_only_when_an_entry_in_force_is_a_name(config, needed):
    assert resolve.needs_names(snapshot(config=config)) is needed


def test_the_resolver_confirms_localhost_for_127_0_0_1_on_this_machine():
    resolve.clear_cache()
    assert asyncio.run(resolve.client_name("127.0.0.1")) == "localhost"


def test_an_address_without_a_confirmed_name_has_none_within_the_timeout():
    """192.0.2.1 (TEST-NET-1) has no PTR record: no name, and never later than the timeout."""
    resolve.clear_cache()
    started = time.monotonic()
    assert asyncio.run(resolve.client_name("192.0.2.1", timeout=0.5)) is None
    assert time.monotonic() - started < 1.5
    assert asyncio.run(resolve.client_name(EXTERNAL_IP, timeout=0.5)) is None



@pytest.fixture
def reader_client(reader):
    client = Client()
    client.force_login(reader)
    return client


def test_the_simulator_shows_which_entry_the_client_name_matches(reader_client, make_server, configuration):
    save(models.ConfigurationSettings, {"connection_deny_hosts": "localhost\n.spam.test"}, instance=configuration)
    server = make_server()
    form = {"client_address": "127.0.0.1", "client_host": "Relay7.Spam.Test", "local_address": "127.0.0.1", "tls": "none",
            "mail_from": "", "recipients": ""}
    page = html.unescape(reader_client.post(reverse("explain:simulator", args=[server.pk]), form).content.decode())
    assert ("The client is named relay7.spam.test, which matches .spam.test of Deny connections from these hosts "
            "(any host in that domain).") in page
    assert "554" in page

    form["client_host"] = ""
    page = html.unescape(reader_client.post(reverse("explain:simulator", args=[server.pk]), form).content.decode())
    assert "No host name given" in page


def test_the_name_the_client_connected_to_is_a_mapped_name_that_resolves_to_the_local_address():
    resolve.clear_cache()
    assert asyncio.run(resolve.local_name("127.0.0.1", ("mail.acme.invalid", "LOCALHOST"))) == "localhost"
    assert asyncio.run(resolve.local_name("127.0.0.1", ("mail.acme.invalid",))) is None
    assert asyncio.run(resolve.local_name("127.0.0.1", ())) is None


def test_only_site_mappings_written_as_names_are_looked_up():
    sites = (policy.SiteSnapshot("A", mapped_addresses=("127.0.0.1", "mx.acme.test", "*")),
             policy.SiteSnapshot("B", mapped_addresses=("MX.acme.test", "smtp.acme.test")))
    assert resolve.mapped_names(snapshot(sites=sites)) == ("mx.acme.test", "smtp.acme.test")
