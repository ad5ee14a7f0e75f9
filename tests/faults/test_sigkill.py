"""The listener killed with SIGKILL in the middle of a burst, then restarted: no message is lost or doubled.

``manage.py runsmtp --workers 2`` runs as real separate processes on the test database (the supervisor is
killed; its workers die with it). Two hundred clients from
twenty addresses send messages with unique Message-IDs as fast as they can; once enough have been
acknowledged the process is killed (SIGKILL: no signal handler, no clean-up), then started again.

What each client knew when the process died decides what may be in the database (RFC 5321 s 6.1:
after the 250 the server is responsible for the message; before it, the client is):

- 250 received: stored exactly once, byte for byte;
- refused, or the final ``.`` never handed to the socket: not stored;
- final ``.`` sent but no reply (the kill came between the commit and the 250 reaching the client):
  stored at most once. The client will send it again, so this is a duplicate at worst, never a loss.
"""
import asyncio
import collections
import os
import random
import signal
import subprocess

import pytest

from smtpservice.models import MailboxEntry, ReceivedMessage
from tests.smtpservice.conftest import wait_until
from tests.smtpservice.test_runsmtp import command, refuses_connections

pytestmark = pytest.mark.django_db(transaction=True)

LOCAL = "127.0.0.1"
CLIENTS = 200
SOURCES = [f"127.0.0.{10 + n}" for n in range(20)]
KILL_AFTER = 150
"""Acknowledged messages before the kill: the burst is well under way, with every client mid-message."""
AFTER_RESTART = 20
INCOMPLETE, SENT = "final dot not sent", "final dot sent, no reply"


def content(message_id, rng):
    """A message of 1 to 30 KB whose every byte can be compared with what is stored (no line starts with a dot)."""
    lines = "".join(f"{message_id} line {n:05d} {'x' * rng.randrange(10, 70)}\r\n" for n in range(rng.randrange(15, 400)))
    return (
        f"From: burst@example.org\r\nTo: jane@acme.test\r\nSubject: burst {message_id}\r\n"
        f"Message-ID: {message_id}\r\n\r\n{lines}"
    ).encode()


class Burst:
    """Concurrent clients on one event loop; ``outcomes`` maps each Message-ID to what its client knows."""

    def __init__(self, port, seed):
        self.port = port
        self.rng = random.Random(seed)
        self.sent = {}
        self.outcomes = {}
        self.acknowledged = 0
        self.next_id = 0

    async def reply(self, reader):
        while True:
            line = await asyncio.wait_for(reader.readline(), 20)
            if not line.endswith(b"\r\n"):
                raise ConnectionError("connection closed")
            if line[3:4] != b"-":
                return int(line[:3])

    async def step(self, reader, writer, line, expected):
        writer.write(line + b"\r\n")
        code = await self.reply(reader)
        if code != expected:
            raise ConnectionError(f"{line!r} got {code}")

    async def client(self, number, messages, on_ack=None):
        """Send up to ``messages`` messages in one session; stop at the first broken connection."""
        try:
            reader, writer = await asyncio.open_connection(LOCAL, self.port, local_addr=(SOURCES[number % len(SOURCES)], 0))
        except OSError:
            return
        try:
            if await self.reply(reader) != 220:
                return
            await self.step(reader, writer, b"EHLO burst.example.org", 250)
            for _message in range(messages):
                self.next_id += 1
                message_id = f"<burst-{self.next_id}@example.org>"
                self.sent[message_id] = content(message_id, self.rng)
                self.outcomes[message_id] = INCOMPLETE
                await self.step(reader, writer, b"MAIL FROM:<burst@example.org>", 250)
                await self.step(reader, writer, b"RCPT TO:<jane@acme.test>", 250)
                await self.step(reader, writer, b"DATA", 354)
                writer.write(self.sent[message_id])
                await writer.drain()
                writer.write(b".\r\n")
                self.outcomes[message_id] = SENT
                code = await self.reply(reader)
                self.outcomes[message_id] = code
                if code == 250:
                    self.acknowledged += 1
                    if on_ack is not None:
                        on_ack()
        except (TimeoutError, OSError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def run(self, clients, messages, on_ack=None):
        await asyncio.wait_for(asyncio.gather(*(self.client(n, messages, on_ack) for n in range(clients))), 60)


@pytest.fixture
def runsmtp_process(transactional_db, monkeypatch):
    """Start ``manage.py runsmtp`` as a process; every process still alive after the test is killed."""
    monkeypatch.setenv("SMTP_LOG_LEVEL", "WARNING")
    processes = []

    def start(server):
        process = subprocess.Popen(**command("--server", server.name, "--grace", "1", "--workers", "2"))
        processes.append(process)

        def listening():
            assert process.poll() is None, process.communicate()
            return not refuses_connections(server.smtp_inbound_tcp_port)

        wait_until(listening, timeout=30, message="runsmtp did not start listening")
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def test_sigkill_mid_burst_loses_nothing_acknowledged_and_stores_nothing_twice(
    make_server, configuration, jane, runsmtp_process,
):
    server = make_server()
    port = server.smtp_inbound_tcp_port
    burst = Burst(port, seed=5)
    process = runsmtp_process(server)

    def kill_once_enough_are_acknowledged():
        if burst.acknowledged == KILL_AFTER:
            os.kill(process.pid, signal.SIGKILL)

    asyncio.run(burst.run(CLIENTS, messages=50, on_ack=kill_once_enough_are_acknowledged))
    assert process.wait(timeout=10) == -signal.SIGKILL
    at_kill = collections.Counter(outcome if isinstance(outcome, str) else "reply" for outcome in burst.outcomes.values())
    assert burst.acknowledged >= KILL_AFTER
    assert at_kill[INCOMPLETE] + at_kill[SENT] >= CLIENTS // 2, f"the kill did not land mid-burst: {at_kill}"

    restarted = runsmtp_process(server)
    before_restart = burst.acknowledged
    asyncio.run(burst.run(AFTER_RESTART, messages=1))
    assert burst.acknowledged - before_restart == AFTER_RESTART, "the restarted listener refused messages"
    restarted.send_signal(signal.SIGTERM)
    assert restarted.wait(timeout=15) == 0

    stored = collections.defaultdict(list)
    for message_id, data in ReceivedMessage.objects.values_list("message_id", "data"):
        stored[message_id].append(bytes(data))
    assert set(stored) <= set(burst.sent), "a message nobody sent was stored"
    assert all(len(copies) == 1 for copies in stored.values()), "a message was stored twice"
    for message_id, outcome in burst.outcomes.items():
        if outcome == 250:
            assert message_id in stored, f"{message_id} got 250 and was lost"
        elif outcome != SENT:
            assert message_id not in stored, f"{message_id} was stored though its client had {outcome!r}"
    for message_id, (data,) in stored.items():
        assert data.startswith(b"Received: ") and data.endswith(burst.sent[message_id]), f"{message_id} is not whole"
    assert MailboxEntry.objects.filter(person=jane).count() == len(stored)
    ambiguous = [message_id for message_id, outcome in burst.outcomes.items() if outcome == SENT]
    print(f"\n{len(burst.sent)} messages, {burst.acknowledged} acknowledged; at the kill: {dict(at_kill)}; "
          f"{sum(message_id in stored for message_id in ambiguous)} of {len(ambiguous)} unacknowledged "
          f"complete messages were stored (the client resends them)")
