"""A large directory behaves as a small one: the bulk import, deep group chains, and ``builddirectory``.

Functional checks only; how fast is measured by bench/console_scale.py.
"""
import io
import json

import pytest
from django.core.management import call_command

from directory import audit, importexport, names
from directory.management.commands.builddirectory import group_name, person_name
from directory.models import AuditEntry, DocumentVersion, Group, Person, Server, groups_mapping
from smtpservice.core import policy
from smtpservice.store.snapshot import current_revision, load_snapshot
from tests.directory.documents import make_server, save

pytestmark = pytest.mark.django_db


def people(count, start=1):
    return [
        {"full_name": f"User {n}/Staff/Acme", "short_name": f"u{n}", "internet_address": f"u{n}@acme.test", "internet_password": "secret"}
        for n in range(start, start + count)
    ]


def chain(depth, last_members):
    """Groups G1 > G2 > ... > G<depth>, the last one listing ``last_members``."""
    return {
        f"g{level}": ("multi_purpose", [f"G{level + 1}"] if level < depth else list(last_members))
        for level in range(1, depth + 1)
    }


def test_an_import_gives_each_new_person_what_a_console_save_gives(monkeypatch):
    """One audit entry and a first version each, the revision counted for each, even across batches."""
    monkeypatch.setattr(importexport, "CREATE_BATCH", 2)
    before = current_revision()
    report = importexport.import_directory({"format": 1, "people": people(5)})
    assert not report.errors
    assert report.tallies["people"].created == 5
    console = save(Person, full_name="Console Made/Staff/Acme", internet_address="console@acme.test")
    for person in Person.objects.all():
        entry = AuditEntry.objects.get(document_type="person", object_id=str(person.pk))
        version = DocumentVersion.objects.get(document_type="person", object_id=str(person.pk))
        assert entry.action == AuditEntry.Action.CREATE
        assert entry.snapshot == audit.snapshot(person)
        assert entry.changes == audit.diff({}, entry.snapshot)
        assert (version.number, version.action, version.audit_entry_id) == (1, DocumentVersion.Action.CREATE, entry.pk)
        assert version.data == audit.snapshot(person, secrets=True)
        assert version.settings_revision is not None
        assert (entry.actor == "importdirectory") == (person.pk != console.pk)
    assert current_revision() == before + 6
    assert Person.objects.get(full_name="User 3/Staff/Acme").check_internet_password("secret")


def test_a_later_person_of_the_file_cannot_take_an_address_an_earlier_one_took():
    first, second = people(2)
    second["internet_address"] = first["internet_address"].upper()
    report = importexport.import_directory({"format": 1, "people": [first, second]})
    assert report.errors == [("people[1].internet_address", "Person with this Internet address already exists.")]
    assert not Person.objects.exists()


def test_a_new_name_that_differs_only_in_case_updates_the_existing_person():
    save(Person, full_name="User 1/Staff/Acme", short_name="old")
    report = importexport.import_directory({"format": 1, "people": [{"full_name": "CN=USER 1/OU=staff/O=acme", "short_name": "new"}]})
    assert not report.errors
    assert report.tallies["people"].updated == 1
    assert Person.objects.get().short_name == "new"


def test_an_import_still_refuses_a_name_taken_in_another_case_by_a_document_of_the_same_file():
    report = importexport.import_directory({"format": 1, "groups": [{"name": "Sales"}, {"name": "SALES"}]})
    assert report.errors == [("groups[1].name", "“SALES” is already in this file, at groups[0].")]


def test_the_import_reports_a_group_cycle_once_per_group_on_it():
    report = importexport.import_directory({"format": 1, "groups": [
        {"name": "A", "members": ["B"]}, {"name": "B", "members": ["A"]}, {"name": "C", "members": ["A"]},
    ]})
    assert not report.errors
    assert [path for path, _message in report.warnings] == ["groups[0].members", "groups[1].members"]
    assert Group.warnings_of(Group.objects.all()) == {group.pk: group.warnings() for group in Group.objects.all()}


