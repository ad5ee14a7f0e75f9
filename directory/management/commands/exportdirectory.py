"""``exportdirectory``: write the whole directory as JSON (spec section 7)."""
import os

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from directory import importexport


class Command(BaseCommand):
    @property
    def help(self):
        """Translated when asked for: argparse cannot format lazy text."""
        return _("Write the whole directory as JSON, for backups, review in version control, or another server.")

    def add_arguments(self, parser):
        parser.add_argument(
            "--include-secrets", action="store_true",
            help=_("Also write password hashes, the relay host password and private keys (PEM)."),
        )
        parser.add_argument(
            "--output", "-o", metavar="FILE",
            help=_("Write to FILE (created readable by its owner only) instead of standard output."),
        )

    def handle(self, *args, include_secrets, output, **options):
        text = importexport.dumps(importexport.export_directory(include_secrets=include_secrets))
        if not output or output == "-":
            self.stdout.write(text, ending="")
            return
        try:
            descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(descriptor, "w", encoding="utf-8") as file:
                file.write(text)
        except OSError as error:
            raise CommandError(_("Cannot write %(file)s: %(error)s") % {"file": output, "error": error.strerror}) from None
