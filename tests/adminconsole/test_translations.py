"""The French catalogue: complete, compiled, extracted from the current code, and using Domino's labels."""
import ast
import gettext
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation

from directory import forms, models

LOCALE = Path(settings.BASE_DIR) / "locale" / "fr" / "LC_MESSAGES"
PO_FILE = LOCALE / "django.po"
MO_FILE = LOCALE / "django.mo"
LOAD_SITES_FR = "Charger les configurations Internet à partir des documents Serveur\\Sites Internet"
PLACEHOLDER = re.compile(r"%\(\w+\)[-#0 +]*\d*(?:\.\d+)?[sdifr]|%[sd]|\{\w*\}")
# What makemessages must not read: the same list as `make messages`, plus what a run leaves behind.
NOT_SOURCE = {".venv", ".git", "tests", "var", "static-collected", "test-artifacts", ".pytest_cache", "__pycache__"}


def read_po(path):
    """The entries of a .po file as dicts (id, plural, strs, flags), obsolete ones left out; no polib needed."""
    entries = []
    for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8").strip()):
        entry, key = {"id": None, "plural": None, "strs": {}, "flags": set()}, None
        for line in block.splitlines():
            if line.startswith("#,"):
                entry["flags"].update(flag.strip() for flag in line[2:].split(","))
            elif line.startswith("#"):
                continue
            elif line.startswith('"'):
                value = ast.literal_eval(line)
                if isinstance(key, int):
                    entry["strs"][key] += value
                else:
                    entry[key] += value
            else:
                keyword, value = line.split(" ", 1)
                value = ast.literal_eval(value)
                if keyword == "msgid":
                    key = "id"
                elif keyword == "msgid_plural":
                    key = "plural"
                elif keyword == "msgctxt":
                    key = "context"
                else:
                    key = int(keyword[7:-1]) if keyword.startswith("msgstr[") else 0
                if isinstance(key, int):
                    entry["strs"][key] = value
                else:
                    entry[key] = value
        if entry["id"] is not None:
            entries.append(entry)
    return [entry for entry in entries if entry["id"] != ""]


def label(entry):
    return f"msgid {entry['id']!r}"


def test_every_french_entry_is_translated_and_none_is_fuzzy():
    entries = read_po(PO_FILE)
    assert entries, f"{PO_FILE} holds no entries"
    untranslated = [label(entry) for entry in entries if not all(entry["strs"].values())]
    fuzzy = [label(entry) for entry in entries if "fuzzy" in entry["flags"]]
    assert untranslated == [], "run `make messages`, then translate these entries"
    assert fuzzy == [], "check these translations and remove their fuzzy flag"


def test_french_plurals_give_both_forms():
    for entry in read_po(PO_FILE):
        if entry["plural"] is not None:
            assert sorted(entry["strs"]) == [0, 1], label(entry)


def test_french_translations_keep_the_placeholders_of_the_english():
    """A lost or renamed %(name)s would raise KeyError at run time, only in French."""
    wrong = []
    for entry in read_po(PO_FILE):
        english = sorted(PLACEHOLDER.findall(entry["id"] + (entry["plural"] or "")))
        for text in entry["strs"].values():
            french = sorted(PLACEHOLDER.findall(text))
            # A plural form may leave out the count ("un document"); a singular message keeps every placeholder.
            if (set(french) - set(english)) if entry["plural"] is not None else french != english:
                wrong.append((entry["id"], text))
    assert wrong == []


def test_compiled_catalogue_matches_the_po_file():
    """The .mo is committed so no gettext tool is needed at run time; it must say what the .po says."""
    with MO_FILE.open("rb") as handle:
        catalog = dict(gettext.GNUTranslations(handle)._catalog)
    catalog.pop("", None)
    expected = {}
    for entry in read_po(PO_FILE):
        # A msgctxt entry is stored in the .mo under "context\x04msgid", as gettext looks it up.
        msgid = f"{entry['context']}\x04{entry['id']}" if entry.get("context") else entry["id"]
        if entry["plural"] is None:
            expected[msgid] = entry["strs"][0]
        else:
            expected.update({(msgid, index): text for index, text in entry["strs"].items()})
    stale = sorted(str(key) for key in set(expected) | set(catalog) if expected.get(key) != catalog.get(key))
    assert stale == [], "run `make messages` to compile locale/fr/LC_MESSAGES/django.mo again"


