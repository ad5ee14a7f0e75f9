"""``manage.py runsmtp --server NAME [--workers N]``: the SMTP listener of one Server document.

With ``--workers N`` above 1 this process supervises N worker processes that share every port
(SO_REUSEPORT): each has its own event loop, snapshot and database writer, so the listener uses
every core. The session limits are counted across the workers (``listener.counts``, a table in shared
memory); the AUTH throttle is shared through the database; one scrape of
``--metrics`` sums all workers. A worker dies with its supervisor, even on SIGKILL.
"""
import argparse
import asyncio
import math
import os
import signal
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from django.utils.translation import gettext as _

from smtpservice import metrics
from smtpservice.core.limits import Limits
from smtpservice.listener import events
from smtpservice.listener.service import ListenerService
from smtpservice.listener.supervisor import Plan
from smtpservice.management.metrics_option import serve_metrics
from smtpservice.store.snapshot import ServerNotFound


def default_workers() -> int:
    """One worker per core, on SQLite as on PostgreSQL: on SQLite the workers take turns to commit and each
    commit carries every message waiting in its worker (``storage.one_writer``), so a second core still pays
    (docs/performance.md)."""
    return max(1, os.cpu_count() or 1)


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
        parser.add_argument("--sessions-table", type=int, default=None, help=argparse.SUPPRESS)  # set by the supervisor
        metrics.add_argument(parser)

    def handle(self, *args, **options):
        if options["workers"] < 1:
            raise CommandError(_("--workers must be 1 or more."))
        if options["workers"] > 1 and options["worker"] is None:
            return self.supervise(options)
        # With the supervisor's table the limits are counted across workers; without it (a worker started by
        # hand) each worker enforces its share.
        share = options["workers"] if options["worker"] is not None and options["sessions_table"] is None else 1
        limits = Limits(
            max_sessions=math.ceil(options["max_sessions"] / share),
            max_sessions_per_client=math.ceil(options["max_sessions_per_client"] / share),
        )
        events.buffer_info_lines()
        service = ListenerService(options["server"], shutdown_grace=options["grace"], limits=limits, worker=options["worker"],
                                  workers=options["workers"], sessions_table=options["sessions_table"])
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

    def supervise(self, options: dict) -> None:
        """Become the supervisor of the workers (``listener.supervisor``): this process is replaced by one that
        loads no Django, keeping its process id."""
        # The run's metrics directory: systemd's (PROMETHEUS_MULTIPROC_DIR), else a fresh one for --metrics. It is
        # the workers' alone: the supervisor's own values (a settings revision of 0) must not enter the sums.
        inherited = os.environ.get(metrics.MULTIPROCESS_ENV)
        directory = inherited or (str(metrics.run_directory()) if options["metrics"] else None)
        plan = Plan(
            command=[
                sys.executable, os.path.abspath(sys.argv[0]), "runsmtp", "--server", options["server"],
                "--grace", str(options["grace"]), "--max-sessions", str(options["max_sessions"]),
                "--max-sessions-per-client", str(options["max_sessions_per_client"]), "--workers", str(options["workers"]),
            ],
            workers=options["workers"], metrics=options["metrics"], metrics_directory=directory,
            remove_metrics_directory=directory is not None and not inherited,
            texts={
                "not_started": _("A worker of the SMTP listener did not start; its error is above."),
                "exited": _("A worker of the SMTP listener exited with status %(code)s."),
                "stopped": _("SMTP listener stopped."),
                "metrics_failed": _("Metrics cannot be served on %(address)s: %(error)s"),
            },
        )
        # This process imported the metrics with systemd's directory set: its live gauges (a revision of 0) would
        # count as the supervisor's, which keeps this process id.
        metrics.stop(None)
        connections.close_all()
        sys.stdout.flush()
        sys.stderr.flush()
        environment = {name: value for name, value in os.environ.items() if name != metrics.MULTIPROCESS_ENV}
        os.execve(sys.executable, [
            sys.executable, "-c",
            f"import sys; sys.path.insert(0, {str(settings.BASE_DIR)!r}); "
            "from smtpservice.listener.supervisor import main; sys.exit(main())",
            plan.to_argument(),
        ], environment)
