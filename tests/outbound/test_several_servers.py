"""Several Server documents in one directory, served by ``runconsole --all-servers``: a listener and a
router for each, and a saved change reaches every listener within a second. The same test runs in the
SQLite and the PostgreSQL pass of .ci/run (the PostgreSQL one is the production set-up of
docs/admin/several-servers.md)."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from smtpservice.models import RouterStatus
from tests.deploy.conftest import BASE_DIR, stop, wait_for_port
from tests.outbound.conftest import change, database_url
from tests.smtpservice.conftest import free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def greeting(port: int) -> str:
    """The first reply line of a new SMTP session on 127.0.0.1:port."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        return sock.makefile("rb").readline().decode().strip()


@pytest.fixture
def runconsole(tmp_path):
    started = []

    def start(*arguments):
        port = free_port()
        log = tmp_path / "runconsole.log"
        env = {**os.environ, "DATABASE_URL": database_url(), "DEBUG": "1", "PYTHONUNBUFFERED": "1"}
        with open(log, "wb") as output:
            process = subprocess.Popen([sys.executable, "manage.py", "runconsole", "--port", str(port), *arguments],
                                       cwd=BASE_DIR, env=env, stdout=output, stderr=subprocess.STDOUT)
        started.append(process)
        wait_for_port(port, process, log)
        return process, log

    yield start
    for process in started:
        stop(process)


def test_runconsole_serves_every_server_and_a_change_reaches_each_listener_within_a_second(
        make_server, configuration, runconsole):
    servers = [make_server(), make_server(name="mail2/Acme", host_name="mail2.acme.test")]
    process, log = runconsole("--server", servers[0].name, "--all-servers")  # each server once
    for server in servers:
        wait_for_port(server.smtp_inbound_tcp_port, process, log)
        assert greeting(server.smtp_inbound_tcp_port).startswith("220 "), log.read_text()
    wait_until(lambda: RouterStatus.objects.filter(running=True).count() == 2, 30, log.read_text())

    change(configuration, connection_deny_hosts=["127.0.0.1"])
    saved = time.monotonic()

    for server in servers:
        wait_until(lambda server=server: greeting(server.smtp_inbound_tcp_port).startswith("554 "), 1.0 - (time.monotonic() - saved),
                   f"{server.name} still greets 220 a second after the change")

    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0, log.read_text()
    for server in servers:
        with pytest.raises(OSError):
            greeting(server.smtp_inbound_tcp_port)

