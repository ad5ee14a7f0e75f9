"""Bookkeeping of the SMTP service: the directory revision the listener watches."""
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from directory.models import TlsPolicy


class DirectoryRevision(models.Model):
    """One row counting directory changes, so a running listener sees a change with one cheap query."""

    SINGLETON = 1

    revision = models.PositiveBigIntegerField(_("revision"), default=0)
    changed = models.DateTimeField(_("last change"), default=timezone.now)

    class Meta:
        verbose_name = _("directory revision")
        verbose_name_plural = _("directory revision")

    def __str__(self):
        return str(self.revision)


class ReceivedMessage(models.Model):
    """A message the listener accepted with 250: stored whole, with its envelope, before that reply.

    The console's test messages and the router's non-delivery reports are stored the same way.
    """

    class Origin(models.TextChoices):
        SMTP = "smtp", _("received by SMTP")
        CONSOLE = "console", _("test message from the console")
        REPORT = "report", _("non-delivery report")

    server = models.ForeignKey("directory.Server", verbose_name=_("server"), on_delete=models.CASCADE, related_name="received_messages")
    received_at = models.DateTimeField(_("received"), default=timezone.now, db_index=True)
    mail_from = models.CharField(_("MAIL FROM"), max_length=512, blank=True)
    recipients = models.JSONField(_("recipients"), default=list)
    size = models.PositiveIntegerField(_("size (bytes)"))
    data = models.BinaryField(_("message"))
    subject = models.CharField(_("subject"), max_length=500, blank=True)
    message_id = models.CharField(_("Message-ID"), max_length=500, blank=True)
    client_address = models.GenericIPAddressField(_("client address"), null=True, blank=True)
    client_helo = models.CharField(_("client EHLO/HELO"), max_length=255, blank=True)
    local_port = models.PositiveIntegerField(_("local port"))
    tls = models.BooleanField(_("TLS"), default=False)
    authenticated_as = models.CharField(_("authenticated as"), max_length=200, blank=True)
    session_id = models.CharField(_("session"), max_length=32, blank=True, db_index=True)
    origin = models.CharField(_("origin"), max_length=10, choices=Origin.choices, default=Origin.SMTP)

    class Meta:
        verbose_name = _("received message")
        verbose_name_plural = _("received messages")
        ordering = ["-received_at", "-pk"]

    def __str__(self):
        return self.subject or self.message_id or f"#{self.pk}"


class MailboxEntry(models.Model):
    """One local delivery: a received message in a person's mailbox."""

    person = models.ForeignKey(
        "directory.Person", verbose_name=_("person"), on_delete=models.CASCADE, related_name="mailbox", null=True, blank=True,
        help_text=_("Empty for the postmaster mailbox: mail to postmaster while Administrators names no person."),
    )
    message = models.ForeignKey(ReceivedMessage, verbose_name=_("message"), on_delete=models.CASCADE, related_name="mailbox_entries")
    recipient = models.CharField(_("recipient"), max_length=512)
    delivered_at = models.DateTimeField(_("delivered"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("mailbox entry")
        verbose_name_plural = _("mailbox entries")
        ordering = ["-delivered_at", "-pk"]


class QueuedRecipient(models.Model):
    """A recipient of a received message to be relayed by the router (the outbound queue)."""

    class HeldBy(models.TextChoices):
        ADMIN = "admin", _("an administrator")
        ROUTER = "router", _("the router: the settings allow no outbound SMTP")

    class State(models.TextChoices):
        QUEUED = "queued", _("queued")
        IN_FLIGHT = "in_flight", _("in flight")
        DELIVERED = "delivered", _("delivered")
        DEFERRED = "deferred", _("deferred")
        FAILED = "failed", _("failed")
        HELD = "held", _("held")

    message = models.ForeignKey(ReceivedMessage, verbose_name=_("message"), on_delete=models.CASCADE, related_name="queued_recipients")
    recipient = models.CharField(_("recipient"), max_length=512)
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.QUEUED, db_index=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), default=timezone.now, db_index=True)
    last_error = models.TextField(_("last error"), blank=True)
    held_by = models.CharField(_("held by"), max_length=10, choices=HeldBy.choices, blank=True)
    claimed_by = models.CharField(
        _("router"), max_length=100, blank=True, help_text=_("The router sending to this recipient now."),
    )
    lease_expires_at = models.DateTimeField(
        _("claim expires"), null=True, blank=True,
        help_text=_("Past this time another router may take the recipient back (its router stopped)."),
    )
    destination = models.CharField(_("destination"), max_length=300, blank=True)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)

    class Meta:
        verbose_name = _("queued recipient")
        verbose_name_plural = _("relay queue")
        ordering = ["next_attempt_at", "pk"]

    @property
    def is_pending(self) -> bool:
        """Still to be sent: the console refreshes the message page while any recipient is."""
        return self.state in (self.State.QUEUED, self.State.IN_FLIGHT, self.State.DEFERRED)


