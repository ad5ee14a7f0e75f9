from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SmtpServiceConfig(AppConfig):
    name = "smtpservice"
    verbose_name = _("SMTP service")
