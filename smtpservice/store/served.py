"""Which saved version of a Server document a listener serves, and the last one whose ports all bound.

The listener reports the directory revision its settings snapshot was read at
(``ListenerStatus.revision``). Every ``DocumentVersion`` is stamped, when it is written, with the
revision its change produced (the revision is bumped in the same transaction, before the version is
stored). So the version a listener serves is the newest version of its Server document stamped at
or below the revision it reports. When a heartbeat reports every configured port bound, that version
is marked ``bound_at``: it is a version the console can offer to go back to when a later change makes
a port fail to bind. ``docs/design/history.md`` explains the design.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models.signals import post_save, pre_save
from django.utils.translation import gettext as _

from directory.models import DocumentVersion
from smtpservice.core import documents
from smtpservice.models import ListenerStatus
from smtpservice.store.snapshot import current_revision

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from directory.models import Server

SERVER = "server"




def stamp_revision(sender: type[DocumentVersion], instance: DocumentVersion, **kwargs) -> None:
    """Signal receiver: a new version records the directory revision that its change produced.

    A baseline (a server as it was before history was kept) is what a running listener serves at that
    moment: when that listener reports every port bound, the baseline is a version that bound.
    """
    if instance.settings_revision is None:
        instance.settings_revision = current_revision()
    if instance.action == DocumentVersion.Action.BASELINE and instance.document_type == SERVER and instance.bound_at is None:
        status = ListenerStatus.objects.filter(server_id=instance.object_id).first()
        if status is not None and not status.is_stale and all_bound(status.ports):
            instance.bound_at = status.heartbeat_at


def note_heartbeat(sender: type[ListenerStatus], instance: ListenerStatus, **kwargs) -> None:
    """Signal receiver: each heartbeat may prove that the version the listener serves binds its ports."""
    mark_bound(instance)


def connect_signals() -> None:
    pre_save.connect(stamp_revision, sender=DocumentVersion, dispatch_uid="smtpservice.store.served.stamp")
    post_save.connect(note_heartbeat, sender=ListenerStatus, dispatch_uid="smtpservice.store.served.heartbeat")


def versions_of(server_id: int) -> QuerySet[DocumentVersion]:
    return DocumentVersion.objects.filter(document_type=SERVER, object_id=str(server_id))


def served_version(status: ListenerStatus) -> DocumentVersion | None:
    """The version of the Server document that the listener reporting ``status`` serves, or None."""
    return (
        versions_of(status.server_id)
        .filter(settings_revision__lte=status.revision)
        .order_by("-number")
        .first()
    )


def configured(ports: list[dict]) -> list[dict]:
    return [port for port in ports if port.get("configured")]


def all_bound(ports: list[dict]) -> bool:
    """Every port the settings ask for is bound, and there is at least one."""
    wanted = configured(ports)
    return bool(wanted) and all(port.get("bound") for port in wanted)


def failed_ports(ports: list[dict]) -> list[dict]:
    """Ports the settings ask for that the listener could not bind, with its error."""
    return [port for port in configured(ports) if not port.get("bound") and port.get("error")]


def mark_bound(status: ListenerStatus) -> DocumentVersion | None:
    """Record that the version served bound every configured port (once: the first time it is seen)."""
    if not status.running or not all_bound(status.ports):
        return None
    version = served_version(status)
    if version is not None and version.bound_at is None:
        version.bound_at = status.heartbeat_at
        DocumentVersion.objects.filter(pk=version.pk, bound_at__isnull=True).update(bound_at=status.heartbeat_at)
    return version


def port_values(data: dict) -> dict:
    return {name: data.get(name) for name in documents.BINDING_FIELDS}


def last_bound_version(server: Server, current_data: dict) -> DocumentVersion | None:
    """The newest version whose ports all bound and whose port settings differ from ``current_data``.

    Going back to a version with the same port settings would fail the same way, so it is skipped.
    """
    wanted = port_values(current_data)
    for version in versions_of(server.pk).filter(bound_at__isnull=False).exclude(action=DocumentVersion.Action.DELETE).order_by("-number"):
        if port_values(version.data) != wanted:
            return version
    return None


def listener_status(server: Server) -> ListenerStatus | None:
    return ListenerStatus.objects.filter(server=server).first()


def serving_label(server: Server, status: ListenerStatus | None = None) -> str:
    """“serving version N of mail1/Acme” for a running listener, from the database; "" when unknown."""
    status = status or listener_status(server)
    if status is None or status.is_stale:
        return ""
    version = served_version(status)
    if version is None:
        return _("serving settings revision %(revision)s of %(server)s (saved before versions were kept)") % {
            "revision": status.revision, "server": server.name,
        }
    return _("serving version %(number)s of %(server)s") % {"number": version.number, "server": server.name}


def server_versions(server: Server, current_data: dict) -> dict:
    """What the Server page says about versions and the listener: served, latest, failed ports, rollback."""
    status = listener_status(server)
    running = status is not None and not status.is_stale
    if running:
        mark_bound(status)
    served = served_version(status) if running else None
    latest = versions_of(server.pk).order_by("-number").first()
    failed = failed_ports(status.ports) if running else []
    return {
        "status": status,
        "running": running,
        "served": served,
        "serving_label": serving_label(server, status) if running else "",
        "latest": latest,
        "behind": served is not None and latest is not None and served.number < latest.number,
        "failed_ports": failed,
        "rollback": last_bound_version(server, current_data) if failed else None,
    }
