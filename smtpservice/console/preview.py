"""Change preview: what saving a Server, Internet Site or Configuration Settings form does to listeners.

The ports come from ``policy.bindings`` asked twice: on the snapshot a listener builds from the
directory now, and on that snapshot with the unsaved document's values applied. The listener's own
reconcile asks ``bindings`` too, so the preview cannot promise a port the listener would not bind.
Sessions in progress keep the snapshot they started with; the other changed settings apply to new
connections (spec 3.10). Configuration Settings hold no port setting, so their ports stay as they are.
"""
import errno
import socket
from dataclasses import dataclass, replace

from django.utils.translation import gettext as _

from directory.models import ConfigurationSettings, InternetSite, Server
from smtpservice.console.outage import Outage, outage_of
from smtpservice.core import documents, policy
from smtpservice.models import ListenerStatus
from smtpservice.store.snapshot import load_snapshot

BIND, UNBIND, REBIND, MOVE, UNCHANGED = "bind", "unbind", "rebind", "move", "unchanged"


def describe_addresses(addresses):
    return ", ".join(addresses) if addresses else _("every address")


def describe_binding(binding):
    """“2526 on every address” for a port the listener binds, “465, not bound” for one it does not."""
    if binding is None:
        return "—"
    if not binding.enabled:
        return _("%(port)s, not bound") % {"port": binding.port}
    return _("%(port)s on %(addresses)s") % {"port": binding.port, "addresses": describe_addresses(binding.addresses)}


@dataclass(frozen=True)
class PortChange:
    """One inbound port of a server before and after the change, as ``policy.bindings`` decides it."""

    kind: str
    old: policy.Binding | None
    new: policy.Binding
    bound_now: bool | None = None
    """What the running listener reports for this port now; None without a running listener."""
    availability: str = ""
    """Whether the port to be bound is free, when the console can know (it runs on the listener's host)."""
    taken: bool | None = None
    """True when another process holds the port on the listener's host; None when nobody can tell here."""

    @property
    def label(self):
        return _("TCP/IP port") if self.kind == policy.TCP else _("SSL port")

    @property
    def effect(self):
        old, new = self.old, self.new
        was = old is not None and old.enabled
        if not was:
            return BIND if new.enabled else UNCHANGED
        if not new.enabled:
            return UNBIND
        if old.port != new.port:
            return MOVE
        return REBIND if old.addresses != new.addresses else UNCHANGED

    @property
    def rebinds(self):
        return self.effect != UNCHANGED

    @property
    def before(self):
        return describe_binding(self.old)

    @property
    def after(self):
        return describe_binding(self.new)

    def describe(self):
        """What the listener does with this port when the change is saved, in one sentence."""
        old, new = self.old, self.new
        effect = self.effect
        if effect == BIND:
            return _("The listener binds port %(port)s on %(addresses)s.") % {
                "port": new.port, "addresses": describe_addresses(new.addresses),
            }
        if effect == UNBIND:
            return _("The listener unbinds port %(port)s: new connections to it are refused; sessions in progress go on.") % {
                "port": old.port,
            }
        if effect == MOVE:
            return _("The listener rebinds from port %(old)s to port %(new)s; sessions in progress on port %(old)s go on.") % {
                "old": old.port, "new": new.port,
            }
        if effect == REBIND:
            return _("The listener rebinds port %(port)s on %(addresses)s instead of %(before)s.") % {
                "port": new.port, "addresses": describe_addresses(new.addresses), "before": describe_addresses(old.addresses),
            }
        return _("Unchanged.")


@dataclass(frozen=True)
class ServerEffect:
    """The change as one server's listener sees it."""

    server_name: str
    ports: tuple
    status: ListenerStatus | None = None
    outage: Outage | None = None
    """Set when no one could send mail to this server after saving."""
    out_before: bool = False

    @property
    def running(self):
        return self.status is not None and not self.status.is_stale

    @property
    def open_sessions(self):
        return self.status.open_sessions if self.running else 0

    @property
    def rebinds(self):
        return any(port.rebinds for port in self.ports)


@dataclass(frozen=True)
class Preview:
    servers: tuple

    @property
    def outages(self):
        return [server.outage for server in self.servers if server.outage is not None]

    @property
    def causes_outage(self):
        """Does saving stop mail to a server that receives it now? Then the change must be confirmed."""
        return any(server.outage is not None and not server.out_before for server in self.servers)

    @property
    def affects_running_listener(self):
        return any(server.running for server in self.servers)


def with_server(snap, server):
    """``snap`` with the values of an unsaved Server document in place of the stored ones."""
    return replace(snap, **documents.server_settings(server))


def with_site(snap, site, stored):
    """``snap`` with an unsaved Site document in place of its stored version (or added, or gone)."""
    replaced = stored.name if stored is not None else site.name
    sites = tuple(other for other in snap.sites if other.name != replaced)
    if site.hosts(snap.server_name):
        sites += (documents.site_snapshot(site),)
    return replace(snap, sites=sites)


