from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SmtpServiceConfig(AppConfig):
    name = "smtpservice"
    verbose_name = _("SMTP service")

    def ready(self) -> None:
        """Bump the directory revision on every saved or deleted document, so listeners reload; tie versions to it."""
        from smtpservice.store import served, snapshot

        snapshot.connect_signals()
        served.connect_signals()
