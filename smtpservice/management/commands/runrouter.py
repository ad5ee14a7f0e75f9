"""``manage.py runrouter --server NAME``: the outbound router of one Server document."""
import signal

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from smtpservice import metrics
from smtpservice.management.metrics_option import serve_metrics
from smtpservice.router.service import Router
from smtpservice.store.snapshot import ServerNotFound


class Command(BaseCommand):
    help = "Send the relay queue of one Server document by SMTP until SIGTERM or SIGINT; settings apply live."

    def add_arguments(self, parser):
        parser.add_argument("--server", required=True, help="Name of the Server document, such as mail1/Acme.")
        parser.add_argument("--once", action="store_true", help="Send what is due now, then exit.")
        parser.add_argument("--workers", type=int, default=4, help="SMTP sessions at once (one per destination).")
        parser.add_argument("--batch", type=int, default=20, help="Recipients claimed at a time.")
        metrics.add_argument(parser)

    def handle(self, *args, **options):
        router = Router(options["server"], workers=options["workers"], batch=options["batch"])
        try:
            router.start()
        except ServerNotFound as error:
            raise CommandError(str(error)) from None
        if options["once"]:
            router.run_once()
            router.finish()
            return
        try:
            server = serve_metrics(options["metrics"])
        except CommandError:
            router.finish()
            raise
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, router.stop)
        self.stdout.write(_("Router for %(server)s started; SIGTERM or Ctrl-C stops it.") % {"server": options["server"]})
        try:
            router.run()
        finally:
            metrics.stop(server)
        self.stdout.write(_("Router stopped."))