def effect(server_name: str, old: policy.SettingsSnapshot | None, new: policy.SettingsSnapshot,
           status: ListenerStatus | None = None) -> ServerEffect:
    """Pair the ports of ``old`` and ``new`` by kind; ``old`` None for a server no listener has served."""
    reported = {}
    if status is not None and not status.is_stale:
        for port in status.ports:
            if port.get("configured"):
                reported[port["kind"]] = reported.get(port["kind"], True) and bool(port.get("bound"))
    before = {binding.port_kind: binding for binding in policy.bindings(old)} if old is not None else {}
    ports = tuple(
        with_availability(PortChange(binding.port_kind, before.get(binding.port_kind), binding, reported.get(binding.port_kind)), status)
        for binding in policy.bindings(new)
    )
    return ServerEffect(server_name, ports, status, outage_of(new), old is not None and outage_of(old) is not None)


def with_availability(change: PortChange, status: ListenerStatus | None) -> PortChange:
    """For a port the listener is to bind anew (BIND, MOVE), try it when the console runs on the listener's
    host: a port another process holds would fail to bind after saving. Elsewhere, say that nobody can
    tell from here. A REBIND keeps the listener's own port, which a test bind would find taken by itself."""
    if change.effect not in (BIND, MOVE):
        return change
    values = {"port": change.new.port}
    if status is None or status.host != socket.gethostname():
        return replace(change, availability=_(
            "The console does not run on this listener's host: it cannot know whether port %(port)s is free there."
        ) % values)
    problem = bind_problem(change.new.port, change.new.addresses)
    if problem is None:
        return replace(change, taken=False, availability=_("Port %(port)s is free on this host now.") % values)
    return replace(change, taken=True, availability=problem)


def bind_problem(port: int, addresses: tuple) -> str | None:
    """Why the listener could not bind ``port`` on ``addresses`` (every address when empty) now, or None.

    Binds as asyncio's server does (SO_REUSEADDR: a port in TIME_WAIT is free), then lets go at once.
    """
    for address in addresses or ("",):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError as error:
                values = {"port": port, "address": address or _("every address"), "error": error.strerror or error}
                if error.errno == errno.EADDRINUSE:
                    return _(
                        "Port %(port)s is already in use on %(address)s of this host by another process: after saving, "
                        "the listener would fail to bind it."
                    ) % values
                if error.errno in (errno.EACCES, errno.EPERM):
                    return _(
                        "Port %(port)s needs the right to bind ports below 1024 on this host: after saving, the "
                        "listener would fail to bind it."
                    ) % values
                return _("Port %(port)s cannot be bound on %(address)s of this host: %(error)s.") % values
    return None


def statuses(servers):
    found = {status.server_id: status for status in ListenerStatus.objects.filter(server__in=servers)}
    return [(server, found.get(server.pk)) for server in servers]


def server_effects(server, stored):
    if stored is None:
        sites = tuple(documents.site_snapshot(site) for site in InternetSite.objects.hosting(server.name).select_related("tls_credentials"))
        new = with_server(policy.SettingsSnapshot(server_name=server.name, host_name=server.host_name, sites=sites), server)
        return [effect(server.name, None, new)]
    old = load_snapshot(stored.name, people_and_groups=False)
    if server.name != stored.name:
        sites = tuple(documents.site_snapshot(site) for site in InternetSite.objects.hosting(server.name).select_related("tls_credentials"))
        old_for_new = replace(old, sites=sites)
    else:
        old_for_new = old
    ((_server, status),) = statuses([stored])
    return [effect(server.name, old, with_server(old_for_new, server), status)]


def site_effects(site, stored):
    hosting = [
        server for server in Server.objects.order_by("name")
        if site.hosts(server.name) or (stored is not None and stored.hosts(server.name))
    ]
    result = []
    for server, status in statuses(hosting):
        old = load_snapshot(server.name, people_and_groups=False)
        result.append(effect(server.name, old, with_site(old, site, stored), status))
    return result


def configured_servers(configuration):
    """The servers a Configuration Settings document applies to: its server, or those without their own."""
    if configuration.server_id:
        return [configuration.server]
    others = ConfigurationSettings.objects.exclude(pk=configuration.pk).filter(server__isnull=False)
    return list(Server.objects.exclude(pk__in=others.values("server")).order_by("name"))


def configuration_effects(configuration, stored):
    servers = {server.pk: server for server in configured_servers(configuration)}
    if stored is not None:
        servers.update((server.pk, server) for server in configured_servers(stored))
    result = []
    for server, status in statuses(sorted(servers.values(), key=lambda server: server.name)):
        snap = load_snapshot(server.name, people_and_groups=False)
        result.append(effect(server.name, snap, snap, status))
    return result


EFFECTS = {Server: server_effects, InternetSite: site_effects, ConfigurationSettings: configuration_effects}


def preview(instance, stored=None):
    """What saving the unsaved ``instance`` (its stored version ``stored``, None when new) does to listeners.

    None for a document type no listener reads directly.
    """
    effects = EFFECTS.get(type(instance))
    if effects is None:
        return None
    return Preview(tuple(effects(instance, stored)))
