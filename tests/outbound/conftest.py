"""Two servers in one directory, an in-process router, SMTP sinks and router processes.

The listener, TLS and document fixtures are those of the listener's tests, unchanged.
"""
import asyncio
import email
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from django.db import connection

from directory import models
from smtpservice.models import ReceivedMessage
from smtpservice.router.service import Router
from smtpservice.store import storage
from smtpservice.store.queue import store
from tests.smtpservice.conftest import *  # noqa: F401,F403 (fixtures: make_server, run_listener, configuration, jane...)
from tests.smtpservice.conftest import free_port, save

BASE_DIR = Path(__file__).resolve().parent.parent.parent
ALPHA = "mail1/Acme"
BETA = "mail2/Beta"
BETA_HOST = "mail2.beta.test"
BOB = "bob@beta.test"
BOB_PASSWORD = "Bob-secret-5678"
JANE = "jane@acme.test"

CONFIG_DEFAULTS = {
    "relay_auth": "disabled", "starttls_inbound": "enabled", "anti_relay_enforcement": "external",
    "max_message_size_kb": 10240, "max_recipients": 100, "error_limit": 10, "internal_hosts": ["127.0.0.0/8", "::1"],
}


def message_bytes(subject="Hello Bob", to=BOB, sender=JANE, message_id=None):
    headers = f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
    if message_id:
        headers += f"Message-ID: {message_id}\r\n"
    return (headers + "\r\nHello from Acme.\r\n").encode()


def queue_at(server, recipients, sender=JANE, subject="Hello Bob"):
    """Queue a message at ``server`` as the console does; returns the ReceivedMessage."""
    snap, server_id = storage.load(server.name)
    message_pk, unknown = store(snap, server_id, sender, recipients, message_bytes(subject, ", ".join(recipients), sender),
                                ReceivedMessage.Origin.CONSOLE)
    assert not unknown
    return ReceivedMessage.objects.get(pk=message_pk)


@pytest.fixture
def alpha(make_server, configuration, jane):
    """Server A (mail1/Acme, local domain acme.test, Jane's mailbox) with a route for beta.test to 127.0.0.1."""
    server = make_server()
    save(models.ConfigurationSettings, {"routes": [{"domain": "beta.test", "host": "127.0.0.1"}]}, instance=configuration)
    return server


@pytest.fixture
def beta(make_server, make_credentials, transactional_db):
    """Server B (mail2/Beta, local domain beta.test, Bob's mailbox), with TLS credentials for 127.0.0.1 and
    its SSL port Enabled; its TCP/IP port is a free non-standard port."""
    make_credentials("beta-cert", BETA_HOST, "127.0.0.1")
    server = make_server(name=BETA, host_name=BETA_HOST, tls_credentials="beta-cert", smtp_inbound_ssl_status="enabled")
    save(models.ConfigurationSettings, {**CONFIG_DEFAULTS, "server": BETA, "local_domains": ["beta.test"]})
    save(models.Person, {"full_name": "Bob Smith/Beta", "first_name": "Bob", "last_name": "Smith",
                         "internet_address": BOB, "internet_password": BOB_PASSWORD})
    return server


def change(document, **fields):
    """Save changed fields of a document through its console form, as an administrator would."""
    return save(type(document), fields, instance=type(document).objects.get(pk=document.pk))


def beta_configuration():
    return models.ConfigurationSettings.objects.get(server__name=BETA)


@pytest.fixture
def ca_file(ca, tmp_path):
    """The test CA as a PEM bundle on disk, for a route's ca= option."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def make_router(transactional_db):
    """An in-process Router (run it with ``run_once()``); its worker threads end after the test."""
    routers = []

    def make(server, **options):
        options.setdefault("timeout", 5)
        router = Router(server.name, **options)
        routers.append(router)
        return router

    yield make
    for router in routers:
        router.pool.shutdown(wait=True)


class Sink:
    """aiosmtpd handler that accepts everything and keeps each message.

    With ``stall_first`` it keeps the first message and then waits before answering 250, like a
    server that stored a message and is slow to say so: a client killed meanwhile never sees the 250.
    """

    def __init__(self, stall_first=False):
        self.messages = []
        self.stall = stall_first
        self.data_started = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append(email.message_from_bytes(envelope.original_content))
        if self.stall:
            self.stall = False
            self.data_started.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 60)
        return "250 2.0.0 OK"

    def message_ids(self):
        with self.lock:
            return [message["Message-ID"] for message in self.messages]


@pytest.fixture
def sink():
    """Start an SMTP sink on a free loopback port: ``sink(stall_first=False)`` -> (handler, port)."""
    controllers = []

    def start(stall_first=False):
        handler = Sink(stall_first)
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append((controller, handler))
        return handler, port

    yield start
    for controller, handler in controllers:
        handler.release.set()
        controller.stop()


def database_url():
    """The test database as DATABASE_URL, so router processes use the same one."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}?timeout=20&transaction_mode=IMMEDIATE"
    password = f":{settings['PASSWORD']}" if settings["PASSWORD"] else ""
    return f"postgres://{settings['USER']}{password}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/{settings['NAME']}"


class RouterProcess:
    """``manage.py runrouter`` as a real process, its output kept in a file for the failure report."""

    def __init__(self, server_name, log_path, *extra, lease_seconds=2):
        env = {
            **os.environ, "DATABASE_URL": database_url(), "DEBUG": "1", "PYTHONUNBUFFERED": "1",
            "ROUTER_LEASE_SECONDS": str(lease_seconds), "ROUTER_SMTP_TIMEOUT": "30",
        }
        self.log_path = log_path
        self.output = open(log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "runrouter", "--server", server_name, *extra],
            cwd=BASE_DIR, env=env, stdout=self.output, stderr=subprocess.STDOUT,
        )

    def log(self):
        return Path(self.log_path).read_text(errors="replace")

    def started(self):
        return "started" in self.log()

    def terminate(self, timeout=20):
        """SIGTERM, then the exit status (the router finishes the message it is sending)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self):
        self.process.kill()
        self.process.wait(10)

    def close(self):
        if self.process.poll() is None:
            self.kill()
        self.output.close()


@pytest.fixture
def router_process(tmp_path, transactional_db):
    """Start ``runrouter --server NAME`` processes; any still running after the test is killed."""
    processes = []

    def start(server_name, *extra, **options):
        process = RouterProcess(server_name, tmp_path / f"router-{len(processes)}.log", *extra, **options)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.close()
