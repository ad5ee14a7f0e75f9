"""The routers' heartbeat rows (``RouterStatus``), written by the router daemon and read by the console."""
from datetime import timedelta

from django.utils import timezone

from smtpservice.models import RouterStatus

KEEP_STOPPED_DAYS = 7
"""Rows of routers that stopped are kept this long, so the console can say when a router last ran."""


def heartbeat(router_id: str, server_id: int, fields: dict) -> None:
    """Write one router's status row (created on its first heartbeat)."""
    RouterStatus.objects.update_or_create(router_id=router_id, defaults={
        **fields, "server_id": server_id, "heartbeat_at": timezone.now(),
    })


def prune(server_id: int) -> None:
    """Forget routers of this server that have not reported for a week (each run of a router has its own row)."""
    RouterStatus.objects.filter(
        server_id=server_id, heartbeat_at__lt=timezone.now() - timedelta(days=KEEP_STOPPED_DAYS),
    ).delete()


def fresh(server_id: int) -> list[RouterStatus]:
    """The rows of routers that are running now (heartbeat within ``RouterStatus.STALE_AFTER_SECONDS``)."""
    since = timezone.now() - timedelta(seconds=RouterStatus.STALE_AFTER_SECONDS)
    return list(RouterStatus.objects.filter(server_id=server_id, running=True, heartbeat_at__gte=since))


def latest(server_id: int) -> RouterStatus | None:
    """The most recent row of any router of this server, running or not."""
    return RouterStatus.objects.filter(server_id=server_id).order_by("-heartbeat_at").first()
