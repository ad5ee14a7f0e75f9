"""Open relay: from an external host without AUTH, no classic relay trick gets a recipient accepted,
while the null sender and postmaster still work; authenticated users send only as themselves.

Sources: RFC 5321 s 3.6.1 and 7.9 (no open relay), s 4.1.1.3 and C (source routes are ignored), s 4.5.1
(postmaster must be accepted), s 4.5.5 (the null sender); RFC 2505 s 2 (anti-spam recommendations:
the %-hack, bang paths, quoted local parts); RFC 6409 s 6.1 (the submission server checks the sender).
"""
import asyncio
import smtplib

import aiosmtplib
import pytest

from directory import models
from smtpservice.models import QueuedRecipient, ReceivedMessage
from tests.security.smtp_client import CLIENT_NAME, LOCAL
from tests.smtpservice.conftest import PASSWORD, save

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGE = b"From: someone@example.org\r\nSubject: relay test\r\n\r\nHello.\r\n"
SENDER_NOT_OWNED = (553, b"5.7.1 Sender address rejected: not owned by the authenticated user")

RELAY_TRICKS = {
    "percent hack": "<user%other.test@acme.test>",
    "percent hack, two hops": "<user%other.test%third.test@acme.test>",
    "bang path through a local domain": "<other.test!user@acme.test>",
    "bang path without domain": "<other.test!user>",
    "quoted local part holding @": '<"user@other.test"@acme.test>',
    "quoted local part holding %": '<"user%other.test"@acme.test>',
    "quoted address without domain": '<"user@other.test">',
    "source route": "<@acme.test:user@other.test>",
    "source route, two hops": "<@acme.test,@mail1.acme.test:user@other.test>",
    "IP literal": "<user@[192.0.2.1]>",
    "IP literal of this host": "<user@[127.0.0.1]>",
    "IPv6 literal": "<user@[IPv6:2001:db8::1]>",
    "control character": "<user\x01@other.test>",
    "NUL": "<user@other.test\x00>",
    "missing domain": "<user>",
    "empty domain": "<user@>",
    "two at signs": "<user@other.test@acme.test>",
    "trailing dot": "<user@other.test.>",
}


@pytest.fixture
def start_external(make_server, configuration, jane, run_listener):
    """Start a listener for which the loopback client is an external host (Internal hosts lists another
    network), with any change to the Configuration Settings; returns its TCP/IP port."""

    def start(**config):
        save(models.ConfigurationSettings, {"internal_hosts": ["192.0.2.0/24"], **config}, instance=configuration)
        server = make_server(smtp_inbound_tcp_auth_name_password=True)
        run_listener(server)
        return server.smtp_inbound_tcp_port

    return start


@pytest.fixture
def external(start_external):
    return start_external()


def session(port):
    client = smtplib.SMTP(LOCAL, port, local_hostname=CLIENT_NAME, timeout=10)
    client.ehlo()
    return client


def test_no_relay_trick_gets_a_recipient_accepted_from_an_external_host(start_external):
    with session(start_external(error_limit=100)) as client:
        assert client.mail("sender@example.org")[0] == 250
        replies = {name: client.docmd("RCPT", f"TO:{address}") for name, address in RELAY_TRICKS.items()}
        assert client.docmd("DATA")[0] == 503
    accepted = {name: reply for name, reply in replies.items() if not 500 <= reply[0] < 600}
    assert accepted == {}, "relay tricks answered with something else than a refusal"
    assert not QueuedRecipient.objects.exists() and not ReceivedMessage.objects.exists()


@pytest.mark.parametrize(("address", "expected"), [
    ('<"user@other.test"@acme.test>', (501, b"5.1.3 Bad recipient address syntax")),
    ("<user\x01@other.test>", (501, b"5.1.3 Bad recipient address syntax")),
    ("<user@other.test>", (554, b"5.7.1 Relay rejected for policy reasons.")),
    ("<user%other.test@acme.test>", (550, b"5.1.1 User unknown")),
], ids=["quoted @", "control character", "plain relay", "percent hack"])
def test_each_trick_is_refused_for_its_own_reason(address, expected, external):
    with session(external) as client:
        client.mail("sender@example.org")
        assert client.docmd("RCPT", f"TO:{address}") == expected


