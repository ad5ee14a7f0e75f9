"""The router of one server in plain words, for the dashboard's router panel (templates/includes/router_status.html).

Read from the routers' heartbeat rows (``RouterStatus``) and the queue itself, so that the console
needs no connection to the router processes.
"""
import shlex
from dataclasses import dataclass, field

from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from directory.models import Server
from smtpservice.console.presenters import NOTICE, OK, PROBLEM, when
from smtpservice.models import QueuedRecipient, RouterStatus
from smtpservice.store import queue, routers
from smtpservice.store.snapshot import current_revision

State = QueuedRecipient.State


def runrouter_command(server: Server) -> str:
    """The command that starts the router of ``server``, ready to paste into a shell."""
    return f"python manage.py runrouter --server {shlex.quote(server.name)}"


@dataclass(frozen=True)
class RouterReport:
    """Running routers, their last pass and last error, the queue by state, and whether a router uses old settings."""

    level: str
    headline: str
    command: str
    running: tuple = ()
    last_pass: object = None
    last_error: RouterStatus | None = None
    queue: tuple = ()
    pending: int = 0
    oldest: object = None
    current_revision: int = 0
    behind: tuple = field(default=())

    @property
    def flag(self) -> str:
        """The panel's drift flag: is every running router using the directory's current settings?"""
        if not self.running:
            return _("Router not running")
        if self.behind:
            return _("Router uses older settings")
        return _("Router settings current")

    @property
    def flag_level(self) -> str:
        if not self.running:
            return PROBLEM if self.pending else NOTICE
        return NOTICE if self.behind else OK


def router_report(server: Server) -> RouterReport:
    """What the dashboard says about the router of ``server``."""
    running = tuple(routers.fresh(server.pk))
    latest = routers.latest(server.pk)
    counts, oldest = queue.depth(server.pk)
    current = current_revision()
    pending = sum(counts.get(state, 0) for state in queue.PENDING)
    seen = [status for status in (*running, latest) if status is not None]
    last_pass = max((status.last_pass_at for status in seen if status.last_pass_at), default=None)
    errors = [status for status in seen if status.last_error_at]
    behind = tuple(status for status in running if status.revision < current)
    if running:
        level = NOTICE if behind else OK
        headline = ngettext(
            "Router running: %(count)s process, %(where)s", "Router running: %(count)s processes, %(where)s", len(running),
        ) % {
            "count": len(running), "where": ", ".join(_("%(pid)s on %(host)s") % {"pid": status.pid, "host": status.host or "?"} for status in running),
        }
    elif latest is not None:
        level = PROBLEM if pending else NOTICE
        headline = _("Router not running: its last heartbeat was %(when)s.") % {"when": when(latest.heartbeat_at)}
    else:
        level = PROBLEM if pending else NOTICE
        headline = _("Router not running: no router has reported yet.")
    return RouterReport(
        level=level, headline=headline, command=runrouter_command(server), running=running, last_pass=last_pass,
        last_error=max(errors, key=lambda status: status.last_error_at) if errors else None,
        queue=tuple((label, counts.get(state, 0)) for state, label in State.choices),
        pending=pending, oldest=oldest, current_revision=current, behind=behind,
    )
