"""Tables of cases for the SMTP policy (spec sections 2 and 3), built from small snapshots, no database."""
import pytest
from django.contrib.auth.hashers import make_password

from smtpservice.core import policy
from smtpservice.core.policy import (
    AuthOptions,
    ConfigSnapshot,
    InboundPorts,
    PersonSnapshot,
    SessionFacts,
    SettingsSnapshot,
    SiteSnapshot,
)

LOCAL_IP = "192.0.2.10"
OTHER_LOCAL_IP = "192.0.2.20"
EXTERNAL_IP = "203.0.113.5"

JANE = PersonSnapshot("Jane Doe/Sales/Acme", "Jane", "Doe", "jdoe", "jane@acme.test", "hash-secret-jane")
JOHN = PersonSnapshot("John Doe/Acme", "John", "Doe", "jodoe", "john@acme.test", "hash-secret-john")
BOB = PersonSnapshot("Bob Smith/East/Sales/Acme", "Bob", "Smith", "bsmith", "bob@sales.acme.test", "hash-secret-bob")
EVE = PersonSnapshot("Eve Nopass/Acme", "Eve", "Nopass", "eve", "eve@acme.test", "")
ADMIN = PersonSnapshot("Admin", short_name="root")
ROOT = PersonSnapshot("Root User/Acme", "Root", "User", "admin", "root@acme.test", "hash-secret-root")
PEOPLE = (JANE, JOHN, BOB, EVE, ADMIN, ROOT)
GROUPS = {
    "mail admins": ("multi_purpose", ["Jane Doe/Sales/Acme"]),
    "sales staff": ("acl_only", ["*/Sales/Acme"]),
    "newsletter": ("mail_only", ["John Doe/Acme"]),
    "outer": ("multi_purpose", ["Mail Admins", "Outer"]),
}

NO = dict(tcp_name_password=False, tcp_anonymous=False, ssl_client_certificate=False, ssl_name_password=False, ssl_anonymous=False)


def fake_verify(password, password_hash):
    return password_hash == f"hash-{password}"


def snapshot(*, options=None, config=None, inbound=None, **overrides):
    """A snapshot of server mail1/Acme with certificates, the people and groups above, and overrides."""
    values = dict(
        server_name="mail1/Acme", host_name="mail1.acme.test", revision=1, tls_credentials_name="mail1-cert",
        people=PEOPLE, groups=GROUPS,
    )
    values.update(overrides)
    return SettingsSnapshot(
        **values,
        inbound=InboundPorts(**{**(inbound or {}), "options": AuthOptions(**(options or {}))}),
        config=ConfigSnapshot(**{"local_domains": ("acme.test", "*.acme.test"), **(config or {})}),
    )


def site(name, *mapped, tls=None, **options):
    return SiteSnapshot(name, mapped or ("*",), AuthOptions(**options), tls)


def with_sites(*sites, **overrides):
    return snapshot(load_internet_sites=True, sites=sites, **overrides)


def facts(port="tcp", client=EXTERNAL_IP, local=LOCAL_IP, **kwargs):
    return SessionFacts(local, 25 if port == "tcp" else 465, port, client, **kwargs)


CLEAR = facts()
AFTER_STARTTLS = facts().after_starttls()
SSL_PORT = facts("ssl")


def assert_refused(decision, reply, rule):
    assert (decision.allowed, (decision.code, decision.text), decision.rule) == (False, reply, rule), decision.detail


# --- Session facts and answers --------------------------------------------------------------------


def test_ssl_port_and_starttls_count_as_tls():
    assert (CLEAR.tls, AFTER_STARTTLS.tls, SSL_PORT.tls) == (False, True, True)
    assert AFTER_STARTTLS.starttls_done and not SSL_PORT.starttls_done


def test_starttls_forgets_an_earlier_auth():
    assert CLEAR.after_auth("Jane Doe/Sales/Acme").after_starttls().authenticated_as is None


def test_unknown_port_kind_is_a_programming_error():
    with pytest.raises(ValueError):
        facts("submission")


def test_refusal_reply_is_code_and_text_and_an_allowed_decision_has_none():
    assert policy.connection_allowed(snapshot(config={"connection_deny_hosts": [EXTERNAL_IP]}), CLEAR).reply == (
        "554 5.7.1 Connection denied for policy reasons."
    )
    assert policy.connection_allowed(snapshot(), CLEAR).reply == ""


def test_snapshot_built_from_lists_is_immutable():
    snap = snapshot(access_server=["*"], config={"local_domains": ["acme.test"]})
    assert snap.access_server == ("*",) and snap.config.local_domains == ("acme.test",)
    with pytest.raises(TypeError):
        snap.groups["new"] = ("multi_purpose", ())


# --- 3.1 Ports --------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, expected", [
    pytest.param({}, {"tcp": True, "ssl": False}, id="by default only the TCP/IP port is bound"),
    pytest.param({"inbound": {"ssl_status": "enabled"}}, {"tcp": True, "ssl": True}, id="an Enabled SSL port with credentials is bound"),
    pytest.param({"inbound": {"tcp_status": "disabled", "ssl_status": "enabled"}}, {"tcp": False, "ssl": True}, id="a Disabled TCP/IP port is not bound"),
    pytest.param({"inbound": {"ssl_status": "enabled"}, "tls_credentials_name": None}, {"tcp": True, "ssl": False}, id="an SSL port without any credentials is not bound"),
    pytest.param(
        {"inbound": {"ssl_status": "enabled"}, "tls_credentials_name": None, "load_internet_sites": True, "sites": (site("A", tls="site-cert"),)},
        {"tcp": True, "ssl": True}, id="a hosting site's credentials serve the SSL port",
    ),
    pytest.param({"smtp_listener_enabled": False, "inbound": {"ssl_status": "enabled"}}, {"tcp": False, "ssl": False}, id="a Disabled listener task binds nothing"),
])
def test_bindings(overrides, expected):
    result = {binding.port_kind: binding.enabled for binding in policy.bindings(snapshot(**overrides))}
    assert result == expected


