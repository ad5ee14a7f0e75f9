"""The choices of the directory's documents, as the console shows them and the listener reads them.

One definition per set of values: the models use them for their fields, and the pure core
(``smtpservice.core``) compares settings against them, so no value is written twice as a bare string.
"""
from django.db.models import TextChoices
from django.utils.translation import gettext_lazy as _


class Status(TextChoices):
    ENABLED = "enabled", _("Enabled")
    DISABLED = "disabled", _("Disabled")


class OutboundTcpStatus(TextChoices):
    ENABLED = "enabled", _("Enabled")
    DISABLED = "disabled", _("Disabled")
    NEGOTIATED_SSL = "negotiated_ssl", _("Negotiated SSL (STARTTLS)")


class InternetAuthentication(TextChoices):
    FEWER = "fewer", _("Fewer name variations with higher security")
    MORE = "more", _("More name variations with lower security")


class StartTlsInbound(TextChoices):
    ENABLED = "enabled", _("Enabled")
    REQUIRED = "required", _("Required")
    DISABLED = "disabled", _("Disabled")


class RelayAuth(TextChoices):
    REQUIRED = "required", _("Required")
    ENABLED = "enabled", _("Enabled (fall back to no authentication)")
    DISABLED = "disabled", _("Disabled")


class AntiRelayEnforcement(TextChoices):
    EXTERNAL = "external", _("External hosts")
    ALL = "all", _("All connecting hosts")
    NONE = "none", _("None")


class GroupType(TextChoices):
    MULTI_PURPOSE = "multi_purpose", _("Multi-purpose")
    MAIL_ONLY = "mail_only", _("Mail only")
    ACL_ONLY = "acl_only", _("Access control list only")


class SiteType(TextChoices):
    SMTP_INBOUND = "smtp_inbound", _("SMTP Inbound")
