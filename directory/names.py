"""Domino name matching: hierarchical names, wildcards and nested groups.

Pure functions, free of the ORM, so the listener's policy and the console share them and a table
of cases can test them. Names compare without regard to case, as in Domino.

*Decision* (docs/design/decisions.md): a wildcard entry ``*/Sales/Acme`` matches every name whose trailing
components are ``Sales/Acme``, at any depth below it; ``*`` matches every name.
"""
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from directory.choices import GroupType

CANONICAL_PREFIXES = ("cn=", "ou=", "o=", "c=")

_END = object()  # the end of a list being walked

# Group types whose members count in access lists; Mail-only groups do not, as in Domino.
ACCESS_GROUP_TYPES = frozenset({GroupType.MULTI_PURPOSE, GroupType.ACL_ONLY})


def abbreviate(name: str) -> str:
    """Turn ``CN=Jane Doe/OU=Sales/O=Acme`` into ``Jane Doe/Sales/Acme`` and trim blanks."""
    return _abbreviated(str(name))


# Cached: access checks compare the same few thousand names again and again (a person against every
# member of every nested group), and a name's abbreviated form never changes.
@functools.lru_cache(maxsize=1 << 16)
def _abbreviated(name: str) -> str:
    parts = []
    for part in name.split("/"):
        part = part.strip()
        if part.lower().startswith(CANONICAL_PREFIXES):
            part = part.split("=", 1)[1].strip()
        parts.append(part)
    return "/".join(parts)


@functools.lru_cache(maxsize=1 << 16)
def _parts(name: str) -> tuple:
    return tuple(part.lower() for part in _abbreviated(name).split("/"))


def components(name: str) -> list:
    """Components of a name, lower-cased for comparison."""
    return list(_parts(str(name)))


def _key(name: str) -> str:
    """The lower-cased abbreviated name: how groups are looked up."""
    return _joined(str(name))


@functools.lru_cache(maxsize=1 << 16)
def _joined(name: str) -> str:
    return "/".join(_parts(name))


def is_valid_name(name: str, hierarchical: bool = False) -> bool:
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


def organization(name: str) -> str:
    """The organization of a hierarchical name is its last component (``mail1/Acme`` -> ``Acme``)."""
    parts = abbreviate(name).split("/")
    return parts[-1] if len(parts) >= 2 else ""


def is_wildcard(entry: str) -> bool:
    entry = abbreviate(entry)
    return entry == "*" or entry.startswith("*/")


def wildcard_matches(name: str, entry: str) -> bool:
    """Does the wildcard entry (``*`` or ``*/Sales/Acme``) cover this name?"""
    return _wildcard_covers(_parts(str(entry)), _parts(str(name)))


def _wildcard_covers(entry_parts: tuple, name_parts: tuple) -> bool:
    suffix = entry_parts[1:]
    if not suffix:
        return True
    return len(name_parts) > len(suffix) and name_parts[-len(suffix):] == suffix


def same_name(a: str, b: str) -> bool:
    return _parts(str(a)) == _parts(str(b))


@dataclass(frozen=True)
class Match:
    """Which access-list entry matched, and through which groups (outermost first)."""

    entry: str
    via_groups: tuple = ()

    def explain(self) -> str:
        if not self.via_groups:
            return self.entry
        return " > ".join(self.via_groups + (self.entry,))


def match_access_list(name: str, entries: Iterable[str], groups: Mapping[str, tuple], aliases: Iterable[str] = ()) -> Match | None:
    """Return the first Match of ``name`` (or one of its ``aliases``) in an access list, or None.

    ``groups`` maps a lower-cased group name to ``(group_type, members)``. Groups nest to any depth;
    each group is expanded once per lookup (a second visit cannot find what the first did not), so
    cycles end and densely nested groups stay linear. Mail-only groups are ignored. The walk keeps
    its own stack rather than recursing, so no depth of nesting can exhaust Python's.
    """
    candidates = {_key(candidate) for candidate in (name, *aliases)}
    candidate_parts = [_parts(str(candidate)) for candidate in (name, *aliases)]
    expanded = set()
    stack = [(iter(entries), ())]  # depth first, entries in their order: the first match in reading order
    while stack:
        pending, path = stack[-1]
        entry = next(pending, _END)
        if entry is _END:
            stack.pop()
            continue
        # Keys join the lower-cased components with "/", which no component holds: equal keys, equal names.
        key = _key(entry)
        if key[:1] == "*" and key[1:2] in ("", "/"):
            parts = _parts(str(entry))
            if any(_wildcard_covers(parts, candidate) for candidate in candidate_parts):
                return Match(abbreviate(entry), path)
        elif key in candidates:
            return Match(abbreviate(entry), path)
        group = groups.get(key)
        if group is None or key in expanded or group[0] not in ACCESS_GROUP_TYPES:
            continue
        expanded.add(key)
        stack.append((iter(group[1]), path + (abbreviate(entry),)))
    return None


