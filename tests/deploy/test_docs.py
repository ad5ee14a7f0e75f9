"""The administrator's guide stays true to the code: every environment variable and every management
command option is in the reference, no document points outside the repository, and the README keeps its
two commands."""
import re

import pytest
from django.core.management import get_commands, load_command_class

from tests.deploy.conftest import BASE_DIR

DOCS = sorted([BASE_DIR / "README.md", *(BASE_DIR / "docs").rglob("*.md")])
OUR_APPS = ("adminconsole", "directory", "smtpservice")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def read(relative: str) -> str:
    return (BASE_DIR / relative).read_text()


def variables_read() -> set[str]:
    """Names the settings, the gunicorn configuration and the units read from the environment."""
    names = set()
    for path in ("adminconsole/settings.py", "deploy/gunicorn.conf.py"):
        names |= set(re.findall(r'(?:env\w*|os\.environ\.get)\(\s*"([A-Z][A-Z0-9_]+)"', read(path)))
    for secret in re.findall(r'envsecret\(\s*"([A-Z0-9_]+)"', read("adminconsole/settings.py")):
        names.add(f"{secret}_FILE")
    for unit in (BASE_DIR / "deploy/systemd").glob("*.service"):
        text = unit.read_text()
        names |= set(re.findall(r"\$([A-Z][A-Z0-9_]+)", text)) - {"MAINPID"}
        for line in re.findall(r"^Environment=(.*)$", text, re.M):
            names |= set(re.findall(r"\b([A-Z][A-Z0-9_]+)=", line))
    return names


def test_every_environment_variable_is_in_the_reference():
    reference = read("docs/reference/environment.md")
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", reference, re.M))

    assert "DATABASE_URL" in variables_read() and "CONSOLE_BIND" in variables_read()
    assert variables_read() - documented == set()


def our_commands() -> dict:
    return {name: app for name, app in get_commands().items() if app in OUR_APPS}


def test_every_management_command_and_option_is_in_the_reference():
    reference = read("docs/reference/commands.md")
    common = {option for action in load_command_class("django.core", "check").create_parser("manage.py", "check")._actions
              for option in action.option_strings} | {"--skip-checks"}
    missing = []
    assert {"runsmtp", "runrouter", "runconsole", "loaddemo", "exportdirectory", "importdirectory"} <= set(our_commands())
    for name, app in our_commands().items():
        section = re.search(rf"^### `{name}\b.*?(?=^##|\Z)", reference, re.M | re.S)
        if section is None:
            missing.append(name)
            continue
        parser = load_command_class(app, name).create_parser("manage.py", name)
        for action in parser._actions:
            for option in set(action.option_strings) - common:
                if f"`{option}" not in section.group(0) and f", `{option}" not in section.group(0):
                    missing.append(f"{name} {option}")
    assert missing == []


@pytest.mark.parametrize("path", DOCS, ids=[str(path.relative_to(BASE_DIR)) for path in DOCS])
def test_no_document_points_outside_the_repository(path):
    text = path.read_text()
    assert "shared/spec" not in text
    outside = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        resolved = (path.parent / target.split("#")[0]).resolve()
        if not resolved.is_relative_to(BASE_DIR) or not resolved.exists():
            outside.append(target)
    assert outside == []


def test_readme_keeps_its_two_commands():
    blocks = re.findall(r"```sh\n(.*?)```", read("README.md"), re.S)
    commands = [line.split("#")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]

    assert commands == ["make run", "make test"]
