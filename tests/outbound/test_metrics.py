"""The router's /metrics, scraped from a real ``runrouter --metrics`` process after a delivered and a
refused message; and several processes summed in one scrape (multiprocess mode)."""
import os
import subprocess
import sys

import pytest
from aiosmtpd.controller import Controller

from smtpservice.models import QueuedRecipient
from tests.deploy.conftest import scrape
from tests.outbound.conftest import ALPHA, BASE_DIR, Sink, change, queue_at
from tests.smtpservice.conftest import free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


class RefusingSink(Sink):
    """Accepts mail, except for nobody@..., which gets 550 at RCPT."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("nobody@"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"


@pytest.fixture
def refusing_sink():
    handler, port = RefusingSink(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def test_router_metrics_count_a_delivered_and_a_refused_message(alpha, configuration, refusing_sink, router_process):
    handler, sink_port = refusing_sink
    change(configuration, routes=f"sink.test 127.0.0.1:{sink_port}")
    metrics_port = free_port()
    router = router_process(ALPHA, "--metrics", f"127.0.0.1:{metrics_port}")
    queue_at(alpha, ["ann@sink.test"])
    queue_at(alpha, ["nobody@sink.test"])

    wait_until(lambda: not QueuedRecipient.objects.filter(state__in=["queued", "in_flight"]).exists(), 30, router.log())
    samples = wait_until(
        lambda: (found := scrape(metrics_port)).get(("smtp_router_queue_recipients", (("state", "failed"),))) == 1 and found,
        10, router.log(),
    )

    assert samples[("smtp_router_deliveries_total", (("outcome", "delivered"),))] == 1
    assert samples[("smtp_router_deliveries_total", (("outcome", "failed"),))] == 1
    assert {labels[0][1]: value for (name, labels), value in samples.items() if name == "smtp_router_queue_recipients"} == {
        "queued": 0, "in_flight": 0, "delivered": 1, "deferred": 0, "failed": 1, "held": 0,
    }, "every state is exported, even at zero"
    assert samples[("smtp_router_delivery_attempts_count", ())] == 2, "both reached their final outcome at the first try"
    assert samples[("smtp_router_delivery_duration_seconds_count", ())] == 2
    assert samples[("smtp_router_last_pass_timestamp_seconds", ())] > 0
    assert len(handler.messages) == 1


def test_runrouter_refuses_a_metrics_address_without_a_port(alpha):
    result = subprocess.run([sys.executable, "manage.py", "runrouter", "--server", ALPHA, "--metrics", "127.0.0.1"],
                            cwd=BASE_DIR, capture_output=True, text=True, timeout=60, env={**os.environ, "DEBUG": "1"})
    assert result.returncode == 2
    assert "“127.0.0.1” is not HOST:PORT, such as 127.0.0.1:9120." in result.stderr


WORKER = """
from smtpservice import metrics
metrics.delivery("delivered", 0.5, 1, final=True)
metrics.session_opened(25)
metrics.stop(None)  # what every daemon does as it exits
"""

SERVER = """
import sys
from smtpservice import metrics
server = metrics.serve(sys.argv[1])
print("serving", flush=True)
sys.stdin.read()
metrics.stop(server)
"""


def test_one_scrape_sums_every_worker_process_of_the_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(run)}
    for _worker in range(3):
        subprocess.run([sys.executable, "-c", WORKER], cwd=BASE_DIR, env=env, check=True, timeout=60)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, f"127.0.0.1:{port}"], cwd=BASE_DIR, env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "serving"
        samples = scrape(port)
    finally:
        server.communicate("", timeout=20)

    assert samples[("smtp_router_deliveries_total", (("outcome", "delivered"),))] == 3
    assert samples[("smtp_router_delivery_duration_seconds_count", ())] == 3
    assert ("smtp_listener_open_sessions", (("port", "25"),)) not in samples, (
        "the workers have exited: their open sessions are not counted (live gauges)"
    )
