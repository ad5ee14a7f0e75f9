"""Texts written by a daemon or an action and read later, by someone else, in their own language.

A daemon has no reader when it writes a log row, so it stores the text untranslated with its values
(``stored(msgid, count=..., plural=..., **params)``), and the page renders it through gettext in the
reader's language (``render``). A stored value is JSON inside two control characters, so several may
be joined with plain text; anything else is shown as it is, translated when it is a known msgid.
Pure code: gettext only, no ORM.
"""
import json
import re
from typing import TYPE_CHECKING

from django.utils.translation import gettext

if TYPE_CHECKING:
    from django.utils.functional import Promise

START, END = "\x1e", "\x1f"
"""ASCII record and unit separators: never typed by a person nor sent in SMTP text."""
SEGMENT = re.compile(f"{START}(.*?){END}", re.S)


CATALOGUE: dict = {}
"""Texts with plurals, by key: ``ngettext_lazy(singular, plural, "count")`` registered where they are written,
so that makemessages extracts them as plural entries."""


def register(key: str, text: "Promise") -> str:
    CATALOGUE[key] = text
    return key


def stored(msgid: str, **params) -> str:
    """The text ``msgid % params`` kept for later translation: a msgid marked with ``gettext_noop``, or the key
    of a registered plural text (whose ``count`` parameter chooses the form)."""
    value = {"k" if msgid in CATALOGUE else "m": msgid, "p": params}
    return START + json.dumps(value, ensure_ascii=False, default=str) + END


def _render_one(match: re.Match) -> str:
    try:
        value = json.loads(match.group(1))
        params = {key: item if isinstance(item, int) else render(str(item)) for key, item in value.get("p", {}).items()}
        text = CATALOGUE[value["k"]] if "k" in value else gettext(value["m"])
        return str(text % params) if params else str(text)
    except (ValueError, KeyError, TypeError):
        return match.group(1)


def render(value: str) -> str:
    """A stored text in the active language: each stored part translated with its values, a plain known msgid
    translated, anything else (a reply as sent on the wire, a name) as it is."""
    if not value:
        return value
    if START in value:
        return SEGMENT.sub(_render_one, value)
    return gettext(value)
