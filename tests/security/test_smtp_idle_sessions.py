"""Idle sessions cannot fill every slot (finding 6): at the session limit the longest-idle session makes
room, near the limit idle sessions get a short timeout, and only the data rate can end a DATA."""
import time

import pytest

from smtpservice.core.limits import Limits
from smtpservice.listener import service as listener_service
from tests.security.smtp_client import RawClient, greeted

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def start(make_server, configuration, jane, run_listener):
    def start_listener(idle_timeout=300.0, **limits):
        server = make_server()
        run_listener(server, limits=Limits(**{"watch_interval": 0.05, **limits}), idle_timeout=idle_timeout)
        return server.smtp_inbound_tcp_port

    return start_listener


def test_at_the_session_limit_the_longest_idle_session_makes_room_for_a_new_client(start):
    port = start(max_sessions=4, max_sessions_per_client=10)
    idle = []
    for n in range(4):
        client = greeted(port, source=f"127.0.2.{n + 1}")
        idle.append(client)
        time.sleep(0.3)  # the first is the longest idle
    time.sleep(listener_service.EVICTABLE_IDLE)
    newcomer = greeted(port, source="127.0.2.50")
    assert idle[0].reply() == (421, "4.3.2 Server busy, closing idle connection")
    assert idle[0].closed_within(2)
    assert newcomer.command("NOOP") == (250, "2.0.0 OK")
    assert idle[3].command("NOOP") == (250, "2.0.0 OK"), "a session other than the idlest was closed"
    for client in [newcomer, *idle]:
        client.close()


def test_a_busy_session_is_not_evicted_and_a_flood_of_new_sessions_is_refused(start):
    port = start(max_sessions=2, max_sessions_per_client=10)
    busy = [greeted(port, source=f"127.0.3.{n + 1}") for n in range(2)]
    refused = RawClient(port, source="127.0.3.9")
    # Both sessions are fresh (idle for less than EVICTABLE_IDLE): nobody is closed for the newcomer.
    assert refused.reply() == (421, "4.3.2 Too many connections, try again later")
    for client in busy:
        assert client.command("NOOP") == (250, "2.0.0 OK")
        client.close()
    refused.close()


def test_near_the_limit_idle_sessions_get_a_short_timeout(start, monkeypatch):
    monkeypatch.setattr(listener_service, "PRESSURE_IDLE_TIMEOUT", 0.5)
    port = start(max_sessions=5, max_sessions_per_client=10)
    clients = [greeted(port, source=f"127.0.4.{n + 1}") for n in range(4)]  # 4 of 5: above 80 %
    assert clients[0].reply(timeout=3) == (421, "4.4.2 Idle timeout, closing connection")
    for client in clients:
        client.close()


def test_the_idle_timeout_never_ends_a_data_that_keeps_coming(start):
    port = start(idle_timeout=0.5, min_data_rate=1, data_grace=30)
    client = greeted(port)
    client.ehlo()
    for line in ("MAIL FROM:<sender@example.org>", "RCPT TO:<jane@acme.test>"):
        assert client.command(line)[0] == 250
    assert client.command("DATA")[0] == 354
    for n in range(6):  # 1.8 s of DATA, well past the 0.5 s idle timeout, a line every 0.3 s
        client.send(b"Subject: slow\r\n" if n == 0 else b"a line of a slow message\r\n")
        time.sleep(0.3)
    client.send(b".\r\n")
    assert client.reply()[0] == 250
    assert client.command("NOOP")[0] == 250
    time.sleep(1.0)
    assert client.closed_within(1.0), "an idle session outside DATA was not closed"
    client.close()
