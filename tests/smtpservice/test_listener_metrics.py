"""The listener's /metrics, scraped from a real ``runsmtp --metrics`` process after a delivered message
and a refused recipient: both counted, the refusal with its policy rule."""
import smtplib
import subprocess
import sys

import pytest

from tests.deploy.conftest import BASE_DIR, production_env, scrape, stop, wait_for_port
from tests.smtpservice.conftest import free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGE = b"From: ann@example.test\r\nTo: jane@acme.test\r\nSubject: Metrics\r\n\r\nHello Jane.\r\n"


def test_runsmtp_serves_no_metrics_unless_asked():
    from django.core.management import get_commands, load_command_class

    parser = load_command_class(get_commands()["runsmtp"], "runsmtp").create_parser("manage.py", "runsmtp")
    assert parser.parse_args(["--server", "mail1/Acme"]).metrics is None


@pytest.mark.parametrize("run_directory", ["made by runsmtp", "given by systemd"])
def test_listener_metrics_count_a_delivered_message_and_a_refused_recipient(make_server, configuration, jane, tmp_path, run_directory):
    """With systemd's PROMETHEUS_MULTIPROC_DIR as with ``--metrics`` alone, the workers' values are summed and
    the supervisor's own (a settings revision of 0) stay out of the sums."""
    server = make_server()
    port = server.smtp_inbound_tcp_port
    metrics_port = free_port()
    log = tmp_path / "runsmtp.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runsmtp", "--server", server.name, "--metrics", f"127.0.0.1:{metrics_port}"],
            cwd=BASE_DIR, stdout=output, stderr=subprocess.STDOUT, env=production_env(
                **({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)} if run_directory == "given by systemd" else {})),
        )
    try:
        wait_for_port(port, process, log)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("ann@example.test", ["jane@acme.test"], MESSAGE)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo()
            client.mail("ann@example.test")
            code, _reply = client.rcpt("nobody@acme.test")
            assert code == 550
        # The revision in use is the oldest across workers: 0 until every worker has loaded its settings
        # (on PostgreSQL runsmtp starts one worker per core, and the second may still be starting).
        samples = wait_until(lambda: (found := scrape(metrics_port)).get(("smtp_listener_settings_revision", ())) and found, 10)
    finally:
        stop(process)

    replies = {dict(labels)["rule"]: dict(labels)["code"] for (name, labels), _value in samples.items()
               if name == "smtp_listener_replies_total"}
    assert replies.get("user_unknown") == "550", "the refusal is counted with its rule"
    assert samples[("smtp_listener_messages_accepted_total", ())] == 1
    assert samples[("smtp_listener_accepted_bytes_total", ())] >= len(MESSAGE)
    assert samples[("smtp_listener_store_duration_seconds_count", ())] == 1
    # The readiness probe (wait_for_port) is a connection too: it and the two clients.
    assert samples[("smtp_listener_connections_total", (("port", str(port)),))] == 3
    assert samples[("smtp_listener_open_sessions", (("port", str(port)),))] == 0
    assert samples[("smtp_listener_settings_revision", ())] > 0
