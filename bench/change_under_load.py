#!/usr/bin/env python3
"""A saved change applies to new connections within 1 s while the listener is under full load (issue 10).

Loopback only; a throw-away SQLite directory under /tmp. ``migrate`` and ``loaddemo`` (the settings
``make run`` starts), then ``runsmtp --server mail1/Acme`` with its default workers. Postfix's
``smtp-source`` keeps it busy from 127.0.0.1 (new connection per message, 20 in parallel, 2 KB
messages, bounded by ``--messages``), and while it runs, ``--changes`` times in turn the Configuration
Settings document's "Deny connections from these hosts" gets 127.0.0.5 added or removed, saved through
the console's save path (the form and ``save_document``). A probe connecting from 127.0.0.5 every 10 ms
times how long until new connections see the change: refused, then greeted again.

Usage: .venv/bin/python bench/change_under_load.py [--changes 6] [--messages 60000]
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from console_scale import BASE_DIR, LOCAL, PYTHON, SERVER, TARGETS, free_port, load, manage, verdict, wait_for_port  # noqa: E402

PROBE = "127.0.0.5"


def greeted(port: int) -> bool | None:
    """True when a connection from PROBE is greeted (220), False when it is refused, None when nothing answered."""
    try:
        with socket.create_connection((LOCAL, port), timeout=2, source_address=(PROBE, 0)) as sock:
            line = sock.recv(200)
    except OSError:
        return None
    return line.startswith(b"220") if line else False


def save_deny(deny: bool) -> None:
    from adminconsole.documents.views import form_data, save_valid
    from directory.forms import ConfigurationSettingsForm
    from directory.models import ConfigurationSettings

    settings = ConfigurationSettings.objects.get()
    data = form_data(ConfigurationSettingsForm(instance=settings))
    data["connection_deny_hosts"] = PROBE if deny else ""
    save_valid(ConfigurationSettingsForm(data, instance=settings), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=6)
    parser.add_argument("--messages", type=int, default=60_000)
    options = parser.parse_args()
    if not shutil.which("smtp-source"):
        sys.exit("smtp-source not found (apt-get install postfix)")

    data = Path(tempfile.mkdtemp(prefix="change-under-load."))
    smtp_port, ssl_port = free_port(), free_port()
    os.environ.update(DATA_DIR=str(data), DJANGO_SETTINGS_MODULE="adminconsole.settings", DEBUG="0",
                      SMTP_LOG_LEVEL="WARNING", SECRET_KEY="bench-only-" + "x" * 50)
    env = dict(os.environ)
    sys.path.insert(0, str(BASE_DIR))
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} on {os.uname().nodename}, {os.cpu_count()} CPUs, {load()}")
    listener = source = None
    try:
        manage("migrate", "-v", "0", env=env)
        manage("loaddemo", "--smtp-port", str(smtp_port), "--ssl-port", str(ssl_port), env=env)
        import django

        django.setup()
        listener = subprocess.Popen([PYTHON, "manage.py", "runsmtp", "--server", SERVER, "--grace", "1"],
                                    cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL)
        wait_for_port(smtp_port, listener, 60, step=0.05)
        started = time.perf_counter()
        source = subprocess.Popen(
            ["smtp-source", "-s", "20", "-m", str(options.messages), "-l", "2048", "-f", "bench@example.org",
             "-t", "jane@acme.test", f"{LOCAL}:{smtp_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(2)
        worst = 0.0
        for change in range(options.changes):
            deny = change % 2 == 0
            saved = time.perf_counter()
            save_deny(deny)
            while greeted(smtp_port) is not (not deny):
                if time.perf_counter() - saved > 10:
                    raise RuntimeError("the change did not apply within 10 s")
                time.sleep(0.01)
            applied = time.perf_counter() - saved
            worst = max(worst, applied)
            under_load = source.poll() is None
            print(f"CHANGE {'deny' if deny else 'allow'} {PROBE} applied_s={applied:.2f} target<={TARGETS['change_applied_s']} "
                  f"{verdict(applied, TARGETS['change_applied_s'])} under_load={'yes' if under_load else 'NO (load ended)'}")
        if source.poll() is not None:
            print("# the load ended before the last change: raise --messages")
        source.terminate()
        source.wait()
        from smtpservice.models import MailboxEntry

        elapsed = time.perf_counter() - started
        stored = MailboxEntry.objects.count()
        print(f"LOAD stored={stored} in {elapsed:.1f} s ({stored / elapsed:.0f} msg/s) worst_change_s={worst:.2f} ({load()})")
    finally:
        for process in (source, listener):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(20)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