class DeliveryAttempt(models.Model):
    """One try at sending a message to one destination (or a console action on it), as the log shows it."""

    class Outcome(models.TextChoices):
        DELIVERED = "delivered", _("delivered")
        DEFERRED = "deferred", _("deferred")
        FAILED = "failed", _("failed")
        HELD = "held", _("held")
        PARTIAL = "partial", _("some recipients delivered")
        ACTION = "action", _("console action")

    class Tls(models.TextChoices):
        NONE = "none", _("none (clear text)")
        STARTTLS = "starttls", _("STARTTLS")
        IMPLICIT = "implicit", _("TLS from the first byte (SSL port)")

    message = models.ForeignKey(ReceivedMessage, verbose_name=_("message"), on_delete=models.CASCADE, related_name="attempts")
    started_at = models.DateTimeField(_("started"), default=timezone.now, db_index=True)
    ended_at = models.DateTimeField(_("ended"), null=True, blank=True)
    actor = models.CharField(_("by"), max_length=200, help_text=_("The router, or the console user of an action."))
    outcome = models.CharField(_("outcome"), max_length=10, choices=Outcome.choices)
    recipients = models.JSONField(_("recipients"), default=list, help_text=_("[{recipient, result, reply}]"))
    destination = models.CharField(_("destination"), max_length=300, blank=True)
    host = models.CharField(_("host"), max_length=255, blank=True)
    port = models.PositiveIntegerField(_("port"), null=True, blank=True)
    tls = models.CharField(_("TLS"), max_length=10, choices=Tls.choices, blank=True)
    tls_policy = models.CharField(
        _("TLS policy"), max_length=13, choices=TlsPolicy.choices, blank=True,
        help_text=_("The policy in force for the destination (spec 5.5); blank for console actions."),
    )
    certificate = models.CharField(_("certificate check"), max_length=300, blank=True)
    authentication = models.CharField(_("authentication"), max_length=300, blank=True)
    detail = models.TextField(_("detail"), blank=True)
    transcript = models.JSONField(_("transcript"), default=list, help_text=_("Commands sent (>) and replies (<), passwords masked."))

    class Meta:
        verbose_name = _("delivery attempt")
        verbose_name_plural = _("delivery attempts")
        ordering = ["started_at", "pk"]


class ListenerStatus(models.Model):
    """What a running listener reports: its ports as configured and as bound, and a heartbeat."""

    server = models.OneToOneField("directory.Server", verbose_name=_("server"), on_delete=models.CASCADE, related_name="listener_status")
    pid = models.PositiveIntegerField(_("process"), default=0)
    host = models.CharField(_("host"), max_length=255, blank=True)
    started_at = models.DateTimeField(_("started"), default=timezone.now)
    heartbeat_at = models.DateTimeField(_("last heartbeat"), default=timezone.now)
    revision = models.PositiveBigIntegerField(_("settings revision in use"), default=0)
    open_sessions = models.PositiveIntegerField(_("open sessions"), default=0)
    running = models.BooleanField(_("running"), default=True)
    ports = models.JSONField(
        _("ports"), default=list,
        help_text=_("[{kind, port, address, configured, bound, error}] for each inbound port."),
    )
    workers = models.JSONField(
        _("workers"), default=dict, blank=True,
        help_text=_("{index: {pid, open_sessions, running, heartbeat_at}} for each worker process sharing the ports."),
    )

    STALE_AFTER_SECONDS = 15

    class Meta:
        verbose_name = _("listener status")
        verbose_name_plural = _("listener status")

    def __str__(self):
        return str(self.server)

    @property
    def is_stale(self) -> bool:
        return not self.running or (timezone.now() - self.heartbeat_at).total_seconds() > self.STALE_AFTER_SECONDS