def test_bindings_carry_port_numbers_and_listen_addresses():
    tcp, ssl = policy.bindings(snapshot(listen_addresses=["192.0.2.10"], inbound={"tcp_port": 26, "ssl_port": 466}))
    assert (tcp.port, ssl.port, tcp.addresses) == (26, 466, ("192.0.2.10",))
    assert "Disabled" in ssl.detail


# --- 3.2 Connection controls ------------------------------------------------------------------


@pytest.mark.parametrize("config, client, client_host, allowed, rule", [
    pytest.param({}, EXTERNAL_IP, None, True, "connection_open", id="empty lists let every host connect"),
    pytest.param({"connection_deny_hosts": [EXTERNAL_IP]}, EXTERNAL_IP, None, False, "connection_deny_hosts", id="a denied address is refused"),
    pytest.param({"connection_deny_hosts": ["203.0.113.0/24"]}, EXTERNAL_IP, None, False, "connection_deny_hosts", id="a denied CIDR range covers the client"),
    pytest.param({"connection_deny_hosts": ["203.0.113.0/24"]}, "198.51.100.1", None, True, "connection_open", id="a client outside the denied range connects"),
    pytest.param({"connection_deny_hosts": ["spam.example.net"]}, EXTERNAL_IP, "SPAM.example.net.", False, "connection_deny_hosts", id="a denied host name matches the reverse name without regard to case"),
    pytest.param({"connection_deny_hosts": ["spam.example.net"]}, EXTERNAL_IP, None, True, "connection_open", id="a host name entry never matches a client without reverse name"),
    pytest.param({"connection_deny_hosts": [EXTERNAL_IP], "connection_allow_hosts": [EXTERNAL_IP]}, EXTERNAL_IP, None, False, "connection_deny_hosts", id="deny wins over allow"),
    pytest.param({"connection_allow_hosts": ["203.0.113.0/24"]}, EXTERNAL_IP, None, True, "connection_allow_hosts", id="an allowed range lets its clients connect"),
    pytest.param({"connection_allow_hosts": ["203.0.113.0/24"]}, "198.51.100.1", None, False, "connection_allow_hosts", id="with an allow list every other host is refused"),
    pytest.param({"connection_deny_hosts": ["2001:db8::/32"]}, "2001:db8::1", None, False, "connection_deny_hosts", id="IPv6 ranges are matched"),
    pytest.param({"connection_deny_hosts": ["203.0.113.5"]}, "::ffff:203.0.113.5", None, False, "connection_deny_hosts", id="an IPv4-mapped IPv6 client counts as its IPv4 address"),
])
def test_connection_controls(config, client, client_host, allowed, rule):
    decision = policy.connection_allowed(snapshot(config=config), facts(client=client, client_host=client_host))
    assert (decision.allowed, decision.rule) == (allowed, rule), decision.detail
    if not allowed:
        assert (decision.code, decision.text) == policy.CONNECTION_DENIED


def test_connection_refusal_names_the_deciding_entry():
    decision = policy.connection_allowed(snapshot(config={"connection_deny_hosts": ["203.0.113.0/24"]}), CLEAR)
    assert "203.0.113.0/24" in decision.detail and "Deny connections" in decision.detail


def test_connection_controls_come_before_the_site_check():
    snap = with_sites(config={"connection_deny_hosts": [EXTERNAL_IP]})
    assert_refused(policy.session_greeting(snap, CLEAR), policy.CONNECTION_DENIED, "connection_deny_hosts")


# --- Section 2: site matching -----------------------------------------------------------------

OLD_ANY = site("Old any")
NEW_ANY = site("New any")
BY_ADDRESS = site("By address", LOCAL_IP)
BY_ADDRESS_NEWER = site("By address newer", LOCAL_IP)
BY_HOST = site("By host", "smtp.acme.test")
BY_V6 = site("By IPv6", "2001:db8::10")


@pytest.mark.parametrize("sites, local_ip, local_host, expected", [
    pytest.param((OLD_ANY, BY_ADDRESS), LOCAL_IP, None, "By address", id="an exact address wins over an older star"),
    pytest.param((OLD_ANY, BY_ADDRESS), OTHER_LOCAL_IP, None, "Old any", id="another address falls back to the star site"),
    pytest.param((OLD_ANY, BY_HOST), OTHER_LOCAL_IP, "SMTP.acme.test", "By host", id="a mapped host name of the local interface wins"),
    pytest.param((BY_ADDRESS, BY_ADDRESS_NEWER), LOCAL_IP, None, "By address", id="two exact matches go to the oldest"),
    pytest.param((OLD_ANY, NEW_ANY), LOCAL_IP, None, "Old any", id="two star sites go to the oldest"),
    pytest.param((BY_V6,), "2001:DB8:0::0010", None, "By IPv6", id="IPv6 addresses compare by value"),
    pytest.param((BY_ADDRESS,), OTHER_LOCAL_IP, None, None, id="no site when nothing maps the address and no star"),
    pytest.param((), LOCAL_IP, None, None, id="no site when none hosts the server"),
])
def test_site_matching(sites, local_ip, local_host, expected):
    choice = policy.select_site(with_sites(*sites), local_ip, local_host)
    assert (choice.site.name if choice.site else None) == expected, choice.detail


def test_site_choice_explains_ties_and_the_matching_entry():
    choice = policy.select_site(with_sites(BY_ADDRESS, BY_ADDRESS_NEWER), LOCAL_IP)
    assert "By address" in choice.detail and LOCAL_IP in choice.detail and "oldest of 2" in choice.detail
    assert "No SMTP Inbound Site document hosts server mail1/Acme" in policy.select_site(with_sites(), LOCAL_IP).detail


@pytest.mark.parametrize("snap, document, options", [
    pytest.param(snapshot(options={"tcp_name_password": True}), "Server document mail1/Acme", AuthOptions(tcp_name_password=True),
                 id="without Internet Sites the Server document supplies the options"),
    pytest.param(snapshot(sites=(site("Ignored", **NO),)), "Server document mail1/Acme", AuthOptions(),
                 id="sites are ignored while Internet Sites are not loaded"),
    pytest.param(with_sites(site("Acme SMTP", ssl_anonymous=False), options=NO), "Site document “Acme SMTP”", AuthOptions(ssl_anonymous=False),
                 id="with Internet Sites the matching site supplies the options, not the Server document"),
    pytest.param(with_sites(), "", None, id="with Internet Sites and no matching site there are no options"),
])
def test_auth_source(snap, document, options):
    source = policy.auth_source(snap, CLEAR)
    assert (source.document, source.options) == (document, options), source.detail


