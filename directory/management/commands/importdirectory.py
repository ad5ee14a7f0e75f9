"""``importdirectory``: validate a JSON directory file with the console's rules and apply it all or nothing."""
import json
import sys

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from directory import importexport


class Command(BaseCommand):
    @property
    def help(self):
        """Translated when asked for: argparse cannot format lazy text."""
        return _(
            "Create or update directory documents from a JSON file (spec section 7), matched by name. "
            "On any error nothing is changed."
        )

    def add_arguments(self, parser):
        parser.add_argument("file", metavar="FILE", help=_("The JSON file, or - for standard input."))
        parser.add_argument(
            "--replace", action="store_true",
            help=_("Also delete the documents of each type in the file that the file does not list."),
        )
        parser.add_argument("--dry-run", action="store_true", help=_("Validate and report, change nothing."))

    def handle(self, *args, file, replace, dry_run, **options):
        document = self.load(file)
        report = importexport.import_directory(document, replace=replace, dry_run=dry_run)
        if report.errors:
            heading = ngettext(
                "%(file)s: %(count)d error, nothing was changed:",
                "%(file)s: %(count)d errors, nothing was changed:",
                len(report.errors),
            ) % {"file": file, "count": len(report.errors)}
            raise CommandError("\n".join([heading, *(self.line(path, message) for path, message in report.errors)]))
        for path, message in report.warnings:
            self.stderr.write(_("%(path)s: warning: %(message)s") % {"path": path, "message": message})
        if dry_run:
            self.stdout.write(_("Dry run: the file is valid; nothing was changed. It would give:"))
        for key, tally in report.tallies.items():
            self.stdout.write(_("%(type)s: %(created)d created, %(updated)d updated, %(deleted)d deleted, %(unchanged)d unchanged") % {
                "type": key, "created": tally.created, "updated": tally.updated, "deleted": tally.deleted,
                "unchanged": tally.unchanged,
            })

    @staticmethod
    def line(path, message):
        return f"{path}: {message}" if path else str(message)

    def load(self, file):
        try:
            if file == "-":
                text = sys.stdin.read()
            else:
                with open(file, encoding="utf-8") as handle:
                    text = handle.read()
        except OSError as error:
            raise CommandError(_("Cannot read %(file)s: %(error)s") % {"file": file, "error": error.strerror}) from None
        except UnicodeDecodeError:
            raise CommandError(_("%(file)s is not UTF-8 text.") % {"file": file}) from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise CommandError(_("%(file)s is not valid JSON: %(error)s") % {"file": file, "error": error}) from None
