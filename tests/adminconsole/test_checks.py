"""The console's system checks: exact ids under overridden settings, and a clean `check --deploy`."""
import os
import secrets
import string
import subprocess
import sys

import pytest
from django.conf import settings
from django.core import checks
from django.test import override_settings

from adminconsole.checks import E001, E002, W002, check_crispy_template_pack, check_secret_key, check_secret_key_deploy
from adminconsole.settings import BASE_DIR, DEV_SECRET_KEY

STRONG_KEY = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(60))


def console_ids(include_deployment_checks):
    """Ids of the console's own checks in a full run, as `manage.py check` would report them."""
    found = checks.run_checks(include_deployment_checks=include_deployment_checks)
    return sorted(message.id for message in found if message.id.startswith("adminconsole."))


@pytest.mark.parametrize("pack", ["bootstrap4", "tailwind", ""])
def test_a_wrong_crispy_template_pack_is_an_error(pack):
    with override_settings(CRISPY_TEMPLATE_PACK=pack):
        assert check_crispy_template_pack(None) == [E001]
        assert E001.id == "adminconsole.E001"


def test_crispy_bootstrap5_is_accepted():
    with override_settings(CRISPY_TEMPLATE_PACK="bootstrap5"):
        assert check_crispy_template_pack(None) == []


def test_a_missing_crispy_template_pack_setting_is_an_error():
    with override_settings():
        del settings.CRISPY_TEMPLATE_PACK
        assert check_crispy_template_pack(None) == [E001]


def test_crispy_bootstrap5_must_be_installed():
    apps = [app for app in settings.INSTALLED_APPS if app != "crispy_bootstrap5"]
    with override_settings(INSTALLED_APPS=apps):
        assert check_crispy_template_pack(None) == [E001]


def test_the_crispy_check_runs_with_the_others():
    with override_settings(CRISPY_TEMPLATE_PACK="bootstrap4", SECRET_KEY=STRONG_KEY):
        assert console_ids(include_deployment_checks=False) == ["adminconsole.E001"]


def test_the_development_key_without_debug_is_a_warning_normally_and_an_error_under_deploy():
    with override_settings(DEBUG=False, SECRET_KEY=DEV_SECRET_KEY):
        assert check_secret_key(None) == [W002]
        assert check_secret_key_deploy(None) == [E002]
        assert (W002.id, E002.id) == ("adminconsole.W002", "adminconsole.E002")
        assert console_ids(include_deployment_checks=False) == ["adminconsole.W002"]
        assert "adminconsole.E002" in console_ids(include_deployment_checks=True)


@pytest.mark.parametrize(
    ("debug", "key"),
    [(True, DEV_SECRET_KEY), (False, STRONG_KEY), (True, STRONG_KEY)],
    ids=["debug-with-dev-key", "real-key", "debug-with-real-key"],
)
def test_no_secret_key_issue_with_debug_on_or_a_real_key(debug, key):
    with override_settings(DEBUG=debug, SECRET_KEY=key):
        assert check_secret_key(None) == []
        assert check_secret_key_deploy(None) == []
        assert console_ids(include_deployment_checks=True) == []


def manage_check_deploy(tmp_path, **environment):
    """Run `manage.py check --deploy` in a fresh process with only the given environment."""
    env = {"PATH": os.environ.get("PATH", ""), "DATA_DIR": str(tmp_path), "DEBUG": "0", **environment}
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
    )


def test_production_settings_pass_check_deploy(tmp_path):
    result = manage_check_deploy(tmp_path, SECRET_KEY=STRONG_KEY, ALLOWED_HOSTS="console.acme.test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_fails_on_the_development_key(tmp_path):
    result = manage_check_deploy(tmp_path, ALLOWED_HOSTS="console.acme.test")
    assert result.returncode != 0
    assert "adminconsole.E002" in result.stderr