@pytest.mark.parametrize("snap, local_ip, expected", [
    pytest.param(snapshot(), LOCAL_IP, "mail1-cert", id="without Internet Sites the Server document's credentials serve"),
    pytest.param(with_sites(site("A", tls="site-cert")), LOCAL_IP, "site-cert", id="the matching site's credentials win"),
    pytest.param(with_sites(site("A")), LOCAL_IP, "mail1-cert", id="a site without credentials falls back to the Server document's"),
    pytest.param(with_sites(site("A", LOCAL_IP, tls="site-cert")), OTHER_LOCAL_IP, "mail1-cert", id="an address no site maps uses the Server document's"),
    pytest.param(snapshot(tls_credentials_name=None), LOCAL_IP, None, id="no credentials at all"),
])
def test_tls_credentials_choice(snap, local_ip, expected):
    assert policy.tls_credentials_for(snap, local_ip).name == expected


# --- 3.3 Site not enabled -----------------------------------------------------------------------


@pytest.mark.parametrize("snap, session, allowed, rule", [
    pytest.param(snapshot(options=NO), CLEAR, True, "internet_sites_disabled", id="without Internet Sites the rule does not apply even with every option No"),
    pytest.param(with_sites(), CLEAR, False, "no_site", id="no matching site is not enabled"),
    pytest.param(with_sites(site("Off", **NO)), SSL_PORT, False, "all_options_off", id="a site with every option No is not enabled"),
    pytest.param(with_sites(site("A")), CLEAR, True, "site_enabled", id="the default site options enable the TCP/IP port"),
    pytest.param(with_sites(site("A", **{**NO, "tcp_name_password": True})), CLEAR, True, "site_enabled", id="TCP/IP Name & password alone enables the TCP/IP port"),
    pytest.param(with_sites(site("A", **{**NO, "ssl_name_password": True})), CLEAR, True, "site_enabled",
                 id="with both TCP/IP options No the TCP/IP port is enabled when STARTTLS leads to SSL Name & password"),
    pytest.param(with_sites(site("A", **{**NO, "ssl_anonymous": True})), CLEAR, True, "site_enabled",
                 id="with both TCP/IP options No the TCP/IP port is enabled when STARTTLS leads to SSL Anonymous"),
    pytest.param(with_sites(site("A", **{**NO, "ssl_client_certificate": True})), CLEAR, False, "port_without_method",
                 id="a client certificate alone does not enable the TCP/IP port"),
    pytest.param(with_sites(site("A", **{**NO, "ssl_name_password": True}), config={"starttls_inbound": "disabled"}), CLEAR, False, "port_without_method",
                 id="with both TCP/IP options No and STARTTLS Disabled the TCP/IP port allows no method"),
    pytest.param(with_sites(site("A", **{**NO, "ssl_name_password": True}), tls_credentials_name=None), CLEAR, False, "port_without_method",
                 id="with both TCP/IP options No and no credentials for STARTTLS the TCP/IP port allows no method"),
    pytest.param(with_sites(site("A", tls="site-cert", **{**NO, "ssl_name_password": True}), tls_credentials_name=None), CLEAR, True, "site_enabled",
                 id="the site's own credentials make STARTTLS available"),
    pytest.param(with_sites(site("A", **{**NO, "ssl_client_certificate": True})), SSL_PORT, True, "site_enabled", id="a client certificate alone enables the SSL port"),
    pytest.param(with_sites(site("A", **{**NO, "tcp_anonymous": True})), SSL_PORT, False, "port_without_method", id="the SSL port with all three SSL options No is not enabled"),
    pytest.param(with_sites(site("A", LOCAL_IP, **NO), site("B")), CLEAR, False, "all_options_off", id="the exact site decides even when a star site would allow"),
])
def test_site_enabled(snap, session, allowed, rule):
    decision = policy.site_enabled(snap, session)
    assert (decision.allowed, decision.rule) == (allowed, rule), decision.detail
    if not allowed:
        assert decision.reply == "554 5.7.0 This site is not enabled on the server."


def test_every_command_after_a_refused_greeting_gets_503_with_the_same_text():
    greeting = policy.session_greeting(with_sites(), CLEAR)
    later = policy.after_refused_greeting(greeting)
    assert (greeting.reply, later.reply) == (
        "554 5.7.0 This site is not enabled on the server.", "503 5.7.0 This site is not enabled on the server.",
    )


def test_an_enabled_session_gets_the_usual_greeting():
    assert policy.session_greeting(with_sites(site("A")), CLEAR).allowed


# --- 3.4 STARTTLS, AUTH offer, anonymous, EHLO ----------------------------------------------------


@pytest.mark.parametrize("snap, session, allowed, rule", [
    pytest.param(snapshot(), CLEAR, True, "starttls_offered", id="Enabled with credentials offers STARTTLS"),
    pytest.param(snapshot(config={"starttls_inbound": "required"}), CLEAR, True, "starttls_offered", id="Required with credentials offers STARTTLS"),
    pytest.param(snapshot(config={"starttls_inbound": "disabled"}), CLEAR, False, "starttls_unavailable", id="Disabled never offers STARTTLS"),
    pytest.param(snapshot(tls_credentials_name=None), CLEAR, False, "starttls_unavailable", id="no credentials means no STARTTLS"),
    pytest.param(snapshot(), AFTER_STARTTLS, False, "tls_already_active", id="no second STARTTLS"),
    pytest.param(snapshot(), SSL_PORT, False, "ssl_port", id="the SSL port never offers STARTTLS"),
])
def test_starttls_offered(snap, session, allowed, rule):
    decision = policy.starttls_offered(snap, session)
    assert (decision.allowed, decision.rule) == (allowed, rule), decision.detail


TCP_NP = {"tcp_name_password": True}
SSL_NP_OFF = {"ssl_name_password": False}


