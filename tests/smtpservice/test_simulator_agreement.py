"""The policy simulator and the listener agree, reply for reply.

For each directory below a real listener runs; for each session of the table the simulator plays the
session on the snapshot the listener loads (``load_snapshot``), then a real ``smtplib`` client sends
the very same commands to the listener, and every reply (code and text, or the connection closed)
must equal the simulator's prediction for that step. Each session also names the decisive replies it
is there for (``expect``), so a table entry cannot silently stop covering its case. Clients connect
from chosen loopback addresses (Linux routes all of 127.0.0.0/8 to the loopback interface), which
the configurations below treat as outside, internal or denied hosts.
"""
import base64
import smtplib
import ssl
from dataclasses import dataclass, field

import pytest

from directory import models
from smtpservice.core import simulator
from smtpservice.store.snapshot import current_revision, load_snapshot
from tests.smtpservice.conftest import HOST_NAME, PASSWORD, free_port, save, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

LOCAL, SECOND_LOCAL, THIRD_LOCAL, FOURTH_LOCAL, FIFTH_LOCAL = "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.6"
OUTSIDE = "127.0.0.1"
"""The usual client: outside, because the configurations below do not list loopback as internal."""
INTERNAL = "127.0.0.5"
DENIED = "127.0.0.9"
FAILING = ("127.0.0.11", "127.0.0.12")
"""Clients of failed AUTH attempts: the listener slows down further AUTH from an address that failed,
which is load protection, not policy; each failing session comes from its own address."""
SENDER = "sender@example.org"
JANE, UNKNOWN, FOREIGN = "jane@acme.test", "nobody@acme.test", "someone@example.net"
NO_OPTIONS = {
    "tcp_auth_name_password": False, "tcp_auth_anonymous": False, "ssl_auth_client_certificate": False,
    "ssl_auth_name_password": False, "ssl_auth_anonymous": False,
}


@dataclass(frozen=True)
class Session:
    """One client session: where it connects from and to, what it sends, and the replies it is there for."""

    id: str
    expect: tuple
    client: str = OUTSIDE
    local: str = LOCAL
    port: str = "tcp"
    starttls: bool = False
    login: str = ""
    password: str | None = PASSWORD
    mail_from: str = SENDER
    recipients: tuple = (JANE,)
    helo: bool = False


@dataclass(frozen=True)
class Directory:
    """The documents of one listener, as overrides of the test fixtures' defaults, and its sessions."""

    id: str
    sessions: tuple
    server: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    sites: tuple = ()
    people: tuple = ()
    groups: tuple = ()


PEOPLE = (
    ("John Doe/Acme", "john@acme.test"),
    ("Bob Smith/Sales/Acme", "bob@acme.test"),
)

