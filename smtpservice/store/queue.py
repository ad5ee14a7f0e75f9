"""The relay queue as the console and the router change it: store a message made here, act on a queued one.

Database work shared by the router daemon and the console's queue pages, so that neither imports
the other.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.db.models import Count, Min, Q
from django.utils import timezone
from django.utils.translation import ngettext_lazy

from smtpservice.core import outbound, policy, texts
from smtpservice.core.message import message_headers
from smtpservice.models import DeliveryAttempt, QueuedRecipient, ReceivedMessage
from smtpservice.store import storage

log = logging.getLogger("smtpservice.outbound")

State = QueuedRecipient.State
PENDING = (State.QUEUED, State.IN_FLIGHT, State.DEFERRED, State.HELD)
"""States of a recipient still to be sent (or held): what "queue depth" counts."""


def depth(server_id: int | None) -> tuple[dict[str, int], datetime | None]:
    """({state: recipients} of one server's queue, when its oldest pending message was received, or None)."""
    rows = QueuedRecipient.objects.filter(message__server_id=server_id)
    counts = dict(rows.order_by().values_list("state").annotate(count=Count("pk")))
    oldest = rows.filter(state__in=PENDING).aggregate(oldest=Min("message__received_at"))["oldest"]
    return counts, oldest


def store(snap: policy.SettingsSnapshot, server_id: int, mail_from: str, recipients: Iterable[str], data: bytes, origin: str,
          authenticated_as: str = "") -> tuple[int | None, list[str]]:
    """Store a message made here (a test message, a report): local recipients into their mailboxes,
    others into the relay queue. Returns (message id, addresses in a local domain without a person)."""
    deliveries, unknown = [], []
    for address in recipients:
        local, person = outbound.local_person(snap, address)
        if local and person is None:
            unknown.append(address)
        else:
            deliveries.append((address, "local" if local else "relay", person.full_name if person else None))
    if not deliveries:
        return None, unknown
    subject, message_id = message_headers(data)
    message_pk = storage.store_message(server_id, {
        "mail_from": mail_from, "deliveries": deliveries, "data": data, "subject": subject,
        "message_id": message_id, "client_address": None, "client_helo": "", "local_port": 0,
        "tls": False, "authenticated_as": authenticated_as, "session_id": "", "origin": origin,
    })
    return message_pk, unknown


# --- console actions -----------------------------------------------------------------------------

ACTIONS = ("retry", "hold", "release", "delete")


def apply_action(message: ReceivedMessage, action: str, actor: str) -> int:
    """Retry now, hold, release or delete the queued recipients of a message; returns how many changed.

    Recipients being sent right now are left alone (their session decides). Every action is logged
    with ``smtpservice.core.outbound`` and in the message's attempt log.
    """
    now = timezone.now()
    rows = QueuedRecipient.objects.filter(message=message).exclude(state=State.IN_FLIGHT)
    router_held = Q(state=State.HELD, held_by=QueuedRecipient.HeldBy.ROUTER)
    waiting = Q(state__in=[State.QUEUED, State.DEFERRED])
    with transaction.atomic():
        if action == "retry":
            count = rows.filter(waiting | router_held).update(state=State.QUEUED, held_by="", next_attempt_at=now)
        elif action == "hold":
            count = rows.filter(waiting | router_held).update(state=State.HELD, held_by=QueuedRecipient.HeldBy.ADMIN)
        elif action == "release":
            count = rows.filter(state=State.HELD).update(state=State.QUEUED, held_by="", next_attempt_at=now)
        elif action == "delete":
            count, _deleted = rows.delete()
        else:
            raise ValueError(action)
        DeliveryAttempt.objects.create(
            message=message, ended_at=now, actor=actor, outcome=DeliveryAttempt.Outcome.ACTION,
            detail=texts.stored(ACTION_LOG[action], user=actor, count=count),
        )
    log.info("%s: %s on message %s (%s recipients)", actor, action, message.pk, count)
    return count


# Stored with the action's values and read in the reader's language (smtpservice.core.texts).
ACTION_LOG = {
    "retry": texts.register("queue.retry", ngettext_lazy(
        "Retry now by %(user)s: %(count)s recipient due at once.", "Retry now by %(user)s: %(count)s recipients due at once.", "count",
    )),
    "hold": texts.register("queue.hold", ngettext_lazy(
        "Held by %(user)s: %(count)s recipient.", "Held by %(user)s: %(count)s recipients.", "count",
    )),
    "release": texts.register("queue.release", ngettext_lazy(
        "Released by %(user)s: %(count)s recipient due at once.", "Released by %(user)s: %(count)s recipients due at once.", "count",
    )),
    "delete": texts.register("queue.delete", ngettext_lazy(
        "Deleted from the queue by %(user)s: %(count)s recipient will not be sent.",
        "Deleted from the queue by %(user)s: %(count)s recipients will not be sent.", "count",
    )),
}