@pytest.mark.parametrize("snap, session, expected", [
    pytest.param(snapshot(), CLEAR, (), id="by default no AUTH in clear text"),
    pytest.param(snapshot(options=TCP_NP), CLEAR, ("PLAIN", "LOGIN"), id="TCP/IP Name & password Yes offers AUTH in clear text"),
    pytest.param(snapshot(), AFTER_STARTTLS, ("PLAIN", "LOGIN"), id="after STARTTLS the SSL Name & password option applies"),
    pytest.param(snapshot(options={**TCP_NP, **SSL_NP_OFF}), AFTER_STARTTLS, (), id="after STARTTLS the TCP/IP option no longer applies"),
    pytest.param(snapshot(), SSL_PORT, ("PLAIN", "LOGIN"), id="the SSL port follows SSL Name & password"),
    pytest.param(snapshot(options=SSL_NP_OFF), SSL_PORT, (), id="the SSL port without SSL Name & password offers no AUTH"),
    pytest.param(with_sites(site("A", **TCP_NP)), CLEAR, ("PLAIN", "LOGIN"), id="with Internet Sites the site's TCP/IP option applies"),
    pytest.param(with_sites(site("A", **SSL_NP_OFF), options=TCP_NP), AFTER_STARTTLS, (), id="with Internet Sites the Server document's options are ignored"),
    pytest.param(with_sites(), SSL_PORT, (), id="no site means no AUTH"),
])
def test_auth_offer(snap, session, expected):
    assert tuple(policy.auth_mechanisms(snap, session)) == expected


@pytest.mark.parametrize("snap, session, allowed", [
    pytest.param(snapshot(), CLEAR, True, id="TCP/IP Anonymous Yes accepts anonymous mail in clear text"),
    pytest.param(snapshot(options={"tcp_anonymous": False}), CLEAR, False, id="TCP/IP Anonymous No refuses anonymous mail in clear text"),
    pytest.param(snapshot(options={"tcp_anonymous": False}), AFTER_STARTTLS, True, id="after STARTTLS SSL Anonymous applies"),
    pytest.param(snapshot(options={"ssl_anonymous": False}), AFTER_STARTTLS, False, id="after STARTTLS SSL Anonymous No refuses"),
    pytest.param(snapshot(options={"ssl_anonymous": False}), SSL_PORT, False, id="the SSL port follows SSL Anonymous"),
    pytest.param(with_sites(site("A", tcp_anonymous=False)), CLEAR, False, id="with Internet Sites the site's Anonymous option applies"),
    pytest.param(with_sites(), CLEAR, False, id="no site means no anonymous mail"),
])
def test_anonymous(snap, session, allowed):
    assert policy.anonymous_allowed(snap, session).allowed is allowed


@pytest.mark.parametrize("snap, session, expected", [
    pytest.param(snapshot(), CLEAR, ["ENHANCEDSTATUSCODES", "SIZE 10485760", "PIPELINING", "STARTTLS"], id="defaults advertise SIZE with the limit, PIPELINING and STARTTLS"),
    pytest.param(snapshot(config={"max_message_size_kb": 0}), CLEAR, ["ENHANCEDSTATUSCODES", "SIZE", "PIPELINING", "STARTTLS"], id="no size limit advertises SIZE alone"),
    pytest.param(snapshot(config={"size_extension": False, "pipelining": False, "eightbitmime": True}), CLEAR, ["ENHANCEDSTATUSCODES", "8BITMIME", "STARTTLS"],
                 id="each extension follows its setting"),
    pytest.param(snapshot(config={"starttls_inbound": "disabled"}, options=TCP_NP), CLEAR, ["ENHANCEDSTATUSCODES", "SIZE 10485760", "PIPELINING", "AUTH PLAIN LOGIN"],
                 id="AUTH in clear text without STARTTLS when TCP/IP Name & password is Yes"),
    pytest.param(snapshot(), AFTER_STARTTLS, ["ENHANCEDSTATUSCODES", "SIZE 10485760", "PIPELINING", "AUTH PLAIN LOGIN"], id="after STARTTLS AUTH appears and STARTTLS goes"),
    pytest.param(snapshot(), SSL_PORT, ["ENHANCEDSTATUSCODES", "SIZE 10485760", "PIPELINING", "AUTH PLAIN LOGIN"], id="the SSL port advertises AUTH but not STARTTLS"),
])
def test_ehlo_extensions(snap, session, expected):
    assert list(policy.ehlo_extensions(snap, session)) == expected


def test_ehlo_explains_each_keyword():
    detail = policy.ehlo_extensions(snapshot(), CLEAR).detail
    assert "8BITMIME: Disabled" in detail and "No AUTH in clear text" in detail and "STARTTLS is offered" in detail


# --- 3.6 MAIL FROM ---------------------------------------------------------------------------


@pytest.mark.parametrize("snap, session, size, reply, rule", [
    pytest.param(snapshot(), CLEAR, None, None, "mail_from_allowed", id="anonymous mail in clear text is accepted by default"),
    pytest.param(snapshot(config={"starttls_inbound": "required"}, options={"tcp_anonymous": False}), CLEAR, None, policy.STARTTLS_FIRST, "starttls_required",
                 id="STARTTLS Required is checked before authentication"),
    pytest.param(snapshot(config={"starttls_inbound": "required"}), facts(authenticated_as="Jane Doe/Sales/Acme"), None, policy.STARTTLS_FIRST, "starttls_required",
                 id="STARTTLS Required refuses even an authenticated session in clear text"),
    pytest.param(snapshot(config={"starttls_inbound": "required"}, tls_credentials_name=None), CLEAR, None, policy.STARTTLS_FIRST, "starttls_required",
                 id="STARTTLS Required without credentials still refuses clear text"),
    pytest.param(snapshot(config={"starttls_inbound": "required"}), AFTER_STARTTLS, None, None, "mail_from_allowed", id="STARTTLS Required is satisfied after STARTTLS"),
    pytest.param(snapshot(config={"starttls_inbound": "required"}), SSL_PORT, None, None, "mail_from_allowed", id="STARTTLS Required is satisfied on the SSL port"),
    pytest.param(snapshot(options={"tcp_anonymous": False}), CLEAR, None, policy.AUTH_REQUIRED, "authentication_required", id="Anonymous No needs AUTH first"),
    pytest.param(snapshot(options={"tcp_anonymous": False}), facts(authenticated_as="Jane Doe/Sales/Acme"), None, None, "mail_from_allowed",
                 id="Anonymous No accepts an authenticated session"),
    pytest.param(with_sites(), CLEAR, None, policy.AUTH_REQUIRED, "authentication_required", id="no site needs AUTH, which is never offered"),
    pytest.param(snapshot(config={"max_message_size_kb": 1}), CLEAR, 1025, policy.TOO_LARGE, "message_size", id="a declared SIZE over the limit is refused at MAIL FROM"),
    pytest.param(snapshot(config={"max_message_size_kb": 1}), CLEAR, 1024, None, "mail_from_allowed", id="a declared SIZE at the limit is accepted"),
])
def test_mail_from(snap, session, size, reply, rule):
    decision = policy.mail_from_allowed(snap, session, declared_size=size)
    assert ((decision.code, decision.text) if reply else None, decision.rule) == (reply, rule), decision.detail


