"""What the listener checks in a message's bytes before it stores it, and reads from its header.

Pure functions over bytes; the session machine (``core.session``) calls them at the end of DATA.
"""
import re

from smtpservice.core import policy, replies, texts

_ = texts.explain

BARE_LINE_END = re.compile(rb"\r(?!\n)|(?<!\r)\n")
"""A CR not followed by LF, or an LF not preceded by CR: not a line end (RFC 5321 s 2.3.8)."""
RECEIVED_HEADER = re.compile(rb"^received[ \t]*:", re.IGNORECASE | re.MULTILINE)


def content_problem(content: bytes, max_hops: int) -> policy.Decision | None:
    """The refusal of a message whose lines do not all end in CR LF, or that has looped, else None."""
    crlf = content.count(b"\r\n")
    # Every CR starts a CR LF and every LF ends one exactly when the three counts agree (C speed, no regex).
    if not crlf == content.count(b"\r") == content.count(b"\n"):
        return policy.Decision(False, *replies.BARE_LINE_END_IN_DATA, "bare_line_end", _(
            "The message holds a CR or LF that is not part of a CR LF line end (RFC 5321 s 2.3.8): "
            "it could end the message early at a server it is relayed to (SMTP smuggling)."
        ))
    header, _blank, _body = content.partition(b"\r\n\r\n")
    hops = len(RECEIVED_HEADER.findall(header))
    if hops > max_hops:
        return policy.Decision(False, *replies.TOO_MANY_HOPS, "max_hops", _(
            "The message has %(hops)s Received headers, more than %(limit)s: it is looping."
        ) % {"hops": hops, "limit": max_hops})
    return None


HEADER_FIELD = re.compile(rb"^(subject|message-id)[ \t]*:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
"""A Subject or Message-ID field with its folded continuation lines (RFC 5322 s 2.2.3)."""


def message_headers(data: bytes) -> tuple[str, str]:
    """The Subject and Message-ID of a message (the first of each, unfolded), as the console lists them.

    Read with one search of the header block rather than a full parse: it runs for every message stored.
    """
    header = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    found = {}
    for match in HEADER_FIELD.finditer(header):
        found.setdefault(match.group(1).lower(), re.sub(rb"\r?\n(?=[ \t])", b"", match.group(2)).rstrip(b"\r"))
    return tuple(found.get(name, b"").decode("utf-8", "replace")[:500] for name in (b"subject", b"message-id"))
