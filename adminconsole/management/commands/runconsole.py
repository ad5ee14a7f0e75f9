"""Start the console and the SMTP services (listener and router) of one or more Server documents together;
Ctrl-C stops them all. For trying things out and development: production runs each as its own systemd unit
(deploy/systemd, docs/admin/install.md)."""
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the web console and the SMTP services as child processes until Ctrl-C or SIGTERM."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--server", action="append", default=[], metavar="NAME",
            help="Also run the SMTP services of this Server document; repeat it for several servers.",
        )
        parser.add_argument(
            "--all-servers", action="store_true",
            help="Also run the SMTP services of every Server document whose SMTP listener task is Enabled.",
        )

    def handle(self, *args, **options):
        manage = [sys.executable, "manage.py"]
        commands = [manage + ["runserver", "--noreload", f"{options['host']}:{options['port']}"]]
        for server in self.servers(options["server"], options["all_servers"]):
            commands += [manage + [name, "--server", server] for name in self.smtp_commands()]
        children = [subprocess.Popen(command) for command in commands]
        self.stdout.write(f"Console: http://{options['host']}:{options['port']}/  (Ctrl-C stops everything)")
        self.stopping = False
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        while not self.stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()

    def request_stop(self, signum, frame):
        self.stopping = True

    def servers(self, names: list[str], every: bool) -> list[str]:
        """The Server documents to serve, each once, in the order given, then the rest with ``--all-servers``."""
        from directory.models import Server

        chosen = list(names)
        if every:
            chosen += Server.objects.filter(smtp_listener_enabled=True).order_by("name").values_list("name", flat=True)
        return list(dict.fromkeys(chosen))

    def smtp_commands(self):
        """The SMTP service commands that exist in this build (the listener, then the router)."""
        from django.core.management import get_commands

        return [name for name in ("runsmtp", "runrouter") if name in get_commands()]
