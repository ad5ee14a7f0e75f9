"""``manage.py`` works in a fresh clone without make: the settings create the data folder."""
import os

from tests.deploy.conftest import manage


def test_migrate_in_a_fresh_clone_creates_the_data_folder(tmp_path):
    data = tmp_path / "clone" / "var"
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}

    result = manage("migrate", "--noinput", "-v", "0", env={**env, "DATA_DIR": str(data)})

    assert result.returncode == 0, result.stderr
    assert (data / "directory.sqlite3").stat().st_size > 0