def test_server_form_uses_dominos_french_labels():
    with translation.override("fr"):
        form = forms.ServerForm()
        assert form.fields["load_internet_sites"].label == LOAD_SITES_FR
        assert form.fields["smtp_listener_enabled"].label == "Tâche d'écoute SMTP"
        assert form.fields["host_name"].label == "Nom d'hôte Internet qualifié complet"
        assert form.fields["smtp_inbound_enforce_server_access"].label == "Appliquer les paramètres d'accès au serveur"
        assert dict(form.fields["smtp_inbound_tcp_status"].choices)["enabled"] == "Activé"
        assert [str(tab_label) for tab_label, _fields in form.tabs] == ["Général", "Sécurité", "Ports"]
        (internet_ports,) = form.tabs[2][1][0]
        assert str(internet_ports[0]) == "Ports Internet" and str(internet_ports[1][1][0][0]) == "Messagerie"


def test_site_not_enabled_text_is_translated():
    with translation.override("fr"):
        assert str(models.SITE_NOT_ENABLED_TEXT) == "Ce site n'est pas activé sur le serveur."


def test_server_document_after_switching_to_french_shows_domino_labels(client, reader):
    server = models.Server.objects.create(name="mail1/Acme", host_name="mail1.acme.test")
    client.force_login(reader)
    client.post(reverse("set_language"), {"language": "fr", "next": server.get_absolute_url()})
    page = client.get(server.get_absolute_url()).content.decode()
    assert '<html lang="fr">' in page
    assert LOAD_SITES_FR in page
    assert "Général" in page and "Sécurité" in page and "Messagerie (SMTP en entrée)" in page
    assert "Load Internet configurations" not in page


def _copy_sources(destination):
    base = Path(settings.BASE_DIR)
    for item in base.iterdir():
        if item.name in NOT_SOURCE:
            continue
        if item.is_dir():
            shutil.copytree(item, destination / item.name, ignore=shutil.ignore_patterns(*NOT_SOURCE, "*.pyc"))
        else:
            shutil.copy2(item, destination / item.name)


@pytest.mark.skipif(shutil.which("xgettext") is None, reason="needs GNU gettext (xgettext) to extract strings")
def test_committed_catalogue_holds_every_string_of_the_code(tmp_path):
    """Run makemessages on a copy of the sources: a new or changed string must be in the committed .po."""
    _copy_sources(tmp_path)
    env = {**os.environ, "DEBUG": "1"}
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "fr", "--no-obsolete",
         *(f"--ignore={name}" for name in sorted(NOT_SOURCE))],
        cwd=tmp_path, env=env, check=True, capture_output=True,
    )

    def ids(path):
        return {(entry["id"], entry["plural"]) for entry in read_po(path)}

    extracted, committed = ids(tmp_path / "locale" / "fr" / "LC_MESSAGES" / "django.po"), ids(PO_FILE)
    new, gone = sorted(extracted - committed), sorted(committed - extracted)
    assert not (new or gone), (
        "the French catalogue is out of date: run make messages, translate the new entries and commit the .po and .mo"
        f"\nnot in the .po: {[msgid for msgid, _plural in new]}\nno longer in the code: {[msgid for msgid, _plural in gone]}"
    )


def test_french_elides_de_before_a_vowel_and_puts_a_no_break_space_before_colons(client, reader):
    from directory import models as directory_models
    from tests.directory.documents import save

    site = save(directory_models.InternetSite, user=reader, name="Acme SMTP")
    client.force_login(reader)
    page = client.get(reverse("directory:internetsite-history", args=[site.pk]), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "<title>Historique d&#x27;Acme SMTP" in page
    detail = client.get(site.get_absolute_url(), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Site Internet\u00a0:</span>" in detail or "\u00a0:</span>" in detail.split("<h1")[1].split("</h1>")[0]
