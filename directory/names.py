"""Domino name matching: hierarchical names, wildcards and nested groups.

Pure functions, free of the ORM, so the listener's policy and the console share them and a table
of cases can test them. Names compare without regard to case, as in Domino.

*Decision* (docs/design/decisions.md): a wildcard entry ``*/Sales/Acme`` matches every name whose trailing
components are ``Sales/Acme``, at any depth below it; ``*`` matches every name.
"""
from dataclasses import dataclass

from directory.choices import GroupType

CANONICAL_PREFIXES = ("cn=", "ou=", "o=", "c=")

# Group types whose members count in access lists; Mail-only groups do not, as in Domino.
ACCESS_GROUP_TYPES = frozenset({GroupType.MULTI_PURPOSE, GroupType.ACL_ONLY})


def abbreviate(name):
    """Turn ``CN=Jane Doe/OU=Sales/O=Acme`` into ``Jane Doe/Sales/Acme`` and trim blanks."""
    parts = []
    for part in str(name).split("/"):
        part = part.strip()
        if part.lower().startswith(CANONICAL_PREFIXES):
            part = part.split("=", 1)[1].strip()
        parts.append(part)
    return "/".join(parts)


def components(name):
    """Components of a name, lower-cased for comparison."""
    return [part.lower() for part in abbreviate(name).split("/")]


def is_valid_name(name, hierarchical=False):
    """A name has no empty component; a hierarchical one has at least two."""
    parts = abbreviate(name).split("/")
    if any(not part for part in parts):
        return False
    return len(parts) >= 2 or not hierarchical


COMMON_NAME_LENGTH = 80
UNIT_LENGTH = 32
ORGANIZATION_LENGTH = 64
MAX_UNITS = 4
"""Domino's limits on a hierarchical name: common name, each of at most four organizational units, the
organization (HCL Domino Administrator, "Guidelines for naming")."""
NAME_PUNCTUATION = frozenset("&-.'_ ")
"""Besides letters and digits (of any script), what a name component may hold, as in Domino."""

COMPONENT_CHARACTERS = "characters"
COMPONENT_LENGTH = "length"
TOO_MANY_UNITS = "units"


def name_problems(name: str) -> list[tuple[str, str, int]]:
    """What breaks Domino's naming rules in ``name`` (already split by ``/`` into components):
    ``[(problem, component, limit)]``, empty for a good name. Empty components are ``is_valid_name``'s."""
    parts = abbreviate(name).split("/")
    problems = []
    if len(parts) - 2 > MAX_UNITS:
        problems.append((TOO_MANY_UNITS, "", MAX_UNITS))
    for index, part in enumerate(parts):
        if not all(character.isalnum() or character in NAME_PUNCTUATION for character in part):
            problems.append((COMPONENT_CHARACTERS, part, 0))
        if index == 0:
            limit = COMMON_NAME_LENGTH
        elif index == len(parts) - 1:
            limit = ORGANIZATION_LENGTH
        else:
            limit = UNIT_LENGTH
        if len(part) > limit:
            problems.append((COMPONENT_LENGTH, part, limit))
    return problems


def organization(name):
    """The organization of a hierarchical name is its last component (``mail1/Acme`` -> ``Acme``)."""
    parts = abbreviate(name).split("/")
    return parts[-1] if len(parts) >= 2 else ""


def is_wildcard(entry):
    entry = abbreviate(entry)
    return entry == "*" or entry.startswith("*/")


def wildcard_matches(name, entry):
    """Does the wildcard entry (``*`` or ``*/Sales/Acme``) cover this name?"""
    entry_parts = components(entry)
    if entry_parts == ["*"]:
        return True
    suffix = entry_parts[1:]
    name_parts = components(name)
    return len(name_parts) > len(suffix) and name_parts[-len(suffix):] == suffix


def same_name(a, b):
    return components(a) == components(b)


@dataclass(frozen=True)
class Match:
    """Which access-list entry matched, and through which groups (outermost first)."""

    entry: str
    via_groups: tuple = ()

    def explain(self):
        if not self.via_groups:
            return self.entry
        return " > ".join(self.via_groups + (self.entry,))


def match_access_list(name, entries, groups, aliases=()):
    """Return the first Match of ``name`` (or one of its ``aliases``) in an access list, or None.

    ``groups`` maps a lower-cased group name to ``(group_type, members)``. Groups nest to any depth;
    each group is expanded once per lookup (a second visit cannot find what the first did not), so
    cycles end and densely nested groups stay linear. Mail-only groups are ignored.
    """
    candidates = [name, *aliases]
    expanded = set()

    def direct(entry):
        if is_wildcard(entry):
            return any(wildcard_matches(candidate, entry) for candidate in candidates)
        return any(same_name(candidate, entry) for candidate in candidates)

    def search(entry_list, path):
        for entry in entry_list:
            if direct(entry):
                return Match(abbreviate(entry), path)
            key = abbreviate(entry).lower()
            group = groups.get(key)
            if group is None or key in expanded:
                continue
            group_type, members = group
            if group_type not in ACCESS_GROUP_TYPES:
                continue
            expanded.add(key)
            found = search(members, path + (abbreviate(entry),))
            if found:
                return found
        return None

    return search(entries, ())


def expand_group(group_name, groups):
    """Every non-group member reachable from a group, cycles included once (for display)."""
    seen, result, stack = set(), [], [abbreviate(group_name).lower()]
    while stack:
        key = stack.pop()
        if key in seen or key not in groups:
            continue
        seen.add(key)
        for member in groups[key][1]:
            member_key = abbreviate(member).lower()
            if member_key in groups:
                stack.append(member_key)
            elif member not in result:
                result.append(member)
    return result


def find_cycle(group_name, groups):
    """Return the names forming a cycle through ``group_name`` (for a warning), or None."""
    start = abbreviate(group_name).lower()
    walked = {start}

    def walk(key, path):
        for member in groups.get(key, ("", []))[1]:
            member_key = abbreviate(member).lower()
            if member_key == start:
                return path + [abbreviate(member)]
            if member_key in groups and member_key not in walked:
                walked.add(member_key)
                found = walk(member_key, path + [abbreviate(member)])
                if found:
                    return found
        return None

    return walk(start, [abbreviate(group_name)])