# --- 3.5 Name variations, server access, AUTH ---------------------------------------------------


@pytest.mark.parametrize("mode, login, expected, matched_by", [
    pytest.param("fewer", "Jane Doe/Sales/Acme", JANE, "full_name", id="fewer accepts the abbreviated full name"),
    pytest.param("fewer", "CN=Jane Doe/OU=Sales/O=Acme", JANE, "full_name", id="fewer accepts the canonical full name"),
    pytest.param("fewer", "jane doe/sales/acme", JANE, "full_name", id="names compare without regard to case"),
    pytest.param("fewer", "JANE@acme.test", JANE, "internet_address", id="fewer accepts the Internet address"),
    pytest.param("fewer", "jdoe", None, "", id="fewer refuses the short name"),
    pytest.param("fewer", "Jane", None, "", id="fewer refuses the first name"),
    pytest.param("more", "jdoe", JANE, "short_name", id="more accepts a unique short name"),
    pytest.param("more", "Jane", JANE, "first_name", id="more accepts a unique first name"),
    pytest.param("more", "Smith", BOB, "last_name", id="more accepts a unique last name"),
    pytest.param("more", "jane  DOE", JANE, "common_name", id="more accepts the common name"),
    pytest.param("more", "Doe", None, "", id="more refuses a last name two people share"),
    pytest.param("more", "admin", ADMIN, "full_name", id="a full name wins over another person's short name"),
    pytest.param("more", "jane@acme.test", JANE, "internet_address", id="more still accepts the Internet address"),
    pytest.param("more", "nobody", None, "", id="an unknown login names nobody"),
    pytest.param("more", "  ", None, "", id="an empty login names nobody"),
])
def test_find_person(mode, login, expected, matched_by):
    match = policy.find_person(snapshot(internet_authentication=mode), login)
    assert (match.person, match.matched_by) == (expected, matched_by), match.detail


def test_ambiguous_login_names_the_people_it_matches():
    detail = policy.find_person(snapshot(internet_authentication="more"), "Doe").detail
    assert "matches 2 people" in detail and "Jane Doe/Sales/Acme" in detail and "John Doe/Acme" in detail


@pytest.mark.parametrize("access, not_access, name, allowed, rule", [
    pytest.param([], [], "Jane Doe/Sales/Acme", True, "access_server_everyone", id="empty Access server lets everyone with a Person document in"),
    pytest.param([], [], "Ghost/Acme", False, "access_server_no_person", id="empty Access server refuses a name without a Person document"),
    pytest.param(["John Doe/Acme"], [], "cn=John Doe/o=Acme", True, "access_server", id="a listed name is allowed in any form"),
    pytest.param(["John Doe/Acme"], [], "Jane Doe/Sales/Acme", False, "access_server", id="a name not listed is refused"),
    pytest.param(["*/Sales/Acme"], [], "Bob Smith/East/Sales/Acme", True, "access_server", id="a wildcard covers names at any depth below it"),
    pytest.param(["*"], [], "John Doe/Acme", True, "access_server", id="a star allows everyone"),
    pytest.param(["Mail Admins"], [], "Jane Doe/Sales/Acme", True, "access_server", id="a member of a listed group is allowed"),
    pytest.param(["Outer"], [], "Jane Doe/Sales/Acme", True, "access_server", id="nested groups are followed and cycles end"),
    pytest.param(["Sales Staff"], [], "Bob Smith/East/Sales/Acme", True, "access_server", id="an ACL-only group with a wildcard counts"),
    pytest.param(["Newsletter"], [], "John Doe/Acme", False, "access_server", id="a mail-only group does not count"),
    pytest.param(["*"], ["Jane Doe/Sales/Acme"], "Jane Doe/Sales/Acme", False, "not_access_server", id="Not access server wins over Access server"),
    pytest.param([], ["*/Sales/Acme"], "Bob Smith/East/Sales/Acme", False, "not_access_server", id="Not access server takes wildcards"),
    pytest.param(["*"], ["Outer"], "Jane Doe/Sales/Acme", False, "not_access_server", id="Not access server takes nested groups"),
])
def test_server_access(access, not_access, name, allowed, rule):
    snap = snapshot(access_server=access, not_access_server=not_access, inbound={"enforce_server_access": True})
    decision = policy.server_access(snap, name)
    assert (decision.allowed, decision.rule) == (allowed, rule), decision.detail
    if not allowed:
        assert (decision.reply, decision.close) == ("535 5.7.1 Not authorized to access this server", True)


def test_server_access_names_the_group_path():
    snap = snapshot(access_server=["Outer"], inbound={"enforce_server_access": True})
    assert "Outer > Mail Admins > Jane Doe/Sales/Acme" in policy.server_access(snap, "Jane Doe/Sales/Acme").detail


def test_server_access_lists_are_ignored_unless_enforced():
    snap = snapshot(not_access_server=["*"])
    assert policy.server_access(snap, "Jane Doe/Sales/Acme").rule == "server_access_not_enforced"


