"""``manage.py runsmtp`` as a real process on the test database: it serves, stops cleanly on a signal,
and refuses to start for a server the directory does not know."""
import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from smtpservice.models import ListenerStatus, MailboxEntry
from tests.smtpservice.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

LOCAL = "127.0.0.1"
MESSAGE = b"From: sender@example.org\r\nTo: jane@acme.test\r\nSubject: Hello\r\n\r\nHello Jane.\r\n"
GRACE = 10


def database_url():
    """The test database as a DATABASE_URL for the child process (the settings read only that)."""
    database = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{database['NAME']}"
    user = quote(database["USER"]) + (f":{quote(database['PASSWORD'])}" if database["PASSWORD"] else "")
    return f"postgres://{user}@{database['HOST'] or 'localhost'}:{database['PORT'] or 5432}/{database['NAME']}"


def command(*arguments):
    return dict(
        args=[sys.executable, "manage.py", "runsmtp", *arguments],
        cwd=settings.BASE_DIR,
        env={**os.environ, "DATABASE_URL": database_url(), "DEBUG": "1", "PYTHONIOENCODING": "utf-8"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, encoding="utf-8",
    )


@pytest.fixture
def runsmtp(transactional_db):
    """Start ``manage.py runsmtp``; a process still running after the test is killed."""
    processes = []

    def start(*arguments):
        process = subprocess.Popen(**command(*arguments))
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.returncode is None:
            process.kill()
            process.communicate()


def refuses_connections(port):
    try:
        socket.create_connection((LOCAL, port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def wait_for_listener(process, port):
    def listening():
        assert process.poll() is None, process.communicate()
        return not refuses_connections(port)

    wait_until(listening, timeout=30, message="runsmtp did not start listening")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_refuses_new_connections_at_once_lets_the_open_session_finish_and_exits_0(
    signum, make_server, configuration, jane, runsmtp,
):
    server = make_server()
    port = server.smtp_inbound_tcp_port
    process = runsmtp("--server", server.name, "--grace", str(GRACE))
    wait_for_listener(process, port)

    with smtplib.SMTP(LOCAL, port, local_hostname="client.example.org", timeout=10) as ongoing:
        ongoing.ehlo()
        ongoing.mail("sender@example.org")
        ongoing.rcpt("jane@acme.test")
        process.send_signal(signum)
        wait_until(lambda: refuses_connections(port), timeout=2, message="new connections were still accepted")
        assert ongoing.data(MESSAGE)[0] == 250

    stdout, stderr = process.communicate(timeout=GRACE)
    assert process.returncode == 0, stderr
    assert stdout.splitlines() == [
        "SMTP listener for mail1/Acme started; SIGTERM or Ctrl-C stops it.", "SMTP listener stopped.",
    ]
    assert MailboxEntry.objects.filter(person=jane).count() == 1
    assert not ListenerStatus.objects.get(server=server).running


def test_session_still_open_when_the_grace_ends_is_closed_and_the_process_exits_0(make_server, configuration, runsmtp):
    server = make_server()
    port = server.smtp_inbound_tcp_port
    process = runsmtp("--server", server.name, "--grace", "0.5")
    wait_for_listener(process, port)

    with smtplib.SMTP(LOCAL, port, local_hostname="client.example.org", timeout=10) as idle:
        idle.ehlo()
        process.send_signal(signal.SIGTERM)
        _stdout, stderr = process.communicate(timeout=GRACE)
        assert process.returncode == 0, stderr
        with pytest.raises(smtplib.SMTPServerDisconnected):
            idle.noop()


def test_unknown_server_name_exits_non_zero_with_a_clear_message(configuration):
    result = subprocess.run(**command("--server", "nobody/Acme"), timeout=60)
    assert result.returncode != 0
    assert "No Server document is named “nobody/Acme”." in result.stderr
    assert "started" not in result.stdout


def test_each_session_s_log_line_is_written_while_the_listener_runs_not_kept_until_it_stops(make_server, configuration, jane, runsmtp):
    """The listener writes its INFO lines in batches (docs/performance.md): a batch goes out every quarter of a
    second, so an administrator following the log sees a session's line at once, with no traffic after it."""
    server = make_server()
    port = server.smtp_inbound_tcp_port
    process = runsmtp("--server", server.name, "--grace", "1")
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    wait_for_listener(process, port)
    with smtplib.SMTP(LOCAL, port, local_hostname="client.example.org", timeout=10) as client:
        client.sendmail("sender@example.org", ["jane@acme.test"], MESSAGE)
    wait_until(lambda: any("event=session_end" in line and "messages=1" in line for line in lines), timeout=5,
               message="the session's line was not written while the listener ran")
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=GRACE + 5) == 0
    reader.join(5)
    process.stdout.close()
    process.stderr.close()