def expand_group(group_name: str, groups: Mapping[str, tuple]) -> list[str]:
    """Every non-group member reachable from a group, cycles included once (for display)."""
    seen, result, listed, stack = set(), [], set(), [_key(group_name)]
    while stack:
        key = stack.pop()
        if key in seen or key not in groups:
            continue
        seen.add(key)
        for member in groups[key][1]:
            member_key = _key(member)
            if member_key in groups:
                stack.append(member_key)
            elif member not in listed:
                listed.add(member)
                result.append(member)
    return result


def find_cycle(group_name: str, groups: Mapping[str, tuple]) -> list[str] | None:
    """Return the names forming a cycle through ``group_name`` (for a warning), or None."""
    start = _key(group_name)
    walked = {start}
    stack = [(iter(groups.get(start, ("", []))[1]), [abbreviate(group_name)])]
    while stack:
        pending, path = stack[-1]
        member = next(pending, _END)
        if member is _END:
            stack.pop()
            continue
        member_key = _key(member)
        if member_key == start:
            return path + [abbreviate(member)]
        if member_key in groups and member_key not in walked:
            walked.add(member_key)
            stack.append((iter(groups[member_key][1]), path + [abbreviate(member)]))
    return None


def groups_in_cycles(groups: Mapping[str, tuple]) -> set:
    """The keys of every group that contains itself through its members (Tarjan's strongly connected
    components, with its own stack): one pass for all groups instead of one walk from each."""
    index, low, on_stack, stack, result = {}, {}, set(), [], set()
    for root in groups:
        if root in index:
            continue
        work = [(root, iter(groups[root][1]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            key, pending = work[-1]
            member = next(pending, _END)
            if member is not _END:
                member_key = _key(member)
                if member_key not in groups:
                    continue
                if member_key == key:
                    result.add(key)  # a group that lists itself
                if member_key not in index:
                    index[member_key] = low[member_key] = len(index)
                    stack.append(member_key)
                    on_stack.add(member_key)
                    work.append((member_key, iter(groups[member_key][1])))
                elif member_key in on_stack:
                    low[key] = min(low[key], index[member_key])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[key])
            if low[key] == index[key]:
                component = []
                while True:
                    member_key = stack.pop()
                    on_stack.discard(member_key)
                    component.append(member_key)
                    if member_key == key:
                        break
                if len(component) > 1:
                    result.update(component)
    return result


class AccessList:
    """An access list with its nested groups expanded once, to test many names against it.

    ``name in AccessList(entries, groups)`` is ``match_access_list(name, entries, groups) is not None``,
    without the path: for thousands of names (everyone the Administrators field names, say) one walk
    of the groups instead of one per name.
    """

    def __init__(self, entries: Iterable[str], groups: Mapping[str, tuple]) -> None:
        self.keys, self.wildcards = set(), []
        expanded, stack = set(), [iter(entries)]
        while stack:
            entry = next(stack[-1], _END)
            if entry is _END:
                stack.pop()
                continue
            key = _key(entry)
            if key[:1] == "*" and key[1:2] in ("", "/"):
                self.wildcards.append(_parts(str(entry)))
            else:
                self.keys.add(key)
            group = groups.get(key)
            if group is None or key in expanded or group[0] not in ACCESS_GROUP_TYPES:
                continue
            expanded.add(key)
            stack.append(iter(group[1]))

    def __contains__(self, name: object) -> bool:
        if _key(name) in self.keys:
            return True
        parts = _parts(str(name))
        return any(_wildcard_covers(wildcard, parts) for wildcard in self.wildcards)
