"""System checks for configuration mistakes of the console itself."""
from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks

E001 = checks.Error(
    "CRISPY_TEMPLATE_PACK must be 'bootstrap5' with crispy_bootstrap5 installed: the console's forms need it.",
    hint="Unset CRISPY_TEMPLATE_PACK or set it to bootstrap5, and keep crispy_bootstrap5 in INSTALLED_APPS.",
    id="adminconsole.E001",
)
E002 = checks.Error(
    "SECRET_KEY is the development key while DEBUG is off.",
    hint="Set SECRET_KEY (or SECRET_KEY_FILE) to a long random value in production.",
    id="adminconsole.E002",
)
W002 = checks.Warning(
    "SECRET_KEY is the development key while DEBUG is off.",
    hint="Set SECRET_KEY (or SECRET_KEY_FILE) to a long random value before serving real users.",
    id="adminconsole.W002",
)


@checks.register(checks.Tags.templates)
def check_crispy_template_pack(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[checks.CheckMessage]:
    pack = getattr(settings, "CRISPY_TEMPLATE_PACK", None)
    if pack != "bootstrap5" or "crispy_bootstrap5" not in settings.INSTALLED_APPS:
        return [E001]
    return []


def _uses_dev_key() -> bool:
    from adminconsole.settings import DEV_SECRET_KEY

    return settings.SECRET_KEY == DEV_SECRET_KEY and not settings.DEBUG


@checks.register(checks.Tags.security)
def check_secret_key(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A warning in everyday commands, so a forgotten key shows without blocking them."""
    return [W002] if _uses_dev_key() else []


@checks.register(checks.Tags.security, deploy=True)
def check_secret_key_deploy(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[checks.CheckMessage]:
    """An error under ``check --deploy``: production must not run on the development key."""
    return [E002] if _uses_dev_key() else []