class SessionLog(models.Model):
    """One SMTP session: who connected where, with TLS or not, as whom, each decision and its reply."""

    server = models.ForeignKey("directory.Server", verbose_name=_("server"), on_delete=models.CASCADE, related_name="session_logs")
    session_id = models.CharField(_("session"), max_length=32, db_index=True)
    started_at = models.DateTimeField(_("started"), db_index=True)
    ended_at = models.DateTimeField(_("ended"), null=True, blank=True)
    client_address = models.GenericIPAddressField(_("client address"), null=True, blank=True)
    local_address = models.GenericIPAddressField(_("local address"), null=True, blank=True)
    local_port = models.PositiveIntegerField(_("local port"))
    port_kind = models.CharField(_("port"), max_length=3)
    tls = models.BooleanField(_("TLS"), default=False)
    authenticated_as = models.CharField(_("authenticated as"), max_length=200, blank=True)
    helo = models.CharField(_("EHLO/HELO"), max_length=255, blank=True)
    messages_accepted = models.PositiveIntegerField(_("messages accepted"), default=0)
    last_reply = models.CharField(_("last reply"), max_length=300, blank=True)
    events = models.JSONField(_("decisions"), default=list, help_text=_("[{command, rule, detail, reply}] in order."))
    revision = models.PositiveBigIntegerField(_("settings revision"), default=0)

    TLS_FAILED_RULE = "tls_handshake_failed"

    @property
    def tls_established(self) -> bool:
        """TLS as the reader means it: a handshake that failed does not count, even if the listener noted TLS."""
        return self.tls and not any(event.get("rule") == self.TLS_FAILED_RULE for event in self.events)

    class Meta:
        verbose_name = _("session log")
        verbose_name_plural = _("session log")
        ordering = ["-started_at", "-pk"]


class RouterStatus(models.Model):
    """What a running router reports, one row per router process: its heartbeat, last pass and last error.

    Several routers may serve one server's queue (on several hosts), so the row belongs to the router,
    not to the server; the console shows the fresh ones.
    """

    server = models.ForeignKey("directory.Server", verbose_name=_("server"), on_delete=models.CASCADE, related_name="router_statuses")
    router_id = models.CharField(_("router"), max_length=100, unique=True)
    pid = models.PositiveIntegerField(_("process"), default=0)
    host = models.CharField(_("host"), max_length=255, blank=True)
    started_at = models.DateTimeField(_("started"), default=timezone.now)
    heartbeat_at = models.DateTimeField(_("last heartbeat"), default=timezone.now, db_index=True)
    last_pass_at = models.DateTimeField(_("last pass over the queue"), null=True, blank=True)
    revision = models.PositiveBigIntegerField(_("settings revision in use"), default=0)
    running = models.BooleanField(_("running"), default=True)
    last_error = models.TextField(_("last error"), blank=True)
    last_error_at = models.DateTimeField(_("last error at"), null=True, blank=True)

    STALE_AFTER_SECONDS = 15

    class Meta:
        verbose_name = _("router status")
        verbose_name_plural = _("router status")
        ordering = ["-heartbeat_at"]

    def __str__(self):
        return self.router_id

    @property
    def is_stale(self) -> bool:
        return not self.running or (timezone.now() - self.heartbeat_at).total_seconds() > self.STALE_AFTER_SECONDS


class AuthFailure(models.Model):
    """One failed AUTH (a password tried and refused), for throttling by account and address (docs/security.md)."""

    client_address = models.GenericIPAddressField(_("client address"))
    account = models.CharField(
        _("account"), max_length=200, help_text=_("The person the login found, or the login as typed (lower case) when none."),
    )
    at = models.DateTimeField(_("time"), default=timezone.now)

    class Meta:
        verbose_name = _("failed authentication")
        verbose_name_plural = _("failed authentications")
        ordering = ["-at", "-pk"]
        indexes = [
            models.Index(fields=["client_address", "at"], name="authfailure_client_at"),
            models.Index(fields=["account", "at"], name="authfailure_account_at"),
        ]


class TrafficHour(models.Model):
    """One hour of a server's session log, counted once the hour is settled, so the dashboard reads 24 rows
    instead of every session of the day (``smtpservice.store.traffic``)."""

    server = models.ForeignKey("directory.Server", verbose_name=_("server"), on_delete=models.CASCADE, related_name="traffic_hours")
    hour = models.DateTimeField(_("hour"))
    sessions = models.PositiveIntegerField(_("sessions"), default=0)
    accepted = models.PositiveIntegerField(_("messages accepted"), default=0)
    refused = models.JSONField(_("refused, by reason"), default=dict)
    auth_failures = models.PositiveIntegerField(_("AUTH failures"), default=0)
    queue_depth = models.PositiveIntegerField(_("outbound queue at the end of the hour"), default=0)

    class Meta:
        verbose_name = _("traffic hour")
        verbose_name_plural = _("traffic hours")
        constraints = [models.UniqueConstraint(fields=["server", "hour"], name="traffic_hour_unique")]
