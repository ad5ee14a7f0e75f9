"""``builddirectory``: a realistic large directory for scale checks (bench/console_scale.py).

People and groups arrive through the import (``directory.importexport``), so they are validated by
the console's forms and recorded in the audit trail and history as a real administrator's would be.
The groups form one chain: the first group lists its people and the second group, which lists its
people and the third, and so on; the first group is named in Access server of the Server document,
with Enforce server access on, so a person of the last group is allowed only through every group.
"""
import json

from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError

from directory import importexport

ORGANIZATION = "Acme"
UNIT = "Staff"
DOMAIN = "scale.test"
PASSWORD = "scale-password"
GROUP_PREFIX = "Chain"


def person_name(number: int) -> str:
    return f"Person {number:05d}/{UNIT}/{ORGANIZATION}"


def group_name(number: int) -> str:
    return f"{GROUP_PREFIX} {number:03d}"


def scale_document(server: str, people: int, depth: int, password_hash: str) -> dict:
    """The import file of ``people`` Person documents and a chain of ``depth`` groups, the first granting access to ``server``."""
    persons = [
        {
            "full_name": person_name(number), "first_name": "Person", "last_name": f"{number:05d}",
            "short_name": f"p{number:05d}", "internet_address": f"p{number:05d}@{DOMAIN}",
            "internet_password_hash": password_hash,
        }
        for number in range(1, people + 1)
    ]
    share = -(-people // depth)  # people per group, rounded up so that everyone is in one
    groups = [
        {
            "name": group_name(level),
            "group_type": "multi_purpose",
            "members": [
                *(person_name(number) for number in range((level - 1) * share + 1, min(level * share, people) + 1)),
                *([group_name(level + 1)] if level < depth else []),
            ],
        }
        for level in range(1, depth + 1)
    ]
    servers = [{"name": server, "access_server": [group_name(1)], "smtp_inbound": {"enforce_server_access": True}}]
    return {"format": importexport.FORMAT, "servers": servers, "people": persons, "groups": groups}


class Command(BaseCommand):
    help = (
        "Add a large directory to an existing server (after loaddemo): PEOPLE Person documents and DEPTH groups "
        "nested in one chain, the first named in the server's Access server with Enforce server access on. "
        "Every person's Internet password is scale-password."
    )

    def add_arguments(self, parser):
        parser.add_argument("--server", default="mail1/Acme", help="The existing Server document to restrict.")
        parser.add_argument("--people", type=int, default=10_000)
        parser.add_argument("--depth", type=int, default=500, help="How many groups, each nested in the one before.")
        parser.add_argument("--output", metavar="FILE", help="Write the import file here instead of importing it.")

    def handle(self, *args, server, people, depth, output, **options):
        if people < 1 or depth < 1:
            raise CommandError("--people and --depth must be at least 1.")
        # One hash for everyone: hashing 10,000 passwords would time the hasher, not the directory.
        document = scale_document(server, people, depth, make_password(PASSWORD))
        if output:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(importexport.dumps(document))
            self.stdout.write(f"Wrote {output}: {people} people, {depth} nested groups.")
            return
        report = importexport.import_directory(document)
        if report.errors:
            raise CommandError("\n".join(f"{path}: {message}" for path, message in report.errors[:20]))
        self.stdout.write(json.dumps({key: vars(tally) for key, tally in report.tallies.items()}))
