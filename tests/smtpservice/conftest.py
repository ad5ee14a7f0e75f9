"""Fixtures that run the real listener on loopback and make real TLS certificates at test time."""
import socket
import ssl
import threading
import time

import pytest
import trustme

from directory import audit, forms, models
from smtpservice.listener.service import ListenerService

HOST_NAME = "mail1.acme.test"
PASSWORD = "Jane-secret-1234"


def free_ports(count):
    """Distinct free loopback ports: every socket stays open until all are chosen."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port():
    return free_ports(1)[0]


def wait_until(condition, timeout=5.0, message="the condition did not hold in time"):
    """Poll ``condition`` until it returns something true, and return that; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, message
        time.sleep(0.02)


@pytest.fixture(scope="session")
def ca():
    return trustme.CA()


@pytest.fixture
def client_tls(ca):
    """An SSL context for clients that trusts the test CA (and checks the certificate and host name)."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def save(model, data, instance=None):
    """Save a document through its console form, so tests use only valid settings."""
    if instance is not None:
        current = {key: value for key, value in forms.FORMS[model](instance=instance).initial.items()}
        data = {**current, **data}
    form = forms.FORMS[model](data=data, instance=instance)
    assert form.is_valid(), form.errors
    return audit.save_document(form, None, source="tests")


@pytest.fixture
def make_credentials(ca):
    def make(name="mail1-cert", *hosts):
        certificate = ca.issue_cert(*(hosts or (HOST_NAME, "127.0.0.1", "localhost")))
        chain = "".join(blob.bytes().decode() for blob in certificate.cert_chain_pems)
        return save(models.TLSCredentials, {
            "name": name, "certificate_pem": chain, "private_key_pem": certificate.private_key_pem.bytes().decode(),
        })

    return make


SERVER_DEFAULTS = {
    "name": "mail1/Acme", "host_name": HOST_NAME, "smtp_listener_enabled": True, "load_internet_sites": False,
    "listen_addresses": ["127.0.0.1"], "internet_authentication": "fewer",
    "smtp_inbound_tcp_status": "enabled", "smtp_inbound_ssl_status": "disabled",
    "smtp_outbound_tcp_port": 25, "smtp_outbound_tcp_status": "enabled",
    "smtp_outbound_ssl_port": 465, "smtp_outbound_ssl_status": "disabled",
}


@pytest.fixture
def make_server(transactional_db):
    """A Server document on free loopback ports (TCP/IP and SSL), with any field overridden."""

    def make(**overrides):
        tcp_port, ssl_port = free_ports(2)
        data = {**SERVER_DEFAULTS, "smtp_inbound_tcp_port": tcp_port, "smtp_inbound_ssl_port": ssl_port, **overrides}
        return save(models.Server, data)

    return make


SITE_DEFAULTS = {
    "site_type": "smtp_inbound", "organization": "Acme", "mapped_addresses": ["*"], "servers": ["*"],
    "tcp_auth_name_password": False, "tcp_auth_anonymous": True,
    "ssl_auth_client_certificate": False, "ssl_auth_name_password": True, "ssl_auth_anonymous": True,
}


@pytest.fixture
def make_site(transactional_db):
    """An SMTP Inbound Internet Site document (spec defaults), with any field overridden."""

    def make(name="Acme SMTP", **overrides):
        return save(models.InternetSite, {**SITE_DEFAULTS, "name": name, **overrides})

    return make


@pytest.fixture
def configuration(transactional_db):
    """The default Configuration Settings (*) with acme.test local; tests change it with save()."""
    return save(models.ConfigurationSettings, {
        "local_domains": ["acme.test"], "relay_auth": "disabled", "starttls_inbound": "enabled",
        "anti_relay_enforcement": "external", "max_message_size_kb": 10240, "max_recipients": 100,
        "error_limit": 10, "internal_hosts": ["127.0.0.0/8", "::1"],
    })


@pytest.fixture
def jane(transactional_db):
    return save(models.Person, {
        "full_name": "Jane Doe/Sales/Acme", "first_name": "Jane", "last_name": "Doe", "short_name": "jdoe",
        "internet_address": "jane@acme.test", "internet_password": PASSWORD,
    })


class RunningListener:
    """A ListenerService on its own event loop in a thread, as ``runsmtp`` runs it in a process."""

    def __init__(self, server_name, **options):
        options.setdefault("poll_interval", 0.1)
        options.setdefault("heartbeat_interval", 0.5)
        options.setdefault("retry_interval", 0.5)
        options.setdefault("shutdown_grace", 2.0)
        self.service = ListenerService(server_name, **options)
        self.service.ready = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, name="test-listener", daemon=True)

    def _run(self):
        import asyncio

        try:
            asyncio.run(self.service.run())
        except BaseException as error:  # reported by start() and stop()
            self.error = error
            self.service.ready.set()

    def start(self):
        self.thread.start()
        assert self.service.ready.wait(10), "listener did not start"
        if self.error:
            raise self.error
        return self

    def stop(self):
        if self.thread.is_alive():
            self.service.stop()
            self.thread.join(15)
        assert not self.thread.is_alive(), "listener did not stop"
        if self.error:
            raise self.error


@pytest.fixture
def run_listener(transactional_db):
    """Start the listener of a Server document; every listener started is stopped after the test."""
    running = []

    def start(server, **options):
        listener = RunningListener(server.name, **options).start()
        running.append(listener)
        return listener

    yield start
    for listener in running:
        listener.stop()
