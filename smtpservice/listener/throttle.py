"""Failed AUTH attempts per client address and per account, in memory, over a sliding window.

An attempt counts as failed from the moment it starts and is forgiven if it succeeds, so parallel
sessions cannot all slip under the limit before the first failure is known. The session machine
counts the attempts of one session itself (``core.session``); this counts across sessions.
"""
from __future__ import annotations

import collections

from django.utils.translation import gettext as _

from smtpservice.core import policy
from smtpservice.core.limits import Limits

Key = tuple[str, str]


class AuthThrottle:
    """Failures by ("client", address) and ("account", full name) within ``limits.auth_window`` seconds."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.failures: dict[Key, collections.deque] = {}
        self.pruned_at = 0.0

    @staticmethod
    def account(snap: policy.SettingsSnapshot, login: str) -> str:
        """The account a login names: the person it finds (whichever name variation was typed), else the login."""
        person = policy.find_person(snap, login).person
        return person.full_name if person is not None else " ".join(login.split()).casefold()

    @staticmethod
    def keys(client: str, account: str | None) -> list[Key]:
        keys = [("client", client)]
        if account is not None:
            keys.append(("account", account))
        return keys

    def count(self, key: Key, now: float) -> int:
        times = self.failures.get(key)
        if not times:
            return 0
        while times and times[0] <= now - self.limits.auth_window:
            times.popleft()
        return len(times)

    def blocked(self, client: str, account: str | None, now: float) -> str | None:
        """The reason further AUTH is refused with 421, or None."""
        limits = self.limits
        for key, limit in zip(self.keys(client, account), (limits.auth_failures_per_client, limits.auth_failures_per_account),
                              strict=False):
            count = self.count(key, now)
            if count >= limit:
                return _("%(count)s failed AUTH attempts for %(kind)s %(value)s in the last %(window)s seconds.") % {
                    "count": count, "kind": key[0], "value": key[1], "window": int(limits.auth_window),
                }
        return None

    def begin(self, client: str, account: str | None, now: float, session_failures: int = 0) -> float:
        """Count the attempt as failed until it succeeds; return the seconds to wait before checking it."""
        keys = self.keys(client, account)
        earlier = max([session_failures, *(self.count(key, now) for key in keys)])
        for key in keys:
            if key not in self.failures and len(self.failures) >= self.limits.tracked_keys:
                self.prune(now)
                if len(self.failures) >= self.limits.tracked_keys:
                    del self.failures[next(iter(self.failures))]
            self.failures.setdefault(key, collections.deque()).append(now)
        if not earlier:
            return 0.0
        return min(self.limits.auth_max_delay, self.limits.auth_delay * 2 ** (earlier - 1))

    def undo(self, client: str, account: str | None) -> None:
        """The attempt could not be checked (a temporary failure): it does not count."""
        for key in self.keys(client, account):
            times = self.failures.get(key)
            if times:
                times.pop()

    def forgive(self, client: str, account: str | None) -> None:
        """The attempt succeeded: it does not count, and the account's earlier failures are forgotten."""
        self.undo(client, account)
        self.failures.pop(self.keys(client, account)[-1], None)

    def prune(self, now: float) -> None:
        """Forget the keys whose failures have all left the window."""
        self.pruned_at = now
        for key in [key for key in self.failures if not self.count(key, now)]:
            del self.failures[key]
