"""The access-list matcher: hierarchical names, wildcards and nested groups, without the database."""
import time

import pytest

from directory import names
from directory.names import Match, match_access_list

JANE = "Jane Doe/Sales/Acme"


def groups_of(*definitions):
    """``("Name", "type", [members]), ...`` -> the mapping the matcher reads."""
    return {name.lower(): (group_type, members) for name, group_type, members in definitions}


@pytest.mark.parametrize(
    ("written", "abbreviated"),
    [
        ("CN=Jane Doe/OU=Sales/O=Acme", JANE),
        ("cn=Jane Doe/ou=Sales/o=Acme", JANE),
        ("CN=Jane Doe/OU=East/OU=Sales/O=Acme/C=FR", "Jane Doe/East/Sales/Acme/FR"),
        (" Jane Doe / Sales / Acme ", JANE),
        ("mail1/Acme", "mail1/Acme"),
        ("*/OU=Sales/O=Acme", "*/Sales/Acme"),
    ],
)
def test_canonical_names_are_abbreviated(written, abbreviated):
    assert names.abbreviate(written) == abbreviated


@pytest.mark.parametrize(
    ("name", "hierarchical", "valid"),
    [
        ("mail1/Acme", True, True),
        ("mail1", True, False),
        ("mail1", False, True),
        ("Jane//Acme", False, False),
        ("/Acme", False, False),
        ("Acme/", False, False),
        ("CN=mail1/O=Acme", True, True),
    ],
)
def test_name_validity(name, hierarchical, valid):
    assert names.is_valid_name(name, hierarchical=hierarchical) is valid


@pytest.mark.parametrize(
    ("name", "organization"),
    [("mail1/Acme", "Acme"), ("CN=Jane Doe/OU=Sales/O=Acme", "Acme"), ("mail1", "")],
)
def test_organization_is_the_last_component(name, organization):
    assert names.organization(name) == organization


@pytest.mark.parametrize(
    ("name", "entry"),
    [
        (JANE, JANE),
        (JANE, "jane doe/sales/acme"),
        ("JANE DOE/SALES/ACME", JANE),
        ("CN=Jane Doe/OU=Sales/O=Acme", JANE),
        (JANE, "CN=Jane Doe/OU=Sales/O=Acme"),
        (JANE, "cn=jane doe/ou=sales/o=acme"),
    ],
)
def test_names_match_in_any_case_and_form(name, entry):
    assert match_access_list(name, [entry], {}) == Match(names.abbreviate(entry))


@pytest.mark.parametrize("entry", ["John Doe/Sales/Acme", "Jane Doe/Acme", "Jane Doe/Sales", "Jane Doe"])
def test_a_different_name_does_not_match(entry):
    assert match_access_list(JANE, [entry], {}) is None


@pytest.mark.parametrize(
    ("name", "entry", "matches"),
    [
        ("Jane Doe/Sales/Acme", "*", True),
        ("jdoe", "*", True),
        ("Jane Doe/Acme", "*/Acme", True),
        ("Jane Doe/Sales/Acme", "*/Acme", True),
        ("Jane Doe/East/Sales/Acme", "*/Acme", True),
        ("Jane Doe/Sales/Acme", "*/Sales/Acme", True),
        ("Jane Doe/East/Sales/Acme", "*/Sales/Acme", True),
        ("Jane Doe/North/East/Sales/Acme", "*/Sales/Acme", True),
        ("CN=Jane Doe/OU=Sales/O=Acme", "*/sales/acme", True),
        ("jane doe/sales/acme", "*/OU=Sales/O=Acme", True),
        ("Jane Doe/Acme", "*/Sales/Acme", False),
        ("Jane Doe/Marketing/Acme", "*/Sales/Acme", False),
        ("Sales/Acme", "*/Sales/Acme", False),
        ("Jane Doe/Sales/Globex", "*/Sales/Acme", False),
        ("Jane Doe/Sales/Acme/FR", "*/Sales/Acme", False),
        ("Jane Doe/Globex", "*/Acme", False),
        ("jdoe", "*/Acme", False),
    ],
)
def test_wildcards_cover_names_at_any_depth_below_them(name, entry, matches):
    found = match_access_list(name, [entry], {})
    assert (found == Match(names.abbreviate(entry))) if matches else found is None


def test_an_alias_such_as_the_internet_address_matches_too():
    assert match_access_list(JANE, ["jane@acme.test"], {}, aliases=["jane@acme.test"]) == Match("jane@acme.test")


def test_the_first_matching_entry_is_reported():
    found = match_access_list(JANE, ["John Doe/Sales/Acme", "*/Sales/Acme", JANE, "*"], {})
    assert found.entry == "*/Sales/Acme"
    assert found.explain() == "*/Sales/Acme"


def test_a_member_of_a_listed_group_matches_via_that_group():
    groups = groups_of(("Mail Admins", "multi_purpose", ["John Doe/Acme", JANE]))
    found = match_access_list(JANE, ["Mail Admins"], groups)
    assert found == Match(JANE, ("Mail Admins",))
    assert found.explain() == "Mail Admins > Jane Doe/Sales/Acme"