SITE_TEXT = "5.7.0 This site is not enabled on the server."


@pytest.mark.parametrize("snap, session, login, password, reply, rule", [
    pytest.param(snapshot(), AFTER_STARTTLS, "jane@acme.test", "secret-jane", None, "authenticated", id="right password after STARTTLS authenticates"),
    pytest.param(snapshot(options=TCP_NP), CLEAR, "Jane Doe/Sales/Acme", "secret-jane", None, "authenticated", id="TCP/IP Name & password Yes authenticates in clear text"),
    pytest.param(snapshot(), CLEAR, "jane@acme.test", "secret-jane", policy.AUTH_NOT_ENABLED, "name_password_not_allowed",
                 id="AUTH in clear text without TCP/IP Name & password, Internet Sites off, says authentication is not enabled"),
    pytest.param(snapshot(config={"starttls_inbound": "required"}, options=TCP_NP), CLEAR, "jane@acme.test", "secret-jane",
                 policy.STARTTLS_FIRST, "starttls_required", id="AUTH before STARTTLS with STARTTLS Required gets 530"),
    pytest.param(with_sites(), SSL_PORT, "jane@acme.test", "secret-jane", (503, SITE_TEXT), "no_site", id="AUTH without a site gets the site text"),
    pytest.param(snapshot(), AFTER_STARTTLS, "jane@acme.test", "wrong", policy.AUTH_FAILED, "wrong_password", id="a wrong password fails"),
    pytest.param(snapshot(), AFTER_STARTTLS, "nobody@acme.test", "x", policy.AUTH_FAILED, "unknown_login", id="an unknown login fails"),
    pytest.param(snapshot(), AFTER_STARTTLS, "eve@acme.test", "", policy.AUTH_FAILED, "no_internet_password", id="a person without Internet password cannot authenticate"),
    pytest.param(snapshot(), AFTER_STARTTLS, "jdoe", "secret-jane", policy.AUTH_FAILED, "unknown_login", id="a short name fails with Fewer name variations"),
    pytest.param(snapshot(internet_authentication="more"), AFTER_STARTTLS, "jdoe", "secret-jane", None, "authenticated", id="a short name works with More name variations"),
    pytest.param(snapshot(internet_authentication="more"), AFTER_STARTTLS, "Doe", "secret-jane", policy.AUTH_FAILED, "unknown_login", id="an ambiguous login fails"),
    pytest.param(snapshot(inbound={"enforce_server_access": True}, not_access_server=["Mail Admins"]), AFTER_STARTTLS, "jane@acme.test", "secret-jane",
                 policy.NOT_AUTHORIZED, "not_access_server", id="a user in Not access server is refused after a right password"),
    pytest.param(snapshot(inbound={"enforce_server_access": True}, access_server=["*/Sales/Acme"]), AFTER_STARTTLS, "john@acme.test", "secret-john",
                 policy.NOT_AUTHORIZED, "access_server", id="a user not in Access server is refused"),
    pytest.param(snapshot(), facts("ssl", authenticated_as="John Doe/Acme"), "jane@acme.test", "secret-jane", policy.ALREADY_AUTHENTICATED, "already_authenticated",
                 id="a second AUTH is refused"),
])
def test_authenticate(snap, session, login, password, reply, rule):
    decision = policy.authenticate(snap, session, login, password, verify_password=fake_verify)
    assert ((decision.code, decision.text) if reply else None, decision.rule) == (reply, rule), decision.detail
    assert decision.close is (reply is not None and reply[0] == 535)


def test_authenticate_returns_the_person_and_checks_django_password_hashes():
    jane = PersonSnapshot("Jane Doe/Sales/Acme", internet_address="jane@acme.test", password_hash=make_password("s3cret"))
    snap = snapshot(people=(jane,))
    assert policy.authenticate(snap, SSL_PORT, "jane@acme.test", "s3cret").person == jane
    assert policy.authenticate(snap, SSL_PORT, "jane@acme.test", "other").reply == "535 5.7.8 Authentication credentials invalid"


# --- 3.7 RCPT TO -----------------------------------------------------------------------------

INTERNAL = facts(client="127.0.0.1")
AUTHENTICATED = facts(authenticated_as="Jane Doe/Sales/Acme")


