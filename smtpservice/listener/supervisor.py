"""The supervisor of ``runsmtp --workers N``: starts the workers, passes signals on, serves their metrics.

``runsmtp`` replaces itself with this program (``exec``, same process id, so systemd and anyone holding
the id still signal the supervisor). It imports no Django: it has no settings to read and no page to
render, and a Django process weighs about 60 MB where this one weighs about 24 MB, paid once more for
every listener (docs/performance.md). Everything it says is handed over in the ``Plan``, already
translated by ``runsmtp``.

Each worker is ``manage.py runsmtp --worker I`` with the same options: its own event loop, snapshot and
database writer on ports shared by SO_REUSEPORT. The kernel kills a worker when the supervisor dies,
however it dies (PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import ctypes
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

from smtpservice import metrics
from smtpservice.listener import counts

PR_SET_PDEATHSIG = 1


@dataclass
class Plan:
    """What ``runsmtp`` decided, and the sentences the supervisor may need, in the user's language."""

    command: list[str]
    """The command line of a worker, without its ``--worker I``."""
    workers: int
    metrics: str | None = None
    metrics_directory: str | None = None
    """The workers' PROMETHEUS_MULTIPROC_DIR (never the supervisor's); None without metrics."""
    remove_metrics_directory: bool = False
    """True when the directory was made for this run (``--metrics``), not given by systemd."""
    texts: dict[str, str] = field(default_factory=dict)
    """``not_started``, ``exited`` (with %(code)s), ``stopped``, ``metrics_failed`` (with %(address)s and %(error)s)."""

    def to_argument(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_argument(cls, text: str) -> Plan:
        return cls(**json.loads(text))


def die_with_parent() -> None:
    """In a worker, before exec: the kernel kills it when the supervisor dies, however it dies; Ctrl-C is the
    supervisor's to pass on (the worker's event loop takes SIGINT over once it runs)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def first_line(workers: list[subprocess.Popen]) -> str:
    """The first line any worker writes (its "started"): the ports are served from then on. "" when every
    worker ended without one."""
    with selectors.DefaultSelector() as selector:
        for worker in workers:
            selector.register(worker.stdout, selectors.EVENT_READ)
        while selector.get_map():
            for key, _events in selector.select():
                line = key.fileobj.readline()
                if line:
                    return line
                selector.unregister(key.fileobj)
    return ""


def wait_for(workers: list[subprocess.Popen], table: int) -> list[int]:
    """Wait until every worker has ended; the sessions of one that ends early are forgotten at once, so the
    others do not count them against the limits. Their exit statuses."""
    ended = set()
    while len(ended) < len(workers):
        for index, worker in enumerate(workers):
            if index not in ended and worker.poll() is not None:
                counts.clear_column(table, index)
                ended.add(index)
        time.sleep(0.2)
    return [worker.returncode for worker in workers]


def fail(message: str) -> int:
    """What Django prints for a CommandError, and its exit status."""
    sys.stderr.write(f"CommandError: {message}\n")
    return 1


def supervise(plan: Plan) -> int:
    """Start the workers, say "started" once one is listening, pass signals on, and wait for them; the exit status."""
    env = {**os.environ, metrics.MULTIPROCESS_ENV: plan.metrics_directory} if plan.metrics_directory else None
    table = counts.create_table(plan.workers)
    workers = [
        subprocess.Popen([*plan.command, "--worker", str(index), "--sessions-table", str(table)], stdout=subprocess.PIPE,
                         text=True, env=env, preexec_fn=die_with_parent, pass_fds=(table,))
        for index in range(plan.workers)
    ]
    stopping = []

    def forward(_signum: int, _frame: object) -> None:
        # Always SIGTERM: a worker still starting ignores SIGINT, and SIGTERM ends it either way.
        stopping.append(signal.SIGTERM)
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    server = None
    try:
        try:
            server = metrics.serve(plan.metrics, plan.metrics_directory)
        except OSError as error:
            forward(signal.SIGTERM, None)
            for worker in workers:
                worker.wait()
            return fail(plan.texts["metrics_failed"] % {"address": plan.metrics, "error": error.strerror or error})
        started = first_line(workers)
        if not started and not stopping:
            forward(signal.SIGTERM, None)
            for worker in workers:
                worker.wait()
            return fail(plan.texts["not_started"])
        if started:
            sys.stdout.write(started)
            sys.stdout.flush()
        codes = wait_for(workers, table)
    finally:
        os.close(table)
        metrics.stop(server)
        if plan.remove_metrics_directory:
            metrics.remove_run_directory(plan.metrics_directory)
    # A worker stopped by the signal passed on before its event loop ran has exited as asked.
    failed = [code for code in codes if code and not (stopping and -code in stopping)]
    if failed:
        return fail(plan.texts["exited"] % {"code": failed[0]})
    sys.stdout.write(plan.texts["stopped"] + "\n")
    return 0


def main() -> int:
    return supervise(Plan.from_argument(sys.argv[1]))
