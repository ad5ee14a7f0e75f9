"""Console accounts: Managers disable, delete and reset users, audited; two-factor authentication by TOTP."""
import time

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from directory import roles
from directory.models import AuditEntry
from tests.conftest import make_user

PASSWORD = "console-pass-1234"


@pytest.fixture
def manager_client(client, manager):
    client.force_login(manager)
    return client


def current_code(device, steps_ahead=0):
    """The code an authenticator app shows now (or ``steps_ahead`` periods later), from the device's key."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + steps_ahead * device.step
    return f"{totp.token():06d}"


def log_in(client, username, password=PASSWORD, code=""):
    return client.post(reverse("login"), {"username": username, "password": password, "otp_token": code})


def test_disabled_user_can_no_longer_log_in_and_it_is_audited(manager_client):
    target = make_user("alice", roles.READER)
    response = manager_client.post(reverse("user-manage", args=[target.pk]), {"action": "disable"})
    assert response.status_code == 302
    target.refresh_from_db()
    assert not target.is_active
    entry = AuditEntry.objects.get(document_type="user", object_id=str(target.pk))
    assert entry.changes == {"active": [True, False]} and entry.actor == "manager"

    assert log_in(Client(), "alice").status_code == 200, "the login form is shown again with an error"
    manager_client.post(reverse("user-manage", args=[target.pk]), {"action": "enable"})
    assert log_in(Client(), "alice").status_code == 302


def test_manager_resets_a_password_and_deletes_a_user(manager_client):
    target = make_user("bob", roles.EDITOR)
    new = "Another-pass-5678"
    manager_client.post(reverse("user-manage", args=[target.pk]), {"action": "password", "new_password1": new, "new_password2": new})
    target.refresh_from_db()
    assert target.check_password(new)
    manager_client.post(reverse("user-manage", args=[target.pk]), {"action": "delete"})
    assert not User.objects.filter(username="bob").exists()
    assert list(AuditEntry.objects.filter(object_repr="bob").values_list("action", flat=True)) == ["delete", "change"]


def test_a_manager_cannot_disable_themselves(manager_client, manager):
    manager_client.post(reverse("user-manage", args=[manager.pk]), {"action": "disable"})
    manager.refresh_from_db()
    assert manager.is_active


def test_totp_turned_on_then_needed_at_login(client, db):
    user = make_user("carol", roles.READER)
    client.force_login(user)
    client.get(reverse("two-factor"))
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    assert client.post(reverse("two-factor"), {"action": "confirm", "code": current_code(device)}).status_code == 302
    device.refresh_from_db()
    assert device.confirmed

    page = log_in(Client(), "carol").content.decode()
    assert "enter the current one-time code" in page, "the password alone is not enough"
    device.refresh_from_db()
    # The code used to confirm cannot be used twice; the next period's code is accepted (one step of tolerance).
    assert log_in(Client(), "carol", code=current_code(device, steps_ahead=1)).status_code == 302


def test_required_setting_sends_a_manager_without_totp_to_set_it_up(manager_client, settings):
    assert manager_client.get(reverse("dashboard")).status_code == 200, "off by default"
    settings.CONSOLE_TOTP_REQUIRED_FOR_MANAGERS = True
    response = manager_client.get(reverse("dashboard"))
    assert response.status_code == 302 and response["Location"] == reverse("two-factor")
    assert manager_client.get(reverse("two-factor")).status_code == 200
