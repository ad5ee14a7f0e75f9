"""Outages: settings after which no one can send mail to a server, shown before saving and after.

The rule is the one the listener applies (``policy.site_enabled`` on every bound port of every
local address the server answers on), so the console warns exactly when every SMTP connection
would be refused. The original Domino document has this failure built in: with Internet Sites
enabled, deleting the only SMTP Inbound site, or setting all its authentication options to No,
makes every greeting “554 5.7.0 This site is not enabled on the server.”
"""
from dataclasses import dataclass, replace

from django.utils.translation import gettext as _

from directory.models import InternetSite, Server
from smtpservice.core import policy
from smtpservice.store.snapshot import load_snapshot

ANY_ADDRESS = "0.0.0.0"
"""Stands for “any address”: it matches no site entry but *, as a client on an unmapped address would."""


@dataclass(frozen=True)
class Outage:
    """Every SMTP connection to ``server_name`` is refused: with ``reply`` (the wire text) and why."""

    server_name: str
    reply: str
    detail: str

    @property
    def headline(self) -> str:
        if self.reply:
            return _("Every SMTP connection to server %(server)s is refused with “%(reply)s”") % {
                "server": self.server_name, "reply": self.reply,
            }
        return _("Every SMTP connection to server %(server)s is refused: no inbound port is bound.") % {
            "server": self.server_name,
        }


def local_addresses(snap: policy.SettingsSnapshot) -> list[str]:
    """The local addresses a client can reach: each listen address, else any address and each site's mapped entry."""
    if snap.listen_addresses:
        return list(snap.listen_addresses)
    addresses = [ANY_ADDRESS]
    if snap.load_internet_sites:
        addresses += [entry for site in snap.sites for entry in site.mapped_addresses if entry != policy.ANY]
    return addresses


def outage_of(snap: policy.SettingsSnapshot) -> Outage | None:
    """The outage these settings cause, or None when at least one port and address accepts a greeting."""
    bound = [binding for binding in policy.bindings(snap) if binding.enabled]
    if not bound:
        return Outage(snap.server_name, "", _("No inbound port is bound (see the Ports tab).")) if snap.smtp_listener_enabled else None
    first_refusal = None
    for address in local_addresses(snap):
        for binding in bound:
            facts = policy.SessionFacts(local_ip=address, local_host=address, local_port=binding.port, port=binding.port_kind, client_ip="")
            decision = policy.site_enabled(snap, facts)
            if decision.allowed:
                return None
            first_refusal = first_refusal or decision
    return Outage(snap.server_name, first_refusal.reply, first_refusal.detail)


def server_outage(server: Server) -> Outage | None:
    """The outage of a stored Server document now (dashboard, Server page)."""
    return outage_of(load_snapshot(server.name, people_and_groups=False))  # ports and sites only: no people needed


def outages_after_site_deleted(site: InternetSite) -> list[Outage]:
    """The servers that no one could send mail to once ``site`` is deleted (the delete page's preview)."""
    found = []
    for server in Server.objects.order_by("name"):
        if not site.hosts(server.name):
            continue
        snap = load_snapshot(server.name, people_and_groups=False)
        after = outage_of(replace(snap, sites=tuple(other for other in snap.sites if other.name != site.name)))
        if after is not None:
            found.append(after)
    return found
