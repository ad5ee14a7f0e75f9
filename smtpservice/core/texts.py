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

from django.utils.translation import get_language, gettext

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


class Explained(str):
    """A text in the active language that also keeps its msgid and values, so that a daemon can store it
    (``keep``) and a page can show it later in its reader's language (``render``).

    The policy and the session machine build every explanation this way (``explain`` is their ``_``):
    ``_("... %(entry)s ...") % values`` and ``a + " " + b`` keep working as on plain text, and the stored
    form follows along.
    """

    def __new__(cls, text: str, msgid: str | None = None, params: dict | None = None, parts: tuple | None = None) -> "Explained":
        explained = super().__new__(cls, text)
        explained.msgid, explained.params, explained.parts = msgid, params, parts
        return explained

    def __mod__(self, values: object) -> "Explained":
        formatted = str.__mod__(self, values)
        if self.msgid is None or not isinstance(values, dict):
            return Explained(formatted)
        return Explained(formatted, self.msgid, values)

    def __add__(self, other: str) -> "Explained":
        return Explained(str.__add__(self, other), parts=(self, other))

    def __radd__(self, other: str) -> "Explained":
        return Explained(str.__add__(other, self), parts=(other, self))

    @property
    def stored(self) -> str:
        """The form to store: msgid and values, translated again when it is read (``render``). Built once: the
        policy remembers its answers, so the same explanation is stored again and again."""
        cached = self.__dict__.get("_stored")
        if cached is None:
            if self.parts is not None:
                cached = "".join(keep(part) for part in self.parts)
            elif self.msgid is None:
                cached = str.__str__(self)
            else:
                cached = stored(self.msgid, **{key: _value(value) for key, value in (self.params or {}).items()})
            self._stored = cached
        return cached


def _value(value: object) -> object:
    """A value of an explanation as stored: an explanation's stored form; a client's text without the marks,
    so that nothing a client sends can pass for a stored explanation."""
    if isinstance(value, Explained):
        return value.stored
    if isinstance(value, str):
        return value.replace(START, "\ufffd").replace(END, "\ufffd")
    return value


MAX_KEPT_EXPLANATIONS = 10_000
_explained: dict[tuple[str, str | None], Explained] = {}
"""Explanations by msgid and language: the session machine explains every command it answers, mostly with the
same few texts, and each one's stored form is made once (``Explained.stored``)."""


def explain(msgid: str) -> Explained:
    """``gettext`` that remembers its msgid: the ``_`` of code whose texts are stored and read later."""
    key = (msgid, get_language())
    explained = _explained.get(key)
    if explained is None:
        explained = Explained(gettext(msgid), msgid)
        if len(_explained) < MAX_KEPT_EXPLANATIONS:  # msgids are literals; a bound all the same
            _explained[key] = explained
    return explained


def keep(text: object) -> object:
    """What to store for ``text``: the stored form of an explanation, anything else as it is."""
    return text.stored if isinstance(text, Explained) else text


def join(separator: str, texts: list) -> Explained:
    """``separator.join(texts)`` that keeps each explanation's stored form."""
    parts = []
    for index, text in enumerate(texts):
        if index:
            parts.append(separator)
        parts.append(text)
    return Explained(separator.join(str.__str__(text) if isinstance(text, Explained) else str(text) for text in texts),
                     parts=tuple(parts))
