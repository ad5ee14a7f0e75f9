"""Failed AUTH attempts in the database: recorded by the listener, counted for ``core.throttle.decide``,
listed and lifted in the console.

Stored rather than kept in memory so that several listeners of one directory share them, a restart does
not forget them, and the console can show and lift them. Plain synchronous functions: the listener calls
them in its ORM thread (``sync_to_async``), as it calls ``smtpservice.store.storage``.
"""
import datetime
from dataclasses import dataclass

from django.db.models import Count, Max
from django.utils import timezone

from smtpservice.core import throttle
from smtpservice.core.safe_text import db_safe
from smtpservice.models import AuthFailure

ACCOUNT_LENGTH = AuthFailure._meta.get_field("account").max_length


def account_key(account: str) -> str:
    """The account as stored: the person's full name, or the login as typed; compared without case."""
    return db_safe(account, ACCOUNT_LENGTH).strip().lower()


def _since(window: float, now: datetime.datetime | None) -> datetime.datetime:
    return (now or timezone.now()) - datetime.timedelta(seconds=window)


def record_failure(client: str, account: str, now: datetime.datetime | None = None) -> None:
    """One password tried and refused for ``account`` from ``client`` (not a malformed AUTH: see
    ``throttle.counts_as_failure``)."""
    AuthFailure.objects.create(client_address=client, account=account_key(account), at=now or timezone.now())


def counts(client: str, account: str, window: float, now: datetime.datetime | None = None) -> throttle.Counts:
    """Failures in the last ``window`` seconds: of the account from the address, from the address, of the account."""
    recent = AuthFailure.objects.filter(at__gte=_since(window, now))
    account = account_key(account)
    return throttle.Counts(
        pair=recent.filter(client_address=client, account=account).count(),
        address=recent.filter(client_address=client).count(),
        account=recent.filter(account=account).count(),
    )


def forgive(client: str, account: str) -> int:
    """A successful AUTH: forget the failures of that account from that address (not those from elsewhere,
    which may be an attacker's). Returns how many were forgotten."""
    return AuthFailure.objects.filter(client_address=client, account=account_key(account)).delete()[0]


@dataclass(frozen=True)
class Throttle:
    """One throttle or block in force, as the console lists it."""

    key: str
    client_address: str
    account: str
    failures: int
    last_failure: datetime.datetime
    verdict: throttle.Verdict


def current_throttles(limits: throttle.Limits = throttle.DEFAULT_LIMITS, now: datetime.datetime | None = None) -> list[Throttle]:
    """Every pair, address and account whose failures in the window slow or refuse AUTH now, blocks first."""
    recent = AuthFailure.objects.filter(at__gte=_since(limits.window, now))
    found = []
    groupings = (
        (throttle.PAIR, ("client_address", "account")), (throttle.ADDRESS, ("client_address",)), (throttle.ACCOUNT, ("account",)),
    )
    for key, fields in groupings:
        for row in recent.values(*fields).annotate(failures=Count("pk"), last=Max("at")):
            verdict = throttle.decide(throttle.Counts(**{key: row["failures"]}), limits)
            if verdict.refuse or verdict.delay:
                found.append(Throttle(key, row.get("client_address", ""), row.get("account", ""), row["failures"],
                                      row["last"], verdict))
    return sorted(found, key=lambda item: (not item.verdict.refuse, -item.verdict.delay, -item.failures, item.key))


def lift(client: str = "", account: str = "") -> int:
    """Forget the failures of an address, an account, or an account from an address; returns how many."""
    if not client and not account:
        return 0
    failures = AuthFailure.objects.all()
    if client:
        failures = failures.filter(client_address=client)
    if account:
        failures = failures.filter(account=account_key(account))
    return failures.delete()[0]
