"""The dashboard's numbers: mail accepted and refused by reason, AUTH failures, queue depth, per server.

A month of traffic is about 100,000 session log rows, too many to read on every dashboard view. So
each hour of the session log is counted once, when it is settled (``SETTLE`` after its end, when the
listener has written every session that started in it), into a ``TrafficHour`` row; the dashboard then
reads at most 24 of them per server and counts only the sessions of the last hour or so itself.
"""
import datetime
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from smtpservice.models import QueuedRecipient, SessionLog, TrafficHour

HOURS = 24
HOUR = datetime.timedelta(hours=1)
SETTLE = datetime.timedelta(minutes=15)
"""The listener writes a session when it ends; sessions last minutes at most (its timeouts)."""

# Refusals by reason: the rule that decided (``policy.Decision.rule``) grouped into what an administrator
# tells apart. A rule not listed counts as OTHER.
SITE, CONNECTION, RELAY, RECIPIENT, LIMITS, SENDER, PROTOCOL, OTHER = (
    "site", "connection", "relay", "recipient", "limits", "sender", "protocol", "other",
)
REASON_LABELS = {
    SITE: _("site not enabled"),
    CONNECTION: _("connection denied"),
    RELAY: _("relay denied"),
    RECIPIENT: _("unknown recipient"),
    LIMITS: _("size and limits"),
    SENDER: _("sender refused"),
    PROTOCOL: _("command errors"),
    OTHER: _("other"),
}
RULE_REASONS = {
    "no_site": SITE, "all_options_off": SITE, "port_without_method": SITE,
    "connection_allow_hosts": CONNECTION, "connection_deny_hosts": CONNECTION,
    "user_unknown": RECIPIENT, "recipient_syntax": RECIPIENT,
    "message_size": LIMITS, "max_recipients": LIMITS, "error_limit": LIMITS,
    "sender_syntax": SENDER, "sender_not_owned": SENDER, "anonymous_not_allowed": SENDER, "starttls_required": SENDER,
    "ehlo_first": PROTOCOL, "helo_first": PROTOCOL, "need_mail": PROTOCOL, "nested_mail": PROTOCOL,
    "bare_line_end": PROTOCOL, "http_request": PROTOCOL, "auth_in_transaction": PROTOCOL,
}
AUTH_COMMAND = "AUTH"


def reason_of(rule: str) -> str:
    if rule in RULE_REASONS:
        return RULE_REASONS[rule]
    return RELAY if rule.startswith("relay") else OTHER


def reply_code(reply: str) -> int:
    head = (reply or "")[:3]
    return int(head) if head.isdigit() else 0


@dataclass
class Counts:
    """Sessions, messages accepted, refusals by reason and AUTH failures over some span of time."""

    sessions: int = 0
    accepted: int = 0
    refused: Counter = field(default_factory=Counter)
    auth_failures: int = 0
    queue_depth: int = 0
    """Recipients waiting in the outbound queue at the end of the span (not summed by ``add``)."""

    def add_session(self, accepted: int, events: list) -> None:
        """Count one session: every reply of 400 or more is a refusal, a refused AUTH an AUTH failure."""
        self.sessions += 1
        self.accepted += accepted
        for event in events:
            if reply_code(event.get("reply", "")) < 400:
                continue
            if event.get("command") == AUTH_COMMAND:
                self.auth_failures += 1
            else:
                self.refused[reason_of(event.get("rule", ""))] += 1

    def add(self, other: "Counts") -> None:
        self.sessions += other.sessions
        self.accepted += other.accepted
        self.refused.update(other.refused)
        self.auth_failures += other.auth_failures

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())

    def by_reason(self) -> list:
        """``(label, count)`` of each reason refused at least once, most frequent first."""
        return [(REASON_LABELS[reason], count) for reason, count in self.refused.most_common()]


def floor_hour(moment: datetime.datetime) -> datetime.datetime:
    return moment.astimezone(datetime.UTC).replace(minute=0, second=0, microsecond=0)


def _count_by_hour(server_ids: Iterable[int], start: datetime.datetime, end: datetime.datetime | None = None) -> dict:
    """``{(server id, hour): Counts}`` of the sessions that started from ``start`` (to ``end``)."""
    rows = SessionLog.objects.filter(server_id__in=server_ids, started_at__gte=start)
    if end is not None:
        rows = rows.filter(started_at__lt=end)
    found = {}
    for server_id, started_at, accepted, events in rows.values_list("server_id", "started_at", "messages_accepted", "events"):
        found.setdefault((server_id, floor_hour(started_at)), Counts()).add_session(accepted, events)
    return found


