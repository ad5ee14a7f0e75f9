"""``manage.py runsmtp --server NAME``: the SMTP listener of one Server document."""
import asyncio
import signal

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from smtpservice import metrics
from smtpservice.core.limits import Limits
from smtpservice.listener.service import ListenerService
from smtpservice.management.metrics_option import serve_metrics
from smtpservice.store.snapshot import ServerNotFound


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
        metrics.add_argument(parser)

    def handle(self, *args, **options):
        limits = Limits(max_sessions=options["max_sessions"], max_sessions_per_client=options["max_sessions_per_client"])
        service = ListenerService(options["server"], shutdown_grace=options["grace"], limits=limits)
        server = serve_metrics(options["metrics"])
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
        await task
        self.stdout.write(_("SMTP listener stopped."))