def test_the_null_sender_and_postmaster_are_accepted_from_an_external_host(start_external, jane):
    postmaster = save(models.Person, {
        "full_name": "Post Master/Acme", "internet_address": "postmaster@acme.test", "internet_password": PASSWORD,
    })
    with session(start_external()) as client:
        assert client.mail("<>")[0] == 250
        assert client.rcpt("<postmaster>")[0] == 250
        assert client.rcpt("<PostMaster@acme.test>")[0] == 250
        assert client.rcpt("<jane@acme.test>")[0] == 250
        assert client.data(MESSAGE)[0] == 250
    message = ReceivedMessage.objects.get()
    assert message.mail_from == "<>"
    assert set(message.mailbox_entries.values_list("person", flat=True)) == {postmaster.pk, jane.pk}


def authenticated(port, user="jane@acme.test"):
    client = session(port)
    client.login(user, PASSWORD)
    return client


@pytest.mark.parametrize("sender", ["bob@acme.test", "ceo@example.org", "JANE@acme.test.evil.example"])
def test_an_authenticated_user_cannot_send_as_another_address(sender, external):
    with authenticated(external) as client:
        assert client.mail(sender) == SENDER_NOT_OWNED
        assert client.rcpt("partner@other.test")[0] == 503


def test_aiosmtplib_is_refused_as_another_sender_and_accepted_as_itself(external):
    async def conversation():
        client = aiosmtplib.SMTP(hostname=LOCAL, port=external, local_hostname=CLIENT_NAME, timeout=10, start_tls=False)
        async with client:
            await client.login("jane@acme.test", PASSWORD)
            with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
                await client.sendmail("ceo@example.org", ["partner@other.test"], MESSAGE)
            await client.rset()
            await client.sendmail("jane@acme.test", ["partner@other.test"], MESSAGE)
        return refused.value

    refused = asyncio.run(conversation())
    assert (refused.code, refused.message) == (SENDER_NOT_OWNED[0], SENDER_NOT_OWNED[1].decode())
    assert QueuedRecipient.objects.get().message.mail_from == "jane@acme.test"


def test_allowing_authenticated_users_to_relay_does_not_let_them_send_as_anyone(external, configuration):
    assert models.ConfigurationSettings.objects.get(pk=configuration.pk).authenticated_users_relay
    with authenticated(external) as client:
        assert client.mail("ceo@example.org") == SENDER_NOT_OWNED
        assert client.mail("<Jane@Acme.test>")[0] == 250
        assert client.rcpt("partner@other.test")[0] == 250
        assert client.data(MESSAGE)[0] == 250
        assert client.mail("<>")[0] == 250
    assert QueuedRecipient.objects.get().recipient == "partner@other.test"


@pytest.mark.parametrize("allowance", ["LocalDomainServers", "anti-relay None", "excluded host"])
def test_the_configuration_can_let_an_authenticated_account_send_as_anyone(allowance, start_external):
    config = {}
    if allowance == "LocalDomainServers":
        save(models.Group, {"name": "LocalDomainServers", "group_type": "multi_purpose", "members": ["Jane Doe/Sales/Acme"]})
    elif allowance == "anti-relay None":
        config = {"anti_relay_enforcement": "none"}
    else:
        config = {"anti_relay_exclude_hosts": ["127.0.0.1"]}
    with authenticated(start_external(**config)) as client:
        assert client.mail("ceo@example.org")[0] == 250


@pytest.mark.parametrize("sender", ["<user>", "<user\x01@example.org>", '<"a@b"@example.org>'])
def test_a_malformed_sender_is_refused(sender, external):
    with session(external) as client:
        assert client.docmd("MAIL", f"FROM:{sender}") == (501, b"5.1.7 Bad sender address syntax")