DIRECTORIES = [
    Directory(
        "server document, connection controls, relay and recipient limit",
        server={"smtp_inbound_ssl_status": "enabled"},
        config={"internal_hosts": [INTERNAL], "connection_deny_hosts": [DENIED], "max_recipients": 2},
        sessions=(
            Session("a denied client gets 554 then 503 to every command", client=DENIED,
                    expect=(("CONNECT", 554), ("EHLO", 503), ("MAIL", 503), ("RCPT", 503))),
            Session("AUTH is not offered in clear text and gets the site text with 503", login=JANE,
                    expect=(("CONNECT", 220), ("AUTH", 503), ("MAIL", 250), ("RCPT", 250))),
            Session("local, unknown, refused relay and too many recipients", recipients=(JANE, UNKNOWN, FOREIGN, JANE, JANE),
                    expect=(("RCPT", 250), ("RCPT", 550), ("RCPT", 554), ("RCPT", 452))),
            Session("an internal host may relay", client=INTERNAL, recipients=(FOREIGN,), expect=(("RCPT", 250),)),
            Session("an authenticated user may relay after STARTTLS", starttls=True, login=JANE, mail_from=JANE,
                    recipients=(FOREIGN,), expect=(("STARTTLS", 220), ("AUTH", 235), ("RCPT", 250))),
            Session("an authenticated user may send only as their own address", starttls=True, login=JANE,
                    expect=(("AUTH", 235), ("MAIL", 553), ("RCPT", 503))),
            Session("a wrong password gets 535 and the session closes", client=FAILING[0], starttls=True, login=JANE,
                    password="wrong",
                    expect=(("AUTH", 535), ("MAIL", None))),
            Session("an unknown login on the SSL port gets 535", client=FAILING[1], port="ssl", login="ghost@acme.test",
                    expect=(("CONNECT", 220), ("AUTH", 535), ("MAIL", None))),
            Session("postmaster is always accepted, bare and at a local domain, in any case",
                    recipients=("postmaster", "PostMaster@acme.test", "POSTMASTER@ACME.TEST"),
                    expect=(("RCPT", 250),)),
            Session("postmaster at a foreign domain is relay, and refused", recipients=("postmaster@example.net",),
                    expect=(("RCPT", 554),)),
            Session("HELO greets and anonymous mail goes through", helo=True, expect=(("HELO", 250), ("MAIL", 250), ("RCPT", 250))),
            Session("HELO then AUTH gets 503: AUTH needs EHLO", helo=True, login=JANE, expect=(("HELO", 250), ("AUTH", 503))),
            Session("a port the listener does not bind refuses the connection", port="unused", expect=(("CONNECT", None),)),
            Session("an address the listener does not bind refuses the connection", local=SECOND_LOCAL, expect=(("CONNECT", None),)),
        ),
    ),
    Directory(
        "anonymous refused, STARTTLS Required, server access enforced",
        server={
            "smtp_inbound_tcp_auth_anonymous": False, "smtp_inbound_ssl_auth_anonymous": False,
            "smtp_inbound_enforce_server_access": True, "access_server": ["*/Sales/Acme"], "not_access_server": ["Blocked"],
        },
        config={"starttls_inbound": "required"},
        people=PEOPLE,
        groups=(("Blocked", ["Bob Smith/Sales/Acme"]),),
        sessions=(
            Session("MAIL FROM before STARTTLS gets 530", expect=(("MAIL", 530), ("RCPT", 503))),
            Session("anonymous MAIL FROM after STARTTLS gets 530", starttls=True, expect=(("STARTTLS", 220), ("MAIL", 530))),
            Session("a user outside Access server is not authorized", client=FAILING[0], starttls=True, login="john@acme.test",
                    expect=(("AUTH", 535), ("MAIL", None))),
            Session("a user in Not access server is not authorized", client=FAILING[1], starttls=True,
                    login="Bob Smith/Sales/Acme",
                    expect=(("AUTH", 535),)),
            Session("a user allowed by Access server sends after STARTTLS", starttls=True, login="Jane Doe/Sales/Acme",
                    mail_from=JANE, expect=(("AUTH", 235), ("MAIL", 250), ("RCPT", 250))),
            Session("a login without password given is simulated as right", starttls=True, login=JANE, password=None,
                    expect=(("AUTH", 235),)),
        ),
    ),
    Directory(
        "TCP/IP Name & password Yes with STARTTLS Required: no AUTH before TLS",
        server={"smtp_inbound_tcp_auth_name_password": True},
        config={"starttls_inbound": "required"},
        sessions=(
            Session("AUTH in clear text gets 530 and the session goes on", login=JANE, expect=(("AUTH", 530), ("MAIL", 530))),
            Session("after STARTTLS AUTH is accepted", starttls=True, login=JANE, mail_from=JANE,
                    expect=(("STARTTLS", 220), ("AUTH", 235), ("MAIL", 250))),
            Session("postmaster is refused nothing but STARTTLS comes first", recipients=("postmaster",), expect=(("MAIL", 530),)),
        ),
    ),
    Directory(
        "TCP/IP Name & password Yes, STARTTLS Disabled, a low Error limit",
        server={"smtp_inbound_tcp_auth_name_password": True},
        config={"starttls_inbound": "disabled", "error_limit": 2, "internal_hosts": []},
        sessions=(
            Session("AUTH is offered and accepted in clear text", login=JANE, mail_from=JANE, recipients=(FOREIGN,),
                    expect=(("AUTH", 235), ("RCPT", 250))),
            Session("STARTTLS Disabled answers 454 and the client goes on in clear text", starttls=True,
                    expect=(("STARTTLS", 454), ("MAIL", 250))),
            Session("past the Error limit the client gets 421 and is closed", recipients=(UNKNOWN, FOREIGN, UNKNOWN, JANE),
                    expect=(("RCPT", 550), ("RCPT", 554), ("RCPT", 421), ("RCPT", None))),
        ),
    ),
    Directory(
        "Internet Sites: a site per local address",
        server={"load_internet_sites": True, "listen_addresses": [LOCAL, SECOND_LOCAL, THIRD_LOCAL, FOURTH_LOCAL, FIFTH_LOCAL],
                "smtp_inbound_ssl_status": "enabled"},
        sites=(
            ("All options No", {**NO_OPTIONS, "mapped_addresses": [LOCAL]}),
            ("Client certificate only", {**NO_OPTIONS, "ssl_auth_client_certificate": True, "mapped_addresses": [THIRD_LOCAL]}),
            ("Submission", {**NO_OPTIONS, "ssl_auth_name_password": True, "mapped_addresses": [FOURTH_LOCAL]}),
            ("Anonymous only", {**NO_OPTIONS, "tcp_auth_anonymous": True, "mapped_addresses": [FIFTH_LOCAL]}),
        ),
        sessions=(
            Session("a site with every option No is not enabled", expect=(("CONNECT", 554), ("EHLO", 503))),
            Session("an address no site maps is not enabled", local=SECOND_LOCAL, expect=(("CONNECT", 554), ("MAIL", 503))),
            Session("a client certificate alone leaves the TCP/IP port without method", local=THIRD_LOCAL,
                    expect=(("CONNECT", 554),)),
            Session("a client certificate alone enables the SSL port, where mail needs AUTH", local=THIRD_LOCAL, port="ssl",
                    expect=(("CONNECT", 220), ("MAIL", 530))),
            Session("the TCP/IP port enabled through STARTTLS refuses anonymous mail in clear text", local=FOURTH_LOCAL,
                    expect=(("CONNECT", 220), ("MAIL", 530))),
            Session("the same site accepts AUTH after STARTTLS", local=FOURTH_LOCAL, starttls=True, login=JANE, mail_from=JANE,
                    expect=(("STARTTLS", 220), ("AUTH", 235), ("RCPT", 250))),
            Session("the SSL port of a site with every option No is not enabled", port="ssl", expect=(("CONNECT", 554),)),
            Session("AUTH at a site whose TCP/IP Name & password is No gets the site text with 503", local=FIFTH_LOCAL,
                    login=JANE, expect=(("CONNECT", 220), ("AUTH", 503), ("MAIL", 250))),
        ),
    ),
]


