"""Text from the network made safe to store: what a client typed must never make a database write fail.

PostgreSQL refuses NUL in text and in ``jsonb`` (``\\u0000``), and a lone surrogate (what Python's
``surrogateescape`` makes of undecodable bytes) cannot be encoded as UTF-8; both made one hostile EHLO
fail the message and every later heartbeat (docs/security.md). Pure functions, no ORM: the store applies
them to every field it writes.
"""
import json
import re

REPLACEMENT = "\ufffd"
"""What stands in for a character that cannot be stored (U+FFFD REPLACEMENT CHARACTER): visible, so the
console shows that something was there."""


def db_safe(text: object, max_len: int | None = None, marks: bool = False) -> str:
    """``text`` as a string any database stores: control characters (NUL included) and lone surrogates
    become U+FFFD, a tab a space; cut to ``max_len`` characters when given. Bytes are read as UTF-8."""
    if text is None:
        return ""
    if isinstance(text, bytes | bytearray | memoryview):
        text = bytes(text).decode("utf-8", "replace")
    text = str(text)
    if not text.isprintable():
        text = (_UNSAFE_BUT_MARKS if marks else _UNSAFE).sub(_replace, text)
    return text[:max_len] if max_len is not None else text


STORED_TEXT_MARKS = ("\x1e", "\x1f")
"""The marks around a stored explanation (``core.texts``): harmless to every database. Kept only where
explanations are stored (``marks=True``); ``core.texts`` removes them from any value a client supplied."""


_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""Unicode's control (Cc) and surrogate (Cs) characters: one regular expression, not a test per character,
because every session's log record passes through here."""
_UNSAFE_BUT_MARKS = re.compile("[\x00-\x1d\x7f-\x9f\ud800-\udfff]")


def _replace(match: re.Match) -> str:
    return " " if match.group() == "\t" else REPLACEMENT


def db_safe_json(value: object, marks: bool = False) -> object:
    """A JSON value with every string in it (dictionary keys too) made safe by ``db_safe``.

    Every session's log record passes through here with its events. Most hold nothing to replace, which one
    encoding of the whole value tells at C speed: JSON writes a control character below U+0020 as an escape
    (found by ``_ESCAPED_CONTROL``) and leaves the others, and lone surrogates, as they are (then the text is
    not printable). Only a value where either is seen is walked string by string; an escaped backslash
    before an ``n`` also sends a value there, which costs time, never safety.
    """
    try:
        encoded = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return _walk(value, marks)
    if encoded.isprintable() and not (_ESCAPED_CONTROL_BUT_MARKS if marks else _ESCAPED_CONTROL).search(encoded):
        return value
    return _walk(value, marks)


def _walk(value: object, marks: bool) -> object:
    if isinstance(value, str):
        return db_safe(value, marks=marks)
    if isinstance(value, dict):
        return {db_safe(key, marks=marks) if isinstance(key, str) else key: _walk(item, marks) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(item, marks) for item in value]
    return value


_ESCAPED_CONTROL = re.compile(r"\\(?:[bfnrt]|u00[01][0-9a-f])")
"""How ``json.dumps`` writes the control characters below U+0020."""
_ESCAPED_CONTROL_BUT_MARKS = re.compile(r"\\(?:[bfnrt]|u00(?:0[0-9a-f]|1[0-9a-d]))")
"""The same, but for the marks of a stored explanation (U+001E and U+001F, ``STORED_TEXT_MARKS``)."""
