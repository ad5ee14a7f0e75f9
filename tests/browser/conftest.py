"""Browser fixtures: Debian's Chromium driven by Playwright, never a downloaded browser."""
import os
import shutil

import pytest
from django.db import connections

# The real listener and its documents, shared with the listener's own tests.
from tests.smtpservice.conftest import configuration, jane, make_server, run_listener  # noqa: F401

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
def browser(monkeypatch):
    """A fresh Chromium per test: Playwright's sync API keeps an event loop running in this thread while
    it is open, which would break later tests of the same worker that call asyncio.run().

    The ORM calls a test makes between browser steps are plain synchronous calls, so Django's async
    guard (which sees Playwright's loop) is lifted for browser tests only.
    """
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if not shutil.which(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's chromium package (.ci/run does).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
            ],
        )
        yield browser
        browser.close()
        # ORM calls made while Playwright's loop ran opened connections in its context; close them
        # here, in the same context, or PostgreSQL cannot drop the test database at the end.
        connections.close_all()


@pytest.fixture
def page(browser):
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()
