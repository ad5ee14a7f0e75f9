from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AdminConsoleConfig(AppConfig):
    name = "adminconsole"
    verbose_name = _("Administration console")

    def ready(self) -> None:
        from adminconsole import checks  # noqa: F401  (registers the system checks)
