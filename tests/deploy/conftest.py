"""Production processes started the way docs/admin/install.md says, on free loopback ports."""
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.outbound.conftest import database_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def production_env(**extra: str) -> dict:
    """DEBUG off, a real secret key, the test database; plain HTTP only because the test speaks it on loopback."""
    return {
        **os.environ, "DEBUG": "0", "SECRET_KEY": "test-production-key-" + "x" * 40, "DATABASE_URL": database_url(),
        "SECURE_SSL_REDIRECT": "0", "SESSION_COOKIE_SECURE": "0", "CSRF_COOKIE_SECURE": "0", "PYTHONUNBUFFERED": "1",
        **extra,
    }


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    """Return once something accepts connections on 127.0.0.1:port; fail with the process's log if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port}:\n{log.read_text(errors='replace')}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120)


def scrape(port: int) -> dict:
    """{(sample name, sorted labels): value} of one scrape of http://127.0.0.1:port/metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
    }