def test_group_names_match_without_regard_to_case():
    groups = groups_of(("Mail Admins", "multi_purpose", ["jane doe/sales/acme"]))
    assert match_access_list(JANE, ["MAIL ADMINS"], groups).explain() == "MAIL ADMINS > jane doe/sales/acme"


def test_a_wildcard_inside_a_group_matches():
    groups = groups_of(("Sales Staff", "acl_only", ["*/Sales/Acme"]))
    assert match_access_list("Bob/East/Sales/Acme", ["Sales Staff"], groups).explain() == "Sales Staff > */Sales/Acme"


@pytest.mark.parametrize("depth", [2, 5, 6, 12])
def test_groups_nest_to_any_depth(depth):
    chain = [f"Level {level}" for level in range(1, depth + 1)]
    groups = groups_of(
        *((group, "multi_purpose", [chain[index + 1]]) for index, group in enumerate(chain[:-1])),
        (chain[-1], "multi_purpose", ["Somebody/Acme", JANE]),
    )
    found = match_access_list(JANE, ["Other/Acme", "Level 1"], groups)
    assert found == Match(JANE, tuple(chain))
    assert found.explain() == " > ".join([*chain, JANE])
    assert match_access_list("Nobody/Acme", ["Level 1"], groups) is None


def test_a_cycle_ends_and_still_finds_members_on_both_sides():
    groups = groups_of(
        ("A", "multi_purpose", ["B", "Alice/Acme"]),
        ("B", "multi_purpose", ["A", "Bob/Acme"]),
    )
    assert match_access_list("Bob/Acme", ["A"], groups).explain() == "A > B > Bob/Acme"
    assert match_access_list("Alice/Acme", ["B"], groups).explain() == "B > A > Alice/Acme"
    assert match_access_list("Carol/Acme", ["A"], groups) is None
    assert match_access_list("Carol/Acme", ["B", "A"], groups) is None


def test_a_group_containing_itself_ends():
    groups = groups_of(("Loop", "multi_purpose", ["loop", "LOOP"]))
    assert match_access_list(JANE, ["Loop"], groups) is None


def test_a_long_cycle_ends_and_matches_at_its_far_end():
    groups = groups_of(
        *((f"G{index}", "multi_purpose", [f"G{(index + 1) % 6}"]) for index in range(6)),
    )
    groups["g5"] = ("multi_purpose", ["G0", JANE])
    assert match_access_list(JANE, ["G2"], groups).via_groups == ("G2", "G3", "G4", "G5")


def test_densely_nested_groups_are_checked_quickly():
    """Fourteen groups that all contain each other: a lookup explores each group once, not every path."""
    members = [f"G{index}" for index in range(14)]
    groups = groups_of(*((group, "multi_purpose", [m for m in members if m != group]) for group in members))
    groups["g13"] = ("multi_purpose", [*members[:13], JANE])
    started = time.monotonic()
    assert match_access_list("Nobody/Acme", ["G0"], groups) is None
    assert match_access_list(JANE, ["G0"], groups).via_groups[-1] == "G13"
    assert time.monotonic() - started < 1


def test_mail_only_groups_do_not_count_in_access_lists():
    groups = groups_of(
        ("Newsletter", "mail_only", [JANE]),
        ("Everyone", "multi_purpose", ["Newsletter"]),
        ("Auditors", "acl_only", [JANE]),
    )
    assert match_access_list(JANE, ["Newsletter"], groups) is None
    assert match_access_list(JANE, ["Everyone"], groups) is None
    assert match_access_list(JANE, ["Newsletter", "Auditors"], groups) == Match(JANE, ("Auditors",))


def test_a_name_listed_directly_wins_over_a_group_of_the_same_name():
    groups = groups_of(("Jane Doe/Sales/Acme", "multi_purpose", ["Other/Acme"]))
    assert match_access_list(JANE, [JANE], groups) == Match(JANE)


def test_expand_group_lists_every_member_once_through_cycles():
    groups = groups_of(
        ("A", "multi_purpose", ["B", "Alice/Acme"]),
        ("B", "multi_purpose", ["A", "Bob/Acme", "Alice/Acme"]),
    )
    assert sorted(names.expand_group("A", groups)) == ["Alice/Acme", "Bob/Acme"]


def test_find_cycle_names_the_loop_through_a_group():
    groups = groups_of(
        ("A", "multi_purpose", ["B"]),
        ("B", "multi_purpose", ["C"]),
        ("C", "multi_purpose", ["A"]),
        ("D", "multi_purpose", ["A"]),
    )
    assert names.find_cycle("A", groups) == ["A", "B", "C", "A"]
    assert names.find_cycle("D", groups) is None


def test_find_cycle_ends_quickly_on_densely_nested_groups():
    members = [f"G{index}" for index in range(14)]
    groups = groups_of(*((group, "multi_purpose", [m for m in members if m != group]) for group in members))
    groups["start"] = ("multi_purpose", ["G0"])
    started = time.monotonic()
    assert names.find_cycle("Start", groups) is None
    assert time.monotonic() - started < 1
