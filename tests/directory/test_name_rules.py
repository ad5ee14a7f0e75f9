"""Domino's naming rules and list caps, shared by the console form and the JSON import (console input
found by the second audit)."""
import pytest

from directory import importexport, names
from directory.models import Group, Person
from tests.directory.documents import REQUIRED, bound_form

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("name", "problems"), [
    ("Jane Doe/Sales/Acme", []),
    ("Élodie O'Neil-Smith/R&D/Acme_EU", []),
    ("J. Doe/Acme.test", []),
    ("<script>alert(1)</script>", [(names.COMPONENT_CHARACTERS, "<script>alert(1)<", 0), (names.COMPONENT_CHARACTERS, "script>", 0)]),
    ("Jane@Doe/Acme", [(names.COMPONENT_CHARACTERS, "Jane@Doe", 0)]),
    ("A" * 81 + "/Acme", [(names.COMPONENT_LENGTH, "A" * 81, 80)]),
    ("Jane/" + "U" * 33 + "/Acme", [(names.COMPONENT_LENGTH, "U" * 33, 32)]),
    ("Jane/" + "O" * 65, [(names.COMPONENT_LENGTH, "O" * 65, 64)]),
    ("Jane/a/b/c/d/e/Acme", [(names.TOO_MANY_UNITS, "", 4)]),
    ("Jane/a/b/c/d/Acme", []),
])
def test_name_problems(name, problems):
    assert names.name_problems(name) == problems


@pytest.mark.parametrize(("model", "field", "value", "code"), [
    (Person, "full_name", "<script>x</script>/Acme", "invalid_name_character"),
    (Group, "name", "<b>Admins</b>", "invalid_name_character"),
    (Group, "name", "a/b/c/d/e/f/g", "invalid_name_units"),
    (Group, "members", "Jane <jane@acme.test>", "invalid_name_character"),
    (Group, "members", "x" * 100_000, "entry_too_long"),
])
def test_the_console_refuses_names_domino_would_refuse(model, field, value, code):
    form = bound_form(model, **{**REQUIRED[model], field: value})
    assert not form.is_valid()
    assert code in [error.code for error in form.errors.as_data()[field]]


def test_the_import_refuses_the_same_names_with_the_same_words():
    report = importexport.import_directory({"format": 1, "groups": [
        {"name": "<b>Admins</b>", "group_type": "multi_purpose", "members": ["x" * 300]},
    ]})
    messages = dict(report.errors)
    assert "a name may hold letters, digits, spaces and & - . ' _ only" in messages["groups[0].name"]
    assert "is longer than 255 characters (it has 300)" in messages["groups[0].members"]
    assert not Group.objects.exists()
