"""The dashboard's router panel: running or not (and the command to start it), last pass, queue depth
by state, the oldest message waiting, the last error, and a flag when a router uses older settings."""
import re

import pytest
from django.urls import reverse

from smtpservice.models import RouterStatus
from tests.outbound.conftest import ALPHA, change, queue_at
from tests.smtpservice.conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def panel(client, user, server):
    client.force_login(user)
    html = client.get(reverse("dashboard")).content.decode()
    found = re.search(rf'<section class="router-status[^"]*" id="router-status-{server.pk}".*?</section>', html, re.S)
    assert found, "the dashboard has the router's panel"
    text = " ".join(re.sub(r"<[^>]+>", " ", found.group(0)).split())
    return re.sub(r" ([,:])", r"\1", text)


def test_no_router_yet_says_how_to_start_it_and_shows_the_waiting_mail(client, reader, alpha):
    queue_at(alpha, ["ann@elsewhere.test"])

    text = panel(client, reader, alpha)

    assert "Router (outbound mail) Router not running" in text
    assert f"Router not running: no router has reported yet. Start it: python manage.py runrouter --server {ALPHA}" in text
    assert "1 recipient waiting: queued 1, in flight 0, delivered 0, deferred 0, failed 0, held 0" in text
    assert re.search(r"Oldest message waiting received .+? \(0.minutes ago\)", text)
    assert "Last pass over the queue never" in text


def test_a_running_router_shows_its_last_pass_and_last_error(client, reader, alpha, configuration, make_router):
    closed = free_port()
    change(configuration, routes=f"elsewhere.test 127.0.0.1:{closed}")
    queue_at(alpha, ["ann@elsewhere.test"])

    make_router(alpha).run_once()
    text = panel(client, reader, alpha)

    assert re.search(r"Router running: 1 process, \d+ on \S+", text)
    assert "Router settings current" in text
    assert "deferred 1" in text
    assert re.search(r"Last pass over the queue .+? \(0.minutes ago\)", text)
    assert f"Last error Connection refused by 127.0.0.1 port {closed}: no server listens there." in text


def test_a_router_on_older_settings_is_flagged(client, reader, alpha, configuration, make_router):
    router = make_router(alpha)
    router.run_once()
    change(configuration, routes="elsewhere.test 127.0.0.1:2526")  # the router has not looked since

    text = panel(client, reader, alpha)

    assert "Router uses older settings" in text
    status = RouterStatus.objects.get()
    assert f"Router {status.pid} on {status.host} uses settings revision {status.revision}, older than the directory's" in text


def test_a_stopped_router_is_not_running(client, reader, alpha, make_router):
    router = make_router(alpha)
    router.run_once()
    router.finish()

    text = panel(client, reader, alpha)

    assert "Router not running: its last heartbeat was" in text
    assert RouterStatus.objects.get().running is False
