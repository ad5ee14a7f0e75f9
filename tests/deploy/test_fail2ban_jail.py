"""The fail2ban jail of deploy/fail2ban loads with its filter, as `fail2ban-client -t` checks a configuration."""
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import BASE_DIR

SYSTEM = Path("/etc/fail2ban")


def test_the_jail_and_its_filter_pass_fail2bans_configuration_test(tmp_path):
    if not shutil.which("fail2ban-client") or not SYSTEM.is_dir():
        pytest.skip("fail2ban is not installed (Debian package fail2ban; .ci/run installs it)")
    config = tmp_path / "fail2ban"
    shutil.copytree(SYSTEM, config)
    for jail in (config / "jail.d").iterdir():  # only ours: Debian's sshd jail needs a log this machine may not have
        jail.unlink()
    for kind in ("filter.d", "jail.d"):
        for path in (BASE_DIR / "deploy/fail2ban" / kind).glob("*.conf"):
            shutil.copy(path, config / kind / path.name)

    result = subprocess.run(["fail2ban-client", "-c", str(config), "-t"], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "configuration test is successful" in result.stdout + result.stderr
