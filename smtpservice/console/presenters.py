"""What the console shows about a server's SMTP service: the listener's status in plain words, and
the inbound settings that apply with the document each one comes from.

The effective settings are asked of ``smtpservice.core.policy`` over the snapshot the listener itself
loads (``load_snapshot``), so the console cannot tell a different story from the listener's.
"""
import datetime
import ipaddress
import shlex
from dataclasses import dataclass, replace
from typing import Any

from django.utils import formats, timezone
from django.utils.functional import Promise
from django.utils.timesince import timesince
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from directory import audit
from directory.models import ConfigurationSettings, InternetSite, Server, TLSCredentials
from directory.presenters import BY_MODEL, EMPTY, Presenter
from smtpservice.console.facts import directory_fact
from smtpservice.core import policy
from smtpservice.models import DirectoryRevision, ListenerStatus
from smtpservice.store import served
from smtpservice.store import snapshot as snapshots

PORT_KINDS = {policy.TCP: gettext_lazy("TCP/IP"), policy.SSL: gettext_lazy("SSL")}

# Bootstrap contextual classes, from all well to stopped.
OK, NOTICE, PROBLEM, OFF = "success", "warning", "danger", "secondary"

# Kinds of drift between what the directory configures and what the listener reports (docs/design/explain.md).
LISTENER_DOWN, STALE_HEARTBEAT, BIND_FAILURE, OLDER_REVISION = "listener_down", "stale_heartbeat", "bind_failure", "older_revision"
DRIFT_LABELS = {
    LISTENER_DOWN: gettext_lazy("Drift: listener down"),
    STALE_HEARTBEAT: gettext_lazy("Drift: stale heartbeat"),
    BIND_FAILURE: gettext_lazy("Drift: port not bound"),
    OLDER_REVISION: gettext_lazy("Drift: older settings"),
}
PICKUP_SECONDS = 1
"""A saved change applies within one second (spec 3.10): a heartbeat later than that must report it."""

# Inbound settings of the Configuration Settings document, in the order of its tabs (spec section 2).
CONFIGURATION_FIELDS = (
    "starttls_inbound", "size_extension", "pipelining", "eightbitmime", "help_command", "vrfy_command",
    "local_domains", "max_message_size_kb", "max_recipients", "error_limit",
    "anti_relay_enforcement", "internal_hosts", "anti_relay_exclude_hosts", "authenticated_users_relay",
    "relay_allow_domains", "relay_deny_domains", "connection_allow_hosts", "connection_deny_hosts",
)


def runsmtp_command(server: Server) -> str:
    """The command that starts the listener of ``server``, ready to paste into a shell."""
    return f"python manage.py runsmtp --server {shlex.quote(server.name)}"


def when(moment: datetime.datetime) -> str:
    """A date and time as the console shows them, with how long ago: “12/05/2025 10:04 (3 minutes ago)”."""
    return _("%(date)s (%(ago)s ago)") % {
        "date": formats.date_format(timezone.localtime(moment), "SHORT_DATETIME_FORMAT"), "ago": timesince(moment),
    }


# --- Listener status ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PortState:
    """One inbound port as the listener reported it: configured, bound, and what to do if it is not."""

    kind: str
    port: int
    address: str
    configured: bool
    bound: bool
    error: str
    detail: str
    problem: str = ""


@dataclass(frozen=True)
class Drift:
    """What is configured and what the listener reports differ: in plain words, with the fix.

    ``restore`` is the last version of the Server document whose ports all bound, for a port that
    fails to bind (``served.last_bound_version``).
    """

    kind: str
    text: str
    fix: str
    restore: object = None

    @property
    def label(self) -> Promise:
        return DRIFT_LABELS[self.kind]


@dataclass(frozen=True)
class ListenerReport:
    """The listener of one server in plain words: ``headline``, then ``fix`` (and ``command``) when action is needed."""

    level: str
    headline: str
    fix: str = ""
    command: str = ""
    status: ListenerStatus | None = None
    ports: tuple = ()
    notes: tuple = ()
    current_revision: int = 0
    drift: tuple = ()

    @property
    def revision_behind(self) -> bool:
        return self.status is not None and self.status.revision < self.current_revision

    @property
    def drift_details(self) -> tuple[Drift, ...]:
        """The drift the headline does not already state with its fix (listener down, stale heartbeat)."""
        return tuple(drift for drift in self.drift if drift.kind not in (LISTENER_DOWN, STALE_HEARTBEAT))

    @property
    def flag(self) -> str:
        """The dashboard's one-line summary of configured against bound."""
        if self.drift:
            return ", ".join(dict.fromkeys(str(drift.label) for drift in self.drift))
        if self.level == OFF:
            return _("Listener task Disabled")
        return _("Configured ports bound")

    @property
    def flag_level(self) -> str:
        if any(drift.kind != OLDER_REVISION for drift in self.drift):
            return PROBLEM
        return NOTICE if self.drift else (OFF if self.level == OFF else OK)


