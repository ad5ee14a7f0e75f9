"""``runsmtp --workers 2``: two processes share every port, and what the console relies on still holds:
a saved change rebinds in every worker within a second, the status row (the drift flag's source)
follows the new revision, and the session limits hold in sum."""
import signal
import socket
import time

import pytest

from directory import models
from smtpservice.models import ListenerStatus
from smtpservice.store.snapshot import current_revision
from tests.smtpservice.conftest import free_port, save, wait_until
from tests.smtpservice.test_runsmtp import LOCAL, refuses_connections, runsmtp, wait_for_listener  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db(transaction=True)


def greeting(port):
    """The first reply line of a new connection, or "" when the connection is refused or closed."""
    try:
        with socket.create_connection((LOCAL, port), timeout=5) as sock:
            return sock.recv(200).decode()
    except OSError:
        return ""


def fresh_workers(server):
    status = ListenerStatus.objects.filter(server=server).first()
    return status.workers if status else {}


def test_a_saved_port_change_rebinds_in_every_worker_within_a_second(make_server, configuration, runsmtp):
    server = make_server()
    old_port, new_port = server.smtp_inbound_tcp_port, free_port()
    process = runsmtp("--server", server.name, "--workers", "2", "--grace", "1")
    wait_for_listener(process, old_port)
    wait_until(lambda: len(fresh_workers(server)) == 2, timeout=10, message="both workers did not report")

    save(models.Server, {"smtp_inbound_tcp_port": new_port}, instance=server)
    changed = time.monotonic()
    wait_until(lambda: all(greeting(new_port).startswith("220 ") for _ in range(20)), timeout=2,
               message="the new port is not served")
    wait_until(lambda: refuses_connections(old_port), timeout=2, message="a worker still serves the old port")
    assert time.monotonic() - changed < 1.5
    revision = current_revision()
    wait_until(lambda: ListenerStatus.objects.get(server=server).revision == revision, timeout=5,
               message="the status row (the drift flag's source) did not follow the change")
    process.send_signal(signal.SIGTERM)
    _stdout, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    assert not ListenerStatus.objects.get(server=server).running


def test_the_session_limit_per_client_holds_across_workers(make_server, configuration, runsmtp):
    """Counted across the workers, not 1/N each: the client gets exactly its limit, however the kernel spreads
    its connections over three workers (with shares of 2 each, a client could be refused at 3)."""
    server = make_server()
    port = server.smtp_inbound_tcp_port
    process = runsmtp("--server", server.name, "--workers", "3", "--max-sessions-per-client", "5")
    wait_for_listener(process, port)
    sockets = []
    try:
        replies = []
        for _attempt in range(10):
            sock = socket.create_connection((LOCAL, port), timeout=5)
            sockets.append(sock)
            replies.append(sock.recv(200).decode())
        accepted = [reply for reply in replies if reply.startswith("220 ")]
        refused = [reply for reply in replies if reply.startswith("421 ")]
        assert replies[:5] == [replies[0]] * 5 and replies[0].startswith("220 "), replies
        assert len(accepted) == 5 and len(refused) == 5, replies
    finally:
        for sock in sockets:
            sock.close()
    process.send_signal(signal.SIGTERM)
    _stdout, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
