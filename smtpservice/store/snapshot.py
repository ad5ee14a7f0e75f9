"""Read the directory into the immutable ``SettingsSnapshot`` the SMTP policy works on.

The only module of the policy with database code. A running listener must not reload the snapshot
for each connection: it compares ``current_revision()`` (one query on one row) with the revision the
snapshot was built from, and reloads when they differ (``refreshed``). Every saved or deleted
directory document bumps that revision inside its own transaction, through the signals connected
in ``SmtpServiceConfig.ready()``. Changes made with ``QuerySet.update()`` or raw SQL send no signal
and are not seen; the console and the import always save documents one by one.

``load_snapshot`` reads the revision before anything else, so a change saved while it runs leaves
the snapshot's revision older than the directory's, and the next check reloads.
"""
import threading
from typing import TYPE_CHECKING

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Q
from django.db.models.signals import post_delete, post_save
from django.utils import timezone
from django.utils.translation import gettext as _

from directory import names
from directory.models import ConfigurationSettings, Document, InternetSite, Person, Server, groups_mapping
from smtpservice.core import documents, policy
from smtpservice.models import DirectoryRevision

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper


class ServerNotFound(LookupError):
    """No Server document has the name the listener was started for."""


def document_models() -> list[type[Document]]:
    """Every directory document whose change may alter the listener's behaviour (not the audit trail)."""
    return [model for model in apps.get_app_config("directory").get_models() if issubclass(model, Document)]


def _revision_sql(connection: "BaseDatabaseWrapper", template: str) -> str:
    """A statement on the revision row, its names quoted for this database.

    Plain SQL rather than the ORM: the row is read and bumped once for every document saved (10,000
    times by an import of 10,000 people, through the signals), where the ORM's query building costs
    several times the query itself.
    """
    meta = DirectoryRevision._meta
    quote = connection.ops.quote_name
    return template.format(
        table=quote(meta.db_table), revision=quote(meta.get_field("revision").column),
        changed=quote(meta.get_field("changed").column), id=quote(meta.pk.column),
    )


def bump_revision(sender: type[Document] | None = None, using: str | None = None, **kwargs) -> None:
    """Signal receiver: count one more directory change, in the transaction that saves it."""
    now = timezone.now()
    connection = connections[using or DEFAULT_DB_ALIAS]
    with connection.cursor() as cursor:
        cursor.execute(
            _revision_sql(connection, "UPDATE {table} SET {revision} = {revision} + 1, {changed} = %s WHERE {id} = %s"),
            [connection.ops.adapt_datetimefield_value(now), DirectoryRevision.SINGLETON],
        )
        bumped = cursor.rowcount
    if not bumped:
        DirectoryRevision.objects.using(using).get_or_create(
            pk=DirectoryRevision.SINGLETON, defaults={"revision": 1, "changed": now}
        )


def connect_signals() -> None:
    for model in document_models():
        label = model._meta.label_lower
        post_save.connect(bump_revision, sender=model, dispatch_uid=f"smtpservice.revision.save.{label}")
        post_delete.connect(bump_revision, sender=model, dispatch_uid=f"smtpservice.revision.delete.{label}")


def current_revision() -> int:
    """The directory's revision, 0 before any change: one query on one row."""
    connection = connections[DEFAULT_DB_ALIAS]
    with connection.cursor() as cursor:
        cursor.execute(_revision_sql(connection, "SELECT {revision} FROM {table} WHERE {id} = %s"), [DirectoryRevision.SINGLETON])
        row = cursor.fetchone()
    return row[0] if row else 0


def refreshed(snapshot: policy.SettingsSnapshot) -> policy.SettingsSnapshot:
    """The same snapshot while the directory is unchanged (one query), else a new one."""
    if current_revision() == snapshot.revision:
        return snapshot
    return load_snapshot(snapshot.server_name)


_recent = {}  # server name -> (revision stamp, the last full snapshot this process read for a console page)
_recent_lock = threading.Lock()
RECENT_SERVERS = 8


def _revision_stamp():
    """The revision and the time of the last change: unlike the revision alone, never the same for two
    different directories (a database restored from a backup, or a test database rolled back)."""
    connection = connections[DEFAULT_DB_ALIAS]
    with connection.cursor() as cursor:
        cursor.execute(_revision_sql(connection, "SELECT {revision}, {changed} FROM {table} WHERE {id} = %s"), [DirectoryRevision.SINGLETON])
        return cursor.fetchone()


def recent_snapshot(server_name: str) -> policy.SettingsSnapshot:
    """The full snapshot of ``server_name`` for a console page, read again only when the directory changed.

    With 10,000 people a full read takes a tenth of a second; while the directory is unchanged (one
    query on one row) a page reuses the one this process read last.
    """
    stamp = _revision_stamp()  # read first: a change saved while the snapshot loads makes the next call reload
    with _recent_lock:
        cached = _recent.get(server_name)
    if cached is not None and stamp is not None and cached[0] == stamp:
        return cached[1]
    snap = load_snapshot(server_name)
    with _recent_lock:
        if len(_recent) >= RECENT_SERVERS and server_name not in _recent:
            _recent.clear()
        _recent[server_name] = (stamp, snap)
    return snap


def _configuration(server: Server) -> tuple[ConfigurationSettings, str]:
    """The Configuration Settings that apply: the server's own, else the default (*), else the model defaults."""
    found = {c.server_id: c for c in ConfigurationSettings.objects.filter(Q(server=server) | Q(server__isnull=True))}
    if server.pk in found:
        return found[server.pk], _("Configuration Settings of %(server)s") % {"server": server.name}
    if None in found:
        return found[None], _("default Configuration Settings (*)")
    return ConfigurationSettings(), _("built-in defaults (no Configuration Settings document)")


@transaction.atomic
def load_snapshot(server_name: str, people_and_groups: bool = True) -> policy.SettingsSnapshot:
    """Everything the listener of ``server_name`` needs, in a constant number of queries.

    ``people_and_groups=False`` leaves out the Person and Group documents (tens of thousands in a large
    directory) for console pages that show or compare settings and never look a user up.
    """
    revision = current_revision()
    server = Server.objects.select_related("tls_credentials").filter(name__iexact=names.abbreviate(server_name)).first()
    if server is None:
        raise ServerNotFound(_("No Server document is named “%(name)s”.") % {"name": server_name})
    configuration, source = _configuration(server)
    sites = list(InternetSite.objects.hosting(server.name).select_related("tls_credentials"))
    people = tuple(
        policy.PersonSnapshot(*row)
        for row in Person.objects.order_by("full_name").values_list(
            "full_name", "first_name", "last_name", "short_name", "internet_address", "internet_password"
        )
    ) if people_and_groups else ()
    groups = groups_mapping() if people_and_groups else {}
    return documents.build(server, configuration, source, sites, people, groups, revision)
