"""SMTP smuggling: only CR LF . CR LF ends DATA, and a bare CR or LF never ends a line.

The 2023 SMTP smuggling family (SEC Consult, CVE-2023-51764/51765/51766) and aiosmtpd's own advisory
GHSA-pr2m-px7j-xg65 (CVE-2024-27305) hide a second message behind an end-of-data that one server
reads and another does not. Every variant below is sent byte for byte on a plain socket: the
listener must not answer the fake end, must answer the real end once, and refuses the whole message
because it holds bare line ends that a server it is relayed to might read differently (docs/design/security.md).
"""
import pytest

from smtpservice.models import MailboxEntry, ReceivedMessage
from tests.security.smtp_client import greeted

pytestmark = pytest.mark.django_db(transaction=True)

BARE_LINE_END = (554, "5.6.0 Message contains a bare CR or LF; lines must end with CR LF")
SMUGGLED = (
    b"MAIL FROM:<ceo@acme.test>\r\nRCPT TO:<jane@acme.test>\r\nDATA\r\n"
    b"From: ceo@acme.test\r\nSubject: smuggled\r\n\r\nPay the invoice.\r\n"
)
FAKE_ENDS = {
    "LF . LF": b"\n.\n",
    "CR . CR": b"\r.\r",
    "LF . CR LF": b"\n.\r\n",
    "CR LF . LF": b"\r\n.\n",
    "CR . CR LF": b"\r.\r\n",
    "CR LF . CR": b"\r\n.\r",
    "LF . CR": b"\n.\r",
    "CR . LF": b"\r.\n",
}


@pytest.fixture
def session(make_server, configuration, jane, run_listener):
    """A client that has sent MAIL, RCPT and DATA and got the 354."""
    server = make_server()
    run_listener(server)
    client = greeted(server.smtp_inbound_tcp_port)
    client.ehlo()
    assert client.command("MAIL FROM:<sender@example.org>")[0] == 250
    assert client.command("RCPT TO:<jane@acme.test>")[0] == 250
    assert client.command("DATA")[0] == 354
    yield client
    client.close()


@pytest.mark.parametrize("fake_end", FAKE_ENDS.values(), ids=FAKE_ENDS.keys())
def test_a_fake_end_of_data_neither_ends_the_message_nor_starts_a_smuggled_one(fake_end, session):
    session.send(b"From: sender@example.org\r\nSubject: first\r\n\r\nHello" + fake_end + SMUGGLED)
    assert session.silent_for(0.3), "the listener answered a fake end of data"

    session.send(b".\r\n")
    assert session.reply() == BARE_LINE_END
    assert session.command("RCPT TO:<jane@acme.test>")[0] == 503, "the smuggled MAIL FROM was executed"
    assert session.command("NOOP")[0] == 250
    assert not ReceivedMessage.objects.exists()


@pytest.mark.parametrize("stray", [b"a bare \n line feed", b"a bare \r carriage return", b"both \r\n\r mixed"])
def test_a_stray_cr_or_lf_inside_a_message_refuses_the_whole_message(stray, session):
    session.send(b"Subject: stray\r\n\r\nText with " + stray + b" inside.\r\n.\r\n")
    assert session.reply() == BARE_LINE_END
    assert not ReceivedMessage.objects.exists()


def test_a_clean_message_with_a_dot_stuffed_line_is_stored_byte_for_byte(session, jane):
    session.send(b"Subject: dots\r\n\r\n..\r\n.leading dot\r\nlast line\r\n.\r\n")
    assert session.reply()[0] == 250
    data = bytes(MailboxEntry.objects.get(person=jane).message.data)
    assert data.startswith(b"Received: ")
    assert data.endswith(b"\r\nSubject: dots\r\n\r\n.\r\nleading dot\r\nlast line\r\n")


@pytest.fixture
def greeted_client(make_server, configuration, jane, run_listener):
    server = make_server()
    run_listener(server)
    client = greeted(server.smtp_inbound_tcp_port)
    client.ehlo()
    yield client
    client.close()


def test_a_bare_lf_does_not_end_a_command(greeted_client):
    greeted_client.send(b"MAIL FROM:<sender@example.org>\n")
    assert greeted_client.silent_for(0.3), "a bare LF ended the command"
    greeted_client.send(b"\r\n")
    assert greeted_client.reply() == (500, "5.5.2 Bare CR or LF in command line")


@pytest.mark.parametrize("separator", [b"\n", b"\r"], ids=["LF", "CR"])
def test_commands_joined_by_a_bare_cr_or_lf_are_refused_as_one_line(separator, greeted_client):
    greeted_client.send(b"MAIL FROM:<sender@example.org>" + separator + b"RCPT TO:<jane@acme.test>\r\n")
    assert greeted_client.reply() == (500, "5.5.2 Bare CR or LF in command line")
    assert greeted_client.silent_for(0.2), "a second command was read out of the line"
    assert greeted_client.command("RCPT TO:<jane@acme.test>")[0] == 503
