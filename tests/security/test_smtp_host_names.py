"""Host names in host lists and Internet Site mappings, matched by the running listener (finding 2).

The client's name comes from a reverse lookup confirmed by a forward lookup (127.0.0.1 is
``localhost`` on this machine, through /etc/hosts); a Site mapped by host name matches the name the
client connected to.
"""
import pytest

from smtpservice.models import SessionLog
from tests.security.smtp_client import RawClient, greeted
from tests.smtpservice.conftest import save, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def change(document, **values):
    return save(type(document), values, instance=document)


@pytest.mark.parametrize("entry", ["localhost", "LOCALHOST"])
def test_a_host_name_in_deny_connections_refuses_the_client_with_that_name(make_server, configuration, run_listener, entry):
    change(configuration, connection_deny_hosts=[entry])
    server = make_server()
    run_listener(server)
    client = RawClient(server.smtp_inbound_tcp_port)
    assert client.reply() == (554, "5.7.1 Connection denied for policy reasons.")
    client.close()
    log = wait_until(lambda: SessionLog.objects.first(), message="no session log")
    assert entry in log.events[0]["detail"]


def test_a_name_that_does_not_match_lets_the_client_in(make_server, configuration, run_listener):
    change(configuration, connection_deny_hosts=["mail.example.net", ".example.org"])
    server = make_server()
    run_listener(server)
    client = greeted(server.smtp_inbound_tcp_port)
    assert client.command("NOOP")[0] == 250
    client.close()


def test_a_site_mapped_by_host_name_serves_the_clients_that_connect_to_that_name(make_server, make_site, configuration, run_listener):
    make_site("By name", mapped_addresses=["localhost"], tcp_auth_anonymous=True)
    server = make_server(load_internet_sites=True)
    run_listener(server)
    client = greeted(server.smtp_inbound_tcp_port)
    client.ehlo()
    assert client.command("MAIL FROM:<sender@example.org>") == (250, "2.1.0 OK")
    client.close()
