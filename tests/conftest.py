"""Test-wide settings overrides and shared fixtures."""
import uuid

import pytest
from django.contrib.auth.models import Group as AuthGroup
from django.contrib.auth.models import User
from django.utils import translation

from directory import roles


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory, request):
    """On SQLite, test in a file (WAL), not in memory: the listener's ORM thread needs its own connection.

    On PostgreSQL, each run gets database names of its own (the xdist run id, shared by its workers),
    so two suites on one server never drop each other's databases.
    """
    from django.conf import settings

    database = settings.DATABASES["default"]
    test = database.setdefault("TEST", {})
    if database["ENGINE"].endswith("sqlite3"):
        test["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")
    else:
        run_id = getattr(request.config, "workerinput", {}).get("testrunuid") or uuid.uuid4().hex
        test["NAME"] = f"{test.get('NAME') or 'test_' + database['NAME']}_{run_id[:10]}"


@pytest.fixture(scope="session", autouse=True)
def _plain_http():
    """The live server of browser tests speaks plain HTTP on loopback: no HTTPS redirect or secure cookies.

    Set on the settings object before any server thread loads the middleware.
    """
    from django.conf import settings

    settings.SECURE_SSL_REDIRECT = False
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path):
    """Plain static storage, no HTTPS redirect, fast hashing, and no login lock-outs between tests."""
    settings.SECURE_SSL_REDIRECT = False
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _english():
    """Each test starts in English, whatever language a previous test activated on this thread."""
    with translation.override("en"):
        yield


def make_user(username, role=None, password="console-pass-1234"):
    user = User.objects.create_user(username, password=password)
    if role:
        user.groups.add(AuthGroup.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def reader(db):
    return make_user("reader", roles.READER)


@pytest.fixture
def editor(db):
    return make_user("editor", roles.EDITOR)


@pytest.fixture
def manager(db):
    return make_user("manager", roles.MANAGER)