def test_a_person_at_the_end_of_a_chain_of_2000_groups_is_found_through_every_one():
    groups = chain(2000, ["Jane Doe/Sales/Acme"])
    match = names.match_access_list("jane doe/sales/acme", ["G1"], groups)
    assert match is not None
    assert match.via_groups == tuple(f"G{level}" for level in range(1, 2001))
    assert names.match_access_list("John Roe/Sales/Acme", ["G1"], groups) is None
    assert names.expand_group("G1", groups) == ["Jane Doe/Sales/Acme"]


def test_a_wildcard_deep_in_a_chain_still_matches():
    assert names.match_access_list("Jane Doe/Sales/Acme", ["G1"], chain(600, ["*/Sales/Acme"])).entry == "*/Sales/Acme"


def test_a_cycle_is_found_at_any_depth_and_only_groups_on_it_are_in_cycles():
    groups = chain(1500, ["G700"])
    groups["outside"] = ("multi_purpose", ["G1"])
    cycle = names.find_cycle("G700", groups)
    assert cycle[0] == cycle[-1] == "G700" and len(cycle) == 802
    assert names.find_cycle("G1", groups) is None
    assert names.groups_in_cycles(groups) == {f"g{level}" for level in range(700, 1501)}
    assert names.groups_in_cycles({"a": ("multi_purpose", ["A"])}) == {"a"}


def test_builddirectory_makes_a_chain_that_grants_access_only_through_every_group():
    make_server(smtp_inbound_tcp_port=2525)
    out = io.StringIO()
    call_command("builddirectory", "--people", "40", "--depth", "20", stdout=out)
    assert json.loads(out.getvalue())["people"]["created"] == 40
    server = Server.objects.get()
    assert server.access_server == [group_name(1)] and server.smtp_inbound_enforce_server_access
    assert AuditEntry.objects.filter(actor=importexport.SOURCE, document_type="group").count() == 20
    snap = load_snapshot(server.name)
    last = policy.server_access(snap, person_name(40))
    assert last.allowed and "Chain 001 > Chain 002" in last.detail and "Chain 020 > Person 00040" in last.detail
    assert not policy.server_access(snap, "Jane Doe/Sales/Acme").allowed
    assert len(snap.people) == 40 and len(snap.groups) == 20


def test_pages_that_only_show_settings_read_no_people_or_groups():
    make_server()
    save(Person, full_name="Jane Doe/Sales/Acme")
    save(Group, name="Mail Admins", members=["Jane Doe/Sales/Acme"])
    settings_only = load_snapshot("mail1/Acme", people_and_groups=False)
    full = load_snapshot("mail1/Acme")
    assert settings_only.people == () and dict(settings_only.groups) == {}
    assert len(full.people) == 1 and set(full.groups) == set(groups_mapping())
    assert settings_only.inbound == full.inbound and settings_only.config == full.config


def test_an_access_list_expanded_once_answers_as_matching_each_name():
    groups = {
        **chain(300, ["Person 1/Staff/Acme", "*/Sales/Acme", "Mail Only"]),
        "mail only": ("mail_only", ["Hidden/Staff/Acme"]),
        "loop": ("multi_purpose", ["Loop", "CN=Looped/O=Acme"]),
    }
    entries = ["G1", "Loop", "Direct/Acme"]
    access_list = names.AccessList(entries, groups)
    for name in ("person 1/staff/acme", "Jane/Sales/Acme", "A/B/Sales/Acme", "Sales/Acme", "Hidden/Staff/Acme",
                 "Mail Only", "Looped/Acme", "Direct/Acme", "Nobody/Acme", "G150", "*"):
        assert (name in access_list) == (names.match_access_list(name, entries, groups) is not None), name
    assert "Anyone/Acme" in names.AccessList(["*"], {})