@pytest.mark.parametrize("config, session, address, kind, rule", [
    pytest.param({}, CLEAR, "jane@acme.test", "local", "local", id="a known local address is delivered locally"),
    pytest.param({}, CLEAR, "<Jane@ACME.test>", "local", "local", id="local addresses compare without regard to case or brackets"),
    pytest.param({}, CLEAR, "bob@sales.acme.test", "local", "local", id="a subdomain pattern makes subdomains local"),
    pytest.param({"local_domains": ["*.acme.test"]}, CLEAR, "jane@acme.test", "refused", "relay_not_allowed", id="a subdomain pattern does not cover the domain itself"),
    pytest.param({}, CLEAR, "nobody@acme.test", "refused", "user_unknown", id="an unknown local user is refused"),
    pytest.param({}, CLEAR, "Postmaster", "postmaster", "postmaster_mailbox",
                 id="a bare postmaster is always accepted, into the postmaster mailbox without administrators"),
    pytest.param({}, CLEAR, "not-an-address", "refused", "recipient_syntax", id="an address without domain is refused"),
    pytest.param({}, CLEAR, "someone@acme.test.evil.test", "refused", "relay_not_allowed", id="a domain ending like a local one is not local"),
    pytest.param({}, CLEAR, "someone@example.net", "refused", "relay_not_allowed", id="an external host may not relay by default"),
    pytest.param({}, INTERNAL, "someone@example.net", "relay", "internal_hosts", id="an internal host may relay under External hosts enforcement"),
    pytest.param({}, facts(client="::1"), "someone@example.net", "relay", "internal_hosts", id="the IPv6 loopback is internal by default"),
    pytest.param({"anti_relay_enforcement": "all"}, INTERNAL, "someone@example.net", "refused", "relay_not_allowed", id="All connecting hosts checks internal hosts too"),
    pytest.param({"anti_relay_enforcement": "none"}, CLEAR, "someone@example.net", "relay", "anti_relay_none", id="no enforcement lets anyone relay"),
    pytest.param({"anti_relay_enforcement": "all", "anti_relay_exclude_hosts": ["203.0.113.0/24"]}, CLEAR, "someone@example.net", "relay", "anti_relay_exclude_hosts",
                 id="an excluded host may relay even under All connecting hosts"),
    pytest.param({}, AUTHENTICATED, "someone@example.net", "relay", "authenticated_users_relay", id="authenticated users may relay by default"),
    pytest.param({"authenticated_users_relay": False}, AUTHENTICATED, "someone@example.net", "refused", "relay_not_allowed",
                 id="authenticated users are checked when they may not relay"),
    pytest.param({"relay_allow_domains": ["partner.test"]}, CLEAR, "someone@partner.test", "relay", "relay_allow_domains", id="an allowed domain may be relayed to by anyone"),
    pytest.param({"relay_allow_domains": ["partner.test"]}, CLEAR, "someone@example.net", "refused", "relay_not_allowed", id="other domains stay refused with an allow list"),
    pytest.param({"relay_allow_domains": ["*.partner.test"]}, CLEAR, "someone@mx.partner.test", "relay", "relay_allow_domains", id="allowed subdomain patterns cover subdomains"),
    pytest.param({"relay_allow_domains": ["partner.test"], "relay_deny_domains": ["partner.test"]}, CLEAR, "someone@partner.test", "relay", "relay_allow_domains",
                 id="allow wins over deny"),
    pytest.param({"relay_deny_domains": [".example.net"]}, CLEAR, "someone@mx.example.net", "refused", "relay_deny_domains", id="a denied domain is refused and named"),
    pytest.param({"relay_deny_domains": ["example.net"]}, INTERNAL, "someone@example.net", "relay", "internal_hosts", id="the deny list does not bind internal hosts"),
    pytest.param({}, CLEAR, "someone@[192.0.2.1]", "refused", "relay_not_allowed", id="an address literal is never local"),
])
def test_recipient(config, session, address, kind, rule):
    decision = policy.recipient_decision(snapshot(config=config), session, address, accepted_so_far=0)
    assert (decision.kind, decision.rule) == (kind, rule), decision.detail
    assert decision.allowed is (kind != "refused")
    expected_reply = {
        "user_unknown": policy.USER_UNKNOWN, "recipient_syntax": policy.BAD_RECIPIENT_SYNTAX,
        "relay_not_allowed": policy.RELAY_REJECTED, "relay_deny_domains": policy.RELAY_REJECTED,
    }.get(rule, (None, ""))
    assert (decision.code, decision.text) == expected_reply


@pytest.mark.parametrize("address, rule, reply", [
    pytest.param('"bob@example.net"@acme.test', "recipient_syntax", policy.BAD_RECIPIENT_SYNTAX, id="a quoted local part holding @"),
    pytest.param('"bob!example.net"@acme.test', "recipient_syntax", policy.BAD_RECIPIENT_SYNTAX, id="a quoted local part holding !"),
    pytest.param('"bob@example.net"', "recipient_syntax", policy.BAD_RECIPIENT_SYNTAX, id="a quoted address without domain"),
    pytest.param("bob\x01@example.net", "recipient_syntax", policy.BAD_RECIPIENT_SYNTAX, id="a control character"),
    pytest.param("jane@acme.test\x7f", "recipient_syntax", policy.BAD_RECIPIENT_SYNTAX, id="DEL"),
    pytest.param("bob%example.net@acme.test", "user_unknown", policy.USER_UNKNOWN, id="no percent hack: the whole address is local"),
    pytest.param("example.net!bob@acme.test", "user_unknown", policy.USER_UNKNOWN, id="no bang path: the whole address is local"),
    pytest.param('"jane"@acme.test', "user_unknown", policy.USER_UNKNOWN, id="a quoted local part is split at its closing quote"),
])
def test_relay_tricks_are_refused_from_any_client(address, rule, reply):
    for session in (CLEAR, INTERNAL, AUTHENTICATED):
        decision = policy.recipient_decision(snapshot(), session, address, 0)
        assert (decision.kind, decision.rule, (decision.code, decision.text)) == ("refused", rule, reply), decision.detail


OWN = facts(authenticated_as="Jane Doe/Sales/Acme")


@pytest.mark.parametrize("config, session, groups, sender, rule", [
    pytest.param({}, OWN, {}, "<jane@acme.test>", "sender_own_address", id="an authenticated user sends as herself"),
    pytest.param({}, OWN, {}, "JANE@ACME.TEST", "sender_own_address", id="in any case"),
    pytest.param({}, OWN, {}, "<>", "null_sender", id="the null sender is always allowed"),
    pytest.param({}, OWN, {}, "john@acme.test", "sender_not_owned", id="not as a colleague"),
    pytest.param({}, OWN, {}, "ceo@example.net", "sender_not_owned", id="not as an outsider"),
    pytest.param({"authenticated_users_relay": True}, OWN, {}, "ceo@example.net", "sender_not_owned",
                 id="allowing authenticated users to relay does not allow any sender"),
    pytest.param({"anti_relay_enforcement": "none"}, OWN, {}, "ceo@example.net", "sender_anti_relay_none",
                 id="anti-relay enforcement None checks no sender"),
    pytest.param({"anti_relay_exclude_hosts": ["203.0.113.0/24"]}, OWN, {}, "ceo@example.net", "sender_excluded_host",
                 id="an excluded host may use any sender"),
    pytest.param({}, OWN, {"localdomainservers": ("multi_purpose", ["Mail Admins"])}, "ceo@example.net", "sender_any_sender_group",
                 id="an account in LocalDomainServers, through a nested group, may use any sender"),
    pytest.param({}, OWN, {"localdomainservers": ("mail_only", ["Jane Doe/Sales/Acme"])}, "ceo@example.net", "sender_not_owned",
                 id="a mail-only LocalDomainServers grants nothing"),
    pytest.param({}, CLEAR, {}, "ceo@example.net", "sender_unchecked", id="anonymous senders are not checked"),
    pytest.param({}, CLEAR, {}, "ceo", "sender_syntax", id="a sender without domain is malformed"),
    pytest.param({}, CLEAR, {}, "ceo\x00@example.net", "sender_syntax", id="a sender with a control character is malformed"),
    pytest.param({}, CLEAR, {}, '"a@b"@example.net', "sender_syntax", id="a sender hiding an @ in quotes is malformed"),
])
def test_sender(config, session, groups, sender, rule):
    snap = snapshot(config=config, groups={**GROUPS, **groups})
    assert policy.sender_allowed(snap, session, sender).rule == rule
    decision = policy.mail_from_allowed(snap, session, sender=sender)
    expected = {"sender_not_owned": policy.SENDER_NOT_OWNED, "sender_syntax": policy.BAD_SENDER_SYNTAX}.get(rule, (None, ""))
    assert (decision.code, decision.text) == expected, decision.detail