def binding_details(server: Server) -> dict:
    """``{(kind, port): why it is bound or not}`` in the reader's language, as ``policy.bindings`` says it: the
    listener stores the same sentence in English when it reports its ports."""
    snap = snapshots.load_snapshot(server.name, people_and_groups=False)  # bindings read ports, not people
    return {(binding.port_kind, binding.port): binding.detail for binding in policy.bindings(snap)}


def _port_state(entry: dict[str, Any], details: dict | None = None) -> PortState:
    configured, bound, error = entry.get("configured"), entry.get("bound"), entry.get("error", "")
    values = {"port": entry.get("port"), "address": entry.get("address") or "*"}
    if error:
        problem = _(
            "Port %(port)s on %(address)s cannot be bound. Free it (another program may be using it, and a port "
            "below 1024 needs the right to bind it) or choose another port number on the Mail tab of this Server "
            "document; the listener tries again every few seconds."
        ) % values
    elif configured and not bound:
        problem = _("Not bound yet: the listener tries again every few seconds.")
    else:
        problem = ""
    return PortState(
        kind=PORT_KINDS.get(entry.get("kind"), entry.get("kind")), port=entry.get("port"), address=values["address"],
        configured=bool(configured), bound=bool(bound), error=error, problem=problem,
        detail=(details or {}).get((entry.get("kind"), entry.get("port")), entry.get("detail", "")),
    )


def listener_report(server: Server, current_revision: int | None = None) -> ListenerReport:
    """Is the listener of ``server`` running, serving its ports, on the current settings? And if not, the fix."""
    report = _status_report(server, snapshots.current_revision() if current_revision is None else current_revision)
    drift = tuple(drift_of(server, report))
    if any(item.kind == OLDER_REVISION for item in drift):
        # The drift says it with the fix; the note is for a change still being picked up.
        return replace(report, drift=drift, notes=())
    return replace(report, drift=drift)


def _status_report(server: Server, current: int) -> ListenerReport:
    status = ListenerStatus.objects.filter(server=server).first()
    command = runsmtp_command(server)
    if status is None or not status.running:
        if not server.smtp_listener_enabled:
            return ListenerReport(OFF, _("Listener not running; the SMTP listener task is Disabled on this Server document."),
                                  _("To serve mail, set SMTP listener task to Enabled on the Basics tab, then start:"),
                                  command, status, current_revision=current)
        headline = _("Listener not running") if status is None else _("Listener not running: it stopped %(when)s.") % {
            "when": when(status.heartbeat_at),
        }
        return ListenerReport(PROBLEM, headline, _("Start it:"), command, status, current_revision=current)
    details = directory_fact(current, ("bindings", server.pk), lambda: binding_details(server))
    ports = tuple(_port_state(entry, details) for entry in status.ports)
    notes = []
    if status.revision < current:
        notes.append(_(
            "The listener uses settings revision %(used)s, older than the directory's revision %(current)s. A running "
            "listener loads a change within a second and reports it at its next heartbeat; if this stays, read the "
            "listener's log."
        ) % {"used": status.revision, "current": current})
    if status.is_stale:
        return ListenerReport(PROBLEM, _("Listener not responding: no heartbeat since %(when)s.") % {
            "when": when(status.heartbeat_at),
        }, _(
            "Its process (%(pid)s on %(host)s) has stopped or hangs. End it if it is still there, then start it again:"
        ) % {"pid": status.pid, "host": status.host or "?"}, command, status, ports, tuple(notes), current)
    errors = any(port.error for port in ports)
    if not any(port.bound for port in ports):
        level, headline = PROBLEM if errors else NOTICE, _("Listener running, but it serves no port.")
    elif errors:
        level, headline = PROBLEM, _("Listener running, but a port cannot be bound; the other ports keep serving.")
    else:
        level, headline = OK, _("Listener running")
    if level == OK and notes:
        level = NOTICE
    return ListenerReport(level, headline, status=status, ports=ports, notes=tuple(notes), current_revision=current)


