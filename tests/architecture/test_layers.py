"""The layers stay as docs/design/layers.md draws them: arrows point one way, read from the imports.

The pure core imports no ORM, no sockets and no daemon; the daemons never import console pages;
the console never imports a daemon; and the apps do not import each other in a circle
(directory <- smtpservice <- adminconsole).
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def modules(folder):
    for path in sorted((ROOT / folder).rglob("*.py")):
        if "migrations" not in path.parts:
            yield path


def imports(path):
    """Every module ``path`` imports, at any depth of the file (imports inside functions count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def offending(folder, forbidden):
    return sorted(
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules(folder) for name in imports(path)
        if any(name == prefix or name.startswith(prefix + ".") for prefix in forbidden)
    )


RULES = [
    ("smtpservice/core", ("django.db", "django.http", "asyncio", "socket", "ssl", "smtplib", "smtpservice.models",
                          "smtpservice.store", "smtpservice.listener", "smtpservice.router", "smtpservice.console",
                          "directory.models", "adminconsole", "asgiref")),
    ("smtpservice/listener", ("smtpservice.console", "smtpservice.router", "adminconsole", "django.views", "django.http")),
    ("smtpservice/router", ("smtpservice.console", "smtpservice.listener", "adminconsole", "django.views", "django.http")),
    ("smtpservice/store", ("smtpservice.console", "smtpservice.listener", "smtpservice.router", "adminconsole")),
    ("smtpservice/console", ("smtpservice.listener", "smtpservice.router", "adminconsole")),
    ("adminconsole", ("smtpservice.listener", "smtpservice.router")),
    ("directory", ("smtpservice", "adminconsole")),
    ("smtpservice", ("adminconsole",)),
]


@pytest.mark.parametrize(("folder", "forbidden"), RULES, ids=[folder for folder, _forbidden in RULES])
def test_imports_point_one_way(folder, forbidden):
    assert offending(folder, forbidden) == []


def test_the_rules_see_a_forbidden_import(tmp_path):
    """The check reads imports inside functions too: a daemon import hidden in a view would be found."""
    module = tmp_path / "console" / "views.py"
    module.parent.mkdir()
    module.write_text("def view():\n    from smtpservice.listener import service\n")
    assert "smtpservice.listener.service" in imports(module)