def test_sender_refusal_names_the_users_own_address():
    decision = policy.sender_allowed(snapshot(), OWN, "john@acme.test")
    assert "jane@acme.test" in decision.detail and "john@acme.test" in decision.detail


def test_the_sender_is_checked_after_authentication_and_before_the_size():
    snap = snapshot(options={"tcp_anonymous": False}, config={"max_message_size_kb": 1})
    assert policy.mail_from_allowed(snap, CLEAR, 5000, sender="x@example.net").rule == "authentication_required"
    assert policy.mail_from_allowed(snap, OWN, 5000, sender="x@example.net").rule == "sender_not_owned"
    assert policy.mail_from_allowed(snap, OWN, 5000, sender="jane@acme.test").rule == "message_size"
    assert policy.mail_from_allowed(snap, OWN, 5000).rule == "message_size"


def test_local_recipient_carries_the_person():
    assert policy.recipient_decision(snapshot(), CLEAR, "jane@acme.test", 0).person == JANE


def test_postmaster_is_delivered_to_the_person_with_that_address():
    postmaster = PersonSnapshot("Post Master/Acme", internet_address="postmaster@acme.test")
    decision = policy.recipient_decision(snapshot(people=(postmaster,)), CLEAR, "postmaster", 0)
    assert (decision.kind, decision.person) == ("local", postmaster)


def test_relay_refusal_explains_why():
    detail = policy.recipient_decision(snapshot(config={"relay_deny_domains": ["example.net"]}), CLEAR, "x@example.net", 0).detail
    assert "not an internal host" in detail and "not authenticated" in detail and "example.net" in detail


@pytest.mark.parametrize("accepted, kind", [
    pytest.param(1, "local", id="a recipient under the limit is accepted"),
    pytest.param(2, "refused", id="a recipient past the limit is refused"),
])
def test_recipient_limit(accepted, kind):
    decision = policy.recipient_decision(snapshot(config={"max_recipients": 2}), CLEAR, "jane@acme.test", accepted)
    assert decision.kind == kind
    if kind == "refused":
        assert (decision.reply, decision.rule) == ("452 4.5.3 Too many recipients", "max_recipients")


def test_recipient_limit_comes_before_the_address_check():
    decision = policy.recipient_decision(snapshot(config={"max_recipients": 1}), CLEAR, "not-an-address", 1)
    assert decision.rule == "max_recipients"


# --- 3.8 size, 3.9 error limit, HELP and VRFY ----------------------------------------------------


@pytest.mark.parametrize("kb, size, allowed", [
    pytest.param(1, 1024, True, id="a message of exactly the limit is accepted"),
    pytest.param(1, 1025, False, id="one byte over the limit is refused"),
    pytest.param(0, 10**10, True, id="a limit of 0 accepts any size"),
])
def test_message_size(kb, size, allowed):
    decision = policy.message_size_allowed(snapshot(config={"max_message_size_kb": kb}), size)
    assert decision.allowed is allowed
    if not allowed:
        assert decision.reply == "552 5.3.4 Message size exceeds fixed maximum message size"


@pytest.mark.parametrize("errors, allowed", [
    pytest.param(3, True, id="errors up to the limit keep the session"),
    pytest.param(3 + 1, False, id="the error past the limit closes the session with 421"),
])
def test_error_limit(errors, allowed):
    decision = policy.within_error_limit(snapshot(config={"error_limit": 3}), errors)
    assert decision.allowed is allowed
    if not allowed:
        assert (decision.reply, decision.close) == ("421 4.7.0 SMTP service not available, closing transmission channel.", True)


@pytest.mark.parametrize("code, counts", [
    pytest.param(250, False, id="a positive reply is no error"),
    pytest.param(452, True, id="a temporary refusal is an error"),
    pytest.param(550, True, id="a permanent refusal is an error"),
    pytest.param(None, False, id="an allowed decision is no error"),
])
def test_counts_as_error(code, counts):
    assert policy.counts_as_error(code) is counts


@pytest.mark.parametrize("config, argument, reply", [
    pytest.param({}, "jane@acme.test", "252 2.1.5 Cannot VRFY user, but will accept message and attempt delivery", id="VRFY Disabled reveals nothing"),
    pytest.param({"vrfy_command": True}, "jane@acme.test", "250 2.1.5 Jane Doe/Sales/Acme <jane@acme.test>", id="VRFY Enabled names a local person"),
    pytest.param({"vrfy_command": True}, "Jane Doe/Sales/Acme", "250 2.1.5 Jane Doe/Sales/Acme <jane@acme.test>", id="VRFY Enabled accepts a full name"),
    pytest.param({"vrfy_command": True}, "nobody@acme.test", "550 5.1.1 User unknown", id="VRFY Enabled refuses an unknown user"),
    pytest.param({"vrfy_command": True}, "someone@example.net", "550 5.1.1 User unknown", id="VRFY Enabled knows no external user"),
])
def test_vrfy(config, argument, reply):
    assert policy.vrfy_decision(snapshot(config=config), argument).reply == reply


@pytest.mark.parametrize("enabled, reply", [
    pytest.param(True, "", id="HELP Enabled is answered as usual"),
    pytest.param(False, "502 5.5.1 Command not implemented", id="HELP Disabled is not implemented"),
])
def test_help(enabled, reply):
    assert policy.help_allowed(snapshot(config={"help_command": enabled})).reply == reply
