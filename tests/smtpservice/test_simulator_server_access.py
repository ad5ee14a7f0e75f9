"""Finding 8 of the second audit: with Enforce server access Yes, a person in Not access server is refused
at AUTH but may send anonymously (spec 3.5, decided); the policy simulator shows both."""
import html

import pytest
from django.test import Client
from django.urls import reverse

from tests.smtpservice.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def reader_client(reader):
    client = Client()
    client.force_login(reader)
    return client


def simulate(client, server, **data):
    form = {"client_address": "203.0.113.5", "local_address": "127.0.0.1", "tls": "none", "mail_from": "jane@acme.test",
            "recipients": "jane@acme.test", **data}
    return html.unescape(client.post(reverse("explain:simulator", args=[server.pk]), form).content.decode())


def test_the_simulator_shows_that_a_person_refused_at_auth_can_still_send_anonymously(
        reader_client, make_server, configuration, jane):
    server = make_server(smtp_inbound_enforce_server_access=True, not_access_server=["Jane Doe/Sales/Acme"],
                         smtp_inbound_tcp_auth_name_password=True)

    authenticated = simulate(reader_client, server, login="jane@acme.test", password=PASSWORD)
    assert "535 5.7.1" in authenticated

    anonymous = simulate(reader_client, server)
    assert "250 2.1.5" in anonymous
    assert "this anonymous session is not checked against Access server and Not access server" in anonymous

    server.smtp_inbound_enforce_server_access = False
    server.save()
    assert "this anonymous session is not checked" not in simulate(reader_client, server)