def _settle(server_ids: Sequence[int], first: datetime.datetime, settled_until: datetime.datetime) -> dict:
    """The stored hours, after counting and storing the settled ones not counted yet."""
    hours = [first + HOUR * index for index in range(HOURS) if first + HOUR * index < settled_until]
    stored = {
        (row.server_id, row.hour): Counts(row.sessions, row.accepted, Counter(row.refused), row.auth_failures, row.queue_depth)
        for row in TrafficHour.objects.filter(server_id__in=server_ids, hour__gte=first, hour__lt=settled_until)
    }
    missing = [(server_id, hour) for server_id in server_ids for hour in hours if (server_id, hour) not in stored]
    if missing:
        counted = _count_by_hour({server_id for server_id, _hour in missing}, min(hour for _id, hour in missing), settled_until)
        new = {key: counted.get(key, Counts()) for key in missing}
        for hour in sorted({hour for _server_id, hour in missing}):
            depths = queue_depth_at(server_ids, hour + HOUR)
            for server_id in server_ids:
                if (server_id, hour) in new:
                    new[server_id, hour].queue_depth = depths[server_id]
        # Two dashboards may settle the same hour at once: the same counts, so either row will do.
        TrafficHour.objects.bulk_create([
            TrafficHour(server_id=server_id, hour=hour, sessions=counts.sessions, accepted=counts.accepted,
                        refused=dict(counts.refused), auth_failures=counts.auth_failures, queue_depth=counts.queue_depth)
            for (server_id, hour), counts in new.items()
        ], ignore_conflicts=True)
        stored.update(new)
    return stored


@dataclass
class ServerTraffic:
    """One server's last 24 hours, hour by hour, with the last hour's and the day's totals."""

    hours: list
    """``(hour, Counts)`` for each of the 24 hours up to the current one, oldest first."""
    last_hour: Counts
    day: Counts
    queue_depth: int = 0
    queue_hours: list = field(default_factory=list)
    """``(hour end, recipients waiting)`` at the end of each hour, oldest first, the last one now."""


def traffic(server_ids: Iterable[int], now: datetime.datetime | None = None) -> dict:
    """``{server id: ServerTraffic}`` for the dashboard: at most 24 stored hours a server, plus the unsettled sessions."""
    now = now or timezone.now()
    server_ids = list(server_ids)
    current = floor_hour(now)
    first = current - HOUR * (HOURS - 1)
    settled_until = min(floor_hour(now - SETTLE), current + HOUR)
    hourly = _settle(server_ids, first, settled_until)
    last_hour = {server_id: Counts() for server_id in server_ids}
    recent = SessionLog.objects.filter(server_id__in=server_ids, started_at__gte=min(settled_until, now - HOUR))
    for server_id, started_at, accepted, events in recent.values_list("server_id", "started_at", "messages_accepted", "events"):
        if started_at >= settled_until:
            hourly.setdefault((server_id, floor_hour(started_at)), Counts()).add_session(accepted, events)
        if started_at >= now - HOUR:
            last_hour[server_id].add_session(accepted, events)
    result = {}
    for server_id in server_ids:
        hours = [(first + HOUR * index, hourly.get((server_id, first + HOUR * index), Counts())) for index in range(HOURS)]
        day = Counts()
        for _hour, counts in hours:
            day.add(counts)
        result[server_id] = ServerTraffic(hours, last_hour[server_id], day)
    # The depth at the end of a settled hour is stored with it; the unsettled hour ends and now are counted.
    hour_starts = [first + HOUR * index for index in range(HOURS - 1)]
    unsettled = {hour + HOUR: queue_depth_at(server_ids, hour + HOUR) for hour in hour_starts if server_ids and hour >= settled_until}
    now_depth = queue_waiting(server_ids) if server_ids else {}
    for server_id, numbers in result.items():
        numbers.queue_hours = [
            (hour + HOUR, unsettled[hour + HOUR][server_id] if hour + HOUR in unsettled else counts.queue_depth)
            for hour, counts in numbers.hours[:-1]
        ] + [(now, now_depth[server_id])]
        numbers.queue_depth = now_depth[server_id]
    return result




WAITING = (QueuedRecipient.State.QUEUED, QueuedRecipient.State.IN_FLIGHT, QueuedRecipient.State.DEFERRED, QueuedRecipient.State.HELD)


def queue_waiting(server_ids: Sequence[int]) -> dict:
    """``{server id: recipients in the outbound queue now}`` (read through the index on the state)."""
    rows = (
        QueuedRecipient.objects.filter(state__in=WAITING, message__server_id__in=server_ids)
        .values_list("message__server_id").annotate(count=Count("pk")).order_by()
    )
    found = dict(rows)
    return {server_id: found.get(server_id, 0) for server_id in server_ids}


def queue_depth_at(server_ids: Sequence[int], moment: datetime.datetime) -> dict:
    """``{server id: recipients waiting at moment}``: received by then and not yet delivered or failed.

    The queue keeps no history, so the past is rebuilt from each recipient's times: it entered the queue
    when its message was received and left it when delivered (``delivered_at``) or, when it failed,
    at its last attempt (``next_attempt_at``, which the router stops moving then). A recipient an
    administrator deleted is gone from the past too, unless its hour was already stored.
    """
    left = (
        Q(state=QueuedRecipient.State.DELIVERED, delivered_at__lte=moment)
        | Q(state=QueuedRecipient.State.FAILED, next_attempt_at__lte=moment)
    )
    rows = (
        QueuedRecipient.objects.filter(message__server_id__in=server_ids, message__received_at__lte=moment).exclude(left)
        .values_list("message__server_id").annotate(count=Count("pk")).order_by()
    )
    found = dict(rows)
    return {server_id: found.get(server_id, 0) for server_id in server_ids}
