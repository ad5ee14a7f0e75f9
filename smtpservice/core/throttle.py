"""How failed AUTH attempts slow or refuse the next one: a pure decision from failure counts.

The listener counts failures per account together with the client address (``pair``), per address and
per account, over a sliding window, and asks ``decide`` before it checks a password. An address that
keeps guessing one account, or sprays many, is refused; an **account** under attack is only **slowed**,
at most ``account_max_delay`` seconds, so its owner, from an address that has not failed, still gets in
within 5 s (nobody can lock an account out by failing on purpose). A malformed AUTH line is a protocol
error (the session's error limit), not a failed password: ``counts_as_failure`` says which outcomes
count. No ORM, no clock: the store (``smtpservice.store.throttle``) gives the counts.
"""
from dataclasses import dataclass

from django.utils.translation import gettext as _

from smtpservice.core import policy

WRONG_PASSWORD = "wrong_password"
UNKNOWN_ACCOUNT = "unknown_account"
NO_PASSWORD = "no_password"
MALFORMED = "malformed"
"""Outcomes of an AUTH attempt that failed. Only the first three tried a password."""

PAIR = "pair"
ADDRESS = "address"
ACCOUNT = "account"
"""What a throttle is keyed by: an account from one address, an address, an account."""


@dataclass(frozen=True)
class Limits:
    """Thresholds; the defaults follow OWASP ASVS 2.2.1 and NIST SP 800-63B s 5.2.2 (at most 100 failures)."""

    window: float = 900.0
    """Seconds a failure counts for (sliding)."""
    pair_refuse: int = 5
    """Failures for one account from one address before that address is refused for that account."""
    address_refuse: int = 20
    """Failures from one address, any accounts (password spraying), before the address is refused."""
    base_delay: float = 1.0
    """Seconds of delay after one failure; doubled for each further one."""
    max_delay: float = 16.0
    """Most delay for a pair or an address."""
    account_max_delay: float = 4.0
    """Most delay a failing account puts on every address: below 5 s, so the owner still gets in."""


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Counts:
    """Failures in the window: of this account from this address, from this address, of this account."""

    pair: int = 0
    address: int = 0
    account: int = 0


@dataclass(frozen=True)
class Verdict:
    """Wait ``delay`` seconds before checking the password, or refuse without checking (``refuse``)."""

    delay: float
    refuse: bool
    key: str = ""
    """What decided it: PAIR, ADDRESS or ACCOUNT; "" when nothing failed."""
    detail: str = ""


def account_for(snap: policy.SettingsSnapshot, login: str) -> str:
    """The account an AUTH attempt is counted under: the person the login finds (whichever name variation
    was typed), else the login as typed, so that guesses at unknown names are throttled as well."""
    person = policy.find_person(snap, login).person
    return person.full_name if person is not None else str(login).strip()


def counts_as_failure(outcome: str) -> bool:
    """A password was tried and refused. A malformed AUTH tried none: it counts as a protocol error only."""
    return outcome in (WRONG_PASSWORD, UNKNOWN_ACCOUNT, NO_PASSWORD)


def backoff(failures: int, limits: Limits, ceiling: float) -> float:
    """``base_delay`` doubled for each failure after the first, at most ``ceiling``; 0 without failures."""
    if failures <= 0:
        return 0.0
    return min(ceiling, limits.base_delay * 2 ** min(failures - 1, 32))


def decide(counts: Counts, limits: Limits = DEFAULT_LIMITS) -> Verdict:
    """The delay before the next AUTH of this account from this address, or a refusal.

    Refusals are for an address only (one account guessed too often from it, or many accounts): the
    account itself is never refused, only slowed by at most ``account_max_delay``.
    """
    values = {"pair": counts.pair, "address": counts.address, "account": counts.account,
              "minutes": int(limits.window // 60)}
    if counts.pair >= limits.pair_refuse:
        return Verdict(0.0, True, PAIR, _(
            "%(pair)s failed AUTH for this account from this address in %(minutes)s minutes: refused from this address."
        ) % values)
    if counts.address >= limits.address_refuse:
        return Verdict(0.0, True, ADDRESS, _(
            "%(address)s failed AUTH from this address in %(minutes)s minutes: this address is refused."
        ) % values)
    delays = {
        PAIR: backoff(counts.pair, limits, limits.max_delay),
        ADDRESS: backoff(counts.address, limits, limits.max_delay),
        ACCOUNT: backoff(counts.account, limits, limits.account_max_delay),
    }
    key = max(delays, key=delays.get)
    if not delays[key]:
        return Verdict(0.0, False)
    values["delay"] = delays[key]
    return Verdict(delays[key], False, key, _(
        "Slowed by %(delay)s s: %(pair)s failures for this account from this address, %(address)s from this "
        "address, %(account)s for this account in %(minutes)s minutes."
    ) % values)
