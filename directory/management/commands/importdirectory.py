"""``importdirectory``: validate a JSON directory file with the console's rules and apply it all or nothing."""
import os
import sys

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from directory import importexport

MAX_SIZE_MIB = 32
"""The largest file read by default, in MiB: a directory of about 100,000 people with password
hashes; larger files are refused before they are read (``--max-size`` raises it)."""


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
        parser.add_argument(
            "--max-size", type=int, default=MAX_SIZE_MIB, metavar="MIB",
            help=_("Refuse a file larger than this many MiB (default %(default)s)."),
        )

    def handle(self, *args, file, replace, dry_run, max_size, **options):
        document = self.load(file, max_size * 1024 * 1024)
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

    def load(self, file, max_bytes):
        """The parsed file; anything that is not a JSON document of a sane size is a clear error, never a traceback."""
        too_large = CommandError(_("%(file)s is larger than %(size)d MiB: nothing was read. Use --max-size to allow more.") % {
            "file": file, "size": max_bytes // (1024 * 1024),
        })
        try:
            if file == "-":
                text = sys.stdin.read(max_bytes + 1)
            else:
                if os.path.getsize(file) > max_bytes:
                    raise too_large
                with open(file, encoding="utf-8") as handle:
                    text = handle.read(max_bytes + 1)
        except OSError as error:
            raise CommandError(_("Cannot read %(file)s: %(error)s") % {"file": file, "error": error.strerror}) from None
        except UnicodeDecodeError:
            raise CommandError(_("%(file)s is not UTF-8 text.") % {"file": file}) from None
        if len(text) > max_bytes:
            raise too_large
        try:
            return importexport.loads(text, file)
        except importexport.FileError as error:
            raise CommandError(str(error)) from None
