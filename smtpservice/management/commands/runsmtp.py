"""``manage.py runsmtp --server NAME [--workers N]``: the SMTP listener of one Server document.

With ``--workers N`` above 1 this process supervises N worker processes that share every port
(SO_REUSEPORT): each has its own event loop, snapshot and database writer, so the listener uses
every core. Each worker enforces its share of the session limits (the kernel spreads connections
evenly, so the sums hold); the AUTH throttle is shared through the database; one scrape of
``--metrics`` sums all workers. A worker dies with its supervisor, even on SIGKILL.
"""
import argparse
import asyncio
import ctypes
import math
import os
import selectors
import signal
import subprocess
import sys

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from smtpservice import metrics
from smtpservice.core.limits import Limits
from smtpservice.listener.service import ListenerService
from smtpservice.management.metrics_option import serve_metrics
from smtpservice.store.snapshot import ServerNotFound

PR_SET_PDEATHSIG = 1


def default_workers() -> int:
    """One worker per core, on SQLite as on PostgreSQL: on SQLite the workers take turns to commit and each
    commit carries every message waiting in its worker (``storage.one_writer``), so a second core still pays
    (docs/performance.md)."""
    return max(1, os.cpu_count() or 1)


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


class Command(BaseCommand):
    help = "Run the SMTP listener of one Server document until SIGTERM or SIGINT; settings apply live."

    def add_arguments(self, parser):
        parser.add_argument("--server", required=True, help="Name of the Server document, such as mail1/Acme.")
        parser.add_argument("--grace", type=float, default=10.0, help="Seconds sessions may take to finish when stopping.")
        parser.add_argument(
            "--max-sessions", type=int, default=Limits.max_sessions,
            help="Open sessions in all; the next connection gets 421 (default %(default)s).",
        )
        parser.add_argument(
            "--max-sessions-per-client", type=int, default=Limits.max_sessions_per_client,
            help="Open sessions from one client address; the next gets 421 (default %(default)s).",
        )
        parser.add_argument(
            "--workers", type=int, default=default_workers(),
            help="Processes sharing the ports, each with its own event loop (default: one per core, %(default)s).",
        )
        parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)  # set by the supervisor
        metrics.add_argument(parser)

    def handle(self, *args, **options):
        if options["workers"] < 1:
            raise CommandError(_("--workers must be 1 or more."))
        if options["workers"] > 1 and options["worker"] is None:
            return self.supervise(options)
        share = options["workers"] if options["worker"] is not None else 1
        limits = Limits(
            max_sessions=math.ceil(options["max_sessions"] / share),
            max_sessions_per_client=math.ceil(options["max_sessions_per_client"] / share),
        )
        service = ListenerService(options["server"], shutdown_grace=options["grace"], limits=limits, worker=options["worker"])
        server = serve_metrics(options["metrics"]) if options["worker"] is None else None
        try:
            asyncio.run(self.serve(service))
        except ServerNotFound as error:
            raise CommandError(str(error)) from None
        finally:
            metrics.stop(server)

    async def serve(self, service):
        """Run until a signal stops the listener; say "started" only once its settings are loaded and its ports bound."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, service.stop)
        service.ready = asyncio.Event()
        task = asyncio.ensure_future(service.run())
        ready = asyncio.ensure_future(service.ready.wait())
        await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if service.ready.is_set():
            self.stdout.write(_("SMTP listener for %(server)s started; SIGTERM or Ctrl-C stops it.") % {
                "server": service.snapshot.server_name,
            })
            self.stdout.flush()
        await task
        self.stdout.write(_("SMTP listener stopped."))

    def supervise(self, options):
        """Start the workers, say "started" once every one is listening, pass signals on, and wait for them."""
        run_directory = metrics.run_directory() if options["metrics"] else None
        env = dict(os.environ)
        if run_directory is not None:
            env[metrics.MULTIPROCESS_ENV] = os.environ[metrics.MULTIPROCESS_ENV] = str(run_directory)
        command = [
            sys.executable, os.path.abspath(sys.argv[0]), "runsmtp", "--server", options["server"],
            "--grace", str(options["grace"]), "--max-sessions", str(options["max_sessions"]),
            "--max-sessions-per-client", str(options["max_sessions_per_client"]), "--workers", str(options["workers"]),
        ]
        workers = [
            subprocess.Popen([*command, "--worker", str(index)], env=env, stdout=subprocess.PIPE, text=True,
                             preexec_fn=die_with_parent)
            for index in range(options["workers"])
        ]

        stopping = []

        def forward(signum, _frame):
            # Always SIGTERM: a worker still starting ignores SIGINT, and SIGTERM ends it either way.
            stopping.append(signal.SIGTERM)
            for worker in workers:
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, forward)
        server = None
        try:
            server = serve_metrics(options["metrics"])
            started = first_line(workers)
            if not started and not stopping:
                forward(signal.SIGTERM, None)
                for worker in workers:
                    worker.wait()
                raise CommandError(_("A worker of the SMTP listener did not start; its error is above."))
            if started:
                self.stdout.write(started.rstrip("\n"))
                self.stdout.flush()
            codes = [worker.wait() for worker in workers]
        finally:
            metrics.stop(server)
            if run_directory is not None:
                metrics.remove_run_directory(run_directory)
        # A worker stopped by the signal passed on before its event loop ran has exited as asked.
        failed = [code for code in codes if code and not (stopping and -code in stopping)]
        if failed:
            raise CommandError(_("A worker of the SMTP listener exited with status %(code)s.") % {"code": failed[0]})
        self.stdout.write(_("SMTP listener stopped."))
