"""The console as production serves it: gunicorn with DEBUG off, static files from WhiteNoise, the
console's own 403 and 404 pages, and a log without tracebacks for a refused request."""
import re
import subprocess
import sys

import pytest
from django.conf import global_settings

from directory.roles import MANAGER, READER
from tests.browser.conftest import browser, page  # noqa: F401 (fixtures)
from tests.conftest import make_user
from tests.deploy.conftest import BASE_DIR, manage, production_env, stop, wait_for_port
from tests.smtpservice.conftest import free_port

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "gunicorn-pass-1234"


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory, django_db_setup):
    """gunicorn with deploy/gunicorn.conf.py on a free port, after `collectstatic`, as the unit file runs it.

    One server for the module: each test makes its own users in the test database it reads.
    """
    folder = tmp_path_factory.mktemp("gunicorn")
    port = free_port()
    env = production_env(STATIC_ROOT=str(folder / "static"), CONSOLE_BIND=f"127.0.0.1:{port}", CONSOLE_WORKERS="2")
    collected = manage("collectstatic", "--noinput", "-v", "0", env=env)
    assert collected.returncode == 0, collected.stderr
    log = folder / "gunicorn.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"],
                                   cwd=BASE_DIR, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, log)
        yield f"http://127.0.0.1:{port}", log
    finally:
        stop(process)


@pytest.fixture(autouse=True)
def _real_password_hashes(settings):
    """The server process checks passwords with the production hashers."""
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS


def log_in(page, url, username):
    page.goto(f"{url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.locator("form").get_by_role("button").first.click()


def test_gunicorn_serves_the_login_page_its_styles_and_a_login(gunicorn, page):
    url, _log = gunicorn
    make_user("admin", MANAGER, password=PASSWORD)

    response = page.goto(f"{url}/accounts/login/")
    assert response.status == 200
    stylesheet = page.locator("link[rel=stylesheet][href*=console]").get_attribute("href")
    assert re.fullmatch(r"/static/console\.[0-9a-f]{12}\.css", stylesheet), "hashed name from the manifest"
    css = page.request.get(f"{url}{stylesheet}")
    assert css.status == 200
    assert css.headers["content-type"].startswith("text/css")
    assert "max-age=315360000" in css.headers["cache-control"], "a hashed file is cached for ever"
    assert page.evaluate("getComputedStyle(document.querySelector('.console-navbar')).backgroundColor") != "rgba(0, 0, 0, 0)"

    log_in(page, url, "admin")
    page.wait_for_url(f"{url}/")
    assert page.locator("h1").inner_text() == "Dashboard"
    assert page.locator("#console-user").inner_text().startswith("admin")


def test_refused_and_missing_pages_are_the_consoles_and_log_one_line(gunicorn, page):
    url, log = gunicorn
    make_user("reader", READER, password=PASSWORD)
    log_in(page, url, "reader")
    page.wait_for_url(f"{url}/")

    refused = page.goto(f"{url}/users/")
    assert refused.status == 403
    assert page.locator("h1").inner_text() == "Access denied"
    missing = page.goto(f"{url}/no-such-page/")
    assert missing.status == 404
    assert page.locator("h1").inner_text() == "Page not found"
    assert page.locator(".console-navbar").is_visible(), "the console's own page, with its menu"

    text = log.read_text(errors="replace")
    assert "Forbidden (Permission denied): /users/" in text
    assert "Not Found: /no-such-page/" in text
    assert "Traceback" not in text
