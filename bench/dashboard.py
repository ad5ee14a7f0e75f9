#!/usr/bin/env python3
"""How fast the dashboard is with a month of traffic: 100,000 session log rows and a relay queue.

Builds a throw-away SQLite directory under /tmp (or uses ``DATABASE_URL``, e.g. a PostgreSQL test
database) with the demo documents, ``--rows`` session log rows spread over the last 30 days (one in
five with a refusal, one in twenty with an AUTH failure) and ``--queue`` queued recipients, then asks
for the dashboard ``--requests`` times through Django's test client, signed in as the admin, and
prints the median and 95th percentile. The first request, which counts the settled hours of the day
into their rollups, is reported on its own.

Usage: .venv/bin/python bench/dashboard.py [--rows 100000] [--queue 2000] [--requests 200]
"""
import argparse
import datetime
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SESSIONS = [
    ([{"command": "MAIL", "rule": "mail_from", "detail": "", "reply": "250 OK"}], 1),
    ([{"command": "RCPT", "rule": "user_unknown", "detail": "", "reply": "550 5.1.1 User unknown"}], 0),
    ([{"command": "AUTH", "rule": "wrong_password", "detail": "", "reply": "535 5.7.8 Authentication credentials invalid"}], 0),
]


def build(rows, queued):
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.utils import timezone

    from directory.models import Server
    from smtpservice.models import QueuedRecipient, ReceivedMessage, SessionLog

    call_command("migrate", verbosity=0)
    call_command("loaddemo", verbosity=0)
    server = Server.objects.order_by("name").first()
    now, month = timezone.now(), datetime.timedelta(days=30)
    chooser = random.Random(13)
    batch = []
    for index in range(rows):
        events, accepted = SESSIONS[0 if index % 5 else (1 if index % 20 else 2)]
        started = now - month * chooser.random()
        batch.append(SessionLog(
            server=server, session_id=f"s{index}", started_at=started, ended_at=started + datetime.timedelta(seconds=3),
            client_address="192.0.2.7", local_address="127.0.0.1", local_port=25, port_kind="tcp",
            events=events + [{"command": "QUIT", "rule": "quit", "detail": "", "reply": "221 Bye"}], messages_accepted=accepted,
        ))
    SessionLog.objects.bulk_create(batch, batch_size=5000)
    for index in range(queued):
        message = ReceivedMessage.objects.create(
            server=server, received_at=now - datetime.timedelta(minutes=index % 1440), recipients=["x@partner.test"],
            size=10, data=b"Subject: x\r\n\r\nx\r\n", local_port=25,
        )
        delivered = index % 3 == 0
        QueuedRecipient.objects.create(
            message=message, recipient="x@partner.test",
            state=QueuedRecipient.State.DELIVERED if delivered else QueuedRecipient.State.DEFERRED,
            delivered_at=message.received_at + datetime.timedelta(minutes=5) if delivered else None,
        )
    return User.objects.create_superuser("bench", password="bench-pass-1234")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queue", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=200)
    options = parser.parse_args()
    data = tempfile.mkdtemp(prefix="dashboard-bench.")
    os.environ.setdefault("DATA_DIR", data)
    # As in production: DEBUG off (no SQL logging, cached templates); plain HTTP for the test client.
    for name, value in (("DEBUG", "0"), ("SECRET_KEY", "bench-only-" + os.urandom(16).hex()), ("SECURE_SSL_REDIRECT", "0"),
                        ("SESSION_COOKIE_SECURE", "0"), ("CSRF_COOKIE_SECURE", "0"), ("STATIC_ROOT", os.path.join(data, "static"))):
        os.environ.setdefault(name, value)
    os.environ["DJANGO_SETTINGS_MODULE"] = "adminconsole.settings"
    sys.path.insert(0, str(BASE_DIR))
    os.chdir(BASE_DIR)
    try:
        import django

        django.setup()
        from django.test import Client
        from django.test.utils import setup_test_environment

        setup_test_environment()
        from django.core.management import call_command

        call_command("collectstatic", interactive=False, verbosity=0)  # the page names hashed static files, as in production
        started = time.perf_counter()
        user = build(options.rows, options.queue)
        print(f"# built {options.rows} session log rows and {options.queue} queued recipients in {time.perf_counter() - started:.1f} s")
        client = Client()
        client.force_login(user)

        def timed():
            """Wall-clock and CPU milliseconds of one request: on a shared machine the CPU time shows our own cost."""
            began, began_cpu = time.perf_counter(), time.process_time()
            response = client.get("/", HTTP_ACCEPT_LANGUAGE="en")
            assert response.status_code == 200, response.status_code
            return (time.perf_counter() - began) * 1000, (time.process_time() - began_cpu) * 1000

        print(f"first request (settles the day's hours): {timed()[0]:.1f} ms")
        samples = [timed() for _ in range(options.requests)]
        load = os.getloadavg()[0]
        for label, values in (("wall-clock", sorted(wall for wall, _cpu in samples)), ("CPU", sorted(cpu for _wall, cpu in samples))):
            p95 = values[int(len(values) * 0.95) - 1]
            print(f"dashboard {label} over {options.requests} requests: median {statistics.median(values):.1f} ms, "
                  f"p95 {p95:.1f} ms, max {values[-1]:.1f} ms")
        print(f"# load average during the run: {load:.1f} on {os.cpu_count()} CPUs")
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