# --- the directory --------------------------------------------------------------------------------


def build(directory, make_server, make_credentials, configuration):
    save(models.ConfigurationSettings, directory.config, instance=configuration)
    credentials = make_credentials("mail1-cert", HOST_NAME, LOCAL, SECOND_LOCAL, THIRD_LOCAL, FOURTH_LOCAL, FIFTH_LOCAL, "localhost")
    for full_name, address in directory.people:
        save(models.Person, {"full_name": full_name, "internet_address": address, "internet_password": PASSWORD})
    for name, members in directory.groups:
        save(models.Group, {"name": name, "group_type": "multi_purpose", "members": members})
    for name, site in directory.sites:
        save(models.InternetSite, {"name": name, "site_type": "smtp_inbound", "organization": "Acme", "servers": ["*"], **site})
    return make_server(tls_credentials=credentials.name, **directory.server)


def inputs_for(session, server):
    port = {"tcp": server.smtp_inbound_tcp_port, "ssl": server.smtp_inbound_ssl_port, "unused": free_port()}[session.port]
    return simulator.Inputs(
        client_ip=session.client, local_ip=session.local, port=port, starttls=session.starttls, login=session.login,
        password=session.password, mail_from=session.mail_from, recipients=session.recipients, helo=session.helo,
    )


