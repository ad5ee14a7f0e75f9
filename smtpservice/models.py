"""Bookkeeping of the SMTP service: the directory revision the listener watches."""
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


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
    """A message the listener accepted with 250: stored whole, with its envelope, before that reply."""

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

    class Meta:
        verbose_name = _("received message")
        verbose_name_plural = _("received messages")
        ordering = ["-received_at", "-pk"]

    def __str__(self):
        return self.subject or self.message_id or f"#{self.pk}"


class MailboxEntry(models.Model):
    """One local delivery: a received message in a person's mailbox."""

    person = models.ForeignKey("directory.Person", verbose_name=_("person"), on_delete=models.CASCADE, related_name="mailbox")
    message = models.ForeignKey(ReceivedMessage, verbose_name=_("message"), on_delete=models.CASCADE, related_name="mailbox_entries")
    recipient = models.CharField(_("recipient"), max_length=512)
    delivered_at = models.DateTimeField(_("delivered"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("mailbox entry")
        verbose_name_plural = _("mailbox entries")
        ordering = ["-delivered_at", "-pk"]


class QueuedRecipient(models.Model):
    """A recipient of a received message to be relayed by the router (the outbound queue)."""

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

    class Meta:
        verbose_name = _("queued recipient")
        verbose_name_plural = _("relay queue")
        ordering = ["next_attempt_at", "pk"]


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

    STALE_AFTER_SECONDS = 15

    class Meta:
        verbose_name = _("listener status")
        verbose_name_plural = _("listener status")

    def __str__(self):
        return str(self.server)

    @property
    def is_stale(self):
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

    class Meta:
        verbose_name = _("session log")
        verbose_name_plural = _("session log")
        ordering = ["-started_at", "-pk"]
