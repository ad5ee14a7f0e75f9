"""The systemd units of deploy/systemd pass ``systemd-analyze verify``, and give each daemon only what it needs."""
import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import BASE_DIR

UNITS = BASE_DIR / "deploy/systemd"
INSTALLED = "/opt/smtp-console"
INSTANCES = ("smtp-console.service", "smtp-listener@mail1-Acme.service", "smtp-router@mail1-Acme.service")


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNITS / name)
    return parser


def test_units_pass_systemd_analyze_verify(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed (Debian package systemd; .ci/run installs it)")
    # The units name the install folder of docs/admin/install.md; here the programs are in this checkout.
    for path in UNITS.glob("*.service"):
        text = path.read_text().replace(f"{INSTALLED}/.venv/bin/", f"{Path(sys.executable).parent}/")
        (tmp_path / path.name).write_text(text.replace(INSTALLED, str(BASE_DIR)))

    result = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / name) for name in INSTANCES)],
                            capture_output=True, text=True, timeout=60)

    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("name", ["smtp-console.service", "smtp-listener@.service", "smtp-router@.service"])
def test_every_daemon_runs_sandboxed_as_the_dedicated_user(name):
    service = unit(name)["Service"]

    assert (service["User"], service["Group"]) == ("smtp-console", "smtp-console")
    assert (service["NoNewPrivileges"], service["ProtectSystem"], service["ProtectHome"]) == ("yes", "strict", "yes")
    assert service["StateDirectory"] == "smtp-console", "the only place it may write"


def test_only_the_listener_may_bind_ports_below_1024():
    listener, router, console = (unit(name)["Service"] for name in ("smtp-listener@.service", "smtp-router@.service", "smtp-console.service"))

    assert listener["AmbientCapabilities"] == listener["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert "AmbientCapabilities" not in router and router["CapabilityBoundingSet"] == ""
    assert "AmbientCapabilities" not in console and console["CapabilityBoundingSet"] == ""
    assert 'runsmtp --server "%I"' in listener["ExecStart"]