def _changed_at():
    return DirectoryRevision.objects.filter(pk=DirectoryRevision.SINGLETON).values_list("changed", flat=True).first()


def drift_of(server: Server, report: ListenerReport) -> list[Drift]:
    """Each way what the directory configures and what the listener reports differ, with its fix."""
    status, command = report.status, report.command or runsmtp_command(server)
    if status is None or not status.running:
        if not server.smtp_listener_enabled:
            return []
        return [Drift(LISTENER_DOWN, _(
            "SMTP listener task is Enabled, but no listener is running: none of the configured ports is bound."
        ), _("Start the listener: %(command)s") % {"command": command})]
    if status.is_stale:
        return [Drift(STALE_HEARTBEAT, _(
            "The listener's last heartbeat is from %(when)s: whether its ports are still bound is unknown."
        ) % {"when": when(status.heartbeat_at)}, _(
            "End its process (%(pid)s on %(host)s) if it is still there, then start it again: %(command)s"
        ) % {"pid": status.pid, "host": status.host or "?", "command": command})]
    drifts = []
    unbound = [port for port in report.ports if port.configured and not port.bound]
    if unbound:
        text = " ".join(_("%(kind)s port %(port)s on %(address)s is configured but not bound (%(why)s).") % {
            "kind": port.kind, "port": port.port, "address": port.address,
            "why": port.error or _("not bound yet"),
        } for port in unbound)
        rollback = served.last_bound_version(server, audit.snapshot(server)) if any(port.error for port in unbound) else None
        if rollback is not None:
            fix = _(
                "Free the port, or restore version %(number)s of this Server document, the last version whose ports "
                "all bound."
            ) % {"number": rollback.number}
        else:
            fix = _("Free the port, or choose another port number on the Mail tab; the listener tries again every few seconds.")
        drifts.append(Drift(BIND_FAILURE, text, fix, rollback))
    changed = _changed_at() if status.revision != report.current_revision else None
    if changed is not None and status.heartbeat_at > changed + datetime.timedelta(seconds=PICKUP_SECONDS):
        drifts.append(Drift(OLDER_REVISION, _(
            "The listener serves settings revision %(used)s, but the directory is at revision %(current)s since "
            "%(when)s: it has not picked up the newest change."
        ) % {"used": status.revision, "current": report.current_revision, "when": when(changed)}, _(
            "A running listener loads a change within a second: read its log, and restart it if it stays behind: "
            "%(command)s"
        ) % {"command": command}))
    return drifts


# --- Effective settings -------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    label: str
    value: str
    detail: str = ""


@dataclass(frozen=True)
class SettingGroup:
    """Settings that come from one document (``source``)."""

    title: str
    source: str
    settings: tuple
    url: str = ""


@dataclass(frozen=True)
class AddressChoice:
    """For one local address: the site it resolves to, and where its authentication options and TLS credentials come from."""

    address: str
    site: str
    site_url: str
    site_detail: str
    auth_source: str
    auth_options: str
    auth_detail: str
    credentials: str
    credentials_url: str
    credentials_detail: str
    refusals: tuple


@dataclass(frozen=True)
class EffectiveSettings:
    snapshot: policy.SettingsSnapshot
    groups: tuple
    addresses: tuple


