"""What the listener does to a message's bytes: refuse bare line ends and loops, add its trace header.

Pure functions over bytes and the session's facts; the listener calls them before it stores a message.
"""
import email.utils
import re
from email.parser import BytesHeaderParser

from django.utils.translation import gettext as _

from smtpservice.core import policy

BARE_LINE_END = re.compile(rb"\r(?!\n)|(?<!\r)\n")
"""A CR not followed by LF, or an LF not preceded by CR: not a line end (RFC 5321 s 2.3.8)."""
RECEIVED_HEADER = re.compile(rb"^received[ \t]*:", re.IGNORECASE | re.MULTILINE)
BARE_LINE_END_IN_DATA = (554, "5.6.0 Message contains a bare CR or LF; lines must end with CR LF")
"""RFC 5321 s 2.3.8; the SMTP smuggling family of 2023 relies on servers that accept them."""
TOO_MANY_HOPS = (554, "5.4.6 Too many hops")
"""RFC 5321 s 6.3 (mail loop); RFC 3463 X.4.6 routing loop detected."""


def refusal(pair, rule, detail):
    """A refusal of the listener's own protections, in the shape of the policy's answers (for the session log)."""
    return policy.Decision(False, *pair, rule, detail, close=pair[0] == 421)


def content_problem(content, limits):
    """The refusal of a message whose lines do not all end in CR LF, or that has looped, else None."""
    if BARE_LINE_END.search(content):
        return refusal(BARE_LINE_END_IN_DATA, "bare_line_end", _(
            "The message holds a CR or LF that is not part of a CR LF line end (RFC 5321 s 2.3.8): "
            "it could end the message early at a server it is relayed to (SMTP smuggling)."
        ))
    header, _blank, _body = content.partition(b"\r\n\r\n")
    hops = len(RECEIVED_HEADER.findall(header))
    if hops > limits.max_hops:
        return refusal(TOO_MANY_HOPS, "max_hops", _(
            "The message has %(hops)s Received headers, more than %(limit)s: it is looping."
        ) % {"hops": hops, "limit": limits.max_hops})
    return None


def received_header(server, envelope):
    """The trace header this server adds (RFC 5321 s 4.4), with the protocol per RFC 3848."""
    facts = server.facts
    protocol = "ESMTP" if server.session.extended_smtp else "SMTP"
    if facts.tls:
        protocol += "S"
    if facts.authenticated_as:
        protocol += "A"
    recipient = f"\r\n\tfor <{envelope.rcpt_tos[0]}>" if len(envelope.rcpt_tos) == 1 else ""
    helo = sanitize_header_text(server.helo) or "unknown"
    return (
        f"Received: from {helo} ([{facts.client_ip}])\r\n\tby {server.snap.host_name} with {protocol} "
        f"id {server.session_id}{recipient};\r\n\t{email.utils.formatdate(localtime=True)}\r\n"
    ).encode("ascii", "replace")


def sanitize_header_text(text):
    return "".join(ch for ch in (text or "") if 32 < ord(ch) < 127)[:200]


def message_headers(data):
    headers = BytesHeaderParser().parsebytes(data)
    return str(headers.get("Subject", ""))[:500], str(headers.get("Message-ID", ""))[:500]


