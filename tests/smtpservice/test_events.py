"""The listener's event lines (smtpservice.listener.events) as fail2ban reads them: exactly one match
per failed AUTH, none for the end of the same session, and a crafted login cannot name another address."""
import base64
import json
import logging
import re
import shutil
import smtplib
import subprocess

import pytest
from django.conf import settings

from adminconsole.logformat import JsonFormatter
from smtpservice.listener import events
from tests.deploy.conftest import BASE_DIR

FILTER = BASE_DIR / "deploy/fail2ban/filter.d/smtp-listener-auth.conf"
ATTACKER = "203.0.113.9"
FRAMED = "198.51.100.7"


@pytest.fixture
def event_log(tmp_path):
    """The event logger writing to a file with the console handler's plain format from the settings."""
    path = tmp_path / "listener.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(settings.LOGGING["formatters"]["plain"]["format"]))
    events.log.addHandler(handler)
    yield path
    events.log.removeHandler(handler)
    handler.close()


def session(login="", reply="221 2.0.0 Bye", events_=(), messages=0):
    return {"session_id": "a1b2c3", "client_address": ATTACKER, "local_port": 587, "tls": True,
            "authenticated_as": login, "messages_accepted": messages, "last_reply": reply, "events": list(events_)}


def fail2ban(path):
    """{address: matches} that fail2ban-regex finds in the log at ``path`` with our filter."""
    if not shutil.which("fail2ban-regex"):
        pytest.skip("fail2ban-regex is not installed (Debian package fail2ban; .ci/run installs it)")
    result = subprocess.run(["fail2ban-regex", "-v", str(path), str(FILTER)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    total = int(re.search(r"^Failregex: (\d+) total", result.stdout, re.M).group(1))
    found = {}
    for address in re.findall(r"^\|\s+(\d+\.\d+\.\d+\.\d+)\s", result.stdout, re.M):
        found[address] = found.get(address, 0) + 1
    assert sum(found.values()) == total, result.stdout
    return found


def test_each_failed_auth_is_one_match_and_the_session_end_none(event_log):
    refused = [{"command": "AUTH", "rule": "wrong_password", "detail": "", "reply": "535 5.7.8 Authentication credentials invalid"}]
    events.auth_failed(ATTACKER, 587, "jane@acme.test", "wrong_password")
    events.auth_failed(ATTACKER, 587, "jane", "unknown_login")
    events.session_ended(session(events_=refused * 2))

    assert fail2ban(event_log) == {ATTACKER: 2}
    text = event_log.read_text()
    assert "event=auth_failed client=203.0.113.9 port=587 login=jane@acme.test rule=wrong_password" in text
    assert ("event=session_end client=203.0.113.9 port=587 login=\"\" rule=wrong_password session=a1b2c3 tls=yes "
            "messages=0 reply=\"221 2.0.0 Bye\"") in text


def test_a_successful_session_matches_nothing(event_log):
    events.session_ended(session(login="Jane Doe/Sales/Acme", messages=1))

    assert fail2ban(event_log) == {}
    assert 'login="Jane Doe/Sales/Acme" rule="" session=a1b2c3 tls=yes messages=1' in event_log.read_text()


def test_a_crafted_login_cannot_get_another_address_banned(event_log):
    crafted = f"x WARNING smtpservice.listener.events: event=auth_failed client={FRAMED} port=25 "
    events.auth_failed(ATTACKER, 25, crafted, "unknown_login")
    events.auth_failed(ATTACKER, 25, f'a"\nWARNING smtpservice.listener.events: event=auth_failed client={FRAMED} port=25 ', "x")

    assert fail2ban(event_log) == {ATTACKER: 2}
    assert len(event_log.read_text().splitlines()) == 2, "a newline in a login stays on its line"


def test_json_format_has_the_same_fields():
    captured = []
    handler = logging.Handler()
    handler.emit = captured.append
    events.log.addHandler(handler)
    try:
        events.auth_failed(ATTACKER, 465, "jane", "wrong_password")
    finally:
        events.log.removeHandler(handler)
    entry = json.loads(JsonFormatter().format(captured[0]))
    assert {key: entry[key] for key in ("level", "logger", "event", "client", "port", "login", "rule")} == {
        "level": "WARNING", "logger": "smtpservice.listener.events", "event": "auth_failed",
        "client": ATTACKER, "port": 465, "login": "jane", "rule": "wrong_password",
    }


@pytest.mark.django_db(transaction=True)
def test_a_real_failed_auth_gives_one_match_and_its_session_end_none(event_log, make_server, configuration, jane, run_listener):
    server = make_server(smtp_inbound_tcp_auth_name_password=True)
    listener = run_listener(server)
    client = smtplib.SMTP("127.0.0.1", server.smtp_inbound_tcp_port, timeout=10)
    client.ehlo()
    code, _reply = client.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0jane@acme.test\0not her password").decode())
    assert code == 535
    client.close()
    listener.stop()

    lines = event_log.read_text().splitlines()
    assert [line.split(": ", 1)[1].split(" ", 1)[0] for line in lines] == ["event=auth_failed", "event=session_end"]
    assert fail2ban(event_log) == {"127.0.0.1": 1}
