#!/usr/bin/env python3
"""Take the screenshots of docs/img/ with headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

Starts the console and the demo server's SMTP services (``runconsole --server mail1/Acme``) on a throw-away
SQLite directory under /tmp, sends a little real mail so the dashboard has something to draw, then
photographs the dashboard and the Server document (on Ports > Internet Ports > Mail) in English and French.
The processes it starts are stopped by their PID at the end.

Usage: .venv/bin/python docs/screenshots.py
"""
import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = str(BASE_DIR / ".venv" / "bin" / "python")
OUT = BASE_DIR / "docs" / "img"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    sys.exit(f"nothing listens on port {port}")


def send_mail(port: int) -> None:
    message = "From: bob@example.org\r\nTo: jane@acme.test\r\nSubject: Order\r\n\r\nTwo coffees, please.\r\n"
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        for _ in range(3):
            client.sendmail("bob@example.org", ["jane@acme.test"], message)
        try:
            client.sendmail("bob@example.org", ["nobody@acme.test"], message)
        except smtplib.SMTPRecipientsRefused:
            pass


def main() -> None:
    data = tempfile.mkdtemp(prefix="console-screens.")
    env = {**os.environ, "DATA_DIR": data, "DEBUG": "1"}
    web, smtp, ssl = free_port(), free_port(), free_port()
    manage = [PYTHON, "manage.py"]
    subprocess.run([*manage, "migrate", "-v", "0"], cwd=BASE_DIR, env=env, check=True)
    shown = subprocess.run([*manage, "loaddemo", "--smtp-port", str(smtp), "--ssl-port", str(ssl)],
                           cwd=BASE_DIR, env=env, check=True, capture_output=True, text=True).stdout
    password = re.search(r"password: (\S+)", shown).group(1)
    console = subprocess.Popen([*manage, "runconsole", "--port", str(web), "--server", "mail1/Acme"], cwd=BASE_DIR, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(web)
        wait_for_port(smtp)
        send_mail(smtp)
        time.sleep(3)  # the listener writes finished sessions with its heartbeat
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
            for language in ("en", "fr"):
                context = browser.new_context(locale=language, viewport={"width": 1280, "height": 900})
                context.add_cookies([{"name": "django_language", "value": language, "url": f"http://127.0.0.1:{web}"}])
                page = context.new_page()
                page.goto(f"http://127.0.0.1:{web}/accounts/login/")
                page.fill("#id_username", "admin")
                page.fill("#id_password", password)
                page.locator("main form").get_by_role("button").first.click()
                page.wait_for_load_state()
                page.screenshot(path=str(OUT / f"dashboard-{language}.png"), full_page=False)
                page.goto(f"http://127.0.0.1:{web}/servers/1/#tab-mail")
                page.locator("#tab-mail").scroll_into_view_if_needed()
                page.screenshot(path=str(OUT / f"server-document-{language}.png"), full_page=True)
                context.close()
            browser.close()
    finally:
        console.terminate()
        console.wait(15)
        shutil.rmtree(data, ignore_errors=True)
    print("\n".join(str(path) for path in sorted(OUT.glob("*.png"))))


if __name__ == "__main__":
    main()