# --- the real client --------------------------------------------------------------------------------


def no_verification():
    """The listener's certificate is not what these tests compare: accept it whatever it is."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Client:
    """A real smtplib client that sends what a simulator step says the client sends."""

    def __init__(self, inputs, ssl_port):
        self.inputs = inputs
        self.ssl_port = ssl_port
        self.smtp = None

    def send(self, step):
        """(code, text) of the listener's reply, or (None, "") when the connection is refused or closed."""
        try:
            return getattr(self, step.command.lower())(step)
        except (smtplib.SMTPServerDisconnected, ConnectionError, ssl.SSLError):
            return None, ""

    def connect(self, step):
        options = {"local_hostname": simulator.CLIENT_NAME, "timeout": 5, "source_address": (self.inputs.client_ip, 0)}
        if self.inputs.port == self.ssl_port:
            self.smtp = smtplib.SMTP_SSL(context=no_verification(), **options)
        else:
            self.smtp = smtplib.SMTP(**options)
        self.smtp._host = self.inputs.local_ip  # the name TLS uses; smtplib sets it only when the constructor connects
        code, text = self.smtp.connect(self.inputs.local_ip, self.inputs.port)
        return code, text.decode()

    def ehlo(self, step):
        code, text = self.smtp.ehlo(simulator.CLIENT_NAME)
        return code, text.decode()

    def helo(self, step):
        code, text = self.smtp.helo(simulator.CLIENT_NAME)
        return code, text.decode()

    def starttls(self, step):
        if step.code == 220:
            code, text = self.smtp.starttls(context=no_verification())
        else:
            code, text = self.smtp.docmd("STARTTLS")
        return code, text.decode()

    def auth(self, step):
        password = PASSWORD if self.inputs.password is None else self.inputs.password
        blob = base64.b64encode(f"\0{self.inputs.login}\0{password}".encode()).decode()
        code, text = self.smtp.docmd("AUTH", f"PLAIN {blob}")
        return code, text.decode()

    def mail(self, step):
        code, text = self.smtp.mail(step.argument)
        return code, text.decode()

    def rcpt(self, step):
        code, text = self.smtp.rcpt(step.argument)
        return code, text.decode()

    def close(self):
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (smtplib.SMTPException, OSError):
                self.smtp.close()


def play(simulation, ssl_port):
    """Send each simulated step to the listener; the replies got, as (command, code, text)."""
    client = Client(simulation.inputs, ssl_port)
    try:
        return [(step.command, *client.send(step)) for step in simulation.reply_steps]
    finally:
        client.close()


# --- the test --------------------------------------------------------------------------------------


@pytest.mark.parametrize("directory", DIRECTORIES, ids=[directory.id for directory in DIRECTORIES])
def test_simulator_predicts_every_reply_of_the_running_listener(
    directory, make_server, make_credentials, configuration, jane, run_listener,
):
    server = build(directory, make_server, make_credentials, configuration)
    listener = run_listener(server)
    wait_until(lambda: listener.service.snapshot.revision == current_revision(), message="the listener did not load the directory")
    snap = load_snapshot(server.name)
    for session in directory.sessions:
        simulation = simulator.simulate(snap, inputs_for(session, server))
        predicted = [(step.command, step.code, step.text) for step in simulation.reply_steps]
        for command, code in session.expect:
            assert (command, code) in [(c, k) for c, k, _text in predicted], (session.id, predicted)
        got = play(simulation, server.smtp_inbound_ssl_port)
        assert got == predicted, session.id
