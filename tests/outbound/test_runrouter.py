"""``runrouter`` as real processes: stopped cleanly, killed in the middle of a send, and two of them
on one PostgreSQL queue."""
import collections
import subprocess

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from smtpservice.models import DeliveryAttempt, QueuedRecipient, ReceivedMessage
from tests.outbound.conftest import ALPHA, JANE, change, message_bytes, queue_at
from tests.smtpservice.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def to_sink(alpha, configuration, sink):
    """A's route for sink.test goes to an SMTP sink whose first DATA waits until released."""

    def start(stall_first=True):
        handler, port = sink(stall_first)
        change(configuration, routes=f"sink.test 127.0.0.1:{port}")
        return handler

    return start


def state(message):
    return QueuedRecipient.objects.get(message=message)


def test_runrouter_names_a_missing_server_document(transactional_db):
    with pytest.raises(CommandError, match="No Server document is named “nope/Acme”"):
        call_command("runrouter", "--server", "nope/Acme")


def test_runrouter_once_sends_what_is_due_and_exits(alpha, to_sink):
    handler = to_sink(stall_first=False)
    message = queue_at(alpha, ["ann@sink.test"])
    call_command("runrouter", "--server", ALPHA, "--once")
    assert state(message).state == "delivered"
    assert len(handler.message_ids()) == 1


def test_sigterm_finishes_the_message_being_sent_then_exits_0(alpha, to_sink, router_process):
    handler = to_sink()
    first, second = queue_at(alpha, ["ann@sink.test"]), queue_at(alpha, ["ben@sink.test"])
    router = router_process(ALPHA)
    assert handler.data_started.wait(30), router.log()

    router.process.terminate()
    with pytest.raises(subprocess.TimeoutExpired):
        router.process.wait(1)  # still finishing its message
    handler.release.set()

    assert router.process.wait(20) == 0, router.log()
    assert state(first).state == "delivered"
    assert (state(second).state, state(second).attempts) == ("queued", 0), "given back, not sent"
    assert len(handler.message_ids()) == 1
    assert "Router stopped." in router.log()


def test_router_killed_during_data_sends_again_after_its_lease_and_at_most_once_more(alpha, to_sink, router_process):
    handler = to_sink()
    message = queue_at(alpha, ["ann@sink.test"])
    router = router_process(ALPHA)
    assert handler.data_started.wait(30), router.log()

    router.kill()
    queued = state(message)
    assert queued.state == "in_flight" and queued.claimed_by
    handler.release.set()

    restarted = router_process(ALPHA)
    wait_until(lambda: state(message).state == "delivered", timeout=30, message=restarted.log())
    assert restarted.terminate() == 0

    assert len(handler.message_ids()) == 2, "the sink kept the first copy though its 250 never came: twice at worst"
    attempt = DeliveryAttempt.objects.get(message=message)
    assert attempt.outcome == "delivered" and attempt.actor != queued.claimed_by


@pytest.mark.postgres
def test_two_routers_on_postgresql_deliver_each_message_exactly_once(alpha, to_sink, router_process):
    if connection.vendor != "postgresql":
        pytest.skip("needs DATABASE_URL pointing at PostgreSQL")
    handler = to_sink(stall_first=False)
    routers = [router_process(ALPHA, "--batch", "5", lease_seconds=60) for _index in range(2)]
    wait_until(lambda: all(router.started() for router in routers), timeout=30, message="routers did not start")

    count = 200
    messages = ReceivedMessage.objects.bulk_create(
        ReceivedMessage(server=alpha, mail_from=JANE, recipients=["ann@sink.test"], size=100, local_port=0,
                        data=message_bytes(f"message {index}", "ann@sink.test", message_id=f"<m{index}@acme.test>"))
        for index in range(count)
    )
    QueuedRecipient.objects.bulk_create(QueuedRecipient(message=message, recipient="ann@sink.test") for message in messages)

    wait_until(lambda: QueuedRecipient.objects.filter(state="delivered").count() == count, timeout=60,
               message="\n".join(router.log() for router in routers))
    assert [router.terminate() for router in routers] == [0, 0]

    received = collections.Counter(handler.message_ids())
    assert len(received) == count
    assert set(received.values()) == {1}
    assert DeliveryAttempt.objects.values("actor").distinct().count() == 2, "both routers took part"
