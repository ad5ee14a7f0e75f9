#!/usr/bin/env python3
"""How many idle sessions the listener holds, and what a flood from one address does to everyone else.

Loopback only, bounded in sessions and seconds. Starts ``manage.py runsmtp`` on a throw-away SQLite
directory (as bench/run.sh does) and stops it (by PID) at the end.

1. Capacity: with the session limits raised out of the way, open idle sessions (each reads its 220)
   in steps of ``--step`` up to ``--max``, stopping at the first failure; after each step, the
   latency of a fresh session (connect, 220, EHLO, NOOP, QUIT) and the listener's resident memory.
2. Flood: ``--samples`` fresh sessions from 127.0.0.1 one after the other, without a flood, then
   while another process floods from 127.0.0.2 (``--flood-clients`` connections in a loop for
   ``--flood-seconds``), with the default limits and then with the per-client limit lifted.

Usage: .venv/bin/python bench/concurrency.py [--max 10000] [--step 1000] [--samples 300]
"""
import argparse
import asyncio
import multiprocessing
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = str(BASE_DIR / ".venv" / "bin" / "python")
LOCAL, FLOODER = "127.0.0.1", "127.0.0.2"
SERVER = "mail1/Acme"


def free_port():
    with socket.socket() as sock:
        sock.bind((LOCAL, 0))
        return sock.getsockname()[1]


def manage(*arguments, env, **options):
    return subprocess.run([PYTHON, "manage.py", *arguments], cwd=BASE_DIR, env=env, check=True, **options)


class Listener:
    """``runsmtp`` in its own process, on a fresh demo directory."""

    def __init__(self, env, port, *options):
        self.port = port
        self.process = subprocess.Popen(
            [PYTHON, "manage.py", "runsmtp", "--server", SERVER, "--grace", "1", *options],
            cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((LOCAL, port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("runsmtp did not start") from None
                time.sleep(0.1)

    def memory_mb(self):
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def read_reply(reader):
    while True:
        line = await reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def full_session(port, source=LOCAL, timeout=10):
    """Seconds for connect, 220, EHLO, NOOP, QUIT; or None when it was refused or failed."""
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(LOCAL, port, local_addr=(source, 0)), timeout)
    except (TimeoutError, OSError):
        return None
    try:
        for command, expected in ((None, 220), (b"EHLO bench.example.org", 250), (b"NOOP", 250), (b"QUIT", 221)):
            if command:
                writer.write(command + b"\r\n")
            if await asyncio.wait_for(read_reply(reader), timeout) != expected:
                return None
        return time.perf_counter() - started
    except (TimeoutError, OSError, ConnectionError):
        return None
    finally:
        writer.close()


async def idle_session(port, index, timeout):
    """An open session that has read its 220, or None."""
    source = f"127.0.1.{1 + index // 20000}"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(LOCAL, port, local_addr=(source, 0)), timeout)
        if await asyncio.wait_for(read_reply(reader), timeout) == 220:
            return writer
        writer.close()
    except (TimeoutError, OSError, ConnectionError):
        pass
    return None


async def capacity(listener, maximum, step, batch=200):
    print(f"# capacity: idle sessions in steps of {step}, up to {maximum}")
    held = []
    try:
        while len(held) < maximum:
            started = time.monotonic()
            target = min(maximum, len(held) + step)
            while len(held) < target:
                opened = await asyncio.gather(*(
                    idle_session(listener.port, len(held) + n, 15) for n in range(min(batch, target - len(held)))
                ))
                held.extend(writer for writer in opened if writer is not None)
                if None in opened:
                    print(f"CAPACITY failed_after={len(held)} (a session got no 220 within 15 s)")
                    return len(held)
            probes = [await full_session(listener.port) for _n in range(20)]
            good = sorted(p for p in probes if p is not None)
            print(f"STEP sessions={len(held)} open_s={time.monotonic() - started:.1f} rss_mb={listener.memory_mb():.0f} "
                  f"probe_p50_ms={1000 * statistics.median(good):.1f} probe_max_ms={1000 * good[-1]:.1f} "
                  f"probe_failed={len(probes) - len(good)}")
        print(f"CAPACITY held={len(held)} (the --max bound, not a failure)")
        return len(held)
    finally:
        for writer in held:
            writer.close()
        await asyncio.sleep(0.5)


def percentiles(samples):
    good = sorted(samples)
    return 1000 * good[len(good) // 2], 1000 * good[int(len(good) * 0.95) - 1]


async def probe(port, samples):
    results = [await full_session(port) for _n in range(samples)]
    good = [r for r in results if r is not None]
    return percentiles(good) + (len(results) - len(good),)


def flood(port, clients, seconds, counts):
    """The flooding process: ``clients`` loops of full sessions from 127.0.0.2 until the time is up."""

    async def loop_sessions():
        deadline = time.monotonic() + seconds

        async def one():
            while time.monotonic() < deadline:
                result = await full_session(port, FLOODER, timeout=5)
                counts["ok" if result is not None else "refused_or_failed"] += 1

        await asyncio.gather(*(one() for _n in range(clients)))

    asyncio.run(loop_sessions())


def flood_run(port, samples, clients, seconds, label):
    manager = multiprocessing.Manager()
    counts = manager.dict(ok=0, refused_or_failed=0)
    flooder = multiprocessing.Process(target=flood, args=(port, clients, seconds, counts))
    flooder.start()
    time.sleep(1)
    p50, p95, failed = asyncio.run(probe(port, samples))
    flooder.join(seconds + 30)
    print(f"FLOOD {label} clients_127.0.0.1: p50_ms={p50:.1f} p95_ms={p95:.1f} failed={failed}/{samples}; "
          f"flood_127.0.0.2: sessions_completed={counts['ok']} refused_or_failed={counts['refused_or_failed']} "
          f"in {seconds}s with {clients} concurrent")
    manager.shutdown()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max", type=int, default=10000, help="most idle sessions to open (bounded by the file limit)")
    parser.add_argument("--step", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=300, help="fresh sessions timed from 127.0.0.1 per flood run")
    parser.add_argument("--flood-clients", type=int, default=200)
    parser.add_argument("--flood-seconds", type=int, default=8)
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    maximum = min(args.max, hard - 500)
    data = tempfile.mkdtemp(prefix="smtp-concurrency.")
    env = {**os.environ, "DATA_DIR": data, "DEBUG": "1", "SMTP_LOG_LEVEL": "ERROR"}
    port, ssl_port = free_port(), free_port()
    listener = None
    try:
        manage("migrate", "-v", "0", env=env)
        manage("loaddemo", "--smtp-port", str(port), "--ssl-port", str(ssl_port), env=env, stdout=subprocess.DEVNULL)
        print(f"# {os.cpu_count()} CPUs, file limit {hard}; listener on {LOCAL}:{port}")

        listener = Listener(env, port, "--max-sessions", str(hard), "--max-sessions-per-client", str(hard))
        asyncio.run(capacity(listener, maximum, args.step))
        listener.stop()

        listener = Listener(env, port)
        p50, p95, failed = asyncio.run(probe(port, args.samples))
        print(f"FLOOD none clients_127.0.0.1: p50_ms={p50:.1f} p95_ms={p95:.1f} failed={failed}/{args.samples}")
        flood_run(port, args.samples, args.flood_clients, args.flood_seconds, "default_limits(50_per_address)")
        listener.stop()

        listener = Listener(env, port, "--max-sessions-per-client", str(hard))
        flood_run(port, args.samples, args.flood_clients, args.flood_seconds, "per_address_limit_lifted")
    finally:
        if listener is not None and listener.process.poll() is None:
            listener.stop()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