def _shown(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def _server_group(snap: policy.SettingsSnapshot, server: Server) -> SettingGroup:
    presenter = Presenter(BY_MODEL[Server])

    def setting(name: str, value: object, detail: str = "") -> Setting:
        return Setting(presenter.label(name), str(presenter.display(name, _shown(value))), detail)

    settings = [
        setting("smtp_listener_enabled", snap.smtp_listener_enabled),
        setting("load_internet_sites", snap.load_internet_sites),
        Setting(presenter.label("listen_addresses"), "\n".join(snap.listen_addresses) or _("every local address")),
    ]
    inbound = snap.inbound
    for binding in policy.bindings(snap):
        prefix = "smtp_inbound_tcp" if binding.port_kind == policy.TCP else "smtp_inbound_ssl"
        status = inbound.tcp_status if binding.port_kind == policy.TCP else inbound.ssl_status
        settings.append(Setting(
            presenter.label(f"{prefix}_port"),
            f"{binding.port} · {presenter.display(f'{prefix}_status', status)}",
            binding.detail,
        ))
    settings += [
        setting("smtp_inbound_enforce_server_access", inbound.enforce_server_access),
        setting("access_server", snap.access_server),
        setting("not_access_server", snap.not_access_server),
        setting("internet_authentication", snap.internet_authentication),
    ]
    return SettingGroup(_("Ports and access"), snap.server_document, tuple(settings), server.get_absolute_url())


def _configuration_group(snap: policy.SettingsSnapshot, server: Server) -> SettingGroup:
    presenter = Presenter(BY_MODEL[ConfigurationSettings])
    settings = tuple(
        Setting(presenter.label(name), str(presenter.display(name, _shown(getattr(snap.config, name)))))
        for name in CONFIGURATION_FIELDS
    )
    return SettingGroup(_("STARTTLS, relay and connection controls, limits"), snap.config_source, settings,
                        _configuration_url(server))


def _configuration_url(server: Server) -> str:
    """The page of the Configuration Settings document that applies, if there is one (not the built-in defaults)."""
    document = server.configuration()
    return document.get_absolute_url() if document else ""


def _addresses(snap: policy.SettingsSnapshot) -> list[tuple[str, str]]:
    """``(label, local address)`` to resolve: each listen address, or any address and each address a site maps."""
    if snap.listen_addresses:
        return [(address, address) for address in snap.listen_addresses]
    # The label stands in for the local address: it matches no site entry but *, and reads well in the detail.
    rows = [(_("any address"), _("any address"))]
    if snap.load_internet_sites:
        for site in snap.sites:
            for entry in site.mapped_addresses:
                try:
                    ipaddress.ip_address(entry)
                except ValueError:
                    continue
                if (entry, entry) not in rows:
                    rows.append((entry, entry))
    return rows


def _refusals(snap: policy.SettingsSnapshot, local_ip: str) -> tuple[str, ...]:
    """The greeting a client gets on each bound port of this address when the site check refuses it (spec 3.3)."""
    refusals = []
    for binding in policy.bindings(snap):
        if not binding.enabled:
            continue
        facts = policy.SessionFacts(local_ip=local_ip, local_port=binding.port, port=binding.port_kind, client_ip="")
        decision = policy.site_enabled(snap, facts)
        if not decision.allowed:
            refusals.append(_("%(kind)s port %(port)s: %(reply)s — %(detail)s") % {
                "kind": PORT_KINDS[binding.port_kind], "port": binding.port, "reply": decision.reply, "detail": decision.detail,
            })
    return tuple(refusals)


def _address_choices(snap: policy.SettingsSnapshot) -> tuple[AddressChoice, ...]:
    site_urls = {site.name: site.get_absolute_url() for site in InternetSite.objects.filter(name__in=[s.name for s in snap.sites])}
    credential_urls = {
        document.name: document.get_absolute_url() for document in TLSCredentials.objects.filter(name__in=list(snap.credentials))
    }
    choices = []
    for label, local_ip in _addresses(snap):
        facts = policy.SessionFacts(local_ip=local_ip, local_port=snap.inbound.tcp_port, port=policy.TCP, client_ip="")
        source = policy.auth_source(snap, facts)
        if snap.load_internet_sites:
            site = policy.select_site(snap, local_ip)
            site_name, site_detail = (site.site.name if site.site else ""), site.detail
        else:
            site_name, site_detail = "", _(
                "Load Internet configurations from Server\\Internet Sites documents is Disabled: no site applies."
            )
        credentials = policy.tls_credentials_for(snap, local_ip)
        choices.append(AddressChoice(
            address=label, site=site_name, site_url=site_urls.get(site_name, ""), site_detail=site_detail,
            auth_source=source.document, auth_options=source.options.describe() if source.options else EMPTY,
            auth_detail=source.detail, credentials=credentials.name or "", credentials_url=credential_urls.get(credentials.name, ""),
            credentials_detail=credentials.detail, refusals=_refusals(snap, local_ip),
        ))
    return tuple(choices)


def effective_settings(server: Server) -> EffectiveSettings:
    """Every inbound setting of ``server`` with its source, and the site each local address resolves to."""
    snap = snapshots.load_snapshot(server.name, people_and_groups=False)
    return EffectiveSettings(
        snapshot=snap,
        groups=(_server_group(snap, server), _configuration_group(snap, server)),
        addresses=_address_choices(snap),
    )
